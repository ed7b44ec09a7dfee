"""``simcluster cost``: the latency of one step of one configuration, broken down by op and phase.

Example (Helix Appendix A, speed of light)::

    simcluster cost --gpu gb200 --model app_a/config.json --weights fp4 --kv fp4 \\
        --phase decode --batch 8 --context 1000000 --layout kvp=4,tpa=8,tpf=32 --sol --json
"""

from __future__ import annotations

import json

import click

from simcluster.catalog.formats import get_format
from simcluster.catalog.gpus import get_gpu
from simcluster.catalog.models import get_model
from simcluster.errors import UserError

# CostSpec field -> the flag a user typed, for error messages
_FLAG_OF = {
    "gpu": "--gpu", "model": "--model", "weights": "--weights", "kv": "--kv", "activations": "--activations",
    "layout": "--layout", "framework": "--framework", "kv_eviction_budget": "--kv-budget",
    "resmoe_keep": "--resmoe-keep", "a2a_payload": "--a2a-payload", "a2a_n_stat": "--n-stat",
    "moe_load_imbalance": "--moe-imbalance", "step_overhead_s": "--step-overhead", "sol": "--sol",
    "exchange_model": "--exchange-model",
}


def _shape(phase: str, batch: int, context: int, tokens: int):
    from simcluster.perf.interface import BatchShape

    if phase == "decode":
        return BatchShape(decode_seqs=batch, decode_context_tokens=batch * context)
    pairs = batch * tokens * (context + (tokens + 1) / 2.0)
    return BatchShape(prefill_tokens=batch * tokens, prefill_seqs=batch, prefill_attn_pairs=pairs,
                      prefill_past_tokens=batch * context)


def _check(cond: bool, flag: str, msg: str) -> None:
    if not cond:
        raise UserError(msg, where=flag)


@click.command("cost")
@click.option("--gpu", default="h100_sxm", show_default=True, help="GPU catalog name.")
@click.option("--model", default="llama-3.1-8b", show_default=True, help="Catalog model name or config.json path.")
@click.option("--weights", default="bf16", show_default=True, help="Weight number format.")
@click.option("--kv", default="bf16", show_default=True, help="KV-cache number format.")
@click.option("--activations", default="bf16", show_default=True, help="Activation number format.")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), default="decode", show_default=True)
@click.option("--batch", type=int, default=1, show_default=True, help="Sequences in the step.")
@click.option("--context", type=int, default=None,
              help="Tokens of KV per request before the step [default: 4096 for decode, 0 for prefill].")
@click.option("--tokens", type=int, default=1024, show_default=True, help="Prefill tokens per request.")
@click.option("--layout", default="tp=1", show_default=True, help="Parallel layout, e.g. kvp=4,tpa=8,tpf=32.")
@click.option("--hop-b/--no-hop-b", default=True, show_default=True, help="Helix HOP-B overlap.")
@click.option("--exchange-model", type=click.Choice(["batched", "per_request"]), default="batched",
              show_default=True, help="How the Helix All-to-All is issued (see docs/perf.md).")
@click.option("--framework", type=click.Choice(["vllm", "sglang", "trtllm", "ideal"]), default="vllm",
              show_default=True, help="Serving framework (its kernels and overheads); ideal: no overhead.")
@click.option("--sol", is_flag=True, help="Speed of light: 100% of peak bandwidth and FLOP/s, no overheads.")
@click.option("--kv-budget", type=int, default=None, help="KV eviction budget in tokens per sequence.")
@click.option("--resmoe-keep", type=float, default=1.0, show_default=True,
              help="ResMoE: fraction of expert residual values kept.")
@click.option("--a2a-payload", type=click.Choice(["hidden", "latent"]), default="hidden", show_default=True,
              help="Helix All-to-All payload for MLA models.")
@click.option("--n-stat", type=int, default=1, show_default=True, help="Softmax statistics per head in the A2A.")
@click.option("--moe-imbalance", type=float, default=None, help="Busiest EP rank load over the mean.")
@click.option("--moe-a2a", type=click.Choice(["default", "deepep"]), default="default", show_default=True,
              help="Expert exchange and kernels: deepep = DeepEP with DeepGEMM grouped GEMMs (scenario "
                   "pools.*.moe_a2a).")
