"""Rate matching and autoscaling: the balance equation by hand, and the control loops in closed runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simcluster.config.scenario import Scenario
from simcluster.sim.capacity import balance
from simcluster.sim.runner import run_scenario
from simcluster.workload.workload import Workload

from simhelp import merged

DISAGG_70B = {
    "name": "control",
    "cluster": {"gpu": "h200_sxm", "nodes": 2},
    "model": {"name": "llama-3.1-70b", "weights": "fp8", "kv_cache": "fp8"},
    "serving": {"mode": "disaggregated"},
    "pools": {"prefill": {"instances": 4, "layout": "tp=2"}, "decode": {"instances": 4, "layout": "tp=2"}},
    "cost": {"source": "roofline"},
    "workload": {"kind": "synthetic", "num_requests": 10, "arrival": {"process": "poisson", "rate_per_s": 1.0},
                 "input_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 10}},
    "output": {"steps": False},
}


def _run(tmp_path, data, workload=None, name="run"):
    sc = Scenario.model_validate(data)
    out = tmp_path / name
    s = run_scenario(sc, tmp_path, out, workload=workload)
    return s, pd.read_parquet(out / "requests.parquet"), pd.read_parquet(out / "timeline.parquet")


def _series(tl, entity, metric):
    x = tl[(tl.entity == entity) & (tl.metric == metric)]
    return x.time_s.to_numpy(), x.value.to_numpy()


# ---------------------------------------------------------------------- the balance equation
def test_balance_equal_instances_is_the_balance_equation():
    # P = 2 req/s per prefill instance, D = 1 per decode instance, 2 GPUs each, 12 GPUs:
    # n_p·P = n_d·D with n_p + n_d = 6 gives n_p = 2, n_d = 4 (both pools at 4 req/s).
    assert balance(2.0, 1.0, 2, 2, 12) == (2, 4)
    # the mirror case
    assert balance(1.0, 2.0, 2, 2, 12) == (4, 2)


def test_balance_unequal_instance_sizes_by_hand():
    # P = 3 req/s on 1 GPU, D = 1 req/s on 4 GPUs, 20 GPUs. Continuous balance: prefill GPUs /
    # decode GPUs = (D/4)/(P/1) = 1/12 -> 1.54 : 18.46 GPUs. Whole instances: n_d ≤ 4 (16 GPUs), so
    # the throughput is at most 4 req/s, reached with n_p = 2 (6 ≥ 4); n_p = 1 gives min(3, 3) = 3.
    # Fewest GPUs at 4 req/s: (2, 4) = 18 GPUs.
    assert balance(3.0, 1.0, 1, 4, 20) == (2, 4)


def test_balance_never_starves_a_pool():
    n_p, n_d = balance(1000.0, 0.001, 1, 1, 8)
    assert n_p >= 1 and n_d >= 1 and n_p + n_d <= 8


# ---------------------------------------------------------------------- static optimum in a run
def test_static_optimal_split_with_constant_steps_matches_the_hand_computed_balance(tmp_path):
    # Constant 10 ms steps. ISL 8000 fills the 8192-token budget with one prompt: P = 1/0.01 =
    # 100 req/s per prefill instance. Decode: KV of 100,000 tokens holds 100000 // 8005 = 12
    # sequences: D = 12 / (0.01 × (5 − 1)) = 300 req/s. Eight 1-GPU instances: n_p·100 = n_d·300
    # with n_p + n_d = 8 -> (6, 2), both pools at 600 req/s.
    data = merged(DISAGG_70B, model={"name": "llama-3.1-8b", "weights": "fp8", "kv_cache": "fp8"},
                  cluster={"gpu": "h200_sxm", "nodes": 1},
                  serving={"mode": "disaggregated", "kv_capacity_tokens": 100_000, "prefix_caching": False},
                  pools={"prefill": {"instances": 4, "layout": "tp=1"}, "decode": {"instances": 4, "layout": "tp=1"}},
                  cost={"source": "constant", "constant_step_s": 0.01},
                  rate_matching={"policy": "static_optimal", "isl": 8000, "osl": 5},
                  workload={**DISAGG_70B["workload"], "input_tokens": {"dist": "fixed", "value": 8000},
                            "output_tokens": {"dist": "fixed", "value": 5}})
    s, req, _ = _run(tmp_path, data)
    roles = [v["role"] for v in s["instances"].values()]
    assert (roles.count("prefill"), roles.count("decode")) == (6, 2)
    assert (req.status == "completed").all()


def test_fixed_ratio_splits_the_configured_total(tmp_path):
    data = merged(DISAGG_70B, rate_matching={"policy": "fixed", "ratio": 3.0})
    s, _, _ = _run(tmp_path, data)
    roles = [v["role"] for v in s["instances"].values()]
    assert (roles.count("prefill"), roles.count("decode")) == (6, 2)  # 8 instances at 3:1


# ---------------------------------------------------------------------- dynamic rate matching
def _shifting_mix(rate: float, half_s: float, seed: int = 2) -> Workload:
    """First half: long prompts, short answers (prefill-bound); second half: the reverse."""
    rng = np.random.default_rng(seed)
    a = np.sort(rng.uniform(0.0, 2 * half_s, int(2 * rate * half_s)))
    first = a < half_s
    return Workload(a, np.where(first, 3000, 200), np.where(first, 30, 600))


def test_dynamic_rate_matching_beats_a_fixed_ratio_when_the_mix_shifts(tmp_path):
    w = _shifting_mix(rate=20.0, half_s=300.0)
    common = dict(rate_matching={"policy": "fixed", "ratio": 1.0, "interval_s": 30, "window_s": 60},
                  autoscaling={"scrape_delay_s": 10})
    fixed, req_f, _ = _run(tmp_path, merged(DISAGG_70B, **common), w, "fixed")
    dyn_cfg = merged(DISAGG_70B, **common)
    dyn_cfg["rate_matching"]["policy"] = "dynamic"
    dyn, req_d, tl = _run(tmp_path, dyn_cfg, w, "dynamic")
    for req in (req_f, req_d):  # nothing lost while instances drain and change role
        assert len(req) == len(w) and (req.status == "completed").all()
    assert dyn["control"]["rate_matching_moves"] > 0
    # the prefill pool grows while prompts are long, and gives instances back when answers are
    t, n_p = _series(tl, "pool:prefill", "instances_serving")
    assert n_p[(t > 150) & (t < 300)].max() > 4
    assert n_p[t > 500].min() < 4
    assert dyn["slo"]["goodput_requests_per_s"] > 2 * fixed["slo"]["goodput_requests_per_s"]
    assert dyn["e2e_s"]["mean"] < fixed["e2e_s"]["mean"]


# ---------------------------------------------------------------------- autoscaling
def _step(low: float, high: float, t_step: float, t_end: float, seed: int = 1, isl=1000, osl=200):
    rng = np.random.default_rng(seed)
    a1 = np.cumsum(rng.exponential(1 / low, int(low * t_step * 1.2)))
    a1 = a1[a1 < t_step]
    a2 = t_step + np.cumsum(rng.exponential(1 / high, int(high * (t_end - t_step) * 1.2)))
    a2 = a2[a2 < t_end]
    a = np.concatenate([a1, a2])
    return Workload(a, np.full(len(a), isl), np.full(len(a), osl))


def _scaling(policy: str, **extra):
    return merged(DISAGG_70B, cluster={"gpu": "h200_sxm"},
                  pools={"prefill": {"instances": 1, "layout": "tp=2"}, "decode": {"instances": 1, "layout": "tp=2"}},
                  autoscaling={"policy": policy, "interval_s": 20, "scrape_delay_s": 10, "window_s": 60,
                               "cooldown_s": 60, "prefill": {"min": 1, "max": 6}, "decode": {"min": 1, "max": 6},
                               **extra})


@pytest.mark.parametrize("policy", ["throughput", "queue", "slo"])
def test_autoscaling_follows_a_step_with_the_provisioning_delay(tmp_path, policy):
    t_step = 300.0
    w = _step(2.0, 20.0, t_step, 900.0)
    data = _scaling(policy)
    s, req, tl = _run(tmp_path, data, w)
    assert len(req) == len(w) and (req.status == "completed").all()
    new = [v for v in s["instances"].values() if v["started_s"] > 0]
    assert new, "the pools grow after the step"
    # nothing is started before the step could be seen (the controller never sees the future)
    assert min(v["started_s"] for v in new) > t_step
    # every new instance serves exactly node allocation + weights / storage bandwidth + warm-up later;
    # Llama-3.1-70B in FP8 is ~70.6e9 parameters × 1 byte (the model card's 70.6 B)
    pv = Scenario.model_validate(data).provisioning
    for v in new:
        if v["serving_s"] is None:
            continue
        delay = v["serving_s"] - v["started_s"]
        weights_s = delay - pv.node_allocation_s - pv.warmup_s
        assert weights_s * pv.storage_GBps * 1e9 == pytest.approx(70.6e9, rel=0.05)
    # capacity follows: more prefill instances serve after the step than before
    t, n = _series(tl, "pool:prefill", "instances_serving")
    assert n[t < t_step].max() == 1 and n[t > t_step + 200].max() >= 2
    # GPU-hours follow the GPUs held, below the whole cluster's
    assert s["gpu_hours"] == pytest.approx(s["gpu_hours_allocated"])
    assert s["gpu_hours_allocated"] < s["gpu_hours_cluster"]


def test_scale_down_drains_without_losing_a_request(tmp_path):
    # traffic rises and falls: the pools shrink by draining; every request completes
    rng = np.random.default_rng(5)
    rate = lambda t: 20.0 if 200 <= t < 600 else 2.0  # noqa: E731
    a, t = [], 0.0
    while t < 1200:
        t += rng.exponential(1 / rate(t))
        a.append(t)
    a = np.array(a[:-1])
    w = Workload(a, np.full(len(a), 1000), np.full(len(a), 200))
    s, req, tl = _run(tmp_path, _scaling("throughput"), w)
    assert len(req) == len(w) and (req.status == "completed").all()
    assert s["control"]["autoscaling_scale_downs"] > 0
    states = [v["state"] for v in s["instances"].values()]
    assert "stopped" in states
    t, n = _series(tl, "pool:prefill", "instances_draining")
    assert n.max() >= 1 or "stopped" in states


def test_gpu_pool_first_fit_and_spread_by_rack():
    from simcluster.sim.gpupool import GPUPool

    pool = GPUPool(32, 8, 8)  # four 8-GPU domains; racks of two domains: {0, 1}, {2, 3}
    a = pool.allocate(4)
    b = pool.allocate(4)
    assert a == [0, 1, 2, 3] and b == [4, 5, 6, 7]  # first fit fills domain 0
    c = pool.allocate(4, spread_by=lambda d: d // 2)
    assert c == [16, 17, 18, 19]  # rack 1 has 16 free GPUs, rack 0 only 8
    pool.fail(8)
    d = pool.allocate(8)
    assert d is not None and 8 not in d  # a failed GPU is never handed out
    pool.release(a)
    assert pool.allocate(4) == [0, 1, 2, 3]
