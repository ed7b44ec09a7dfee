"""Request traces on disk: format detection, readers and writers.

Supported formats (``docs/workloads.md`` and ``traces/README.md`` describe each exactly):

``azure``
    Azure LLM inference trace CSV (2023 and 2024 releases): ``TIMESTAMP,ContextTokens,GeneratedTokens``;
    ISO-8601 datetimes (``2023-11-16 18:17:03.9799600``; a UTC offset is allowed and converted).
``mooncake``
    Mooncake JSONL: one object per line with ``timestamp`` (milliseconds from the trace start),
    ``input_length``, ``output_length`` and optionally ``hash_ids`` (512-token prefix blocks).
``burstgpt``
    BurstGPT CSV: ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``;
    ``Timestamp`` in seconds. Rows with 0 response tokens are failed requests in the original log
    and are excluded (the only exclusion any reader makes; it is reported in ``Workload.notes``).
``parquet``
    simcluster's own format, written by :func:`write_trace_parquet`: ``arrival_s`` float64,
    ``input_tokens`` int64, ``output_tokens`` int64, optional ``hash_ids`` list<int64>, and the
    schema version in the file metadata.

Times: Azure and BurstGPT timestamps are wall-clock readings, so the first row of the file becomes
0 s. Mooncake and parquet times already count from the trace start and are kept as they are.

Every problem with a file is a :class:`~simcluster.errors.UserError` whose location is
``FILE:LINE`` (1-based, counting the header) or, for parquet, ``FILE`` and ``row N`` (1-based).
The parsers are vectorised (pandas / pyarrow / numpy); when a check fails, the offending row is
located exactly from the line offsets computed up front.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from simcluster.errors import UserError
from simcluster.workload.workload import Workload

__all__ = [
    "TRACE_FORMATS",
    "WRITE_FORMATS",
    "PARQUET_SCHEMA_VERSION",
    "detect_format",
    "read_trace",
    "read_length_table",
    "write_trace",
    "write_trace_parquet",
]

TRACE_FORMATS = ("azure", "mooncake", "burstgpt", "parquet")
WRITE_FORMATS = ("parquet", "azure", "mooncake")

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
BURSTGPT_COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")
BURSTGPT_REQUIRED = ("Timestamp", "Request tokens", "Response tokens")
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")
MOONCAKE_BLOCK_TOKENS = 512

PARQUET_SCHEMA_VERSION = 1
PARQUET_METADATA_KEY = b"simcluster.trace"

# Written as the first timestamp of Azure CSVs produced by write_trace (the format needs a
# wall clock; the date carries no meaning).
AZURE_WRITE_START = np.datetime64("2024-01-01T00:00:00", "ns")

_SUPPORTED = (
    "supported formats: Azure LLM CSV (TIMESTAMP,ContextTokens,GeneratedTokens), "
    "Mooncake JSONL (timestamp, input_length, output_length[, hash_ids]), "
    f"BurstGPT CSV ({','.join(BURSTGPT_COLUMNS)}), "
    "simcluster parquet (arrival_s, input_tokens, output_tokens[, hash_ids])"
)
_INT64_MAX = np.iinfo(np.int64).max
# Above 2**53 a float64 no longer holds every integer, so a token count read as a float could
# already have been rounded.
_EXACT_FLOAT_INT = 2.0**53


# --------------------------------------------------------------------------------------------
# Reading files and locating lines


def _unreadable(path: Path, exc: OSError) -> UserError:
    if isinstance(exc, FileNotFoundError):
        return UserError("no such file", where=str(path))
    if isinstance(exc, IsADirectoryError):
        return UserError("is a directory, not a trace file", where=str(path))
    return UserError(f"cannot read the file: {exc.strerror or exc}", where=str(path))


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if not data or data.isspace():  # isspace() stops at the first other byte; strip() would copy
        raise UserError("the file is empty", where=str(path))
    return data


class _Lines:
    """Byte offsets of every line of a text file, so any row can be named by its line number.

    Also rejects what is not text: NUL bytes, invalid UTF-8, and carriage returns that do not end
    a line (CSV parsers would count them as line breaks, and line numbers would drift).
    """

    def __init__(self, path: Path, data: bytes) -> None:
        self.where = str(path)
        if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark, written by some editors
            data = data[3:]
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        buf = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(buf == 10)
        self.starts = np.concatenate(([0], newlines + 1))
        self.ends = np.concatenate((newlines, [len(data)]))
        if self.starts[-1] == len(data):  # the usual final newline does not start a line
            self.starts, self.ends = self.starts[:-1], self.ends[:-1]
        self.data = data
        self.buf = buf
        for bad, what in ((b"\0", "a NUL byte: this is not a text file"), (b"\r", "a stray carriage return")):
            pos = data.find(bad)
            if pos >= 0:
                self.fail_at_offset(pos, f"contains {what}")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.fail_at_offset(exc.start, "is not valid UTF-8 text")

    def __len__(self) -> int:
        return len(self.starts)

    def line_of_offset(self, offset: int) -> int:
        """1-based line number of a byte offset."""
        return int(np.searchsorted(self.ends, offset, side="left")) + 1

    def fail_at_offset(self, offset: int, message: str) -> None:
        raise UserError(message, where=f"{self.where}:{self.line_of_offset(offset)}")

    def fail(self, line_index: int, message: str) -> None:
        """Raise a UserError at 0-based line ``line_index``."""
        raise UserError(message, where=f"{self.where}:{int(line_index) + 1}")

    def text(self, line_index: int) -> str:
        return self.data[self.starts[line_index] : self.ends[line_index]].decode("utf-8")

    def count_per_line(self, byte: int) -> np.ndarray:
        """How many times ``byte`` occurs on each line."""
        hits = np.flatnonzero(self.buf == byte)
        return np.searchsorted(hits, self.ends) - np.searchsorted(hits, self.starts)

    def nonblank(self, whitespace_is_blank: bool) -> np.ndarray:
        """0-based indices of the lines that have content."""
        lengths = self.ends - self.starts
        filled = lengths > 0
        if whitespace_is_blank:
            # Only lines that start with white space can be all white space; check just those.
            first = self.buf[self.starts[filled]] if filled.any() else np.empty(0, np.uint8)
            suspects = np.flatnonzero(filled)[np.isin(first, np.frombuffer(b" \t\x0b\x0c", np.uint8))]
            for i in suspects:
                filled[i] = bool(self.data[self.starts[i] : self.ends[i]].strip())
        return np.flatnonzero(filled)


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --------------------------------------------------------------------------------------------
# CSV tables (Azure, BurstGPT, length tables)


class _CsvTable:
    """A CSV file split into header and rows, with every row's line number known.

    ``columns`` lists the column names that must be present; :meth:`text` gives each as an Arrow
    string array with one entry per data line (blank lines skipped), and :meth:`tokens` /
    :meth:`seconds` convert and check them.
    """

    def __init__(self, path: Path, data: bytes, columns: Sequence[str]):
        lines = _Lines(path, data)
        self.lines = lines
        nonblank = lines.nonblank(whitespace_is_blank=False)
        if nonblank.size == 0:
            raise UserError("the file is empty", where=str(path))
        header_line = int(nonblank[0])
        self.header = [name.strip() for name in lines.text(header_line).split(",")]
        positions: dict[str, int] = {}
        for name in columns:
            found = [i for i, h in enumerate(self.header) if h == name]
            if not found:
                lines.fail(
                    header_line,
                    f"missing column {name!r} (the header has {', '.join(map(repr, self.header))}; "
                    f"expected {', '.join(map(repr, columns))})",
                )
            if len(found) > 1:
                lines.fail(header_line, f"column {name!r} appears {len(found)} times in the header")
            positions[name] = found[0]
        self.row_lines = nonblank[1:]  # 0-based line index of every data row
        if self.row_lines.size == 0:
            lines.fail(header_line, "the file has a header but no requests")
        names = [f"f{i}" for i in range(len(self.header))]
        body = lines.data[int(lines.starts[self.row_lines[0]]) :]
        try:
            table = pa_csv.read_csv(
                io.BytesIO(body),
                # Single-threaded: with Arrow's thread pool busy here, the process was seen to
                # abort at exit now and then (pyarrow 26, "terminate called without an active
                # exception"); one thread also keeps a 1M-row file near one second.
                read_options=pa_csv.ReadOptions(column_names=names, use_threads=False),
                # No quoting and no newlines inside values: one row per line, always.
                parse_options=pa_csv.ParseOptions(quote_char=False, escape_char=False, ignore_empty_lines=True),
                # Everything as text; the callers convert and can then name the bad field.
                convert_options=pa_csv.ConvertOptions(
                    include_columns=[names[i] for i in positions.values()],
                    column_types={names[i]: pa.string() for i in positions.values()},
                    strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as exc:
            # Arrow refuses rows with the wrong number of fields but cannot say on which line;
            # count the commas of every line to name it.
            self._check_field_counts()
            raise UserError(f"not a readable CSV file: {exc}", where=str(path)) from None
        if table.num_rows != self.row_lines.size:  # pragma: no cover - would be a bug in the line scan
            raise RuntimeError(f"{path}: parsed {table.num_rows} rows from {self.row_lines.size} data lines")
        self.positions = positions
        self.columns = {name: table.column(names[i]) for name, i in positions.items()}

    def _check_field_counts(self) -> None:
        fields = self.lines.count_per_line(ord(","))[self.row_lines] + 1
        wrong = np.flatnonzero(fields != len(self.header))
        if wrong.size:
            i = int(wrong[0])
            self.fail(
                i,
                f"expected {len(self.header)} comma-separated fields ({','.join(self.header)}), "
                f"found {fields[i]}: truncated or malformed row {_short(self.lines.text(self.row_lines[i]))}",
            )

    def text(self, column: str) -> pa.ChunkedArray:
        return self.columns[column]

    def _numbers(self, column: str, arrow_type: pa.DataType) -> np.ndarray:
        """The column as numbers: Arrow's strict cast when every field is plain, else pandas,
        which also takes spellings like " 7" or "1e3" and leaves NaN where it cannot."""
        try:
            return pc.cast(self.columns[column], arrow_type).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pd.to_numeric(self.columns[column].to_pandas(), errors="coerce").to_numpy()

    def fail(self, row: int, message: str) -> None:
        self.lines.fail(self.row_lines[row], message)

    def field(self, row: int, column: str) -> str:
        return self.lines.text(self.row_lines[row]).split(",")[self.positions[column]].strip()

    def tokens(self, column: str, allow_zero: bool = False) -> np.ndarray:
        """Column ``column`` as int64 token counts (>= 1, or >= 0 with ``allow_zero``)."""
        values = _exact_integers(self._numbers(column, pa.int64()))
        bad = ~(values >= (0 if allow_zero else 1))  # NaN compares False, so it lands in bad too
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            self.fail(row, f"{column} {_describe_bad_count(self.field(row, column))}")
        return values.astype(np.int64, copy=False)

    def seconds(self, column: str) -> np.ndarray:
        """Column ``column`` as finite float64 numbers (for timestamps in seconds)."""
        values = self._numbers(column, pa.float64()).astype(np.float64, copy=False)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            self.fail(row, f"{column} {_short(self.field(row, column))} is not a number of seconds")
        return values

    def check_not_backwards(self, clock: np.ndarray, column: str) -> None:
        back = np.flatnonzero(np.diff(clock) < 0)
        if back.size:
            row = int(back[0]) + 1
            self.fail(
                row,
                f"{column} {self.field(row, column)!r} is earlier than {self.field(row - 1, column)!r} "
                f"on line {int(self.row_lines[row - 1]) + 1}: timestamps must not go backwards",
            )


def _exact_integers(values: np.ndarray) -> np.ndarray:
    """Integer-valued numbers as int64; anything else (NaN, fractions, too large) as NaN float64.

    Callers turn NaN into a message. Token counts are never rounded: 12.5 is an error, 12.0 is 12.
    """
    if values.dtype.kind == "i":
        return values
    if values.dtype.kind == "u":
        out = values.astype(np.float64)
        out[values > _INT64_MAX] = np.nan
        return out
    values = values.astype(np.float64, copy=False)
    ok = np.isfinite(values) & (values == np.floor(values)) & (np.abs(values) < _EXACT_FLOAT_INT)
    if ok.all():
        return values.astype(np.int64)
    return np.where(ok, values, np.nan)


def _describe_bad_count(text: str) -> str:
    """Why the field ``text`` is not a token count, for the error message."""
    try:
        value = float(text)
    except ValueError:
        return f"{_short(text)} is not a number"
    if not math.isfinite(value):
        return f"{_short(text)} is not a finite number"
    if value != math.floor(value):
        return f"{_short(text)} is not a whole number of tokens (token counts are never rounded)"
    if value < 0:
        return f"{_short(text)} is negative: a token count is at least 1"
    if value == 0:
        return f"{_short(text)} is zero: every request has at least 1 token"
    return f"{_short(text)} is too large for a token count"


# --------------------------------------------------------------------------------------------
# Format detection


def detect_format(path: str | Path) -> str:
    """The format of a trace file, from its content (not its name): one of :data:`TRACE_FORMATS`."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(65536)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if head.startswith(b"PAR1"):
        return "parquet"
    if not head.strip():
        raise UserError("the file is empty", where=str(path))
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    lineno, first = next(((i + 1, line.strip()) for i, line in enumerate(text.split("\n")) if line.strip()), (1, ""))
    if first.startswith("{"):
        return "mooncake"
    header = {name.strip() for name in first.split(",")}
    # The format whose columns the header shares most; its reader then names any missing column.
    scores = {
        "azure": len(header & set(AZURE_COLUMNS)),
        "burstgpt": len(header & set(BURSTGPT_REQUIRED)),
    }
    best = max(scores, key=lambda k: scores[k])
    if scores[best] == 0:
        raise UserError(f"unknown trace format (line {_short(first)}); {_SUPPORTED}", where=f"{path}:{lineno}")
    return best


