"""Running a sweep: points in batches, on local processes or Dask workers, written as batches finish.

* ``local`` (default): ``workers`` worker processes (default: the CPU count), each a one-process
  :class:`concurrent.futures.ProcessPoolExecutor`; ``workers=1`` evaluates in this process (no
  pool, no pickling).
* ``dask``: a ``distributed.LocalCluster`` of ``workers`` single-threaded worker processes that
  listens on 127.0.0.1 only, with no dashboard; ``dask=ADDRESS`` connects to a running scheduler
  (``tcp://host:8786``). dask is an optional extra: ``pip install simcluster[dask]``.

Each batch is evaluated by :func:`evaluate_batch` in a worker, which keeps one
:class:`~simcluster.plan.analytic.Evaluator` (latency-table cache) per process and spec. What makes
more workers faster (docs/performance.md):

* **Points go to workers by configuration** (:func:`plan_batches`): a latency table costs as much
  as a few hundred points, and a worker builds the tables of the points it gets. Round-robin
  batches made every worker build nearly every table; now each table is built by one worker (plus
  the few batches taken by work stealing at the end, :func:`_feed`).
* **Workers write their own part files** when they share the sweep folder with this process (local
  processes, a local Dask cluster): the driver only counts. With ``dask=ADDRESS`` the workers may
  be other machines, so they return each batch as an Arrow table and this process writes it.
* **Batches are large** (:data:`DEFAULT_BATCH_SIZE`): a batch's fixed costs (pickling its points,
  a parquet file and its fsync) are paid per batch.
* **Dask overheads kept off the work**: a local cluster's workers are forked on Linux (simcluster
  already imported), the spec settings are scattered once, and a batch's points travel as one opaque
  argument that Dask does not walk.
"""

from __future__ import annotations

import heapq
import operator
import os
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

from simcluster.errors import UserError
from simcluster.plan.analytic import Evaluator
from simcluster.plan.space import PARAMS

# Points per batch (= per part file). A batch has fixed costs (a task round trip with its points
# pickled, a parquet file and its fsync): on 2 workers of benchmarks/bench_sweep.py, 500-point batches
# cost 25 % more CPU in all than one process, 2,000-point ones 4 % (docs/performance.md). A batch is
# still only ~0.15 s of work, so an interrupted sweep loses little.
DEFAULT_BATCH_SIZE = 2000

# One evaluator per worker process and spec settings: the latency tables outlive a batch.
_EVALUATORS: dict[str, Evaluator] = {}


def evaluate_batch(settings: dict, points: list[tuple], ids: list[str]) -> list[dict]:
    """Evaluate one batch (runs in a worker). Never raises for a point: see ``Evaluator.evaluate``."""
    key = settings.get("_key", "")
    ev = _EVALUATORS.get(key)
    if ev is None:
        if len(_EVALUATORS) > 4:
            _EVALUATORS.clear()
        ev = _EVALUATORS[key] = Evaluator(settings)
    return [ev.evaluate(pt, pid) for pt, pid in zip(points, ids)]


def evaluate_batch_table(settings: dict, points: list[tuple], ids: list[str]):
    """:func:`evaluate_batch` as a pyarrow table of the points file schema, built in the worker: an
    Arrow table crosses the process boundary as a few buffers, and the main process only writes it."""
    from simcluster.plan.store import rows_to_table

    return rows_to_table(points, evaluate_batch(settings, points, ids))


@dataclass
class BatchDone:
    """A batch written to the points dataset: its row count and statuses."""

    rows: int
    statuses: dict


def _summary(table) -> BatchDone:
    counts: dict = {}
    for status in table.column("status").to_pylist():
        counts[status] = counts.get(status, 0) + 1
    return BatchDone(table.num_rows, counts)


def evaluate_batch_to_part(settings: dict, points: list[tuple], ids: list[str], part_dir: str,
                           metadata: dict) -> BatchDone:
    """:func:`evaluate_batch_table`, written by the worker itself as one part file of the points
    dataset (atomic: :func:`~simcluster.plan.store.write_part`); only the counts travel back."""
    from simcluster.plan.store import write_part

    table = evaluate_batch_table(settings, points, ids)
    write_part(part_dir, table, metadata)
    return _summary(table)


