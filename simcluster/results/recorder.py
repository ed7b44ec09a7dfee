"""Streaming recorder: rows are buffered column-wise and written to parquet in row groups.

Memory stays flat as the trace grows: at most ``chunk_rows`` rows per table are held. Every file
carries the schema version and the resolved scenario in its metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from simcluster import __version__
from simcluster.results import schemas


class _Table:
    def __init__(self, path: Path, schema: pa.Schema, metadata: dict[bytes, bytes], chunk_rows: int) -> None:
        self.path = path
        self.schema = schema.with_metadata(metadata)
        self.buf: list[tuple] = []
        self.rows = 0
        self.chunk_rows = chunk_rows
        self.writer: pq.ParquetWriter | None = None
        self.total = 0

    def append(self, row: tuple) -> None:
        self.buf.append(row)
        self.rows += 1
        if self.rows >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        if self.rows:
            cols = zip(*self.buf)
            arrays = [pa.array(c, type=f.type) for c, f in zip(cols, self.schema)]
            self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
            self.total += self.rows
            self.buf = []
            self.rows = 0

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()


class Recorder:
    def __init__(self, out_dir: Path, resolved_scenario: dict, chunk_rows: int = 65536,
                 steps: bool = True) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        meta = {
            b"simcluster.schema_version": schemas.SCHEMA_VERSION.encode(),
            b"simcluster.version": __version__.encode(),
            b"simcluster.scenario": json.dumps(resolved_scenario, sort_keys=True).encode(),
        }
        self.out_dir = out_dir
        self.requests = _Table(out_dir / "requests.parquet", schemas.REQUESTS, meta, chunk_rows)
        self.steps = _Table(out_dir / "steps.parquet", schemas.STEPS, meta, chunk_rows) if steps else None
        self.timeline = _Table(out_dir / "timeline.parquet", schemas.TIMELINE, meta, chunk_rows)

    def close(self) -> None:
        self.requests.close()
        if self.steps is not None:
            self.steps.close()
        self.timeline.close()
