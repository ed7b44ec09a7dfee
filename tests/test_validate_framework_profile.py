"""Framework scheduler profiles (simcluster/perf/framework.py): the behaviours that move the numbers."""

from __future__ import annotations

import pytest

from simcluster.perf.framework import PROFILES, FrameworkOps, ScheduledStepCost, get_profile
from simcluster.perf.interface import BatchShape
from simcluster.perf.step_cost import CostSpec, build_step_cost

BARE = {k: 0.0 for k in ("decode_overhead_s", "decode_overhead_per_seq_s", "prefill_overhead_s", "eager_overhead_s")}


def _base(layout="tp=2", model="llama-3.1-8b"):
    return build_step_cost(CostSpec(gpu="h100_sxm", model=model, weights="bf16", kv="bf16", activations="bf16",
                                    layout=layout, step_overhead_s=0.0))


def test_decode_batches_are_padded_up_to_the_captured_cuda_graph_sizes():
    v = PROFILES["vllm"]
    assert [v.padded_batch(b) for b in (1, 3, 9, 250, 257, 512)] == [1, 4, 16, 256, 272, 512]
    assert v.padded_batch(600) == 600 and v.is_eager(600)  # beyond the largest graph: no padding
    t = PROFILES["trtllm"]
    assert t.padded_batch(130) == 256


def test_a_padded_batch_costs_what_the_captured_size_costs_in_gemm_work():
    base = _base()
    prof = PROFILES["vllm"].with_(gpu_time_scales=(), **BARE)
    cost = ScheduledStepCost(base, prof)
    at = lambda c, b: c.step(BatchShape(decode_seqs=b, decode_context_tokens=b)).latency_s  # noqa: E731
    # 9 sequences run the 16-sequence graph: the token-driven work is that of 16
    assert at(cost, 9) == pytest.approx(at(base, 16), rel=1e-9)
    assert at(cost, 16) == pytest.approx(at(base, 16), rel=1e-9)
    # a run of steps pads the same way
    run = cost.decode_run(9, 9 * 1000, 5)
    assert run[0] == pytest.approx(cost.step(BatchShape(decode_seqs=9, decode_context_tokens=9000)).latency_s,
                                   rel=1e-6)


def test_cpu_overhead_is_added_per_step_and_per_sequence():
    base = _base()
    prof = PROFILES["vllm"].with_(gpu_time_scales=(), cuda_graph_sizes=(), **{
        **BARE, "decode_overhead_s": 1e-3, "decode_overhead_per_seq_s": 1e-5})
    cost = ScheduledStepCost(base, prof)
    shape = BatchShape(decode_seqs=32, decode_context_tokens=32 * 500)
    assert cost.step(shape).latency_s - base.step(shape).latency_s == pytest.approx(1e-3 + 32e-5)


def test_sglang_runs_prefill_as_its_own_pass_while_vllm_fuses_it():
    base = _base()
    mixed = BatchShape(prefill_tokens=2048, prefill_seqs=1, prefill_attn_pairs=2048 * 2049 / 2, decode_seqs=64,
                       decode_context_tokens=64 * 1000)
    pre = BatchShape(2048, 1, 2048 * 2049 / 2, 0)
    dec = BatchShape(decode_seqs=64, decode_context_tokens=64 * 1000)
    seq = ScheduledStepCost(base, PROFILES["sglang"].with_(gpu_time_scales=(), cuda_graph_sizes=(), **BARE))
    fused = ScheduledStepCost(base, PROFILES["vllm"].with_(gpu_time_scales=(), cuda_graph_sizes=(), **BARE))
    two_passes = base.step(pre).latency_s + base.step(dec).latency_s
    assert seq.step(mixed).latency_s == pytest.approx(two_passes, rel=1e-6)
    assert fused.step(mixed).latency_s < two_passes  # one pass reads the weights once


