"""The paper studies on reduced grids (SEED-NOTES §8): Helix H-7..H-10, Beyond the Buzz B-3, B-4, B-6.

Each test evaluates a small slice of the matching scenarios/studies/*.yaml (the layouts that make the
frontiers there) and asserts the paper's claim where our model reproduces it: NUM bands for H-7/H-8/H-9,
SHAPE for the rest. Claims we do not reproduce are strict xfails with the figure we get, so a change
that moves them is noticed (docs/studies.md discusses them).
"""

from __future__ import annotations

import pandas as pd
import pytest

from simcluster.plan.ratematch import ctx_gen_ratio
from simcluster.plan.space import parse_spec
from simcluster.plan.studies import (disagg_vs_colocated_study, fixed_ratio_study, front, helix_compare, hop_b_drop,
                                     ratio_study)
from simcluster.plan.sweep import run_sweep

POW2 = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def _sweep(tmp_path, spec: dict, name="s") -> pd.DataFrame:
    run_sweep(parse_spec(spec), tmp_path / name, batch_size=1000)
    return pd.read_parquet(tmp_path / name / "points")


def _helix_spec(model, layouts, **knobs):
    return {"name": "helix", "gpu": "gb200", "model": model,
            "formats": {"weights": "fp4", "kv": "fp4", "activations": "fp4"}, "framework": "ideal",
            "knobs": knobs, "traffic": [{"isl": 1_000_000, "osl": 8192}], "mode": "decode",
            "decode": {"context_tokens": 1_000_000, "layouts": layouts, "batch": POW2, "gpus": {"max": 64}}}


@pytest.fixture(scope="module")
def dsr1(tmp_path_factory):
    layouts = ["tp=64,ep=64", "tp=16,ep=16", "dp=64,ep=64", "kvp=64,tpa=1,ep=64", "kvp=32,tpa=1,ep=32"]
    return _sweep(tmp_path_factory.mktemp("dsr1"), _helix_spec("deepseek-r1", layouts, hop_b=[True, False]))


def test_helix_dsr1_interactivity_h7(dsr1):
    r = helix_compare(dsr1[dsr1["hop_b"]])
    assert 1.3 <= r["max_interactivity_ratio"] <= 1.8, r["max_interactivity_ratio"]


def test_helix_dsr1_batch_scalability_h8(dsr1):
    r = helix_compare(dsr1[dsr1["hop_b"]])
    # at the baseline's tightest TTL Helix serves 16-64x the tokens/s/GPU (paper: 32x) ...
    assert 16 <= r["throughput_ratio_at_baseline_floor"] <= 64, r["throughput_ratio_at_baseline_floor"]
    assert r["concurrency_at_baseline_floor"]["helix"] >= 16 * r["concurrency_at_baseline_floor"]["baseline"]
    # ... and the advantage is largest there (SHAPE)
    assert r["ratio_peak"]["at_baseline_floor"]


def test_helix_dsr1_hop_b_matters_little_h10(dsr1):
    d = hop_b_drop(dsr1[dsr1["hop_b"]], dsr1[~dsr1["hop_b"]])
    assert d["max_drop"] is not None and d["max_drop"] <= 0.03


@pytest.fixture(scope="module")
def llama405(tmp_path_factory):
    layouts = ["tp=8", "tp=16", "tp=32", "tp=64", "kvp=4,tpa=8", "kvp=8,tpa=8"]
    return _sweep(tmp_path_factory.mktemp("l405"), _helix_spec("llama-3.1-405b", layouts, hop_b=[True, False],
                                                                exchange_model=["batched", "per_request"]))


def test_helix_llama405b_h9_batched_exchange(llama405):
    g = llama405[llama405["hop_b"] & (llama405["exchange_model"] == "batched")]
    r = helix_compare(g)
    assert 1.05 <= r["max_interactivity_ratio"] <= 1.25, r["max_interactivity_ratio"]
    assert 3 <= r["throughput_ratio_at_baseline_floor"] <= 5, r["throughput_ratio_at_baseline_floor"]


