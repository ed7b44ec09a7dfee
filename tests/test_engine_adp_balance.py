"""TRT-LLM attention-DP context balancing (``pools.*.attention_dp_balance``) against schedules worked
out by hand from TensorRT-LLM's rule (``PyExecutor._balance_adp_requests``):

every iteration, if every rank has a waiting prompt (and a free slot), the prompts go (after
``batching_wait_iters`` more iterations when every rank also decodes); otherwise a counter
advances and the prompts go when it reaches ``timeout_iters`` — or at once when some rank has no
running sequence. The counter runs (and resets at the timeout) whether or not anything waits.

Constant 10 ms steps, two DP ranks, two long requests decoding from t = 10 ms: decode step k
(k = 1, 2, ...) ends at 10 + 10·k ms.
"""

from __future__ import annotations

import numpy as np
import pytest

from simcluster.config.scenario import Scenario
from simcluster.validate.simulate import _I_ARRIVAL, _I_FIRST, run_in_memory
from simcluster.workload.workload import Workload

STEP = 0.01


def _scenario(balance: dict | None, dp: int = 2) -> Scenario:
    pool = {"instances": 1, "layout": f"tp=1,dp={dp}", "max_num_seqs": 64, "max_queue": 10**6}
    if balance is not None:
        pool["attention_dp_balance"] = balance
    return Scenario.model_validate({
        "name": "adp",
        "cluster": {"gpu": "h200_sxm"},
        "model": {"name": "llama-3.1-8b", "weights": "bf16", "kv_cache": "bf16"},
        "serving": {"mode": "colocated", "prefix_caching": False},
        "pools": {"colocated": pool},
        "cost": {"source": "constant", "constant_step_s": STEP},
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate_per_s": 1.0},
                     "input_tokens": {"dist": "fixed", "value": 16}, "output_tokens": {"dist": "fixed", "value": 2}},
        "output": {"steps": False},
    })


def _ttfts(balance, arrivals, long_requests: int = 2, dp: int = 2) -> dict[float, float]:
    """TTFT of each short request (by arrival time), with ``long_requests`` 1,000-token requests
    arriving at 0."""
    arr = [0.0] * long_requests + list(arrivals)
    outs = [1000] * long_requests + [5] * len(arrivals)
    wl = Workload(np.asarray(arr), np.full(len(arr), 16), np.asarray(outs))
    rows, _, _ = run_in_memory(_scenario(balance, dp), wl)
    out = {}
    for r in rows:
        if r[3] == 5:
            out[round(r[_I_ARRIVAL], 6)] = r[_I_FIRST] - r[_I_ARRIVAL]
    return out


def test_without_balancing_a_prompt_runs_at_the_next_step_boundary():
    t = _ttfts(None, [0.1005])
    # the decode step in flight ends at 110 ms, the prompt's step at 120 ms
    assert t[0.1005] == pytest.approx(0.12 - 0.1005, abs=1e-9)


def test_a_lone_prompt_waits_for_the_timeout_counted_from_the_last_reset():
    # counter: decode steps 1..10 end by 110 ms, 10 mod 5 = 0 at the arrival's boundary; 5 more
    # steps reach the timeout at 160 ms, the prompt's step ends at 170 ms
    t = _ttfts({"timeout_iters": 5, "batching_wait_iters": 0}, [0.1005])
    assert t[0.1005] == pytest.approx(0.17 - 0.1005, abs=1e-9)
    # the same prompt 30 ms later: at its boundary (140 ms, step 13) the counter stands at 3, so
    # it waits 2 steps (160 ms) and its step ends at 170 ms
    t = _ttfts({"timeout_iters": 5, "batching_wait_iters": 0}, [0.1305])
    assert t[0.1305] == pytest.approx(0.17 - 0.1305, abs=1e-9)


