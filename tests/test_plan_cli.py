"""`simcluster sweep / plan / report`: results on success, exit status 2 and one line on user errors."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import yaml

from simcluster.cli.main import main
from tests.conftest import REPO

SPEC = {
    "name": "cli-sweep", "gpu": "h100_sxm", "model": "llama-3.1-8b", "traffic": [{"isl": 1024, "osl": 128}],
    "mode": ["disaggregated", "colocated"],
    "decode": {"layouts": [{"tp": [1, 2]}], "batch": [1, 8, 64]},
    "prefill": {"layouts": ["tp=1"], "batch": [1, 2]},
    "slo": {"ttft_s": 1.0, "tpot_s": 0.02},
}


@pytest.fixture
def spec_file(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(SPEC))
    return p


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1
    return err[-1]


def test_sweep_writes_points_frontier_and_spec(tmp_path, spec_file, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "-o", str(out), "--workers", "1", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["points"] == len(pd.read_parquet(out / "points"))
    assert (out / "pareto.parquet").is_file() and (out / "spec.yaml").read_text() == spec_file.read_text()
    # re-running finds everything done
    assert main(["sweep", str(spec_file), "-o", str(out), "--workers", "1"]) == 0
    assert "already done" in capsys.readouterr().out


def test_sweep_replay_pareto_runs_the_des(tmp_path, spec_file, capsys):
    spec = dict(SPEC, mode="disaggregated", replay={"requests": 60, "load": 0.5})
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "-o", str(out), "--workers", "1", "--replay", "pareto"]) == 0
    rep = pd.read_parquet(out / "replay.parquet")
    front = pd.read_parquet(out / "pareto.parquet")
    assert set(rep["point_id"]) == set(front["point_id"])
    done = rep[rep["status"] == "ok"]
    assert len(done) and (done["des_tpot_mean_s"] > 0).all()
    # the DES agrees with the analytic TPOT at low load within a factor of 2 (smaller batches run faster)
    assert ((done["des_tpot_mean_s"] <= 2 * done["analytic_tpot_s"])
            & (done["des_tpot_mean_s"] >= 0.3 * done["analytic_tpot_s"])).all()


@pytest.mark.parametrize("args, where", [
    (["sweep", "missing.yaml", "-o", "x"], "missing.yaml"),
    (["sweep", "{spec}", "-o", "{out}", "--executor", "threads"], "--executor"),
    (["sweep", "{spec}", "-o", "{out}", "--workers", "0"], "--workers"),
    (["sweep", "{spec}", "-o", "{out}", "--batch-size", "0"], "--batch-size"),
    (["plan", "--model", "llama-3.1-8b", "--ttft", "1", "--tpot", "0.02"], "--rate"),
    (["plan", "--model", "llama-3.1-8b", "--rate", "1", "--isl", "10", "--osl", "1", "--ttft", "1", "--tpot", "1"],
     "--osl"),
    (["plan", "--model", "llama-3.1-8b", "--rate", "-1", "--isl", "10", "--osl", "5", "--ttft", "1", "--tpot", "1"],
     "--rate"),
    (["plan", "--model", "nosuchmodel", "--rate", "1", "--isl", "10", "--osl", "5", "--ttft", "1", "--tpot", "1"],
     "--model"),
    (["plan", "--model", "llama-3.1-8b", "--trace", "nope.csv", "--ttft", "1", "--tpot", "1"], "nope.csv"),
    (["report", "{out}"], "{out}"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, spec_file, capsys, args, where):
    subst = {"{spec}": str(spec_file), "{out}": str(tmp_path / "nothing")}
    args = [subst.get(a, a) for a in args]
    assert main(args) == 2
    line = _err_line(capsys)
    assert line.startswith("simcluster: error:") or "Error" in line
    assert subst.get(where, where) in line


def test_bad_spec_field_is_named(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(dict(SPEC, decode={"layouts": ["tp=1"], "batches": [1]})))
    assert main(["sweep", str(p), "-o", str(tmp_path / "o")]) == 2
    assert f"{p}: decode.batches: unknown key" in _err_line(capsys)


def test_plan_prints_winner_and_rejections(capsys):
    assert main(["plan", "--model", "llama-3.1-8b", "--gpu", "h100_sxm", "--rate", "4", "--isl", "1024", "--osl",
                 "128", "--ttft", "1", "--tpot", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "WINNER" in out and "REJECTED" in out and "TPOT" in out


def test_plan_json_and_trace(capsys):
    trace = str(REPO / "traces" / "sample_azure.csv")
    assert main(["plan", "--model", "llama-3.1-8b", "--gpu", "h100_sxm", "--trace", trace,
                 "--ttft", "2", "--tpot", "0.05", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["traffic"]["source"].startswith(trace)
    assert res["winner"] is not None and res["rejected"]


def test_report_without_matplotlib_is_a_user_error(tmp_path, spec_file, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "-o", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(out)]) == 2
    assert "pip install 'simcluster[plot]'" in _err_line(capsys)


def test_report_of_a_sweep_and_a_run(tmp_path, spec_file, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert main(["sweep", str(spec_file), "-o", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    rep = out / "report"
    assert (rep / "index.html").is_file()
    for name in res["figures"]:
        assert (rep / f"{name}.png").is_file() and (rep / f"{name}.svg").is_file()
    # a run folder: timeline panels
    from tests.simhelp import SMALL_DISAGG, run

    _, _, run_dir = run(tmp_path, dict(SMALL_DISAGG, workload=dict(SMALL_DISAGG["workload"], num_requests=50)))
    capsys.readouterr()
    assert main(["report", str(run_dir), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert "timeline" in res["figures"] and (run_dir / "report" / "timeline.svg").is_file()