def test_a_fused_step_scales_its_decode_share_as_decode_and_its_prompt_share_as_prefill():
    # GPU-time scales (decode 0.8, prefill 0.5): in one fused pass of 64 decodes and a 2k-token
    # prompt, the decodes' own cost takes the decode scale and what the prompt adds the prefill one
    # (before, the whole pass took the prefill scale, which made loaded decode steps too cheap)
    base = _base()
    kind_scales = (("h100_sxm", "dense", 0.8, 0.5),)
    prof = PROFILES["vllm"].with_(gpu_time_scales=kind_scales, cuda_graph_sizes=(), **BARE)
    cost = ScheduledStepCost(base, prof, gpu="h100_sxm", kind="dense")
    mixed = BatchShape(prefill_tokens=2048, prefill_seqs=1, prefill_attn_pairs=2048 * 2049 / 2, decode_seqs=64,
                       decode_context_tokens=64 * 1000)
    dec = base.step(BatchShape(decode_seqs=64, decode_context_tokens=64 * 1000)).latency_s
    full = base.step(mixed).latency_s
    assert cost.step(mixed).latency_s == pytest.approx(0.8 * dec + 0.5 * (full - dec), rel=1e-9)
    assert cost.step(mixed).flops == pytest.approx(base.step(mixed).flops, rel=1e-12)  # work is not scaled
    alone = BatchShape(2048, 1, 2048 * 2049 / 2, 0)
    assert cost.step(alone).latency_s == pytest.approx(0.5 * base.step(alone).latency_s, rel=1e-9)


def test_tp_all_reduces_use_the_frameworks_custom_kernel_for_small_messages():
    from simcluster.perf.calibration.ops import CalibratedOps

    ops = CalibratedOps("h100_sxm", "vllm")
    fops = FrameworkOps(ops, PROFILES["vllm"])
    small = 64 * 1024
    assert fops.collective("all_reduce", small, 8, "nvlink") == pytest.approx(ops.custom_all_reduce(small, 8))
    assert fops.collective("all_reduce", small, 8, "nvlink") < ops.collective("all_reduce", small, 8, "nvlink")
    big = 64 * 2**20  # beyond the custom kernel's buffer: NCCL
    assert fops.collective("all_reduce", big, 8, "nvlink") == ops.collective("all_reduce", big, 8, "nvlink")
    assert fops.collective("all_gather", small, 8, "nvlink") == ops.collective("all_gather", small, 8, "nvlink")


def test_trtllm_sizes_its_kv_pool_from_the_memory_left_after_weights():
    from simcluster.config.scenario import Scenario
    from simcluster.sim.deployment import build_pools

    def capacity(fw):
        sc = Scenario.model_validate({
            "cluster": {"gpu": "h200_sxm"}, "model": {"name": "llama-3.1-70b", "weights": "fp8", "kv_cache": "fp8"},
            "serving": {"framework": fw, "mode": "colocated", "framework_profile": True},
            "pools": {"colocated": {"layout": "tp=1"}}, "cost": {"source": "roofline"},
            "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate_per_s": 1.0},
                         "input_tokens": {"dist": "fixed", "value": 8}, "output_tokens": {"dist": "fixed", "value": 8}}})
        return build_pools(sc)[0].kv_capacity_tokens

    # 70 GB of weights on a 141 GB GPU: 0.9 x (141 - 70 - reserve) > 0.9 x 141 - 70 - reserve
    assert capacity("trtllm") > capacity("vllm")


def test_profiles_are_validated_and_named():
    with pytest.raises(Exception):
        get_profile("tgi")
    with pytest.raises(Exception):
        PROFILES["vllm"].with_(decode_overhead_s=-1.0)
    assert PROFILES["sglang"].mixed_batching == "sequential"
    assert PROFILES["trtllm"].chunked_prefill is False


# ----------------------------------------------------------------------------- speculative decoding (MTP)
def test_mtp_acceptance_matches_the_published_figures():
    from simcluster.perf.framework import mtp_acceptance_length

    assert mtp_acceptance_length(0) == 1.0
    # DeepSeek-V3 report: the second token is accepted 85-90 % of the time (one draft token)
    assert 1.85 <= mtp_acceptance_length(1) <= 1.90
    # GLM-5 report, Table 2: DeepSeek-V3.2 accepts 2.55 tokens per step with 4 speculative steps
    assert mtp_acceptance_length(4) == pytest.approx(2.55, abs=0.03)
    # more drafts never lower the expected tokens per step, and each adds less
    al = [mtp_acceptance_length(k) for k in range(6)]
    assert all(b > a for a, b in zip(al, al[1:]))
    assert all(al[i + 1] - al[i] < al[i] - al[i - 1] for i in range(1, 5))


