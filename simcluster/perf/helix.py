"""Helix parallelism pieces (arXiv:2507.07120): the All-to-All size, HOP-B, round-robin KV append.

All formulas are SEED-NOTES §1.3–1.5.
"""

from __future__ import annotations

import numpy as np

LSE_STAT_BYTES = 4  # each softmax statistic is FP32 (SEED-NOTES §1.3)


def a2a_send_bytes(tokens, payload_width: int, q_heads: int, kvp: int, tpa: int, act_bytes: float,
                   n_stat: int = 1):
    """Bytes one GPU sends in the post-attention All-to-All of one layer (SEED-NOTES §1.3):

    ``(KVP−1)·B·W/(KVP·TPA)·b_act + (KVP−1)·B·(Q/(TPA·KVP))·n_stat·4``

    ``tokens`` is B (query tokens: one per decode sequence), ``payload_width`` W the partial-output
    width per token: the hidden size H in the paper, ``heads × kv_lora_rank`` for TRT-LLM's MLA
    exchange (``a2a_payload = "latent"``). ``n_stat`` softmax statistics per head: 1 (the paper's
    LSE) or 2 (TRT-LLM's max and sum). Independent of the KV length S.
    """
    if kvp <= 1:
        return 0.0 * tokens
    shard = kvp * tpa
    return (kvp - 1) * tokens * (payload_width / shard * act_bytes + q_heads / shard * n_stat * LSE_STAT_BYTES)


def hop_b_span(n_requests, t_compute_s, t_comm_s, overlap: bool = True):
    """Span of attention + All-to-All over ``n_requests`` requests, each with ``t_compute_s`` of
    attention and ``t_comm_s`` of exchange (SEED-NOTES §1.4).

    HOP-B (``overlap``): request i's exchange runs while request i+1's attention computes,
    ``t_c + (n−1)·max(t_c, t_m) + t_m``. Lockstep (Helix Fig. 3 without HOP-B): ``n·(t_c + t_m)``.
    Works on numpy arrays; zero requests take zero time.
    """
    if overlap:
        span = t_compute_s + (n_requests - 1) * np.maximum(t_compute_s, t_comm_s) + t_comm_s
    else:
        span = n_requests * (t_compute_s + t_comm_s)
    return np.where(n_requests > 0, span, 0.0) if isinstance(span, np.ndarray) else (span if n_requests > 0 else 0.0)


EXCHANGE_MODELS = ("batched", "per_request")


def exchange_span(n_requests, t_core_s, t_comm_request_s, t_comm_batch_s, hop_b: bool, model: str = "batched"):
    """Span of one layer's attention core plus its Helix All-to-All, for ``n_requests`` requests.

    ``t_core_s`` is the attention time of the whole batch, ``t_comm_request_s`` the exchange of one
    request's slice, ``t_comm_batch_s`` the exchange of the whole batch as one collective.

    * ``per_request`` (Helix Fig. 3): each request exchanges on its own; HOP-B pipelines them,
      without HOP-B they run in lockstep (:func:`hop_b_span`).
    * ``batched`` (default; TRT-LLM's helixAllToAll, one per layer): without HOP-B, attention then
      one exchange of the batch; with HOP-B, whichever of that and the per-request pipeline is
      shorter (per-request exchanges pay the collective latency each time) [INFERRED].

    Works on numpy arrays of ``t_core_s``.
    """
    if model == "per_request":
        return hop_b_span(n_requests, t_core_s / n_requests, t_comm_request_s, hop_b)
    batched = t_core_s + t_comm_batch_s
    if not hop_b:
        return batched
    return np.minimum(batched, hop_b_span(n_requests, t_core_s / n_requests, t_comm_request_s, True))


class KVRoundRobin:
    """Where each KV token of one sequence lives across ``kvp`` ranks (SEED-NOTES §1.5).

    Tokens are appended in blocks of ``block`` tokens, rank after rank: the rank that owns the
    current block receives appends until the block is full, then the next rank starts a block.
    A prefill of ``prefill_tokens`` is laid out the same way (full blocks round-robin from rank 0,
    so the lowest ranks take the extra block, the remainder as a partial block on the next rank),
    and decode continues filling that partial block. Hence per-rank lengths differ by at most one
    block at every step.
    """

    def __init__(self, kvp: int, block: int = 16, prefill_tokens: int = 0) -> None:
        if kvp < 1 or block < 1 or prefill_tokens < 0:
            raise ValueError("kvp and block must be positive, prefill_tokens non-negative")
        self.kvp = kvp
        self.block = block
        full, rest = divmod(prefill_tokens, block)
        per_rank, extra = divmod(full, kvp)
        self.lengths = [block * (per_rank + (1 if r < extra else 0)) for r in range(kvp)]
        self._rank = extra % kvp  # rank owning the next (possibly partial) block
        self._fill = 0
        if rest:
            self.append(rest)

    @property
    def active_rank(self) -> int:
        """The rank the next token is appended to."""
        return self._rank

    def append(self, tokens: int = 1) -> None:
        """Append ``tokens`` tokens (one per decode step of this sequence)."""
        while tokens > 0:
            take = min(tokens, self.block - self._fill)
            self.lengths[self._rank] += take
            self._fill += take
            tokens -= take
            if self._fill == self.block:
                self._fill = 0
                self._rank = (self._rank + 1) % self.kvp

    @property
    def total(self) -> int:
        return sum(self.lengths)
