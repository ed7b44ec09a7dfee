"""`simcluster validate silicon`: reading the silicon_sample format, mapping rows, user errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from simcluster.cli.main import main
from simcluster.errors import UserError
from simcluster.validate.fit import is_train, split_rows
from simcluster.validate.mapping import Setup, Unsupported, map_row
from simcluster.validate.silicon import ep_squared_encoding, parse_row, read_silicon_csv

from conftest import shared_path

HEADER = ("id,silicon_data_source,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,"
          "moe_quant_mode,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,prefill_batch_size,"
          "prefill_num_workers,prefill_tp_size,prefill_pp_size,prefill_attention_dp_size,prefill_moe_tp_size,"
          "prefill_moe_ep_size,decode_batch_size,decode_num_workers,decode_tp_size,decode_pp_size,"
          "decode_attention_dp_size,decode_moe_tp_size,decode_moe_ep_size,silicon_ttft_ms,silicon_tpot_ms")


def _agg(**kw) -> dict:
    rec = dict.fromkeys(HEADER.split(","), "")
    rec.update(id="r", backend="vllm", model_path="meta-llama/Llama-3.1-8B-Instruct", system="h100_sxm",
               precision="fp8", mode="agg", isl="1024", osl="128", gemm_quant_mode="fp8", batch_size="8",
               tp_size="1", pp_size="1", attention_dp_size="1", moe_tp_size="1", moe_ep_size="1",
               silicon_ttft_ms="50.0", silicon_tpot_ms="8.0")
    rec.update({k: str(v) for k, v in kw.items()})
    return rec


def _write(path: Path, recs: list[dict], header: str = HEADER) -> Path:
    cols = header.split(",")
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in recs:
            w.writerow(r)
    return path


def test_the_dev_file_parses_and_nine_in_ten_rows_map_to_a_deployment():
    rows, cols = read_silicon_csv(shared_path("validation", "silicon_sample_dev.csv"))
    assert len(rows) == 2758
    assert {"silicon_ttft_ms", "silicon_tpot_ms"} <= set(cols)
    mapped = [map_row(r) for r in rows]
    ok = sum(isinstance(m, Setup) for m in mapped)
    assert ok / len(rows) >= 0.9, f"only {ok}/{len(rows)} rows map to a deployment"
    # every unmapped row says why
    assert all(m.reason for m in mapped if isinstance(m, Unsupported))


def test_concurrency_is_the_batch_per_attention_dp_rank_times_the_ranks():
    r = parse_row(_agg(model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp4",
                       gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4", batch_size=16, tp_size=1,
                       attention_dp_size=8, moe_tp_size=1, moe_ep_size=8), 2, "f.csv")
    s = map_row(r)
    assert isinstance(s, Setup)
    assert s.concurrency == 128
    assert s.pools["colocated"].layout.startswith("tp=1,dp=8,ep=8")


def test_the_exports_product_encoding_of_tp_and_ep_is_undone():
    # tp_size 64 with moe 8x8 on an 8-GPU HGX node: the export multiplied TP and EP (ids say tp8_ep8)
    r = parse_row(_agg(model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp4",
                       gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4", tp_size=64, attention_dp_size=1,
                       moe_tp_size=8, moe_ep_size=8), 2, "f.csv")
    s = map_row(r)
    assert isinstance(s, Setup)
    assert s.pools["colocated"].layout == "tp=8,ep=8,tpf=1,pp=1"
    assert any("encoding" in n for n in s.notes)


def test_the_exports_square_encoding_of_vllm_expert_parallel_is_undone():
    # vLLM `--tensor-parallel-size 4 --enable-expert-parallel` (4 GPUs, EP 4) is exported as
    # tp = attention_dp = 4, moe_ep = 16; the batch column is per attention rank, so 64 x 4 = 256 clients,
    # the silicon_concurrency the source names
    src = "db-dump/2026-04-27; config_id=691; silicon_concurrency=256; measured=2026-04-22T00:00:00.000Z"
    kw = dict(model_path="MiniMaxAI/MiniMax-M2.5", system="b200_sxm", precision="fp8", gemm_quant_mode="fp8",
              moe_quant_mode="fp8", batch_size=64, tp_size=4, attention_dp_size=4, moe_tp_size=1, moe_ep_size=16,
              silicon_data_source=src)
    r = parse_row(_agg(**kw), 2, "f.csv")
    assert ep_squared_encoding(r.agg) == 4
    s = map_row(r)
    assert isinstance(s, Setup)
    assert s.pools["colocated"].layout == "tp=4,ep=4,tpf=1,pp=1"
    assert s.concurrency == 256 == r.concurrency_hint
    assert any("encoding" in n for n in s.notes)
    # near misses are not the encoding: EP not the square, no attention DP, expert TP present
    for change in ({"moe_ep_size": 8}, {"attention_dp_size": 1}, {"moe_tp_size": 2}):
        assert ep_squared_encoding(parse_row(_agg(**{**kw, **change}), 2, "f.csv").agg) == 0


def test_every_square_encoded_row_of_the_dev_file_runs_on_k_gpus_with_its_measured_concurrency():
    rows, _ = read_silicon_csv(shared_path("validation", "silicon_sample_dev.csv"))
    hits = [r for r in rows if r.mode == "agg" and ep_squared_encoding(r.agg)]
    assert hits, "the dev file has rows in the square encoding"
    for r in hits:
        k = ep_squared_encoding(r.agg)
        s = map_row(r)
        assert isinstance(s, Setup), r.id
        assert s.concurrency == r.concurrency_hint or not r.concurrency_hint, r.id  # batch x k: the clients
        layout = s.pools["colocated"].layout
        assert layout in (f"tp={k},ep={k},tpf=1,pp=1", f"dp={k},ep={k},tpf=1,pp=1"), (r.id, layout)


def test_block_scaled_fp8_checkpoints_price_with_the_block_tables():
    r = parse_row(_agg(model_path="Qwen/Qwen3-235B-A22B-FP8", system="h200_sxm", tp_size=4, moe_tp_size=4,
                       moe_quant_mode="fp8"), 2, "f.csv")
    assert map_row(r).weights == "fp8_block"
    r = parse_row(_agg(model_path="nvidia/Llama-3.1-8B-Instruct-FP8"), 2, "f.csv")
    s = map_row(r)
    assert s.weights == "fp8" and s.kv_cache == "fp8"  # ModelOpt checkpoints: per-tensor, FP8 KV


def test_an_unknown_model_is_a_reason_not_an_error():
    r = parse_row(_agg(model_path="acme/NotAModel-7B"), 2, "f.csv")
    m = map_row(r)
    assert isinstance(m, Unsupported) and "unknown model" in m.reason


def test_the_split_keeps_every_point_of_a_configuration_together():
    a = parse_row(_agg(batch_size=8, isl=1024), 2, "f.csv")
    b = parse_row(_agg(batch_size=64, isl=8192, osl=1024), 3, "f.csv")
    assert is_train(a) == is_train(b)
    rows, _ = read_silicon_csv(shared_path("validation", "silicon_sample_dev.csv"))
    train, test = split_rows(rows)
    assert 0.35 < len(train) / len(rows) < 0.65


# ----------------------------------------------------------------------------- user errors (exit 2)
def test_a_missing_file_exits_2_naming_it(tmp_path, capsys):
    assert main(["validate", "silicon", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_a_missing_column_exits_2_naming_it(tmp_path, capsys):
    f = _write(tmp_path / "m.csv", [_agg()], header=HEADER.replace(",osl,", ","))
    assert main(["validate", "silicon", str(f)]) == 2
    err = capsys.readouterr().err
    assert "osl" in err and "m.csv" in err


@pytest.mark.parametrize("field,value,needle", [("isl", "ten", "isl"), ("mode", "hybrid", "mode"),
                                                 ("batch_size", "-3", "batch_size"),
                                                 ("silicon_ttft_ms", "fast", "silicon_ttft_ms")])
def test_a_malformed_row_exits_2_naming_the_line(tmp_path, capsys, field, value, needle):
    f = _write(tmp_path / "bad.csv", [_agg(), _agg(**{field: value})])
    assert main(["validate", "silicon", str(f)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:3" in err and needle in err
    assert "Traceback" not in err


def test_reader_errors_are_user_errors(tmp_path):
    f = tmp_path / "empty.csv"
    f.write_text("")
    with pytest.raises(UserError):
        read_silicon_csv(f)


def test_a_small_file_validates_end_to_end_with_predictions_and_json(tmp_path, capsys):
    f = _write(tmp_path / "s.csv", [_agg(id="a", batch_size=4, osl=64),
                                    _agg(id="b", model_path="acme/NotAModel-7B")])
    out = tmp_path / "pred.csv"
    assert main(["validate", "silicon", str(f), "-o", str(out), "--json", "--workers", "1"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["overall"]["rows"] == 2 and rep["overall"]["simulated"] == 1
    assert any("unknown model" in k for k in rep["not_simulated"])
    with out.open() as fh:
        pred = list(csv.DictReader(fh))
    assert pred[0]["status"] == "simulated" and float(pred[0]["predicted_ttft_ms"]) > 0
    assert float(pred[0]["predicted_tpot_ms"]) > 0
    assert pred[1]["status"] == "not_simulated" and "unknown model" in pred[1]["reason"]


def test_the_report_groups_rows_by_harness_and_concurrency_band_and_each_grouping_covers_every_row(tmp_path, capsys):
    recs = [_agg(id="a", batch_size=4, osl=32),
            _agg(id="b", batch_size=5, osl=32, silicon_data_source="db-dump/2026-04-27; config_id=1"),
            _agg(id="c", batch_size=300, osl=16),
            _agg(id="d", model_path="acme/NotAModel-7B", batch_size=64)]
    f = _write(tmp_path / "s.csv", recs)
    assert main(["validate", "silicon", str(f), "--json", "--workers", "1"]) == 0
    rep = json.loads(capsys.readouterr().out)
    # band edges are inclusive at 4, 16, 64, 256; the unmapped row keeps its band from the batch column
    assert list(rep["by_concurrency"]) == ["1-4", "5-16", "17-64", "257+"]
    assert {k: v["rows"] for k, v in rep["by_concurrency"].items()} == {"1-4": 1, "5-16": 1, "17-64": 1, "257+": 1}
    assert rep["by_concurrency"]["17-64"]["simulated"] == 0
    assert rep["by_harness"]["inferencex"]["rows"] == 1 and rep["by_harness"]["unknown"]["rows"] == 3
    for group in ("system", "backend", "model", "mode", "harness", "concurrency"):
        entries = rep[f"by_{group}"].values()
        assert sum(e["rows"] for e in entries) == rep["overall"]["rows"], group
        assert sum(e["simulated"] for e in entries) == rep["overall"]["simulated"], group
    assert main(["validate", "silicon", str(f), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "by concurrency" in text and text.index("\n5-16 ") < text.index("\n17-64 ") < text.index("\n257+ ")


def test_a_rows_timeline_is_its_closed_loop_and_its_weighted_means_are_the_prediction(tmp_path, capsys):
    from simcluster.validate.simulate import Simulator

    f = _write(tmp_path / "s.csv", [_agg(id="a", batch_size=6, isl=512, osl=24),
                                    _agg(id="b", batch_size=3, osl=8)])
    assert main(["validate", "silicon", str(f), "--timeline", "2"]) == 0
    cap = capsys.readouterr()
    reqs = list(csv.DictReader(cap.out.splitlines()))
    sim = Simulator()
    rows, _ = read_silicon_csv(f)
    setup = map_row(rows[0])
    assert len(reqs) == sim.n_requests(6) and all(r["status"] == "completed" for r in reqs)
    arrival = sorted(float(r["arrival_s"]) for r in reqs)
    finish = sorted(float(r["finish_s"]) for r in reqs)
    # closed loop of 6 clients: 6 requests at t = 0, every later one sent when an earlier one finished
    assert arrival[:6] == [0.0] * 6
    assert arrival[6:] == pytest.approx(finish[:len(reqs) - 6], abs=1e-5)
    assert {r["part"] for r in reqs[:6]} == {"start-up"} and "steady" in {r["part"] for r in reqs}
    assert all(int(r["input_tokens"]) == 512 and int(r["output_tokens"]) == 24 for r in reqs)
    pred = sim.run(setup)
    w = [float(r["weight"]) for r in reqs]
    ttft = sum(wi * float(r["ttft_ms"]) for wi, r in zip(w, reqs)) / sum(w)
    tpot = sum(wi * float(r["tpot_ms"]) for wi, r in zip(w, reqs)) / sum(w)
    assert ttft == pytest.approx(pred.ttft_ms, rel=1e-5) and tpot == pytest.approx(pred.tpot_ms, rel=1e-5)
    # the benchmark's weights: start-up wave 1 each, the steady state 8 C and the drain C in total
    parts = {p: sum(wi for wi, r in zip(w, reqs) if r["part"] == p) for p in ("start-up", "steady", "drain")}
    assert parts == pytest.approx({"start-up": 6, "steady": 8 * 6, "drain": 6})
    assert f"{f}:2:" in cap.err and "measured 50.0 / 8.00 ms" in cap.err


def test_a_timeline_of_a_missing_or_unmapped_line_exits_2_naming_it(tmp_path, capsys):
    f = _write(tmp_path / "s.csv", [_agg(id="a"), _agg(id="b", model_path="acme/NotAModel-7B")])
    assert main(["validate", "silicon", str(f), "--timeline", "9"]) == 2
    err = capsys.readouterr().err
    assert "no row on line 9" in err and "Traceback" not in err
    assert main(["validate", "silicon", str(f), "--timeline", "3"]) == 2
    err = capsys.readouterr().err
    assert f"{f}:3: not simulated" in err and "unknown model" in err
