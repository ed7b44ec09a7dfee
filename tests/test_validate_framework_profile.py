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