@pytest.mark.xfail(strict=True, reason="per-request exchange (the paper's lockstep without HOP-B): up to 36 % "
                   "here, 42 % in the full study (the paper: 12 %); batched exchange: 0 %. docs/studies.md, H-10.")
def test_helix_llama405b_hop_b_drop_h10(llama405):
    g = llama405[llama405["exchange_model"] == "per_request"]
    d = hop_b_drop(g[g["hop_b"]], g[~g["hop_b"]])
    assert 0.08 <= d["max_drop"] <= 0.16, d["max_drop"]


def test_helix_llama405b_hop_b_helps_under_per_request_exchange(llama405):
    g = llama405[llama405["exchange_model"] == "per_request"]
    d = hop_b_drop(g[g["hop_b"]], g[~g["hop_b"]])
    assert d["max_drop"] > 0.0  # overlap never hurts and does help when each request pays α


def test_hop_b_drop_reads_the_frontiers_as_curves():
    """A 0.1 % throughput loss is a 0.1 % drop at fixed throughput, not a jump to the next frontier point."""
    pts = [(2.0, 160.0), (15.0, 120.0), (38.0, 38.0)]
    on = pd.DataFrame([{"status": "ok", "layout_kind": "helix", "tokens_per_s_per_gpu": x,
                        "tokens_per_s_per_user": y} for x, y in pts])
    off = on.assign(tokens_per_s_per_gpu=on["tokens_per_s_per_gpu"] * 0.999)
    d = hop_b_drop(on, off)
    assert d["unreachable_points"] == 1  # the on curve's last point lies beyond the off curve
    assert 0.0 <= d["max_drop"] < 0.002, d["drops"]  # the step reading said 1 - 38/120 = 68 %


BTB = {"gpu": "gb200", "formats": {"weights": "nvfp4", "kv": "nvfp4", "activations": "nvfp4"}, "framework": "trtllm",
       "cost": "calibrated",
       "prefill": {"layouts": ["tp=1", "tp=1,pp=8", "tp=8"], "batch": [1, 8]}}


@pytest.fixture(scope="module")
def ratio_points(tmp_path_factory):
    spec = {**BTB, "name": "b3", "model": ["deepseek-r1", "llama-3.1-405b", "llama-3.1-70b", "llama-3.1-8b"],
            "traffic": [{"isl": 16384, "osl": 2048}], "mode": "disaggregated", "ratio": ["rate_matched", 3.5, 0.5],
            "decode": {"layouts": ["tp=8", "tp=32", "dp=32,ep=32", "tp=16,ep=16"],
                       "batch": [1, 4, 16, 64, 128, 256, 1024, 4096]}}
    return _sweep(tmp_path_factory.mktemp("b3"), spec)


def test_rate_matched_ratio_is_d_over_p(ratio_points):
    ok = ratio_points[(ratio_points["status"] == "ok") & (ratio_points["ratio"] == "rate_matched")]
    for _, r in ok.iterrows():
        assert r["ctx_gen_ratio"] == pytest.approx(ctx_gen_ratio(r["prefill_requests_per_s_per_gpu"],
                                                                 r["decode_requests_per_s_per_gpu"]))


def test_optimal_ratio_falls_as_interactivity_rises_b3(ratio_points):
    res = ratio_study(ratio_points)
    by = {m["model"]: m for m in res["models"]}
    for m in by.values():  # SHAPE: non-increasing along the frontier, low → high tokens/s/user
        assert m["non_increasing_fraction"] == 1.0, m["model"]
        assert m["ratio_low_interactivity"] > m["ratio_high_interactivity"]
    # larger dense model needs more prefill GPUs per decode GPU at the relaxed end (70B 0.95 > 8B 0.41)
    assert by["llama-3.1-70b"]["ratio_low_interactivity"] > by["llama-3.1-8b"]["ratio_low_interactivity"]


