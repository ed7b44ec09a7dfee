"""The paper studies computed from a sweep's points (``scenarios/studies/*.yaml``, docs/studies.md).

Each function takes the sweep's points (a DataFrame as :class:`~simcluster.plan.store.PointStore`
reads it) and returns plain JSON-ready data: our figures next to the papers' targets and bands
(SEED-NOTES §8), with a ``within`` flag where a band exists. Nothing here is fitted: the figures
are what the cost model and the sweep give.

Frontiers are tokens/s/GPU (throughput, x) against tokens/s/user (interactivity, y); "at
interactivity ≥ y" means the best throughput among frontier points that are at least that
interactive (a TTL budget of 1/y).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from simcluster.plan.pareto import X, Y, best_throughput_at, interactivity_on_curve, pareto_mask

# SEED-NOTES §8 bands
HELIX_BANDS = {
    "deepseek-r1": {"max_interactivity_ratio": (1.3, 1.8, 1.5), "throughput_ratio_at_baseline_floor": (16, 64, 32),
                    "hop_b_max_drop": (0.0, 0.03, 0.01)},
    "llama-3.1-405b": {"max_interactivity_ratio": (1.05, 1.25, 1.13), "throughput_ratio_at_baseline_floor": (3, 5, 4),
                       "hop_b_max_drop": (0.08, 0.16, 0.12)},
}
RATIO_TARGETS = {  # Fig. 9: optimal ctx:gen ratio, low -> high interactivity (B-3: endpoints within x2)
    "deepseek-r1": (3.64, 0.07), "llama-3.1-405b": (2.075, 0.22), "llama-3.1-70b": (0.96, 0.46),
    "llama-3.1-8b": (0.42, 0.36),
}


def front(df: pd.DataFrame) -> pd.DataFrame:
    """Frontier rows of ``df`` (ok points), sorted by interactivity ascending."""
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return ok
    return ok[pareto_mask(ok[X].to_numpy(), ok[Y].to_numpy())].sort_values(Y)


def _band(value: float, band: tuple) -> dict:
    lo, hi, paper = band
    ok = value is not None and not (isinstance(value, float) and math.isnan(value))
    return {"ours": value, "paper": paper, "band": [lo, hi], "within": bool(ok and lo <= value <= hi)}


def _f(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


# ----------------------------------------------------------------------------- Helix (H-7..H-10)
def helix_compare(points: pd.DataFrame) -> dict:
    """Helix frontier against the best baseline (every other layout kind) in one group of points."""
    helix = front(points[points["layout_kind"] == "helix"])
    base = front(points[points["layout_kind"] != "helix"])
    if helix.empty or base.empty:
        return {"error": "needs both Helix and baseline points"}
    y_base = float(base[Y].max())
    y_helix = float(helix[Y].max())
    x_base_floor = best_throughput_at(base[X], base[Y], y_base)
    x_helix_floor = best_throughput_at(helix[X], helix[Y], y_base)
    conc_base = float(base.loc[base[Y] >= y_base, "concurrency"].max())
    conc_helix = float(helix.loc[helix[Y] >= y_base, "concurrency"].max()) if (helix[Y] >= y_base).any() else math.nan
    # throughput ratio over TTL budgets: where does it peak?
    levels = np.unique(np.concatenate([base[Y].to_numpy(), [y_base]]))
    curve = []
    for y in levels:
        xb = best_throughput_at(base[X], base[Y], y)
        xh = best_throughput_at(helix[X], helix[Y], y)
        curve.append({"tokens_per_s_per_user": float(y), "ttl_ms": 1e3 / float(y), "baseline": xb, "helix": _f(xh),
                      "ratio": _f(xh / xb) if xb > 0 else None})
    ratios = [c["ratio"] if c["ratio"] is not None else -1 for c in curve]
    peak = curve[int(np.argmax(ratios))]
    best_base = base.loc[base[Y].idxmax()]
    best_helix = helix.loc[helix[Y].idxmax()]
    return {
        "baseline_max_interactivity": y_base, "helix_max_interactivity": y_helix,
        "max_interactivity_ratio": y_helix / y_base,
        "baseline_floor_ttl_ms": 1e3 / y_base,
        "throughput_at_baseline_floor": {"baseline": x_base_floor, "helix": _f(x_helix_floor)},
        "throughput_ratio_at_baseline_floor": _f(x_helix_floor / x_base_floor),
        "concurrency_at_baseline_floor": {"baseline": conc_base, "helix": _f(conc_helix)},
        "max_throughput_ratio": float(helix[X].max() / base[X].max()),
        "ratio_peak": {"at_tokens_per_s_per_user": peak["tokens_per_s_per_user"], "ratio": peak["ratio"],
                       "at_baseline_floor": bool(peak["tokens_per_s_per_user"] >= y_base * 0.999)},
        "ratio_curve": curve,
        "baseline_fastest": f"{best_base['layout_label']} batch {int(best_base['decode_batch'])}",
        "helix_fastest": f"{best_helix['layout_label']} batch {int(best_helix['decode_batch'])}",
        "baseline_frontier_kinds": sorted(set(base["layout_kind"])),
    }


def hop_b_drop(on: pd.DataFrame, off: pd.DataFrame) -> dict:
    """Largest loss of interactivity at fixed throughput when HOP-B is off (Helix layouts only).

    For each point of the HOP-B-on Helix frontier, the HOP-B-off frontier's interactivity at that
    throughput, the frontier read as a curve (:func:`~simcluster.plan.pareto.interactivity_on_curve`,
    as the paper reads its Fig. 7 "at fixed tokens/s/GPU"); the drop is ``1 − off/on``. Throughputs
    the off frontier cannot reach are counted apart (``unreachable``).
    """
    f_on = front(on[on["layout_kind"] == "helix"])
    f_off = front(off[off["layout_kind"] == "helix"])
    drops, unreachable = [], 0
    for x, y in zip(f_on[X], f_on[Y]):
        y_off = interactivity_on_curve(f_off[X], f_off[Y], x)
        if math.isnan(y_off):
            unreachable += 1
            continue
        drops.append(1.0 - y_off / y)
    return {"max_drop": max(drops) if drops else None, "drops": drops, "unreachable_points": unreachable,
            "frontier_points": int(len(f_on))}


def helix_study(df: pd.DataFrame) -> dict:
    out = {"groups": [], "hop_b": [], "targets": []}
    for (model, hop_b, exch), g in df.groupby(["model", "hop_b", "exchange_model"]):
        res = helix_compare(g)
        out["groups"].append({"model": model, "hop_b": bool(hop_b), "exchange_model": exch, **res})
    for (model, exch), g in df.groupby(["model", "exchange_model"]):
        if set(g["hop_b"]) >= {True, False}:
            d = hop_b_drop(g[g["hop_b"]], g[~g["hop_b"]])
            out["hop_b"].append({"model": model, "exchange_model": exch, **d})
    for grp in out["groups"]:
        bands = HELIX_BANDS.get(grp["model"])
        if not bands or not grp["hop_b"] or "error" in grp:
            continue
        tag = "H-7" if grp["model"] == "deepseek-r1" else "H-9"
        tag8 = "H-8" if grp["model"] == "deepseek-r1" else "H-9"
        out["targets"].append({"id": tag, "what": "max interactivity ratio", "exchange_model": grp["exchange_model"],
                               **_band(grp["max_interactivity_ratio"], bands["max_interactivity_ratio"])})
        out["targets"].append({"id": tag8, "what": "throughput ratio at the baseline's tightest TTL",
                               "exchange_model": grp["exchange_model"],
                               **_band(grp["throughput_ratio_at_baseline_floor"],
                                       bands["throughput_ratio_at_baseline_floor"])})
        if grp["model"] == "deepseek-r1":
            out["targets"].append({"id": "H-8", "what": "throughput ratio peaks at the baseline's latency floor",
                                   "exchange_model": grp["exchange_model"],
                                   "ours": grp["ratio_peak"]["at_baseline_floor"], "within":
                                       grp["ratio_peak"]["at_baseline_floor"]})
    for h in out["hop_b"]:
        bands = HELIX_BANDS.get(h["model"])
        if bands and h["max_drop"] is not None:
            out["targets"].append({"id": "H-10", "what": "HOP-B off: max interactivity drop",
                                   "model": h["model"], "exchange_model": h["exchange_model"],
                                   **_band(h["max_drop"], bands["hop_b_max_drop"])})
    return out


# ----------------------------------------------------------------------------- ctx:gen ratio (B-3)
def ratio_study(df: pd.DataFrame) -> dict:
    """Optimal ctx:gen ratio along each model's rate-matched frontier (low → high interactivity)."""
    d = df[(df["mode"] == "disaggregated") & (df["ratio"] == "rate_matched")]
    models = []
    for (model, isl, osl), g in d.groupby(["model", "isl", "osl"]):
        f = front(g)
        if f.empty:
            continue
        r = f["ctx_gen_ratio"].to_numpy()
        steps = np.diff(r)
        non_increasing = float((steps <= 1e-12).mean()) if len(steps) else 1.0
        entry = {"model": model, "isl": int(isl), "osl": int(osl),
                 "ratio_low_interactivity": float(r[0]), "ratio_high_interactivity": float(r[-1]),
                 "interactivity_range": [float(f[Y].iloc[0]), float(f[Y].iloc[-1])],
                 "span": float(r[0] / r[-1]) if r[-1] > 0 else None,
                 "non_increasing_fraction": non_increasing,
                 "curve": [{"tokens_per_s_per_user": float(a), "ctx_gen_ratio": float(b),
                            "tokens_per_s_per_gpu": float(c),
                            "decode": lab, "prefill": pl}
                           for a, b, c, lab, pl in zip(f[Y], r, f[X], f["layout_label"], f["prefill_label"])]}
        tgt = RATIO_TARGETS.get(model)
        if tgt:
            lo, hi = tgt
            entry["paper"] = {"low": lo, "high": hi}
            entry["low_within_x2"] = bool(lo / 2 <= entry["ratio_low_interactivity"] <= lo * 2)
            entry["high_within_x2"] = bool(hi / 2 <= entry["ratio_high_interactivity"] <= hi * 2)
        models.append(entry)
    order = [m["model"] for m in sorted(models, key=lambda m: -(m["span"] or 0))]
    paper_order = [m for m in ("deepseek-r1", "llama-3.1-405b", "llama-3.1-70b", "llama-3.1-8b")
                   if m in {e["model"] for e in models}]
    targets = []
    for m in models:
        targets.append({"id": "B-3", "what": "ratio non-increasing with interactivity", "model": m["model"],
                        "ours": m["non_increasing_fraction"], "within": m["non_increasing_fraction"] == 1.0})
        if "paper" in m:
            targets.append({"id": "B-3", "what": "ratio at the relaxed end (within x2)", "model": m["model"],
                            "ours": m["ratio_low_interactivity"], "paper": m["paper"]["low"],
                            "within": m["low_within_x2"]})
            targets.append({"id": "B-3", "what": "ratio at the tight end (within x2)", "model": m["model"],
                            "ours": m["ratio_high_interactivity"], "paper": m["paper"]["high"],
                            "within": m["high_within_x2"]})
    targets.append({"id": "B-3", "what": "span order DSR1 > 405B > 70B > 8B", "ours": ", ".join(order),
                    "within": order == paper_order})
    return {"models": models, "span_order": order, "paper_span_order": paper_order,
            "span_order_matches": order == paper_order, "targets": targets}


