"""The contracts between the engine (``sim``) and the cost models (``perf``).

``perf`` is pure functions over numbers and tables: nothing here knows about SimPy.

Two levels:

* :class:`OpCosts` — the seconds of one op on one GPU (a GEMM, one layer of attention, one MoE layer,
  one collective). Implemented by the analytic roofline (``perf.roofline.RooflineOps``) and by the
  calibrated tables (``perf.calibration``), which fall back to roofline × fitted efficiency.
* :class:`StepCostModel` — the seconds of one engine step of one *instance* (all its GPUs) for a
  batch described by :class:`BatchShape`. Layouts (TP, PP, EP, DP-attention, KVP, Helix, HOP-B)
  compose op costs into this. The engine's hot loop only calls ``step`` and ``decode_run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np


class StepTime(NamedTuple):
    """Cost of one step of one instance. Times in seconds; flops and bytes summed over the instance."""

    latency_s: float
    weight_read_s: float = 0.0  # time attributed to reading weights
    kv_read_s: float = 0.0  # time attributed to reading/writing the KV cache
    compute_s: float = 0.0  # time attributed to math (compute-bound ops)
    comm_s: float = 0.0  # exposed collective time (after overlap)
    other_s: float = 0.0  # launch / scheduler overhead, sampling, embeddings
    flops: float = 0.0
    hbm_bytes: float = 0.0


@dataclass(frozen=True)
class BatchShape:
    """What one step processes.

    prefill_tokens:       new tokens processed this step by prefill chunks (Σ chunk lengths)
    prefill_seqs:         sequences with a prefill chunk in this step
    prefill_attn_pairs:   Σ over chunks of chunk·(past + (chunk + 1)/2): causal query–key pairs,
                          the attention work of the chunks (per head, per layer)
    prefill_past_tokens:  Σ over chunks of the context already in KV before the chunk (KV read)
    decode_seqs:          sequences generating one token this step
    decode_context_tokens: Σ over decode sequences of their context length (KV read per step)
    """

    prefill_tokens: int = 0
    prefill_seqs: int = 0
    prefill_attn_pairs: float = 0.0
    prefill_past_tokens: int = 0
    decode_seqs: int = 0
    decode_context_tokens: int = 0


class StepCostModel(Protocol):
    def step(self, shape: BatchShape) -> StepTime:
        """Cost of one step with this batch."""

    def decode_run(self, batch: int, context_tokens: int, n_steps: int) -> np.ndarray:
        """Latencies (seconds) of ``n_steps`` consecutive pure-decode steps of ``batch`` sequences.

        ``context_tokens`` is Σ context at the first step; it grows by ``batch`` each step.
        Vectorised: one call for a whole run of identical-batch steps.
        """

    def decode_run_totals(self, batch: int, context_tokens: int, n_steps: int) -> StepTime:
        """Component sums over the same run (for recording and MFU/MBU); ``latency_s`` is the sum."""


class OpCosts(Protocol):
    """Seconds for one op invocation on one GPU. Shapes are per GPU (already divided by TP etc.)."""

    def gemm(self, m: int, n: int, k: int, fmt: str) -> float: ...

    def attention_prefill(
        self, batch: int, new_tokens: int, past_tokens: int, q_heads: int, kv_heads: int, head_dim: int, kv_fmt: str
    ) -> float: ...

    def attention_decode(
        self, batch: int, context_tokens: int, q_heads: int, kv_heads: int, head_dim: int, kv_fmt: str
    ) -> float: ...

    def collective(self, op: str, bytes_per_gpu: float, n_gpus: int, link: str) -> float:
        """op: all_reduce | all_gather | reduce_scatter | all_to_all; link: nvlink | ib."""
        ...