@pytest.fixture(scope="module")
def relaxed_sweep(tmp_path_factory):
    """The layouts of btb_ratio_16k_2k.yaml that make its relaxed (highest-throughput) end, rate matched
    and at the fixed ratios of btb_fixed_ratio.yaml."""
    spec = {**BTB, "name": "b3r", "model": ["deepseek-r1", "llama-3.1-405b", "llama-3.1-70b", "llama-3.1-8b"],
            "traffic": [{"isl": 16384, "osl": 2048}], "mode": "disaggregated", "ratio": ["rate_matched", 3.5, 0.5],
            "prefill": {"layouts": ["tp=1", "tp=2", "tp=1,pp=2", "tp=1,pp=4"], "batch": [1, 2, 4, 8]},
            "decode": {"layouts": ["tp=1", "tp=2", "tp=2,pp=2", "tp=4", "tp=4,pp=2", "dp=16,ep=16", "dp=32,ep=32"],
                       "batch": {"start": 128, "stop": 8192, "factor": 1.4142}}}
    return _sweep(tmp_path_factory.mktemp("b3r"), spec)


@pytest.fixture(scope="module")
def relaxed_points(relaxed_sweep):
    return {m["model"]: m for m in ratio_study(relaxed_sweep)["models"]}


def test_optimal_ratio_at_the_relaxed_end_within_x2_b3(relaxed_points):
    # paper (Fig. 9, lowest interactivity): DSR1 3.64, 405B 2.07, 70B 0.95, 8B 0.42; B-3 asks for x2
    for model, paper in (("deepseek-r1", 3.64), ("llama-3.1-405b", 2.07), ("llama-3.1-70b", 0.95),
                         ("llama-3.1-8b", 0.42)):
        ours = relaxed_points[model]["ratio_low_interactivity"]
        assert paper / 2 <= ours <= paper * 2, (model, ours, paper)


def test_larger_models_need_more_prefill_at_the_relaxed_end_b3(relaxed_points):
    # the paper's order at the relaxed end: DSR1 3.64 > 405B 2.07 > 70B 0.95 > 8B 0.42
    ends = [relaxed_points[m]["ratio_low_interactivity"]
            for m in ("deepseek-r1", "llama-3.1-405b", "llama-3.1-70b", "llama-3.1-8b")]
    assert ends == sorted(ends, reverse=True), ends


@pytest.fixture(scope="module")
def relaxed_fixed(relaxed_sweep):
    return {g["model"]: g["ratios"] for g in fixed_ratio_study(relaxed_sweep)["groups"]}


def test_fixed_ratio_half_plateaus_near_042_at_the_relaxed_end_b4(relaxed_fixed):
    # B-4: a fixed ratio of 0.5 reaches ~0.42 of the best rate-matched throughput (band +-0.1)
    ours = relaxed_fixed["deepseek-r1"]["0.5"]["relaxed_end_normalised"]
    assert 0.32 <= ours <= 0.52, ours


@pytest.mark.xfail(strict=True, reason="ratio 3.5 reaches 0.68 of the best at the relaxed end (paper 0.971): our "
                   "optimal ratio there is 2.06, not ~3.6 (docs/studies.md, B-4)")
def test_fixed_ratio_three_and_a_half_near_optimal_at_the_relaxed_end_b4(relaxed_fixed):
    ours = relaxed_fixed["deepseek-r1"]["3.5"]["relaxed_end_normalised"]
    assert 0.871 <= ours <= 1.0, ours


@pytest.mark.xfail(strict=True, reason="every frontier ends at batch 1, where the ratio is 0.002-0.005 "
                   "(paper 0.06-0.45): docs/studies.md, B-3")
def test_optimal_ratio_at_the_tight_end_within_x2_b3(ratio_points):
    res = ratio_study(ratio_points)
    for m in res["models"]:
        assert m["high_within_x2"], (m["model"], m["ratio_high_interactivity"])


@pytest.mark.xfail(strict=True, reason="span order DSR1 > 405B > 8B > 70B here (405B > 70B > DSR1 > 8B in the "
                   "full study), set by where each frontier ends: docs/studies.md, B-3")