# --------------------------------------------------------------------------------------------
# Readers


def read_trace(path: str | Path, fmt: str | None = None) -> Workload:
    """Read a request trace into a :class:`Workload`.

    Args:
        path: the trace file.
        fmt: one of :data:`TRACE_FORMATS`, or ``None`` / ``"auto"`` to detect it from the content.

    Raises:
        UserError: naming the file and line (or parquet row) of anything wrong with it.
    """
    path = Path(path)
    if fmt in (None, "auto"):
        fmt = detect_format(path)
    readers = {"azure": _read_azure, "mooncake": _read_mooncake, "burstgpt": _read_burstgpt, "parquet": _read_parquet}
    if fmt not in readers:
        raise UserError(f"unknown trace format {fmt!r}; {_SUPPORTED}", where="format")
    return readers[fmt](path)


def _read_azure(path: Path) -> Workload:
    table = _CsvTable(path, _read_bytes(path), AZURE_COLUMNS)
    clock = _datetimes_s(table, "TIMESTAMP")
    table.check_not_backwards(clock, "TIMESTAMP")
    return Workload(
        arrival_s=clock - clock[0],
        input_tokens=table.tokens("ContextTokens"),
        output_tokens=table.tokens("GeneratedTokens"),
        source=f"{path} (azure)",
    )


