"""Reading measured deployments in the ``silicon_sample`` CSV format (aiconfigurator's).

One row is one deployment measured at a fixed concurrency with fixed input/output lengths:
``mode`` ``agg`` (one pool: ``tp_size``, ``pp_size``, ``attention_dp_size``, ``moe_tp_size``,
``moe_ep_size``, ``batch_size``) or ``disagg`` (``prefill_*`` and ``decode_*`` pools, with
``*_num_workers`` and ``*_batch_size``). ``silicon_ttft_ms`` / ``silicon_tpot_ms`` are the measured
means; they are optional (a file without them gets predictions and no error report).

Errors a user can cause — a missing file, a missing column, a malformed row — are a
:class:`~simcluster.errors.UserError` naming the file and line. A row that parses but cannot be
simulated (an unknown model, say) is *not* an error: :mod:`simcluster.validate.mapping` gives the
reason.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from simcluster.errors import UserError

# Columns every file must have (the rest of the format is optional).
REQUIRED_COLUMNS = ("backend", "model_path", "system", "mode", "isl", "osl")
AGG_COLUMNS = ("batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size")
POOL_FIELDS = ("tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size", "batch_size", "num_workers")
DISAGG_COLUMNS = tuple(f"{role}_{f}" for role in ("prefill", "decode") for f in POOL_FIELDS)
MEASURED_COLUMNS = ("silicon_ttft_ms", "silicon_tpot_ms")
MODES = ("agg", "disagg")

_CONCURRENCY_IN_SOURCE = re.compile(r"silicon_concurrency=(\d+)")
_CONCURRENCY_IN_ID = re.compile(r"_c(\d+)_")


@dataclass(frozen=True)
class PoolShape:
    """The parallel layout of one worker as the file writes it (0 / empty = not given)."""

    tp: int = 0
    pp: int = 0
    attention_dp: int = 0
    moe_tp: int = 0
    moe_ep: int = 0
    batch_size: int = 0  # per attention-DP rank
    workers: int = 0

    @property
    def gpus(self) -> int:
        """GPUs of one worker as written: attention TP × attention-DP ranks × pipeline stages."""
        return max(self.tp, 1) * max(self.attention_dp, 1) * max(self.pp, 1)


def ep_squared_encoding(shape: PoolShape) -> int:
    """k when the columns read ``tp = attention_dp = k``, ``moe_ep = k²``, no expert TP (else 0).

    How the export writes a vLLM worker of k GPUs launched with ``--tensor-parallel-size k
    --enable-expert-parallel``: the harness recipes of these points say ``tp: k, ep: k`` (with or
    without ``dp-attn``), and the row ids ``tp{k}_ep{k}``; the batch column is the concurrency / k.
    All 56 such rows of the dev file are vLLM MiniMax-M2.5 and Kimi-K2.5 runs."""
    k = shape.tp
    if k > 1 and shape.attention_dp == k and shape.moe_ep == k * k and shape.moe_tp <= 1:
        return k
    return 0


@dataclass(frozen=True)
class SiliconRow:
    """One measured deployment. Lengths in tokens; measured times in milliseconds (NaN if absent)."""

    line: int  # line number in the file (the header is line 1)
    id: str
    backend: str
    backend_version: str
    model_path: str
    system: str
    precision: str
    mode: str
    isl: int
    osl: int
    gemm_quant_mode: str
    moe_quant_mode: str
    agg: PoolShape | None
    prefill: PoolShape | None
    decode: PoolShape | None
    concurrency_hint: int  # from the source / id text, 0 if none (used when batch sizes are missing)
    ttft_ms: float
    tpot_ms: float
    source: str = ""

    @property
    def has_measurement(self) -> bool:
        return not (math.isnan(self.ttft_ms) and math.isnan(self.tpot_ms))

    @property
    def stated_concurrency(self) -> int:
        """Clients of the benchmark as the columns state them: ``agg``: batch × attention-DP ranks (the
        batch is per rank); ``disagg``: decode batch × ranks × decode workers; where those are missing,
        the source's hint (0 if none)."""
        if self.mode == "agg":
            s = self.agg
            if s is not None and s.batch_size > 0:
                return s.batch_size * max(s.attention_dp, 1)
        else:
            s = self.decode
            if s is not None and s.batch_size > 0 and s.workers > 0:
                return s.batch_size * max(s.attention_dp, 1) * s.workers
        return self.concurrency_hint


def _int(value: str, column: str, where: str, *, allow_empty: bool = True) -> int:
    v = (value or "").strip()
    if not v or v.lower() in ("nan", "none", "null"):
        if allow_empty:
            return 0
        raise UserError(f"column {column!r} is empty", where=where)
    try:
        x = float(v)
    except ValueError:
        raise UserError(f"column {column!r}: expected a number, got {v!r}", where=where) from None
    if not math.isfinite(x) or x < 0 or x != int(x):
        raise UserError(f"column {column!r}: expected a non-negative whole number, got {v!r}", where=where)
    return int(x)


