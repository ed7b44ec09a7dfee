"""Layouts parse and validate with messages that name the key; `simcluster cost` errors name the flag."""

from __future__ import annotations

import json

import pytest

from simcluster.catalog.models import get_model
from simcluster.cli.main import main
from simcluster.errors import UserError
from simcluster.perf.layout import Layout


@pytest.mark.parametrize("text, n, gpus, tpf, tpo, kind", [
    ("tp=8", 8, 8, 8, 8, "tp"),
    ("tp=4,pp=2", 4, 8, 4, 4, "tp+pp"),
    ("dp=8,ep=8", 8, 8, 1, 1, "dp-attention+ep"),
    ("tp=8,ep=8", 8, 8, 1, 8, "tp-attention+ep"),
    ("kvp=4,tpa=8,tpf=32,ep=1", 32, 32, 32, 32, "helix"),
    ("kvp=4,tpa=8", 32, 32, 32, 32, "helix"),
    ("kvp=8,tpa=1,tpf=8,tpo=1", 8, 8, 8, 1, "medha-kvp"),
    ("kvp=4,tpa=8,tpf=8", 32, 32, 8, 8, "medha-kvp"),
    (" TP = 2 , PP = 3 ", 2, 6, 2, 2, "tp+pp"),
])
def test_layouts_resolve_their_defaults(text, n, gpus, tpf, tpo, kind):
    lay = Layout.parse(text)
    assert (lay.attention_group, lay.gpus, lay.tpf, lay.tpo, lay.kind) == (n, gpus, tpf, tpo, kind)
    assert lay.tp == lay.tpa


@pytest.mark.parametrize("text, key", [
    ("tq=8", "tq"), ("tp=0", "tp"), ("tp=x", "tp"), ("tp=8,tp=4", "tp"), ("tp=8,tpa=4", "tpa"),
    ("tp=4,ep=3", "ep=3"), ("tp=8,tpf=3", "tpf"), ("kvp=2,tpa=4,tpo=2", "tpo"), ("", "empty"), ("tp", "key=value"),
    ("dp=2,tpa=4,tpf=4", "dp=1"),
])
def test_bad_layouts_are_user_errors_naming_the_key(text, key):
    with pytest.raises(UserError, match=key):
        Layout.parse(text, field="--layout")


@pytest.mark.parametrize("model, text, fragment", [
    ("llama-3.1-405b", "kvp=2,tpa=16", "must not exceed 8 KV heads"),
    ("deepseek-r1", "kvp=8,tpa=2", "MLA latent"),
    ("llama-3.1-405b", "tp=3", "query heads"),
    ("llama-3.1-405b", "tp=8,ep=8", "needs an MoE model"),
    ("deepseek-r1", "dp=512,ep=512", "exceeds the model.s 256 experts"),
    ("llama-3.1-8b", "pp=64", "layers"),
    ("qwen3-32b", "tp=8,tpf=8,tpo=8,pp=1", None),
])
def test_layout_validation_against_the_model(model, text, fragment):
    lay = Layout.parse(text)
    if fragment is None:
        lay.validate(get_model(model))
        return
    with pytest.raises(UserError, match=fragment):
        lay.validate(get_model(model))


def test_group_larger_than_the_nvlink_domain_needs_permission():
    lay = Layout.parse("tp=16")
    with pytest.raises(UserError, match="NVLink domain holds 8"):
        lay.validate(get_model("llama-3.1-405b"), domain_size=8)
    lay.validate(get_model("llama-3.1-405b"), domain_size=8, allow_cross_domain=True)


def run_cost(capsys, *args):
    capsys.readouterr()
    rc = main(["cost", *args])
    return rc, capsys.readouterr()


@pytest.mark.parametrize("args, flag", [
    (["--weights", "fp5"], "--weights"),
    (["--kv", "int3"], "--kv"),
    (["--gpu", "a99"], "--gpu"),
    (["--model", "no-such-model"], "--model"),
    (["--layout", "tp=3"], "--layout"),
    (["--layout", "foo=2"], "--layout"),
    (["--batch", "0"], "--batch"),
    (["--context", "-1"], "--context"),
    (["--framework", "tgi"], "--framework"),
    (["--resmoe-keep", "0.5"], "--resmoe-keep"),
    (["--kv-budget", "0"], "--kv-budget"),
    (["--gpu", "h100", "--model", "llama-3.1-405b", "--layout", "tp=16"], "--layout"),
    (["--a2a-payload", "latent"], "--a2a-payload"),
])
def test_cost_user_errors_exit_2_and_name_the_flag(capsys, args, flag):
    rc, out = run_cost(capsys, *args)
    assert rc == 2
    assert flag in out.err
    assert "Traceback" not in out.err


def test_cost_prints_a_table_and_json(capsys):
    rc, out = run_cost(capsys, "--gpu", "h200", "--model", "deepseek-r1", "--weights", "fp8", "--kv", "fp8",
                       "--layout", "dp=8,ep=8", "--batch", "64", "--context", "8192")
    assert rc == 0, out.err
    assert "step latency" in out.out and "routed_experts" in out.out and "moe_dispatch" in out.out
    rc, out = run_cost(capsys, "--gpu", "h100", "--model", "llama-3.1-70b", "--layout", "tp=4,pp=2", "--phase",
                       "prefill", "--tokens", "4096", "--json")
    assert rc == 0, out.err
    r = json.loads(out.out)
    comp = r["components"]
    assert sum(comp.values()) == pytest.approx(r["latency_s"])
    assert r["table_latency_s"] == pytest.approx(r["latency_s"], rel=0.02)
    assert r["memory"]["fits"] and r["memory"]["gpus"] == 8
    assert any(op["name"] == "pp_send" for op in r["per_step_ops"])


def test_cost_reports_when_weights_do_not_fit(capsys):
    rc, out = run_cost(capsys, "--gpu", "h100", "--model", "llama-3.1-405b", "--json")
    assert rc == 0  # the step cost is still reported; the memory section says why it cannot run
    memory = json.loads(out.out)["memory"]
    assert memory["fits"] is False
    assert "model does not fit" in memory["error"]


def test_fp4_on_hopper_executes_as_fp8(capsys):
    """Hopper has no FP4 tensor cores: FP4 weights with FP4 activations run at the FP8 rate."""
    rc, out = run_cost(capsys, "--gpu", "h100", "--weights", "fp4", "--activations", "fp4", "--kv", "fp8", "--json")
    assert rc == 0
    r = json.loads(out.out)
    assert (r["executes"]["gemm"], r["executes"]["attention"]) == ("fp8", "fp8")
