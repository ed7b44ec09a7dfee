"""Every request of a workload leaves exactly once, with a terminal status, at causal times."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from simcluster.config.scenario import Scenario
from simcluster.sim.runner import build_workload
from simhelp import SMALL_DISAGG, CONSTANT_COLOCATED, merged, run

TERMINAL = {"completed", "rejected", "failed", "unfinished"}


def _check_conservation(data, req, tmp_path):
    sc = Scenario.model_validate(data)
    w = build_workload(sc, tmp_path)
    assert len(req) == len(w), "one row per request of the workload"
    assert sorted(req.request_id) == list(range(len(w))), "each request exactly once"
    assert set(req.status) <= TERMINAL
    req = req.sort_values("request_id")
    assert np.array_equal(req.input_tokens.to_numpy(), w.input_tokens)
    assert np.array_equal(req.output_tokens.to_numpy(), w.output_tokens)
    assert np.allclose(req.arrival_s.to_numpy(), w.arrival_s)
    done = req[req.status == "completed"]
    eps = 1e-9
    assert (done.arrival_s <= done.prefill_start_s + eps).all()
    assert (done.prefill_start_s <= done.first_token_s + eps).all()
    assert (done.first_token_s <= done.finish_s + eps).all()
    assert np.allclose(done.e2e_s, done.finish_s - done.arrival_s)
    assert np.allclose(done.ttft_s, done.first_token_s - done.arrival_s)
    return req


@pytest.mark.parametrize("first_token_at", ["prefill_end", "kv_landed", "first_decode_step"])
def test_disaggregated_run_conserves_requests_and_is_causal(tmp_path, first_token_at):
    data = merged(SMALL_DISAGG, serving={**SMALL_DISAGG.get("serving", {}), "first_token_at": first_token_at})
    summary, req, _ = run(tmp_path, data)
    req = _check_conservation(data, req, tmp_path)
    done = req[req.status == "completed"]
    assert len(done) == len(req), "an underloaded cluster completes everything"
    multi = done[done.output_tokens > 1]
    # the KV leaves the prefill instance after its prefill, lands before decode; the client's first
    # token is where the mode says it is
    if first_token_at == "prefill_end":
        assert (multi.first_token_s <= multi.kv_transfer_start_s + 1e-9).all()
    elif first_token_at == "kv_landed":
        assert np.array_equal(multi.first_token_s, multi.kv_transfer_end_s)
    else:  # one decode step after the KV landed: strictly later, and before the finish
        assert (multi.first_token_s > multi.kv_transfer_end_s).all()
        two = multi[multi.output_tokens == 2]
        assert (two.first_token_s < two.finish_s).all()
    assert (multi.prefill_start_s < multi.kv_transfer_start_s).all()
    assert (multi.kv_transfer_start_s < multi.kv_transfer_end_s).all()
    assert (multi.kv_transfer_end_s <= multi.finish_s).all()
    assert multi.decode_instance.str.startswith("decode-").all()
    assert summary["requests"]["completed"] == len(done)


def test_overload_rejects_instead_of_exploding_and_loses_nothing(tmp_path):
    data = merged(CONSTANT_COLOCATED, workload={"num_requests": 3000,
                                                "arrival": {"process": "poisson", "rate_per_s": 500.0}},
                  pools={"colocated": {**CONSTANT_COLOCATED["pools"]["colocated"], "max_queue": 20}})
    summary, req, _ = run(tmp_path, data)
    req = _check_conservation(data, req, tmp_path)
    rejected = req[req.status == "rejected"]
    assert len(rejected) > 0 and set(rejected.reason) == {"queue_full"}
    done = req[req.status == "completed"]
    # a bounded queue bounds the wait: at most max_queue requests ahead, each one step of 10 ms
    assert done.queue_s.max() <= 21 * 0.01 + 1e-9
    assert summary["requests"]["by_status"]["rejected"] == len(rejected)


def test_time_limit_ends_in_flight_requests_as_unfinished(tmp_path):
    data = merged(SMALL_DISAGG, run={"max_sim_time_s": 20.0})
    summary, req, _ = run(tmp_path, data)
    req = _check_conservation(data, req, tmp_path)
    unf = req[req.status == "unfinished"]
    assert len(unf) > 0
    assert set(unf.reason) <= {"time_limit", "arrives_after_time_limit"}
    assert (req[req.status == "completed"].finish_s <= 20.0).all()


def test_requests_longer_than_the_kv_cache_are_rejected_by_name(tmp_path):
    data = merged(CONSTANT_COLOCATED, serving={"kv_capacity_tokens": 1000},
                  workload={"num_requests": 50, "input_tokens": {"dist": "uniform", "low": 500, "high": 1500}})
    summary, req, _ = run(tmp_path, data)
    req = _check_conservation(data, req, tmp_path)
    # 1000 tokens of capacity are 62 whole blocks of 16; a request's KV peaks at in + out - 1 tokens
    too_long = -(-(req.input_tokens + req.output_tokens - 1) // 16) > 1000 // 16
    assert (req[too_long].status == "rejected").all()
    assert (req[too_long].reason == "too_long_for_kv_cache").all()
    assert (req[~too_long].status == "completed").all()


def _digest(folder):
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest()
            for f in ("requests.parquet", "steps.parquet", "timeline.parquet")}


def test_same_scenario_and_seed_give_byte_identical_outputs(tmp_path):
    _, _, a = run(tmp_path, SMALL_DISAGG, "a")
    _, _, b = run(tmp_path, SMALL_DISAGG, "b")
    assert _digest(a) == _digest(b)
    _, _, c = run(tmp_path, merged(SMALL_DISAGG, seed=1), "c")
    assert _digest(a)["requests.parquet"] != _digest(c)["requests.parquet"], "the seed matters"


def test_outputs_carry_schema_version_and_resolved_scenario(tmp_path):
    import json

    import pyarrow.parquet as pq

    from simcluster.results.schemas import SCHEMA_VERSION

    _, _, out = run(tmp_path, SMALL_DISAGG)
    for f in ("requests.parquet", "steps.parquet", "timeline.parquet"):
        meta = pq.read_schema(out / f).metadata
        assert meta[b"simcluster.schema_version"] == SCHEMA_VERSION.encode()
        sc = json.loads(meta[b"simcluster.scenario"])
        # resolved: defaults are filled in, not only what the user wrote
        assert sc["serving"]["block_size"] == 16
        assert sc["pools"]["decode"]["max_num_seqs"] == 256


def test_summary_agrees_with_the_request_records(tmp_path):
    summary, req, _ = run(tmp_path, merged(SMALL_DISAGG, slo={"ttft_s": 0.3, "tpot_s": 0.016}))
    done = req[req.status == "completed"]
    duration = done.finish_s.max() - req.arrival_s.min()
    assert summary["duration_s"] == pytest.approx(duration)
    assert summary["ttft_s"]["p90"] == pytest.approx(np.percentile(done.ttft_s, 90))
    assert summary["tpot_s"]["mean"] == pytest.approx(done.tpot_s.mean())
    assert summary["e2e_s"]["p99"] == pytest.approx(np.percentile(done.e2e_s, 99))
    assert summary["throughput"]["output_tokens_per_s"] == pytest.approx(done.output_tokens.sum() / duration)
    meets = (done.ttft_s <= 0.3) & ~(done.tpot_s > 0.016)
    assert 0 < meets.sum() < len(done), "the SLOs should split the requests for this check to mean something"
    assert summary["slo"]["attainment"] == pytest.approx(meets.sum() / len(req))
    # ITL: the histogram's mean is exact, its percentiles within half a bin (±0.6 %)
    gaps_weighted_mean = summary["itl_s"]["mean"]
    assert summary["itl_s"]["p50"] == pytest.approx(np.median(done.tpot_s), rel=0.15)
    assert gaps_weighted_mean == pytest.approx(
        ((done.finish_s - done.first_token_s).sum()) / (done.output_tokens - 1).sum(), rel=1e-6)