@dataclass
class ExecutorChoice:
    kind: str  # local | dask
    address: str | None = None
    workers: int = 1


def parse_executor(text: str, workers: int | None) -> ExecutorChoice:
    """``local``, ``dask`` or ``dask=ADDRESS`` (a :class:`UserError` otherwise)."""
    raw = (text or "local").strip()
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise UserError(f"must be at least 1, got {n}", where="--workers")
    if raw == "local":
        return ExecutorChoice("local", None, n)
    if raw == "dask":
        return ExecutorChoice("dask", None, n)
    if raw.startswith("dask="):
        addr = raw[5:].strip()
        if not addr:
            raise UserError("dask=ADDRESS needs a scheduler address, e.g. dask=tcp://10.0.0.5:8786",
                            where="--executor")
        return ExecutorChoice("dask", addr, n)
    raise UserError(f"expected local, dask or dask=ADDRESS, got {raw!r}", where="--executor")


@dataclass
class RunStats:
    submitted_points: int = 0
    done_points: int = 0
    batches: int = 0
    wall_s: float = 0.0
    startup_s: float = 0.0  # starting workers (Dask cluster, connection) before the first batch
    statuses: dict = field(default_factory=dict)


def run_batches(settings: dict, points: list[tuple], ids: list[str], store, on_batch: Callable[[int], None],
                choice: ExecutorChoice, batch_size: int = DEFAULT_BATCH_SIZE) -> RunStats:
    """Evaluate ``points`` in batches into ``store`` (a :class:`~simcluster.plan.store.PointStore`);
    ``on_batch(rows)`` is called in this process once each batch is on disk (in completion order).
    Interrupting (Ctrl-C, a kill) loses only unfinished batches; a batch a worker was writing at that
    moment may still land (whole) afterwards, and a resumed sweep skips or de-duplicates it."""
    stats = RunStats(submitted_points=len(points))
    t0 = time.perf_counter()
    if not points:
        return stats
    if batch_size < 1:
        raise UserError(f"must be at least 1, got {batch_size}", where="--batch-size")

    def done(res) -> None:
        if not isinstance(res, BatchDone):  # an Arrow table from a worker that cannot reach the folder
            store.write(res)
            res = _summary(res)
        stats.batches += 1
        stats.done_points += res.rows
        for status, n in res.statuses.items():
            stats.statuses[status] = stats.statuses.get(status, 0) + n
        on_batch(res.rows)

    if choice.kind == "local" and choice.workers == 1:
        for idx in plan_batches(points, batch_size, 1)[0]:
            done(evaluate_batch_table(settings, [points[i] for i in idx], [ids[i] for i in idx]))
    elif choice.kind == "local":
        _run_pool(settings, points, ids, done, choice.workers, batch_size, store)
    else:
        stats.startup_s = _run_dask(settings, points, ids, done, choice, batch_size, store)
    stats.wall_s = time.perf_counter() - t0
    return stats


def _run_pool(settings, points, ids, done, workers, batch_size, store) -> None:
    """One single-process pool per worker, each fed the batches of its own configurations; the
    workers write the part files."""
    plan = plan_batches(points, batch_size, workers)
    pools = [ProcessPoolExecutor(max_workers=1) for _ in range(workers)]
    part_dir, meta = str(store.dir), store.metadata

    def submit(w, idx):
        return pools[w].submit(evaluate_batch_to_part, settings, [points[i] for i in idx], [ids[i] for i in idx],
                               part_dir, meta)

    try:
        for fut in _feed(plan, submit):
            done(fut.result())
    except BaseException:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    for pool in pools:
        pool.shutdown(wait=True)


# ----------------------------------------------------------------------------- batches per worker
# The parameters that select a point's latency tables besides its decode layout (the key of
# ``Evaluator.config`` without the layout; the prefill candidates are the same for every point).
_FAMILY_PARAMS = ("gpu", "nvlink_domain_size", "model", "weights", "kv", "activations", "framework", "cost",
                  "kv_eviction_budget", "resmoe_keep", "hop_b", "exchange_model", "a2a_payload",
                  "gpu_memory_utilization")