def test_an_mtp_decode_step_costs_verify_plus_drafts_over_the_acceptance_length():
    from simcluster.perf.framework import MTP_DRAFT_LAYERS, mtp_acceptance_length

    base = _base()
    k, b, ctx = 3, 16, 16 * 2000
    prof = PROFILES["vllm"].with_(gpu_time_scales=(), cuda_graph_sizes=(), spec_draft_tokens=k, **BARE)
    cost = ScheduledStepCost(base, prof)
    lat = lambda n, c: base.step(BatchShape(decode_seqs=n, decode_context_tokens=c)).latency_s  # noqa: E731
    layers = base.spec.model.num_layers
    # verify: the GEMMs of b·(k+1) token rows, the attention of b sequences over their context
    verify = lat(b * (k + 1), b * (k + 1)) + lat(b, ctx) - lat(b, b)
    drafts = k * MTP_DRAFT_LAYERS / layers * lat(b, ctx)
    expect = (verify + drafts) / mtp_acceptance_length(k)
    got = cost.step(BatchShape(decode_seqs=b, decode_context_tokens=ctx)).latency_s
    assert got == pytest.approx(expect, rel=1e-9)
    assert got < lat(b, ctx)  # at a small batch MTP is faster per token
    # a run of steps is priced the same way
    assert cost.decode_run(b, ctx, 3)[0] == pytest.approx(got, rel=1e-6)


# ----------------------------------------------------------------------------- kernels the recipes run
@pytest.mark.parametrize("gpu,answer", [("b200_sxm", "trtllm"), ("h100_sxm", "sglang"), ("h200_sxm", "sglang")])
def test_vllm_block_fp8_gemm_answers_from_a_deepgemm_table(gpu, answer):
    from simcluster.perf.calibration.ops import CalibratedOps

    vllm, sgl = CalibratedOps(gpu, framework="vllm"), CalibratedOps(gpu, framework="sglang")
    trt = CalibratedOps(gpu, framework="trtllm")
    other = {"sglang": sgl, "trtllm": trt}[answer]
    fops = FrameworkOps(vllm, PROFILES["vllm"])
    # a 12 MB weight is 2-4 µs of HBM traffic: vLLM's table holds 50-270 µs, SGLang's and TRT-LLM's
    # tables of the same kernel family stay within a factor 2.5 of each other near the floor
    m, n, k = 32, 4096, 3072
    assert vllm.gemm(m, n, k, "fp8_block") > 3 * max(sgl.gemm(m, n, k, "fp8_block"), trt.gemm(m, n, k, "fp8_block"))
    assert 1 / 2.5 < trt.gemm(m, n, k, "fp8_block") / sgl.gemm(m, n, k, "fp8_block") < 2.5
    assert fops.gemm(m, n, k, "fp8_block") == pytest.approx(other.gemm(m, n, k, "fp8_block"))
    assert fops.gemm_many([m, 4 * m], [n, n], [k, k], "fp8_block") == pytest.approx(
        other.gemm_many([m, 4 * m], [n, n], [k, k], "fp8_block"))
    # other formats are untouched
    assert fops.gemm(m, n, k, "bf16") == vllm.gemm(m, n, k, "bf16")


@pytest.mark.parametrize("gpu,routed", [("b200_sxm", True), ("gb200", True), ("h200_sxm", False)])
def test_sglang_block_fp8_gemm_on_blackwell_answers_from_trtllm_deepgemm_table(gpu, routed):
    from simcluster.perf.calibration.ops import CalibratedOps

    sgl, trt = CalibratedOps(gpu, framework="sglang"), CalibratedOps(gpu, framework="trtllm")
    fops = FrameworkOps(sgl, PROFILES["sglang"])
    m, n, k = 8, 2048, 6144
    want = trt.gemm(m, n, k, "fp8_block") if routed else sgl.gemm(m, n, k, "fp8_block")
    assert fops.gemm(m, n, k, "fp8_block") == pytest.approx(want)
    if routed:  # SGLang's own Blackwell table is the slower one near the floor (1.8-1.9x, framework.py)
        assert sgl.gemm(m, n, k, "fp8_block") > 1.4 * trt.gemm(m, n, k, "fp8_block")
    assert fops.gemm(m, n, k, "bf16") == sgl.gemm(m, n, k, "bf16")


MLA_MODULES = "calibration/aiconfigurator/systems/data/b200_sxm/mla/{fw}/{ver}/mla_generation_module_perf.parquet"


