"""Validating a whole file: map every row, simulate the ones that can be, in parallel processes.

Rows are grouped by deployment configuration so that one process builds each configuration's cost
model once; groups are spread over ``workers`` processes (1 = in this process).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from simcluster.validate.mapping import Setup, Unsupported, map_row
from simcluster.validate.silicon import SiliconRow
from simcluster.validate.simulate import Prediction, Simulator


@dataclass(frozen=True)
class RowResult:
    row: SiliconRow
    setup: Setup | None
    prediction: Prediction | None
    reason: str = ""  # why the row was not simulated (empty when it was)

    @property
    def simulated(self) -> bool:
        return self.prediction is not None and not math.isnan(self.prediction.ttft_ms)


def _sim_kwargs(sim: Simulator) -> dict:
    return dict(benchmark_prompts_per_client=sim.benchmark_prompts_per_client, simulated_waves=sim.simulated_waves,
                max_requests=sim.max_requests, min_steady_requests=sim.min_steady_requests,
                range_ratio=sim.range_ratio, profiles=sim.profiles, seed=sim.seed,
                framework_profile=sim.framework_profile, output_jitter=sim.output_jitter)


_WORKER_SIM: Simulator | None = None


def _init_worker(kwargs: dict) -> None:
    global _WORKER_SIM
    _WORKER_SIM = Simulator(**kwargs)


def _run_group(setups: list[Setup]) -> list[tuple[int, Prediction | None, str]]:
    sim = _WORKER_SIM
    assert sim is not None
    return [_run_one(sim, s) for s in setups]


def _run_one(sim: Simulator, setup: Setup) -> tuple[int, Prediction | None, str]:
    from simcluster.errors import UserError

    try:
        p = sim.run(setup)
    except UserError as exc:  # e.g. the weights do not fit in GPU memory
        return setup.row.line, None, str(exc)
    if p.completed == 0:
        return setup.row.line, None, p.note or "no request completed"
    return setup.row.line, p, ""


def validate_rows(rows: list[SiliconRow], *, simulator: Simulator | None = None, workers: int = 1,
                  profiles: dict | None = None,
                  progress=None) -> list[RowResult]:
    """Map and simulate ``rows``; one :class:`RowResult` per row, in the file's order."""
    sim = simulator or Simulator(profiles=profiles)
    mapped: list[Setup | Unsupported] = [map_row(r, profiles or sim.profiles) for r in rows]
    setups = [m for m in mapped if isinstance(m, Setup)]
    groups: dict[tuple, list[Setup]] = {}
    for s in setups:
        groups.setdefault(s.config_key, []).append(s)
    ordered = sorted(groups.values(), key=lambda g: -sum(x.concurrency for x in g))
    out: dict[int, tuple[Prediction | None, str]] = {}
    done = 0
    if workers <= 1 or len(ordered) <= 1:
        for g in ordered:
            for line, p, why in (_run_one(sim, s) for s in g):
                out[line] = (p, why)
            done += len(g)
            if progress:
                progress(done, len(setups))
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                 initargs=(_sim_kwargs(sim),)) as ex:
            for res in ex.map(_run_group, ordered):
                for line, p, why in res:
                    out[line] = (p, why)
                done += len(res)
                if progress:
                    progress(done, len(setups))
    results = []
    for r, m in zip(rows, mapped):
        if isinstance(m, Unsupported):
            results.append(RowResult(r, None, None, m.reason))
        else:
            p, why = out.get(r.line, (None, "not run"))
            results.append(RowResult(r, m, p, why))
    return results


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
