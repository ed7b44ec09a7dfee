"""Cluster-scale replay with the control loops on, against the same run with them off.

The case: 512 H200 (64 nodes of 8) serving Llama-3.1-70B FP8, disaggregated, 128 prefill + 128
decode instances of TP2, calibrated costs, KV transfer on NVLink or the NICs, N Azure-like synthetic
requests at 1,000 requests/s (steps.parquet off: one row per decode run).

* ``off``: the pools as configured, nothing else.
* ``on``:  dynamic rate matching (every 60 s), throughput autoscaling (every 30 s, 32-160 instances
  per role within the same 512 GPUs; the pools start at 96 + 96), and node 3 failing at a third of
  the run (its requests rerouted, replacements provisioned, repaired after 10 minutes). The
  autoscaler right-sizes the pools, so this run does different work from ``off``.
* ``watch``: the same control loops observing and deciding, pinned so that they change nothing
  (autoscaling bounds min = max = 128, rate matching needing an impossible gain), no failure: the
  pure cost of running them, against ``off``.

Each case runs in its own process (peak memory is its own). Reported: event-loop wall seconds,
simulated requests per wall second, peak resident memory, and the overhead of ``on`` over ``off``.

    python benchmarks/bench_cluster.py                          # 100,000 requests
    python benchmarks/bench_cluster.py --requests 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RATE = 1000.0


def _scenario(n: int, on, watch: bool = False):
    from simcluster.config.loader import load_scenario
    from simcluster.config.scenario import Scenario

    sc, base = load_scenario(None, [])
    d = sc.model_dump()
    d["cluster"]["nodes"] = 64
    d["pools"]["prefill"].update(instances=96 if on else 128, layout="tp=2")
    d["pools"]["decode"].update(instances=96 if on else 128, layout="tp=2")
    d["workload"].update(num_requests=n, arrival={"process": "poisson", "rate_per_s": RATE})
    d["output"]["steps"] = False
    if watch:
        d["rate_matching"] = {"policy": "dynamic", "interval_s": 60, "window_s": 120, "min_gain": 1e9}
        d["autoscaling"] = {"policy": "throughput", "interval_s": 30, "window_s": 120, "headroom": 1.2,
                            "prefill": {"min": 128, "max": 128}, "decode": {"min": 128, "max": 128}}
    elif on:
        d["rate_matching"] = {"policy": "dynamic", "interval_s": 60, "window_s": 120}
        d["autoscaling"] = {"policy": "throughput", "interval_s": 30, "window_s": 120, "headroom": 1.2,
                            "prefill": {"min": 32, "max": 160}, "decode": {"min": 32, "max": 160}}
        d["failures"] = {"events": [{"at_s": n / RATE / 3, "kind": "node", "target": "3", "duration_s": 600}]}
    return Scenario.model_validate(d), base


def _one(case: str, n: int) -> dict:
    import tempfile

    from simcluster.sim.runner import run_scenario

    sc, base = _scenario(n, case == "on", watch=case == "watch")
    with tempfile.TemporaryDirectory() as d:
        w0 = time.perf_counter()
        s = run_scenario(sc, base, Path(d))
        wall = time.perf_counter() - w0
    return {
        "case": case, "requests": s["requests"]["total"], "by_status": s["requests"]["by_status"],
        "loop_wall_s": s["wall_time_s"], "total_wall_s": wall, "gpus": s["gpus"],
        "requests_per_wall_s": s["requests"]["total"] / s["wall_time_s"],
        "sim_time_s": s["sim_time_s"], "control": s["control"], "restarts": s["restarts"],
        "gpu_hours": s["gpu_hours"], "attainment": s["slo"]["attainment"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(_one(a.one, a.requests)))
        return
    rows = {}
    for case in ("off", "watch", "on"):
        out = subprocess.run([sys.executable, __file__, "--one", case, "--requests", str(a.requests)],
                             capture_output=True, text=True, check=True)
        rows[case] = r = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(r))
    off, watch, on = rows["off"], rows["watch"], rows["on"]
    print(f"{'case':<6}{'requests':>11}{'GPUs':>6}{'loop wall s':>13}{'req/s':>9}{'peak MB':>9}")
    for r in (off, watch, on):
        print(f"{r['case']:<6}{r['requests']:>11,}{r['gpus']:>6}{r['loop_wall_s']:>13.1f}"
              f"{r['requests_per_wall_s']:>9,.0f}{r['peak_rss_mb']:>9.0f}")
    print(f"cost of running the control loops (watch vs off): {watch['loop_wall_s'] / off['loop_wall_s'] - 1:+.1%} wall, "
          f"{watch['peak_rss_mb'] / off['peak_rss_mb'] - 1:+.1%} peak memory")
    print(f"rate matching + autoscaling + a node failure acting (on vs off): "
          f"{on['loop_wall_s'] / off['loop_wall_s'] - 1:+.1%} wall, "
          f"{on['peak_rss_mb'] / off['peak_rss_mb'] - 1:+.1%} peak memory")


if __name__ == "__main__":
    main()
