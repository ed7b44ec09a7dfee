"""Pools whose experts exchange tokens with DeepEP (``pools.*.moe_a2a: deepep``) run their block-FP8
experts as DeepGEMM grouped GEMMs: on Blackwell the measured DeepGEMM MoE table answers (TRT-LLM's
collector), on Hopper the framework's own table (perf/framework.py: the KERNEL_ROUTES entries with
"moe_a2a": "deepep")."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from simcluster.catalog.gpus import GPUS
from simcluster.errors import UserError
from simcluster.perf.calibration import CalibratedOps
from simcluster.perf.framework import PROFILES, FrameworkOps
from simcluster.perf.interface import BatchShape
from simcluster.validate.srtslurm import pool_settings, resolve

DS = (7168, 2048, 8, 256)  # DeepSeek-V3/R1 experts: hidden, inter, top-k, experts


def test_a_deepep_pool_prices_block_fp8_experts_from_the_deepgemm_table_on_blackwell():
    for gpu in ("gb200", "b200_sxm"):
        sgl = CalibratedOps(gpu, framework="sglang")
        trt = CalibratedOps(gpu, framework="trtllm")
        deepep = FrameworkOps(sgl, PROFILES["sglang"], moe_a2a="deepep")
        default = FrameworkOps(sgl, PROFILES["sglang"])
        for tokens, ep in ((64, 8), (8192, 32), (16384, 8)):
            assert deepep.moe(tokens, *DS, 1, ep, "fp8_block") == trt.moe(tokens, *DS, 1, ep, "fp8_block")
            assert default.moe(tokens, *DS, 1, ep, "fp8_block") == sgl.moe(tokens, *DS, 1, ep, "fp8_block")
        # the vectorised path agrees
        tok = np.array([64.0, 8192.0])
        assert np.allclose(deepep.moe_many(tok, *DS, np.ones(2), np.array([8.0, 32.0]), "fp8_block"),
                           [trt.moe(64, *DS, 1, 8, "fp8_block"), trt.moe(8192, *DS, 1, 32, "fp8_block")])
        # other formats keep the framework's kernel
        assert deepep.moe(512, *DS, 1, 8, "nvfp4") == default.moe(512, *DS, 1, 8, "nvfp4")


def test_the_deepgemm_answer_stays_under_the_gpu_s_peak():
    # independent truth: 8,192 tokens x top-8 over EP 32 = 2,048 token-expert rows per GPU, each
    # 3 x 7168 x 2048 multiply-adds; no answer may exceed the catalog's dense FP8 peak
    gpu = GPUS["gb200"]
    ops = FrameworkOps(CalibratedOps(gpu, framework="sglang"), PROFILES["sglang"], moe_a2a="deepep")
    t = ops.moe(8192, *DS, 1, 32, "fp8_block")
    flops = 8192 * 8 / 32 * 2 * 3 * 7168 * 2048
    peak, _ = gpu.flops_for("fp8")
    assert flops / t <= peak


def test_hopper_has_no_deepgemm_moe_table_so_the_framework_s_answers():
    sgl = CalibratedOps("h200_sxm", framework="sglang")
    deepep = FrameworkOps(sgl, PROFILES["sglang"], moe_a2a="deepep")
    assert deepep.moe(4096, *DS, 1, 8, "fp8_block") == sgl.moe(4096, *DS, 1, 8, "fp8_block")


def test_an_unknown_moe_a2a_is_a_user_error():
    with pytest.raises(UserError, match="moe_a2a"):
        FrameworkOps(CalibratedOps("gb200", framework="sglang"), PROFILES["sglang"], moe_a2a="nccl")


def _scenario(gpu: str, a2a: str) -> dict:
    return {
        "name": "deepep", "cluster": {"gpu": gpu},
        "model": {"name": "deepseek-r1", "weights": "fp8_block", "kv_cache": "fp8"},
        "serving": {"framework": "sglang", "mode": "disaggregated", "framework_profile": True},
        "pools": {"prefill": {"instances": 1, "layout": "dp=8,ep=8,tpf=1"},
                  "decode": {"instances": 1, "layout": "dp=32,ep=32,tpf=1", "moe_a2a": a2a}},
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate_per_s": 1.0},
                     "input_tokens": {"dist": "fixed", "value": 16}, "output_tokens": {"dist": "fixed", "value": 4}},
    }


def test_the_scenario_s_pool_setting_reaches_that_pool_s_step_cost_only():
    from simcluster.config.scenario import Scenario
    from simcluster.sim.deployment import build_pools

    shape = BatchShape(decode_seqs=4096, decode_context_tokens=4096 * 1500)
    plans = {a2a: {p.role: p for p in build_pools(Scenario.model_validate(_scenario("gb200", a2a)))}
             for a2a in ("default", "deepep")}
    dec = {a2a: plans[a2a]["decode"].cost.step(shape).latency_s for a2a in plans}
    assert dec["deepep"] < dec["default"]
    pre = BatchShape(prefill_tokens=8192, prefill_seqs=8, prefill_attn_pairs=8 * 1024 * 1025 // 2)
    assert plans["deepep"]["prefill"].cost.step(pre).latency_s == plans["default"]["prefill"].cost.step(pre).latency_s
    # on Hopper the setting changes nothing
    def h200(a2a):
        data = _scenario("h200_sxm", a2a)
        data["pools"]["decode"]["layout"] = "dp=8,ep=8,tpf=1"
        return {p.role: p for p in build_pools(Scenario.model_validate(data))}["decode"]

    h = {a2a: h200(a2a) for a2a in ("default", "deepep")}
    assert h["deepep"].cost.step(shape).latency_s == h["default"].cost.step(shape).latency_s


def test_deepep_without_the_framework_s_kernels_is_a_user_error():
    from simcluster.config.scenario import Scenario
    from simcluster.sim.deployment import build_pools

    data = _scenario("gb200", "deepep")
    data["serving"]["framework_profile"] = False
    with pytest.raises(UserError) as err:
        build_pools(Scenario.model_validate(data))
    assert err.value.where == "pools.decode.moe_a2a" and "framework_profile" in str(err.value)


def test_the_scenario_rejects_an_unknown_moe_a2a_with_the_field_named(tmp_path):
    from simcluster.config.loader import load_scenario

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_scenario("gb200", "mpi")))
    with pytest.raises(UserError) as err:
        load_scenario(path)
    assert "pools.decode.moe_a2a" in str(err.value) and "s.yaml" in str(err.value)


SGLANG_DEEPEP_FILE = """
backend:
  sglang_config:
    prefill: {tp-size: 8, dp-size: 8, ep-size: 8, enable-dp-attention: true, moe-a2a-backend: deepep,
              deepep-mode: normal, chunked-prefill-size: 131072}
    decode: {tp-size: 32, dp-size: 32, ep-size: 32, enable-dp-attention: true, moe-a2a-backend: deepep,
             deepep-mode: low_latency, max-running-requests: 8192}
