"""What one instance can serve, from its latency table: the inputs of rate matching and autoscaling.

For a prompt length ISL and a first-token latency target FTL, a prefill instance batches
``B_p = min(budget // ISL, max_num_seqs)`` whole prompts per step (halved until the step meets the
FTL; prompts longer than the token budget run as chunks, one request at a time), so it serves
``B_p / step_latency`` requests/s. A decode instance runs the largest batch ``B_d`` whose step at the
mean context ``ISL + OSL/2`` meets the token-to-token latency target TTL and whose KV
``B_d·(ISL + OSL)`` fits its cache, and serves ``B_d / (step_latency · (OSL − 1))`` requests/s —
SEED-NOTES §2.3's ``B_p/FTL`` and ``B_d/(TTL·(OSL − 1))`` per instance, with the latencies the
instance actually achieves (never more than the targets). A co-located instance alternates the two:
``1 / (1/P + 1/D)``.

Results are memoised on lengths rounded to 5 % so a controller calling every few seconds costs a
dictionary look-up.
"""

from __future__ import annotations

import math

from simcluster.perf.interface import BatchShape


def _bucket(x: float) -> int:
    return int(round(math.log(max(x, 1.0)) / math.log(1.05)))


class InstanceCapacity:
    def __init__(self, plan) -> None:
        self.cost = plan.cost
        self.budget = plan.spec.max_num_batched_tokens
        self.max_seqs = plan.spec.max_num_seqs
        self.chunked = plan.spec.chunked_prefill
        self.kv_tokens = plan.kv_capacity_tokens
        self._memo: dict = {}

    # ------------------------------------------------------------------ prefill
    def _prefill_latency(self, batch: int, isl: int) -> float:
        tokens = batch * isl
        shape = BatchShape(tokens, batch, batch * isl * (isl + 1) / 2.0, 0, 0, 0)
        return self.cost.step(shape).latency_s

    def _chunked_latency(self, isl: int) -> float:
        total, past = 0.0, 0
        while past < isl:
            c = min(self.budget, isl - past)
            total += self.cost.step(BatchShape(c, 1, c * (past + (c + 1) / 2.0), past, 0, 0)).latency_s
            past += c
        return total

    def prefill_rate(self, isl: float, ftl_s: float | None) -> float:
        """Requests/s one prefill instance serves at prompt length ``isl`` within ``ftl_s``."""
        key = ("p", _bucket(isl), ftl_s)
        r = self._memo.get(key)
        if r is not None:
            return r
        isl = max(1, int(round(isl)))
        if isl > self.budget and self.chunked:
            r = 1.0 / self._chunked_latency(isl)
        else:
            b = max(1, min(self.budget // isl, self.max_seqs))
            lat = self._prefill_latency(b, isl)
            while ftl_s is not None and lat > ftl_s and b > 1:
                b //= 2
                lat = self._prefill_latency(b, isl)
            r = b / lat
        self._memo[key] = r
        return r

    # ------------------------------------------------------------------ decode
    def _decode_latency(self, batch: int, ctx: float) -> float:
        return self.cost.step(BatchShape(0, 0, 0.0, 0, batch, int(batch * ctx))).latency_s

    def decode_batch(self, isl: float, osl: float, ttl_s: float | None) -> tuple[int, float]:
        """(batch, step latency) a decode instance runs at these lengths and this TTL target."""
        ctx = isl + osl / 2.0
        b_max = min(self.max_seqs, int(self.kv_tokens // max(isl + osl, 1.0)))
        if b_max < 1:
            return 0, math.inf
        if ttl_s is None or self._decode_latency(b_max, ctx) <= ttl_s:
            return b_max, self._decode_latency(b_max, ctx)
        lo, hi = 1, b_max  # largest batch meeting the TTL (latency grows with the batch)
        if self._decode_latency(1, ctx) > ttl_s:
            return 1, self._decode_latency(1, ctx)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._decode_latency(mid, ctx) <= ttl_s:
                lo = mid
            else:
                hi = mid - 1
        return lo, self._decode_latency(lo, ctx)

    def decode_rate(self, isl: float, osl: float, ttl_s: float | None) -> float:
        """Requests/s one decode instance serves (each makes ``osl − 1`` tokens after the first)."""
        key = ("d", _bucket(isl), _bucket(osl), ttl_s)
        r = self._memo.get(key)
        if r is not None:
            return r
        b, lat = self.decode_batch(isl, osl, ttl_s)
        r = 0.0 if b == 0 else b / (lat * max(osl - 1.0, 1.0))
        self._memo[key] = r
        return r

    def colocated_rate(self, isl: float, osl: float, ftl_s: float | None, ttl_s: float | None) -> float:
        p = self.prefill_rate(isl, ftl_s)
        d = self.decode_rate(isl, osl, ttl_s)
        return 0.0 if p <= 0 or d <= 0 else 1.0 / (1.0 / p + 1.0 / d)


def balance(p_rate: float, d_rate: float, g_p: int, g_d: int, gpu_budget: int) -> tuple[int, int]:
    """Whole prefill and decode instances within ``gpu_budget`` GPUs that maximise the rate-matched
    request throughput ``min(n_p·P, n_d·D)`` (SEED-NOTES §2.3: the balance ``n_p·P = n_d·D``); ties
    go to fewer GPUs, then to more decode instances. Both pools keep at least one instance."""
    if g_p + g_d > gpu_budget:
        raise ValueError("the GPU budget does not hold one instance of each role")
    best = None
    for n_p in range(1, (gpu_budget - g_d) // g_p + 1):
        n_d = (gpu_budget - n_p * g_p) // g_d
        if n_d < 1:
            break
        # with n_p fixed, the fewest decode instances that reach the prefill rate (or all that fit)
        need = max(1, math.ceil(n_p * p_rate / d_rate - 1e-9)) if d_rate > 0 else n_d
        n_d = min(n_d, need)
        thr = min(n_p * p_rate, n_d * d_rate)
        gpus = n_p * g_p + n_d * g_d
        if best is None or thr > best[0] * (1 + 1e-9) or (thr >= best[0] * (1 - 1e-9) and gpus < best[1]):
            best = (thr, gpus, n_p, n_d)
    return best[2], best[3]