_family_of = operator.itemgetter(*(PARAMS.index(n) for n in _FAMILY_PARAMS))
_LAYOUT_INDEX = PARAMS.index("decode_layout")


def plan_batches(points: list[tuple], batch_size: int, workers: int) -> list[list[list[int]]]:
    """Which worker evaluates which points: per worker, its batches (point indices, expansion order).

    A latency table costs as much as a few hundred points and every worker builds the tables of the
    points it gets, so points are dealt out by configuration, not round-robin: a *family* (hardware,
    model, formats, framework, knobs: every table of one family shares the prefill candidates) goes
    whole to one worker, placed largest first on the least-loaded worker (LPT). While that leaves a
    worker more than 15 % above the mean, the largest family is split into its decode layouts (each
    still whole on one worker). Each worker's points are then cut into batches of at most
    ``batch_size`` — and into at least four batches, so that work stealing can even out the end.
    """
    n = len(points)
    if workers <= 1 or n == 0:
        return [[list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]]
    fams = [_family_of(p) for p in points]
    by_unit: dict = {}  # unit -> size; a unit is a family, or (family, layout) once its family is split
    layouts: dict = {}  # family -> {layout: size}
    for f, p in zip(fams, points):
        by_unit[f] = by_unit.get(f, 0) + 1
        lay = layouts.setdefault(f, {})
        lay[p[_LAYOUT_INDEX]] = lay.get(p[_LAYOUT_INDEX], 0) + 1
    split: set = set()
    while True:
        owner, loads = _lpt(by_unit, workers)
        if max(loads) <= _BALANCE * n / workers:
            break
        # the largest family not yet split goes by decode layout (its prefill tables are then built by
        # every worker that gets one of its layouts)
        whole = [u for u in by_unit if u in layouts and u not in split and len(layouts[u]) > 1]
        if not whole:
            break
        f = max(whole, key=lambda u: by_unit[u])
        split.add(f)
        del by_unit[f]
        for lay, k in layouts[f].items():
            by_unit[(f, lay)] = k
    per_worker: list[list[int]] = [[] for _ in range(workers)]
    for i, (f, p) in enumerate(zip(fams, points)):
        per_worker[owner[(f, p[_LAYOUT_INDEX]) if f in split else f]].append(i)
    out = []
    for idx in per_worker:
        size = max(1, min(batch_size, -(-len(idx) // 4)))
        out.append([idx[i:i + size] for i in range(0, len(idx), size)])
    return out


# Largest worker load over the mean that the split by families may leave (work stealing evens out
# the rest) [INFERRED: a trade between idle time and duplicated table builds].
_BALANCE = 1.15


def _lpt(sizes: dict, workers: int) -> tuple[dict, list[int]]:
    """Longest processing time first: each unit, largest first, on the least-loaded worker."""
    load = [(0, w) for w in range(workers)]
    owner = {}
    for k in sorted(sizes, key=lambda k: -sizes[k]):  # stable: ties keep expansion order
        lw, w = heapq.heappop(load)
        owner[k] = w
        heapq.heappush(load, (lw + sizes[k], w))
    loads = [0] * workers
    for lw, w in load:
        loads[w] = lw
    return owner, loads


def _feed(plan: list[list[list[int]]], submit, depth: int = 2, wait_fn=None):
    """Submit each worker's batches in order, ``depth`` in flight per worker, and yield the futures as
    they finish. A worker whose own batches are all submitted takes the last batch of the worker with
    the most left (work stealing), so an uneven split costs a few table builds, not idle cores."""
    queues = [deque(batches) for batches in plan]
    running: dict = {}
    busy = [0] * len(plan)

    def fill(w: int) -> None:
        while busy[w] < depth:
            if queues[w]:
                idx = queues[w].popleft()
            else:
                donor = max(range(len(queues)), key=lambda v: len(queues[v]))
                if not queues[donor]:
                    return
                idx = queues[donor].pop()
            running[submit(w, idx)] = w
            busy[w] += 1

    if wait_fn is None:
        def wait_fn(futures):
            return wait(futures, return_when=FIRST_COMPLETED)
    for w in range(len(plan)):
        fill(w)
    while running:
        finished, _ = wait_fn(list(running))
        for fut in finished:
            w = running.pop(fut)
            busy[w] -= 1
            yield fut
        for w in range(len(plan)):
            fill(w)


@dataclass
class _Payload:
    """A batch's points and ids as one opaque argument: Dask walks list and tuple arguments looking
    for futures (~1 s of driver CPU per 100,000 points); it does not look inside other objects."""

    points: list
    ids: list


def _dask_batch_to_part(settings: dict, payload: _Payload, part_dir: str, metadata: dict) -> BatchDone:
    return evaluate_batch_to_part(settings, payload.points, payload.ids, part_dir, metadata)


def _dask_batch_table(settings: dict, payload: _Payload):
    return evaluate_batch_table(settings, payload.points, payload.ids)


def _warm_worker() -> None:
    import simcluster.plan.store  # noqa: F401  (imports the evaluator and perf)


def _dask_modules():
    try:
        from distributed import Client, LocalCluster, wait as dask_wait
    except ImportError:
        raise UserError("the dask executor needs dask.distributed, which is not installed: "
                        "pip install 'simcluster[dask]'", where="--executor") from None
    return Client, LocalCluster, dask_wait


def _run_dask(settings, points, ids, done, choice: ExecutorChoice, batch_size, store) -> float:
    """Runs the batches on Dask; returns the seconds spent starting or reaching the cluster. The
    workers of a local cluster write the part files; remote ones return Arrow tables."""
    Client, LocalCluster, dask_wait = _dask_modules()
    t0 = time.perf_counter()
    cluster = None
    if choice.address:
        try:
            client = Client(choice.address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {choice.address} ({exc})",
                            where="--executor") from None
    else:
        # local only: scheduler and workers listen on the loopback interface; no dashboard. On Linux the
        # workers are forked from this process (as the local executor's are), not spawned: they start
        # with simcluster imported (~1 s of CPU each otherwise)
        import dask

        method = "fork" if sys.platform.startswith("linux") else dask.config.get(
            "distributed.worker.multiprocessing-method")
        with dask.config.set({"distributed.worker.multiprocessing-method": method}):
            cluster = LocalCluster(n_workers=choice.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    try:
        if choice.address:
            client.wait_for_workers(1, timeout=60)
        # workers that were not forked from here import simcluster now: part of starting them, not of
        # the first batch
        client.run(_warm_worker)
        startup = time.perf_counter() - t0
        addresses = sorted(client.scheduler_info().get("workers", {}))
        # settings travel once per worker, not once per batch
        [settings_f] = client.scatter([settings], broadcast=True)
        plan = plan_batches(points, batch_size, max(1, len(addresses)))

        local = cluster is not None
        part_dir, meta = str(store.dir), store.metadata

        def submit(w, idx):
            payload = _Payload([points[i] for i in idx], [ids[i] for i in idx])
            # the worker is a preference, not a restriction: a batch whose worker has left runs elsewhere
            where = {"workers": [addresses[w]], "allow_other_workers": True} if addresses else {}
            if local:
                return client.submit(_dask_batch_to_part, settings_f, payload, part_dir, meta, pure=False, **where)
            return client.submit(_dask_batch_table, settings_f, payload, pure=False, **where)

        for fut in _feed(plan, submit, wait_fn=lambda fs: dask_wait(fs, return_when="FIRST_COMPLETED")):
            done(fut.result())
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return startup


class Progress:
    """tqdm on stderr when it is a terminal: points done, rate, ETA."""

    def __init__(self, total: int, initial: int = 0, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._t = None
        if enabled and total:
            from tqdm import tqdm

            self._t = tqdm(total=total, initial=initial, unit="pt", file=sys.stderr, dynamic_ncols=True,
                           smoothing=0.1, mininterval=0.5, desc="sweep")

    def update(self, n: int) -> None:
        if self._t is not None:
            self._t.update(n)

    def close(self) -> None:
        if self._t is not None:
            self._t.close()