"""


def test_a_recipe_file_s_deepep_backend_is_read_per_side():
    st = pool_settings(resolve(yaml.safe_load(SGLANG_DEEPEP_FILE)))
    assert st["prefill_moe_a2a"] == "deepep" and st["decode_moe_a2a"] == "deepep"
    one = yaml.safe_load(SGLANG_DEEPEP_FILE)
    del one["backend"]["sglang_config"]["prefill"]["moe-a2a-backend"]
    st = pool_settings(resolve(one))
    assert "prefill_moe_a2a" not in st and st["decode_moe_a2a"] == "deepep"


def test_a_measured_wide_ep_deployment_with_deepep_decodes_as_measured():
    """InferenceX's DeepSeek-R1 FP8 on GB200 with SGLang, 1k/1k at 6,144 clients (dev line 2541): two
    DEP8 prefill workers and one DEP32 decode worker whose srt-slurm file sets moe-a2a-backend deepep.
    Measured TPOT 32.3 ms. Priced with SGLang's FlashInfer table instead, the decode step is several
    times slower."""
    import dataclasses

    from conftest import shared_path
    from simcluster.validate.mapping import map_row
    from simcluster.validate.silicon import read_silicon_csv
    from simcluster.validate.simulate import Simulator

    rows, _ = read_silicon_csv(shared_path("validation", "silicon_sample_dev.csv"))
    row = {r.line: r for r in rows}[2541]
    setup = map_row(row)
    assert setup.pools["decode"].moe_a2a == "deepep" and setup.pools["prefill"].moe_a2a == "deepep"
    assert any("DeepEP" in n for n in setup.notes)
    pred = Simulator().run(setup)
    assert pred.tpot_ms == pytest.approx(row.tpot_ms, rel=0.25)
    flashinfer = dataclasses.replace(
        setup, pools={k: dataclasses.replace(v, moe_a2a="default") for k, v in setup.pools.items()})
    assert Simulator().run(flashinfer).tpot_ms > 2 * row.tpot_ms


def test_cost_prices_one_deepep_step_and_refuses_it_without_a_framework(capsys):
    from simcluster.cli.main import main

    base = ["cost", "--gpu", "gb200", "--model", "deepseek-r1", "--weights", "fp8_block", "--kv", "fp8",
            "--phase", "decode", "--batch", "4096", "--layout", "dp=32,ep=32,tpf=1", "--json"]
    import json

    steps = {}
    for a2a in ("default", "deepep"):
        assert main([*base, "--framework", "sglang", "--moe-a2a", a2a]) == 0
        steps[a2a] = json.loads(capsys.readouterr().out)["latency_s"]
    assert steps["deepep"] < steps["default"]
    code = main([*base, "--framework", "ideal", "--moe-a2a", "deepep"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--moe-a2a" in err and len(err.splitlines()) == 1
