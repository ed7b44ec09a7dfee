"""Replay speed and memory of the engine.

Cases (each in its own process, so peak memory is its own):
  azure     the Azure LLM 2023 conversation trace from ../shared (19,366 requests, about one hour) on
            the default disaggregated deployment (2 prefill + 2 decode instances of Llama-3.1-70B TP2
            on 8 H200), calibrated costs, KV transfer on, steps recorded
  synth-N   N synthetic Azure-like requests at 40 req/s on 8 nodes (64 H200: 8 prefill + 8 decode
            instances of TP4), steps.parquet off (it has a row per decode run)
  shipped-N the shipped default scenario (`simcluster run`: 2 prefill + 2 decode TP2 instances of
            Llama-3.1-70B on 8 H200, Azure-like lengths at 8 req/s, KV transfer) with N requests and
            dynamic rate matching + throughput autoscaling on (DESIGN's speed target), steps off

Reported: wall seconds of the event loop, CPU seconds, simulated requests per wall second, the
ratio of simulated to wall time, peak resident memory of the process (MB).

    python benchmarks/bench_replay.py                       # azure + synth 100k
    python benchmarks/bench_replay.py --sizes 100000,300000,1000000
    python benchmarks/bench_replay.py --no-azure --sizes 100000 --shipped 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AZURE = REPO.parent / "shared" / "traces" / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"


def _one(case: str) -> dict:
    import tempfile

    from simcluster.config.loader import load_scenario
    from simcluster.sim.runner import run_scenario

    if case.startswith("shipped-"):
        sc, base = load_scenario(None, [])
        data = sc.model_dump()
        data["workload"]["num_requests"] = int(case.split("-")[1])
        data["output"]["steps"] = False
        data["cluster"]["nodes"] = 2  # room for the autoscaler to grow into
        data["rate_matching"] = {"policy": "dynamic", "interval_s": 60, "window_s": 120}
        data["autoscaling"] = {"policy": "throughput", "interval_s": 30,
                               "prefill": {"min": 1, "max": 4}, "decode": {"min": 1, "max": 4}}
    elif case == "azure":
        sets = [f"workload={{kind: trace, path: {AZURE}}}"]
        sc, base = load_scenario(None, [])
        data = sc.model_dump()
        data["workload"] = {"kind": "trace", "path": str(AZURE)}
    else:
        n = int(case.split("-")[1])
        sc, base = load_scenario(None, [])
        data = sc.model_dump()
        data["cluster"]["nodes"] = 8
        data["pools"]["prefill"].update(instances=8, layout="tp=4")
        data["pools"]["decode"].update(instances=8, layout="tp=4")
        data["workload"].update(num_requests=n, arrival={"process": "poisson", "rate_per_s": 40.0})
        data["output"]["steps"] = False
    from simcluster.config.scenario import Scenario

    sc = Scenario.model_validate(data)
    with tempfile.TemporaryDirectory() as d:
        c0, w0 = time.process_time(), time.perf_counter()
        s = run_scenario(sc, base, Path(d))
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {
        "case": case, "requests": s["requests"]["total"], "completed": s["requests"]["completed"],
        "loop_wall_s": s["wall_time_s"], "total_wall_s": wall, "cpu_s": cpu,
        "requests_per_wall_s": s["requests"]["total"] / s["wall_time_s"],
        "sim_over_wall": s["sim_time_s"] / s["wall_time_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000", help="comma-separated synthetic sizes")
    ap.add_argument("--no-azure", action="store_true")
    ap.add_argument("--shipped", default="", help="comma-separated sizes of the shipped-scenario case")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(_one(a.one)))
        return
    cases = ([] if a.no_azure or not AZURE.exists() else ["azure"]) + [f"synth-{n}" for n in a.sizes.split(",") if n]
    cases += [f"shipped-{n}" for n in a.shipped.split(",") if n]
    print(f"{'case':<16}{'requests':>10}{'loop wall s':>13}{'cpu s':>9}{'req/s':>10}{'sim/wall':>10}{'peak MB':>9}")
    for case in cases:
        out = subprocess.run([sys.executable, __file__, "--one", case], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['case']:<16}{r['requests']:>10,}{r['loop_wall_s']:>13.2f}{r['cpu_s']:>9.2f}"
              f"{r['requests_per_wall_s']:>10,.0f}{r['sim_over_wall']:>10,.0f}{r['peak_rss_mb']:>9.0f}")


if __name__ == "__main__":
    main()
