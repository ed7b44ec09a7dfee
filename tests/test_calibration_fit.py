"""Calibration against the raw measurements in ../shared: held-out accuracy, exactness, the CLI.

Skipped (with the reason) where ../shared is not beside the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simcluster.catalog.gpus import GPUS
from simcluster.cli.main import main
from simcluster.perf.calibration import CalibratedOps
from simcluster.perf.calibration.ops import MOE_TP_FLOOR_TOKENS_PER_EXPERT
from simcluster.perf.calibration.condense import Calibration
from simcluster.perf.calibration.load import read_family
from simcluster.perf.calibration.report import fit_report

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "calibration" / "aiconfigurator"
needs_shared = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"raw calibration data not available at {DATA} (../shared beside the repo)"
)

# One GPU, one framework (plus the TRT-LLM core-MLA tables vLLM lacks): every family, under ~30 s.
SUBSET = [
    ("gemm", "vllm"),
    ("attention_prefill", "vllm"),
    ("attention_decode", "vllm"),
    ("mla_prefill", "trtllm"),
    ("mla_decode", "trtllm"),
    ("mla_module_prefill", "vllm"),
    ("mla_module_decode", "vllm"),
    ("mla_bmm", "vllm"),
    ("moe", "vllm"),
    ("nccl", "nccl"),
    ("custom_allreduce", "vllm"),
]


@pytest.fixture(scope="module")
def h100_frames():
    return [read_family(DATA, fam, "h100_sxm", fw) for fam, fw in SUBSET]


@needs_shared
def test_held_out_median_error_is_within_ten_percent_for_every_op_family(h100_frames):
    cal = Calibration.from_frames(h100_frames)
    report = fit_report(h100_frames, cal.collectives, holdout=0.2, seed=0)
    assert {r["family"] for r in report["rows"]} == {fam for fam, _ in SUBSET}
    for row in report["rows"]:
        assert row["held_out"] >= 5, row
        assert (
            row["median_ape"] <= 0.10
        ), f"{row['family']} on H100 ({row['framework']}): median {row['median_ape']:.1%}"
        # the tables must beat the model they fall back to
        assert row["median_ape"] < row["fallback_median_ape"], row


@needs_shared
def test_interpolation_returns_the_raw_measurement_at_measured_points(h100_frames):
    cal = Calibration.from_frames(h100_frames)
    ops = CalibratedOps(GPUS["h100_sxm"], "vllm", cal)
    gemm = next(f for f in h100_frames if f.family == "gemm").frame.sample(n=300, random_state=1)
    for r in gemm.itertuples():
        fmt = "bf16" if r.dtype == "bfloat16" else r.dtype
        assert ops.gemm(r.m, r.n, r.k, fmt) == pytest.approx(r.latency_ms * 1e-3, rel=1e-12)
        assert ops.last_source == "measured"
    moe = next(f for f in h100_frames if f.family == "moe").frame
    for r in moe[moe["distribution"] == "balanced"].sample(n=100, random_state=2).itertuples():
        fmt = "bf16" if r.dtype == "bfloat16" else r.dtype
        t = ops.moe(r.tokens, r.hidden, r.inter, r.topk, r.experts, r.tp, r.ep, fmt)
        if "no faster than EP" in ops.last_detail:
            # expert TP where the experts stream weights: the measured EP point of equal work bounds it
            assert r.tp > 1 and r.tokens * r.topk <= MOE_TP_FLOOR_TOKENS_PER_EXPERT * r.experts
            ep_equal = ops.moe(r.tokens, r.hidden, r.inter, r.topk, r.experts, 1, r.tp * r.ep, fmt)
            assert t == ep_equal > r.latency_ms * 1e-3
        else:
            assert t == pytest.approx(r.latency_ms * 1e-3, rel=1e-12)
    nccl = next(f for f in h100_frames if f.family == "nccl").frame
    for r in nccl.sample(n=50, random_state=3).itertuples():
        assert ops.collective(r.op, r.bytes, r.n_gpus, "nvlink") == pytest.approx(r.latency_ms * 1e-3, rel=1e-12)


@needs_shared
def test_shipped_artefacts_match_the_raw_measurements_to_storage_precision():
    raw = read_family(DATA, "attention_decode", "h200_sxm", "trtllm").frame.sample(n=300, random_state=4)
    ops = CalibratedOps(GPUS["h200_sxm"], "trtllm")
    for r in raw.itertuples():
        kv = "bf16" if r.kv_dtype == "bfloat16" else r.kv_dtype
        t = ops.attention_decode(r.batch, r.ctx, r.q_heads, r.kv_heads, r.head_dim, kv)
        assert t == pytest.approx(r.latency_ms * 1e-3, rel=1.1e-3)  # ln(latency) stored to 1/500


@needs_shared
def test_calibrate_writes_artefacts_and_a_fit_report(tmp_path, capsys):
    out = tmp_path / "cal"
    rc = main(
        [
            "calibrate",
            "--data",
            str(DATA),
            "-o",
            str(out),
            "--gpu",
            "h100",
            "--framework",
            "vllm",
            "--family",
            "gemm",
            "--family",
            "nccl",
            "--json",
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert {(r["family"], r["gpu"]) for r in report["summary"]} == {("gemm", "h100_sxm"), ("nccl", "h100_sxm")}
    assert all(s["meets_target"] for s in report["summary"])
    assert (out / "fit_report.json").is_file() and (out / "gemm.parquet").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert "--gpu h100" in manifest["provenance"]["produced_by"]["command"]
    ops = CalibratedOps(GPUS["h100_sxm"], "vllm", Calibration.load(out))
    assert 2 * 8192**3 / ops.gemm(8192, 8192, 8192, "bf16") / 1e12 == pytest.approx(713, rel=0.02)
    # a second, filtered run into the same directory keeps what it did not re-measure
    rc = main(
        ["calibrate", "--data", str(DATA), "-o", str(out), "--gpu", "h200", "--framework", "vllm", "--family", "gemm"]
    )
    assert rc == 0
    merged = Calibration.load(out)
    assert merged.table("gemm", "h100_sxm", "vllm") is not None
    assert merged.table("gemm", "h200_sxm", "vllm") is not None
    assert merged.table("nccl", "h100_sxm", "nccl") is not None


def test_calibrate_with_a_missing_data_directory_exits_2(tmp_path, capsys):
    rc = main(["calibrate", "--data", "/nonexistent", "-o", str(tmp_path / "out")])
    assert rc == 2
    assert "/nonexistent" in capsys.readouterr().err


def test_calibrate_with_an_empty_data_directory_exits_2(tmp_path, capsys):
    rc = main(["calibrate", "--data", str(tmp_path), "-o", str(tmp_path / "out")])
    assert rc == 2
    assert str(tmp_path) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_alpha_grows_with_ring_steps_on_the_shipped_collectives():
    """The α model the extension uses (linear in N − 1) is what the 2/4/8-GPU measurements show."""
    from simcluster.perf.calibration.condense import shipped

    for system in ("h100_sxm", "h200_sxm", "b200_sxm"):
        e = shipped().collectives["nccl"][system]["all_reduce"]
        alphas = [e["per_n"][str(n)]["alpha_s"] for n in (2, 4, 8)]
        assert alphas[0] < alphas[1] < alphas[2]
        pred = [e["alpha0_s"] + e["alpha_per_step_s"] * (n - 1) for n in (2, 4, 8)]
        assert np.allclose(pred, alphas, rtol=0.2), (system, alphas, pred)
