"""``simcluster bench``: simulated counterparts of the serving frameworks' benchmark tools.

* ``bench serve``      — ``vllm bench serve`` / SGLang ``bench_serving``: requests at a rate (or all at
  once), optionally capped at ``--max-concurrency`` in flight; TTFT, TPOT, ITL, E2E.
* ``bench throughput`` — ``vllm bench throughput`` / ``trtllm-bench throughput``: every request offered
  at once (offline); requests/s and tokens/s.
* ``bench latency``    — ``vllm bench latency``: one batch of ``--batch-size`` requests end to end.

Flags are named as in vLLM (``--random-input-len``, ``--max-concurrency``, ``-tp`` ...). The deployment
is one pool of ``--data-parallel-size`` × ``--tensor-parallel-size`` × ``--pipeline-parallel-size``
GPUs of ``--gpu`` running ``--backend``'s scheduler profile (``simcluster/perf/framework.py``).
Metrics follow the tools' definitions: TPOT = (E2E − TTFT) / (output tokens − 1); ITL = gaps between
consecutive tokens; TTFT includes the framework's per-request overhead (HTTP, tokenisation).
See ``docs/bench.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import click
import numpy as np

from simcluster.errors import UserError

DATASETS = ("random", "sharegpt-like", "trace")
# "sharegpt-like" lengths: lognormal fitted to the multi-turn ShareGPT length table of Vidur
# (sharegpt_8k_filtered_stats_llama2_tokenizer.csv, 30,731 conversations, Llama-2 tokenizer): prompt
# median 1,730 / p90 5,696 tokens (1..8,141), output median 415 / p90 834 (2..1,024). MIT, microsoft/vidur.
SHAREGPT_LIKE = {"input": (1730.0, 5696.0, 1, 8141), "output": (415.0, 834.0, 2, 1024)}


@dataclass(frozen=True)
class BenchConfig:
    model: str
    gpu: str
    backend: str
    tp: int
    pp: int
    dp: int
    expert_parallel: bool
    weights: str
    kv_cache: str
    max_num_seqs: int | None
    max_num_batched_tokens: int | None
    chunked_prefill: bool | None
    gpu_memory_utilization: float
    framework_profile: bool
    seed: int
    # pool settings from TRT-LLM's --extra_llm_api_options YAML (see trtllm_api_options), and the
    # keys of that file that the simulation does not model
    pool_options: tuple = ()
    ignored_options: tuple = ()
    # serving settings of the framework's own memory-share flag (--mem-fraction-static, TRT-LLM's
    # free_gpu_memory_fraction): perf.framework.memory_share_serving, as sorted items
    memory_settings: tuple = ()


def _weights_format(dtype: str, quantization: str | None) -> str:
    if quantization:
        q = quantization.strip().lower()
        return {"fp4": "nvfp4", "modelopt_fp4": "nvfp4", "modelopt": "fp8", "mxfp4": "mxfp4",
                "awq": "int4", "gptq": "int4", "fp8_block": "fp8_block", "w4a16": "int4"}.get(q, q)
    d = dtype.strip().lower()
    return {"auto": "bf16", "bfloat16": "bf16", "half": "bf16", "float16": "bf16"}.get(d, d)


def _kv_format(kv_cache_dtype: str, backend: str, weights: str) -> str:
    k = kv_cache_dtype.strip().lower()
    if k == "auto":  # vLLM/SGLang keep the model dtype; TRT-LLM quantised engines use an FP8 cache
        return "fp8" if backend == "trtllm" and weights not in ("bf16", "fp16") else "bf16"
    return {"fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "float8": "fp8"}.get(k, k)


def layout_of(cfg: BenchConfig, model) -> tuple[str, int]:
    """(layout string, instances) for the parallel flags, as vLLM places them.

    Dense models: ``dp`` independent replicas of TP × PP. MoE models: data-parallel attention over
    ``dp`` ranks of TP ``tp``; experts over all ``dp × tp`` GPUs, by expert parallelism with
    ``--enable-expert-parallel``, else by tensor parallelism.
    """
    if not model.is_moe or cfg.dp == 1 and not cfg.expert_parallel:
        return f"tp={cfg.tp},pp={cfg.pp}", cfg.dp
    n = cfg.dp * cfg.tp
    if cfg.expert_parallel:
        return f"tp={cfg.tp},dp={cfg.dp},ep={n},tpf=1,pp={cfg.pp}", 1
    return f"tp={cfg.tp},dp={cfg.dp},ep=1,tpf={n},pp={cfg.pp}", 1


# TRT-LLM LLM-API options (trtllm-serve --extra_llm_api_options FILE.yaml) that the engine models
_TRT_TOP_KEYS = ("attention_dp_config", "batch_wait_timeout_iters", "batch_wait_max_tokens_ratio", "max_num_tokens",
                 "max_batch_size", "kv_cache_config")


def trtllm_api_options(path: str) -> tuple[dict, list[str]]:
    """Pool settings from a TRT-LLM ``--extra_llm_api_options`` YAML file, and the keys it has that the
    simulation does not model. Modelled: ``attention_dp_config`` (``enable_balance``,
    ``timeout_iters``, ``batching_wait_iters``: attention-DP context balancing),
    ``batch_wait_timeout_iters`` / ``batch_wait_max_tokens_ratio`` (delayed batching),
    ``max_num_tokens`` and ``max_batch_size`` (per attention-DP rank),
    ``kv_cache_config.free_gpu_memory_fraction`` (the KV pool's share of the memory the weights leave;
    returned as ``kv_free_memory_fraction``). Bad values are user errors naming the file and key."""
    import yaml

    where = "--extra-llm-api-options"
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})", where=where) from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})", where=where) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of LLM API options", where=where)

    def number(d: dict, key: str, name: str, kind=int, lo: float = 0, hi: float = math.inf):
        v = d[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or float(v).is_integer())
        if not ok or not lo <= v <= hi:
            span = f">= {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
            raise UserError(f"{path}: {name} must be {'an integer' if kind is int else 'a number'} {span}, "
                            f"got {v!r}", where=where)
        return kind(v)

    out: dict = {}
    ignored = [k for k in data if k not in _TRT_TOP_KEYS]
    adp = data.get("attention_dp_config")
    if adp is not None:
        if not isinstance(adp, dict):
            raise UserError(f"{path}: attention_dp_config must be a mapping", where=where)
        ignored += [f"attention_dp_config.{k}" for k in adp if k not in ("enable_balance", "timeout_iters",
                                                                        "batching_wait_iters")]
        if adp.get("enable_balance") not in (None, True, False):
            raise UserError(f"{path}: attention_dp_config.enable_balance must be true or false", where=where)
        if adp.get("enable_balance"):
            bal = {}
            if "timeout_iters" in adp:
                bal["timeout_iters"] = number(adp, "timeout_iters", "attention_dp_config.timeout_iters", lo=1)
            if "batching_wait_iters" in adp:
                bal["batching_wait_iters"] = number(adp, "batching_wait_iters",
                                                    "attention_dp_config.batching_wait_iters")
            out["attention_dp_balance"] = bal
    bw = {}
    if "batch_wait_timeout_iters" in data:
        bw["timeout_iters"] = number(data, "batch_wait_timeout_iters", "batch_wait_timeout_iters")
    if "batch_wait_max_tokens_ratio" in data:
        bw["max_tokens_ratio"] = number(data, "batch_wait_max_tokens_ratio", "batch_wait_max_tokens_ratio",
                                        kind=float, hi=1.0)
    if bw:
        out["batch_wait"] = bw
    kvc = data.get("kv_cache_config")
    if kvc is not None:
        if not isinstance(kvc, dict):
            raise UserError(f"{path}: kv_cache_config must be a mapping", where=where)
        ignored += [f"kv_cache_config.{k}" for k in kvc if k != "free_gpu_memory_fraction"]
        if "free_gpu_memory_fraction" in kvc:
            frac = number(kvc, "free_gpu_memory_fraction", "kv_cache_config.free_gpu_memory_fraction", kind=float,
                          hi=1.0)
            if frac <= 0:
                raise UserError(f"{path}: kv_cache_config.free_gpu_memory_fraction must be in (0, 1], got {frac!r}",
                                where=where)
            out["kv_free_memory_fraction"] = frac
    if "max_num_tokens" in data:
        out["max_num_tokens"] = number(data, "max_num_tokens", "max_num_tokens", lo=1)
    if "max_batch_size" in data:
        out["max_batch_size"] = number(data, "max_batch_size", "max_batch_size", lo=1)
    return out, ignored


def bench_scenario(cfg: BenchConfig, *, max_concurrency: int | None, input_len: int, output_len: int) -> dict:
    """The scenario a bench command simulates (its workload section is replaced by the command's)."""
    from simcluster.catalog.gpus import get_gpu
    from simcluster.catalog.models import get_model
    from simcluster.perf.framework import default_chunk_budget, get_profile

    model = get_model(cfg.model, field="--model")
    gpu = get_gpu(cfg.gpu, field="--gpu")
    prof = get_profile(cfg.backend, field="--backend")
    from simcluster.perf.layout import Layout

    layout, instances = layout_of(cfg, model)
    # the framework's budget and sequence cap are per attention-DP rank (each rank schedules its own batch)
    dp = max(1, Layout.parse(layout).dp)
    extra = dict(cfg.pool_options)
    per_rank_seqs = extra.pop("max_batch_size", None) or prof.max_num_seqs
    per_rank_tokens = extra.pop("max_num_tokens", None) or default_chunk_budget(prof, gpu.memory_bytes)
    pool = {
        "instances": instances, "layout": layout,
        "max_num_seqs": int(cfg.max_num_seqs or per_rank_seqs * dp),
        "max_num_batched_tokens": int(cfg.max_num_batched_tokens or per_rank_tokens * dp),
        "chunked_prefill": prof.chunked_prefill if cfg.chunked_prefill is None else bool(cfg.chunked_prefill),
        "max_queue": 10**9,
        **extra,
    }
    return {
        "name": f"bench-{cfg.backend}-{model.name}-{gpu.name}",
        "seed": cfg.seed,
        "cluster": {"gpu": gpu.name},
        "model": {"name": cfg.model, "weights": cfg.weights, "kv_cache": cfg.kv_cache, "activations": "bf16"},
        "serving": {"framework": cfg.backend, "mode": "colocated", "prefix_caching": False,
                    "gpu_memory_utilization": cfg.gpu_memory_utilization,
                    "framework_profile": cfg.framework_profile, "router": "least_outstanding",
                    # the framework's KV admission (TRT-LLM reserves a request's whole output)
                    "kv_admission": prof.kv_admission if cfg.framework_profile else "on_demand",
                    **dict(cfg.memory_settings)},
        "pools": {"colocated": pool},
        "cost": {"source": "calibrated"},
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate_per_s": 1.0},
                     "input_tokens": {"dist": "fixed", "value": max(1, input_len)},
                     "output_tokens": {"dist": "fixed", "value": max(1, output_len)}},
        "clients": {"max_concurrency": max_concurrency},
        "output": {"steps": False, "timeline_interval_s": 1e9},
    }