@click.option("--step-overhead", type=float, default=None, help="Host overhead per step, seconds.")
@click.option("--allow-cross-domain", is_flag=True, help="Allow collective groups larger than an NVLink domain.")
@click.option("--gpu-memory-utilization", type=float, default=0.9, show_default=True)
@click.option("--source", type=click.Choice(["calibrated", "roofline"]), default="calibrated", show_default=True,
              help="Op costs from the measured tables (roofline x fitted efficiency outside them) or the "
                   "analytic roofline. --sol implies roofline.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def cost(gpu, model, weights, kv, activations, phase, batch, context, tokens, layout, hop_b, exchange_model,
         framework, sol, kv_budget, resmoe_keep, a2a_payload, n_stat, moe_imbalance, moe_a2a, step_overhead,
         allow_cross_domain, gpu_memory_utilization, source, as_json):
    """Latency of one step of one configuration, broken down by op and phase."""
    from simcluster.perf.layout import Layout
    from simcluster.perf.step_cost import CostSpec, build_step_cost, memory_plan

    gpu_spec = get_gpu(gpu, field="--gpu")
    model_spec = get_model(model, field="--model")
    for flag, fmt in (("--weights", weights), ("--kv", kv), ("--activations", activations)):
        get_format(fmt, field=flag)
    lay = Layout.parse(layout, field="--layout").validate(
        model_spec, domain_size=gpu_spec.nvlink_domain_size, allow_cross_domain=allow_cross_domain, field="--layout")
    if context is None:
        context = 4096 if phase == "decode" else 0
    _check(batch >= 1, "--batch", f"must be at least 1, got {batch}")
    _check(context >= 0, "--context", f"must be non-negative, got {context}")
    _check(tokens >= 1, "--tokens", f"must be at least 1, got {tokens}")
    _check(moe_a2a == "default" or (framework != "ideal" and source == "calibrated" and not sol), "--moe-a2a",
           f"{moe_a2a} prices a framework's expert kernels: it needs --framework vllm|sglang|trtllm and "
           "calibrated costs (not --sol)")
    _check(0.0 < gpu_memory_utilization <= 1.0, "--gpu-memory-utilization",
           f"must be in (0, 1], got {gpu_memory_utilization}")
    ops = None
    profile = None
    if framework != "ideal":
        from simcluster.perf.framework import FrameworkOps, get_profile, model_kind

        profile = get_profile(framework, field="--framework")
    if source == "calibrated" and not sol:
        from simcluster.perf.calibration import CalibratedOps

        ops = CalibratedOps(gpu_spec, framework=framework if framework != "ideal" else "vllm")
        if profile is not None:  # the framework's kernel routes and custom all-reduce, as the simulator prices
            ops = FrameworkOps(ops, profile, node_gpus=gpu_spec.gpus_per_node, moe_a2a=moe_a2a)
    try:
        spec = CostSpec(gpu_spec, model_spec, weights, kv, activations, lay, framework=framework, hop_b=hop_b, ops=ops,
                        kv_eviction_budget=kv_budget, resmoe_keep=resmoe_keep, a2a_payload=a2a_payload,
                        step_overhead_s=step_overhead, sol=sol, a2a_n_stat=n_stat,
                        moe_load_imbalance=moe_imbalance, exchange_model=exchange_model)
    except UserError as exc:
        if exc.where in _FLAG_OF:
            raise UserError(str(exc)[len(exc.where) + 2:], where=_FLAG_OF[exc.where]) from None
        raise
    model_cost = build_step_cost(spec)
    shape = _shape(phase, batch, context, tokens)
    report = model_cost.describe(shape)
    try:
        mem = memory_plan(spec, gpu_memory_utilization=gpu_memory_utilization, composer=model_cost.composer)
        memory = {"fits": True, **mem.__dict__}
    except UserError as exc:
        memory = {"fits": False, "error": str(exc)}
    c = model_cost.composer
    scale = None
    if profile is not None and not sol:
        decode_s, prefill_s = profile.gpu_time_scale(gpu_spec.name, model_kind(model_spec), spec.weights)
        scale = decode_s if phase == "decode" else prefill_s
    out = {
        "config": {
            "gpu": gpu_spec.name, "model": model_spec.name, "weights": spec.weights, "kv": spec.kv,
            "activations": spec.activations, "layout": str(lay), "layout_kind": lay.kind, "gpus": lay.gpus,
            "framework": spec.framework, "hop_b": hop_b, "exchange_model": exchange_model, "sol": sol,
            "kv_eviction_budget": kv_budget, "resmoe_keep": resmoe_keep, "a2a_payload": a2a_payload,
            "a2a_n_stat": n_stat, "moe_a2a": moe_a2a, "hbm_Bps_effective": c.roof.mem_Bps,
            "source": "roofline(sol)" if sol else source,
        },
        "executes": {"gemm": c.gemm_executes, "attention": c.attn_executes,
                     "note": "widest of the operand formats, then the GPU's fallback when it lacks the class"},
        "shape": {"phase": phase, "batch": batch, "context": context,
                  "tokens": tokens if phase == "prefill" else 1, **shape.__dict__},
        **report,
        "table_latency_s": model_cost.step(shape).latency_s,
        # the fitted GPU-time scale the simulator applies to this phase when the framework profile is on
        # (validate, bench; scenarios with serving.framework_profile); not in latency_s
        "fitted_gpu_time_scale": scale,
        "memory": memory,
    }
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(_table(out))