def test_prompts_for_every_rank_go_at_once_or_after_the_batching_wait():
    t = _ttfts({"timeout_iters": 50, "batching_wait_iters": 0}, [0.1005, 0.1006])
    assert t[0.1005] == pytest.approx(0.12 - 0.1005, abs=1e-9)
    assert t[0.1006] == pytest.approx(0.12 - 0.1006, abs=1e-9)
    t = _ttfts({"timeout_iters": 50, "batching_wait_iters": 3}, [0.1005, 0.1006])
    assert t[0.1005] == pytest.approx(0.15 - 0.1005, abs=1e-9)  # 3 steps held (110 -> 140 ms)


def test_a_rank_without_running_sequences_releases_prompts_at_once():
    # one long request on two ranks: a rank is idle, nothing is held back
    t = _ttfts({"timeout_iters": 50, "batching_wait_iters": 10}, [0.1005], long_requests=1)
    assert t[0.1005] == pytest.approx(0.12 - 0.1005, abs=1e-9)


def test_balancing_holds_prompts_but_loses_none_and_keeps_order():
    arrivals = list(np.round(np.linspace(0.05, 2.0, 40), 6))
    t = _ttfts({"timeout_iters": 20, "batching_wait_iters": 0}, arrivals, long_requests=4, dp=4)
    base = _ttfts(None, arrivals, long_requests=4, dp=4)
    assert sorted(t) == sorted(base) == sorted(arrivals)  # every request completed
    # held prompts wait at most the timeout plus the step they run in (and the one in flight)
    assert max(t.values()) <= (20 + 2) * STEP + 1e-9
    assert np.mean(list(t.values())) > np.mean(list(base.values()))


# ---------------------------------------------------------------- delayed batching (no attention DP)
def _bw_ttfts(batch_wait, arrivals, prompt: int = 16) -> dict[float, float]:
    sc = _scenario(None, dp=1).model_dump()
    sc["pools"]["colocated"]["max_num_batched_tokens"] = 100
    if batch_wait is not None:
        sc["pools"]["colocated"]["batch_wait"] = batch_wait
    arr = [0.0, 0.0] + list(arrivals)
    wl = Workload(np.asarray(arr), np.asarray([16, 16] + [prompt] * len(arrivals)),
                  np.asarray([1000, 1000] + [5] * len(arrivals)))
    rows, _, _ = run_in_memory(Scenario.model_validate(sc), wl)
    return {round(r[_I_ARRIVAL], 6): r[_I_FIRST] - r[_I_ARRIVAL] for r in rows if r[3] == 5}


def test_delayed_batching_holds_small_prompts_until_the_timeout():
    # budget 100, ratio 0.5: 2 decodes + a 16-token prompt = 18 < 50 tokens, so the prompt waits
    # 4 steps (110 -> 150 ms) and runs in the step ending at 160 ms
    t = _bw_ttfts({"timeout_iters": 4, "max_tokens_ratio": 0.5}, [0.1005])
    assert t[0.1005] == pytest.approx(0.16 - 0.1005, abs=1e-9)
    assert _bw_ttfts(None, [0.1005])[0.1005] == pytest.approx(0.12 - 0.1005, abs=1e-9)


def test_delayed_batching_releases_once_the_step_would_be_full_enough():
    # a 48-token prompt: 2 + 48 = 50 tokens reach 0.5 x 100 at once
    t = _bw_ttfts({"timeout_iters": 4, "max_tokens_ratio": 0.5}, [0.1005], prompt=48)
    assert t[0.1005] == pytest.approx(0.12 - 0.1005, abs=1e-9)
    # three 16-token prompts: the third (at 125 ms) brings 2 + 48 = 50; all three go at 130 ms
    t = _bw_ttfts({"timeout_iters": 40, "max_tokens_ratio": 0.5}, [0.1005, 0.1105, 0.1255])
    for a in (0.1005, 0.1105, 0.1255):
        assert t[a] == pytest.approx(0.14 - a, abs=1e-9)