@pytest.mark.parametrize("fw,ver", [("trtllm", "1.3.0rc20"), ("vllm", "0.24.0")])
def test_mla_decode_ops_sum_to_the_measured_attention_module(fw, ver):
    """Independent truth: each framework's collector also timed DeepSeek-V3's whole MLA attention
    module (projections, latent attention, output projection) at decode. The simulator's sum of the
    same ops, priced as the framework runs them (kernel routes included), lands within 15 % of it at
    small batches, where the projections dominate (before the Blackwell block-FP8 route vLLM's sum
    was twice the module: 107 vs 52 µs at batch 1)."""
    import pandas as pd

    from simcluster.catalog.gpus import get_gpu
    from simcluster.catalog.models import get_model
    from simcluster.perf.calibration.ops import CalibratedOps
    from simcluster.perf.interface import BatchShape
    from simcluster.perf.step_cost import CostSpec, build_step_cost

    from conftest import shared_path

    d = pd.read_parquet(shared_path(*MLA_MODULES.format(fw=fw, ver=ver).split("/")))
    d = d[(d.gemm_type == "fp8_block") & (d.kv_cache_dtype == "fp8") & (d.num_heads == 16)]
    gpu = get_gpu("b200_sxm")
    ops = FrameworkOps(CalibratedOps(gpu, framework=fw), PROFILES[fw])
    cost = build_step_cost(CostSpec(gpu, get_model("deepseek-r1"), "fp8_block", "fp8", "bf16", "tp=8",
                                    framework=fw, ops=ops))
    parts = {"q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_absorbed", "attention_decode", "o_proj"}
    for batch in (1, 8, 32):
        rep = cost.describe(BatchShape(decode_seqs=batch, decode_context_tokens=batch * 1024))
        layer = next(x for x in rep["layers"] if x["ffn"] == "moe")
        ours = sum(o["time_s"] * o["per_layer"] for o in layer["ops"] if o["name"] in parts)
        measured = d[(d.batch_size == batch) & (d.step == 1024)].latency.median() / 1e3
        assert ours == pytest.approx(measured, rel=0.15), (fw, batch, ours, measured)