def test_optimal_ratio_span_order_b3(ratio_points):
    res = ratio_study(ratio_points)
    assert res["span_order"] == ["deepseek-r1", "llama-3.1-405b", "llama-3.1-70b", "llama-3.1-8b"], res["span_order"]


def test_dynamic_ratio_beats_fixed_ratios_everywhere_b4(ratio_points):
    res = fixed_ratio_study(ratio_points)
    assert res["groups"]
    for g in res["groups"]:
        for r in g["ratios"].values():
            assert r["dynamic_at_least_as_good_everywhere"], g["model"]
        # a fixed 3.5 collapses at the tight end, where the optimal ratio is tiny (SHAPE of B-4) ...
        assert g["ratios"]["3.5"]["tight_end_vs_dynamic"] < 0.5
        # ... but against the dynamic frontier at the same TTL never below 1/(1+R): a fixed R >= r keeps
        # d requests/s per decode GPU and spends (1+R) GPUs on them where rate matching spends (1+r)
        for ratio, r in g["ratios"].items():
            assert r["tight_end_vs_dynamic"] >= 1 / (1 + float(ratio)) - 1e-9, (ratio, r["tight_end_vs_dynamic"])
        # on the paper's axis (everything normalised to the best dynamic throughput) it is < 0.10 (paper 0.045)
        assert g["ratios"]["3.5"]["tight_end_normalised"] < 0.10, g["model"]


@pytest.fixture(scope="module")
def coloc_points(tmp_path_factory):
    spec = {**BTB, "name": "b6", "model": ["deepseek-r1", "llama-3.1-8b", "llama-3.1-405b"],
            "traffic": [{"isl": 16384, "osl": 2048}, {"isl": 1024, "osl": 32768}, {"isl": 4096, "osl": 256}],
            "mode": ["disaggregated", "colocated"],
            "decode": {"layouts": ["tp=8", "tp=32", "dp=32,ep=32", "tp=16,ep=16"],
                       "batch": [1, 4, 16, 64, 256, 1024], "token_budget": [512, 2048, 8192]}}
    return _sweep(tmp_path_factory.mktemp("b6"), spec)


def test_disaggregation_gains_most_on_prefill_heavy_traffic_and_large_models_b6(coloc_points):
    res = {(g["model"], g["isl"], g["osl"]): g for g in disagg_vs_colocated_study(coloc_points)["groups"]}
    # prefill-heavy 16k/2k gains more than generation-heavy 1k/32k (DeepSeek-R1)
    assert res[("deepseek-r1", 16384, 2048)]["max_gain"] > 2 * res[("deepseek-r1", 1024, 32768)]["max_gain"]
    # larger models gain more than the 8B at 4k/256
    assert res[("llama-3.1-405b", 4096, 256)]["max_gain"] > res[("llama-3.1-8b", 4096, 256)]["max_gain"]


def test_disaggregation_gain_peaks_at_medium_latency_dsr1_b6(tmp_path):
    """DeepSeek-R1 16k/2k with the EP layouts of the study: the gain peaks in the medium-latency third."""
    spec = {**BTB, "name": "b6d", "model": "deepseek-r1", "traffic": [{"isl": 16384, "osl": 2048}],
            "mode": ["disaggregated", "colocated"],
            "prefill": {"layouts": ["tp=1,pp=8", "tp=8"], "batch": [1, 8]},
            "decode": {"layouts": [{"dp": [8, 16, 32, 64], "ep": [8, 16, 32, 64]},
                                   {"tp": [8, 16, 32, 64], "ep": [8, 16, 32, 64]}],
                       "batch": {"start": 1, "stop": 8192, "factor": 2}, "token_budget": [512, 2048, 8192]}}
    g = disagg_vs_colocated_study(_sweep(tmp_path, spec))["groups"][0]
    assert g["peak_third"] == "medium", g["gain_by_third"]
    assert g["gain_by_third"]["tight"] < g["gain_by_third"]["medium"]


def test_frontier_helper_sorts_by_interactivity(dsr1):
    f = front(dsr1)
    assert list(f["tokens_per_s_per_user"]) == sorted(f["tokens_per_s_per_user"])
