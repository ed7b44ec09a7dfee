"""The SLO planner: the cheapest deployment that meets TTFT/TPOT(/E2E) targets at a given traffic.

1. Evaluate a design space at the traffic's ISL/OSL (:mod:`simcluster.plan.analytic`): every decode
   configuration with the best prefill configuration whose FTL meets the TTFT target, and every
   co-located configuration.
2. Size each one for the request rate ``λ`` with whole instances, no instance above
   ``max_utilization``:

   * disaggregated: ``n_d = ⌈λ / (u·D)⌉`` decode instances of request rate ``D = B_d·pp/(TTL·(OSL−1))``;
     ``n_p ≥ ⌈λ / (u·P)⌉`` prefill instances of rate ``P = B_p·pp/FTL``, more if queueing would
     push TTFT over the target;
   * co-located: ``n = ⌈λ / (u·R)⌉`` instances of the point's request rate ``R``.

   TTFT = FTL + the mean wait of an M/D/c queue (Allen–Cunneen: half the Erlang-C wait) over the
   pool's request slots: a prefill instance has ``B_p·pp`` slots each held for one FTL, a co-located
   one ``B·pp`` slots held for a request's whole life [INFERRED: Poisson arrivals, requests spread
   over the instances]. TPOT is the steady-state step time at the
   configuration's full batch (an instance below full load runs smaller, faster batches, so this is
   conservative). E2E = TTFT + (OSL − 1)·TPOT.
3. Keep the sized deployments that meet every target; the cheapest (GPUs × price per GPU-hour;
   ties: fewer GPUs, then lower TPOT) wins. Every other point gets the reason it was rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from simcluster.errors import UserError
from simcluster.plan.analytic import Evaluator
from simcluster.plan.space import PARAMS, SweepSpec, expand, parse_spec, spec_settings

DEFAULT_MAX_UTILIZATION = 0.85


@dataclass(frozen=True)
class Traffic:
    """Requests/s and lengths (tokens) the deployment must serve."""

    rate_per_s: float
    isl: int
    osl: int
    source: str = "flags"


@dataclass(frozen=True)
class SLO:
    """Targets in seconds (None: no target). TTFT and E2E are means; TPOT per output token."""

    ttft_s: float | None
    tpot_s: float | None
    e2e_s: float | None = None


def traffic_from_trace(path: str, percentile: float = 50.0, rate_per_s: float | None = None) -> Traffic:
    """Rate and lengths of a trace: its request rate and the ``percentile`` of input and output lengths.

    Beyond the Buzz models traffic by the P50 lengths (SEED-NOTES §2.1); ``rate_per_s`` overrides the
    trace's rate.
    """
    import numpy as np

    from simcluster.workload import read_trace, workload_stats

    wl = read_trace(path)
    if len(wl) < 2:
        raise UserError("the trace needs at least two requests to give a rate", where=str(path))
    st = workload_stats(wl)
    rate = rate_per_s if rate_per_s is not None else st["rate_per_s"]
    if not rate:
        raise UserError("the trace has no duration, so no request rate; give --rate", where=str(path))
    isl = int(round(float(np.percentile(wl.input_tokens, percentile))))
    osl = max(2, int(round(float(np.percentile(wl.output_tokens, percentile)))))
    return Traffic(float(rate), max(1, isl), osl, f"{path} (P{percentile:g} lengths, {len(wl):,} requests)")


def default_space(model: str, gpus: list[str], *, weights: str = "fp8", kv: str = "fp8", activations: str = "bf16",
                  framework: str = "vllm", cost: str = "roofline") -> SweepSpec:
    """A sensible search space for ``model``: TP (and TP×PP for big dense models), DP-attention+EP and
    TEP for MoE models, within each GPU's NVLink domain; batches 1–512; prefill TP with batches 1–4;
    co-located with token budgets 2048 and 8192."""
    from simcluster.catalog.gpus import get_gpu
    from simcluster.catalog.models import get_model

    m = get_model(model, field="--model")
    domain = max(get_gpu(g, field="--gpu").nvlink_domain_size for g in gpus)
    widths = [w for w in (1, 2, 4, 8, 16, 32, 64) if w <= max(1, min(domain, 64))]
    decode: list = [{"tp": widths}]
    if not m.is_moe and m.num_layers >= 64:
        decode.append({"tp": [w for w in widths if w >= 4] or widths, "pp": [2, 4]})
    if m.is_moe:
        wide = [w for w in widths if w >= 2]
        decode += [{"dp": wide, "ep": wide}, {"tp": wide, "ep": wide}]
    prefill: list = [{"tp": widths}]
    if m.is_moe:
        prefill.append({"dp": [w for w in widths if w >= 4], "ep": [w for w in widths if w >= 4]})
    data = {
        "name": f"plan-{m.name}", "gpu": list(gpus), "model": m.name,
        "formats": {"weights": weights, "kv": kv, "activations": activations},
        "framework": framework, "cost": cost,
        "traffic": [{"isl": 1024, "osl": 128}],  # replaced by the traffic being planned
        "mode": ["disaggregated", "colocated"],
        "decode": {"layouts": decode, "batch": {"start": 1, "stop": 512, "factor": 2}, "token_budget": [2048, 8192]},
        "prefill": {"layouts": prefill, "batch": [1, 2, 4]},
        "ratio": "rate_matched",
    }
    return parse_spec(data, "default search space")


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (Erlang C), ``offered = λ·S`` < ``servers``."""
    if offered >= servers:
        return 1.0
    b = 1.0
    for k in range(1, servers + 1):  # Erlang B by the stable recursion
        b = offered * b / (k + offered * b)
    return servers * b / (servers - offered * (1.0 - b))


