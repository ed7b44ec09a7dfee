"""Expert parallelism wider than the experts divide: ceil(E / ep) slots per GPU, the spare ones holding
replicas (SGLang ``--ep-num-redundant-experts``, TRT-LLM's EPLB slots; DeepSeek's 256 experts on 24, 48
or 72 GPUs in the GB200 wide-EP recipes)."""

from __future__ import annotations

import numpy as np
import pytest

from simcluster.catalog.models import get_model
from simcluster.errors import UserError
from simcluster.perf.composition import Composer
from simcluster.perf.layout import Layout, expert_slots
from simcluster.perf.memory import memory_plan
from simcluster.perf.step_cost import CostSpec


def _spec(ep: int, model: str = "deepseek-r1", **kw) -> CostSpec:
    return CostSpec("gb200", model, "fp8_block", "fp8", "bf16", f"tp=1,dp={ep},ep={ep}", **kw)


def test_an_ep_that_does_not_divide_the_experts_is_a_layout_with_spare_slots_and_one_wider_than_them_is_not():
    m = get_model("deepseek-r1")
    Layout.parse("tp=1,dp=48,ep=48").validate(m, allow_cross_domain=True)
    assert [expert_slots(256, ep) for ep in (32, 48, 64, 72, 256)] == [8, 6, 4, 4, 1]
    with pytest.raises(UserError, match="ep=8 needs an MoE model"):
        Layout.parse("tp=8,ep=8").validate(get_model("llama-3.1-70b"))
    with pytest.raises(UserError, match="exceeds the model's 256 experts"):
        Layout.parse("tp=1,dp=512,ep=512").validate(m, allow_cross_domain=True)


def test_each_gpu_stores_its_slots_so_weights_fall_linearly_in_the_slot_count():
    # Qwen3-235B-A22B: 128 experts and no dense layers, so nothing else on a GPU depends on ep
    # (attention is data-parallel in all three layouts); 4, 3 and 2 slots at ep 32, 48, 64
    model = "qwen3-235b-a22b"
    w = {ep: memory_plan(_spec(ep, model)).weight_bytes_per_gpu for ep in (32, 48, 64)}
    c = Composer(_spec(48, model))
    per_slot = c.expert_bytes_gpu * c.n_moe
    assert c.expert_slots == 3 and c.e_loc == pytest.approx(128 / 48)
    assert w[32] - w[48] == pytest.approx(per_slot, rel=1e-9)
    assert w[48] - w[64] == pytest.approx(per_slot, rel=1e-9)
    total = memory_plan(_spec(48, model)).weight_bytes_total
    assert total == pytest.approx(48 * w[48], rel=1e-9)  # the 16 replicas are stored too


def test_the_routed_load_per_gpu_is_a_1_over_ep_share_whatever_the_slots():
    # balanced routing (imbalance fixed at 1): FLOPs of the routed experts per GPU ∝ 1 / ep
    tokens = np.array([256.0, 4096.0])
    flops = {}
    for ep in (32, 48):
        c = Composer(_spec(ep, moe_load_imbalance=1.0))
        op = next(o for o in c.ops_list if o.name == "routed_experts")
        flops[ep] = op.evaluate(tokens).flops
        if ep == 48:
            assert "6 expert slots/GPU (256 experts + 32 redundant)" in op.detail
    assert flops[48] == pytest.approx(flops[32] * 32 / 48, rel=1e-9)
