"""Byte accounting the cost model rests on: formats (Q-1), KV sizes (K-1), parameter counts, memory.

Expected values are SEED-NOTES §5 (OCP MX Table 1, NVFP4), §1.8 (model table) and §1.10.
"""

from __future__ import annotations

import pytest

from simcluster.catalog.formats import get_format
from simcluster.catalog.models import get_model
from simcluster.errors import UserError
from simcluster.perf.step_cost import CostSpec, memory_plan

KIB = 1024


@pytest.mark.parametrize("fmt, bits", [("mxfp8", 8.25), ("mxfp6", 6.25), ("mxfp4", 4.25), ("mxint8", 8.25),
                                       ("nvfp4", 4.5), ("fp4", 4.0), ("fp8", 8.0), ("bf16", 16.0)])
def test_q1_bits_per_element_include_block_scales(fmt, bits):
    """Q-1: MX block 32 + E8M0 scale; NVFP4 block 16 + E4M3 scale; raw FP4/FP8 are Helix's 0.5 / 1 byte."""
    assert get_format(fmt).bits_per_element == pytest.approx(bits, abs=1e-12)


@pytest.mark.parametrize("model, kib_bf16, kib_fp8, kib_fp4", [
    ("llama-3.1-405b", 504, 252, 126), ("llama-3.1-70b", 320, 160, 80), ("llama-3.1-8b", 128, 64, 32),
    ("deepseek-r1", 68.6, 34.3, 17.2),
])
def test_k1_kv_bytes_per_token_match_the_seed_table(model, kib_bf16, kib_fp8, kib_fp4):
    """K-1: KV bytes per token over all layers (MLA: 512 + 64 latent values per layer)."""
    m = get_model(model)
    for fmt, kib in (("bf16", kib_bf16), ("fp8", kib_fp8), ("fp4", kib_fp4)):
        assert m.kv_bytes_per_token(get_format(fmt).bytes_per_element) / KIB == pytest.approx(kib, abs=0.05)


@pytest.mark.parametrize("model, gb", [("llama-3.1-405b", 129), ("llama-3.1-70b", 82), ("llama-3.1-8b", 33),
                                       ("deepseek-r1", 17.6)])
def test_k1_one_million_token_sequence_in_fp4(model, gb):
    m = get_model(model)
    assert m.kv_bytes_for_context(1_000_000, get_format("fp4").bytes_per_element) / 1e9 == pytest.approx(gb, rel=0.01)


def test_kv_per_gpu_is_sharded_by_tp_up_to_kv_heads_and_duplicated_beyond():
    """405B: 126 KiB/token in FP4 over 8 GPUs at TP=8; at TP=16 each GPU still holds one KV head."""
    tp8 = memory_plan(CostSpec("gb200", "llama-3.1-405b", "fp4", "fp4", "bf16", "tp=8"))
    tp16 = memory_plan(CostSpec("gb200", "llama-3.1-405b", "fp4", "fp4", "bf16", "tp=16"))
    assert tp8.kv_bytes_per_token_per_gpu * 8 == pytest.approx(126 * KIB)
    assert tp16.kv_bytes_per_token_per_gpu == tp8.kv_bytes_per_token_per_gpu
    assert (tp8.kv_copies, tp16.kv_copies) == (1, 2)


def test_mla_latent_kv_is_duplicated_by_tp_and_sharded_by_kvp():
    """DeepSeek-R1: every TP rank holds the whole 17.2 KiB latent; KVP = 8 holds 1/8 of it per GPU."""
    tp8 = memory_plan(CostSpec("gb200", "deepseek-r1", "fp4", "fp4", "bf16", "tp=8,ep=8"))
    kvp8 = memory_plan(CostSpec("gb200", "deepseek-r1", "fp4", "fp4", "bf16", "kvp=8,tpa=1,ep=8,tpf=1"))
    assert tp8.kv_bytes_per_token_per_gpu / KIB == pytest.approx(17.16, abs=0.01)
    assert kvp8.kv_bytes_per_token_per_gpu * 8 == pytest.approx(tp8.kv_bytes_per_token_per_gpu)
    assert kvp8.kv_capacity_tokens > 7 * tp8.kv_capacity_tokens