def mdc_wait(lam: float, service_s: float, servers: int) -> float:
    """Mean wait (s) in an M/D/c queue: the Allen–Cunneen approximation, half the M/M/c wait
    (deterministic service, squared CV 0)."""
    offered = lam * service_s
    if offered >= servers:
        return math.inf
    rho = offered / servers
    return 0.5 * erlang_c(servers, offered) * service_s / (servers * (1.0 - rho))


def _miss(name: str, value: float, target: float) -> str:
    return f"{name} {_t(value)} > SLO {_t(target)} (+{(value / target - 1) * 100:.0f} %)"


def _t(s: float | None) -> str:
    if s is None or math.isnan(s):
        return "n/a"
    if math.isinf(s):
        return "∞"
    return f"{s * 1e3:.1f} ms" if s < 1.0 else f"{s:.2f} s"


def _instances_for_ttft(lam: float, rate: float, ftl: float, u: float, ttft_target: float | None,
                        slots: int, hold_s: float) -> tuple[int, float]:
    """Fewest instances of request rate ``rate`` that keep each ≤ ``u`` busy and the mean TTFT within
    the target; returns (instances, TTFT).

    TTFT = FTL + the M/D/c wait for one of the ``n·slots`` request slots, each held ``hold_s``
    seconds (a prefill instance: ``B_p·pp`` slots held one FTL; a co-located one: ``B·pp`` slots
    held for the request's whole life) [INFERRED: Poisson arrivals, requests spread over instances].
    """
    n = max(1, math.ceil(lam / (u * rate)))
    ttft = ftl + mdc_wait(lam, hold_s, n * slots)
    if ttft_target is not None and ftl <= ttft_target:
        limit = n * 8  # beyond 8× the minimum the wait no longer matters
        while ttft > ttft_target and n < limit:
            n += 1
            ttft = ftl + mdc_wait(lam, hold_s, n * slots)
    return n, ttft


_HEAD_KEYS = ("gpu", "nvlink_domain_size", "model", "weights", "kv", "activations", "framework", "cost",
              "kv_eviction_budget", "resmoe_keep", "hop_b", "exchange_model", "a2a_payload", "isl", "osl")


def _head(row: dict) -> tuple:
    """What a prefill and a decode pool share to be one deployment (GPU, model, formats, knobs, traffic)."""
    return tuple(row[k] for k in _HEAD_KEYS)


def _price(override: float | None, catalog: float) -> float:
    return override if override is not None else float(catalog)


def _slo_misses(slo: SLO, ttft: float | None, tpot: float | None, e2e: float | None) -> list[str]:
    reasons = []
    if slo.tpot_s is not None and tpot is not None and tpot > slo.tpot_s:
        reasons.append(_miss("TPOT", tpot, slo.tpot_s))
    if slo.ttft_s is not None and ttft is not None and ttft > slo.ttft_s:
        reasons.append(_miss("TTFT", ttft, slo.ttft_s))
    if slo.e2e_s is not None and e2e is not None and e2e > slo.e2e_s:
        reasons.append(_miss("E2E", e2e, slo.e2e_s))
    return reasons


