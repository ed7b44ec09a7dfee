"""`simcluster bench serve/throughput/latency`: the simulated benchmark tools."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simcluster.cli.bench import BenchConfig, bench_workload, layout_of, simulate_bench
from simcluster.cli.main import main
from simcluster.catalog.models import get_model

SMALL = ["--model", "llama-3.1-8b", "--gpu", "h100_sxm", "--num-prompts", "40", "--input-len", "256",
         "--output-len", "32"]


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_serve_prints_the_metrics_of_vllm_bench_serve(capsys):
    assert main(["bench", "serve", *SMALL, "--max-concurrency", "4"]) == 0
    out = capsys.readouterr().out
    for needle in ("Serving Benchmark Result", "Successful requests:", "Benchmark duration (s):",
                   "Request throughput (req/s):", "Output token throughput (tok/s):", "Mean TTFT (ms):",
                   "Median TTFT (ms):", "P99 TTFT (ms):", "Mean TPOT (ms):", "Mean ITL (ms):", "Mean E2EL (ms):",
                   "Maximum request concurrency:"):
        assert needle in out, needle


def test_serve_json_is_self_consistent(capsys):
    assert main(["bench", "serve", *SMALL, "--max-concurrency", "4", "--json"]) == 0
    m = _json(capsys)
    assert m["successful_requests"] == 40
    assert m["total_input_tokens"] == 40 * 256 and m["total_output_tokens"] == 40 * 32
    assert m["request_throughput"] == pytest.approx(40 / m["duration_s"])
    # E2E = TTFT + (n - 1) TPOT for every request, so the means agree too
    assert m["e2el_s"]["mean"] == pytest.approx(m["ttft_s"]["mean"] + 31 * m["tpot_s"]["mean"], rel=1e-6)
    assert m["scenario"]["clients"]["max_concurrency"] == 4


def test_more_concurrency_raises_throughput_and_tpot():
    cfg = BenchConfig("llama-3.1-8b", "h100_sxm", "vllm", 1, 1, 1, False, "bf16", "bf16", None, None, None, 0.9,
                      True, 0)
    w = bench_workload("random", None, 64, 512, 64, 0.0, float("inf"), 1.0, 0)
    lo = simulate_bench(cfg, w, 1)
    hi = simulate_bench(cfg, w, 16)
    assert hi["request_throughput"] > 4 * lo["request_throughput"]
    assert hi["tpot_s"]["mean"] > lo["tpot_s"]["mean"]


def test_one_client_never_queues_so_ttft_is_one_prefill():
    cfg = BenchConfig("llama-3.1-8b", "h100_sxm", "vllm", 1, 1, 1, False, "bf16", "bf16", None, None, None, 0.9,
                      True, 0)
    w = bench_workload("random", None, 10, 512, 16, 0.0, float("inf"), 1.0, 0)
    m = simulate_bench(cfg, w, 1)
    assert m["ttft_s"]["p99"] == pytest.approx(m["ttft_s"]["median"], rel=1e-6)


def test_random_range_ratio_spreads_lengths_like_vllm():
    w = bench_workload("random", None, 2000, 1000, 100, 0.5, float("inf"), 1.0, 1)
    assert w.input_tokens.min() >= 500 and w.input_tokens.max() <= 1500
    assert abs(w.input_tokens.mean() - 1000) < 20
    w = bench_workload("random", None, 500, 1000, 100, 0.0, 10.0, 1.0, 1)
    gaps = np.diff(w.arrival_s)
    assert abs(np.mean(gaps) - 0.1) < 0.02  # Poisson at 10 requests/s


def test_sharegpt_like_lengths_have_the_documented_medians():
    w = bench_workload("sharegpt-like", None, 4000, 0, 0, 0.0, float("inf"), 1.0, 2)
    assert abs(np.median(w.input_tokens) - 1730) / 1730 < 0.1
    assert abs(np.median(w.output_tokens) - 415) / 415 < 0.1


def test_throughput_and_latency_commands(capsys):
    assert main(["bench", "throughput", *SMALL, "--json"]) == 0
    t = _json(capsys)
    assert t["num_requests"] == 40 and t["tokens_per_second"] > t["output_tokens_per_second"] > 0
    assert main(["bench", "latency", "--model", "llama-3.1-8b", "--gpu", "h100_sxm", "--batch-size", "4",
                 "--input-len", "64", "--output-len", "16", "--json"]) == 0
    lat = _json(capsys)
    assert lat["avg_latency_s"] > 0 and lat["batch_size"] == 4


def test_parallel_flags_place_moe_models_like_vllm():
    m = get_model("deepseek-r1")
    cfg = BenchConfig("deepseek-r1", "h200_sxm", "vllm", 1, 1, 8, True, "fp8_block", "bf16", None, None, None, 0.9,
                      True, 0)
    assert layout_of(cfg, m) == ("tp=1,dp=8,ep=8,tpf=1,pp=1", 1)
    dense = BenchConfig("llama-3.1-8b", "h100_sxm", "vllm", 2, 1, 3, False, "bf16", "bf16", None, None, None, 0.9,
                        True, 0)
    assert layout_of(dense, get_model("llama-3.1-8b")) == ("tp=2,pp=1", 3)


@pytest.mark.parametrize("model,quantization,expect", [
    ("deepseek-r1", "fp8", "fp8_block"),  # DeepSeek's FP8 release is block-scaled (128 x 128 tiles)
    ("glm-5", "fp8", "fp8_block"),
    ("llama-3.1-8b", "fp8", "fp8"),       # no block-scaled release: per-tensor FP8
    ("gpt-oss-120b", "fp4", "mxfp4"),     # gpt-oss ships MXFP4 experts
    ("deepseek-r1", "fp8_block", "fp8_block"),
])
def test_quantization_runs_the_kernels_of_the_models_release(capsys, model, quantization, expect):
    """``--quantization fp8`` of a model whose published checkpoint is block-scaled prices the block
    kernels, as the validation's rows do (catalog/models.py: release_weight_format); the scenario
    the command ran says which."""
    assert main(["bench", "latency", "--model", model, "--gpu", "b200_sxm", "--tensor-parallel-size", "8",
                 "--quantization", quantization, "--batch-size", "1", "--input-len", "16", "--output-len", "4",
                 "--json"]) == 0
    assert _json(capsys)["scenario"]["model"]["weights"] == expect


@pytest.mark.parametrize("args,needle", [
    (["--model", "acme/none"], "--model"),
    (["--gpu", "tpu9"], "--gpu"),
    (["--quantization", "fp3"], "--quantization"),
    (["--dataset-name", "trace"], "--dataset-path"),
    (["--model", "llama-3.1-70b", "--gpu", "h100_sxm"], "fit"),  # 140 GB of BF16 weights on one 80 GB GPU
])
def test_user_errors_exit_2_with_one_line(capsys, args, needle):
    assert main(["bench", "serve", "--num-prompts", "4", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_trtllm_api_options_set_the_pool_and_name_what_is_not_simulated(tmp_path, capsys):
    opts = tmp_path / "extra.yaml"
    opts.write_text("attention_dp_config:\n  enable_balance: true\n  timeout_iters: 60\n  batching_wait_iters: 0\n"
                    "batch_wait_timeout_iters: 40\nbatch_wait_max_tokens_ratio: 0.8\nmax_num_tokens: 4096\n"
                    "max_batch_size: 64\nstream_interval: 10\nkv_cache_config:\n  dtype: fp8\n")
    args = ["bench", "serve", "--backend", "trtllm", "--model", "gpt-oss-120b", "--gpu", "h100_sxm", "-q", "mxfp4",
            "-dp", "2", "--enable-expert-parallel", "--num-prompts", "16", "--input-len", "256", "--output-len", "16",
            "--max-concurrency", "8", "--extra-llm-api-options", str(opts)]
    assert main([*args, "--json"]) == 0
    m = _json(capsys)
    pool = m["scenario"]["pools"]["colocated"]
    assert pool["attention_dp_balance"] == {"timeout_iters": 60, "batching_wait_iters": 0}
    assert pool["batch_wait"] == {"timeout_iters": 40, "max_tokens_ratio": 0.8}
    assert pool["max_num_batched_tokens"] == 2 * 4096 and pool["max_num_seqs"] == 2 * 64  # per DP rank
    assert m["llm_api_options_not_simulated"] == ["stream_interval", "kv_cache_config.dtype"]
    assert m["successful_requests"] == 16
    assert main(args) == 0
    assert "LLM-API options not simulated: stream_interval, kv_cache_config.dtype" in capsys.readouterr().out


@pytest.mark.parametrize("text,backend,needle", [
    ("attention_dp_config:\n  enable_balance: true\n  timeout_iters: -1\n", "trtllm", "timeout_iters"),
    ("batch_wait_max_tokens_ratio: 1.5\n", "trtllm", "batch_wait_max_tokens_ratio"),
    ("attention_dp_config: [1, 2]\n", "trtllm", "attention_dp_config"),
    ("max_num_tokens: [oops\n", "trtllm", "not valid YAML"),
    ("max_num_tokens: 4096\n", "vllm", "--backend trtllm"),
    ("kv_cache_config:\n  free_gpu_memory_fraction: 1.2\n", "trtllm", "free_gpu_memory_fraction"),
    ("kv_cache_config:\n  free_gpu_memory_fraction: 0\n", "trtllm", "free_gpu_memory_fraction"),
    ("kv_cache_config: 0.9\n", "trtllm", "kv_cache_config"),
])
def test_trtllm_api_option_errors_exit_2_naming_the_file_and_key(tmp_path, capsys, text, backend, needle):
    opts = tmp_path / "extra.yaml"
    opts.write_text(text)
    assert main(["bench", "serve", "--backend", backend, "--num-prompts", "4", "--extra-llm-api-options", str(opts)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _pool(data: dict):
    """The built pool of a bench scenario (its KV capacity and weights)."""
    from simcluster.config.scenario import Scenario
    from simcluster.sim.deployment import build_pools

    return build_pools(Scenario.model_validate(data))[0]


def _kv_bytes_per_token_per_gpu(model: str, tp: int, nbytes: float) -> float:
    m = get_model(model)  # GQA: each GPU holds ceil(K / tp) of the K KV heads, keys and values
    return m.num_layers * -(-m.num_kv_heads // tp) * m.head_dim * 2 * nbytes


def test_each_frameworks_memory_flag_sizes_the_kv_pool_as_that_framework_does(tmp_path, capsys):
    """Llama-3.1-70B FP8 on two H100s: vLLM's --gpu-memory-utilization is a share of the whole GPU
    that also holds activations (4 GB here); SGLang's --mem-fraction-static holds weights and KV only;
    TRT-LLM's free_gpu_memory_fraction is a share of what the weights and activations leave."""
    from simcluster.catalog.gpus import get_gpu

    base = ["bench", "serve", "--model", "llama-3.1-70b", "--gpu", "h100_sxm", "-tp", "2", "-q", "fp8",
            "--num-prompts", "4", "--input-len", "64", "--output-len", "4", "--json"]
    mem = get_gpu("h100_sxm").memory_bytes
    kv_tok = _kv_bytes_per_token_per_gpu("llama-3.1-70b", 2, 2.0)

    def capacity(args):
        assert main([*base, *args]) == 0
        pool = _pool(_json(capsys)["scenario"])
        return pool.kv_capacity_tokens, pool.weight_bytes / 2  # weights split evenly over TP 2 (+ replicated norms)

    cap, w = capacity(["--gpu-memory-utilization", "0.8"])
    assert cap == pytest.approx((0.8 * mem - 4e9 - w) / kv_tok, rel=1e-3)
    cap, w = capacity(["--backend", "sglang", "--mem-fraction-static", "0.8"])
    assert cap == pytest.approx((0.8 * mem - w) / kv_tok, rel=1e-3)
    opts = tmp_path / "extra.yaml"
    opts.write_text("kv_cache_config:\n  free_gpu_memory_fraction: 0.5\n")
    cap, w = capacity(["--backend", "trtllm", "--extra-llm-api-options", str(opts), "--kv-cache-dtype", "bf16"])
    assert cap == pytest.approx(0.5 * (mem - 4e9 - w) / kv_tok, rel=1e-3)


