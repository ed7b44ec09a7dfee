"""Pipeline parallelism in the engine: pp micro-batches in flight."""

from __future__ import annotations

import numpy as np
import pytest

from simcluster.perf.interface import BatchShape
from simcluster.perf.pipeline import PipelinedStepCost
from simcluster.perf.step_cost import CostSpec, build_step_cost


def _cost(layout):
    return build_step_cost(CostSpec("h200_sxm", "llama-3.1-70b", "fp8", "fp8", "bf16", layout))


def test_a_pipelined_decode_step_takes_one_micro_batch_traversal():
    inner = _cost("tp=4,pp=2")
    pp = PipelinedStepCost(inner, 2)
    full = BatchShape(decode_seqs=64, decode_context_tokens=64 * 2000)
    half = BatchShape(decode_seqs=32, decode_context_tokens=32 * 2000)
    assert pp.step(full).latency_s == pytest.approx(inner.step(half).latency_s)
    # the two micro-batches do the whole batch's work
    assert pp.step(full).flops == pytest.approx(2 * inner.step(half).flops)
    lat = pp.decode_run(64, 64 * 2000, 5)
    assert np.allclose(lat, inner.decode_run(32, 32 * 2000, 5))


def test_pipelining_raises_decode_throughput_over_one_traversal_per_batch():
    inner = _cost("tp=4,pp=2")
    pp = PipelinedStepCost(inner, 2)
    shape = BatchShape(decode_seqs=128, decode_context_tokens=128 * 2000)
    # tokens per second of the instance: B / step latency
    assert 128 / pp.step(shape).latency_s > 128 / inner.step(shape).latency_s


def test_a_batch_smaller_than_the_stages_pays_a_full_traversal():
    inner = _cost("tp=4,pp=4")
    pp = PipelinedStepCost(inner, 4)
    one = BatchShape(decode_seqs=1, decode_context_tokens=3000)
    assert pp.step(one).latency_s == pytest.approx(inner.step(one).latency_s)
