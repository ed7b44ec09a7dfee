"""KV-transfer bandwidth per GPU, measured from runs (SEED-NOTES §2.4, targets B-1 and B-2).

DeepSeek-R1 on GB200 NVL72 (FP4 weights, FP8 KV and math), disaggregated: prefill ``tp=8,ep=8``,
decode with DP attention ``dp=8,ep=8`` (each GPU holds its own sequences' KV: the paper counts only
GPUs holding unique KV shards), or Helix ``kvp=8,tpa=1,ep=8`` at 1M tokens (a sequence's KV sharded over
8 GPUs; DP attention cannot hold enough 1M-token sequences to be TTL-bound). Reduced setups:

* egress — one prefill instance saturated by a burst of requests (one-token outputs keep decode out
  of the way): KV bytes sent / prefill GPUs / the time from the first prefill start to the last KV
  landing;
* ingress — one decode instance at the batch its TTL allows (the largest batch whose step at the mean
  context ``ISL + OSL/2`` meets the TTL and whose KV fits), fed by enough prefill instances that
  requests queue for its slots: KV bytes landed / decode GPUs / time, over the window from the
  moment its batch is full to the last landing.

Expected (SEED-NOTES §8): B-1 max(egress, ingress) in 0.4–1.2 GB/s/GPU at 16k/2k and 1.0–1.8 at
1M/2k, asserted with the target's ×2 band, and far below a 400 Gb/s NIC; B-2 egress falls as ISL
grows, ingress is flat in ISL, ∝ 1/OSL and falls as the TTL tightens.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from simcluster.config.scenario import Scenario
from simcluster.perf.interface import BatchShape
from simcluster.results.schemas import REQUESTS
from simcluster.sim.deployment import build_pools
from simcluster.validate.simulate import run_in_memory
from simcluster.workload.workload import Workload

PREFILL = "tp=8,ep=8"
DECODE = "dp=8,ep=8"
HELIX = "kvp=8,tpa=1,ep=8"
NIC_GBps = 50.0  # ConnectX-7, 400 Gb/s per GPU (SEED-NOTES §7)


def _scenario(n_prefill: int = 1, decode_seqs: int = 256, decode: str = DECODE) -> Scenario:
    return Scenario.model_validate({
        "cluster": {"gpu": "gb200"},
        "model": {"name": "deepseek-r1", "weights": "fp4", "kv_cache": "fp8", "activations": "fp8"},
        "serving": {"mode": "disaggregated", "prefix_caching": False, "first_token_at": "prefill_end"},
        "pools": {"prefill": {"instances": n_prefill, "layout": PREFILL},
                  "decode": {"instances": 1, "layout": decode, "max_num_seqs": decode_seqs,
                             "max_num_batched_tokens": max(8192, decode_seqs)}},
        "cost": {"source": "roofline"},
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "constant", "rate_per_s": 1.0},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "output": {"steps": False, "timeline_interval_s": 60.0},
    })


def _burst(sc: Scenario, n: int, isl: int, osl: int):
    """``n`` requests of isl/osl all due at 0; the requests table and the engine."""
    w = Workload(np.zeros(n), np.full(n, isl), np.full(n, osl), source=f"burst {n} x {isl}/{osl}")
    rows, engine, _ = run_in_memory(sc, w)
    df = pd.DataFrame(rows, columns=REQUESTS.names)
    assert (df.status == "completed").all()
    return df, engine


def egress_GBps_per_gpu(isl: int, n: int = 12) -> float:
    df, eng = _burst(_scenario(), n, isl, 1 + 1)
    gpus = sum(i.gpus for i in eng.pools["prefill"])
    span = df.kv_transfer_end_s.max() - df.prefill_start_s.min()
    return eng.kv_bytes_transferred / gpus / span / 1e9


def ttl_batch(isl: int, osl: int, ttl_s: float, decode: str = DECODE) -> int:
    """Largest decode batch whose step at context isl + osl/2 takes at most ttl_s and whose KV fits."""
    plan = build_pools(_scenario(decode=decode))[1]
    ctx, total = isl + osl // 2, isl + osl
    lo, hi = 0, 8192
    while lo < hi:
        mid = (lo + hi + 1) // 2
        fits = mid * total <= plan.kv_capacity_tokens
        if fits and plan.cost.step(BatchShape(0, 0, 0.0, 0, mid, mid * ctx)).latency_s <= ttl_s:
            lo = mid
        else:
            hi = mid - 1
    assert lo >= 1, "the TTL admits no batch"
    return lo


def prefill_seconds(isl: int) -> float:
    """Time of one prompt alone on a prefill instance, in chunks of its token budget."""
    plan = build_pools(_scenario())[0]
    budget = plan.spec.max_num_batched_tokens
    t, past = 0.0, 0
    while past < isl:
        c = min(budget, isl - past)
        t += plan.cost.step(BatchShape(c, 1, c * (past + (c + 1) / 2.0), past, 0, 0)).latency_s
        past += c
    return t


def ingress_GBps_per_gpu(isl: int, osl: int, ttl_s: float, decode: str = DECODE) -> float:
    b = ttl_batch(isl, osl, ttl_s, decode)
    n = 3 * b
    # enough prefill instances to outrun the decode instance's b / (TTL·OSL) requests/s
    n_prefill = math.ceil(3.0 * b / (ttl_s * osl) * prefill_seconds(isl))
    df, eng = _burst(_scenario(n_prefill, b, decode), n, isl, osl)
    gpus = sum(i.gpus for i in eng.pools["decode"])
    per_request = eng.kv_bytes_transferred / n
    land = np.sort(df.kv_transfer_end_s.to_numpy())
    t_full, t_last = land[b - 1], land[-1]
    # decode is the bottleneck: the requests after the first batch waited for one of its slots
    waited = (df.kv_transfer_start_s - df.first_token_s > 1e-6).sum()
    assert waited >= 0.9 * (n - b), "prefill kept the decode instance full"
    return (land > t_full).sum() * per_request / gpus / (t_last - t_full) / 1e9


# ---------------------------------------------------------------------------- B-1
def test_b1_kv_bandwidth_per_gpu_at_16k_2k_is_in_the_band():
    egress = egress_GBps_per_gpu(16384)
    for ttl in (0.01, 0.02, 0.04):
        peak = max(egress, ingress_GBps_per_gpu(16384, 2048, ttl))
        assert 0.4 / 2 <= peak <= 1.2 * 2, f"TTL {ttl * 1e3:.0f} ms: max(egress, ingress) = {peak:.2f} GB/s/GPU"
        assert peak < 0.1 * NIC_GBps, "always far below the NIC"


def test_b1_kv_bandwidth_per_gpu_at_1m_2k_is_in_the_band():
    egress = egress_GBps_per_gpu(1_000_000, n=3)
    for ttl in (0.01, 0.02, 0.04):
        peak = max(egress, ingress_GBps_per_gpu(1_000_000, 2048, ttl, decode=HELIX))
        assert 1.0 / 2 <= peak <= 1.8 * 2, f"TTL {ttl * 1e3:.0f} ms: max(egress, ingress) = {peak:.2f} GB/s/GPU"
        assert peak < 0.1 * NIC_GBps


# ---------------------------------------------------------------------------- B-2
def test_b2_egress_per_prefill_gpu_falls_as_isl_grows():
    # the KV grows linearly with ISL but the prefill time superlinearly (attention)
    e = [egress_GBps_per_gpu(isl) for isl in (4096, 16384, 65536)]
    assert e[0] > e[1] > e[2], e


def test_b2_ingress_per_decode_gpu_is_flat_in_isl_and_inversely_proportional_to_osl():
    isls = (4096, 16384, 65536)
    by_osl = {osl: [ingress_GBps_per_gpu(isl, osl, 0.02) for isl in isls] for osl in (1024, 2048)}
    for osl, ing in by_osl.items():
        # the KV per request grows 16x from 4k to 64k; at a fixed TTL the batch shrinks with it, so the
        # ingress stays nearly flat: a log-log slope within ±0.3 (a fixed batch would give 1, ∝ ISL)
        slope = math.log(ing[-1] / ing[0]) / math.log(isls[-1] / isls[0])
        assert abs(slope) <= 0.3, f"OSL {osl}: ingress {ing} has slope {slope:.2f} in ISL"
    for a, b in zip(by_osl[1024], by_osl[2048]):
        assert a / b == pytest.approx(2.0, rel=0.15), "halving OSL doubles the ingress"


def test_b2_ingress_per_decode_gpu_falls_as_the_ttl_tightens():
    ing = [ingress_GBps_per_gpu(16384, 2048, ttl) for ttl in (0.04, 0.02, 0.01)]
    assert ing[0] > ing[1] > ing[2], ing