def test_parameter_counts_match_the_published_totals():
    """405.8B for Llama-3.1-405B (81 % FFN); DeepSeek-R1 670.9B total / 37.4B active (SEED §1.8)."""
    llama = get_model("llama-3.1-405b").param_counts()
    assert llama["total"] / 1e9 == pytest.approx(405.8, rel=2e-3)
    assert llama["dense_ffn"] / llama["total"] == pytest.approx(0.81, abs=0.005)
    dsr1 = get_model("deepseek-r1").param_counts()
    assert dsr1["total"] / 1e9 == pytest.approx(670.9, rel=2e-3)
    assert dsr1["active"] / 1e9 == pytest.approx(37.4, rel=0.01)


# Published sizes (billions): total, and active per token as the releases count it (the LM head in, the
# input embedding - a table lookup - out). Sources: the model cards (Qwen3-32B 32.8; Qwen3-235B-A22B
# "235B in total and 22B activated"; gpt-oss-120b 117 / 5.1, gpt-oss-20b 21 / 3.6; Kimi-K2 1.04 T
# total and 32 B activated (its technical report); MiniMax-M2 230 / 10), the GLM-5 release (744 / 40), the names.
PUBLISHED_SIZES = {
    "qwen3-32b": (32.8, 32.8), "qwen3-235b-a22b": (235, 22), "gpt-oss-120b": (117, 5.1),
    "gpt-oss-20b": (21, 3.6), "kimi-k2": (1040, 32), "minimax-m2": (230, 10), "glm-5": (744, 40),
    "qwen3.5-397b-a17b": (397, 17), "deepseek-r1": (671, 37),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_SIZES))
def test_catalog_shapes_reproduce_the_published_sizes(name):
    """The catalog's shapes, counted, give each release's stated size: total within 2 %, active (less the
    input embedding) within 6 % (the releases round, e.g. "A17B"). A layer priced with the wrong shapes
    shows here first (Qwen3.5's DeltaNet layers were: 13.7 B active against 17)."""
    m = get_model(name)
    c = m.param_counts()
    total, active = PUBLISHED_SIZES[name]
    assert c["total"] / 1e9 == pytest.approx(total, rel=0.02)
    assert (c["active"] - m.vocab_size * m.hidden_size) / 1e9 == pytest.approx(active, rel=0.06)


def test_memory_plan_rejects_a_model_that_does_not_fit():
    """Llama-3.1-405B in BF16 needs ≈ 811 GB: not on one 80 GB H100."""
    spec = CostSpec("h100", "llama-3.1-405b", "bf16", "bf16", "bf16", "tp=1")
    with pytest.raises(UserError, match=r"model does not fit: weights need 8\d\d\.\d GB per GPU"):
        memory_plan(spec)


def test_memory_plan_weights_split_over_tp_and_pp():
    """Per-GPU weights shrink with TP × PP; the instance total stays the model's size."""
    one = memory_plan(CostSpec("h200", "llama-3.1-70b", "fp8", "fp8", "bf16", "tp=2"))
    eight = memory_plan(CostSpec("h200", "llama-3.1-70b", "fp8", "fp8", "bf16", "tp=4,pp=2"))
    params = get_model("llama-3.1-70b").param_counts()
    emb = params["embedding"]
    expected_total = (params["total"] - emb) * 1.0 + emb * 2.0  # FP8 body, BF16 embedding and LM head
    assert one.weight_bytes_total == pytest.approx(expected_total, rel=1e-6)
    assert eight.weight_bytes_total == pytest.approx(expected_total, rel=1e-6)
    assert eight.weight_bytes_per_gpu < one.weight_bytes_per_gpu / 3.5


def test_resmoe_shrinks_expert_memory_by_the_kept_fraction_plus_index_and_barycenter():
    """ResMoE at keep 0.25 with a bitmap-cheap index (0 bits): experts shrink 4×, plus one barycenter."""
    args = ("gb200", "deepseek-r1", "fp8", "fp8", "bf16", "dp=8,ep=8")
    full = memory_plan(CostSpec(*args))
    comp = memory_plan(CostSpec(*args, resmoe_keep=0.25, resmoe_index_bits=0.0))
    m = get_model("deepseek-r1")
    expert_bytes = m.expert_params() * 1.0  # FP8
    e_loc = 256 / 8
    saved_per_layer = e_loc * expert_bytes * 0.75 - expert_bytes  # residuals shrink, barycenter added
    assert full.weight_bytes_per_gpu - comp.weight_bytes_per_gpu == pytest.approx(
        m.moe_layers * saved_per_layer, rel=1e-6)
