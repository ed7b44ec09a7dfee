"""The results of a sweep on disk: a parquet dataset of part files, written batch by batch.

Layout of a sweep folder::

    DIR/spec.yaml          the spec as the user wrote it
    DIR/sweep.json         manifest: spec name, counts, executor, times (rewritten at the end)
    DIR/points/part-*.parquet   one file per finished batch; one row per design point
    DIR/pareto.parquet     the frontier (tokens/s/GPU against tokens/s/user), per group

Crash safety: a part file is written under a hidden temporary name in the same folder and renamed
when complete (``os.replace`` is atomic on POSIX), so a sweep killed at any moment leaves only whole
part files, plus perhaps a hidden temporary that readers ignore and the next run deletes. On start,
the point ids already in part files are skipped: a re-run finishes the remaining points and never
duplicates one. Readers de-duplicate by ``point_id`` anyway (keeping the last row written).

Every part file has the same schema (:data:`SCHEMA`) and carries the sweep spec in its metadata.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from simcluster.errors import UserError
from simcluster.plan.analytic import _INT_METRICS, _STR_METRICS, METRICS
from simcluster.plan.space import PARAMS

SCHEMA_VERSION = "1"

_PARAM_TYPES = {
    "gpu": pa.string(), "nvlink_domain_size": pa.int64(), "model": pa.string(), "weights": pa.string(),
    "kv": pa.string(), "activations": pa.string(), "framework": pa.string(), "cost": pa.string(),
    "kv_eviction_budget": pa.int64(), "resmoe_keep": pa.float64(), "hop_b": pa.bool_(),
    "exchange_model": pa.string(), "a2a_payload": pa.string(), "mode": pa.string(), "isl": pa.int64(),
    "osl": pa.int64(), "context_tokens": pa.int64(), "decode_layout": pa.string(), "decode_batch": pa.int64(),
    "ratio": pa.string(), "prefill_layout": pa.string(), "prefill_batch": pa.int64(), "token_budget": pa.int64(),
    "ftl_limit_s": pa.float64(),
    "gpu_memory_utilization": pa.float64(), "ratio_tolerance": pa.float64(),
}


def _metric_type(name: str) -> pa.DataType:
    if name in _STR_METRICS:
        return pa.string()
    if name in _INT_METRICS:
        return pa.int64()
    return pa.float64()


SCHEMA = pa.schema(
    [pa.field("point_id", pa.string())]
    + [pa.field(n, _PARAM_TYPES[n]) for n in PARAMS]
    + [pa.field(n, _metric_type(n)) for n in METRICS if n != "point_id"]
)
assert set(_PARAM_TYPES) == set(PARAMS)


def ratio_text(r) -> str | None:
    """The ``ratio`` column: ``rate_matched`` or the fixed ratio as a short decimal."""
    if r is None or isinstance(r, str):
        return r
    return f"{float(r):g}"


_METRIC_SCHEMA = pa.schema([SCHEMA.field(n) for n in METRICS])
_RATIO_INDEX = PARAMS.index("ratio")


def rows_to_table(points: list[tuple], rows: list[dict], metadata: dict | None = None) -> pa.Table:
    """Parameters and result rows of one batch as a table with :data:`SCHEMA`.

    The result dicts go to Arrow in one call (``Table.from_pylist``) and the parameters column by
    column, which is ~2x faster than converting value by value (a fifth of a worker's time went
    here); a value pyarrow will not convert itself (e.g. a bool in an integer column) takes the
    value-by-value path.
    """
    try:
        metrics = pa.Table.from_pylist(rows, schema=_METRIC_SCHEMA)
        columns = list(zip(*points)) if points else [() for _ in PARAMS]
        columns[_RATIO_INDEX] = [ratio_text(v) for v in columns[_RATIO_INDEX]]
        params = {n: pa.array(list(c), type=SCHEMA.field(n).type) for n, c in zip(PARAMS, columns)}
        arrays = [params[f.name] if f.name in params else metrics.column(f.name) for f in SCHEMA]
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arrays = _arrays_value_by_value(points, rows)
    schema = SCHEMA
    if metadata:
        schema = schema.with_metadata({k.encode(): v.encode() for k, v in metadata.items()})
    return pa.Table.from_arrays(arrays, schema=schema)


def _arrays_value_by_value(points: list[tuple], rows: list[dict]) -> list[pa.Array]:
    cols: dict[str, list] = {}
    for i, name in enumerate(PARAMS):
        vals = [pt[i] for pt in points]
        if name == "ratio":
            vals = [ratio_text(v) for v in vals]
        cols[name] = vals
    for name in METRICS:
        cols[name] = [r.get(name) for r in rows]
    arrays = []
    for f in SCHEMA:
        vals = cols[f.name]
        if f.type == pa.int64():
            vals = [None if v is None else int(v) for v in vals]
        elif f.type == pa.float64():
            vals = [None if v is None else float(v) for v in vals]
        arrays.append(pa.array(vals, type=f.type))
    return arrays


class PointStore:
    """The ``points/`` dataset of a sweep folder."""

    def __init__(self, out_dir: str | Path, metadata: dict | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / "points"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the sweep folder ({exc.strerror})", where=str(self.out_dir)) from None
        self.metadata = {"simcluster.schema_version": SCHEMA_VERSION, **(metadata or {})}
        for stale in self.dir.glob(".tmp-*"):  # a batch that was being written when the last run died
            try:
                stale.unlink()
            except OSError:
                pass

    def part_files(self) -> list[Path]:
        return sorted(p for p in self.dir.glob("part-*.parquet"))

    def done_ids(self) -> set[str]:
        """Point ids already written (any status: an error is a recorded result too)."""
        if not self.part_files():
            return set()
        return set(self._read_table(["point_id"]).column("point_id").to_pylist())

    def _read_table(self, columns: list[str] | None) -> pa.Table:
        # one multi-threaded dataset read; hidden temporaries (".tmp-*") are ignored by the reader
        try:
            return pq.read_table(self.dir, columns=columns, schema=SCHEMA)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"unreadable part file in the points dataset ({exc}); delete it to recompute its "
                            f"points", where=str(self.dir)) from None

    def write(self, table: pa.Table) -> Path:
        """Write one batch (a table of :data:`SCHEMA`) atomically; returns the part file."""
        return write_part(self.dir, table, self.metadata)

    def read(self, columns: Iterable[str] | None = None, ids: set[str] | None = None):
        """All points as a pandas DataFrame (de-duplicated by ``point_id``, optionally restricted to ``ids``)."""
        files = self.part_files()
        cols = list(columns) if columns is not None else None
        if cols is not None and "point_id" not in cols:
            cols = ["point_id"] + cols
        if not files:
            return SCHEMA.empty_table().to_pandas() if cols is None else SCHEMA.empty_table().select(cols).to_pandas()
        table = self._read_table(cols)
        if ids is not None:
            import pyarrow.compute as pc

            table = table.filter(pc.is_in(table.column("point_id"), value_set=pa.array(sorted(ids), pa.string())))
        df = table.to_pandas()
        df = df.drop_duplicates("point_id", keep="last")
        return df.reset_index(drop=True)


def write_part(points_dir: str | Path, table: pa.Table, metadata: dict) -> Path:
    """Write one batch into a points folder atomically (hidden temporary, fsync, rename); returns
    the part file. Any process that sees the folder may call it: worker processes write their own
    batches (:mod:`simcluster.plan.executor`)."""
    points_dir = Path(points_dir)
    table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})
    name = f"part-{table.column('point_id')[0].as_py()}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = points_dir / f".tmp-{name}"
    final = points_dir / name
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as fh:  # the bytes reach the disk before the name appears
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


def read_points(sweep_dir: str | Path, ids: set[str] | None = None):
    """The points of a sweep folder as a DataFrame, without touching the folder."""
    store = PointStore.__new__(PointStore)
    store.out_dir = Path(sweep_dir)
    store.dir = store.out_dir / "points"
    store.metadata = {}
    return store.read(ids=ids)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def write_json_atomic(data: dict, path: Path) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