def _datetimes_s(table: _CsvTable, column: str) -> np.ndarray:
    """ISO-8601 datetimes as float64 seconds since the first row's.

    Timestamps with a UTC offset are converted to UTC; timestamps without one are taken as UTC
    too, so the 2024 releases (which carry "+00:00") and the 2023 ones (naive) read alike.
    """
    text = table.text(column)
    for arrow_type in (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")):  # all naive; all with offset
        try:
            ticks, ticks_per_s = pc.cast(text, arrow_type).cast(pa.int64()).to_numpy(), 1e9
            break
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    else:  # a mix, or spellings Arrow does not take: pandas' parser, which also finds the bad row
        try:
            parsed = pd.to_datetime(text.to_pandas(), format="ISO8601", errors="coerce", utc=True)
        except (ValueError, OverflowError):
            # Rare inputs make the vectorised parser give up as a whole; parse row by row.
            parsed = pd.Series([_one_datetime(t) for t in text.to_pylist()], dtype="datetime64[ns, UTC]")
        missing = parsed.isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            table.fail(
                row,
                f"{column} {_short(table.field(row, column))} is not a datetime "
                "(expected e.g. 2023-11-16 18:17:03.9799600)",
            )
        stamps = np.asarray(parsed.dt.tz_convert(None))  # datetime64 in the finest unit the data needs
        ticks = stamps.view(np.int64)
        ticks_per_s = np.timedelta64(1, "s") / np.timedelta64(1, np.datetime_data(stamps.dtype)[0])
    # Differences stay exact in int64 ticks; the first row's date is subtracted before the
    # conversion to float, which would otherwise lose the sub-microsecond digits.
    return (ticks - ticks[0]) / ticks_per_s


def _one_datetime(text: str) -> pd.Timestamp:
    try:
        return pd.to_datetime(text, format="ISO8601", utc=True).as_unit("ns")
    except (ValueError, OverflowError):
        return pd.NaT


def _read_burstgpt(path: Path) -> Workload:
    table = _CsvTable(path, _read_bytes(path), BURSTGPT_REQUIRED)
    clock = table.seconds("Timestamp")
    table.check_not_backwards(clock, "Timestamp")
    # The trace starts at its first logged row, failed or not, so a kept request keeps its offset.
    clock = clock - clock[0]
    inputs = table.tokens("Request tokens")
    outputs = table.tokens("Response tokens", allow_zero=True)
    failed = outputs == 0
    notes: tuple[str, ...] = ()
    n_failed = int(failed.sum())
    if n_failed:
        if n_failed == len(outputs):
            raise UserError("every row has 0 response tokens (failed requests): no requests left", where=str(path))
        keep = ~failed
        notes = (
            f"excluded {n_failed} of {len(outputs)} rows with 0 response tokens "
            "(failed requests in the BurstGPT log)",
        )
        clock, inputs, outputs = clock[keep], inputs[keep], outputs[keep]
    return Workload(
        arrival_s=clock,
        input_tokens=inputs,
        output_tokens=outputs,
        source=f"{path} (burstgpt)",
        notes=notes,
    )


_MOONCAKE_SCHEMA = pa.schema(
    [
        ("timestamp", pa.float64()),  # milliseconds, whole or not
        ("input_length", pa.int64()),
        ("output_length", pa.int64()),
        ("hash_ids", pa.list_(pa.int64())),
    ]
)


def _read_mooncake(path: Path) -> Workload:
    data = _read_bytes(path)
    lines = _Lines(path, data)
    rows = lines.nonblank(whitespace_is_blank=True)
    if rows.size == 0:  # e.g. only a byte-order mark
        raise UserError("the file is empty", where=str(path))
    fast = _mooncake_fast(lines, rows)
    if fast is not None:
        arrival, inputs, outputs, hash_ids = fast
    else:
        arrival, inputs, outputs, hash_ids = _mooncake_rows(lines, rows)
    return Workload(
        arrival_s=arrival,
        input_tokens=inputs,
        output_tokens=outputs,
        hash_ids=hash_ids,
        hash_block_tokens=MOONCAKE_BLOCK_TOKENS,
        source=f"{path} (mooncake)",
    )


def _mooncake_fast(lines: _Lines, rows: np.ndarray):
    """Parse a well-formed Mooncake file with pyarrow; ``None`` when anything looks off.

    ``None`` hands the file to the row-by-row reader, which is the authority on errors. This
    path only accepts input that the row-by-row reader reads to the same values.
    """
    import pyarrow.json as pa_json

    n_rows = rows.size
    try:
        table = pa_json.read_json(
            io.BytesIO(lines.data),
            read_options=pa_json.ReadOptions(use_threads=False),  # see _CsvTable
            parse_options=pa_json.ParseOptions(explicit_schema=_MOONCAKE_SCHEMA, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowException, ValueError):
        return None
    if table.num_rows != n_rows:  # e.g. two objects on one line
        return None
    columns = [table.column(k) for k in MOONCAKE_KEYS]
    if any(c.null_count for c in columns):
        return None
    stamps_ms, inputs, outputs = (c.to_numpy() for c in columns)
    if not np.all(np.isfinite(stamps_ms)) or inputs.min() < 1 or outputs.min() < 1:
        return None
    if np.all(stamps_ms == np.floor(stamps_ms)) and np.abs(stamps_ms).max() < _EXACT_FLOAT_INT:
        seconds = stamps_ms / 1000.0  # whole milliseconds: exact integers, one rounding
    else:
        seconds = _exact_ms_to_s(lines, rows)
        if seconds is None:
            return None
    if seconds.min() < 0 or np.any(np.diff(seconds) < 0):
        return None
    hashes = table.column("hash_ids")
    if hashes.null_count == n_rows:
        hash_ids = None
    elif hashes.null_count == 0:
        lists = hashes.combine_chunks()
        if lists.values.null_count:
            return None
        offsets = lists.offsets.to_numpy()
        values = lists.values.to_numpy()[offsets[0] : offsets[-1]]
        hash_ids = _split(values, offsets - offsets[0])
    else:
        return None
    return seconds, inputs, outputs, hash_ids


_TIMESTAMP_TEXT = re.compile(rb'"timestamp"\s*:\s*([-+0-9.]+)\s*[,}]')


def _exact_ms_to_s(lines: _Lines, rows: np.ndarray) -> np.ndarray | None:
    """Fractional millisecond timestamps, converted from their text as exactly as
    :func:`_json_ms_to_s` does; ``None`` unless each data line has exactly one plain match.

    A parsed float64 would be rounded twice (text to ms, ms / 1000); appending ``e-3`` to the
    decimal text lets ``float()`` round the exact quotient once.
    """
    found = list(_TIMESTAMP_TEXT.finditer(lines.data))
    if len(found) != rows.size:
        return None
    at = np.searchsorted(lines.ends, np.fromiter((m.start() for m in found), np.int64, len(found)), side="left")
    if not np.array_equal(at, rows):
        return None
    try:
        return np.array([float(m.group(1) + b"e-3") for m in found], dtype=np.float64)
    except ValueError:
        return None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _mooncake_rows(lines: _Lines, rows: np.ndarray):
    """Row-by-row Mooncake reader: exact values and exact messages."""
    arrival = np.empty(rows.size, dtype=np.float64)
    inputs = np.empty(rows.size, dtype=np.int64)
    outputs = np.empty(rows.size, dtype=np.int64)
    hash_ids: list[np.ndarray] = []
    first_has_hashes: bool | None = None
    previous: tuple[object, int] | None = None  # (timestamp as written, line index)
    for i, line in enumerate(rows):
        try:
            obj = json.loads(lines.text(line), parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            lines.fail(line, f"not a JSON object: {exc}")
        if not isinstance(obj, dict):
            lines.fail(line, f"expected a JSON object per line, found {type(obj).__name__}")
        for key in MOONCAKE_KEYS:
            if key not in obj:
                lines.fail(line, f"missing key {key!r} (each line needs {', '.join(MOONCAKE_KEYS)})")
        stamp = obj["timestamp"]
        seconds = _json_ms_to_s(stamp)
        if seconds is None:
            lines.fail(line, f"timestamp {_short(str(stamp))} is not a number of milliseconds >= 0")
        if previous is not None and seconds < arrival[i - 1]:
            lines.fail(
                line,
                f"timestamp {stamp} ms is earlier than {previous[0]} ms on line {previous[1] + 1}: "
                "timestamps must not go backwards",
            )
        previous = (stamp, int(line))
        arrival[i] = seconds
        for key, out in (("input_length", inputs), ("output_length", outputs)):
            value = obj[key]
            if isinstance(value, Decimal) and value == value.to_integral_value():
                value = int(value)  # 512.0 is 512; 512.5 stays a Decimal and is refused below
            if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
                found = f"{type(value).__name__} {_short(json.dumps(value))}"
                lines.fail(line, f"{key} must be a number of tokens, found {found}")
            if not (isinstance(value, int) and 1 <= value <= _INT64_MAX):
                lines.fail(line, f"{key} {_describe_bad_count(str(value))}")
            out[i] = value
        hashes = obj.get("hash_ids")
        has_hashes = hashes is not None
        if first_has_hashes is None:
            first_has_hashes = has_hashes
        elif has_hashes != first_has_hashes:
            lines.fail(
                line,
                "hash_ids is " + ("present" if has_hashes else "missing")
                + f" but was {'present' if first_has_hashes else 'missing'} on line {int(rows[0]) + 1}: "
                "give hash_ids on every line or on none",
            )
        if has_hashes:
            if not isinstance(hashes, list):
                lines.fail(line, f"hash_ids must be a list of integers, found {type(hashes).__name__}")
            for k, h in enumerate(hashes):
                if isinstance(h, bool) or not isinstance(h, int) or not -_INT64_MAX - 1 <= h <= _INT64_MAX:
                    lines.fail(line, f"hash_ids[{k}] must be a 64-bit integer, found {_short(str(h))}")
            hash_ids.append(np.array(hashes, dtype=np.int64))
    return arrival, inputs, outputs, (hash_ids if first_has_hashes else None)


def _json_ms_to_s(stamp: object) -> float | None:
    """A JSON millisecond timestamp as seconds, or ``None`` if it is not a number >= 0.

    Exact: the decimal point is moved in decimal before the one rounding to float64, so that
    whatever :func:`_mooncake_ms_text` wrote reads back to the same float.
    """
    if isinstance(stamp, bool):
        return None
    if isinstance(stamp, int):
        try:
            seconds = stamp / 1000  # Python rounds int / int correctly, like the decimal path
        except OverflowError:
            return None
    elif isinstance(stamp, Decimal):
        try:
            seconds = float(stamp.scaleb(-3))
        except (ArithmeticError, ValueError):
            return None
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _read_parquet(path: Path) -> Workload:
    import pyarrow.parquet as pq

    where = str(path)
    if not path.is_file():  # pyarrow would read a folder as a dataset
        raise _unreadable(path, IsADirectoryError() if path.is_dir() else FileNotFoundError())
    try:
        table = pq.read_table(path, use_threads=False)  # see _CsvTable
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UserError(f"not a readable parquet file: {exc}", where=where) from None
    meta = _parquet_meta(table.schema.metadata or {}, where)
    if meta.get("schema_version", 1) > PARQUET_SCHEMA_VERSION:
        raise UserError(
            f"trace schema version {meta['schema_version']} is newer than this simcluster reads "
            f"({PARQUET_SCHEMA_VERSION}): upgrade simcluster",
            where=where,
        )
    names = table.schema.names
    for name in ("arrival_s", "input_tokens", "output_tokens"):
        if name not in names:
            raise UserError(
                f"missing column {name!r} (columns: {', '.join(names)}; expected arrival_s, "
                "input_tokens, output_tokens[, hash_ids])",
                where=where,
            )
    if table.num_rows == 0:
        raise UserError("the file has no requests", where=where)

    def fail(row: int, message: str) -> None:
        raise UserError(f"row {row + 1}: {message}", where=where)

    def column(name: str, kinds: str) -> np.ndarray:
        col = table.column(name)
        if col.null_count:
            fail(int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0]), f"{name} is missing (null)")
        values = col.to_numpy()
        if values.dtype.kind not in kinds:
            expected = "a number type (float64)" if "f" in kinds else "an integer type (int64)"
            raise UserError(f"column {name!r} has type {col.type}, expected {expected}", where=where)
        return values

    arrival = column("arrival_s", "fiu").astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(arrival) | (arrival < 0))
    if bad.size:
        fail(int(bad[0]), f"arrival_s {float(arrival[bad[0]])!r} is not a time in seconds >= 0")
    back = np.flatnonzero(np.diff(arrival) < 0)
    if back.size:
        row = int(back[0]) + 1
        fail(
            row,
            f"arrival_s {float(arrival[row])!r} is earlier than {float(arrival[row - 1])!r} on row {row}: "
            "times must not go backwards",
        )
    tokens = {}
    for name in ("input_tokens", "output_tokens"):
        values = column(name, "iu")
        bad = np.flatnonzero((values < 1) | (values > _INT64_MAX))
        if bad.size:
            fail(int(bad[0]), f"{name} {_describe_bad_count(str(values[bad[0]]))}")
        tokens[name] = values.astype(np.int64)
    hash_ids = _parquet_hash_ids(table, fail, where) if "hash_ids" in names else None
    return Workload(
        arrival_s=arrival,
        input_tokens=tokens["input_tokens"],
        output_tokens=tokens["output_tokens"],
        hash_ids=hash_ids,
        hash_block_tokens=int(meta.get("hash_block_tokens", MOONCAKE_BLOCK_TOKENS)),
        source=f"{path} (parquet)",
        notes=tuple(meta.get("notes", ())),
    )


