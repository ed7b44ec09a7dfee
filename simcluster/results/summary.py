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
    cols = ["arrival_s", "input_tokens", "output_tokens", "cached_tokens", "status", "first_token_s",
            "finish_s", "ttft_s", "tpot_s", "e2e_s", "preemptions"]
    t = pq.read_table(requests_path, columns=cols)
    status = np.asarray(t.column("status").to_numpy(zero_copy_only=False), dtype=object)
    ok = status == "completed"
    arr = t.column("arrival_s").to_numpy()
    n_in = t.column("input_tokens").to_numpy()
    n_out = t.column("output_tokens").to_numpy()
    ttft = t.column("ttft_s").to_numpy()[ok]
    tpot = t.column("tpot_s").to_numpy()[ok]
    e2e = t.column("e2e_s").to_numpy()[ok]
    finish = t.column("finish_s").to_numpy()[ok]
    n = len(status)
    completed = int(ok.sum())
    counts: dict[str, int] = {}
    for s in status:
        counts[s] = counts.get(s, 0) + 1

    start = float(arr.min()) if n else 0.0
    end = float(finish.max()) if completed else start
    duration = max(end - start, 0.0)
    out_tok = int(n_out[ok].sum())
    in_tok = int(n_in[ok].sum())
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
    gpu_hours = gpus * stats.sim_time_s / 3600.0
    cached = int(t.column("cached_tokens").to_numpy().sum())

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
        "kv_transfer_bytes": stats.kv_bytes_transferred,
        "gpus": gpus,
        "gpu_hours": gpu_hours,
        "cost_usd": gpu_hours * price_per_gpu_hour,
        "price_per_gpu_hour_usd": price_per_gpu_hour,
        "utilisation": {
            "busy_fraction": stats.busy_gpu_s / (gpus * stats.sim_time_s) if gpus and stats.sim_time_s else None,
            "mfu": stats.flops / stats.peak_flops_gpu_s if stats.peak_flops_gpu_s else None,
            "mbu": stats.hbm_bytes / stats.peak_bytes_gpu_s if stats.peak_bytes_gpu_s else None,
        },
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
