"""Benchmark: a ~110,000-point analytic sweep, on one core, on 2 local worker processes, and on Dask.

    python benchmarks/bench_sweep.py                 # every executor available, a table at the end
    python benchmarks/bench_sweep.py --one local1    # one executor (what the table runs, each in a fresh process)
    python benchmarks/bench_sweep.py --points 20000  # a smaller space (fewer traffic patterns)

Each executor runs in a fresh Python process into an empty folder, so peak memory (RSS) is its own:
``self`` is the process that expands the space, collects and writes results; ``children`` the largest
worker process (Dask workers are reported through their own counters). Figures printed: points, wall
time of the evaluation phase (from the first batch submitted to the last written, including the
latency-table builds and the parquet writes), points/s, the whole command's wall time (expansion,
resume check, frontier), CPU seconds of the process and its workers (points per CPU-second does not
depend on what else the machine runs) and peak RSS. ``docs/planning.md`` records the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPACE = {
    "name": "bench-110k",
    "gpu": ["h100_sxm", "h200_sxm", "b200_sxm", "gb200"],
    "model": ["llama-3.1-8b", "llama-3.1-70b", "qwen3-32b"],
    "formats": {"weights": "fp8", "kv": ["fp8", "bf16"], "activations": ["bf16", "fp8"]},
    "framework": "vllm",
    "traffic": {"isl": [1024, 4096, 16384], "osl": [256, 1024]},
    "mode": ["disaggregated", "colocated"],
    "decode": {"layouts": [{"tp": [1, 2, 4, 8]}, {"tp": [2, 4], "pp": [2]}],
               "batch": {"start": 1, "stop": 512, "factor": 1.5}, "token_budget": [2048, 8192]},
    "prefill": {"layouts": [{"tp": [1, 2, 4, 8]}], "batch": [1, 2]},
    "ratio": ["rate_matched", 1.0],
}


def _space(points: int | None) -> dict:
    spec = json.loads(json.dumps(SPACE))
    if points is not None and points < 100_000:
        # fewer traffic patterns, same per-pattern work
        n_isl = max(1, round(3 * points / 110_592))
        spec["traffic"]["isl"] = spec["traffic"]["isl"][:n_isl]
        if points < 40_000:
            spec["traffic"]["osl"] = [256]
    return spec


def one(kind: str, points: int | None, batch_size: int) -> dict:
    from simcluster.plan.executor import ExecutorChoice
    from simcluster.plan.space import expand, parse_spec
    from simcluster.plan.sweep import run_sweep

    spec = parse_spec(_space(points), "benchmark space")
    t0 = time.perf_counter()
    n = len(expand(spec))
    expand_s = time.perf_counter() - t0
    choice = {"local1": ExecutorChoice("local", None, 1), "local2": ExecutorChoice("local", None, 2),
              "dask2": ExecutorChoice("dask", None, 2)}[kind]
    out = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        t0 = time.perf_counter()
        m = run_sweep(spec, out, executor=choice, batch_size=batch_size, progress=False)
        total = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_kb, child_kb = me.ru_maxrss, kids.ru_maxrss
    cpu_s = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return {"executor": kind, "points": n, "expand_s": expand_s, "evaluate_wall_s": m["evaluate_wall_s"],
            "startup_s": m.get("executor_startup_s", 0.0),
            "points_per_s": m["points_per_s"],
            "points_per_s_after_startup": n / max(1e-9, m["evaluate_wall_s"] - m.get("executor_startup_s", 0.0)),
            "total_wall_s": total, "cpu_s": cpu_s, "peak_rss_self_mb": self_kb / 1024,
            "peak_rss_children_mb": child_kb / 1024,
            "statuses": m["statuses"], "cpus": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", choices=["local1", "local2", "dask2"])
    ap.add_argument("--points", type=int, default=None, help="approximate size (default: the full ~110k space)")
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.points, args.batch_size)))
        return
    kinds = ["local1", "local2"]
    try:
        import distributed  # noqa: F401

        kinds.append("dask2")
    except ImportError:
        print("dask.distributed not installed: skipping the Dask run (pip install 'simcluster[dask]')")
    rows = []
    for kind in kinds:
        cmd = [sys.executable, __file__, "--one", kind, "--batch-size", str(args.batch_size)]
        if args.points:
            cmd += ["--points", str(args.points)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{kind}: failed\n{res.stderr[-2000:]}")
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"\nanalytic sweep benchmark ({rows[0]['points']:,} points, {rows[0]['cpus']} CPUs visible)" if rows else "")
    print(f"{'executor':10} {'eval s':>8} {'points/s':>10} {'pts/s excl. start-up':>21} {'total s':>8} "
          f"{'CPU s':>7} {'pts per CPU s':>14} {'RSS main MB':>12} {'RSS worker MB':>14}")
    for r in rows:
        print(f"{r['executor']:10} {r['evaluate_wall_s']:8.1f} {r['points_per_s']:10,.0f} "
              f"{r['points_per_s_after_startup']:21,.0f} {r['total_wall_s']:8.1f} {r['cpu_s']:7.1f} "
              f"{r['points'] / r['cpu_s']:14,.0f} {r['peak_rss_self_mb']:12.0f} {r['peak_rss_children_mb']:14.0f}")
    try:
        load = os.getloadavg()[0]
        print(f"1-minute load average at the end: {load:.1f} on {os.cpu_count()} CPUs (other work shares them)")
    except OSError:
        pass
    if rows:
        print("statuses:", rows[0]["statuses"], f"; expansion {rows[0]['expand_s']:.1f} s")


if __name__ == "__main__":
    main()
