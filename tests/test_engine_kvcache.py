"""KV-cache accounting, preemption and prefix caching against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from simcluster.sim.kvcache import KVCache
from simcluster.workload.workload import Workload
from simhelp import CONSTANT_COLOCATED, merged, run

D = 0.01


def _run_workload(tmp_path, data, workload, name="run"):
    from simcluster.config.scenario import Scenario
    from simcluster.sim.runner import run_scenario
    import pandas as pd

    sc = Scenario.model_validate(data)
    out = tmp_path / name
    summary = run_scenario(sc, tmp_path, out, workload=workload)
    return summary, pd.read_parquet(out / "requests.parquet").set_index("request_id").sort_index()


def _colocated(kv_tokens, max_seqs=8, prefix=False, budget=8192):
    return merged(CONSTANT_COLOCATED,
                  serving={"mode": "colocated", "prefix_caching": prefix, "kv_capacity_tokens": kv_tokens},
                  pools={"colocated": {**CONSTANT_COLOCATED["pools"]["colocated"], "max_num_seqs": max_seqs,
                                       "max_num_batched_tokens": budget}})


def test_preemption_by_recompute_matches_the_hand_computed_schedule(tmp_path):
    # Two requests of 48 prompt + 60 output tokens, a cache of 10 blocks of 16 tokens, every step 10 ms.
    # Step 1 prefills both (3 blocks each). Decode step k leaves 48 + k tokens of KV per request:
    # ceil((48+k)/16) blocks each, so 2 x 5 = 10 blocks fit up to k = 32; step 33 needs 12.
    # The later request (B) is preempted after 32 decode steps (33 tokens generated). A runs alone,
    # finishing its 60th token at step 1 + 59 = 60 (t = 0.60 s). Only then do B's 48 + 33 = 81 tokens
    # (6 blocks) fit again: one recompute step (t = 0.61 s) emits token 34; 26 more steps -> 0.87 s.
    w = Workload(np.zeros(2), np.array([48, 48]), np.array([60, 60]))
    summary, req = _run_workload(tmp_path, _colocated(160), w)
    a, b = req.loc[0], req.loc[1]
    assert (a.preemptions, b.preemptions) == (0, 1)
    assert a.first_token_s == pytest.approx(D) and b.first_token_s == pytest.approx(D)
    assert a.finish_s == pytest.approx(60 * D)
    assert b.finish_s == pytest.approx(87 * D)
    assert summary["preemptions"] == 1


def test_reserve_full_admission_never_preempts_and_serialises_by_final_kv(tmp_path):
    # The same two requests as above under TensorRT-LLM's GUARANTEED_NO_EVICT: each will hold at most
    # 48 + 59 = 107 tokens = 7 blocks, and 7 + 7 > 10, so B is admitted only when A has left. A: prefill
    # step (first token at 0.01 s) + 59 decode steps -> 0.60 s. B: prefill 0.60-0.61 s, 59 steps -> 1.20 s.
    w = Workload(np.zeros(2), np.array([48, 48]), np.array([60, 60]))
    data = _colocated(160)
    data["serving"]["kv_admission"] = "reserve_full"
    summary, req = _run_workload(tmp_path, data, w)
    a, b = req.loc[0], req.loc[1]
    assert (a.preemptions, b.preemptions) == (0, 0)
    assert a.first_token_s == pytest.approx(D) and a.finish_s == pytest.approx(60 * D)
    assert b.prefill_start_s == pytest.approx(60 * D)
    assert b.first_token_s == pytest.approx(61 * D) and b.finish_s == pytest.approx(120 * D)
    assert summary["preemptions"] == 0


def test_kv_capacity_limits_concurrency_without_preemption_when_it_fits(tmp_path):
    # 4 requests of 100 prompt + 20 output: each peaks at 119 tokens = 8 blocks. 16 blocks of cache
    # hold two at a time at admission (7 blocks each for the prompt, with room for their growth).
    w = Workload(np.zeros(4), np.full(4, 100), np.full(4, 20))
    summary, req = _run_workload(tmp_path, _colocated(16 * 16), w)
    assert (req.status == "completed").all()
    starts = np.sort(req.prefill_start_s.to_numpy())
    assert starts[0] == starts[1] == 0.0  # two admitted at once
    assert starts[2] > 0.0  # the third waits for memory


def test_prefix_cache_serves_shared_prompt_blocks(tmp_path):
    # Request 0 fills the cache with blocks [1,2,3] (3 x 512 tokens). Request 1 (same three blocks) may
    # reuse all but the last token; request 2 shares the first two blocks only.
    hashes = [np.array([1, 2, 3]), np.array([1, 2, 3]), np.array([1, 2, 9])]
    w = Workload(np.array([0.0, 1.0, 2.0]), np.full(3, 1536), np.full(3, 4), hash_ids=hashes)
    summary, req = _run_workload(tmp_path, _colocated(100_000, prefix=True), w)
    assert list(req.cached_tokens) == [0, 1535, 1024]
    assert summary["prefix_cache"]["hit_rate"] == pytest.approx((1535 + 1024) / (3 * 1536))


def test_lru_eviction_frees_the_least_recently_used_prefix():
    kv = KVCache(capacity_blocks=64, block_size=16, hash_block_tokens=512)  # 2 entries of 32 blocks
    for h in (1, 2):
        assert kv.allocate(32)
        entries, freed = kv.publish([h], 512, 0)
        assert freed == 32 and kv.private == 0
        kv.dereference(entries)
    assert kv.free == 0 and kv.available == 64
    kv.reference(kv.match([1], 512))  # touch 1: 2 is now the least recently used
    kv.dereference([1])
    assert kv.allocate(32)  # needs one entry's room
    assert kv.match([2], 512) == [] and kv.match([1], 512) == [1]
    assert kv.used == 64 and kv.evictions == 1


def test_referenced_prefixes_are_never_evicted():
    kv = KVCache(capacity_blocks=32, block_size=16, hash_block_tokens=512)
    assert kv.allocate(32)
    kv.publish([7], 512, 0)  # referenced by its owner
    assert not kv.allocate(1)
    assert kv.match([7], 512) == [7]


def test_mooncake_prefix_hits_close_to_the_traces_block_reuse(tmp_path):
    from conftest import shared_path
    from simcluster.workload import read_trace

    path = shared_path("traces", "mooncake_fast25", "conversation_trace.jsonl")
    w = read_trace(path).slice(0, 3000)
    # independent truth: for each request, the leading full blocks already seen as a prefix earlier
    seen: set[tuple] = set()
    reuse = 0
    for h, n in zip(w.hash_ids, w.input_tokens):
        full = int(min(len(h), n // 512))
        k = 0
        while k < full and tuple(h[: k + 1]) in seen:
            k += 1
        reuse += min(k * 512, int(n) - 1)
        for i in range(full):
            seen.add(tuple(h[: i + 1]))
    ideal = reuse / int(w.input_tokens.sum())
    data = _colocated(50_000_000, max_seqs=256, prefix=True, budget=1_000_000)
    summary, req = _run_workload(tmp_path, data, w)
    hit = summary["prefix_cache"]["hit_rate"]
    # the simulator only misses prefixes whose first prefill has not finished yet when they recur
    assert ideal * 0.9 <= hit <= ideal + 1e-9, f"hit rate {hit:.3f} vs trace reuse {ideal:.3f}"
