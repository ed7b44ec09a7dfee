"""``run_sweep``: expand a spec, evaluate what is not done yet, write points, the frontier and a manifest.

Resumable: the point ids already in ``DIR/points/`` are skipped, so a sweep killed at any moment
and run again finishes only the remaining points. Changing the spec and re-running into the same
folder evaluates only the new points; ``pareto.parquet`` always covers the points of the current
spec.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa

from simcluster import __version__
from simcluster.errors import UserError
from simcluster.plan.executor import DEFAULT_BATCH_SIZE, ExecutorChoice, Progress, run_batches
from simcluster.plan.pareto import FRONTIER_COLUMNS, frontier
from simcluster.plan.space import SweepSpec, expand, spec_settings
from simcluster.plan.store import SCHEMA, PointStore, write_json_atomic, write_table_atomic


def _spec_fingerprint(spec: SweepSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def run_sweep(spec: SweepSpec, out_dir: str | Path, *, spec_text: str | None = None,
              executor: ExecutorChoice | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
              progress: bool | None = None, on_batch: Callable[[int], None] | None = None,
              replay: str | None = None) -> dict:
    """Run (or finish) the sweep of ``spec`` into ``out_dir``; returns the manifest dict.

    ``on_batch(points_done_so_far)`` is called after each batch is on disk (tests use it to stop a
    sweep half-way). ``replay``: ``pareto`` replays every frontier point with the DES, a comma
    separated list of point ids replays those.
    """
    out = Path(out_dir)
    executor = executor or ExecutorChoice("local", None, 1)
    t0 = time.perf_counter()
    exp = expand(spec)
    fingerprint = _spec_fingerprint(spec)
    meta = {"simcluster.sweep_spec": spec.model_dump_json(), "simcluster.version": __version__}
    store = PointStore(out, meta)
    if spec_text is None:
        import yaml

        spec_text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    (out / "spec.yaml").write_text(spec_text, encoding="utf-8")

    done = store.done_ids()
    todo_idx = [i for i, pid in enumerate(exp.ids) if pid not in done]
    points = [exp.points[i] for i in todo_idx]
    ids = [exp.ids[i] for i in todo_idx]
    already = len(exp) - len(points)

    settings = spec_settings(spec)
    settings["_key"] = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    bar = Progress(len(exp), initial=already, enabled=progress)
    count = [0]

    def written(rows: int) -> None:
        bar.update(rows)
        count[0] += rows
        if on_batch is not None:
            on_batch(count[0])

    try:
        stats = run_batches(settings, points, ids, store, written, executor, batch_size)
    finally:
        bar.close()

    # only the columns the frontier needs: the points of a large sweep stay on disk
    cols = sorted(set(FRONTIER_COLUMNS) - {"group"} | {"status"} | set(spec.pareto.group_by) & set(SCHEMA.names))
    df = store.read(columns=cols, ids=set(exp.ids))
    front = frontier(df, spec.pareto.group_by)
    write_table_atomic(pa.Table.from_pandas(front, preserve_index=False), out / "pareto.parquet")
    statuses = df["status"].value_counts().to_dict() if len(df) else {}
    manifest = {
        "name": spec.name,
        "spec_fingerprint": fingerprint,
        "simcluster_version": __version__,
        "points": len(exp),
        "points_already_done": already,
        "points_evaluated": stats.done_points,
        "statuses": {k: int(v) for k, v in statuses.items()},
        "pareto_points": int(len(front)),
        "layouts": {k: {"count": len(v.layouts), "generator_combinations_dropped": v.dropped,
                        "outside_gpu_range": v.outside_gpu_range} for k, v in exp.layouts.items()},
        "executor": executor.kind + (f"={executor.address}" if executor.address else ""),
        "workers": executor.workers,
        "batch_size": batch_size,
        "evaluate_wall_s": stats.wall_s,
        "executor_startup_s": stats.startup_s,
        "points_per_s": stats.done_points / stats.wall_s if stats.wall_s > 0 else None,
        "total_wall_s": time.perf_counter() - t0,
    }
    if replay:
        manifest["replay"] = _replay(spec, out, store.read(ids=set(exp.ids)), front, replay)
    write_json_atomic(manifest, out / "sweep.json")
    return manifest


def _replay(spec: SweepSpec, out: Path, df, front, which: str) -> dict:
    from simcluster.plan.replay import replay_points

    if which == "pareto":
        rows = df[df["point_id"].isin(set(front["point_id"]))]
    else:
        wanted = [w.strip() for w in which.split(",") if w.strip()]
        missing = [w for w in wanted if w not in set(df["point_id"])]
        if missing:
            raise UserError(f"no such point id in this sweep: {', '.join(missing[:5])}", where="--replay")
        rows = df[df["point_id"].isin(wanted)]
    slo = spec.slo.model_dump()
    res = replay_points(rows, out, requests=spec.replay.requests, load=spec.replay.load, seed=spec.replay.seed,
                        slo=slo)
    return {"points": int(len(res)), "replayed": int((res["status"] == "ok").sum()) if len(res) else 0}