def bench_workload(dataset: str, dataset_path: str | None, num_prompts: int, input_len: int, output_len: int,
                   range_ratio: float, request_rate: float, burstiness: float, seed: int):
    """The requests of a benchmark run (``Workload``)."""
    from simcluster.workload import read_trace
    from simcluster.workload.synthetic import LognormalLength
    from simcluster.workload.workload import Workload, head

    rng = np.random.Generator(np.random.PCG64(seed))
    if dataset == "trace":
        if not dataset_path:
            raise UserError("--dataset-name trace needs --dataset-path FILE", where="--dataset-path")
        w = read_trace(dataset_path)
        w = head(w, num_prompts) if num_prompts and num_prompts < len(w) else w
        if not math.isinf(request_rate):
            # keep the trace's lengths, replace its arrivals by the requested process
            arr = _arrivals(len(w), request_rate, burstiness, rng)
            w = Workload(arr, w.input_tokens, w.output_tokens, source=w.source + f"; arrivals at {request_rate}/s")
        return w
    n = int(num_prompts)
    if n < 1:
        raise UserError("must be at least 1", where="--num-prompts")
    if dataset == "random":
        if range_ratio < 0 or range_ratio >= 1:
            raise UserError("must be in [0, 1)", where="--random-range-ratio")
        lo_i, hi_i = max(1, int(input_len * (1 - range_ratio))), max(1, int(input_len * (1 + range_ratio)))
        lo_o, hi_o = max(1, int(output_len * (1 - range_ratio))), max(1, int(output_len * (1 + range_ratio)))
        n_in = rng.integers(lo_i, hi_i + 1, size=n)
        n_out = rng.integers(lo_o, hi_o + 1, size=n)
        src = f"random {input_len}/{output_len} tokens, range ratio {range_ratio}"
    elif dataset == "sharegpt-like":
        med, p90, lo, hi = SHAREGPT_LIKE["input"]
        n_in = LognormalLength(med, p90, lo, hi).sample(n, rng)
        med, p90, lo, hi = SHAREGPT_LIKE["output"]
        n_out = LognormalLength(med, p90, lo, hi).sample(n, rng)
        src = "sharegpt-like lengths (lognormal fit of multi-turn ShareGPT, Vidur length table)"
    else:
        raise UserError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}", where="--dataset-name")
    arr = np.zeros(n) if math.isinf(request_rate) else _arrivals(n, request_rate, burstiness, rng)
    return Workload(arr, n_in, n_out, source=src)


