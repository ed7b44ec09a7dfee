"""The KV pool of a simulated deployment (simcluster/validate): the memory share a recipe's launch
script sets, the KV format a recipe's checkpoint sets, and what a pool too small for every client's
sequence does to a closed loop."""

from __future__ import annotations

import math

import pytest

from simcluster.validate.recipes import script_settings


@pytest.mark.parametrize("text, env, want", [
    # SGLang: the share depends on the branch the script takes (InferenceX dsr1_fp8_b200.sh, March 2026)
    ("if [[ $TP -eq 8 ]]; then\n  MEM_FRAC_STATIC=0.82\nelse\n  MEM_FRAC_STATIC=0.95\nfi\n"
     "python3 -m sglang.launch_server --tp $TP --mem-fraction-static $MEM_FRAC_STATIC\n", {"TP": 4}, 0.95),
    ("if [[ $TP -eq 8 ]]; then\n  MEM_FRAC_STATIC=0.82\nelse\n  MEM_FRAC_STATIC=0.95\nfi\n"
     "python3 -m sglang.launch_server --tp $TP --mem-fraction-static=$MEM_FRAC_STATIC\n", {"TP": 8}, 0.82),
    ("vllm serve $MODEL --tensor-parallel-size=$TP \\\n--gpu-memory-utilization 0.90 \\\n--max-num-seqs $CONC\n",
     {"TP": 4, "CONC": 64}, 0.9),
    # TRT-LLM: the extra-options here-document
    ("cat > $EXTRA << EOF\nkv_cache_config:\n    dtype: fp8\n    free_gpu_memory_fraction: 0.8\nEOF\n"
     "trtllm-serve $MODEL --tp_size=$TP\n", {"TP": 8}, 0.8),
])
def test_the_memory_share_is_read_from_the_launch_script_as_a_fraction(text, env, want):
    assert script_settings(text, env)["mem_fraction"] == pytest.approx(want)


def _dev_rows():
    from conftest import shared_path
    from simcluster.validate.silicon import read_silicon_csv

    rows, _ = read_silicon_csv(shared_path("validation", "silicon_sample_dev.csv"))
    return {r.line: r for r in rows}


def _plan(setup):
    from simcluster.validate.simulate import Simulator

    sim = Simulator()
    sc, plans = sim._plans(setup, sim.resolve_pools(setup))
    return sc, plans[0]


def _weights_per_gpu(setup, sc):
    """Weights on the busiest GPU of the setup's (one) pool, from the memory plan."""
    from simcluster.catalog.gpus import get_gpu
    from simcluster.catalog.models import get_model
    from simcluster.perf.layout import Layout
    from simcluster.perf.step_cost import CostSpec, memory_plan

    pool = next(iter(setup.pools.values()))
    spec = CostSpec(gpu=get_gpu(setup.gpu), model=get_model(setup.model), weights=setup.weights,
                    kv=setup.kv_cache, activations="bf16", layout=Layout.parse(pool.layout),
                    framework=setup.framework)
    return memory_plan(spec, gpu_memory_utilization=1.0, activation_reserve_bytes=0.0).weight_bytes_per_gpu


def test_an_sglang_memory_share_holds_weights_and_kv_only():
    """DeepSeek-R1 FP8 on four B200s (SGLang v0.5.9, 8k/1k at 32 clients): the recipe sets
    --mem-fraction-static 0.95 and an FP8 KV cache. SGLang's share is weights + KV pool, so the pool
    is 0.95 × memory − weights, over MLA's 61 layers × 576 latent bytes a token on every GPU of the
    TP group (the latent is not split over heads)."""
    from simcluster.catalog.gpus import get_gpu
    from simcluster.validate.mapping import map_row

    setup = map_row(_dev_rows()[1024])
    assert setup.recipe == "dsr1-fp8-b200-sglang" and setup.kv_cache == "fp8"
    sc, plan = _plan(setup)
    mem = sc.pools.colocated.memory
    assert mem.gpu_memory_utilization == pytest.approx(0.95) and mem.activation_reserve_gb == 0
    kv_bytes_per_token = 61 * (512 + 64) * 1  # DeepSeek-V3 config: kv_lora_rank + qk_rope_head_dim, FP8
    free = 0.95 * get_gpu("b200_sxm").memory_bytes - _weights_per_gpu(setup, sc)
    assert plan.kv_capacity_tokens == pytest.approx(free / kv_bytes_per_token, abs=1)
    # 32 clients × up to 9,216 tokens fit: the row was measured without a queue (TTFT 1.5 s)
    assert plan.kv_capacity_tokens > 32 * (8192 + 1024)


