"""``simcluster plan``: the cheapest deployment that meets TTFT/TPOT(/E2E) targets at a given traffic.

Examples::

    simcluster plan --model llama-3.1-70b --gpu h200_sxm --rate 20 --isl 4096 --osl 512 --ttft 2 --tpot 0.05
    simcluster plan --model deepseek-r1 --gpu gb200 --trace traces/sample_azure.csv --ttft 3 --tpot 0.04 --verify
    simcluster plan --space my_space.yaml --rate 50 --isl 2048 --osl 256 --ttft 1 --tpot 0.03 --json

See ``docs/planning.md``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click


def _positive(value, flag):
    from simcluster.errors import UserError

    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UserError(f"must be a positive number, got {value}", where=flag)


def _clean(obj):
    """JSON-safe: NaN and infinity become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


@click.command("plan")
@click.option("--model", default=None, help="Model (catalog name or config.json) [required without --space].")
@click.option("--gpu", "gpus", multiple=True, help="GPU type(s) to consider [default: h200_sxm]; repeatable.")
@click.option("--weights", default="fp8", show_default=True)
@click.option("--kv", default="fp8", show_default=True)
@click.option("--activations", default="bf16", show_default=True)
@click.option("--framework", default="vllm", show_default=True)
@click.option("--cost", "cost_source", type=click.Choice(["roofline", "calibrated"]), default="roofline",
              show_default=True, help="Cost model of the analytic search.")
@click.option("--space", "space_path", type=click.Path(dir_okay=False), default=None,
              help="Search space: a sweep spec (its traffic is replaced by the one planned for).")
@click.option("--rate", type=float, default=None, help="Requests per second [required without --trace].")
@click.option("--isl", type=int, default=None, help="Input tokens per request [required without --trace].")
@click.option("--osl", type=int, default=None, help="Output tokens per request [required without --trace].")
@click.option("--trace", type=click.Path(dir_okay=False), default=None,
              help="Trace file: its request rate and length percentile are planned for.")
@click.option("--length-percentile", type=float, default=50.0, show_default=True,
              help="Percentile of the trace's lengths used as ISL/OSL (Beyond the Buzz uses P50).")
@click.option("--ttft", type=float, required=True, help="TTFT target, seconds.")
@click.option("--tpot", type=float, required=True, help="TPOT target, seconds per output token.")
@click.option("--e2e", type=float, default=None, help="End-to-end latency target, seconds.")
@click.option("--price-per-gpu-hour", type=float, default=None,
              help="USD per GPU-hour [default: the GPU catalog's indicative price].")
@click.option("--max-utilization", type=float, default=0.85, show_default=True,
              help="Highest load of any instance the sizing allows.")
@click.option("--runners-up", type=int, default=5, show_default=True)
@click.option("--verify", is_flag=True, help="Replay the winner with the discrete-event simulator.")
@click.option("--verify-requests", type=int, default=2000, show_default=True)
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the --verify run [default: ./plan-verify].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every rejected point with its reason).")
def plan(model, gpus, weights, kv, activations, framework, cost_source, space_path, rate, isl, osl, trace,
         length_percentile, ttft, tpot, e2e, price_per_gpu_hour, max_utilization, runners_up, verify, verify_requests,
         out_dir, as_json):
    """Cheapest deployment that meets the latency targets at a given traffic."""
    from simcluster.errors import UserError
    from simcluster.plan import planner
    from simcluster.plan.space import load_spec

    for flag, v in (("--ttft", ttft), ("--tpot", tpot), ("--e2e", e2e), ("--rate", rate),
                    ("--price-per-gpu-hour", price_per_gpu_hour)):
        _positive(v, flag)
    if trace is not None:
        if isl is not None or osl is not None:
            raise UserError("give either --trace or --isl/--osl, not both", where="--trace")
        if not 0 < length_percentile <= 100:
            raise UserError(f"must be in (0, 100], got {length_percentile}", where="--length-percentile")
        traffic = planner.traffic_from_trace(trace, length_percentile, rate)
    else:
        missing = [f for f, v in (("--rate", rate), ("--isl", isl), ("--osl", osl)) if v is None]
        if missing:
            raise UserError(f"needs {', '.join(missing)} (or --trace FILE)", where=missing[0])
        if isl < 1:
            raise UserError(f"must be at least 1, got {isl}", where="--isl")
        if osl < 2:
            raise UserError(f"must be at least 2 (decode makes OSL − 1 tokens after the first), got {osl}",
                            where="--osl")
        traffic = planner.Traffic(rate, isl, osl)
    if space_path is not None:
        space, _ = load_spec(space_path)
    else:
        if model is None:
            raise UserError("needs a model (or --space SPEC.yaml)", where="--model")
        space = planner.default_space(model, list(gpus) or ["h200_sxm"], weights=weights, kv=kv,
                                      activations=activations, framework=framework, cost=cost_source)
    slo = planner.SLO(ttft, tpot, e2e)
    res = planner.plan(space, traffic, slo, price_per_gpu_hour=price_per_gpu_hour, max_utilization=max_utilization,
                       runners_up=runners_up)
    if verify:
        out = Path(out_dir or "plan-verify")
        res["verify"] = planner.verify(res, traffic, slo, out, requests=verify_requests, trace=trace)
    if as_json:
        click.echo(json.dumps(_clean(res), indent=2, default=str))
        return
    click.echo(planner.format_plan(res))
    if verify:
        v = res["verify"]
        p, d = v["predicted"], v["des"]
        click.echo("")
        click.echo(f"VERIFY (discrete-event replay, {verify_requests} requests -> {v['out_dir']}):")
        click.echo(f"  TTFT mean {planner._t(d['ttft_mean_s'])} (p90 {planner._t(d['ttft_p90_s'])}) vs predicted "
                   f"{planner._t(p['ttft_s'])}; TPOT mean {planner._t(d['tpot_mean_s'])} (p90 "
                   f"{planner._t(d['tpot_p90_s'])}) vs predicted {planner._t(p['tpot_s'])}")
        click.echo(f"  SLO attainment {d['slo_attainment']:.1%}, {d['requests_per_s']:.2f} requests/s served")
