"""Property tests of the trace readers: any input either reads to a valid workload or is refused
with a UserError (never another exception), bad rows are reported at the right line, and
writing then reading gives back the same workload."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simcluster.errors import UserError
from simcluster.workload import Workload, read_trace, write_trace
from simcluster.workload.traces import _Lines, _mooncake_rows

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORMATS = [None, "azure", "mooncake", "burstgpt", "parquet"]


def assert_valid(w: Workload) -> None:
    assert len(w) >= 1
    assert w.arrival_s.dtype == np.float64 and np.all(np.isfinite(w.arrival_s)) and w.arrival_s.min() >= 0
    assert np.all(np.diff(w.arrival_s) >= 0)
    assert w.input_tokens.dtype == np.int64 and w.input_tokens.min() >= 1
    assert w.output_tokens.dtype == np.int64 and w.output_tokens.min() >= 1
    if w.hash_ids is not None:
        assert len(w.hash_ids) == len(w) and all(h.dtype == np.int64 for h in w.hash_ids)


def read_bytes_as_trace(content: bytes, fmt: str | None, suffix: str = ".trace") -> Workload | UserError:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(content)
        try:
            return read_trace(path, fmt)
        except UserError as exc:
            assert "fuzz" in str(exc), f"the message does not name the file: {exc}"
            return exc


HEADERS = [
    b"",
    b"TIMESTAMP,ContextTokens,GeneratedTokens\n",
    b"Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n",
    b'{"timestamp": 0, "input_length": 5, "output_length": 5}\n',
    b"PAR1",
]


@FUZZ
@given(prefix=st.sampled_from(HEADERS), body=st.binary(max_size=600), fmt=st.sampled_from(FORMATS))
def test_random_bytes_are_read_or_refused_cleanly(prefix, body, fmt):
    result = read_bytes_as_trace(prefix + body, fmt)
    if isinstance(result, Workload):
        assert_valid(result)


TEXT_CELLS = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.sampled_from(["", "0", "1.0", "2.5", "1e3", "nan", "inf", "abc", " 7", "-0", "2023-11-16 18:17:03.9799600"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8),
)


@FUZZ
@given(
    header=st.sampled_from(HEADERS[1:3]),
    rows=st.lists(st.lists(TEXT_CELLS, min_size=1, max_size=7), min_size=1, max_size=12),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_random_csv_rows_are_read_or_refused_cleanly(header, rows, newline):
    body = newline.join(",".join(cells) for cells in rows)
    result = read_bytes_as_trace(header.replace(b"\n", newline.encode()) + body.encode(), None, ".csv")
    if isinstance(result, Workload):
        assert_valid(result)


# --- Azure rows with known defects: the reader must report the line a reference predicts ----

GOOD_COUNT = st.integers(1, 10**7)
BAD_COUNT = st.sampled_from(["0", "-3", "12.5", "abc", "", "nan"])
DEFECTS = st.sampled_from(["none"] * 6 + ["short", "long", "bad_time", "backwards", "bad_context", "bad_generated", "blank_before"])


@FUZZ
@given(
    steps=st.lists(st.tuples(st.integers(0, 10**9), GOOD_COUNT, GOOD_COUNT, DEFECTS, BAD_COUNT), min_size=1, max_size=25)
)
def test_azure_reader_reports_the_line_a_reference_predicts(steps):
    # The reader checks, in order: field counts, timestamps, order, ContextTokens, GeneratedTokens,
    # and reports the first line failing the first check that fails.
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    problems: dict[str, list[int]] = {k: [] for k in ("fields", "time", "order", "context", "generated")}
    base = np.datetime64("2023-11-16T18:00:00", "ns")
    clock = 0  # in units of 100 ns
    expected = []
    for gap, context, generated, defect, bad in steps:
        if defect == "blank_before":
            lines.append("")
        clock += -(gap + 1) if defect == "backwards" else gap
        stamp = str(base + np.timedelta64(clock * 100, "ns")).replace("T", " ")
        cells = [stamp, str(context), str(generated)]
        if defect == "bad_time":
            cells[0] = "16/11/2023"
        if defect == "bad_context":
            cells[1] = bad
        if defect == "bad_generated":
            cells[2] = bad
        if defect == "short":
            cells = cells[:2]
        if defect == "long":
            cells.append("9")
        lines.append(",".join(cells))
        line_no = len(lines)
        kind = {"short": "fields", "long": "fields", "bad_time": "time", "bad_context": "context", "bad_generated": "generated"}
        if defect in kind:
            problems[kind[defect]].append(line_no)
        expected.append((clock, context, generated, defect))
    # Backwards is judged on the rows' clocks, after the datetime check passed.
    clocks = [c for c, *_ in expected]
    for i in range(1, len(clocks)):
        if clocks[i] < clocks[i - 1]:
            problems["order"].append(_data_line(lines, i))
    result = read_bytes_as_trace(("\n".join(lines) + "\n").encode(), None, ".csv")
    first = next((sorted(v)[0] for v in problems.values() if v), None)
    if first is None:
        assert isinstance(result, Workload), result
        np.testing.assert_allclose(result.arrival_s, (np.array(clocks) - clocks[0]) * 1e-7, atol=1e-9)
        assert result.input_tokens.tolist() == [c for _, c, _, _ in expected]
    else:
        assert isinstance(result, UserError), f"line {first} should have been refused"
        assert f"fuzz.csv:{first}:" in str(result), (first, str(result))


def _data_line(lines: list[str], row: int) -> int:
    """1-based file line of data row ``row`` (0-based), skipping blank lines."""
    seen = -1
    for number, text in enumerate(lines[1:], start=2):
        if text:
            seen += 1
            if seen == row:
                return number
    raise AssertionError("row out of range")


# --- Mooncake: the fast (pyarrow) path and the row-by-row path never disagree ----------------

JSON_VALUES = st.one_of(
    st.integers(-3, 3000),
    st.integers(-(2**70), 2**70),
    st.sampled_from(["1.5", "7.0", "1e3", "true", "null", '"12"', "[]", "{}", "NaN", "-0.0"]),
)
HASHES = st.one_of(
    st.none(),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4).map(str),
    st.sampled_from(['"x"', "[1.5]", "[true]", "[null]", "7", "[2e0]"]),
)


def _mooncake_line(ts, inp, out, hashes, drop):
    fields = {"timestamp": ts, "input_length": inp, "output_length": out}
    if hashes is not None:
        fields["hash_ids"] = hashes
    fields.pop(drop, None)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


@FUZZ
@given(
    rows=st.lists(
        st.tuples(JSON_VALUES, JSON_VALUES, JSON_VALUES, HASHES, st.sampled_from([None] * 8 + ["timestamp", "input_length"])),
        min_size=1,
        max_size=8,
    ),
    monotone=st.sampled_from([None, "whole", "fractional"]),
    fraction=st.floats(0, 9.99, allow_nan=False),
)
def test_mooncake_fast_path_agrees_with_the_row_by_row_reader(rows, monotone, fraction):
    if monotone:  # mostly-valid files, so the fast path gets exercised too
        rows = [
            (i * 10 if monotone == "whole" else repr(i * 10 + fraction), abs(hash(str(r[1]))) % 5000 + 1, 7, r[3], None)
            for i, r in enumerate(rows)
        ]
    text = "\n".join(_mooncake_line(*r) for r in rows) + "\n"
    result = read_bytes_as_trace(text.encode(), "mooncake", ".jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.jsonl"
        path.write_text(text)
        lines = _Lines(path, path.read_bytes())
        try:
            slow = _mooncake_rows(lines, lines.nonblank(whitespace_is_blank=True))
        except UserError as exc:
            slow = exc
    if isinstance(slow, UserError):
        assert isinstance(result, UserError) and str(result).split(": ", 1)[1] == str(slow).split(": ", 1)[1]
    else:
        assert isinstance(result, Workload), result
        assert_valid(result)
        assert np.array_equal(result.arrival_s, slow[0]) and np.array_equal(result.input_tokens, slow[1])
        assert (result.hash_ids is None) == (slow[3] is None)
        if slow[3] is not None:
            assert all(np.array_equal(a, b) for a, b in zip(result.hash_ids, slow[3]))


# --- Writers: write then read gives back the same workload ------------------------------------


@st.composite
def workloads(draw, with_hashes=st.booleans()):
    n = draw(st.integers(1, 30))
    times = draw(st.lists(st.floats(0, 1e7, allow_nan=False, allow_infinity=False, allow_subnormal=True), min_size=n, max_size=n))
    inputs = draw(st.lists(st.integers(1, 2**40), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 2**40), min_size=n, max_size=n))
    hashes = None
    if draw(with_hashes):
        hashes = [np.array(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5)), dtype=np.int64) for _ in range(n)]
    return Workload(np.sort(np.array(times)), np.array(inputs), np.array(outputs), hash_ids=hashes)


@FUZZ
@given(w=workloads(), fmt=st.sampled_from(["parquet", "mooncake"]))
def test_parquet_and_mooncake_round_trip_exactly(w, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.out"
        write_trace(w, path, fmt)
        back = read_trace(path)  # the format is detected from the content
    assert np.array_equal(back.arrival_s, w.arrival_s), "arrival times changed"
    assert np.array_equal(back.input_tokens, w.input_tokens) and np.array_equal(back.output_tokens, w.output_tokens)
    assert (back.hash_ids is None) == (w.hash_ids is None)
    if w.hash_ids is not None:
        assert all(np.array_equal(a, b) for a, b in zip(back.hash_ids, w.hash_ids))


@FUZZ
@given(w=workloads(with_hashes=st.just(False)))
def test_azure_round_trip_keeps_times_to_100ns(w):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.csv"
        write_trace(w, path, "azure")
        back = read_trace(path)
    # The Azure clock starts at the first row, and stores 100 ns ticks.
    np.testing.assert_allclose(back.arrival_s, w.arrival_s - w.arrival_s[0], rtol=0, atol=1e-7 + 1e-15 * w.arrival_s.max())
    assert np.array_equal(back.output_tokens, w.output_tokens)


@pytest.mark.parametrize("value", [0.0, 0.001, 0.1 + 0.2, 1 / 3, 5e-324, 1234.5678901234567, 9.999999999999999e6])
def test_mooncake_millisecond_text_reads_back_to_the_same_float(tmp_path, value):
    w = Workload(np.array([value]), np.array([1]), np.array([1]))
    write_trace(w, tmp_path / "one.jsonl", "mooncake")
    assert read_trace(tmp_path / "one.jsonl").arrival_s[0] == value
    assert not math.isnan(value)