def _float(value: str, column: str, where: str) -> float:
    v = (value or "").strip()
    if not v or v.lower() in ("nan", "none", "null"):
        return math.nan
    try:
        x = float(v)
    except ValueError:
        raise UserError(f"column {column!r}: expected a number, got {v!r}", where=where) from None
    if not math.isfinite(x) or x <= 0:
        raise UserError(f"column {column!r}: expected a positive time in ms, got {v!r}", where=where)
    return x


def _pool(rec: dict, prefix: str, where: str) -> PoolShape:
    g = {f: _int(rec.get(prefix + f, ""), prefix + f, where) for f in POOL_FIELDS}
    return PoolShape(tp=g.get("tp_size", 0), pp=g.get("pp_size", 0), attention_dp=g.get("attention_dp_size", 0),
                     moe_tp=g.get("moe_tp_size", 0), moe_ep=g.get("moe_ep_size", 0),
                     batch_size=g.get("batch_size", 0), workers=g.get("num_workers", 0))


def parse_row(rec: dict, line: int, path: str) -> SiliconRow:
    """One CSV record (column → text) → :class:`SiliconRow`; a :class:`UserError` naming the line."""
    where = f"{path}:{line}"
    mode = (rec.get("mode") or "").strip().lower()
    if mode not in MODES:
        raise UserError(f"column 'mode': expected agg or disagg, got {rec.get('mode')!r}", where=where)
    for col in ("backend", "model_path", "system"):
        if not (rec.get(col) or "").strip():
            raise UserError(f"column {col!r} is empty", where=where)
    isl = _int(rec.get("isl", ""), "isl", where, allow_empty=False)
    osl = _int(rec.get("osl", ""), "osl", where, allow_empty=False)
    if isl < 1 or osl < 1:
        raise UserError("isl and osl must be at least 1 token", where=where)
    agg = prefill = decode = None
    if mode == "agg":
        agg = _pool(rec, "", where)
    else:
        prefill = _pool(rec, "prefill_", where)
        decode = _pool(rec, "decode_", where)
    text = f"{rec.get('silicon_data_source') or ''}"
    m = _CONCURRENCY_IN_SOURCE.search(text) or _CONCURRENCY_IN_ID.search(f"{rec.get('id') or ''}_")
    hint = int(m.group(1)) if m else 0
    return SiliconRow(
        line=line, id=(rec.get("id") or f"line{line}").strip(), backend=rec["backend"].strip().lower(),
        backend_version=(rec.get("backend_version") or "").strip(), model_path=rec["model_path"].strip(),
        system=rec["system"].strip().lower(), precision=(rec.get("precision") or "").strip().lower(),
        mode=mode, isl=isl, osl=osl, gemm_quant_mode=(rec.get("gemm_quant_mode") or "").strip().lower(),
        moe_quant_mode=(rec.get("moe_quant_mode") or "").strip().lower(), agg=agg, prefill=prefill, decode=decode,
        concurrency_hint=hint, ttft_ms=_float(rec.get("silicon_ttft_ms", ""), "silicon_ttft_ms", where),
        tpot_ms=_float(rec.get("silicon_tpot_ms", ""), "silicon_tpot_ms", where), source=text,
    )


def read_silicon_csv(path: str | Path) -> tuple[list[SiliconRow], list[str]]:
    """All rows of a ``silicon_sample``-format file, and its column names (in order)."""
    p = Path(path)
    if not p.is_file():
        raise UserError("file not found" if not p.exists() else "not a file", where=str(p))
    try:
        f = p.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"cannot read ({exc.strerror})", where=str(p)) from None
    with f:
        reader = csv.DictReader(f)
        try:
            columns = list(reader.fieldnames or [])
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UserError(f"not a readable CSV file ({exc})", where=f"{p}:1") from None
        if not columns:
            raise UserError("empty file: expected a header line", where=str(p))
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise UserError(f"missing column(s) {', '.join(missing)} (the silicon_sample format)", where=f"{p}:1")
        rows: list[SiliconRow] = []
        line = 1
        try:
            for rec in reader:
                line = reader.line_num
                if None in rec:
                    raise UserError(f"{len(columns) + len(rec[None])} fields, the header has {len(columns)}",
                                    where=f"{p}:{line}")
                if all(not (v or "").strip() for v in rec.values()):
                    continue  # blank line
                row = parse_row(rec, line, str(p))
                need = AGG_COLUMNS[1:2] if row.mode == "agg" else ("prefill_tp_size", "decode_tp_size")
                absent = [c for c in need if c not in columns]
                if absent:
                    raise UserError(f"{row.mode} rows need column(s) {', '.join(absent)}", where=f"{p}:1")
                rows.append(row)
        except csv.Error as exc:
            raise UserError(f"malformed CSV ({exc})", where=f"{p}:{reader.line_num}") from None
        except UnicodeDecodeError as exc:
            raise UserError(f"not UTF-8 text ({exc.reason})", where=f"{p}:{line + 1}") from None
    return rows, columns
