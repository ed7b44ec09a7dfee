"""``summary.json``: the run's metrics, defined as the serving frameworks' benchmark tools define them.

Computed from ``requests.parquet`` as written (so the summary always agrees with the file) plus the
engine's counters (ITL histogram, FLOPs, bytes, GPU time). See docs/metrics.md for each definition.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq

PERCENTILES = (50, 90, 99)


def _dist(x: np.ndarray) -> dict:
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None, "count": 0}
    out = {"mean": float(np.mean(x))}
    for p in PERCENTILES:
        out[f"p{p}"] = float(np.percentile(x, p))
    out["max"] = float(np.max(x))
    out["count"] = int(len(x))
    return out


def _hist_dist(h) -> dict:
    if h.total <= 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None, "count": 0}
    out = {"mean": h.mean()}
    for p in PERCENTILES:
        out[f"p{p}"] = h.percentile(p)
    out["max"] = h.max
    out["count"] = int(h.total)
    return out


def _none_if_nan(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def summarise(requests_path, stats, itl_hist, scenario, price_per_gpu_hour: float) -> dict:
    # stream the file one row group at a time: only the latencies of completed requests are kept
    cols = ["arrival_s", "input_tokens", "output_tokens", "cached_tokens", "status", "finish_s",
            "ttft_s", "tpot_s", "e2e_s"]
    keep: dict[str, list] = {"ttft_s": [], "tpot_s": [], "e2e_s": []}
    counts: dict[str, int] = {}
    n = completed = in_tok = out_tok = cached = 0
    start, end = math.inf, -math.inf
    for batch in pq.ParquetFile(requests_path).iter_batches(columns=cols, batch_size=65536):
        status = np.asarray(batch.column("status").to_numpy(zero_copy_only=False), dtype=object)
        ok = status == "completed"
        for value, count in zip(*np.unique(status, return_counts=True)):
            counts[str(value)] = counts.get(str(value), 0) + int(count)
        n += len(status)
        completed += int(ok.sum())
        arr = batch.column("arrival_s").to_numpy()
        if len(arr):
            start = min(start, float(arr.min()))
        if ok.any():
            end = max(end, float(batch.column("finish_s").to_numpy()[ok].max()))
        in_tok += int(batch.column("input_tokens").to_numpy()[ok].sum())
        out_tok += int(batch.column("output_tokens").to_numpy()[ok].sum())
        cached += int(batch.column("cached_tokens").to_numpy().sum())
        for k in keep:
            keep[k].append(batch.column(k).to_numpy()[ok])
    ttft, tpot, e2e = (np.concatenate(keep[k]) if keep[k] else np.zeros(0) for k in ("ttft_s", "tpot_s", "e2e_s"))
    if not n:
        start = 0.0
    if not completed:
        end = start
    duration = max(end - start, 0.0)
    gpus = stats.gpus
    # SLOs: a request meets them when it completed and every given bound holds
    slo = scenario.slo
    meets = np.ones(completed, dtype=bool)
    if slo.ttft_s is not None:
        meets &= ttft <= slo.ttft_s
    if slo.tpot_s is not None:
        meets &= ~(tpot > slo.tpot_s)  # single-token requests (NaN TPOT) meet a TPOT bound
    if slo.e2e_s is not None:
        meets &= e2e <= slo.e2e_s
    good = int(meets.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        per_user = 1.0 / tpot[~np.isnan(tpot) & (tpot > 0)]
    # a static cluster is paid whole; with autoscaling, for the GPUs instances held (starting included)
    cluster_gpu_hours = gpus * stats.sim_time_s / 3600.0
    allocated_gpu_hours = stats.gpu_seconds_allocated / 3600.0
    gpu_hours = allocated_gpu_hours if stats.elastic else cluster_gpu_hours

    return {
        "requests": {"total": n, "completed": completed, "by_status": dict(sorted(counts.items()))},
        "duration_s": duration,
        "ttft_s": _dist(ttft),
        "tpot_s": _dist(tpot),
        "itl_s": _hist_dist(itl_hist),
        "e2e_s": _dist(e2e),
        "throughput": {
            "requests_per_s": completed / duration if duration else None,
            "input_tokens_per_s": in_tok / duration if duration else None,
            "output_tokens_per_s": out_tok / duration if duration else None,
            "total_tokens_per_s": (in_tok + out_tok) / duration if duration else None,
            "output_tokens_per_s_per_gpu": out_tok / duration / gpus if duration and gpus else None,
            "tokens_per_s_per_user_mean": float(np.mean(per_user)) if len(per_user) else None,
        },
        "slo": {
            "ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "e2e_s": slo.e2e_s,
            "attainment": good / n if n else None,
            "goodput_requests_per_s": good / duration if duration else None,
        },
        "prefix_cache": {
            "cached_prompt_tokens": cached,
            "hit_rate": stats.prefix_hit_tokens / stats.prefix_lookup_tokens if stats.prefix_lookup_tokens else 0.0,
        },
        "preemptions": int(stats.preemptions),
        "restarts": int(stats.restarts),
        "kv_transfer_bytes": stats.kv_bytes_transferred,
        "gpus": gpus,
        "gpu_hours": gpu_hours,
        "gpu_hours_allocated": allocated_gpu_hours,
        "gpu_hours_cluster": cluster_gpu_hours,
        "cost_usd": gpu_hours * price_per_gpu_hour,
        "price_per_gpu_hour_usd": price_per_gpu_hour,
        "utilisation": {
            "busy_fraction": stats.busy_gpu_s / (gpus * stats.sim_time_s) if gpus and stats.sim_time_s else None,
            "mfu": stats.flops / stats.peak_flops_gpu_s if stats.peak_flops_gpu_s else None,
            "mbu": stats.hbm_bytes / stats.peak_bytes_gpu_s if stats.peak_bytes_gpu_s else None,
        },
        "control": dict(stats.control),
        # every instance that ran: role, GPUs, when it started provisioning, served, ended, its last state
        "instances": {name: {k: v for k, v in rec.items() if k != "kv_capacity_blocks"}
                      for name, rec in stats.instances.items()},
        "sim_time_s": stats.sim_time_s,
        "wall_time_s": stats.wall_time_s,
        "simulated_requests_per_wall_s": n / stats.wall_time_s if stats.wall_time_s else None,
    }


def format_summary(s: dict) -> str:
    """A readable block for the terminal."""

    def ms(d, k):
        v = d.get(k)
        return "-" if v is None else f"{v * 1e3:9.1f}"

    r = s["requests"]
    lines = [
        f"requests      {r['total']} total, " + ", ".join(f"{v} {k}" for k, v in r["by_status"].items()),
        f"duration      {s['duration_s']:.1f} s simulated in {s['wall_time_s']:.2f} s wall "
        f"({s['simulated_requests_per_wall_s'] or 0:,.0f} requests/s)",
        "latency (ms)       mean       p50       p90       p99",
    ]
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("itl_s", "ITL"), ("e2e_s", "E2E")):
        d = s[key]
        lines.append(f"  {label:<8} {ms(d, 'mean')} {ms(d, 'p50')} {ms(d, 'p90')} {ms(d, 'p99')}")
    th = s["throughput"]

    def f(v, fmt="{:,.1f}"):
        return "-" if v is None else fmt.format(v)

    lines += [
        f"throughput    {f(th['requests_per_s'], '{:,.2f}')} req/s, {f(th['output_tokens_per_s'])} output tok/s, "
        f"{f(th['output_tokens_per_s_per_gpu'])} tok/s/GPU, {f(th['tokens_per_s_per_user_mean'])} tok/s/user",
        f"SLO           attainment {f(s['slo']['attainment'], '{:.1%}')}, goodput "
        f"{f(s['slo']['goodput_requests_per_s'], '{:,.2f}')} req/s",
        f"GPUs          {s['gpus']} GPUs, {s['gpu_hours']:.2f} GPU-hours, ${s['cost_usd']:.2f}; "
        f"MFU {f(s['utilisation']['mfu'], '{:.1%}')}, MBU {f(s['utilisation']['mbu'], '{:.1%}')}",
        f"KV            prefix-cache hit rate {s['prefix_cache']['hit_rate']:.1%}, preemptions {s['preemptions']}, "
        f"{s['kv_transfer_bytes'] / 1e9:.1f} GB transferred",
    ]
    return "\n".join(lines)