def _parquet_meta(metadata: dict, where: str) -> dict:
    raw = metadata.get(PARQUET_METADATA_KEY)
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    ok = (
        isinstance(meta, dict)
        and isinstance(meta.get("schema_version", 1), int)
        and isinstance(meta.get("hash_block_tokens", 1), int)
        and meta.get("hash_block_tokens", 1) >= 1
        and isinstance(meta.get("notes", []), list)
        and all(isinstance(n, str) for n in meta.get("notes", []))
    )
    if not ok:
        raise UserError(f"the {PARQUET_METADATA_KEY.decode()} metadata is not valid", where=where)
    return meta


def _parquet_hash_ids(table: pa.Table, fail, where: str) -> list[np.ndarray] | None:
    col = table.column("hash_ids")
    if col.null_count == table.num_rows:
        return None
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)) or not pa.types.is_integer(
        col.type.value_type
    ):
        raise UserError(f"column 'hash_ids' has type {col.type}, expected list<int64>", where=where)
    lists = col.combine_chunks()
    if lists.null_count:
        fail(int(np.flatnonzero(lists.is_null().to_numpy(zero_copy_only=False))[0]), "hash_ids is missing (null)")
    offsets = lists.offsets.to_numpy().astype(np.int64)
    flat = lists.values[int(offsets[0]) : int(offsets[-1])]
    if flat.null_count:
        first = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0])
        fail(int(np.searchsorted(offsets, first + offsets[0], side="right")) - 1, "hash_ids contains a null")
    values = flat.to_numpy()
    if values.dtype.kind == "u" and values.size and values.max() > _INT64_MAX:
        first = int(np.flatnonzero(values > _INT64_MAX)[0])
        fail(int(np.searchsorted(offsets, first + offsets[0], side="right")) - 1, "hash_ids value does not fit int64")
    return _split(values.astype(np.int64, copy=False), offsets - offsets[0])


