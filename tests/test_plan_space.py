"""The sweep spec: validation that names the field, layout generators, point ids."""

from __future__ import annotations

import pytest

from simcluster.errors import UserError
from simcluster.perf.layout import Layout
from simcluster.plan.space import PARAMS, _IdMaker, expand, expand_layouts, parse_spec, point_id

SMALL = {
    "name": "small", "gpu": "h200_sxm", "model": "llama-3.1-8b",
    "formats": {"weights": "fp8", "kv": "fp8", "activations": "bf16"},
    "traffic": [{"isl": 1024, "osl": 128}],
    "mode": ["decode", "disaggregated", "colocated"],
    "decode": {"layouts": ["tp=1", {"tp": [1, 2]}], "batch": [1, 4]},
    "prefill": {"layouts": [{"tp": [1, 2]}], "batch": [1, 2]},
    "ratio": ["rate_matched", 0.5],
}


def _params(**kw):
    p = {n: None for n in PARAMS}
    p.update(gpu="h200_sxm", model="llama-3.1-8b", weights="fp8", kv="fp8", activations="bf16", framework="vllm",
             cost="roofline", resmoe_keep=1.0, hop_b=True, exchange_model="batched", a2a_payload="hidden",
             mode="decode", isl=1024, osl=128, decode_layout="dp=1,tpa=1,kvp=1,tpo=1,tpf=1,ep=1,pp=1",
             decode_batch=8, ftl_limit_s=10.0, gpu_memory_utilization=0.9, ratio_tolerance=0.03)
    p.update(kw)
    return p


def test_point_id_is_a_stable_function_of_the_parameters():
    p = _params()
    # a golden value: the id must not change between runs, processes or releases that keep PARAMS
    assert point_id(p) == "561f331d7640a5be"
    assert point_id(dict(reversed(list(p.items())))) == point_id(p)  # key order does not matter
    assert point_id(_params(resmoe_keep=1)) == point_id(p)  # 1 and 1.0 are the same value
    assert point_id(_params(decode_batch=9)) != point_id(p)
    assert point_id(_params(hop_b=False)) != point_id(p)
    assert point_id(tuple(p[n] for n in PARAMS)) == point_id(p)


def test_id_maker_agrees_with_point_id():
    spec = parse_spec(SMALL)
    make = _IdMaker()
    for pt in expand(spec).points:
        assert make(pt) == point_id(pt)


def test_expansion_counts_and_modes():
    exp = expand(parse_spec(SMALL))
    modes = [pt[PARAMS.index("mode")] for pt in exp.points]
    # 2 distinct decode layouts (tp=1 listed twice) × 2 batches; disaggregated × 2 ratios;
    # colocated × 1 token budget (2048)
    assert modes.count("decode") == 4
    assert modes.count("disaggregated") == 8
    assert modes.count("colocated") == 4
    assert len(set(exp.ids)) == len(exp.ids) == 16


def test_generators_drop_non_layouts_and_respect_gpu_range():
    spec = parse_spec({**SMALL, "decode": {"layouts": [{"tp": [1, 2, 4], "ep": [1, 3]}, "tpa=2"],
                                           "batch": [1], "gpus": {"max": 2}}})
    ls = expand_layouts(spec.decode)
    assert ls.layouts == [str(Layout.parse("tp=1")), str(Layout.parse("tp=2"))]
    assert ls.dropped == 3  # ep=3 divides none of 1, 2, 4
    assert ls.outside_gpu_range == 1  # tp=4


@pytest.mark.parametrize("bad, where", [
    ({"modle": "x"}, "modle"),
    ({"decode": {"layouts": ["tp=1"], "batch": [0]}}, "decode.batch"),
    ({"decode": {"layouts": ["tq=1"]}}, "decode.layouts[0]"),
    ({"decode": {"layouts": [{"tq": [1]}]}}, "decode.layouts[0].tq"),
    ({"traffic": [{"isl": 10, "osl": 1}]}, "traffic[0].osl"),
    ({"mode": ["fast"]}, "mode[0]"),
    ({"ratio": [-1.0]}, "ratio"),
    ({"prefill": None}, "<root>"),
])
def test_spec_errors_name_the_field(bad, where):
    with pytest.raises(UserError) as err:
        parse_spec({**SMALL, **bad}, "s.yaml")
    assert f"s.yaml: {where}" in str(err.value)