def _money(d: dict, traffic: Traffic) -> dict:
    d["usd_per_million_tokens"] = d["cost_per_hour_usd"] / 3600.0 / (traffic.rate_per_s * (traffic.osl - 1)) * 1e6
    return d


def _prefill_option(ev: Evaluator, p: dict, layout: str, batch: int, traffic: Traffic, slo: SLO, u: float,
                    price: float | None) -> dict:
    """A prefill pool for the traffic: sized, or rejected with the reason."""
    from simcluster.plan.analytic import Invalid, _label

    base = {"pool": "prefill", "gpu": p["gpu"], "label": _label(layout), "layout": layout, "batch": batch,
            "head": _head(p)}
    try:
        m = ev.prefill_metrics(p, layout, batch)
    except Invalid as exc:
        return base | {"feasible": False, "reason": exc.reason}
    lay, gpu = m["lay"], m["gpu"]
    g = lay.gpus
    rate = m["p"] * g
    slots = batch * lay.pp
    n, ttft = _instances_for_ttft(traffic.rate_per_s, rate, m["ftl_s"], u, slo.ttft_s, slots, m["ftl_s"])
    reasons = _slo_misses(slo, ttft, None, None)
    return base | {"ftl_s": m["ftl_s"], "instances": n, "gpus_per_instance": g, "gpus": n * g, "ttft_s": ttft,
                   "utilization": traffic.rate_per_s / (n * rate), "pp": lay.pp,
                   "cost_per_hour_usd": n * g * _price(price, gpu.price_per_hour_usd),
                   "feasible": not reasons, "reason": "; ".join(reasons) or None}


def _decode_option(row: dict, traffic: Traffic, slo: SLO, u: float, price: float | None) -> dict:
    """A decode pool for the traffic (from a decode-mode row): sized, or rejected with the reason."""
    base = {"pool": "decode", "gpu": row["gpu"], "label": row.get("layout_label") or row["decode_layout"],
            "layout": row["decode_layout"], "batch": int(row["decode_batch"]), "head": _head(row),
            "point_id": row["point_id"]}
    if row["status"] != "ok":
        return base | {"feasible": False, "reason": row["reason"] or row["error"]}
    g = int(row["gpus_per_instance"])
    rate = float(row["decode_requests_per_s_per_gpu"]) * g
    n = max(1, math.ceil(traffic.rate_per_s / (u * rate)))
    tpot = float(row["tpot_s"])
    reasons = _slo_misses(slo, None, tpot, None)
    return base | {"tpot_s": tpot, "instances": n, "gpus_per_instance": g, "gpus": n * g, "pp": int(row["pp"]),
                   "utilization": traffic.rate_per_s / (n * rate),
                   "cost_per_hour_usd": n * g * _price(price, row["price_per_gpu_hour"]),
                   "feasible": not reasons, "reason": "; ".join(reasons) or None}


def _colocated_option(row: dict, traffic: Traffic, slo: SLO, u: float, price: float | None) -> dict:
    base = {"mode": "colocated", "gpu": row["gpu"], "decode_label": row.get("layout_label") or row["decode_layout"],
            "decode_layout": row["decode_layout"], "decode_batch": int(row["decode_batch"]),
            "token_budget": row["token_budget"], "point_id": row["point_id"]}
    if row["status"] != "ok":
        return base | {"feasible": False, "reason": row["reason"] or row["error"]}
    g = int(row["gpus_per_instance"])
    rate = float(row["requests_per_s"])
    slots = int(row["concurrency"])
    n, ttft = _instances_for_ttft(traffic.rate_per_s, rate, float(row["ftl_s"]), u, slo.ttft_s, slots, slots / rate)
    tpot = float(row["tpot_s"])
    e2e = ttft + (traffic.osl - 1) * tpot
    out = base | {"n_instances": n, "gpus": n * g, "ftl_s": float(row["ftl_s"]), "ttft_s": ttft, "tpot_s": tpot,
                  "e2e_s": e2e, "utilization": traffic.rate_per_s / (n * rate),
                  "cost_per_hour_usd": n * g * _price(price, row["price_per_gpu_hour"])}
    reasons = _slo_misses(slo, ttft, tpot, e2e)
    out.update(feasible=not reasons, reason="; ".join(reasons) or None)
    out["deployment"] = (f"co-located: {n} × {out['decode_label']} (batch {out['decode_batch']}, token budget "
                         f"{out['token_budget']})")
    return _money(out, traffic)


