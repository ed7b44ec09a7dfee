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

    def decode_run_work(self, batch: int, context_tokens: int, n_steps: int) -> tuple[float, float]:
        """(FLOPs, HBM bytes) of the same run, for MFU/MBU when no per-step breakdown is recorded."""

    def decode_run_totals(self, batch: int, context_tokens: int, n_steps: int) -> StepTime:
        """Component sums over the same run (for recording and MFU/MBU); ``latency_s`` is the sum."""


class OpCosts(Protocol):
    """Seconds for one op invocation on one GPU. Shapes are per GPU (already divided by TP etc.).

    Argument meanings (what ``perf.composition`` passes):

    * ``gemm(m, n, k, fmt)``: ``[m,k] × [k,n]`` with ``m`` tokens; ``fmt`` is the **weight** format
      name (activations are the model's, fixed per op-cost object).
    * ``attention_decode(batch, context_tokens, ...)``: ``batch`` sequences, one new token each,
      ``context_tokens`` KV tokens **per sequence on this GPU** (after KVP sharding and eviction);
      ``q_heads``/``kv_heads`` per GPU (kv_heads = ⌈K/tpa⌉, duplicated beyond K).
    * ``attention_prefill(batch, new_tokens, past_tokens, ...)``: ``batch`` chunks, each of
      ``new_tokens`` after ``past_tokens`` already in KV (per sequence).
    * ``collective(op, bytes_per_gpu, n_gpus, link)``: nccl-tests buffer convention — all-reduce
      buffer, all-gather output, reduce-scatter input, all-to-all buffer, ``p2p`` message.

    Arguments may be numpy arrays when the object sets ``vectorised = True`` (the latency tables are
    then built in one call per op); otherwise they are called point by point on a coarser grid.

    Optional methods, used when present (the roofline fills in otherwise):
    ``attention_decode_mla(batch, context_tokens, q_heads, kv_lora_rank, rope_dim, kv_fmt)``,
    ``attention_prefill_mla(batch, new_tokens, past_tokens, q_heads, kv_lora_rank, rope_dim,
    qk_head_dim, v_head_dim, kv_fmt)``, ``moe_experts(tokens, experts, hidden, inter, fmt,
    weight_bytes_per_expert, extra_weight_bytes)`` (token-expert pairs over distinct experts, inter
    per GPU) and ``elementwise(hbm_bytes)``. An optional ``launch_overhead_s`` attribute says how much
    of each op's time is fixed launch cost (it is reported as "other"). ``perf.composition`` also
    uses a ``<method>_many`` twin for array arguments when one exists, and the calibrated tables'
    own names (``mla_decode``, ``mla_prefill``, ``moe``) for MLA attention and the fused MoE op.
    ``p2p`` sends always come from the roofline (nothing measures them).
    """

    def gemm(self, m: int, n: int, k: int, fmt: str) -> float: ...

    def attention_prefill(
        self, batch: int, new_tokens: int, past_tokens: int, q_heads: int, kv_heads: int, head_dim: int, kv_fmt: str
    ) -> float: ...

    def attention_decode(
        self, batch: int, context_tokens: int, q_heads: int, kv_heads: int, head_dim: int, kv_fmt: str
    ) -> float: ...

    def collective(self, op: str, bytes_per_gpu: float, n_gpus: int, link: str) -> float:
        """op: all_reduce | all_gather | reduce_scatter | all_to_all | p2p; link: nvlink | ib."""
        ...
