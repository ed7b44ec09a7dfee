"""How much the measured rows disagree with themselves: configurations measured more than once.

A validation file can hold the same deployment measured more than once: the same system, framework,
framework version and container image, model, number formats, layout, lengths and concurrency, run on
different days or listed twice by the export. When such repeats differ, no simulator that gives one
answer per configuration can match all of them, so part of any model's error is the reference's own
spread. This module measures that part.

For a group of rows that share a configuration, the best single prediction ``c`` minimises
``sum_i |c / m_i - 1|`` (the group's share of the MAPE). That sum is convex and piecewise linear in
``c`` with its breakpoints at the measured values, so its minimum lies at one of them
(:func:`best_constant_error`). The **floor** of a file is the sum of those minima over all groups
divided by the number of rows with a measurement: the lowest MAPE any predictor that answers a
configuration with one value can reach on it. Rows measured once contribute 0, so the floor is a lower
bound, not an estimate of the run-to-run noise of unrepeated rows.

Rows whose values are equal (to 1e-6 relative) are one measurement exported twice: they stay in the
row counts (the MAPE counts them twice as well) but do not make a configuration "repeated".

A repeated configuration may not be one deployment: the export drops whether speculative decoding
ran, so an MTP run and a run without it can share every column. The report keeps the configurations
whose harness recipe is listed both with and without MTP (``mtp_ambiguous``) apart from the others.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from simcluster.validate.fit import config_signature
from simcluster.validate.recipes import image_of

METRICS = (("ttft", "ttft_ms"), ("tpot", "tpot_ms"))
_SAME = 1e-6  # relative difference under which two measured values are one measurement exported twice


def repeat_key(row) -> tuple:
    """The configuration a row measured: deployment columns (:func:`~simcluster.validate.fit.config_signature`),
    per-rank batch sizes, lengths, the concurrency its source names, framework version and container image."""
    batches = tuple(s.batch_size if s is not None else -1 for s in (row.agg, row.prefill, row.decode))
    return (config_signature(row), batches, row.isl, row.osl, row.concurrency_hint, row.backend_version,
            image_of(row.source))


def best_constant_error(values) -> float:
    """min over c of sum_i |c / m_i - 1| for measured values m_i > 0 (the minimum lies at one of them)."""
    m = np.asarray([v for v in values if v > 0 and math.isfinite(v)], dtype=float)
    if len(m) < 2:
        return 0.0
    return float(min(np.sum(np.abs(c / m - 1.0)) for c in m))


def _distinct(values) -> int:
    v = sorted(x for x in values if x > 0 and math.isfinite(x))
    n = 1 if v else 0
    for a, b in zip(v, v[1:]):
        if b - a > _SAME * b:
            n += 1
    return n


def repeat_spread(results) -> dict:
    """The repeated configurations among ``results`` (:class:`~simcluster.validate.runner.RowResult`)
    and the MAPE floor they set, per metric; with the model's own MAPE on the same rows."""
    groups: dict[tuple, list] = defaultdict(list)
    for res in results:
        if res.row.has_measurement:
            groups[repeat_key(res.row)].append(res)
    out: dict = {"rows_measured": sum(len(g) for g in groups.values()), "configurations": len(groups)}
    for name, attr in METRICS:
        # per group: its rows with this metric measured, and their values
        measured = [[(r, getattr(r.row, attr)) for r in g if math.isfinite(getattr(r.row, attr))]
                    for g in groups.values()]
        parts: dict[str, list] = {"all": [], "mtp_ambiguous": [], "other": []}
        for g in measured:
            if _distinct([v for _, v in g]) < 2:
                continue
            amb = any(r.setup is not None and r.setup.recipe_ambiguous for r, _ in g)
            parts["all"].append(g)
            parts["mtp_ambiguous" if amb else "other"].append(g)
        n_rows = sum(len(g) for g in measured)
        entry: dict = {"rows": n_rows}
        for part, gs in parts.items():
            rows = [rv for g in gs for rv in g]
            floor = sum(best_constant_error([v for _, v in g]) for g in gs)
            spread = [max(v for _, v in g) / min(v for _, v in g) for g in gs]
            model = [abs(p / v - 1.0) * 100.0 for r, v in rows
                     if r.simulated and math.isfinite(p := getattr(r.prediction, attr))]
            entry[part] = {
                "configurations": len(gs),
                "rows": len(rows),
                "max_over_min_median": float(np.median(spread)) if spread else None,
                "max_over_min_p90": float(np.percentile(spread, 90)) if spread else None,
                # the floor over these rows, and what it adds to the MAPE of every measured row
                "floor_mape_pct_on_rows": 100.0 * floor / len(rows) if rows else None,
                "floor_mape_pct_of_file": 100.0 * floor / n_rows if n_rows else None,
                "model_mape_pct_on_rows": float(np.mean(model)) if model else None,
            }
        out[name] = entry
    return out


def _fmt(v, ratio: bool = False) -> str:
    return "—" if v is None else (f"{v:.2f}" if ratio else f"{v:.1f}%")


def format_spread(spread: dict) -> list[str]:
    """Plain-text lines of :func:`repeat_spread` for the validation report."""
    if not any(spread[name]["all"]["configurations"] for name, _ in METRICS):
        return ["", "repeat measurements: no configuration was measured more than once with different values"]
    lines = ["", "repeat measurements (one configuration measured more than once; docs/validation.md)"]
    lines.append(f"{'':<28} {'configs':>8} {'rows':>6} {'max/min med':>12} {'p90':>6} "
                 f"{'floor rows':>11} {'floor file':>11} {'model rows':>11}")
    for name, _ in METRICS:
        for part in ("all", "mtp_ambiguous", "other"):
            e = spread[name][part]
            if not e["configurations"]:
                continue
            lines.append(f"{(name.upper() + ' ' + part):<28} {e['configurations']:>8} {e['rows']:>6} "
                         f"{_fmt(e['max_over_min_median'], True):>12} {_fmt(e['max_over_min_p90'], True):>6} "
                         f"{_fmt(e['floor_mape_pct_on_rows']):>11} {_fmt(e['floor_mape_pct_of_file']):>11} "
                         f"{_fmt(e['model_mape_pct_on_rows']):>11}")
    return lines