def _pair(pre: dict, dec: dict, traffic: Traffic, slo: SLO) -> dict:
    e2e = pre["ttft_s"] + (traffic.osl - 1) * dec["tpot_s"]
    reasons = _slo_misses(slo, pre["ttft_s"], dec["tpot_s"], e2e)
    d = {"mode": "disaggregated", "gpu": dec["gpu"], "point_id": dec["point_id"],
         "n_prefill": pre["instances"], "prefill_label": pre["label"], "prefill_layout": pre["layout"],
         "prefill_batch": pre["batch"], "n_decode": dec["instances"], "decode_label": dec["label"],
         "decode_layout": dec["layout"], "decode_batch": dec["batch"], "gpus": pre["gpus"] + dec["gpus"],
         "cost_per_hour_usd": pre["cost_per_hour_usd"] + dec["cost_per_hour_usd"], "ftl_s": pre["ftl_s"],
         "ttft_s": pre["ttft_s"], "tpot_s": dec["tpot_s"], "e2e_s": e2e,
         "utilization_prefill": pre["utilization"], "utilization_decode": dec["utilization"],
         "feasible": not reasons, "reason": "; ".join(reasons) or None}
    d["deployment"] = (f"disaggregated: {d['n_prefill']} × prefill {d['prefill_label']} (batch {d['prefill_batch']}) "
                       f"+ {d['n_decode']} × decode {d['decode_label']} (batch {d['decode_batch']})")
    return _money(d, traffic)


def _as_rejection(o: dict) -> dict:
    """A rejected pool as a rejection row (its own reason: it cannot be part of any deployment)."""
    return {"mode": "disaggregated", "pool": o["pool"], "gpu": o["gpu"], "decode_label": f"{o['pool']} {o['label']}",
            "decode_batch": o["batch"], "reason": o["reason"]}


