"""Pipeline parallelism inside an instance: micro-batches in flight across the PP stages.

``TableStepCost.step`` prices **one micro-batch through all stages** (every layer's time summed
plus the stage-to-stage sends). A serving engine with pp > 1 keeps pp micro-batches in flight
(vLLM's virtual engines, SGLang/TRT-LLM pipeline schedulers), so every sequence of a batch of B gets
one token per traversal of a micro-batch of ⌈B/pp⌉ sequences: the decode step of the whole batch
takes ``t(⌈B/pp⌉)``, and the pp micro-batches do pp times the work. With B < pp the stages idle
(bubbles) and a token still takes a full traversal of one sequence.

A step with prompt work is a chunked prefill pipelined over the stages (CPP): the chunk is split into
pp micro-chunks; the last one leaves the pipeline after the fill, ``t(chunk/pp) · (2pp − 1)/pp``
[INFERRED: equal stages; Beyond the Buzz's CPP, SEED-NOTES §2.5].
"""

from __future__ import annotations

import numpy as np

from simcluster.perf.interface import BatchShape, StepTime


class PipelinedStepCost:
    def __init__(self, inner, pp: int) -> None:
        if pp < 1:
            raise ValueError("pp must be at least 1")
        self.inner = inner
        self.pp = pp
        self._fill = (2 * pp - 1) / pp

    def _micro(self, batch: int) -> int:
        return -(-batch // self.pp)

    def _scale(self, st: StepTime, lat_factor: float) -> StepTime:
        f, pp = lat_factor, self.pp
        return StepTime(st.latency_s * f, st.weight_read_s * f, st.kv_read_s * f, st.compute_s * f,
                        st.comm_s * f, st.other_s * f, st.flops * pp, st.hbm_bytes * pp)

    def step(self, shape: BatchShape) -> StepTime:
        pp = self.pp
        d = shape.decode_seqs
        micro = BatchShape(
            prefill_tokens=-(-shape.prefill_tokens // pp),
            prefill_seqs=self._micro(shape.prefill_seqs),
            prefill_attn_pairs=shape.prefill_attn_pairs / pp,
            prefill_past_tokens=shape.prefill_past_tokens // pp,
            decode_seqs=self._micro(d),
            decode_context_tokens=shape.decode_context_tokens // pp if d >= pp else
            (shape.decode_context_tokens // d if d else 0),
        )
        st = self.inner.step(micro)
        return self._scale(st, self._fill if shape.prefill_tokens > 0 else 1.0)

    def _run_args(self, batch: int, context_tokens: int):
        if batch >= self.pp:
            return self._micro(batch), context_tokens / self.pp
        return 1, context_tokens / batch

    def decode_run(self, batch: int, context_tokens: int, n_steps: int) -> np.ndarray:
        b, c = self._run_args(batch, context_tokens)
        return self.inner.decode_run(b, int(c), n_steps)

    def decode_run_totals(self, batch: int, context_tokens: int, n_steps: int) -> StepTime:
        b, c = self._run_args(batch, context_tokens)
        return self._scale(self.inner.decode_run_totals(b, int(c), n_steps), 1.0)

    def decode_run_work(self, batch: int, context_tokens: int, n_steps: int) -> tuple[float, float]:
        b, c = self._run_args(batch, context_tokens)
        flops, hbm = self.inner.decode_run_work(b, int(c), n_steps)
        return flops * self.pp, hbm * self.pp
