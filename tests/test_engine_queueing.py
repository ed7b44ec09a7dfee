"""The engine against queueing theory, on configurations simple enough to have closed forms.

One co-located instance, one sequence per batch, one output token per request and a constant step
time D make an M/D/1 queue: the mean wait in queue is Wq = ρ·D / (2·(1 − ρ)) (Pollaczek–Khinchine
with zero service-time variance). Little's law L = λ·W is checked against the *sampled* number of
requests in the system (timeline.parquet), which the sampler measures independently of the
per-request records.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simhelp import CONSTANT_COLOCATED, merged, run

D = 0.01


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_wait_matches_pollaczek_khinchine(tmp_path, rho):
    lam = rho / D
    n = 20000
    waits = []
    for seed in range(4):
        data = merged(CONSTANT_COLOCATED, seed=seed, workload={
            "num_requests": n, "arrival": {"process": "poisson", "rate_per_s": lam}})
        _, req, _ = run(tmp_path, data, f"md1-{rho}-{seed}")
        assert (req.status == "completed").all()
        # the service of every request is exactly one step of D
        service = req.finish_s - req.prefill_start_s
        assert np.allclose(service, D)
        waits.append(req.queue_s.to_numpy()[n // 10:])  # drop the warm-up tenth
    wq = np.mean([w.mean() for w in waits])
    spread = np.std([w.mean() for w in waits], ddof=1) / np.sqrt(len(waits))
    expected = rho * D / (2 * (1 - rho))
    # tolerance: 4 standard errors of the seed means, and at least 5 %
    tol = max(4 * spread, 0.05 * expected)
    assert abs(wq - expected) <= tol, f"Wq={wq:.5f} s vs M/D/1 {expected:.5f} s (tol {tol:.5f})"


def test_littles_law_on_sampled_occupancy(tmp_path):
    rho, n = 0.7, 20000
    lam = rho / D
    data = merged(CONSTANT_COLOCATED, seed=3, workload={
        "num_requests": n, "arrival": {"process": "poisson", "rate_per_s": lam}},
        output={"timeline_interval_s": 0.0137})  # not a multiple of D: samples fall mid-step
    summary, req, out = run(tmp_path, data)
    tl = pd.read_parquet(out / "timeline.parquet")
    occ = tl[(tl.entity == "cluster") & (tl.metric == "requests_in_flight")]
    t_end = req.finish_s.max()
    occ = occ[(occ.time_s > 0.1 * t_end) & (occ.time_s < 0.9 * t_end)]
    L_sampled = occ.value.mean()
    W = (req.finish_s - req.arrival_s).mean()
    lam_obs = len(req) / req.arrival_s.max()
    # L = λW; and M/D/1: L = ρ + λ·Wq
    assert L_sampled == pytest.approx(lam_obs * W, rel=0.08)
    L_md1 = rho + lam * rho * D / (2 * (1 - rho))
    assert L_sampled == pytest.approx(L_md1, rel=0.12)


def test_poisson_workload_has_the_configured_rate(tmp_path):
    lam = 40.0
    data = merged(CONSTANT_COLOCATED, workload={"num_requests": 20000,
                                                "arrival": {"process": "poisson", "rate_per_s": lam}})
    summary, req, _ = run(tmp_path, data)
    rate = (len(req) - 1) / (req.arrival_s.max() - req.arrival_s.min())
    # n gaps of an exponential: relative standard error 1/sqrt(n)
    assert abs(rate - lam) / lam < 4 / np.sqrt(len(req))


def test_closed_loop_of_one_client_serialises_requests(tmp_path):
    # one client, every request due at 0: each is sent when the previous finishes, so there is never
    # a queue and the run lasts exactly N services of one constant step
    n = 200
    data = merged(CONSTANT_COLOCATED, clients={"max_concurrency": 1},
                  workload={"num_requests": n, "arrival": {"process": "poisson", "rate_per_s": 1e6}})
    summary, req, _ = run(tmp_path, data)
    req = req.sort_values("finish_s")
    assert (req.status == "completed").all()
    assert np.allclose(req.queue_s, 0.0)
    assert np.allclose(req.arrival_s.to_numpy()[1:], req.finish_s.to_numpy()[:-1])
    assert req.finish_s.max() == pytest.approx(n * D, rel=1e-6, abs=1e-3)


def test_closed_loop_concurrency_bounds_requests_in_flight(tmp_path):
    c = 7
    data = merged(CONSTANT_COLOCATED, clients={"max_concurrency": c},
                  pools={"colocated": {**CONSTANT_COLOCATED["pools"]["colocated"], "max_num_seqs": 4}},
                  workload={"num_requests": 500, "arrival": {"process": "poisson", "rate_per_s": 1e6},
                            "input_tokens": {"dist": "fixed", "value": 16}, "output_tokens": {"dist": "fixed", "value": 5}})
    summary, req, _ = run(tmp_path, data)
    assert (req.status == "completed").all()
    # at every send, fewer than c requests were in flight: count overlaps at each arrival
    a = req.arrival_s.to_numpy()
    f = req.finish_s.to_numpy()
    in_flight = [(np.sum((a <= t) & (f > t))) for t in a]
    assert max(in_flight) <= c