def plan(space: SweepSpec, traffic: Traffic, slo: SLO, *, price_per_gpu_hour: float | None = None,
         max_utilization: float = DEFAULT_MAX_UTILIZATION, runners_up: int = 5, pairs_per_pool: int = 6) -> dict:
    """Search ``space`` for the cheapest deployment meeting ``slo`` at ``traffic`` (see the module doc).

    Disaggregated deployments are sized pool by pool (TTFT depends only on the prefill pool, TPOT
    only on the decode pool); the ``pairs_per_pool`` cheapest of each are paired on the same GPU,
    model, formats and knobs (E2E couples them).
    """
    if not 0.0 < max_utilization < 1.0:
        raise UserError(f"must be in (0, 1), got {max_utilization}", where="--max-utilization")
    if not traffic.rate_per_s > 0:
        raise UserError("must be positive", where="--rate")
    modes = [m for m in space.mode if m in ("disaggregated", "colocated")]
    if not modes:
        raise UserError("the search space has no deployable mode (disaggregated or colocated)", where="--space")
    limit = space.constraints.ftl_limit_s if slo.ttft_s is None else min(space.constraints.ftl_limit_s, slo.ttft_s)
    data = space.model_dump(mode="json")
    eval_modes = (["decode"] if "disaggregated" in modes else []) + (["colocated"] if "colocated" in modes else [])
    data.update(traffic=[{"isl": traffic.isl, "osl": traffic.osl}], mode=eval_modes, ratio=["rate_matched"])
    if data.get("decode"):
        data["decode"]["context_tokens"] = None  # decode pools run at ISL + OSL/2
    data["constraints"]["ftl_limit_s"] = limit
    spec = parse_spec(data, "search space")
    exp = expand(spec)
    settings = spec_settings(spec)
    ev = Evaluator(settings)
    rows = [dict(zip(PARAMS, pt)) | ev.evaluate(pt, pid) for pt, pid in zip(exp.points, exp.ids)]
    u, price = max_utilization, price_per_gpu_hour

    candidates, rejected = [], []
    decode_opts: dict[tuple, list] = {}
    prefill_opts: dict[tuple, list] = {}
    n_prefill = 0
    for row in rows:
        if row["mode"] == "colocated":
            c = _colocated_option(row, traffic, slo, u, price)
            (candidates if c["feasible"] else rejected).append(c)
            continue
        d = _decode_option(row, traffic, slo, u, price)
        head = d["head"]
        if d["feasible"]:
            decode_opts.setdefault(head, []).append(d)
        else:
            rejected.append(_as_rejection(d))
        if head not in prefill_opts:  # each prefill pool once per GPU, model, formats and traffic
            prefill_opts[head] = []
            for lay in settings["prefill_layouts"]:
                for b in settings["prefill_batches"]:
                    n_prefill += 1
                    o = _prefill_option(ev, row, lay, b, traffic, slo, u, price)
                    (prefill_opts[head] if o["feasible"] else rejected).append(
                        o if o["feasible"] else _as_rejection(o))
    for head, decs in decode_opts.items():
        pres = sorted(prefill_opts.get(head, []), key=lambda o: (o["cost_per_hour_usd"], o["ttft_s"]))
        decs = sorted(decs, key=lambda o: (o["cost_per_hour_usd"], o["tpot_s"]))
        for pre in pres[:pairs_per_pool]:
            for dec in decs[:pairs_per_pool]:
                pair = _pair(pre, dec, traffic, slo)
                (candidates if pair["feasible"] else rejected).append(pair)
    candidates.sort(key=lambda s: (s["cost_per_hour_usd"], s["gpus"], s["tpot_s"], s["ttft_s"]))
    distinct, seen = [], set()
    for s in candidates:
        if s["deployment"] not in seen:
            seen.add(s["deployment"])
            distinct.append(s)
    by_cat: dict[str, int] = {}
    for r in rejected:
        r["category"] = _category(r.get("reason"))
        by_cat[r["category"]] = by_cat.get(r["category"], 0) + 1
    winner = distinct[0] if distinct else None
    return {
        "model": spec.model, "gpus_searched": spec.gpu,
        "traffic": {"rate_per_s": traffic.rate_per_s, "isl": traffic.isl, "osl": traffic.osl, "source": traffic.source},
        "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "e2e_s": slo.e2e_s},
        "max_utilization": max_utilization, "ftl_limit_s": limit,
        "points": len(rows) + n_prefill, "feasible_points": len(distinct),
        "winner": winner, "runners_up": distinct[1:1 + runners_up],
        "rejected": rejected, "rejected_by_reason": dict(sorted(by_cat.items(), key=lambda kv: -kv[1])),
        "rejected_closest": _closest(rejected),
        "winner_point": _winner_row(winner, rows) if winner else None,
    }


def _winner_row(w: dict, rows: list[dict]) -> dict:
    """A sweep-like row of the winner, for the DES replay (:func:`simcluster.plan.replay.scenario_for`)."""
    from simcluster.perf.layout import Layout

    row = dict(next(r for r in rows if r["point_id"] == w["point_id"]))
    if w["mode"] == "disaggregated":
        lay = Layout.parse(w["prefill_layout"], field=None)
        row.update(mode="disaggregated", prefill_layout_used=w["prefill_layout"], prefill_batch_used=w["prefill_batch"],
                   prefill_pp=lay.pp, n_prefill=w["n_prefill"], n_decode=w["n_decode"])
    return row


def _category(reason: str) -> str:
    r = reason or ""
    for key, cat in (("TPOT", "TPOT over target"), ("TTFT", "TTFT over target"), ("E2E", "E2E over target"),
                     ("FTL", "FTL over the limit"), ("does not fit", "weights do not fit"),
                     ("KV cache", "KV cache too small"), ("token budget", "token budget too small"),
                     ("layout", "layout does not fit the model or domain")):
        if key in r:
            return cat
    return "other"




def _closest(rejected: list[dict]) -> list[dict]:
    """Per candidate (mode, GPU, decode layout): the rejection closest to passing, for a short report."""
    best: dict[tuple, dict] = {}
    for r in rejected:
        key = (r["mode"], r["gpu"], r["decode_label"])
        score = _miss_size(r["reason"])
        if key not in best or score < best[key][0]:
            best[key] = (score, r)
    return [r for _, r in sorted(best.values(), key=lambda sr: (sr[1]["mode"], sr[1]["gpu"], sr[1]["decode_label"]))]


def _miss_size(reason: str | None) -> float:
    """How far a rejection is from passing: the largest SLO overshoot, or infinity when it cannot run."""
    import re

    found = re.findall(r"\(\+(\d+) %\)", reason or "")
    return max(float(x) for x in found) if found else math.inf