def test_cost_cli_prices_with_the_framework_kernels_the_simulator_uses(capsys):
    """``simcluster cost --framework vllm`` shows the step the simulator runs: the kernel routes apply
    (block-FP8 GEMMs from SGLang's table) and the fitted GPU-time scale is reported next to it."""
    import json

    from simcluster.catalog.models import get_model
    from simcluster.cli.main import main
    from simcluster.perf.calibration.ops import CalibratedOps
    from simcluster.perf.framework import model_kind

    capsys.readouterr()
    rc = main(["cost", "--gpu", "h200_sxm", "--model", "minimax-m2.5", "--weights", "fp8_block", "--kv", "fp8",
               "--batch", "64", "--context", "2000", "--layout", "tp=4", "--framework", "vllm", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = json.loads(captured.out)
    qkv = next(op for op in out["layers"][0]["ops"] if op["name"] == "qkv_proj")
    n, k = (int(x) for x in qkv["detail"].split("]")[0].lstrip("[").split("x"))
    sgl, vllm = CalibratedOps("h200_sxm", framework="sglang"), CalibratedOps("h200_sxm", framework="vllm")
    assert qkv["time_s"] == pytest.approx(sgl.gemm(64, n, k, "fp8_block"), rel=1e-6)
    assert qkv["time_s"] < vllm.gemm(64, n, k, "fp8_block") / 3
    assert out["fitted_gpu_time_scale"] == PROFILES["vllm"].gpu_time_scale(
        "h200_sxm", model_kind(get_model("minimax-m2.5")), "fp8_block")[0]


def test_trtllm_moe_on_blackwell_uses_the_kernels_its_recipes_run():
    from simcluster.perf.calibration.ops import CalibratedOps

    trt, vllm = CalibratedOps("b200_sxm", framework="trtllm"), CalibratedOps("b200_sxm", framework="vllm")
    fops = FrameworkOps(trt, PROFILES["trtllm"])
    gptoss = (32, 2880, 2880, 4, 128, 1, 1)
    # gpt-oss MXFP4 experts run with MXFP8 activations (w4a8), not the w4a16 fallback
    assert fops.moe(*gptoss, "mxfp4") == pytest.approx(trt.moe(*gptoss, "w4a8_mxfp4_mxfp8"))
    assert fops.moe(*gptoss, "mxfp4") < trt.moe(*gptoss, "mxfp4")
    # NVFP4 experts: the faster of TRT-LLM's CUTLASS table and the TRTLLM-gen kernel (vLLM's table)
    ds = (32, 7168, 2048, 8, 256, 1, 8)
    assert fops.moe(*ds, "nvfp4") == pytest.approx(min(trt.moe(*ds, "nvfp4"), vllm.moe(*ds, "nvfp4")))
    # TRT-LLM's expert TP is priced as EP of equal work whichever framework's table answers
    # (calibration.ops.MOE_TP_AS_EP_FRAMEWORKS), here vLLM's for the TRTLLM-gen kernel; vLLM's own
    # deployments keep its table's tp axis beyond the weight-streaming regime (16 tokens per expert;
    # calibration.ops.MOE_TP_FLOOR_TOKENS_PER_EXPERT), and within it are no faster than EP
    ds_tp = (32, 7168, 2048, 8, 256, 8, 1)
    for fmt in ("nvfp4", "fp8_block", "mxfp4"):
        assert fops.moe(*ds_tp, fmt) == pytest.approx(fops.moe(*ds, fmt))
    assert vllm.moe(*ds_tp, "nvfp4") >= vllm.moe(*ds, "nvfp4")
    big_tp, big = (8192,) + ds_tp[1:], (8192,) + ds[1:]
    assert vllm.moe(*big_tp, "nvfp4") != pytest.approx(vllm.moe(*big, "nvfp4"))
    assert fops.moe(*big_tp, "nvfp4") == pytest.approx(fops.moe(*big, "nvfp4"))


def test_four_bit_mla_moe_releases_keep_attention_projections_in_bf16():
    from simcluster.catalog.models import get_model
    from simcluster.perf.composition import attention_weight_format

    assert attention_weight_format(get_model("deepseek-r1"), "nvfp4") == "bf16"
    assert attention_weight_format(get_model("kimi-k2.5"), "int4") == "bf16"
    assert attention_weight_format(get_model("gpt-oss-120b"), "mxfp4") == "bf16"
    assert attention_weight_format(get_model("deepseek-r1"), "fp8_block") == "fp8_block"  # FP8 quantises all
    assert attention_weight_format(get_model("llama-3.1-70b"), "nvfp4") == "nvfp4"  # dense: every layer
    # the BF16 projections are in the weight memory: against an FP8 release (1 byte everywhere) the
    # NVFP4 one saves 1 - 4.5/8 bytes per FFN/expert parameter and spends 1 more per attention one
    m = get_model("deepseek-r1")
    pc = m.param_counts()
    quantised = pc["dense_ffn"] + pc["routed_experts"] + pc["shared_experts"]
    nv = build_step_cost(CostSpec(gpu="b200_sxm", model="deepseek-r1", weights="nvfp4", kv="fp8",
                                  activations="bf16", layout="tp=8,ep=8,tpf=1")).memory()
    fp8 = build_step_cost(CostSpec(gpu="b200_sxm", model="deepseek-r1", weights="fp8", kv="fp8",
                                   activations="bf16", layout="tp=8,ep=8,tpf=1")).memory()
    saved = fp8.weight_bytes_total - nv.weight_bytes_total
    assert saved == pytest.approx(quantised * (1 - 4.5 / 8) - pc["attention"], rel=0.05)


def test_profiles_set_the_frameworks_kv_admission_and_first_token():
    assert PROFILES["trtllm"].kv_admission == "reserve_full"  # GUARANTEED_NO_EVICT
    assert PROFILES["vllm"].kv_admission == PROFILES["sglang"].kv_admission == "on_demand"
    assert PROFILES["vllm"].first_token_at == "first_decode_step"  # the decode side resamples it
    assert PROFILES["sglang"].first_token_at == "kv_landed"  # the prefill's token travels with the KV
    assert PROFILES["trtllm"].first_token_at == "first_decode_step"
    with pytest.raises(Exception):
        PROFILES["vllm"].with_(kv_admission="greedy")


def test_the_fitted_scales_table_in_the_docs_is_the_shipped_one():
    # docs/validation.md "What was fitted" lists every (GPU, kind[:format]) scale per framework; a refit
    # that changes perf/framework.py must change the table too
    from pathlib import Path

    gpus = {"H100": "h100_sxm", "H200": "h200_sxm", "B200": "b200_sxm", "GB200": "gb200"}
    kinds = {"dense": "dense", "MoE": "moe", "MLA-MoE": "mla-moe"}
    text = (Path(__file__).resolve().parent.parent / "docs" / "validation.md").read_text()
    start = text.index("| GPU, kind, weights | vLLM | SGLang | TRT-LLM |")
    table = text[start:text.index("\n\n", start)].splitlines()[2:]
    documented = {fw: {} for fw in ("vllm", "sglang", "trtllm")}
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        gpu, rest = cells[0].split(" ", 1)
        kind, fmt = rest.split(", ")
        key = kinds[kind] + ("" if fmt == "other formats" else f":{fmt}")
        for fw, cell in zip(("vllm", "sglang", "trtllm"), cells[1:]):
            if cell != "—":
                d, p = (float(x) for x in cell.split(", "))
                documented[fw][(gpus[gpu], key)] = (d, p)
    for fw, found in documented.items():
        shipped = {(g, k): (d, p) for g, k, d, p in PROFILES[fw].gpu_time_scales}
        assert found == shipped, fw
