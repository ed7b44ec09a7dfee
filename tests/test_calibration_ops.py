"""Calibrated op costs from the shipped artefacts: sanity figures, exactness, shape, fallbacks.

These read only what the package ships (``simcluster/data/calibration``), so they run on a fresh
machine without ``../shared``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from simcluster.catalog.gpus import GPUS
from simcluster.errors import UserError
from simcluster.perf.calibration import CalibratedOps, source_label
from simcluster.perf.calibration.collectives import alpha_beta_s, traffic_factor
from simcluster.perf.calibration.condense import ARTEFACT_DIR, shipped

MIB = 2**20


@pytest.fixture(scope="module")
def h100() -> CalibratedOps:
    return CalibratedOps(GPUS["h100_sxm"], "vllm")


def test_h100_bf16_8192_cubed_gemm_runs_at_about_713_tflops(h100):
    t = h100.gemm(8192, 8192, 8192, "bf16")
    assert 2 * 8192**3 / t / 1e12 == pytest.approx(713, rel=0.02)
    assert h100.last_source == "measured"


def test_h200_bf16_single_token_gemm_reads_weights_at_about_3_8_tbps():
    ops = CalibratedOps(GPUS["h200_sxm"], "vllm")
    t = ops.gemm(1, 8192, 8192, "bf16")
    assert 8192 * 8192 * 2 / t / 1e12 == pytest.approx(3.8, rel=0.03)


def test_h100_eight_gpu_all_reduce_of_512_mb_reaches_about_445_gbps_bus_bandwidth(h100):
    size = 512 * MIB
    t = h100.collective("all_reduce", size, 8, "nvlink")
    busbw = size / t * traffic_factor("all_reduce", 8)
    assert busbw / 1e9 == pytest.approx(445, rel=0.02)
    assert h100.last_source == "measured"
    # the fitted α–β model alone lands near the same figure
    fit = shipped().collectives["nccl"]["h100_sxm"]["all_reduce"]["per_n"]["8"]
    t_ab = float(alpha_beta_s("all_reduce", size, 8, fit["alpha_s"], fit["busbw_Bps"]))
    assert size / t_ab * traffic_factor("all_reduce", 8) / 1e9 == pytest.approx(445, rel=0.05)


def _shipped_rows(family: str, system: str, framework: str, n: int = 200):
    frame, _ = shipped().table(family, system, framework)
    return frame.sample(n=min(n, len(frame)), random_state=0)


def test_lookups_at_measured_points_return_the_stored_measurement(h100):
    rows = _shipped_rows("gemm", "h100_sxm", "vllm")
    for r in rows.itertuples():
        fmt = {"bfloat16": "bf16"}.get(r.dtype, r.dtype)
        assert h100.gemm(r.m, r.n, r.k, fmt) == pytest.approx(r.latency_ms * 1e-3, rel=1e-9)
        assert h100.last_source == "measured"
    rows = _shipped_rows("attention_decode", "h100_sxm", "vllm")
    for r in rows.itertuples():
        kv = {"bfloat16": "bf16"}[r.kv_dtype] if r.kv_dtype == "bfloat16" else r.kv_dtype
        t = h100.attention_decode(r.batch, r.ctx, r.q_heads, r.kv_heads, r.head_dim, kv)
        assert t == pytest.approx(r.latency_ms * 1e-3, rel=1e-9)


def test_vectorised_and_scalar_lookups_agree(h100):
    rng = np.random.default_rng(3)
    m = rng.integers(1, 50_000, 300)
    k = rng.choice([64, 4096, 7168, 9000, 70_000], 300)
    vec = h100.gemm_many(m, 4096, k, "fp8")
    codes = h100.last_sources.copy()
    for i in range(len(m)):
        assert h100.gemm(int(m[i]), 4096, int(k[i]), "fp8") == pytest.approx(vec[i], rel=1e-12)
        assert h100.last_source == h100.explain("gemm", int(m[i]), 4096, int(k[i]), "fp8")["source"]
    assert {source_label(c) for c in codes} <= {"measured", "interpolated", "extrapolated(roofline×eff)"}


def test_gemm_latency_grows_with_m_wherever_the_measurements_do(h100):
    """Between two measured m whose latencies rise, every interpolated m in between rises too."""
    frame, _ = shipped().table("gemm", "h100_sxm", "vllm")
    bf16 = frame[(frame["dtype"] == "bfloat16") & frame["n"].isin([1024, 4096, 16384]) & frame["k"].isin([1024, 8192])]
    segments = 0
    for (n, k), g in bf16.groupby(["n", "k"]):
        g = g.sort_values("m")
        ms, lat = g["m"].to_numpy(), g["latency_ms"].to_numpy()
        for i in range(len(ms) - 1):
            if lat[i + 1] < lat[i] or ms[i + 1] - ms[i] < 2:
                continue
            m = np.linspace(ms[i], ms[i + 1], 25)
            t = h100.gemm_many(m, n, k, "bf16")
            assert np.all(
                np.diff(t) >= -1e-15 * t[:-1]
            ), f"GEMM latency falls between m={ms[i]} and {ms[i + 1]} (n={n}, k={k})"
            segments += 1
    assert segments >= 50


def test_outside_the_tables_the_answer_is_continuous_and_labelled_extrapolated(h100):
    # decode context beyond the last measured 131072 tokens
    at = h100.attention_decode(8, 131072, 32, 8, 128, "bf16")
    just_past = h100.attention_decode(8, 131200, 32, 8, 128, "bf16")
    assert h100.last_source == "extrapolated(roofline×eff)"
    assert abs(just_past / at - 1) < 0.30
    assert h100.attention_decode(8, 1_000_000, 32, 8, 128, "bf16") > 5 * at
    # GEMM beyond the largest measured m
    at = h100.gemm(32768, 4096, 4096, "bf16")
    assert abs(h100.gemm(33000, 4096, 4096, "bf16") / at - 1) < 0.30
    assert h100.last_source == "extrapolated(roofline×eff)"
    # MoE beyond the largest measured token count
    at = h100.moe(16384, 7168, 2048, 8, 256, 1, 8, "fp8_block")
    assert abs(h100.moe(16500, 7168, 2048, 8, 256, 1, 8, "fp8_block") / at - 1) < 0.30
    assert h100.last_source == "extrapolated(roofline×eff)"


def test_gb200_collectives_beyond_four_gpus_extend_by_alpha_beta_without_a_jump():
    ops = CalibratedOps(GPUS["gb200"], "trtllm")
    for size in (64 * 1024, 64 * MIB):
        at4 = ops.collective("all_reduce", size, 4, "nvlink")
        at5 = ops.collective("all_reduce", size, 5, "nvlink")
        assert ops.last_source == "extrapolated(alpha-beta)"
        assert 1.0 <= at5 / at4 < 1.30
        at72 = ops.collective("all_reduce", size, 72, "nvlink")
        assert at72 > at5
    assert ops.collective("all_reduce", 64 * MIB, 4, "nvlink") > 0


def test_every_answer_says_where_it_came_from(h100):
    h100.gemm(100, 4096, 4096, "bf16")
    assert h100.last_source == "interpolated"
    h100.mla_decode(64, 4096, 16, "fp8")  # vLLM ships only whole-module MLA tables
    assert h100.last_source == "measured(other framework)" and "trtllm" in h100.last_detail
    h100.gemm(128, 4096, 4096, "nvfp4")  # no FP4 tensor cores on Hopper, nothing measured
    assert h100.last_source == "extrapolated(roofline×eff)"
    h100.collective("all_reduce", 1e6, 16, "ib")
    assert h100.last_source == "datasheet-roofline"
    rtx = CalibratedOps(GPUS["rtx_pro_6000"], "vllm")
    rtx.mla_decode(8, 4096, 16, "fp8")  # no core-MLA table on this GPU at all
    assert rtx.last_source == "datasheet-roofline"


def test_known_anomalies_are_kept_not_smoothed():
    # FP8 GEMMs at m = 1 pay per-token activation quantisation: slower than BF16 (GB200, vLLM)
    gb200 = CalibratedOps(GPUS["gb200"], "vllm")
    assert gb200.gemm(1, 8192, 8192, "fp8") > gb200.gemm(1, 8192, 8192, "bf16")
    # B200 vLLM per-tensor FP8 GEMM is slower than BF16 at large sizes
    b200 = CalibratedOps(GPUS["b200_sxm"], "vllm")
    assert b200.gemm(8192, 8192, 8192, "fp8") > b200.gemm(8192, 8192, 8192, "bf16")


def test_prefill_with_a_cached_prefix_costs_at_least_the_fresh_chunk_and_is_labelled(h100):
    fresh = h100.attention_prefill(4, 512, 0, 32, 8, 128, "bf16")
    with_prefix = h100.attention_prefill(4, 512, 8192, 32, 8, 128, "bf16")
    assert with_prefix > fresh
    assert h100.last_source == "extrapolated(roofline×eff)"
    arr = h100.attention_prefill(np.array([4, 4]), np.array([512, 512]), np.array([0, 8192]), 32, 8, 128, "bf16")
    assert arr == pytest.approx([fresh, with_prefix], rel=1e-12)


def test_user_errors_name_the_bad_input(h100):
    with pytest.raises(UserError, match="framework"):
        CalibratedOps(GPUS["h100_sxm"], "tensorflow")
    with pytest.raises(UserError, match="fmt"):
        h100.gemm(1, 1024, 1024, "fp3")
    with pytest.raises(UserError, match="distribution"):
        h100.moe(16, 7168, 2048, 8, 256, 1, 8, "bf16", distribution="zipf")
    with pytest.raises(UserError, match="collective"):
        h100.collective("broadcast_all", 1024, 8, "nvlink")


def test_shipped_artefacts_are_derived_small_and_carry_provenance():
    names = sorted(p.name for p in ARTEFACT_DIR.iterdir())
    assert "manifest.json" in names and "fit_report.json" in names
    assert not [n for n in names if n.endswith("_perf.parquet") or n == "collection_meta.yaml"]
    total = sum(p.stat().st_size for p in ARTEFACT_DIR.iterdir())
    assert total < 8e6, f"calibration artefacts grew to {total / 1e6:.1f} MB"
    manifest = json.loads((ARTEFACT_DIR / "manifest.json").read_text())
    prov = manifest["provenance"]
    assert "aiconfigurator @ 095f58a5" in prov["source"]["repository"]
    assert prov["source"]["license"] == "Apache-2.0"
    assert prov["produced_by"]["command"].startswith("simcluster calibrate")
    assert prov["produced_by"]["simcluster_version"]
    gemm = [t for t in prov["tables"] if t["family"] == "gemm" and t["system"] == "h100_sxm"]
    assert gemm and all(m["version"] and m["kernel_source"] for t in gemm for m in t["quant_modes"].values())
    meta = pq.read_schema(ARTEFACT_DIR / "gemm.parquet").metadata
    assert b"aiconfigurator" in meta[b"simcluster.provenance"]


def test_shipped_artefacts_load_on_a_machine_without_the_raw_data(tmp_path):
    # run from an empty directory: ../shared is not reachable from there
    code = (
        "from simcluster.perf.calibration import CalibratedOps\n"
        "ops = CalibratedOps('h100', 'sglang')\n"
        "t = ops.gemm(8192, 8192, 8192, 'bf16')\n"
        "assert 2 * 8192**3 / t > 6e14, t\n"
        "print(ops.last_source)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "measured"


def test_a_gpu_without_measurements_gets_datasheet_rooflines():
    from dataclasses import replace

    gpu = replace(GPUS["h100_sxm"], name="h100_clone", calibration_dir=None)
    ops = CalibratedOps(gpu, "vllm")
    t = ops.gemm(8192, 8192, 8192, "bf16")
    assert ops.last_source == "datasheet-roofline"
    assert 300e12 < 2 * 8192**3 / t < 989e12
    ops.attention_decode(16, 4096, 32, 8, 128, "bf16")
    assert ops.last_source == "datasheet-roofline"
    assert ops.collective("all_reduce", 64 * MIB, 8, "nvlink") > 0
    assert ops.last_source == "datasheet-roofline"


def test_custom_all_reduce_beats_nccl_for_small_messages(h100):
    small = 32 * 1024
    assert h100.custom_all_reduce(small, 8) < h100.collective("all_reduce", small, 8, "nvlink")
    h100.custom_all_reduce(small, 16)
    assert "NCCL" in h100.last_detail or "nccl" in h100.last_detail


@pytest.mark.parametrize("gpu", ["h100_sxm", "h200_sxm"])
def test_expert_tp_on_a_table_measured_at_tp_1_only_costs_the_expert_parallelism_of_equal_work(gpu):
    # TRT-LLM's w4a16 MXFP4 MoE tables on Hopper were measured at tp = 1 only (ep 1..128). Expert TP k
    # holds the same expert bytes per GPU and does the same FLOPs per GPU as EP k at balanced routing,
    # so the measured EP k point answers it; holding the tp = 1 efficiency instead made TP 8 cost a
    # fifth of the EP 8 measurement at decode sizes (gpt-oss-120b: hidden 2880, 128 experts, top-4)
    ops = CalibratedOps(GPUS[gpu], framework="trtllm")
    shape = (2880, 2880, 4, 128)
    for k in (2, 4, 8):
        for tokens in (4, 64, 4096):
            tp_k = ops.moe(tokens, *shape, k, 1, "mxfp4")
            assert ops.last_source == "measured" and f"EP {k}" in ops.last_detail
            assert tp_k == ops.moe(tokens, *shape, 1, k, "mxfp4")
        # and it is no cheaper than reading this GPU's share of the active experts' weights
        active_bytes = min(4 * 4, 128) * 3 * 2880 * 2880 * 0.53 / k  # MXFP4: 4.25 bits per weight
        assert ops.moe(4, *shape, k, 1, "mxfp4") >= active_bytes / (GPUS[gpu].mem_bw_Bps)
    many = ops.moe_many(np.array([4, 64, 4096]), *shape, np.array([2, 4, 8]), 1, "mxfp4")
    assert np.allclose(many, [ops.moe(4, *shape, 1, 2, "mxfp4"), ops.moe(64, *shape, 1, 4, "mxfp4"),
                              ops.moe(4096, *shape, 1, 8, "mxfp4")])
    # a table with its own tp axis answers from it (vLLM's w4a16 MXFP4 table: tp 1..32)
    vllm = CalibratedOps(GPUS[gpu], framework="vllm")
    vllm.moe(4, *shape, 8, 1, "mxfp4")
    assert "as EP" not in vllm.last_detail


def test_trtllm_prices_expert_tp_as_the_expert_parallelism_of_equal_work_where_it_can():
    # TRT-LLM's own tables have a tp axis for block-FP8 DeepSeek experts, but its deployments with
    # expert TP decode at (or below) the cost of EP of equal work: the EP point answers
    # (MOE_TP_AS_EP_FRAMEWORKS; docs/calibration.md). DeepSeek-R1: hidden 7168, inter 2048, top-8 of 256.
    trt = CalibratedOps(GPUS["b200_sxm"], framework="trtllm")
    ds = (7168, 2048, 8, 256)
    for tokens in (32, 256, 8192):
        for tp, ep in ((8, 1), (4, 2), (2, 8)):
            t = trt.moe(tokens, *ds, tp, ep, "fp8_block")
            assert f"as EP {tp * ep}" in trt.last_detail
            assert t == trt.moe(tokens, *ds, 1, tp * ep, "fp8_block")
    # beyond the measured EP range (256) the table's own tp axis answers
    trt.moe(32, *ds, 16, 32, "fp8_block")
    assert "as EP" not in trt.last_detail
    # the other frameworks keep their tables' tp axis
    for fw in ("sglang", "vllm"):
        ops = CalibratedOps(GPUS["b200_sxm"], framework=fw)
        ops.moe(32, *ds, 8, 1, "fp8_block")
        assert "as EP" not in ops.last_detail


@pytest.mark.parametrize("fw,gpu", [("sglang", "b200_sxm"), ("sglang", "h200_sxm"), ("vllm", "b200_sxm")])
def test_expert_tp_streams_weights_no_faster_than_the_gpu_memory_allows(fw, gpu):
    # DeepSeek's experts (hidden 7168, inter 2048, top-8 of 256), block FP8 (1 byte per weight),
    # balanced routing. At 64-128 tokens every expert receives tokens, so each GPU of an expert-TP-k
    # group reads all 256 experts' 1/k slices: 256 x 3 x 7168 x 2048 / k bytes. No kernel reads them
    # faster than the datasheet HBM bandwidth (independent truth: the catalog's mem_bw_Bps).
    ops = CalibratedOps(GPUS[gpu], framework=fw)
    ds = (7168, 2048, 8, 256)
    peak = GPUS[gpu].mem_bw_Bps
    for k in (2, 4, 8):
        for tokens in (64, 128):
            t = ops.moe(tokens, *ds, k, 1, "fp8_block")
            assert 256 * 3 * 7168 * 2048 / k / t <= peak
            # the bound is the measured EP point of the same bytes per GPU, never a cheaper answer
            assert t >= ops.moe(tokens, *ds, 1, k, "fp8_block")


def test_expert_tp_keeps_the_tables_tp_axis_where_the_experts_are_not_weight_streaming():
    # Above 16 tokens per expert (here 8,192 tokens x 8 / 256 = 256) the measured tp axis answers,
    # both where it is faster and where it is slower than EP of equal work.
    ops = CalibratedOps(GPUS["b200_sxm"], framework="sglang")
    ds = (7168, 2048, 8, 256)
    ops.moe(8192, *ds, 8, 1, "fp8_block")
    assert "no faster than EP" not in ops.last_detail
    ops.moe(64, *ds, 8, 1, "fp8_block")
    assert "no faster than EP" in ops.last_detail
    # the regime edge is per expert: 512 tokens x 8 / 256 = 16 is inside, 520 tokens outside
    ops.moe(512, *ds, 8, 1, "fp8_block")
    assert "no faster than EP" in ops.last_detail
    ops.moe(520, *ds, 8, 1, "fp8_block")
    assert "no faster than EP" not in ops.last_detail
    # the vectorised path gives the scalar answers
    tokens = np.array([8, 64, 512, 520, 8192])
    many = ops.moe_many(tokens, *ds, np.full(5, 8), np.ones(5), "fp8_block")
    assert np.allclose(many, [ops.moe(int(x), *ds, 8, 1, "fp8_block") for x in tokens])