def format_plan(res: dict, limit_rejected: int = 40) -> str:
    """The plan as text: winner, runners-up, and why the rest were rejected."""
    t, slo = res["traffic"], res["slo"]
    targets = ", ".join(f"{k.removesuffix('_s').upper()} ≤ {_t(v)}" for k, v in slo.items() if v is not None)
    lines = [f"plan for {', '.join(res['model'])} at {t['rate_per_s']:g} requests/s, ISL {t['isl']:,} / "
             f"OSL {t['osl']:,} ({t['source']}); targets {targets}",
             f"searched {res['points']:,} design points on {', '.join(res['gpus_searched'])}; "
             f"{res['feasible_points']:,} meet the targets after sizing "
             f"(instances ≤ {res['max_utilization']:.0%} busy)", ""]
    w = res["winner"]
    if w is None:
        lines.append("NO DEPLOYMENT in the search space meets the targets.")
    else:
        lines += ["WINNER", "  " + _line(w), "  " + _detail(w)]
        if res["runners_up"]:
            lines += ["", "RUNNERS-UP"]
            for i, r in enumerate(res["runners_up"], 2):
                lines.append(f"  {i}. " + _line(r))
    lines += ["", f"REJECTED: {len(res['rejected']):,} points — "
              + ", ".join(f"{k} {v:,}" for k, v in res["rejected_by_reason"].items())]
    lines.append("  closest miss per candidate (mode, GPU, decode layout):")
    for r in res["rejected_closest"][:limit_rejected]:
        where = r.get("deployment") or f"{r['mode']} decode {r['decode_label']} (batch {r['decode_batch']})"
        lines.append(f"  - {r['gpu']} {where}: {r['reason']}")
    more = len(res["rejected_closest"]) - limit_rejected
    if more > 0:
        lines.append(f"  … {more} more candidates (--json lists every rejected point)")
    return "\n".join(lines)


def _line(s: dict) -> str:
    return (f"{s['deployment']} = {s['gpus']} × {s['gpu']}, ${s['cost_per_hour_usd']:,.2f}/h "
            f"(${s['usd_per_million_tokens']:.2f} per M output tokens); TTFT {_t(s['ttft_s'])}, "
            f"TPOT {_t(s['tpot_s'])}, E2E {_t(s['e2e_s'])}")


def _detail(s: dict) -> str:
    if s["mode"] == "disaggregated":
        return (f"FTL {_t(s['ftl_s'])}; utilisation prefill {s['utilization_prefill']:.0%}, decode "
                f"{s['utilization_decode']:.0%}; point {s['point_id']}")
    return f"FTL {_t(s['ftl_s'])}; utilisation {s['utilization']:.0%}; point {s['point_id']}"


def verify(res: dict, traffic: Traffic, slo: SLO, out_dir: Path, *, requests: int = 2000,
           seed: int = 0, trace: str | None = None) -> dict:
    """Replay the winner with the DES at the planned rate; returns measured against predicted."""
    from simcluster.plan.replay import run_point

    w = res["winner"]
    if w is None:
        raise UserError("nothing to verify: no deployment meets the targets", where="--verify")
    row = res["winner_point"]
    inst = (w["n_prefill"], w["n_decode"]) if w["mode"] == "disaggregated" else w["n_instances"]
    workload = None
    if trace is not None:
        workload = {"kind": "trace", "path": str(Path(trace).resolve()), "max_requests": int(requests)}
    s = run_point(row, out_dir, requests=requests, seed=seed, slo=slo.__dict__, rate_per_s=traffic.rate_per_s,
                  instances=inst, workload=workload)
    return {
        "out_dir": str(out_dir),
        "predicted": {"ttft_s": w["ttft_s"], "tpot_s": w["tpot_s"], "e2e_s": w["e2e_s"]},
        "des": {"ttft_mean_s": s["ttft_s"]["mean"], "ttft_p90_s": s["ttft_s"]["p90"],
                "tpot_mean_s": s["tpot_s"]["mean"],
                "tpot_p90_s": s["tpot_s"]["p90"], "e2e_mean_s": s["e2e_s"]["mean"],
                "slo_attainment": s["slo"]["attainment"], "requests_per_s": s["throughput"]["requests_per_s"]},
    }