def _arrivals(n: int, rate: float, burstiness: float, rng) -> np.ndarray:
    from simcluster.workload.synthetic import GammaArrivals, PoissonArrivals

    if rate <= 0:
        raise UserError("must be positive (or inf)", where="--request-rate")
    if burstiness <= 0:
        raise UserError("must be positive", where="--burstiness")
    proc = PoissonArrivals(rate) if burstiness == 1.0 else GammaArrivals(rate, 1.0 / math.sqrt(burstiness))
    return np.asarray(proc.times(rng, num_requests=n), dtype=float)


def simulate_bench(cfg: BenchConfig, workload, max_concurrency: int | None) -> dict:
    """Run a benchmark; the metrics the tools print (seconds), plus what was simulated."""
    from simcluster.config.scenario import Scenario
    from simcluster.perf.framework import get_profile
    from simcluster.validate.simulate import run_in_memory

    mean_in = int(round(float(np.mean(workload.input_tokens))))
    mean_out = int(round(float(np.mean(workload.output_tokens))))
    data = bench_scenario(cfg, max_concurrency=max_concurrency, input_len=mean_in, output_len=mean_out)
    sc = Scenario.model_validate(data)
    rows, engine, stats = run_in_memory(sc, workload)
    prof = get_profile(cfg.backend)
    ok = [r for r in rows if r[5] == "completed"]
    n_in = np.array([r[2] for r in ok], dtype=float)
    overhead = np.zeros(len(ok))
    if cfg.framework_profile:
        from simcluster.catalog.models import get_model
        from simcluster.perf.framework import model_kind

        fixed = prof.request_overhead(model_kind(get_model(cfg.model)))
        overhead = fixed + prof.request_overhead_per_input_token_s * n_in
    n_out = np.array([r[3] for r in ok], dtype=float)
    arrival = np.array([r[1] for r in ok], dtype=float)
    first = np.array([r[10] for r in ok], dtype=float)
    finish = np.array([r[13] for r in ok], dtype=float)
    ttft = first - arrival + overhead
    e2e = finish - arrival + overhead
    multi = n_out > 1
    tpot = (e2e[multi] - ttft[multi]) / (n_out[multi] - 1)
    start = float(np.min([r[1] for r in rows])) if rows else 0.0
    end = float(np.max(finish + overhead)) if len(finish) else 0.0
    duration = max(end - start, 1e-12)
    itl = engine.itl
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r[5]] = statuses.get(r[5], 0) + 1
    return {
        "successful_requests": len(ok),
        "failed_requests": len(rows) - len(ok),
        "statuses": statuses,
        "duration_s": duration,
        "total_input_tokens": int(n_in.sum()),
        "total_output_tokens": int(n_out.sum()),
        "request_throughput": len(ok) / duration,
        "output_throughput": float(n_out.sum()) / duration,
        "total_token_throughput": float(n_in.sum() + n_out.sum()) / duration,
        "ttft_s": _stats(ttft),
        "tpot_s": _stats(tpot),
        "itl_s": {"mean": itl.mean(), "median": itl.percentile(50), "p99": itl.percentile(99)},
        "e2el_s": _stats(e2e),
        "latency_s": _stats(e2e),
        "max_concurrency": max_concurrency,
        "scenario": data,
        **({"llm_api_options_not_simulated": list(cfg.ignored_options)} if cfg.ignored_options else {}),
        "gpus": stats.gpus,
    }


