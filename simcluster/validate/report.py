"""Error report of a validation: MAPE of TTFT and TPOT per system, framework, model, mode, benchmark
harness and concurrency band.

MAPE = mean over rows of |predicted − measured| / measured, in percent, over the rows that were
simulated and have a measurement. Coverage = simulated rows / rows. "Calibrated systems" are the
GPUs with measured op tables (``CALIBRATED_SYSTEMS``), where the fidelity targets apply.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from simcluster.errors import UserError

CALIBRATED_SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm", "gb200", "rtx_pro_6000")
TARGETS = {"ttft_mape_pct": 10.0, "tpot_mape_pct": 5.0, "coverage_pct": 90.0}
GROUPS = ("system", "backend", "model", "mode", "harness", "concurrency")
# concurrency bands of the report (clients of the closed loop, upper edges inclusive): where the error
# of a deployment changes with load (docs/validation.md, "Where the model is weak")
CONCURRENCY_BANDS = (4, 16, 64, 256)

PRED_COLUMNS = ("predicted_ttft_ms", "predicted_tpot_ms", "ttft_error_pct", "tpot_error_pct", "status", "reason",
                "sim_layout", "sim_weights", "sim_kv_cache", "sim_concurrency", "sim_prefill_workers",
                "sim_decode_workers", "sim_notes", "sim_ttft_first_wave_ms", "sim_ttft_steady_ms")


def _ape(pred: float, meas: float) -> float:
    if math.isnan(pred) or math.isnan(meas) or meas <= 0:
        return math.nan
    return abs(pred - meas) / meas * 100.0


def row_errors(res) -> tuple[float, float]:
    """(TTFT, TPOT) absolute percentage errors of one :class:`RowResult` (NaN when not available)."""
    if not res.simulated:
        return math.nan, math.nan
    return _ape(res.prediction.ttft_ms, res.row.ttft_ms), _ape(res.prediction.tpot_ms, res.row.tpot_ms)


def _key(res, group: str) -> str:
    r = res.row
    if group == "system":
        return r.system
    if group == "backend":
        return r.backend
    if group == "model":
        return res.setup.model if res.setup is not None else r.model_path
    if group == "mode":
        return r.mode
    if group == "harness":
        from simcluster.validate.recipes import harness_of

        h = res.setup.harness if res.setup is not None else harness_of(r.source)
        return h or "unknown"
    if group == "concurrency":
        return concurrency_band(res.setup.concurrency if res.setup is not None else r.stated_concurrency)
    raise ValueError(group)


def concurrency_band(c: int) -> str:
    """The report's band of a concurrency: ``1-4``, ``5-16``, ``17-64``, ``65-256``, ``257+`` (``unknown``
    when the row names none)."""
    if not c or c <= 0:
        return "unknown"
    lo = 1
    for hi in CONCURRENCY_BANDS:
        if c <= hi:
            return f"{lo}-{hi}"
        lo = hi + 1
    return f"{lo}+"


def _order(group: str, key: str):
    """Sort key of a group's entries: bands by load, everything else alphabetically."""
    if group == "concurrency":
        head = key.split("-")[0].rstrip("+")
        return (0, int(head), "") if head.isdigit() else (1, 0, key)
    return (0, 0, key)


def _summary(results) -> dict:
    n = len(results)
    sim = [r for r in results if r.simulated]
    e = np.array([row_errors(r) for r in sim], dtype=float).reshape(-1, 2)
    t_ok = ~np.isnan(e[:, 0])
    p_ok = ~np.isnan(e[:, 1])
    out = {
        "rows": n,
        "simulated": len(sim),
        "coverage_pct": 100.0 * len(sim) / n if n else math.nan,
        "ttft_mape_pct": float(np.mean(e[t_ok, 0])) if t_ok.any() else None,
        "tpot_mape_pct": float(np.mean(e[p_ok, 1])) if p_ok.any() else None,
        "ttft_median_ape_pct": float(np.median(e[t_ok, 0])) if t_ok.any() else None,
        "tpot_median_ape_pct": float(np.median(e[p_ok, 1])) if p_ok.any() else None,
        "ttft_within_10pct": float(np.mean(e[t_ok, 0] <= 10.0)) * 100 if t_ok.any() else None,
        "tpot_within_5pct": float(np.mean(e[p_ok, 1] <= 5.0)) * 100 if p_ok.any() else None,
    }
    return out