@pytest.mark.parametrize("args,needle", [
    (["--backend", "trtllm", "--gpu-memory-utilization", "0.8"], "free_gpu_memory_fraction"),
    (["--backend", "vllm", "--mem-fraction-static", "0.8"], "SGLang"),
    (["--backend", "sglang", "--mem-fraction-static", "0.8", "--gpu-memory-utilization", "0.8"], "not both"),
])
def test_a_memory_flag_of_another_framework_is_a_user_error(capsys, args, needle):
    assert main(["bench", "serve", "--num-prompts", "4", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_kv_pool_smaller_than_the_clients_need_caps_the_running_batch(tmp_path, capsys):
    """TRT-LLM admits a request only while the whole-output KV of every admitted one fits, so with a
    pool of P tokens and requests of L tokens at most ⌊P / L⌋ run at once; the rest wait, and TTFT
    grows by whole request lifetimes."""
    opts = tmp_path / "extra.yaml"
    args = ["bench", "serve", "--backend", "trtllm", "--model", "llama-3.1-70b", "--gpu", "h200_sxm", "-q", "fp8",
            "--num-prompts", "96", "--input-len", "1024", "--output-len", "256", "--max-concurrency", "32",
            "--extra-llm-api-options", str(opts), "--json"]
    out = {}
    for frac in (0.9, 0.012):
        opts.write_text(f"kv_cache_config:\n  free_gpu_memory_fraction: {frac}\n")
        assert main(args) == 0
        m = _json(capsys)
        out[frac] = (m, _pool(m["scenario"]).kv_capacity_tokens)
    (big, cap_big), (small, cap_small) = out[0.9], out[0.012]
    assert cap_big >= 32 * 1280 and 1280 <= cap_small < 8 * 1280  # room for 1 to 7 whole requests
    assert small["successful_requests"] == big["successful_requests"] == 96
    assert small["ttft_s"]["mean"] > 3 * big["ttft_s"]["mean"]
    # the running batch, read back from the decode speed: far smaller batches decode faster
    assert small["tpot_s"]["mean"] < big["tpot_s"]["mean"]
