"""Run one scenario end to end: workload → deployment → engine → parquet files + summary.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from simcluster.config.loader import resolved_dict
from simcluster.errors import UserError
from simcluster.results.recorder import Recorder
from simcluster.results.summary import summarise


def rng_streams(seed: int, n: int = 4) -> list[np.random.Generator]:
    """Independent generators for one run (workload, engine, faults, ...), from one seed."""
    return [np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(n)]


def build_workload(scenario, base_dir: Path, trace: str | None = None):
    from simcluster.workload import read_trace
    from simcluster.workload.spec import build_workload as _build

    rng = rng_streams(scenario.seed)[0]
    if trace is not None:
        return read_trace(trace)
    return _build(scenario.workload, rng, base_dir)


def run_scenario(scenario, base_dir: Path, out_dir: Path, *, trace: str | None = None,
                 progress: bool = False, workload=None) -> dict:
    """Replay ``scenario``; write the outputs to ``out_dir``; return the summary dict.

    ``workload`` (a :class:`simcluster.workload.Workload`) replaces the scenario's workload section
    when given (programmatic use: benchmarks, sweeps); ``trace`` does the same from a file.
    """
    from simcluster.catalog.gpus import get_gpu
    from simcluster.sim.deployment import build_pools
    from simcluster.sim.engine import Engine

    if workload is None:
        workload = build_workload(scenario, base_dir, trace)
    if len(workload) == 0:
        raise UserError("the workload has no requests", where="workload")
    pools = build_pools(scenario)
    resolved = resolved_dict(scenario)
    if trace is not None:
        resolved["workload_override"] = {"trace": str(trace)}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder ({exc.strerror})", where=str(out_dir)) from None
    recorder = Recorder(out_dir, resolved, chunk_rows=scenario.output.chunk_rows, steps=scenario.output.steps)
    bar = _progress_bar(len(workload)) if progress else None
    try:
        # a configuration error found while building the cluster leaves no output files behind
        engine = Engine(scenario, workload, pools, recorder, progress=bar.update if bar else None)
    except BaseException:
        if bar:
            bar.close()
        raise
    try:
        stats = engine.run()
    finally:
        recorder.close()
        if bar:
            bar.close()
    gpu = get_gpu(scenario.cluster.gpu)
    price = scenario.cluster.price_per_gpu_hour
    if price is None:
        price = gpu.price_per_hour_usd
    summary = summarise(out_dir / "requests.parquet", stats, engine.itl, scenario, price)
    summary["scenario"] = scenario.name
    summary["workload"] = {"source": workload.source, "notes": list(workload.notes), "requests": len(workload)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return summary


class _Bar:
    """tqdm progress on stderr: requests done and simulated time."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        # shown only for runs that take more than a moment (delay), refreshed at most twice a second
        self._t = tqdm(total=total, unit="req", file=sys.stderr, dynamic_ncols=True, leave=False,
                       mininterval=0.5, delay=1.0, desc="simulating")
        self._last = 0

    def update(self, done: int, sim_now: float) -> None:
        self._t.update(done - self._last)
        self._last = done
        self._t.set_postfix_str(f"sim {sim_now:,.0f} s", refresh=False)

    def close(self) -> None:
        self._t.close()


def _progress_bar(total: int):
    return _Bar(total)
