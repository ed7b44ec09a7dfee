"""Running a sweep: points in batches, on local processes or Dask workers, written as batches finish.

* ``local`` (default): a :class:`concurrent.futures.ProcessPoolExecutor` of ``workers`` processes
  (default: the CPU count); ``workers=1`` evaluates in this process (no pool, no pickling).
* ``dask``: a ``distributed.LocalCluster`` of ``workers`` single-threaded worker processes that
  listens on 127.0.0.1 only, with no dashboard; ``dask=ADDRESS`` connects to a running scheduler
  (``tcp://host:8786``). dask is an optional extra: ``pip install simcluster[dask]``.

Each batch is evaluated by :func:`evaluate_batch` in a worker, which keeps one
:class:`~simcluster.plan.analytic.Evaluator` (latency-table cache) per process and spec; the main
process writes each finished batch atomically (:class:`~simcluster.plan.store.PointStore`).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

from simcluster.errors import UserError
from simcluster.plan.analytic import Evaluator

DEFAULT_BATCH_SIZE = 500

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


def _batches(points, ids, size):
    for i in range(0, len(points), size):
        yield points[i:i + size], ids[i:i + size]


def run_batches(settings: dict, points: list[tuple], ids: list[str], on_batch: Callable[[object], None],
                choice: ExecutorChoice, batch_size: int = DEFAULT_BATCH_SIZE) -> RunStats:
    """Evaluate ``points`` in batches; ``on_batch(table)`` (a pyarrow table of the batch's rows) is
    called in this process as each batch finishes (in completion order). Interrupting (Ctrl-C, a
    kill) loses only unfinished batches."""
    stats = RunStats(submitted_points=len(points))
    t0 = time.perf_counter()
    if not points:
        return stats
    if batch_size < 1:
        raise UserError(f"must be at least 1, got {batch_size}", where="--batch-size")

    def done(table):
        on_batch(table)
        stats.batches += 1
        stats.done_points += table.num_rows
        for status in table.column("status").to_pylist():
            stats.statuses[status] = stats.statuses.get(status, 0) + 1

    if choice.kind == "local" and choice.workers == 1:
        for pts, pids in _batches(points, ids, batch_size):
            done(evaluate_batch_table(settings, pts, pids))
    elif choice.kind == "local":
        _run_pool(settings, points, ids, done, choice.workers, batch_size)
    else:
        stats.startup_s = _run_dask(settings, points, ids, done, choice, batch_size)
    stats.wall_s = time.perf_counter() - t0
    return stats


def _run_pool(settings, points, ids, done, workers, batch_size) -> None:
    pool = ProcessPoolExecutor(max_workers=workers)
    pending: set = set()
    batches = _batches(points, ids, batch_size)
    try:
        # keep a bounded number of batches in flight, so memory stays flat for huge sweeps
        for pts, pids in batches:
            pending.add(pool.submit(evaluate_batch_table, settings, pts, pids))
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                done(fut.result())
                nxt = next(batches, None)
                if nxt is not None:
                    pending.add(pool.submit(evaluate_batch_table, settings, *nxt))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _dask_modules():
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UserError("the dask executor needs dask.distributed, which is not installed: "
                        "pip install 'simcluster[dask]'", where="--executor") from None
    return Client, LocalCluster, as_completed


def _run_dask(settings, points, ids, done, choice: ExecutorChoice, batch_size) -> float:
    """Runs the batches on Dask; returns the seconds spent starting or reaching the cluster."""
    Client, LocalCluster, as_completed = _dask_modules()
    t0 = time.perf_counter()
    cluster = None
    if choice.address:
        try:
            client = Client(choice.address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {choice.address} ({exc})",
                            where="--executor") from None
    else:
        # local only: scheduler and workers listen on the loopback interface; no dashboard
        cluster = LocalCluster(n_workers=choice.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    startup = time.perf_counter() - t0
    try:
        batches = _batches(points, ids, batch_size)
        in_flight = max(2, 2 * len(client.scheduler_info().get("workers", {})) or 2 * choice.workers)
        futs = []
        for pts, pids in batches:
            futs.append(client.submit(evaluate_batch_table, settings, pts, pids, pure=False))
            if len(futs) >= in_flight:
                break
        ac = as_completed(futs)
        for fut in ac:
            done(fut.result())
            fut.release()
            nxt = next(batches, None)
            if nxt is not None:
                ac.add(client.submit(evaluate_batch_table, settings, *nxt, pure=False))
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
