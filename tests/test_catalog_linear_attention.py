"""Hybrid models with linear-attention (Gated DeltaNet) layers and gated full attention (Qwen3.5).

Truth: the model's name gives its size (Qwen3.5-397B-A17B: 397 B parameters, 17 B active per token),
and the memory plan must hold exactly the parameters the catalog counts (conservation)."""

from __future__ import annotations

import pytest

from simcluster.catalog.models import get_model, model_from_hf_config
from simcluster.errors import UserError
from simcluster.perf.interface import BatchShape
from simcluster.perf.step_cost import CostSpec, build_step_cost, memory_plan

# Qwen/Qwen3.5-397B-A17B config.json (text_config), the fields the catalog reads
QWEN35_CONFIG = {
    "hidden_size": 4096, "num_hidden_layers": 60, "num_attention_heads": 32, "num_key_value_heads": 2,
    "head_dim": 256, "vocab_size": 248320, "num_experts": 512, "num_experts_per_tok": 10,
    "moe_intermediate_size": 1024, "n_shared_experts": 1, "max_position_embeddings": 262144,
    "attn_output_gate": True, "full_attention_interval": 4, "linear_num_key_heads": 16,
    "linear_num_value_heads": 64, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "layer_types": ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(60)],
}


def test_qwen35_parameter_counts_match_its_name():
    c = get_model("qwen3.5-397b-a17b").param_counts()
    assert c["total"] / 1e9 == pytest.approx(397, rel=0.005)
    assert c["active"] / 1e9 == pytest.approx(17, rel=0.03)


def test_linear_layers_have_their_own_projections():
    m = get_model("qwen3.5-397b-a17b")
    h = 4096
    # in_proj_qkvz + in_proj_ba + depthwise conv over q, k, v + out_proj
    linear = h * (2 * 16 * 128 + 2 * 64 * 128) + h * 2 * 64 + (2 * 16 * 128 + 64 * 128) * 4 + 64 * 128 * h
    full = 2 * h * 32 * 256 + 2 * h * 2 * 256 + 32 * 256 * h  # q and its gate, k, v, o
    assert m.linear_attention_params_per_layer() == linear
    assert m.attention_params_per_layer() == full
    assert m.param_counts()["attention"] == 45 * linear + 15 * full


def test_hf_config_of_a_hybrid_model_reads_as_the_catalog_entry():
    m = model_from_hf_config(QWEN35_CONFIG, name="q35")
    cat = get_model("qwen3.5-397b-a17b")
    assert m.linear_attention_layers == 45 and m.attn_output_gate
    assert m.sliding_window_layers == 45 and m.sliding_window == cat.sliding_window == 2048
    assert m.param_counts() == cat.param_counts()
    # the interval alone (no layer_types) gives the same split
    no_types = {k: v for k, v in QWEN35_CONFIG.items() if k != "layer_types"}
    assert model_from_hf_config(no_types, name="q35").linear_attention_layers == 45


def test_hf_config_with_linear_attention_needs_its_head_counts():
    bad = {k: v for k, v in QWEN35_CONFIG.items() if k != "linear_num_key_heads"}
    with pytest.raises(UserError, match="linear_num_key_heads"):
        model_from_hf_config(bad, name="q35", path="q35/config.json")


@pytest.mark.parametrize("layout,tp", [("tp=8", 8), ("tp=4,pp=2", 4)])
def test_memory_plan_holds_every_counted_parameter(layout, tp):
    """BF16 everywhere: the instance holds 2 bytes per counted parameter, less the depthwise
    convolution (45 x 49 k parameters, not a GEMM op), plus what tensor parallelism replicates: the
    router on every GPU, and the 2 KV heads of the 15 full layers, one per GPU when TP > 2."""
    c = get_model("qwen3.5-397b-a17b").param_counts()
    plan = memory_plan(CostSpec("b200_sxm", "qwen3.5-397b-a17b", "bf16", "bf16", "bf16", layout))
    conv = 45 * (2 * 16 * 128 + 64 * 128) * 4
    router_copies = (tp - 1) * c["router"]
    kv_copies = 15 * (tp - 2) * 4096 * 256 * 2  # k and v projections of the extra KV-head copies
    expected = (c["total"] - conv + router_copies + kv_copies) * 2.0
    assert plan.weight_bytes_total == pytest.approx(expected, rel=1e-9)


def test_a_model_that_does_not_fit_names_its_weights():
    with pytest.raises(UserError, match=r"model does not fit: weights need 7\d\d\.\d GB per GPU"):
        memory_plan(CostSpec("b200_sxm", "qwen3.5-397b-a17b", "bf16", "bf16", "bf16", "tp=1"))


def test_cost_breakdown_shows_each_kind_of_layer_with_its_projections():
    cost = build_step_cost(CostSpec("b200_sxm", "qwen3.5-397b-a17b", "bf16", "bf16", "bf16", "tp=8"))
    rep = cost.describe(BatchShape(decode_seqs=4, decode_context_tokens=8000))
    ops = {layer["attention"]: (layer["count"], [o["name"] for o in layer["ops"]]) for layer in rep["layers"]}
    n_full, full = ops["full"]
    n_lin, linear = ops["linear"]
    assert (n_full, n_lin) == (15, 45)
    assert "qkv_proj" in full and "o_proj" in full and "linear_in_proj" not in full
    assert "linear_in_proj" in linear and "linear_out_proj" in linear and "qkv_proj" not in linear
    # each kind's projections appear once per layer of that kind
    for layer in rep["layers"]:
        for o in layer["ops"]:
            if o["name"] in ("qkv_proj", "o_proj", "linear_in_proj", "linear_out_proj"):
                assert o["per_layer"] == pytest.approx(1.0)