# ----------------------------------------------------------------------------- fixed ratios (B-4)
def fixed_ratio_study(df: pd.DataFrame) -> dict:
    """Fixed ctx:gen ratios against rate matching, normalised to the dynamic frontier's best throughput."""
    d = df[df["mode"] == "disaggregated"]
    out = {"groups": []}
    for (model, isl, osl), g in d.groupby(["model", "isl", "osl"]):
        dyn = front(g[g["ratio"] == "rate_matched"])
        if dyn.empty:
            continue
        norm = float(dyn[X].max())
        y_relaxed, y_tight = float(dyn[Y].min()), float(dyn[Y].max())
        levels = np.unique(dyn[Y].to_numpy())
        tight_dyn = best_throughput_at(dyn[X], dyn[Y], y_tight)
        grp = {"model": model, "isl": int(isl), "osl": int(osl), "normaliser_tokens_per_s_per_gpu": norm,
               "ratios": {}}
        for ratio, gf in g[g["ratio"] != "rate_matched"].groupby("ratio"):
            f = front(gf)
            relaxed = float(f[X].max()) / norm if not f.empty else math.nan
            tight_fixed = best_throughput_at(f[X], f[Y], y_tight) if not f.empty else math.nan
            tight = tight_fixed / tight_dyn
            worse = []
            for y in levels:
                a = best_throughput_at(f[X], f[Y], y)
                b = best_throughput_at(dyn[X], dyn[Y], y)
                if not math.isnan(a):
                    worse.append(a <= b * (1 + 1e-9))
            grp["ratios"][str(ratio)] = {
                "relaxed_end_normalised": _f(relaxed), "tight_end_normalised": _f(tight_fixed / norm),
                "tight_end_vs_dynamic": _f(tight),
                "dynamic_at_least_as_good_everywhere": bool(all(worse)),
                "curve": [{"tokens_per_s_per_user": float(a), "normalised": float(b) / norm}
                          for a, b in zip(f[Y], f[X])],
            }
        grp["dynamic_curve"] = [{"tokens_per_s_per_user": float(a), "normalised": float(b) / norm}
                                for a, b in zip(dyn[Y], dyn[X])]
        grp["interactivity_range"] = [y_relaxed, y_tight]
        grp["dynamic_tight_end_normalised"] = _f(tight_dyn / norm)
        r35, r05 = grp["ratios"].get("3.5"), grp["ratios"].get("0.5")
        targets = []
        if r35:
            v = r35["relaxed_end_normalised"]
            targets.append({"id": "B-4", "what": "ratio 3.5 at the relaxed end (normalised)", "ours": v,
                            "paper": 0.971, "within": v is not None and v >= 0.95})
            # The paper's Fig. 10 puts every curve on one axis normalised to the best throughput (its
            # 0.971 and 0.984 at the relaxed end are on it), so its 0.045 is read there too. Against the
            # dynamic frontier at the same TTL a fixed ratio R >= r never falls below (1+r)/(1+R) >=
            # 1/(1+R) = 0.22 for R = 3.5 (plan/ratematch.py), which that reading could not reach.
            v = r35["tight_end_normalised"]
            targets.append({"id": "B-4", "what": "ratio 3.5 at the tightest TTL (normalised)", "ours": v,
                            "paper": 0.045, "within": v is not None and v < 0.10})
        if r05:
            v = r05["relaxed_end_normalised"]
            targets.append({"id": "B-4", "what": "ratio 0.5 plateau at the relaxed end (normalised)", "ours": v,
                            "paper": 0.42, "within": v is not None and abs(v - 0.42) <= 0.1})
        targets.append({"id": "B-4", "what": "dynamic >= every fixed ratio everywhere",
                        "ours": all(r["dynamic_at_least_as_good_everywhere"] for r in grp["ratios"].values()),
                        "within": all(r["dynamic_at_least_as_good_everywhere"] for r in grp["ratios"].values())})
        grp["targets"] = targets
        out["groups"].append(grp)
    return out


