"""Failures: every request accounted for, goodput drops and recovers, runs with faults never crash."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from simcluster.config.scenario import Scenario
from simcluster.errors import UserError
from simcluster.sim.runner import run_scenario

from simhelp import merged

TERMINAL = {"completed", "rejected", "failed", "unfinished"}

# 4 prefill + 4 decode instances of TP2 fill nodes 0 (prefill) and 1 (decode); node 2 is spare
BASE = {
    "name": "faults",
    "cluster": {"gpu": "h200_sxm", "nodes": 3},
    "model": {"name": "llama-3.1-70b", "weights": "fp8", "kv_cache": "fp8"},
    "serving": {"mode": "disaggregated"},
    "pools": {"prefill": {"instances": 4, "layout": "tp=2"}, "decode": {"instances": 4, "layout": "tp=2"}},
    "cost": {"source": "roofline"},
    "workload": {"kind": "synthetic", "num_requests": 6000, "arrival": {"process": "poisson", "rate_per_s": 10.0},
                 "input_tokens": {"dist": "fixed", "value": 1000}, "output_tokens": {"dist": "fixed", "value": 200}},
    "output": {"steps": False},
}


def _run(tmp_path, data, name="run"):
    sc = Scenario.model_validate(data)
    out = tmp_path / name
    s = run_scenario(sc, tmp_path, out)
    return s, pd.read_parquet(out / "requests.parquet"), out


def _conserved(req, n):
    assert len(req) == n and req.request_id.is_unique
    assert set(req.request_id) == set(range(n))
    assert set(req.status) <= TERMINAL


def _completions(req, edges):
    done = req[req.status == "completed"].finish_s.to_numpy()
    return np.histogram(done, bins=edges)[0]


def test_node_failure_reroutes_everything_and_goodput_recovers(tmp_path):
    # node 1 (all four decode instances) dies at 200 s: requests there re-prefill elsewhere; the
    # replacements start at once on the spare node and serve after the provisioning delay
    data = merged(BASE, failures={"events": [{"at_s": 200, "kind": "node", "target": "1"}]})
    s, req, _out = _run(tmp_path, data)
    _conserved(req, 6000)
    assert s["restarts"] > 0 and req.restarts.max() >= 1
    assert s["control"]["instance_failures"] == 4 and s["control"]["replacements"] == 4
    # replacements serve after allocation + weights + warm-up; meanwhile no decode instance serves
    delay = 60 + 70.6 / 5.0 + 30  # provisioning defaults, Llama-3.1-70B FP8 ≈ 70.6 GB
    edges = np.array([0, 200, 200 + delay - 5, 200 + delay + 60, 600])
    per_s = _completions(req, edges) / np.diff(edges)
    before, during, after = per_s[0], per_s[1], per_s[3]
    assert during < 0.2 * before, "goodput drops while no decode instance serves"
    assert after > 0.8 * before, "and recovers once the replacements serve"
    # nothing lost: rerouted requests complete
    assert (req[req.restarts > 0].status == "completed").mean() > 0.95
    # the timeline shows the capacity missing, then back: failed decode instances until the
    # replacements serve, and as many serving decode instances afterwards as before
    tl = pd.read_parquet(_out / "timeline.parquet")
    dec = tl[tl.entity == "pool:decode"].pivot_table(index="time_s", columns="metric", values="value")
    t = dec.index.to_numpy()
    assert (dec.instances_failed[(t > 205) & (t < 200 + delay - 5)] == 4).all()
    assert (dec.instances_serving[(t > 205) & (t < 200 + delay - 5)] == 0).all()
    assert (dec.instances_failed[t > 200 + delay + 5] == 0).all()
    assert (dec.instances_serving[t > 200 + delay + 5] == 4).all()


def test_fail_policy_fails_the_requests_in_flight(tmp_path):
    data = merged(BASE, failures={"on_failure": "fail",
                                  "events": [{"at_s": 100, "kind": "instance", "target": "decode-0"}]})
    s, req, _ = _run(tmp_path, data)
    _conserved(req, 6000)
    failed = req[req.status == "failed"]
    assert len(failed) > 0 and set(failed.reason) == {"instance_failed"}
    assert (failed.decode_instance == "decode-0").all()
    assert (req.restarts == 0).all()


def test_random_failures_never_crash_and_are_reproducible(tmp_path):
    data = merged(BASE, workload={**BASE["workload"], "num_requests": 3000},
                  failures={"random": [{"kind": "gpu", "mtbf_h": 0.5, "mttr_s": 60},
                                       {"kind": "instance", "mtbf_h": 0.2, "mttr_s": 30},
                                       {"kind": "node", "mtbf_h": 2.0, "mttr_s": 120}]})
    s1, req, out1 = _run(tmp_path, data, "a")
    _, _, out2 = _run(tmp_path, data, "b")
    _conserved(req, 3000)
    assert s1["control"]["faults"] > 0
    digest = lambda p: hashlib.sha256((p / "requests.parquet").read_bytes()).hexdigest()  # noqa: E731
    assert digest(out1) == digest(out2)


def test_straggler_slows_its_instance_by_its_factor(tmp_path):
    data = merged(BASE, workload={**BASE["workload"], "num_requests": 2000},
                  serving={"mode": "disaggregated", "router": "round_robin"},
                  failures={"events": [{"at_s": 0, "kind": "straggler", "target": "decode-0", "factor": 1.5}]})
    _, req, _ = _run(tmp_path, data)
    done = req[req.status == "completed"]
    slow = done[done.decode_instance == "decode-0"].tpot_s.mean()
    fast = done[done.decode_instance != "decode-0"].tpot_s.mean()
    assert slow / fast == pytest.approx(1.5, rel=0.1)


def test_unknown_fault_target_is_a_user_error(tmp_path):
    data = merged(BASE, failures={"events": [{"at_s": 1, "kind": "instance", "target": "decode-9"}]})
    with pytest.raises(UserError, match="decode-9"):
        _run(tmp_path, data)
    assert not list((tmp_path / "run").glob("*.parquet")), "a configuration error writes no outputs"


def test_failures_during_layerwise_streaming_keep_every_request_once(tmp_path):
    # with layer-wise transfer a request is both prefilling and streaming when its instance dies
    data = merged(BASE, workload={**BASE["workload"], "num_requests": 3000},
                  serving={"mode": "disaggregated", "kv_transfer": "layerwise"},
                  failures={"random": [{"kind": "instance", "mtbf_h": 0.1, "mttr_s": 30}]})
    s, req, _ = _run(tmp_path, data)
    _conserved(req, 3000)
    assert s["control"]["instance_failures"] > 0 and s["restarts"] > 0


def test_degraded_nic_slows_kv_transfers_by_its_factor(tmp_path):
    # prefill on node 0, decode on node 1: every KV transfer crosses the NICs. prefill-0's NICs run at
    # a quarter of their capacity from 100 s to 300 s; an uncontended transfer then takes 4x as long
    data = merged(BASE, workload={**BASE["workload"], "num_requests": 4000},
                  serving={"mode": "disaggregated", "router": "round_robin"},
                  failures={"events": [{"at_s": 100, "kind": "link_degrade", "target": "prefill-0",
                                        "factor": 0.25, "duration_s": 200}]})
    _, req, _ = _run(tmp_path, data)
    _conserved(req, 4000)
    mine = req[(req.prefill_instance == "prefill-0") & (req.status == "completed")]
    dur = mine.kv_transfer_end_s - mine.kv_transfer_start_s
    before = dur[mine.kv_transfer_end_s < 100].median()
    during = dur[(mine.kv_transfer_start_s > 100) & (mine.kv_transfer_end_s < 300)].median()
    after = dur[mine.kv_transfer_start_s > 300].median()
    assert during / before == pytest.approx(4.0, rel=0.1)
    assert after / before == pytest.approx(1.0, rel=0.1)
