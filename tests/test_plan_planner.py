"""The planner picks the cheapest deployment that meets the targets, on a space whose every number is
set by hand (the step latencies are injected; the sizing and queueing are checked against hand
arithmetic)."""

from __future__ import annotations

import math

import pytest

from simcluster.catalog.gpus import get_gpu
from simcluster.catalog.models import get_model
from simcluster.perf.layout import Layout
from simcluster.plan import planner
from simcluster.plan.analytic import Evaluator, _Config
from simcluster.plan.space import parse_spec

# step latencies (seconds) by (layout, sequences in the step)
TTL = {("tp=1", 8): 0.020, ("tp=1", 16): 0.050, ("tp=2", 8): 0.010, ("tp=2", 16): 0.015}
FTL = {("tp=1", 1): 0.100}


class _FakeCost:
    def __init__(self, short):
        self.short = short

    def step(self, shape):
        class T:
            pass

        t = T()
        if shape.prefill_tokens:
            t.latency_s = FTL[(self.short, shape.prefill_seqs)]
        else:
            t.latency_s = TTL[(self.short, shape.decode_seqs)]
        return t


class _FakeMem:
    kv_capacity_tokens = 10 ** 9
    weight_bytes_per_gpu = 1e9


@pytest.fixture
def hand_costs(monkeypatch):
    def build(self, p, layout):
        lay = Layout.parse(layout)
        short = f"tp={lay.tpa}"
        return _Config(_FakeCost(short), _FakeMem(), lay, get_model(p["model"]), get_gpu(p["gpu"]), 1.0)

    monkeypatch.setattr(Evaluator, "_build", build)


SPACE = {
    "name": "tiny", "gpu": "h200_sxm", "model": "llama-3.1-8b", "traffic": [{"isl": 1000, "osl": 11}],
    "mode": "disaggregated",
    "decode": {"layouts": ["tp=1", "tp=2"], "batch": [8, 16]},
    "prefill": {"layouts": ["tp=1"], "batch": [1]},
}
TRAFFIC = planner.Traffic(rate_per_s=10.0, isl=1000, osl=11)


def test_erlang_c_and_mdc_wait_by_hand():
    assert planner.erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = ρ
    assert planner.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # M/D/1 exactly: W = ρ·S / (2(1 − ρ))
    assert planner.mdc_wait(5.0, 0.1, 1) == pytest.approx(0.5 * 0.1 / (2 * 0.5))
    assert math.isinf(planner.mdc_wait(20.0, 0.1, 1))


def test_cheapest_feasible_deployment(hand_costs):
    res = planner.plan(parse_spec(SPACE), TRAFFIC, planner.SLO(ttft_s=0.5, tpot_s=0.040), max_utilization=0.85)
    w = res["winner"]
    # decode tp=1 batch 8: 8/(0.02·10) = 40 requests/s -> 1 instance; tp=1 batch 16 misses TPOT (50 ms)
    # prefill tp=1 batch 1: 10 requests/s -> ⌈10/8.5⌉ = 2 instances; M/D/2 wait at load 1: 1/60 s
    assert (w["mode"], w["n_prefill"], w["n_decode"], w["decode_label"], w["decode_batch"]) == (
        "disaggregated", 2, 1, "tp=1", 8)
    assert w["gpus"] == 3
    assert w["cost_per_hour_usd"] == pytest.approx(3 * get_gpu("h200_sxm").price_per_hour_usd)
    assert w["ttft_s"] == pytest.approx(0.1 + 1 / 60)
    assert w["tpot_s"] == pytest.approx(0.02)
    assert w["e2e_s"] == pytest.approx(0.1 + 1 / 60 + 10 * 0.02)
    # runners-up: the 4-GPU deployments, the faster decode first on a tie
    r = res["runners_up"]
    assert [x["gpus"] for x in r[:2]] == [4, 4]
    assert (r[0]["decode_label"], r[0]["decode_batch"]) == ("tp=2", 8)
    # the rejected candidate says why and by how much
    miss = [x for x in res["rejected"] if x["decode_batch"] == 16 and "tp=1" in x["decode_label"]]
    assert miss and miss[0]["reason"] == "TPOT 50.0 ms > SLO 40.0 ms (+25 %)"


def test_e2e_target_changes_the_winner(hand_costs):
    res = planner.plan(parse_spec(SPACE), TRAFFIC, planner.SLO(ttft_s=0.5, tpot_s=0.040, e2e_s=0.25))
    w = res["winner"]
    # tp=1 batch 8 gives E2E 0.317 s; tp=2 batch 8 gives 0.117 + 10·0.01 = 0.217 s
    assert (w["decode_label"], w["decode_batch"], w["gpus"]) == ("tp=2", 8, 4)
    assert any("E2E" in (x["reason"] or "") for x in res["rejected"])


def test_queueing_adds_prefill_instances_and_price_override(hand_costs):
    res = planner.plan(parse_spec(SPACE), TRAFFIC, planner.SLO(ttft_s=0.11, tpot_s=0.040), price_per_gpu_hour=2.0)
    w = res["winner"]
    # two prefill instances wait 16.7 ms (TTFT 117 ms > 110 ms); three wait 2.3 ms
    assert w["n_prefill"] == 3
    assert w["ttft_s"] == pytest.approx(0.1 + 0.5 * (0.1875 / 2.0625) * 0.1 / (3 * (2 / 3)))
    assert w["cost_per_hour_usd"] == pytest.approx(4 * 2.0)


def test_no_deployment_meets_impossible_targets(hand_costs):
    res = planner.plan(parse_spec(SPACE), TRAFFIC, planner.SLO(ttft_s=0.05, tpot_s=0.001))
    assert res["winner"] is None
    cats = res["rejected_by_reason"]
    assert cats.get("TPOT over target") and cats.get("FTL over the limit")
    assert "NO DEPLOYMENT" in planner.format_plan(res)


def test_default_space_plan_runs_on_the_real_cost_model():
    space = planner.default_space("llama-3.1-8b", ["h100_sxm"])
    res = planner.plan(space, planner.Traffic(5.0, 1024, 128), planner.SLO(ttft_s=1.0, tpot_s=0.03))
    assert res["winner"] is not None
    w = res["winner"]
    assert w["tpot_s"] <= 0.03 and w["ttft_s"] <= 1.0
    # nothing cheaper meets the targets
    assert all(r["cost_per_hour_usd"] >= w["cost_per_hour_usd"] for r in res["runners_up"])