# ----------------------------------------------------------------------------- disagg vs co-located (B-6)
def disagg_vs_colocated_study(df: pd.DataFrame, levels: int = 12) -> dict:
    """Throughput of the disaggregated frontier over the co-located one at matched interactivity.

    The interactivity range both frontiers reach is cut into ``levels`` log-spaced TTL budgets; at
    each the ratio of best throughputs is taken. The gain is reported per third of the range
    (relaxed / medium / tight), which is how the paper states where disaggregation helps most.
    """
    out = {"groups": []}
    for (model, isl, osl), g in df.groupby(["model", "isl", "osl"]):
        dis = front(g[(g["mode"] == "disaggregated") & (g["ratio"] == "rate_matched")])
        col = front(g[g["mode"] == "colocated"])
        if dis.empty or col.empty:
            continue
        lo = max(float(dis[Y].min()), float(col[Y].min()))
        hi = min(float(dis[Y].max()), float(col[Y].max()))
        if not hi > lo:
            continue
        ys = np.geomspace(lo, hi, levels)
        ratios = []
        for y in ys:
            a = best_throughput_at(dis[X], dis[Y], y)
            b = best_throughput_at(col[X], col[Y], y)
            ratios.append(a / b if b > 0 else math.nan)
        r = np.array(ratios)
        thirds = np.array_split(r, 3)
        by_third = {name: float(np.nanmax(t)) for name, t in zip(("relaxed", "medium", "tight"), thirds)}
        out["groups"].append({
            "model": model, "isl": int(isl), "osl": int(osl),
            "overlap_tokens_per_s_per_user": [lo, hi],
            "max_gain": float(np.nanmax(r)), "min_gain": float(np.nanmin(r)),
            "gain_by_third": by_third, "peak_third": max(by_third, key=by_third.get),
            "curve": [{"tokens_per_s_per_user": float(y), "disaggregated_over_colocated": _f(v)}
                      for y, v in zip(ys, r)],
            "disaggregated_max_throughput": float(dis[X].max()), "colocated_max_throughput": float(col[X].max()),
        })
    return out


STUDIES = {"helix": helix_study, "ratio": ratio_study, "fixed_ratio": fixed_ratio_study,
           "disagg_vs_colocated": disagg_vs_colocated_study}


def run_study(kind: str, df: pd.DataFrame) -> dict:
    return {"kind": kind, **STUDIES[kind](df)}
