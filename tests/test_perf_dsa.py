"""DeepSeek sparse attention (DSA: GLM-5, DeepSeek-V3.2): the indexer, the top-k cap, and the
measured attention modules that price them (simcluster/perf/dsa.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from simcluster.catalog.gpus import get_gpu
from simcluster.catalog.models import get_model, load_hf_config
from simcluster.perf import dsa
from simcluster.perf.calibration.load import version_order
from simcluster.perf.composition import Composer
from simcluster.perf.interface import BatchShape
from simcluster.perf.step_cost import CostSpec, build_step_cost

MODULE = "calibration/aiconfigurator/systems/data/{system}/sparse_attention/{fw}"
ATTENTION_PARTS = {"q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_absorbed", "indexer_q_proj", "indexer_k_proj",
                   "attention_decode", "o_proj"}


def _attention_block_s(cost, batch: int, ctx: int) -> float:
    rep = cost.describe(BatchShape(decode_seqs=batch, decode_context_tokens=batch * ctx))
    layer = next(x for x in rep["layers"] if x["ffn"] == "moe")
    return sum(o["time_s"] * o["per_layer"] for o in layer["ops"] if o["name"] in ATTENTION_PARTS)


def _framework_cost(system: str, fw: str, model, kv: str, layout: str = "tp=8"):
    from simcluster.perf.calibration.ops import CalibratedOps
    from simcluster.perf.framework import PROFILES, FrameworkOps

    gpu = get_gpu(system)
    ops = FrameworkOps(CalibratedOps(gpu, framework=fw), PROFILES[fw])
    return build_step_cost(CostSpec(gpu, model, "fp8_block", kv, "bf16", layout, framework=fw, ops=ops))


def _deepseek_v32_ratios(system: str, fw: str, kv: str, model) -> list[float]:
    """Our DeepSeek-V3.2 attention block (its own projections + the GLM-5 module's remainder) over
    the collector's measured DeepSeek-V3.2 module, 16 heads per GPU (TP 8), batch 1-256, 1k-8k."""
    import pandas as pd

    from conftest import shared_path

    folder = shared_path(*MODULE.format(system=system, fw=fw).split("/"))
    newest = sorted(folder.glob("*/dsa_generation_module_perf.parquet"), key=lambda f: version_order(f.parent.name))
    d = pd.read_parquet(newest[-1])
    d = d[(d.model == "deepseek-ai/DeepSeek-V3.2") & (d.op_name == "dsa_generation_module") & (d.num_heads == 16)
          & (d.gemm_type == "fp8_block") & (d.kv_cache_dtype == ("fp8" if kv == "fp8" else "bfloat16"))]
    cost = _framework_cost(system, fw, model, kv)
    out = []
    for b in (1, 4, 16, 64, 256):
        for ctx in (1024, 4096, 8192):
            g = d[(d.batch_size == b) & (d.step + d.isl == ctx + 1)]
            if len(g):
                out.append(_attention_block_s(cost, b, ctx) / (g.latency.median() / 1e3))
    return out


@pytest.mark.parametrize("system,fw,kv", [("b200_sxm", "sglang", "fp8"), ("b200_sxm", "trtllm", "fp8"),
                                          ("b200_sxm", "vllm", "fp8"), ("gb200", "trtllm", "fp8"),
                                          ("h200_sxm", "vllm", "fp8"), ("h100_sxm", "trtllm", "bf16")])
def test_glm5_module_remainder_predicts_deepseek_v32_module(system, fw, kv, monkeypatch):
    """Independent truth: the collectors also timed DeepSeek-V3.2's attention module, which the
    simulator never reads. Its projections (DeepSeek's shapes, from the GEMM tables) plus what GLM-5's
    module leaves after GLM-5's projections (the indexer and the sparse core, at the same heads per
    GPU) land on the measured V3.2 module: median within 0.9-1.25, three points in four within 25 %."""
    monkeypatch.setattr(dsa, "MODULE_FRAMEWORK_PREFERENCE", {})  # each framework's own table here
    dsa.module_source.cache_clear()
    try:
        r = _deepseek_v32_ratios(system, fw, kv, get_model("deepseek-v3.2"))
    finally:
        dsa.module_source.cache_clear()
    assert len(r) >= 10
    assert 0.9 <= float(np.median(r)) <= 1.25, r
    assert np.mean(np.abs(np.array(r) - 1.0) <= 0.25) >= 0.75, r


def test_vllm_is_priced_from_the_same_gpus_sglang_module():
    """vLLM's own DSA module tables carry a host-bound floor (150-230 µs a layer at batch 1, against
    SGLang's 58-139 µs); vLLM is priced from the same GPU's SGLang table, else TRT-LLM's."""
    assert dsa.module_source("h200_sxm", "vllm")[:2] == ("h200_sxm", "sglang")
    assert dsa.module_source("b200_sxm", "trtllm")[:2] == ("b200_sxm", "trtllm")
    floors = dsa._modules()
    floors = floors[(floors.batch == 1) & (floors.ctx <= 129) & (floors.kv == "fp8") & (floors.gemm == "fp8_block")
                    & (floors.heads == 16)].groupby(["system", "framework"]).latency_s.median()
    for system in ("b200_sxm", "gb200", "h200_sxm"):
        assert floors[(system, "vllm")] > 1.8 * floors[(system, "sglang")]
    # the breakdown names the table that priced the core
    cost = _framework_cost("h200_sxm", "vllm", get_model("glm-5"), "fp8")
    rep = cost.describe(BatchShape(decode_seqs=8, decode_context_tokens=8 * 4000))
    core = next(o for o in rep["layers"][0]["ops"] if o["name"] == "attention_decode")
    assert core["source"] == "module h200_sxm/sglang"
    # a GPU without tables takes B200 SGLang's, scaled by memory bandwidth
    src = dsa.module_source("rtx_pro_6000_server", "vllm")
    assert src[:2] == ("b200_sxm", "sglang")
    assert src[2] == pytest.approx(get_gpu("b200_sxm").mem_bw_Bps / get_gpu("rtx_pro_6000_server").mem_bw_Bps)


def test_dense_mla_misses_the_deepseek_v32_module():
    """The same check with V3.2 priced as dense MLA (no indexer, no top-k): a fifth or more short
    of the measured module, so the test above measures the DSA pricing, not the projections."""
    dense = replace(get_model("deepseek-v3.2"), index_topk=0, index_n_heads=0, index_head_dim=0)
    r = _deepseek_v32_ratios("b200_sxm", "sglang", "fp8", dense)
    assert float(np.median(r)) < 0.85, r


def test_shipped_module_table_is_the_collectors_median():
    """Provenance: rebuilding from ../shared gives the shipped decode-module rows."""
    import pandas as pd

    from conftest import shared_path

    root = shared_path("calibration", "aiconfigurator", "systems", "data")
    modules, meta = dsa.build_table(root)
    shipped = pd.read_parquet(dsa.MODULE_DATA)
    pd.testing.assert_frame_equal(modules.reset_index(drop=True), shipped.reset_index(drop=True))
    assert meta == json.loads(dsa.DATA.read_text())
    assert shipped["batch"].max() <= dsa.MODULE_MAX_BATCH


def test_roofline_decode_is_the_top_k_core_plus_the_indexer_stream():
    """With roofline op costs, a DSA decode step's attention is the dense MLA core over at most
    index_topk tokens plus the indexer: its FP8 keys (head dim + a 4-byte scale per token) read once
    and 2 x index heads x head dim FLOPs per scored key, whichever bounds it, plus two launches."""
    gpu = get_gpu("b200_sxm")
    m = get_model("glm-5")
    dense = replace(m, index_topk=0, index_n_heads=0, index_head_dim=0)
    c = Composer(CostSpec(gpu, m, "fp8_block", "fp8", "bf16", "tp=8"))
    cd = Composer(CostSpec(gpu, dense, "fp8_block", "fp8", "bf16", "tp=8"))
    for batch, ctx in ((1, 1000), (64, 2048), (64, 50_000), (8, 1_000_000)):
        ev = c.attention_decode(np.array([float(batch)]), np.array([float(ctx)]))
        core = cd.attention_decode(np.array([float(batch)]), np.array([float(min(ctx, m.index_topk))]))
        keys = batch * ctx
        idx = max(keys * (128 + 4) / c.roof.mem_Bps, 2 * 32 * 128 * keys / c.roof.flops_rate("fp8")[0])
        expect = float(core.time_s[0]) + idx + 2 * c.roof.launch_overhead_s
        assert float(ev.time_s[0]) == pytest.approx(expect, rel=1e-9)


def test_prefill_runs_dense_while_the_prompt_fits_the_top_k():
    """Up to index_topk keys a prompt is attended densely and the indexer does not run (SGLang's
    dense-MHA path); beyond, the attention pairs are capped at index_topk per query and the indexer
    scores every causal pair at the measured rate."""
    from simcluster.perf.calibration.ops import CalibratedOps

    gpu = get_gpu("b200_sxm")
    m = get_model("glm-5")
    dense = replace(m, index_topk=0, index_n_heads=0, index_head_dim=0)
    ops = CalibratedOps(gpu, framework="sglang")
    c = Composer(CostSpec(gpu, m, "fp8_block", "fp8", "bf16", "tp=8", framework="sglang", ops=ops))
    cd = Composer(CostSpec(gpu, dense, "fp8_block", "fp8", "bf16", "tp=8", framework="sglang", ops=ops))
    n = 2000.0
    pairs = n * (n + 1) / 2
    assert c.attention_prefill(1, n, 0, pairs).time_s == cd.attention_prefill(1, n, 0, pairs).time_s
    n = 8192.0
    pairs = n * (n + 1) / 2
    capped = n * m.index_topk
    sparse = c.attention_prefill(1, n, 0, pairs).time_s
    # the sparse kernels' 64-head minimum: GLM-5's 64 heads on one GPU (TP 1) is the same core
    c64 = Composer(CostSpec(gpu, dense, "fp8_block", "fp8", "bf16", "tp=1", framework="sglang", ops=ops))
    assert c64.q_loc == dsa.SPARSE_MIN_HEADS
    core = c64.attention_prefill(1, n, 0, capped, window=m.index_topk).time_s
    per_pair = json.loads(dsa.DATA.read_text())["prefill"]["seconds_per_pair"]
    assert sparse == pytest.approx(core + pairs * per_pair, rel=1e-9)


def test_sparse_prefill_costs_the_same_share_of_the_measured_module_at_any_tp():
    """Independent truth: SGLang's collector timed GLM-5's whole attention module at prefill
    (``dsa_context_module_perf``, never read by the simulator). For prompts past index_topk it takes
    nearly as long at 8 heads per GPU as at 64 (2.35 vs 3.52 ms for 8k tokens), which heads-
    proportional sparse attention cannot give; with the sparse kernels' 64-head minimum the
    simulator's share of the module at TP 8 is within a fifth of its share at TP 1, and at least 0.6."""
    import pandas as pd

    from conftest import shared_path

    from simcluster.perf.calibration.ops import CalibratedOps
    from simcluster.perf.framework import PROFILES, FrameworkOps

    path = shared_path("calibration", "aiconfigurator", "systems", "data", "b200_sxm", "sparse_attention", "sglang",
                       "0.5.14", "dsa_context_module_perf.parquet")
    d = pd.read_parquet(path)
    d = d[(d.model == "zai-org/GLM-5-FP8") & (d.kv_cache_dtype == "fp8") & (d.gemm_type == "fp8_block")
          & (d.step == 0) & (d.batch_size == 1)]
    gpu = get_gpu("b200_sxm")
    parts = {"q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_absorbed", "indexer_q_proj", "indexer_k_proj",
             "attention_prefill", "o_proj"}
    ops = FrameworkOps(CalibratedOps(gpu, framework="sglang"), PROFILES["sglang"])
    for isl in (8192, 16384):
        share = {}
        for tp in (1, 8):
            cost = build_step_cost(CostSpec(gpu, get_model("glm-5"), "fp8_block", "fp8", "bf16", f"tp={tp}",
                                            framework="sglang", ops=ops))
            rep = cost.describe(BatchShape(prefill_tokens=isl, prefill_seqs=1, prefill_attn_pairs=isl * (isl + 1) / 2,
                                           prefill_past_tokens=0))
            layer = next(x for x in rep["layers"] if x["ffn"] == "moe")
            ours = sum(o["time_s"] * o["per_layer"] for o in layer["ops"] if o["name"] in parts)
            measured = d[(d.tp_size == tp) & (d.isl == isl)].latency.min() / 1e3
            share[tp] = ours / measured
        assert share[8] >= 0.6 and share[8] == pytest.approx(share[1], rel=0.2), (isl, share)


def test_kv_cache_holds_the_indexer_keys():
    """GLM-5 caches per token and layer the 576-element MLA latent and the indexer's 128 FP8 key
    elements with a 4-byte scale (config.json: kv_lora_rank 512 + qk_rope_head_dim 64; index_head_dim 128)."""
    m = get_model("glm-5")
    assert m.kv_bytes_per_token(1.0) == 78 * (576 + 132)
    assert m.kv_bytes_for_context(1000, 2.0) == 78 * 1000 * (576 * 2 + 132)
    from simcluster.perf.memory import memory_plan

    gpu = get_gpu("b200_sxm")
    dense = replace(m, index_topk=0, index_n_heads=0, index_head_dim=0)
    tok = memory_plan(CostSpec(gpu, m, "fp8_block", "fp8", "bf16", "tp=8")).kv_capacity_tokens
    tok_d = memory_plan(CostSpec(gpu, dense, "fp8_block", "fp8", "bf16", "tp=8")).kv_capacity_tokens
    assert tok < tok_d * 576 / (576 + 132) * 1.01


def test_hf_config_reads_the_indexer(tmp_path):
    cfg = {"architectures": ["GlmMoeDsaForCausalLM"], "num_hidden_layers": 78, "hidden_size": 6144,
           "num_attention_heads": 64, "num_key_value_heads": 64, "head_dim": 64, "intermediate_size": 12288,
           "vocab_size": 154880, "kv_lora_rank": 512, "q_lora_rank": 2048, "qk_nope_head_dim": 192,
           "qk_rope_head_dim": 64, "v_head_dim": 256, "n_routed_experts": 256, "num_experts_per_tok": 8,
           "moe_intermediate_size": 2048, "n_shared_experts": 1, "first_k_dense_replace": 3,
           "index_topk": 2048, "index_n_heads": 32, "index_head_dim": 128}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    m = load_hf_config(p)
    assert (m.index_topk, m.index_n_heads, m.index_head_dim) == (2048, 32, 128)
    assert m.param_counts()["total"] == get_model("glm-5").param_counts()["total"]


def test_sparse_attention_without_mla_is_a_user_error(tmp_path, capsys):
    """The indexer prices the top-k of an MLA latent cache; a config that asks for it on GQA attention
    (or without index heads) is refused with the file named, exit status 2 from the CLI."""
    from simcluster.cli.main import main

    cfg = {"num_hidden_layers": 2, "hidden_size": 1024, "num_attention_heads": 8, "num_key_value_heads": 2,
           "intermediate_size": 4096, "vocab_size": 32000, "index_topk": 2048, "index_n_heads": 8,
           "index_head_dim": 64}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    from simcluster.errors import UserError

    with pytest.raises(UserError, match="sparse attention"):
        load_hf_config(p)
    capsys.readouterr()
    assert main(["cost", "--model", str(p)]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "index_topk" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
