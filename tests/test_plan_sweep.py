"""Sweeps: invalid points recorded, failing points recorded, crash-safe resume, executors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from simcluster.errors import UserError
from simcluster.plan.analytic import Evaluator
from simcluster.plan.executor import ExecutorChoice, _feed, parse_executor, plan_batches
from simcluster.plan.space import expand, parse_spec
from simcluster.plan.sweep import run_sweep

SPEC = {
    "name": "test-sweep", "gpu": "h200_sxm", "model": "llama-3.1-70b",
    "formats": {"weights": "fp8", "kv": "fp8", "activations": "bf16"},
    "traffic": [{"isl": 2048, "osl": 256}, {"isl": 8192, "osl": 512}],
    "mode": ["disaggregated", "colocated"],
    "decode": {"layouts": [{"tp": [1, 2, 4, 8, 16]}], "batch": {"start": 1, "stop": 512}},
    "prefill": {"layouts": [{"tp": [1, 2, 4]}], "batch": [1, 2]},
    "ratio": ["rate_matched", 1.0],
}


def _points(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "points")


def test_every_point_is_recorded_once_with_a_status(tmp_path):
    spec = parse_spec(SPEC)
    m = run_sweep(spec, tmp_path / "s", batch_size=50)
    df = _points(tmp_path / "s")
    assert len(df) == df["point_id"].nunique() == m["points"] == len(expand(spec))
    assert set(df["status"]) <= {"ok", "invalid", "excluded", "error"}
    # tp=16 exceeds the 8-GPU NVLink domain of an H200 node: invalid with the reason, not a crash
    bad = df[df["tp"] == 16]
    assert len(bad) and (bad["status"] == "invalid").all()
    assert bad["reason"].str.contains("NVLink domain").all()
    # tp=1 at 512 sequences of 8k tokens does not fit in KV memory
    kv = df[(df["tp"] == 1) & (df["decode_batch"] == 512) & (df["isl"] == 8192)]
    assert (kv["status"] == "invalid").all() and kv["reason"].str.contains("KV cache").all()
    ok = df[df["status"] == "ok"]
    assert (ok["tokens_per_s_per_gpu"] > 0).all() and (ok["tokens_per_s_per_user"] > 0).all()
    front = pd.read_parquet(tmp_path / "s" / "pareto.parquet")
    for col in ("point_id", "tokens_per_s_per_gpu", "tokens_per_s_per_user", "ttft_s", "tpot_s", "gpus", "tp", "pp",
                "ep", "dp", "kvp", "tpa", "tpf"):
        assert col in front.columns
    assert set(front["point_id"]) <= set(ok["point_id"])
    assert (tmp_path / "s" / "spec.yaml").is_file()


def test_resume_after_an_interrupted_sweep_finishes_without_duplicates(tmp_path):
    spec = parse_spec(SPEC)
    out = tmp_path / "s"

    def stop(done):
        if done >= 60:
            raise KeyboardInterrupt  # what Ctrl-C (or a crash) does between two batches

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, batch_size=20, on_batch=stop)
    first = _points(out)
    assert 0 < len(first) < len(expand(spec))
    # a batch that was being written when the process died leaves a hidden temporary: ignored, removed
    (out / "points" / ".tmp-part-deadbeef.parquet").write_bytes(b"PAR1 half a file")
    m = run_sweep(spec, out, batch_size=20)
    df = _points(out)
    assert m["points_already_done"] == len(first)
    assert m["points_evaluated"] == len(expand(spec)) - len(first)
    assert len(df) == df["point_id"].nunique() == len(expand(spec))
    assert not list((out / "points").glob(".tmp-*"))
    # and a third run has nothing left to do
    assert run_sweep(spec, out, batch_size=20)["points_evaluated"] == 0


def test_a_sweep_killed_mid_way_resumes(tmp_path):
    """SIGKILL a real `simcluster sweep` process mid-way; the re-run completes every point exactly once."""
    spec = dict(SPEC, decode={"layouts": [{"tp": [1, 2, 4, 8]}, {"tp": [2, 4], "pp": [2, 4]}],
                              "batch": {"start": 1, "stop": 512, "factor": 1.2}})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "simcluster.cli.main", "sweep", str(path), "-o", str(out),
                             "--workers", "1", "--batch-size", "10", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "points").glob("part-*.parquet"))) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the sweep ended before it could be killed: " + proc.stderr.read().decode()[-500:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    total = len(expand(parse_spec(spec)))
    before = len(_points(out))
    assert 0 < before < total
    m = run_sweep(parse_spec(spec), out, batch_size=50)
    df = _points(out)
    assert m["points_already_done"] == before
    assert len(df) == df["point_id"].nunique() == total


def test_a_point_that_raises_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    original = Evaluator._disagg_point

    def flaky(self, p, row):
        if p["decode_batch"] == 4:
            raise ZeroDivisionError("injected failure")
        return original(self, p, row)

    monkeypatch.setattr(Evaluator, "_disagg_point", flaky)
    spec = parse_spec(SPEC)
    m = run_sweep(spec, tmp_path / "s", batch_size=25)
    df = _points(tmp_path / "s")
    bad = df[(df["mode"] == "disaggregated") & (df["decode_batch"] == 4)]
    assert len(bad) and (bad["status"] == "error").all()
    assert bad["error"].str.contains("ZeroDivisionError: injected failure").all()
    assert m["statuses"]["error"] == len(bad)
    assert len(df) == len(expand(spec))  # every other point still evaluated


def test_process_pool_gives_the_same_rows(tmp_path):
    spec = parse_spec(dict(SPEC, traffic=[{"isl": 2048, "osl": 256}]))
    run_sweep(spec, tmp_path / "a", batch_size=30)
    run_sweep(spec, tmp_path / "b", batch_size=30, executor=ExecutorChoice("local", None, 2))
    a = _points(tmp_path / "a").sort_values("point_id").reset_index(drop=True)
    b = _points(tmp_path / "b").sort_values("point_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def _units(spec):
    pts = expand(parse_spec(spec)).points
    fam = [p[:13] + (p[24],) for p in pts]  # everything of Evaluator.config's key but the layout
    return pts, fam


def test_each_configuration_is_evaluated_by_one_worker():
    """Points are dealt out by configuration, so a latency table is built once, not once per worker."""
    spec = dict(SPEC, gpu=["h100_sxm", "h200_sxm", "b200_sxm"], model=["llama-3.1-8b", "llama-3.1-70b"],
                formats={"weights": "fp8", "kv": ["fp8", "bf16"], "activations": ["bf16", "fp8"]})
    pts, fam = _units(spec)
    for workers in (2, 3):
        plan = plan_batches(pts, 50, workers)
        idx = [i for batches in plan for b in batches for i in b]
        assert sorted(idx) == list(range(len(pts)))  # every point exactly once
        owner = {}
        for w, batches in enumerate(plan):
            for b in batches:
                assert 0 < len(b) <= 50 and b == sorted(b)  # expansion order inside a batch
                for i in b:
                    assert owner.setdefault(fam[i], w) == w  # 24 families >= 4 x workers: whole families
        loads = [sum(len(b) for b in batches) for batches in plan]
        assert max(loads) <= 1.2 * len(pts) / workers, loads


def test_one_big_configuration_family_is_split_by_decode_layout():
    pts, fam = _units(SPEC)  # a single family: (family, decode layout) is the unit
    plan = plan_batches(pts, 1000, 2)
    owner = {}
    for w, batches in enumerate(plan):
        assert len(batches) >= 4  # enough batches for work stealing to even out the end
        for b in batches:
            for i in b:
                assert owner.setdefault((fam[i], pts[i][17]), w) == w
    assert set(owner.values()) == {0, 1}


def test_an_idle_worker_steals_the_last_batches_of_a_busy_one():
    from concurrent.futures import Future

    plan = [[[0], [1], [2], [3], [4], [5]], [[6]]]
    ran = []

    def submit(w, idx):
        ran.append((w, idx[0]))
        f = Future()
        f.set_result(None)
        return f

    for _ in _feed(plan, submit, depth=1):
        pass
    assert sorted(i for _, i in ran) == list(range(7))
    stolen = [i for w, i in ran if w == 1 and i != 6]
    assert stolen and all(i >= 3 for i in stolen)  # taken from the tail of worker 0's queue


def test_executor_choices():
    assert parse_executor("local", 3).workers == 3
    assert parse_executor("dask", 2).kind == "dask"
    assert parse_executor("dask=tcp://10.1.2.3:8786", 1).address == "tcp://10.1.2.3:8786"
    for bad in ("threads", "dask="):
        with pytest.raises(UserError):
            parse_executor(bad, 1)
    with pytest.raises(UserError):
        parse_executor("local", 0)


def test_dask_missing_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    spec = parse_spec(dict(SPEC, traffic=[{"isl": 2048, "osl": 256}]))
    with pytest.raises(UserError, match=r"pip install 'simcluster\[dask\]'"):
        run_sweep(spec, tmp_path / "s", executor=ExecutorChoice("dask", None, 2))


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_rows(tmp_path):
    pytest.importorskip("distributed")
    spec = parse_spec(dict(SPEC, traffic=[{"isl": 2048, "osl": 256}]))
    run_sweep(spec, tmp_path / "a", batch_size=40)
    m = run_sweep(spec, tmp_path / "b", batch_size=40, executor=ExecutorChoice("dask", None, 2))
    assert m["executor"] == "dask"
    a = _points(tmp_path / "a").sort_values("point_id").reset_index(drop=True)
    b = _points(tmp_path / "b").sort_values("point_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