def _split(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Views ``values[offsets[i]:offsets[i+1]]`` (np.split is several times slower for many rows)."""
    bounds = offsets.tolist()
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def read_length_table(path: str | Path, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Token-count columns of a CSV length table (e.g. ``num_prefill_tokens,num_decode_tokens``).

    Returns ``{column: int64 array}``; rows stay aligned across columns so they can be sampled
    jointly. Every value must be a whole number >= 1 (errors name the file and line).
    """
    path = Path(path)
    table = _CsvTable(path, _read_bytes(path), list(dict.fromkeys(columns)))
    return {name: table.tokens(name) for name in columns}


# --------------------------------------------------------------------------------------------
# Writers


def write_trace(workload: Workload, path: str | Path, fmt: str) -> tuple[str, ...]:
    """Write ``workload`` to ``path`` as ``fmt`` (one of :data:`WRITE_FORMATS`).

    Parquet and Mooncake round-trip exactly through :func:`read_trace` (Mooncake times are
    written in milliseconds with as many decimals as the float needs). Azure CSV stores times to
    100 ns and no hash ids. Returns warnings about what the format could not hold.
    """
    path = Path(path)
    writers = {"parquet": write_trace_parquet, "azure": _write_azure, "mooncake": _write_mooncake}
    if fmt not in writers:
        raise UserError(f"cannot write format {fmt!r}; choose one of {', '.join(WRITE_FORMATS)}", where="format")
    if not path.parent.is_dir():
        raise UserError("the output folder does not exist", where=str(path))
    try:
        return writers[fmt](workload, path) or ()
    except IsADirectoryError:
        raise UserError("is a directory", where=str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot write the file: {exc.strerror or exc}", where=str(path)) from None


def write_trace_parquet(workload: Workload, path: str | Path) -> tuple[str, ...]:
    """Write the project's own trace parquet (columns ``arrival_s``, ``input_tokens``,
    ``output_tokens``, optional ``hash_ids`` list<int64>; metadata ``simcluster.trace`` holds the
    schema version, hash block size, source and notes as JSON)."""
    import pyarrow.parquet as pq

    columns = {
        "arrival_s": pa.array(workload.arrival_s, type=pa.float64()),
        "input_tokens": pa.array(workload.input_tokens, type=pa.int64()),
        "output_tokens": pa.array(workload.output_tokens, type=pa.int64()),
    }
    if workload.hash_ids is not None:
        lengths = np.fromiter((len(h) for h in workload.hash_ids), dtype=np.int64, count=len(workload))
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        values = np.concatenate(workload.hash_ids).astype(np.int64) if len(workload) else np.empty(0, np.int64)
        # list<int64> as the schema says; offsets are int32, so a giant table needs large_list.
        list_type = pa.ListArray if offsets[-1] <= np.iinfo(np.int32).max else pa.LargeListArray
        columns["hash_ids"] = list_type.from_arrays(pa.array(offsets), pa.array(values, type=pa.int64()))
    meta = {
        "schema_version": PARQUET_SCHEMA_VERSION,
        "hash_block_tokens": int(workload.hash_block_tokens),
        "source": workload.source,
        "notes": list(workload.notes),
    }
    table = pa.table(columns).replace_schema_metadata({PARQUET_METADATA_KEY: json.dumps(meta).encode()})
    pq.write_table(table, path)
    return ()


def _write_azure(workload: Workload, path: Path) -> tuple[str, ...]:
    ticks_100ns = np.rint(workload.arrival_s * 1e7).astype(np.int64)
    stamps = np.datetime_as_string(AZURE_WRITE_START + ticks_100ns * np.timedelta64(100, "ns"), unit="ns")
    # "2024-01-01T00:00:03.979960000" -> "2024-01-01 00:00:03.9799600", the Azure spelling.
    rows = [
        f"{s[:10]} {s[11:27]},{i},{o}\n"
        for s, i, o in zip(stamps.tolist(), workload.input_tokens.tolist(), workload.output_tokens.tolist())
    ]
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(",".join(AZURE_COLUMNS) + "\n")
        f.writelines(rows)
    warnings = []
    if workload.hash_ids is not None:
        warnings.append("the Azure format has no hash ids: prefix-block ids were not written")
    if len(workload) and workload.arrival_s[0] != 0:
        warnings.append(
            f"Azure timestamps are read relative to the first row: the first arrival at "
            f"{workload.arrival_s[0]:g} s will read back as 0 s"
        )
    return tuple(warnings)


def _mooncake_ms_text(seconds: np.ndarray) -> list[str]:
    """Milliseconds as JSON numbers that :func:`_json_ms_to_s` reads back to exactly ``seconds``."""
    ms = np.rint(seconds * 1000.0)
    whole = (ms / 1000.0 == seconds) & (np.abs(ms) < _EXACT_FLOAT_INT)
    out = []
    for s, m, is_whole in zip(seconds.tolist(), ms.tolist(), whole.tolist()):
        if is_whole:
            out.append(str(int(m)))
        else:
            # repr() is the shortest decimal that reads back to s; shifting its decimal point
            # three places is exact in decimal, and the reader shifts it back before rounding.
            out.append(format(Decimal(repr(s)).scaleb(3), "f"))
    return out


def _write_mooncake(workload: Workload, path: Path) -> tuple[str, ...]:
    if workload.hash_ids is not None and workload.hash_block_tokens != MOONCAKE_BLOCK_TOKENS:
        raise UserError(
            f"Mooncake hash ids cover {MOONCAKE_BLOCK_TOKENS}-token blocks; this workload's cover "
            f"{workload.hash_block_tokens}: write parquet instead",
            where=str(path),
        )
    stamps = _mooncake_ms_text(workload.arrival_s)
    inputs = workload.input_tokens.tolist()
    outputs = workload.output_tokens.tolist()
    with path.open("w", encoding="utf-8", newline="") as f:
        for i, stamp in enumerate(stamps):
            # Same key order and spacing as the published Mooncake traces.
            line = f'{{"timestamp": {stamp}, "input_length": {inputs[i]}, "output_length": {outputs[i]}'
            if workload.hash_ids is not None:
                line += f', "hash_ids": {json.dumps(workload.hash_ids[i].tolist())}'
            f.write(line + "}\n")
    return ()
