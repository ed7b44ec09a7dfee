"""Layer-wide QK RMSNorm (MiniMax-M2's ``qk_norm_type: per_layer``): under tensor parallelism the
variance of q and k over all heads needs one all-reduce of the ranks' sums of squares per layer."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from simcluster.catalog.gpus import get_gpu
from simcluster.catalog.models import get_model, load_hf_config
from simcluster.perf.composition import Composer
from simcluster.perf.interface import BatchShape
from simcluster.perf.step_cost import CostSpec, build_step_cost


def _ops(model, layout):
    return {op.name: op for op in Composer(CostSpec(get_gpu("b200_sxm"), model, "fp8_block", "fp8", "bf16",
                                                        layout)).ops_list}


def test_tp_group_all_reduces_two_fp32_sums_per_token_and_layer():
    m = get_model("minimax-m2.5")
    ops = _ops(m, "tp=4")
    ar = ops["qk_norm_all_reduce"]
    assert ar.count == m.num_layers  # every layer is a full-attention layer
    import numpy as np

    assert float(ar.evaluate(np.array([64.0])).comm_bytes[0]) == 64 * 2 * 4  # q and k sums, fp32
    norm = ops["qk_norm"]
    # the norm reads and writes this rank's q (48/4 heads) and k (8/4 heads) of 128 elements
    per_token = float(norm.evaluate(np.array([1.0])).act_bytes[0])
    assert per_token == pytest.approx((12 + 2) * 128 * 2 * 4.0)
    # one GPU holds every head: no all-reduce
    assert "qk_norm_all_reduce" not in _ops(m, "tp=1") and "qk_norm" in _ops(m, "tp=1")
    # models without the layer-wide norm have neither
    assert "qk_norm" not in _ops(get_model("llama-3.1-8b"), "tp=4")


def test_the_norm_adds_its_ops_to_the_step_and_nothing_else():
    m = get_model("minimax-m2.5")
    plain = replace(m, qk_norm="")
    spec = dict(gpu=get_gpu("b200_sxm"), weights="fp8_block", kv="fp8", activations="bf16", layout="tp=4")
    shape = BatchShape(decode_seqs=8, decode_context_tokens=8 * 2000)
    with_norm = build_step_cost(CostSpec(model=m, **spec)).describe(shape)
    without = build_step_cost(CostSpec(model=plain, **spec)).describe(shape)
    layer = next(x for x in with_norm["layers"])
    added = sum(o["time_s"] * o["per_layer"] for o in layer["ops"] if o["name"].startswith("qk_norm"))
    assert added > 0
    assert with_norm["latency_s"] - without["latency_s"] == pytest.approx(added * m.num_layers, rel=1e-9)


def test_hf_config_reads_the_per_layer_qk_norm(tmp_path):
    cfg = {"num_hidden_layers": 62, "hidden_size": 3072, "num_attention_heads": 48, "num_key_value_heads": 8,
           "head_dim": 128, "intermediate_size": 1536, "vocab_size": 200064, "num_local_experts": 256,
           "num_experts_per_tok": 8, "use_qk_norm": True, "qk_norm_type": "per_layer"}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    assert load_hf_config(p).qk_norm == "layer"
    cfg["qk_norm_type"] = "per_head"
    p.write_text(json.dumps(cfg))
    assert load_hf_config(p).qk_norm == ""