def _fmt_s(s: float) -> str:
    if s == 0:
        return "0"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.2f} µs"


def _table(r: dict) -> str:
    cfg, shp, comp = r["config"], r["shape"], r["components"]
    lines = [
        f"{cfg['model']} on {cfg['gpus']} × {cfg['gpu']}  layout {cfg['layout']} ({cfg['layout_kind']})"
        + ("  [speed of light]" if cfg["sol"] else ""),
        f"{shp['phase']}: batch {shp['batch']}, context {shp['context']:,}"
        + (f", {shp['tokens']:,} new tokens per request" if shp["phase"] == "prefill" else ""),
        f"op costs: {cfg['source']} (framework {cfg['framework']})",
        f"formats: weights {cfg['weights']}, kv {cfg['kv']}, activations {cfg['activations']}; "
        f"GEMMs execute as {r['executes']['gemm']}, attention as {r['executes']['attention']}",
        "",
        f"step latency {_fmt_s(r['latency_s'])}   (weights {_fmt_s(comp['weight_read_s'])} | "
        f"KV {_fmt_s(comp['kv_read_s'])} | compute {_fmt_s(comp['compute_s'])} | comm {_fmt_s(comp['comm_s'])} | "
        f"other {_fmt_s(comp['other_s'])})",
        f"  flops {r['flops'] / 1e9:,.1f} GFLOP, HBM {r['hbm_bytes'] / 1e9:,.3f} GB, "
        f"framework overhead {_fmt_s(r['step_overhead_s'])}",
    ]
    if r.get("fitted_gpu_time_scale") not in (None, 1.0):
        lines.append(f"  with the framework profile on, the simulator scales this phase's GPU time by "
                     f"{r['fitted_gpu_time_scale']:g} (fitted for {cfg['framework']} on {cfg['gpu']}; "
                     "docs/validation.md)")
    head = f"    {'op':<22}{'time':>12}{'weights MB':>12}{'KV MB':>10}{'GFLOP':>10}  {'bound':<8}{'source':<28}detail"
    for layer in r["layers"]:
        lines += ["", f"per layer × {layer['count']} ({layer['attention']} attention, {layer['ffn']} FFN): "
                      f"{_fmt_s(layer['latency_s'])}; DRAM read: weights {_fmt_s(layer['weight_read_s'])}, "
                      f"KV {_fmt_s(layer['kv_read_s'])}", head]
        for op in layer["ops"]:
            reps = op["per_layer"]
            kv_mb = (op["kv_read_bytes"] + op["kv_write_bytes"]) * reps / 1e6
            lines.append(
                f"    {op['name'] + (f' ×{reps:g}' if reps != 1 else ''):<22}{_fmt_s(op['time_s'] * reps):>12}"
                f"{op['weight_bytes'] * reps / 1e6:>12.3f}{kv_mb:>10.3f}"
                f"{op['flops'] * reps / 1e9:>10.3f}  {op['bound']:<8}{op.get('source', ''):<28}{op['detail']}")
    for hop in r["hop_b"]:
        lines.append(
            f"    Helix All-to-All ({hop['kind']} layers, {hop['exchange_model']}): "
            f"{hop['a2a_send_bytes']:,.0f} B sent per GPU; exposed {_fmt_s(hop['exposed_comm_s'])}, HOP-B {'on' if hop['hop_b'] else 'off'} hid "
            f"{_fmt_s(hop['hidden_s'])} (paper lockstep {_fmt_s(hop['paper_lockstep_s'])} vs pipelined "
            f"{_fmt_s(hop['paper_pipelined_s'])})")
    lines += ["", "per step:", head]
    for op in r["per_step_ops"]:
        n = op["count"]
        lines.append(f"    {op['name'] + (f' ×{n:g}' if n != 1 else ''):<22}"
                     f"{_fmt_s(op['time_s'] * op['count']):>12}{op['weight_bytes'] / 1e6:>12.3f}{0:>10.3f}"
                     f"{op['flops'] / 1e9:>10.3f}  {op['bound']:<8}{op.get('source', ''):<28}{op['detail']}")
    mem = r["memory"]
    lines.append("")
    if mem["fits"]:
        lines.append(f"memory: weights {mem['weight_bytes_per_gpu'] / 1e9:.2f} GB/GPU, KV "
                     f"{mem['kv_bytes_per_token_per_gpu'] / 1024:.2f} KiB/token/GPU, capacity "
                     f"{mem['kv_capacity_tokens']:,} tokens per instance")
    else:
        lines.append(f"memory: {mem['error']}")
    return "\n".join(lines)
