"""Benchmark: a ~100,000-point analytic sweep, on one core, on 2 local worker processes, and on Dask.

    python benchmarks/bench_sweep.py                 # every executor available, a table at the end
    python benchmarks/bench_sweep.py --repeat 3      # each executor 3 times (interleaved): best and spread
    python benchmarks/bench_sweep.py --one local1    # one executor (what the table runs, each in a fresh process)
    python benchmarks/bench_sweep.py --points 20000  # a smaller space (fewer traffic patterns)

Each executor runs in a fresh Python process into an empty folder, so peak memory (RSS) is its own:
``self`` is the process that expands the space, collects and writes results; ``children`` the largest
worker process (Dask workers are reported through their own counters). Figures printed: points, wall
time of the evaluation phase (from the first batch submitted to the last written, including the
latency-table builds and the parquet writes), points/s, the whole command's wall time (expansion,
resume check, frontier), CPU seconds of the process and its workers (points per CPU-second does not
depend on what else the machine runs) and peak RSS, with the 1-minute load average before each run
(other work on the machine slows the parallel runs most). ``docs/performance.md`` records the figures.
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
    ap.add_argument("--batch-size", type=int, default=None, help="points per batch (default: the sweep's)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per executor, interleaved")
    ap.add_argument("--executors", default=None, help="comma-separated subset of local1,local2,dask2")
    args = ap.parse_args()
    if args.batch_size is None:
        from simcluster.plan.executor import DEFAULT_BATCH_SIZE

        args.batch_size = DEFAULT_BATCH_SIZE
    if args.one:
        print(json.dumps(one(args.one, args.points, args.batch_size)))
        return
    kinds = ["local1", "local2"]
    try:
        import distributed  # noqa: F401

        kinds.append("dask2")
    except ImportError:
        print("dask.distributed not installed: skipping the Dask run (pip install 'simcluster[dask]')")
    if args.executors:
        kinds = [k for k in args.executors.split(",") if k in kinds]
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for _ in range(max(1, args.repeat)):
        for kind in kinds:
            cmd = [sys.executable, __file__, "--one", kind, "--batch-size", str(args.batch_size)]
            if args.points:
                cmd += ["--points", str(args.points)]
            load = os.getloadavg()[0]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                print(f"{kind}: failed\n{res.stderr[-2000:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r["load_before"] = load
            runs[kind].append(r)
            print(f"  {kind}: {r['points_per_s']:,.0f} points/s "
                  f"({r['points_per_s_after_startup']:,.0f} after start-up), {r['cpu_s']:.1f} CPU s, "
                  f"load before {load:.1f}", flush=True)
    rows = [(k, v) for k, v in runs.items() if v]
    if not rows:
        return
    first = rows[0][1][0]
    print(f"\nanalytic sweep benchmark ({first['points']:,} points, batch {args.batch_size}, {first['cpus']} CPUs "
          f"visible, {max(1, args.repeat)} run(s) each)")
    print(f"{'executor':10} {'best pts/s':>11} {'spread':>15} {'best excl. start-up':>20} {'eval s':>7} "
          f"{'total s':>7} {'CPU s':>6} {'pts per CPU s':>14} {'RSS main MB':>12} {'RSS worker MB':>14} {'load':>9}")
    for kind, rs in rows:
        best = max(rs, key=lambda r: r["points_per_s"])
        lo, hi = min(r["points_per_s"] for r in rs), max(r["points_per_s"] for r in rs)
        loads = [r["load_before"] for r in rs]
        print(f"{kind:10} {best['points_per_s']:11,.0f} {lo:7,.0f}–{hi:<7,.0f} "
              f"{max(r['points_per_s_after_startup'] for r in rs):20,.0f} {best['evaluate_wall_s']:7.1f} "
              f"{best['total_wall_s']:7.1f} {best['cpu_s']:6.1f} {best['points'] / best['cpu_s']:14,.0f} "
              f"{best['peak_rss_self_mb']:12.0f} "
              f"{best['peak_rss_children_mb']:14.0f} {min(loads):4.1f}–{max(loads):<4.1f}")
    print("statuses:", first["statuses"], f"; expansion {first['expand_s']:.1f} s")

if __name__ == "__main__":
    main()