def _stats(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {"mean": None, "median": None, "p99": None}
    return {"mean": float(np.mean(x)), "median": float(np.median(x)), "p99": float(np.percentile(x, 99))}


def _ms(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1e3:.2f}"


def format_serve(m: dict, request_rate: float) -> str:
    """The result block in ``vllm bench serve``'s layout."""
    w = 40

    def line(k, v):
        return f"{k:<{w}} {v}"

    out = ["{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="=")]
    out.append(line("Successful requests:", m["successful_requests"]))
    if m["failed_requests"]:
        out.append(line("Failed requests:", m["failed_requests"]))
    out.append(line("Request rate configured (RPS):", "inf" if math.isinf(request_rate) else f"{request_rate:.2f}"))
    if m["max_concurrency"]:
        out.append(line("Maximum request concurrency:", m["max_concurrency"]))
    out.append(line("Benchmark duration (s):", f"{m['duration_s']:.2f}"))
    out.append(line("Total input tokens:", m["total_input_tokens"]))
    out.append(line("Total generated tokens:", m["total_output_tokens"]))
    out.append(line("Request throughput (req/s):", f"{m['request_throughput']:.2f}"))
    out.append(line("Output token throughput (tok/s):", f"{m['output_throughput']:.2f}"))
    out.append(line("Total Token throughput (tok/s):", f"{m['total_token_throughput']:.2f}"))
    for title, key, short in (("Time to First Token", "ttft_s", "TTFT"),
                              ("Time per Output Token (excl. 1st token)", "tpot_s", "TPOT"),
                              ("Inter-token Latency", "itl_s", "ITL"),
                              ("End-to-end Latency", "e2el_s", "E2EL")):
        out.append("{s:{c}^{n}}".format(s=title, n=50, c="-"))
        d = m[key]
        out.append(line(f"Mean {short} (ms):", _ms(d["mean"])))
        out.append(line(f"Median {short} (ms):", _ms(d["median"])))
        out.append(line(f"P99 {short} (ms):", _ms(d["p99"])))
    out.append("=" * 50)
    return "\n".join(out)


# ----------------------------------------------------------------------------- click
def _deployment_options(f):
    opts = [
        click.option("--model", default="llama-3.1-8b", show_default=True,
                     help="Catalog model, Hugging Face id or config.json path."),
        click.option("--gpu", default="h100_sxm", show_default=True,
                     help="GPU (h100_sxm, h200_sxm, b200_sxm, gb200, ...)."),
        click.option("--backend", type=click.Choice(["vllm", "sglang", "trtllm"]), default="vllm", show_default=True,
                     help="Serving framework whose scheduler is simulated."),
        click.option("-tp", "--tensor-parallel-size", "tp", type=click.IntRange(min=1), default=1, show_default=True),
        click.option("-pp", "--pipeline-parallel-size", "pp", type=click.IntRange(min=1), default=1, show_default=True),
        click.option("-dp", "--data-parallel-size", "dp", type=click.IntRange(min=1), default=1, show_default=True),
        click.option("--enable-expert-parallel", "expert_parallel", is_flag=True,
                     help="MoE: experts over all DP×TP GPUs by expert parallelism."),
        click.option("--max-num-seqs", type=click.IntRange(min=1), default=None,
                     help="Max sequences per step (default: the backend's)."),
        click.option("--max-num-batched-tokens", type=click.IntRange(min=1), default=None,
                     help="Token budget per step (default: the backend's)."),
        click.option("--enable-chunked-prefill/--no-enable-chunked-prefill", "chunked_prefill", default=None,
                     help="Chunk long prompts under the token budget (default: the backend's)."),
        click.option("--dtype", default="auto", show_default=True,
                     help="Weights dtype when not quantised (auto = bf16)."),
        click.option("-q", "--quantization", default=None,
                     help="Weights format: fp8, fp8_block, nvfp4, mxfp4, int4 (awq/gptq), ..."),
        click.option("--kv-cache-dtype", default="auto", show_default=True, help="auto, bf16, fp8, ..."),
        click.option("--gpu-memory-utilization", type=click.FloatRange(0.01, 1.0), default=None,
                     help="vLLM (and SGLang as vLLM reads it): the share of GPU memory for weights, activations and "
                          "KV  [default: 0.9]. TRT-LLM has none: kv_cache_config.free_gpu_memory_fraction."),
        click.option("--mem-fraction-static", type=click.FloatRange(0.01, 1.0), default=None,
                     help="SGLang: the share of GPU memory for weights and the KV pool (activations use the rest)."),
        click.option("--extra-llm-api-options", "extra_llm_api_options", type=click.Path(dir_okay=False), default=None,
                     help="TRT-LLM: its LLM-API options YAML (trtllm-serve --extra_llm_api_options): attention_dp_config, "
                          "batch_wait_*, max_num_tokens, max_batch_size, kv_cache_config.free_gpu_memory_fraction "
                          "are simulated."),
        click.option("--no-scheduler-profile", "no_profile", is_flag=True,
                     help="Price GPU work only: no CUDA-graph padding, CPU overheads or request overhead."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _length_options(default_in: int, default_out: int):
    """The dataset and length flags of ``serve`` and ``throughput``."""
    opts = [
        click.option("--input-len", "--random-input-len", "input_len", type=click.IntRange(min=1), default=default_in,
                     show_default=True, help="Prompt tokens per request (random dataset)."),
        click.option("--output-len", "--random-output-len", "output_len", type=click.IntRange(min=1),
                     default=default_out, show_default=True, help="Output tokens per request (random dataset)."),
        click.option("--random-range-ratio", type=float, default=0.0, show_default=True,
                     help="Lengths uniform in [L(1-r), L(1+r)]."),
        click.option("--dataset-name", type=click.Choice(DATASETS), default="random", show_default=True),
        click.option("--dataset-path", type=click.Path(dir_okay=False), default=None,
                     help="Trace file for --dataset-name trace (Azure CSV, Mooncake JSONL, BurstGPT, parquet)."),
        click.option("--num-prompts", type=click.IntRange(min=1), default=1000, show_default=True),
    ]

    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


def _config(kw: dict) -> BenchConfig:
    from simcluster.catalog.formats import get_format
    from simcluster.catalog.models import get_model, release_weight_format

    # the kernels the model's published checkpoint runs (DeepSeek's "fp8" is block-scaled, gpt-oss's
    # "fp4" is MXFP4), as the frameworks read them from the checkpoint
    weights = release_weight_format(get_model(kw["model"], field="--model"),
                                    _weights_format(kw["dtype"], kw["quantization"]), kw["model"])

    get_format(weights, field="--quantization" if kw["quantization"] else "--dtype")
    kv = _kv_format(kw["kv_cache_dtype"], kw["backend"], weights)
    get_format(kv, field="--kv-cache-dtype")
    opts, ignored = {}, []
    if kw.get("extra_llm_api_options"):
        if kw["backend"] != "trtllm":
            raise UserError("TRT-LLM's LLM-API options need --backend trtllm", where="--extra-llm-api-options")
        opts, ignored = trtllm_api_options(kw["extra_llm_api_options"])
    from simcluster.perf.framework import get_profile, memory_share_serving

    util, share = kw.get("gpu_memory_utilization"), None
    static = kw.get("mem_fraction_static")
    if util is not None and kw["backend"] == "trtllm":
        raise UserError("TRT-LLM has no --gpu-memory-utilization: its KV pool is kv_cache_config."
                        "free_gpu_memory_fraction of the memory the weights leave (--extra-llm-api-options)",
                        where="--gpu-memory-utilization")
    if static is not None:
        if kw["backend"] != "sglang":
            raise UserError("--mem-fraction-static is SGLang's (vLLM: --gpu-memory-utilization; TRT-LLM: "
                            "kv_cache_config.free_gpu_memory_fraction in --extra-llm-api-options)",
                            where="--mem-fraction-static")
        if util is not None:
            raise UserError("give --mem-fraction-static or --gpu-memory-utilization, not both",
                            where="--mem-fraction-static")
        share = static
    kv_free = opts.pop("kv_free_memory_fraction", None)
    if kv_free is not None:
        share = kv_free
    memory = memory_share_serving(get_profile(kw["backend"]), share) if share is not None else {}
    return BenchConfig(model=kw["model"], gpu=kw["gpu"], backend=kw["backend"], tp=kw["tp"], pp=kw["pp"], dp=kw["dp"],
                       expert_parallel=kw["expert_parallel"], weights=weights, kv_cache=kv,
                       max_num_seqs=kw["max_num_seqs"], max_num_batched_tokens=kw["max_num_batched_tokens"],
                       chunked_prefill=kw["chunked_prefill"], gpu_memory_utilization=0.9 if util is None else util,
                       framework_profile=not kw["no_profile"], seed=kw["seed"],
                       pool_options=tuple(sorted(opts.items())), ignored_options=tuple(ignored),
                       memory_settings=tuple(sorted(memory.items())))


def _emit(obj: dict, as_json: bool, text: str) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, default=_json_default))
    else:
        click.echo(text)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(type(o))


def _header(cfg: BenchConfig) -> str:
    head = (f"simulated {cfg.backend} · {cfg.model} · {cfg.weights} weights, {cfg.kv_cache} KV · "
            f"{cfg.dp}×{cfg.tp}×{cfg.pp} {cfg.gpu} (DP×TP×PP)")
    if cfg.ignored_options:
        head += "\nLLM-API options not simulated: " + ", ".join(cfg.ignored_options)
    return head


@click.group("bench")
def bench() -> None:
    """Simulated `vllm bench serve/throughput/latency` (and SGLang / TRT-LLM counterparts)."""


@bench.command("serve")
@_deployment_options
@_length_options(1024, 128)
@click.option("--request-rate", type=float, default=math.inf, show_default=True,
              help="Requests per second (inf: all at once).")
@click.option("--burstiness", type=float, default=1.0, show_default=True,
              help="Gamma arrivals shape: 1 = Poisson, < 1 burstier, > 1 more regular.")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=None,
              help="At most this many requests in flight (a closed loop when the rate is inf).")
def serve(**kw):
    """Online serving benchmark: TTFT, TPOT, ITL, E2E and throughput (vLLM's layout)."""
    _serve(kw)


def _serve(kw: dict) -> None:
    cfg = _config(kw)
    w = bench_workload(kw["dataset_name"], kw["dataset_path"], kw["num_prompts"], kw["input_len"], kw["output_len"],
                       kw["random_range_ratio"], kw["request_rate"], kw["burstiness"], kw["seed"])
    m = simulate_bench(cfg, w, kw["max_concurrency"])
    m["request_rate"] = "inf" if math.isinf(kw["request_rate"]) else kw["request_rate"]
    m["dataset"] = w.source
    _emit(m, kw["as_json"], _header(cfg) + "\n" + format_serve(m, kw["request_rate"]))


@bench.command("throughput")
@_deployment_options
@_length_options(1024, 128)
def throughput(**kw):
    """Offline throughput: every request offered at once (vllm bench throughput / trtllm-bench)."""
    cfg = _config(kw)
    w = bench_workload(kw["dataset_name"], kw["dataset_path"], kw["num_prompts"], kw["input_len"], kw["output_len"],
                       kw["random_range_ratio"], math.inf, 1.0, kw["seed"])
    if kw["dataset_name"] == "trace":
        from simcluster.workload.workload import Workload

        w = Workload(np.zeros(len(w)), w.input_tokens, w.output_tokens, source=w.source + "; offered at once")
    m = simulate_bench(cfg, w, None)
    res = {
        "elapsed_time_s": m["duration_s"], "num_requests": m["successful_requests"],
        "total_num_tokens": m["total_input_tokens"] + m["total_output_tokens"],
        "requests_per_second": m["request_throughput"], "tokens_per_second": m["total_token_throughput"],
        "output_tokens_per_second": m["output_throughput"], "total_input_tokens": m["total_input_tokens"],
        "total_output_tokens": m["total_output_tokens"], "scenario": m["scenario"],
    }
    text = (f"{_header(cfg)}\n"
            f"Throughput: {res['requests_per_second']:.2f} requests/s, {res['tokens_per_second']:.2f} total tokens/s, "
            f"{res['output_tokens_per_second']:.2f} output tokens/s\n"
            f"Total num prompt tokens:  {res['total_input_tokens']}\n"
            f"Total num output tokens:  {res['total_output_tokens']}")
    _emit(res, kw["as_json"], text)


@bench.command("latency")
@_deployment_options
@click.option("--input-len", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--output-len", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--num-iters", type=click.IntRange(min=1), default=30, show_default=True,
              help="Iterations (the simulation is deterministic: every iteration takes the same time).")
@click.option("--num-iters-warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Accepted for compatibility; a simulation needs no warm-up.")
def latency(**kw):
    """End-to-end latency of one batch (vllm bench latency)."""
    from simcluster.workload.workload import Workload

    cfg = _config(kw)
    b = kw["batch_size"]
    w = Workload(np.zeros(b), np.full(b, kw["input_len"]), np.full(b, kw["output_len"]),
                 source=f"one batch of {b} × {kw['input_len']}/{kw['output_len']} tokens")
    m = simulate_bench(cfg, w, None)
    lat = float(m["duration_s"])
    pct = {str(p): lat for p in (10, 25, 50, 75, 90, 99)}
    res = {"avg_latency_s": lat, "latencies_s": [lat] * kw["num_iters"], "percentiles_s": pct,
           "batch_size": b, "scenario": m["scenario"]}
    text = [_header(cfg), f"Avg latency: {lat:.6f} seconds"]
    text += [f"{p}% percentile latency: {lat:.6f} seconds" for p in pct]
    _emit(res, kw["as_json"], "\n".join(text))