def build_report(results, *, split: dict | None = None) -> dict:
    """The report as a dict (what ``--json`` prints)."""
    rep: dict = {"overall": _summary(results)}
    cal = [r for r in results if r.row.system in CALIBRATED_SYSTEMS]
    rep["calibrated_systems"] = _summary(cal)
    rep["targets"] = dict(TARGETS)
    for g in GROUPS:
        keys = sorted({_key(r, g) for r in results}, key=lambda k, g=g: _order(g, k))
        rep[f"by_{g}"] = {k: _summary([r for r in results if _key(r, g) == k]) for k in keys}
    reasons: dict[str, int] = {}
    for r in results:
        if not r.simulated:
            reasons[r.reason or "not simulated"] = reasons.get(r.reason or "not simulated", 0) + 1
    rep["not_simulated"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    if split is not None:
        rep["split"] = split
    from simcluster.validate.repeats import repeat_spread

    rep["repeats"] = repeat_spread(results)
    return rep


def _fmt(v, pct=True) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.1f}%" if pct else str(v)


def format_report(rep: dict, *, title: str = "") -> str:
    """Plain-text tables of a report."""
    lines = []
    if title:
        lines += [title, "=" * len(title)]

    def table(name: str, entries: dict) -> None:
        lines.append("")
        lines.append(f"{name:<28} {'rows':>6} {'sim':>6} {'cover':>7} {'TTFT MAPE':>10} {'TPOT MAPE':>10} "
                     f"{'TTFT med':>9} {'TPOT med':>9}")
        for k, s in entries.items():
            lines.append(f"{str(k)[:28]:<28} {s['rows']:>6} {s['simulated']:>6} {_fmt(s['coverage_pct']):>7} "
                         f"{_fmt(s['ttft_mape_pct']):>10} {_fmt(s['tpot_mape_pct']):>10} "
                         f"{_fmt(s['ttft_median_ape_pct']):>9} {_fmt(s['tpot_median_ape_pct']):>9}")

    table("overall", {"all rows": rep["overall"], "calibrated systems": rep["calibrated_systems"]})
    for g in GROUPS:
        table(f"by {g}", rep[f"by_{g}"])
    if rep.get("not_simulated"):
        lines.append("")
        lines.append("not simulated:")
        for reason, n in rep["not_simulated"].items():
            lines.append(f"  {n:>5}  {reason}")
    if rep.get("repeats"):
        from simcluster.validate.repeats import format_spread

        lines += format_spread(rep["repeats"])
    t = rep["targets"]
    c = rep["calibrated_systems"]
    lines.append("")
    lines.append(f"targets on calibrated systems: TTFT MAPE ≤ {t['ttft_mape_pct']:.0f}% "
                 f"(got {_fmt(c['ttft_mape_pct'])}), TPOT MAPE ≤ {t['tpot_mape_pct']:.0f}% "
                 f"(got {_fmt(c['tpot_mape_pct'])}), coverage ≥ {t['coverage_pct']:.0f}% "
                 f"(got {_fmt(c['coverage_pct'])})")
    return "\n".join(lines)


def write_predictions(path: str | Path, results, columns: list[str]) -> None:
    """The input rows with the predictions (and the reason when a row was not simulated) appended."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        f = p.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write ({exc.strerror})", where=str(p)) from None
    with f:
        w = csv.writer(f)
        w.writerow(["line", "id", "backend", "model_path", "system", "mode", "isl", "osl", "silicon_ttft_ms",
                    "silicon_tpot_ms", *PRED_COLUMNS])
        for res in results:
            r = res.row
            e_t, e_p = row_errors(res)
            s = res.setup
            pred = res.prediction if res.simulated else None
            layout = ""
            if s is not None:
                layout = "; ".join(f"{role}: {pp.layout}" for role, pp in s.pools.items())
            w.writerow([
                r.line, r.id, r.backend, r.model_path, r.system, r.mode, r.isl, r.osl,
                _num(r.ttft_ms), _num(r.tpot_ms),
                _num(pred.ttft_ms) if pred else "", _num(pred.tpot_ms) if pred else "",
                _num(e_t), _num(e_p), "simulated" if pred else "not_simulated", "" if pred else res.reason,
                layout, s.weights if s else "", s.kv_cache if s else "", s.concurrency if s else "",
                pred.prefill_workers if pred and pred.prefill_workers else "",
                pred.decode_workers if pred and pred.decode_workers else "",
                " | ".join(s.notes) if s else "",
                _num(pred.ttft_first_wave_ms) if pred else "", _num(pred.ttft_steady_ms) if pred else "",
            ])


def _num(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4f}"