def test_a_trtllm_memory_share_is_of_the_memory_the_weights_leave():
    """DeepSeek-R1 NVFP4 on four B200s with TRT-LLM: the script's free_gpu_memory_fraction 0.8 is a
    share of what is left after the weights and the activations (TRT-LLM sizes the pool from the
    free memory after its warm-up pass), not of the whole GPU."""
    from simcluster.catalog.gpus import get_gpu
    from simcluster.validate.mapping import map_row

    setup = map_row(_dev_rows()[2099])
    sc, plan = _plan(setup)
    assert setup.framework == "trtllm" and sc.pools.colocated.memory.kv_free_memory_fraction == pytest.approx(0.8)
    free = (get_gpu("b200_sxm").memory_bytes - sc.serving.activation_reserve_gb * 1e9
            - _weights_per_gpu(setup, sc))
    kv_bytes_per_token = 61 * (512 + 64) * 1
    assert plan.kv_capacity_tokens == pytest.approx(0.8 * free / kv_bytes_per_token, abs=2)


def test_a_recipe_serving_a_modelopt_checkpoint_gets_its_fp8_kv_cache():
    """Kimi-K2.5 NVFP4 on vLLM: the row names moonshotai/Kimi-K2.5, the recipe serves
    nvidia/Kimi-K2.5-NVFP4, whose quant config sets kv_cache_quant_algo FP8 (the frameworks take it
    with --kv-cache-dtype auto)."""
    from simcluster.validate.mapping import map_row

    setup = map_row(_dev_rows()[92])
    assert setup.row.model_path == "moonshotai/Kimi-K2.5"
    assert setup.kv_cache == "fp8"
    assert any("nvidia/Kimi-K2.5-NVFP4" in n for n in setup.notes)


def test_a_pool_too_small_for_every_client_queues_like_the_measured_deployment():
    """Llama-3.1-70B FP8 on one H200 with TRT-LLM, 1k/8k at 128 clients: the pool holds far fewer
    than 128 whole sequences. TRT-LLM admits a request only while the KV of every admitted one's
    whole output fits (GUARANTEED_NO_EVICT), so at no time do more than ⌊pool / (isl + osl)⌋
    sequences run, the pool runs full, and the rest wait: the measured TTFT is 369 s."""
    from simcluster.validate.mapping import map_row
    from simcluster.validate.simulate import Simulator

    row = _dev_rows()[1842]
    setup = map_row(row)
    _, plan = _plan(setup)
    slots = plan.kv_capacity_tokens // (row.isl + row.osl)
    assert slots < setup.concurrency / 2

    requests, pred = Simulator().timeline(setup)
    done = [r for r in requests if r["status"] == "completed"]
    assert len(done) == len(requests)
    events = sorted([(r["first_token_s"], 1) for r in done] + [(r["finish_s"], -1) for r in done],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    # sequences hold at most their own (random, ≤ isl + osl) lengths: never more than the pool holds,
    # at least as many as whole-length sequences fit
    smallest = min(r["input_tokens"] + r["output_tokens"] for r in done)
    assert slots <= peak <= plan.kv_capacity_tokens // smallest
    # the queue is what sets TTFT: within 30 % of the measurement (was 0.9 s with an unbounded pool)
    assert math.isclose(pred.ttft_ms, row.ttft_ms, rel_tol=0.30)
