"""Trace files: the real public traces, the samples, every user error, writers, transformations,
the scenario spec and the ``simcluster trace`` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simcluster.cli.main import main
from simcluster.errors import UserError
from simcluster.workload import (
    Workload,
    build_workload,
    detect_format,
    head,
    parse_workload_spec,
    read_length_table,
    read_trace,
    scale_rate,
    time_window,
    workload_stats,
    write_trace,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TRACES = REPO / "traces"
AZURE = SHARED / "traces" / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE = SHARED / "traces" / "mooncake_fast25" / "conversation_trace.jsonl"
SHAREGPT = SHARED / "traces" / "length_stats" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"


def needs_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the real traces live in ../shared beside the repository")
    return path


def assert_contract(w: Workload) -> None:
    """The invariants the engine relies on."""
    assert w.arrival_s.dtype == np.float64 and w.input_tokens.dtype == np.int64 and w.output_tokens.dtype == np.int64
    assert len(w.arrival_s) == len(w.input_tokens) == len(w.output_tokens) == len(w)
    assert np.all(np.isfinite(w.arrival_s)) and w.arrival_s.min() >= 0
    assert np.all(np.diff(w.arrival_s) >= 0), "arrival times go backwards"
    assert w.input_tokens.min() >= 1 and w.output_tokens.min() >= 1
    if w.hash_ids is not None:
        assert len(w.hash_ids) == len(w)
        assert all(h.dtype == np.int64 for h in w.hash_ids)
    w.validate()


def same_workload(a: Workload, b: Workload) -> bool:
    if not (
        np.array_equal(a.arrival_s, b.arrival_s)
        and np.array_equal(a.input_tokens, b.input_tokens)
        and np.array_equal(a.output_tokens, b.output_tokens)
        and (a.hash_ids is None) == (b.hash_ids is None)
    ):
        return False
    return a.hash_ids is None or all(np.array_equal(x, y) for x, y in zip(a.hash_ids, b.hash_ids))


# --------------------------------------------------------------------------------------------
# The real traces in ../shared, checked against pandas / json read independently


def test_azure_conversation_trace_reads_every_request_with_its_tokens():
    path = needs_shared(AZURE)
    w = read_trace(path)
    raw = pd.read_csv(path)
    assert len(w) == len(raw) == 19_366
    assert w.input_tokens.mean() == pytest.approx(raw["ContextTokens"].mean(), rel=1e-12)
    assert w.output_tokens.mean() == pytest.approx(raw["GeneratedTokens"].mean(), rel=1e-12)
    assert np.array_equal(w.input_tokens, raw["ContextTokens"].to_numpy())
    stamps = pd.to_datetime(raw["TIMESTAMP"])
    expected = (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy()
    assert w.arrival_s[0] == 0.0
    np.testing.assert_allclose(w.arrival_s, expected, rtol=0, atol=1e-6)
    assert w.hash_ids is None
    assert_contract(w)
    assert detect_format(path) == "azure"


def test_mooncake_conversation_trace_reads_every_request_with_its_prefix_blocks():
    path = needs_shared(MOONCAKE)
    w = read_trace(path)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(w) == len(rows) == 12_031
    assert w.input_tokens.mean() == pytest.approx(np.mean([r["input_length"] for r in rows]), rel=1e-12)
    assert w.output_tokens.mean() == pytest.approx(np.mean([r["output_length"] for r in rows]), rel=1e-12)
    np.testing.assert_array_equal(w.arrival_s, np.array([r["timestamp"] for r in rows]) / 1000)
    assert w.arrival_s[0] == 0.0
    assert w.hash_block_tokens == 512
    blocks = [len(h) for h in w.hash_ids]
    assert blocks == [math.ceil(n / 512) for n in w.input_tokens.tolist()]
    assert all(h.tolist() == r["hash_ids"] for h, r in zip(w.hash_ids, rows))
    assert_contract(w)
    # ../shared/README.md: about 37% of blocks repeat.
    assert workload_stats(w)["prefix_block_reuse"] == pytest.approx(0.37, abs=0.01)


def test_mooncake_fast_and_row_by_row_readers_agree_on_the_real_trace():
    from simcluster.workload.traces import _Lines, _mooncake_rows

    path = needs_shared(MOONCAKE)
    lines = _Lines(path, path.read_bytes())
    arrival, inputs, outputs, hashes = _mooncake_rows(lines, lines.nonblank(whitespace_is_blank=True))
    w = read_trace(path)
    assert np.array_equal(arrival, w.arrival_s) and np.array_equal(inputs, w.input_tokens)
    assert np.array_equal(outputs, w.output_tokens)
    assert all(np.array_equal(a, b) for a, b in zip(hashes, w.hash_ids))


def test_length_table_reads_aligned_columns():
    path = needs_shared(SHAREGPT)
    table = read_length_table(path, ["num_prefill_tokens", "num_decode_tokens"])
    raw = pd.read_csv(path)
    assert np.array_equal(table["num_prefill_tokens"], raw["num_prefill_tokens"].to_numpy())
    assert np.array_equal(table["num_decode_tokens"], raw["num_decode_tokens"].to_numpy())


# --------------------------------------------------------------------------------------------
# The shipped samples


def test_samples_are_what_make_samples_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", TRACES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([str(tmp_path)])
    for name in ("sample_azure.csv", "sample_mooncake.jsonl", "sample_burstgpt.csv"):
        assert (tmp_path / name).read_bytes() == (TRACES / name).read_bytes(), f"{name} is stale: run traces/make_samples.py"


@pytest.mark.parametrize(
    "name, fmt", [("sample_azure.csv", "azure"), ("sample_mooncake.jsonl", "mooncake"), ("sample_burstgpt.csv", "burstgpt")]
)
def test_format_is_detected_from_content_not_name(tmp_path, name, fmt):
    renamed = tmp_path / "trace.txt"
    renamed.write_bytes((TRACES / name).read_bytes())
    assert detect_format(renamed) == fmt
    assert_contract(read_trace(renamed))


def test_burstgpt_excludes_failed_rows_and_says_how_many():
    path = TRACES / "sample_burstgpt.csv"
    raw = pd.read_csv(path)
    failed = int((raw["Response tokens"] == 0).sum())
    assert failed > 0, "the sample should contain failed rows"
    w = read_trace(path)
    assert len(w) == len(raw) - failed
    assert any(f"excluded {failed} of {len(raw)} rows" in note for note in w.notes)
    kept = raw[raw["Response tokens"] > 0]
    np.testing.assert_array_equal(w.arrival_s, (kept["Timestamp"] - raw["Timestamp"].iloc[0]).to_numpy(float))
    np.testing.assert_array_equal(w.output_tokens, kept["Response tokens"].to_numpy())
    assert_contract(w)


def test_azure_2024_timestamps_with_utc_offset_are_read(tmp_path):
    path = tmp_path / "azure2024.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.009930+00:00,100,10\n"
        "2024-05-10 00:00:01.5+00:00,200,20\n"
        "2024-05-10 02:00:02+02:00,300,30\n"  # 00:00:02 UTC
    )
    w = read_trace(path)
    np.testing.assert_allclose(w.arrival_s, [0.0, 1.49007, 1.99007], atol=1e-9)


def test_blank_lines_and_crlf_are_tolerated_and_line_numbers_stay_true(tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:17:03.9799600,5,6\r\n\r\n"
                     b"2023-11-16 18:17:04.0,7,8\r\n\r\n2023-11-16 18:17:05.0,x,8\r\n")
    with pytest.raises(UserError, match=r"crlf\.csv:6: ContextTokens 'x' is not a number"):
        read_trace(path)


# --------------------------------------------------------------------------------------------
# Every user error: the message names the file and the line

AZ_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZ_ROW = "2023-11-16 18:17:03.9799600,374,44\n"
MC_ROW = '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}\n'
BG_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


def error_of(tmp_path: Path, name: str, content: str | bytes, fmt: str | None = None) -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(UserError) as info:
        read_trace(path, fmt)
    return str(info.value)


@pytest.mark.parametrize(
    "name, content, location, words",
    [
        ("empty.csv", "", "empty.csv", "empty"),
        ("blank.jsonl", "\n\n  \n", "blank.jsonl", "empty"),
        ("header_only.csv", AZ_HEADER, "header_only.csv:1", "no requests"),
        ("unknown.csv", "a,b,c\n1,2,3\n", "unknown.csv:1", "supported formats"),
        ("nocol.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:17:03,5\n", "nocol.csv:1", "missing column 'GeneratedTokens'"),
        ("short.csv", AZ_HEADER + AZ_ROW + AZ_ROW + "2023-11-16 18:17:05.0,374\n", "short.csv:4", "found 2"),
        ("long.csv", AZ_HEADER + AZ_ROW + "2023-11-16 18:17:05.0,374,44,9\n", "long.csv:3", "found 4"),
        ("text.csv", AZ_HEADER + AZ_ROW + "2023-11-16 18:17:05.0,abc,44\n", "text.csv:3", "ContextTokens 'abc' is not a number"),
        ("empty_field.csv", AZ_HEADER + AZ_ROW + "2023-11-16 18:17:05.0,,44\n", "empty_field.csv:3", "not a number"),
        ("negative.csv", AZ_HEADER + AZ_ROW * 3 + "2023-11-16 18:17:05.0,374,-4\n", "negative.csv:5", "negative"),
        ("zero.csv", AZ_HEADER + "2023-11-16 18:17:05.0,0,44\n", "zero.csv:2", "zero"),
        ("fraction.csv", AZ_HEADER + AZ_ROW + "2023-11-16 18:17:05.0,374.5,44\n", "fraction.csv:3", "never rounded"),
        ("badtime.csv", AZ_HEADER + AZ_ROW + "16/11/2023 18:17,374,44\n", "badtime.csv:3", "not a datetime"),
        ("backwards.csv", AZ_HEADER + AZ_ROW + "2023-11-16 18:17:04.0,1,1\n2023-11-16 18:17:01.0,1,1\n", "backwards.csv:4",
         "earlier than '2023-11-16 18:17:04.0' on line 3"),
        ("binary.csv", b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023\x00,1,1\n", "binary.csv:2", "NUL"),
        ("latin1.csv", AZ_HEADER.encode() + b"2023-11-16 18:17:03.0,1,1\n\xe9,1,1\n", "latin1.csv:3", "UTF-8"),
        ("bg_time.csv", BG_HEADER + "5,ChatGPT,10,10,20,Conversation log\nsoon,ChatGPT,10,10,20,API log\n", "bg_time.csv:3",
         "not a number of seconds"),
        ("bg_back.csv", BG_HEADER + "5,ChatGPT,10,10,20,Conversation log\n4,GPT-4,10,10,20,API log\n", "bg_back.csv:3",
         "backwards"),
        ("bg_zero_request.csv", BG_HEADER + "5,ChatGPT,0,10,10,Conversation log\n", "bg_zero_request.csv:2", "Request tokens"),
        ("bg_all_failed.csv", BG_HEADER + "5,ChatGPT,3,0,3,Conversation log\n", "bg_all_failed.csv", "no requests left"),
        ("mc_json.jsonl", MC_ROW + '{"timestamp": 1, "input_length": 600\n', "mc_json.jsonl:2", "not a JSON object"),
        ("mc_array.jsonl", MC_ROW + "[1, 2, 3]\n", "mc_array.jsonl:2", "expected a JSON object"),
        ("mc_key.jsonl", MC_ROW + '{"timestamp": 1, "output_length": 5}\n', "mc_key.jsonl:2", "missing key 'input_length'"),
        ("mc_neg.jsonl", MC_ROW + MC_ROW.replace('"output_length": 5', '"output_length": -5'), "mc_neg.jsonl:2", "negative"),
        ("mc_zero.jsonl", MC_ROW * 2 + MC_ROW.replace('"input_length": 600', '"input_length": 0'), "mc_zero.jsonl:3", "zero"),
        ("mc_frac.jsonl", MC_ROW + MC_ROW.replace("600", "600.5"), "mc_frac.jsonl:2", "never rounded"),
        ("mc_str.jsonl", MC_ROW + MC_ROW.replace("600", '"600"'), "mc_str.jsonl:2", "must be a number of tokens"),
        ("mc_bool.jsonl", MC_ROW + MC_ROW.replace("600", "true"), "mc_bool.jsonl:2", "must be a number of tokens"),
        ("mc_time.jsonl", MC_ROW + MC_ROW.replace('"timestamp": 0', '"timestamp": "noon"'), "mc_time.jsonl:2", "milliseconds"),
        ("mc_nan.jsonl", MC_ROW + MC_ROW.replace('"timestamp": 0', '"timestamp": NaN'), "mc_nan.jsonl:2", "not a JSON"),
        ("mc_back.jsonl", MC_ROW.replace('"timestamp": 0', '"timestamp": 9') + MC_ROW, "mc_back.jsonl:2",
         "earlier than 9 ms on line 1"),
        ("mc_hash.jsonl", MC_ROW + MC_ROW.replace("[1, 2]", '"1,2"'), "mc_hash.jsonl:2", "hash_ids must be a list"),
        ("mc_hash_item.jsonl", MC_ROW + MC_ROW.replace("[1, 2]", '[1, 2.5]'), "mc_hash_item.jsonl:2", "hash_ids[1]"),
        ("mc_hash_some.jsonl", MC_ROW + '{"timestamp": 1, "input_length": 6, "output_length": 5}\n', "mc_hash_some.jsonl:2",
         "hash_ids is missing"),
    ],
)
def test_each_bad_file_is_a_user_error_naming_file_and_line(tmp_path, name, content, location, words):
    message = error_of(tmp_path, name, content)
    assert f"{location}:" in message, message
    assert words in message, message


def test_missing_file_and_directory_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="nope.csv: no such file"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(UserError, match="is a directory"):
        read_trace(tmp_path)
    for fmt in ("azure", "mooncake", "burstgpt", "parquet"):
        with pytest.raises(UserError, match="no such file"):
            read_trace(tmp_path / "nope", fmt)


def test_explicit_format_must_match_the_content(tmp_path):
    path = tmp_path / "really_azure.csv"
    path.write_text(AZ_HEADER + AZ_ROW)
    assert "missing column 'Timestamp'" in error_of(tmp_path, "really_azure.csv", AZ_HEADER + AZ_ROW, "burstgpt")
    assert "really_azure.csv:1:" in error_of(tmp_path, "really_azure.csv", AZ_HEADER + AZ_ROW, "mooncake")
    with pytest.raises(UserError, match="not a readable parquet"):
        read_trace(path, "parquet")
    with pytest.raises(UserError, match="supported formats"):
        read_trace(path, "csv")


def _parquet(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_errors_name_the_row(tmp_path):
    ok = dict(arrival_s=[0.0, 1.0, 2.0], input_tokens=[1, 2, 3], output_tokens=[1, 1, 1])
    cases = [
        ({**ok, "arrival_s": [0.0, 2.0, 1.0]}, "row 3: arrival_s 1.0 is earlier"),
        ({**ok, "output_tokens": [1, 0, 1]}, "row 2: output_tokens '0' is zero"),
        ({**ok, "input_tokens": [1, 2, -7]}, "row 3: input_tokens '-7' is negative"),
        ({**ok, "input_tokens": [1.0, 2.5, 3.0]}, "column 'input_tokens' has type double"),
        ({**ok, "arrival_s": pa.array([0.0, None, 2.0])}, "row 2: arrival_s is missing"),
        ({k: v for k, v in ok.items() if k != "output_tokens"}, "missing column 'output_tokens'"),
        ({**ok, "hash_ids": pa.array([[1], None, [2]], pa.list_(pa.int64()))}, "row 2: hash_ids is missing"),
        ({**ok, "hash_ids": pa.array(["a", "b", "c"])}, "column 'hash_ids' has type string"),
    ]
    for i, (columns, words) in enumerate(cases):
        path = _parquet(tmp_path / f"bad{i}.parquet", **columns)
        with pytest.raises(UserError) as info:
            read_trace(path)
        assert f"bad{i}.parquet" in str(info.value) and words in str(info.value), str(info.value)


def test_parquet_from_a_newer_simcluster_is_refused(tmp_path):
    table = pa.table(dict(arrival_s=[0.0], input_tokens=[1], output_tokens=[1]))
    table = table.replace_schema_metadata({b"simcluster.trace": json.dumps({"schema_version": 99}).encode()})
    pq.write_table(table, tmp_path / "future.parquet")
    with pytest.raises(UserError, match="newer"):
        read_trace(tmp_path / "future.parquet")


def test_length_table_errors_name_file_and_line(tmp_path):
    path = tmp_path / "lengths.csv"
    path.write_text("num_prefill_tokens,num_decode_tokens\n10,20\n30,0\n")
    with pytest.raises(UserError, match=r"lengths\.csv:3: num_decode_tokens '0' is zero"):
        read_length_table(path, ["num_prefill_tokens", "num_decode_tokens"])
    with pytest.raises(UserError, match=r"lengths\.csv:1: missing column 'tokens'"):
        read_length_table(path, ["tokens"])


# --------------------------------------------------------------------------------------------
# Writers


def workload_with_hashes() -> Workload:
    rng = np.random.default_rng(7)
    n = 50
    inputs = rng.integers(1, 5000, n)
    return Workload(
        arrival_s=np.cumsum(rng.exponential(0.3, n)) - 0.0,
        input_tokens=inputs,
        output_tokens=rng.integers(1, 900, n),
        hash_ids=[rng.integers(0, 40, math.ceil(k / 512)) for k in inputs],
        source="test",
        notes=("made by a test",),
    )


@pytest.mark.parametrize("fmt, name", [("parquet", "w.parquet"), ("mooncake", "w.jsonl")])
def test_parquet_and_mooncake_round_trip_exactly(tmp_path, fmt, name):
    w = workload_with_hashes()
    write_trace(w, tmp_path / name, fmt)
    back = read_trace(tmp_path / name)
    assert same_workload(w, back)
    assert back.hash_block_tokens == 512


def test_parquet_keeps_notes_block_size_and_schema(tmp_path):
    w = workload_with_hashes()
    w.hash_block_tokens = 64
    write_trace(w, tmp_path / "w.parquet", "parquet")
    table = pq.read_table(tmp_path / "w.parquet")
    assert table.schema.field("arrival_s").type == pa.float64()
    assert table.schema.field("input_tokens").type == pa.int64()
    assert table.schema.field("hash_ids").type == pa.list_(pa.int64())
    meta = json.loads(table.schema.metadata[b"simcluster.trace"])
    assert meta["schema_version"] == 1
    back = read_trace(tmp_path / "w.parquet")
    assert back.hash_block_tokens == 64 and back.notes == ("made by a test",)
    with pytest.raises(UserError, match="512-token blocks"):
        write_trace(w, tmp_path / "w.jsonl", "mooncake")


def test_azure_writer_keeps_times_to_100ns(tmp_path):
    w = workload_with_hashes()
    w.arrival_s -= w.arrival_s[0]
    warnings = write_trace(w, tmp_path / "w.csv", "azure")
    assert any("hash ids" in x for x in warnings)
    back = read_trace(tmp_path / "w.csv")
    np.testing.assert_allclose(back.arrival_s, w.arrival_s, rtol=0, atol=1e-7)
    assert np.array_equal(back.input_tokens, w.input_tokens) and back.hash_ids is None


def test_real_mooncake_trace_converts_back_byte_for_byte(tmp_path):
    path = needs_shared(MOONCAKE)
    write_trace(read_trace(path), tmp_path / "m.parquet", "parquet")
    write_trace(read_trace(tmp_path / "m.parquet"), tmp_path / "m.jsonl", "mooncake")
    assert (tmp_path / "m.jsonl").read_bytes() == path.read_bytes()


def test_writing_to_a_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="output folder does not exist"):
        write_trace(workload_with_hashes(), tmp_path / "no" / "w.parquet", "parquet")


# --------------------------------------------------------------------------------------------
# Transformations


def test_scale_rate_divides_times_and_keeps_every_request():
    w = read_trace(TRACES / "sample_azure.csv")
    for factor in (0.5, 2.0, 3.7):
        fast = scale_rate(w, factor)
        assert len(fast) == len(w)
        np.testing.assert_allclose(fast.arrival_s * factor, w.arrival_s, rtol=1e-15)
        assert workload_stats(fast)["rate_per_s"] == pytest.approx(factor * workload_stats(w)["rate_per_s"], rel=1e-12)
        assert np.array_equal(fast.input_tokens, w.input_tokens)
    with pytest.raises(UserError, match="rate_scale"):
        scale_rate(w, 0)


def test_time_windows_partition_the_trace():
    w = read_trace(TRACES / "sample_mooncake.jsonl")
    edges = [0.0, 10.0, 25.5, 60.0, math.inf]
    parts = [time_window(w, a, None if math.isinf(b) else b) for a, b in zip(edges, edges[1:])]
    assert sum(len(p) for p in parts) == len(w), "every request falls in exactly one window"
    for (start, end), part in zip(zip(edges, edges[1:]), parts):
        assert np.all(part.arrival_s >= 0) and np.all(part.arrival_s < end - start)
        expected = (w.arrival_s >= start) & (w.arrival_s < end)
        np.testing.assert_array_equal(part.arrival_s + start, w.arrival_s[expected])
        assert all(np.array_equal(a, b) for a, b in zip(part.hash_ids, np.array(w.hash_ids, dtype=object)[expected]))
    with pytest.raises(UserError, match="window"):
        time_window(w, 5, 5)


def test_head_and_slice_keep_request_order():
    w = read_trace(TRACES / "sample_azure.csv")
    first = head(w, 10)
    assert len(first) == 10 and np.array_equal(first.input_tokens, w.input_tokens[:10])
    assert head(w, 10_000) is w
    assert np.array_equal(w.slice(5, 8).output_tokens, w.output_tokens[5:8])


# --------------------------------------------------------------------------------------------
# The scenario's workload section


def test_trace_spec_resolves_paths_against_the_scenario_folder_and_applies_window_scale_limit():
    spec = parse_workload_spec(
        {"kind": "trace", "path": "sample_mooncake.jsonl", "window_s": [10, 80], "rate_scale": 2, "max_requests": 50}
    )
    w = build_workload(spec, np.random.default_rng(0), TRACES)
    full = read_trace(TRACES / "sample_mooncake.jsonl")
    in_window = full.arrival_s[(full.arrival_s >= 10) & (full.arrival_s < 80)]
    assert len(w) == min(50, len(in_window))
    np.testing.assert_allclose(w.arrival_s, (in_window[: len(w)] - 10) / 2)
    assert len(w.notes) == 3


@pytest.mark.parametrize(
    "data, where",
    [
        ({"kind": "trace", "path": "x", "bogus": 1}, "workload.bogus"),
        ({"kind": "trace", "path": "x", "format": "csv"}, "workload.format"),
        ({"kind": "trace", "path": "x", "window_s": [5, 1]}, "workload.window_s"),
        ({"kind": "trace", "path": "x", "rate_scale": 0}, "workload.rate_scale"),
        ({"kind": "replay", "path": "x"}, "workload.kind"),
        ({"kind": "synthetic", "num_requests": 3, "arrival": {"process": "poisson"}, "input_tokens": {"dist": "fixed", "value": 1},
          "output_tokens": {"dist": "fixed", "value": 1}}, "workload.arrival.rate_per_s"),
        ({"kind": "synthetic", "num_requests": 3, "arrival": {"process": "gamma", "rate_per_s": 1, "cv": 1, "burst": 2},
          "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}}, "workload.arrival.burst"),
        ({"kind": "synthetic", "num_requests": 3, "arrival": {"process": "poisson", "rate_per_s": 1},
          "input_tokens": {"dist": "normal", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}}, "workload.input_tokens.dist"),
        ({"kind": "synthetic", "num_requests": 3, "arrival": {"process": "poisson", "rate_per_s": 1},
          "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "uniform", "low": 0, "high": 3}},
         "workload.output_tokens.low"),
    ],
)
def test_spec_errors_name_the_field(data, where):
    with pytest.raises(UserError) as info:
        parse_workload_spec(data)
    assert str(info.value).startswith(where + ":"), str(info.value)


def test_trace_spec_errors_from_the_file_name_the_file(tmp_path):
    (tmp_path / "t.csv").write_text(AZ_HEADER + "2023-11-16 18:17:05.0,1,zero\n")
    with pytest.raises(UserError, match=r"t\.csv:2:"):
        build_workload({"kind": "trace", "path": "t.csv"}, np.random.default_rng(0), tmp_path)
    with pytest.raises(UserError, match="window_s"):
        build_workload({"kind": "trace", "path": str(TRACES / "sample_azure.csv"), "window_s": [1e6, None]},
                       np.random.default_rng(0), tmp_path)


# --------------------------------------------------------------------------------------------
# simcluster trace


def test_trace_stats_reports_what_pandas_computes(capsys):
    path = TRACES / "sample_azure.csv"
    assert main(["trace", "stats", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    raw = pd.read_csv(path)
    seconds = (pd.to_datetime(raw["TIMESTAMP"]) - pd.to_datetime(raw["TIMESTAMP"]).iloc[0]).dt.total_seconds()
    assert stats["requests"] == len(raw)
    assert stats["duration_s"] == pytest.approx(seconds.iloc[-1], abs=1e-6)
    assert stats["rate_per_s"] == pytest.approx((len(raw) - 1) / seconds.iloc[-1], rel=1e-9)
    for side, column in (("input_tokens", "ContextTokens"), ("output_tokens", "GeneratedTokens")):
        assert stats[side]["mean"] == pytest.approx(raw[column].mean())
        assert stats[side]["p50"] == pytest.approx(raw[column].quantile(0.5))
        assert stats[side]["p99"] == pytest.approx(raw[column].quantile(0.99))
        assert stats[side]["max"] == raw[column].max()
    assert stats["prefix_block_reuse"] is None


def test_trace_stats_text_shows_prefix_reuse(capsys):
    path = TRACES / "sample_mooncake.jsonl"
    assert main(["trace", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    w = read_trace(path)
    blocks = np.concatenate(w.hash_ids)
    assert f"prefix_block_reuse {1 - len(np.unique(blocks)) / len(blocks):.3f}" in out
    assert "requests         200" in out


def test_trace_command_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text(AZ_HEADER + "2023-11-16 18:17:05.0,1\n")
    assert main(["trace", "stats", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:2:" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["trace", "convert", str(bad), "-o", str(tmp_path / "x.unknown")]) == 2


def test_trace_convert_between_formats(tmp_path, capsys):
    src = TRACES / "sample_mooncake.jsonl"
    assert main(["trace", "convert", str(src), "-o", str(tmp_path / "m.parquet")]) == 0
    assert main(["trace", "convert", str(tmp_path / "m.parquet"), "-o", str(tmp_path / "m.jsonl")]) == 0
    assert (tmp_path / "m.jsonl").read_bytes() == src.read_bytes()
    assert main(["trace", "convert", str(src), "-o", str(tmp_path / "m.out"), "--format", "azure"]) == 0
    assert "no hash ids" in capsys.readouterr().err
    assert np.array_equal(read_trace(tmp_path / "m.out").input_tokens, read_trace(src).input_tokens)
