"""Pareto frontiers: throughput (tokens/s/GPU) against interactivity (tokens/s/user), both maximised.

A point is on the frontier when no other point is at least as good on both axes and strictly better
on one. Equal points are all kept (neither dominates the other).
"""

from __future__ import annotations

import numpy as np

X = "tokens_per_s_per_gpu"
Y = "tokens_per_s_per_user"

# Columns of pareto.parquet, in order (those the points have).
FRONTIER_COLUMNS = (
    "group", "point_id", X, Y, "ttft_s", "tpot_s", "e2e_s", "gpus", "tp", "pp", "ep", "dp", "kvp", "tpa", "tpf",
    "tpo", "layout_label", "layout_kind", "decode_batch", "mode", "ratio", "ctx_gen_ratio", "n_prefill",
    "n_decode", "prefill_label", "prefill_batch_used", "gpu", "model", "isl", "osl", "weights", "kv",
    "activations", "framework", "hop_b", "exchange_model", "usd_per_million_tokens",
)


def pareto_mask(x, y) -> np.ndarray:
    """Boolean mask of the non-dominated points of (x, y), both to be maximised. O(n log n).

    NaN coordinates are never on the frontier.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    mask = np.zeros(n, dtype=bool)
    ok = np.flatnonzero(~(np.isnan(x) | np.isnan(y)))
    if len(ok) == 0:
        return mask
    order = ok[np.lexsort((-x[ok], -y[ok]))]  # y descending, then x descending
    best_above = -np.inf  # best x among points with strictly greater y
    i = 0
    while i < len(order):
        j = i
        yi = y[order[i]]
        while j < len(order) and y[order[j]] == yi:
            j += 1
        group = order[i:j]
        top = x[group[0]]  # the group's max x (sorted descending)
        if top > best_above:
            mask[group[x[group] == top]] = True
        best_above = max(best_above, top)
        i = j
    return mask


def brute_force_mask(x, y) -> np.ndarray:
    """The definition, O(n²): for tests."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    out = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        if np.isnan(x[i]) or np.isnan(y[i]):
            continue
        dom = (x >= x[i]) & (y >= y[i]) & ((x > x[i]) | (y > y[i]))
        out[i] = not dom.any()
    return out


def group_key(df, group_by: list[str]):
    cols = [c for c in group_by if c in df.columns]
    if not cols:
        return ["all"] * len(df)
    if not len(df):
        return []
    parts = [df[c].astype(object).where(df[c].notna(), "-").map(str) for c in cols]
    key = parts[0]
    for part in parts[1:]:
        key = key + "|" + part
    return key.tolist()


def frontier(df, group_by: list[str] = ("model", "isl", "osl", "mode", "ratio")):
    """The frontier rows of the ``ok`` points of ``df``, per group, sorted by interactivity.

    Adds a ``group`` column (the group values joined by ``|``).
    """
    import pandas as pd

    ok = df[df["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame(columns=[c for c in FRONTIER_COLUMNS])
    cols = [c for c in group_by if c in ok.columns]
    parts = []
    for key, g in (ok.groupby(cols, sort=True, dropna=False) if cols else [((), ok)]):
        key = key if isinstance(key, tuple) else (key,)
        g = g[pareto_mask(g[X].to_numpy(), g[Y].to_numpy())].copy()
        g["group"] = "|".join("-" if pd.isna(v) else str(v) for v in key) if cols else "all"
        parts.append(g)
    out = pd.concat(parts).sort_values(["group", Y], ascending=[True, False])
    cols = [c for c in FRONTIER_COLUMNS if c in out.columns]
    return out[cols].reset_index(drop=True)


def best_throughput_at(front_x, front_y, y_min: float) -> float:
    """Highest throughput on a frontier among points with interactivity ≥ ``y_min`` (NaN if none)."""
    fx = np.asarray(front_x, dtype=float)
    fy = np.asarray(front_y, dtype=float)
    sel = fy >= y_min
    return float(fx[sel].max()) if sel.any() else float("nan")


def best_interactivity_at(front_x, front_y, x_min: float) -> float:
    """Highest interactivity on a frontier among points with throughput ≥ ``x_min`` (NaN if none)."""
    fx = np.asarray(front_x, dtype=float)
    fy = np.asarray(front_y, dtype=float)
    sel = fx >= x_min
    return float(fy[sel].max()) if sel.any() else float("nan")


def interactivity_on_curve(front_x, front_y, x: float) -> float:
    """Interactivity of a frontier read as a curve at throughput ``x`` (NaN beyond its reach).

    The frontier's points joined by straight lines in log-log space: the papers draw their frontiers
    as lines through the points and compare them "at fixed tokens/s/GPU"; log-log interpolation is
    independent of the units and of the normalisation [INFERRED]. Below the frontier's lowest
    throughput, its highest interactivity. :func:`best_interactivity_at` is the step reading — the best *point* at
    ``x`` or more — which turns a 0.1 % throughput loss at the curve's end into a jump to the next
    point.
    """
    fx = np.asarray(front_x, dtype=float)
    fy = np.asarray(front_y, dtype=float)
    if not len(fx) or x > fx.max() * (1 + 1e-12):
        return float("nan")
    order = np.argsort(fx)
    fx, fy = fx[order], fy[order]
    if x <= fx[0]:
        return float(fy.max())
    return float(np.exp(np.interp(np.log(x), np.log(fx), np.log(fy))))
