"""The fit report: accuracy on held-out measured points, per op family, GPU and framework.

For every (family, GPU, framework) a seeded random fraction of the measured points is held out,
the tables are built from the rest exactly as the simulator builds them, and the held-out points
are predicted through the same lookup (grids, hole filling, nearest-key rules). Reported: the
number of points, the median and 90th-percentile absolute percentage error, the share of held-out
points that needed extrapolation, and the same errors for the model used where the tables do not
reach (roofline × fitted efficiency; α–β for collectives), fitted on the same training points.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from simcluster.perf.calibration.collectives import alpha_beta_s, fit_alpha_beta
from simcluster.perf.calibration.condense import _work_rows, fit_efficiency_frame, system_gpu
from simcluster.perf.calibration.grid import EXTRAPOLATED
from simcluster.perf.calibration.load import FAMILIES, MeasuredFrame
from simcluster.perf.calibration.tables import OpTable
from simcluster.perf.calibration.work import Peaks

TARGET_MEDIAN_APE = 0.10


def _split(mf: MeasuredFrame, holdout: float, seed: int) -> np.ndarray:
    """Held-out mask; seeded per (family, system, framework) so filters do not change the split."""
    salt = zlib.crc32(f"{mf.family}/{mf.system}/{mf.framework}".encode())
    rng = np.random.default_rng([seed, salt])
    return rng.random(len(mf.frame)) < holdout


def evaluate(mf: MeasuredFrame, holdout: float = 0.2, seed: int = 0) -> dict | None:
    """One report row (see module doc), or None when too few points remain."""
    gpu = system_gpu(mf.system)
    if gpu is None:
        return None
    peaks = Peaks.of(gpu)
    spec = FAMILIES[mf.family]
    frame = mf.frame
    test = _split(mf, holdout, seed)
    if test.sum() == 0 or (~test).sum() < 2:
        return None
    train, held = frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)
    table = OpTable(mf.family, train, peaks)
    meas = held["latency_ms"].to_numpy() * 1e-3
    pred = np.full(len(held), np.nan)
    extrap = np.zeros(len(held), dtype=bool)
    for key, idx in held.groupby(list(spec.key), sort=False).indices.items():
        key = key if isinstance(key, tuple) else (key,)
        key = tuple(int(k) if isinstance(k, np.integer) else k for k in key)
        rows = held.iloc[idx]
        got = table.predict(key, [rows[c].to_numpy(dtype=np.float64) for c in spec.axes])
        if got is None:
            continue
        pred[idx], code = got
        extrap[idx] = code >= EXTRAPOLATED
    ok = np.isfinite(pred)
    ape = np.abs(pred[ok] / meas[ok] - 1.0)
    row = {
        "family": mf.family,
        "gpu": gpu.name,
        "system": mf.system,
        "framework": mf.framework,
        "points": int(len(frame)),
        "held_out": int(ok.sum()),
        "median_ape": float(np.median(ape)) if len(ape) else None,
        "p90_ape": float(np.percentile(ape, 90)) if len(ape) else None,
        "extrapolated_share": float(extrap[ok].mean()) if ok.any() else None,
    }
    row.update(_fallback_errors(mf.family, train, held, peaks))
    return row


def _fallback_errors(family: str, train: pd.DataFrame, held: pd.DataFrame, peaks: Peaks) -> dict:
    """Held-out error of the model used outside the tables, fitted on the training points."""
    spec = FAMILIES[family]
    meas = held["latency_ms"].to_numpy() * 1e-3
    pred = np.full(len(held), np.nan)
    if family in ("nccl", "custom_allreduce"):
        model = "alpha-beta"
        for key, idx in held.groupby([*spec.key, "n_gpus"], sort=False).indices.items():
            key = key if isinstance(key, tuple) else (key,)
            op = key[0] if family == "nccl" else "all_reduce"
            n = int(key[-1])
            sel = np.ones(len(train), dtype=bool)
            for c, v in zip([*spec.key, "n_gpus"], key):
                sel &= (train[c] == v).to_numpy()
            if sel.sum() < 3:
                continue
            tr = train[sel]
            alpha, bw = fit_alpha_beta(tr["bytes"].to_numpy(), tr["latency_ms"].to_numpy() * 1e-3, op, n)
            pred[idx] = alpha_beta_s(op, held.iloc[idx]["bytes"].to_numpy(), n, alpha, bw)
    else:
        model = "roofline×eff"
        fits = fit_efficiency_frame(family, train, peaks)
        flops, nbytes, classes = _work_rows(family, held)
        for q, idx in held.groupby(list(spec.quant), sort=False).indices.items():
            label = "/".join(str(x) for x in (q if isinstance(q, tuple) else (q,)))
            fit = fits.get(label)
            if fit is None:
                continue
            peak = peaks.flops.get(classes[idx[0]], peaks.flops["bf16"])
            pred[idx] = fit.predict(flops[idx], nbytes[idx], peak, peaks.hbm_Bps)
    ok = np.isfinite(pred)
    ape = np.abs(pred[ok] / meas[ok] - 1.0)
    return {
        "fallback_model": model,
        "fallback_median_ape": float(np.median(ape)) if len(ape) else None,
        "fallback_p90_ape": float(np.percentile(ape, 90)) if len(ape) else None,
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Per (family, GPU): points and held-out errors pooled over frameworks (median of the rows' medians)."""
    out = []
    df = pd.DataFrame(rows)
    if df.empty:
        return out
    for (fam, gpu), g in df.groupby(["family", "gpu"], sort=True):
        out.append(
            {
                "family": fam,
                "gpu": gpu,
                "frameworks": sorted(g["framework"]),
                "points": int(g["points"].sum()),
                "held_out": int(g["held_out"].sum()),
                "median_ape": float(np.average(g["median_ape"], weights=g["held_out"])),
                "p90_ape": float(np.average(g["p90_ape"], weights=g["held_out"])),
                "worst_framework_median_ape": float(g["median_ape"].max()),
                "meets_target": bool(g["median_ape"].max() <= TARGET_MEDIAN_APE),
            }
        )
    return out


def coverage_notes(frames: list[MeasuredFrame], collectives: dict) -> list[str]:
    """Where lookups leave the measured tables, in words."""
    have: dict[tuple[str, str], set[str]] = {}
    quants: dict[tuple[str, str], set[str]] = {}
    systems = sorted({f.system for f in frames})
    fws = sorted({f.framework for f in frames if f.framework != "nccl"})
    for f in frames:
        have.setdefault((f.family, f.system), set()).add(f.framework)
        spec = FAMILIES[f.family]
        if spec.quant:
            for q in f.frame[list(spec.quant)].drop_duplicates().itertuples(index=False):
                quants.setdefault((f.family, f.system), set()).add("/".join(map(str, q)))
    notes = []
    present = {f.family for f in frames}
    for fam, spec in FAMILIES.items():
        if fam == "nccl" or fam not in present:
            continue
        for system in systems:
            got = have.get((fam, system), set())
            missing = [fw for fw in fws if fw not in got]
            if not got:
                notes.append(
                    f"{fam} on {system}: not measured -> datasheet peaks × median efficiency of the measured GPUs"
                )
            elif missing and fam != "custom_allreduce":
                notes.append(f"{fam} on {system}: no {', '.join(missing)} table -> {', '.join(sorted(got))} table(s)")
            elif missing:
                notes.append(f"custom all-reduce on {system}: no {', '.join(missing)} table -> NCCL all-reduce")
    for fam in ("gemm", "moe"):
        every = set().union(*[v for (f, _), v in quants.items() if f == fam]) if quants else set()
        for system in systems:
            lack = sorted(every - quants.get((fam, system), set()))
            if lack and quants.get((fam, system)):
                notes.append(
                    f"{fam} on {system}: {', '.join(lack)} not measured -> "
                    "nearest measured format's efficiency × that format's roofline"
                )
    for system, ops in sorted(collectives.get("nccl", {}).items()):
        n_max = max(e["max_n"] for e in ops.values())
        notes.append(
            f"collectives on {system}: measured up to {n_max} GPUs; larger groups -> α–β extension "
            "(α per doubling, ring traffic)"
        )
    notes.append("collectives over link='ib': no measurement -> α–β with the datasheet NIC bandwidth × 0.8")
    notes.append(
        "attention/MLA prefill with a cached prefix: no measurement -> max(equal-work prefill, decode over the context)"
    )
    notes.append("sizes beyond a table's axes (e.g. contexts > 131072): efficiency held at the nearest measured point")
    return notes


def fit_report(frames: list[MeasuredFrame], collectives: dict, holdout: float = 0.2, seed: int = 0) -> dict:
    rows = [r for mf in frames if (r := evaluate(mf, holdout, seed)) is not None]
    return {
        "holdout": holdout,
        "seed": seed,
        "target_median_ape": TARGET_MEDIAN_APE,
        "rows": rows,
        "summary": summarise(rows),
        "fallbacks": coverage_notes(frames, collectives),
    }


def merge_reports(old: dict | None, new: dict) -> dict:
    """``new``'s rows replacing ``old``'s for the same (family, GPU, framework)."""
    if not old or old.get("holdout") != new.get("holdout") or old.get("seed") != new.get("seed"):
        return new
    keys = {(r["family"], r["gpu"], r["framework"]) for r in new["rows"]}
    rows = [r for r in old.get("rows", []) if (r["family"], r["gpu"], r["framework"]) not in keys] + new["rows"]
    rows.sort(key=lambda r: (r["family"], r["gpu"], r["framework"]))
    notes = list(dict.fromkeys(old.get("fallbacks", []) + new.get("fallbacks", [])))
    return {**new, "rows": rows, "summary": summarise(rows), "fallbacks": notes}


def format_report(report: dict) -> str:
    """Plain-text tables: per family × GPU, then per framework."""
    pct = lambda x: "-" if x is None else f"{100 * x:5.1f}%"  # noqa: E731
    lines = [
        f"held-out fit report (hold-out {report['holdout']:.0%}, seed {report['seed']}; "
        f"target: median ≤ {report['target_median_ape']:.0%} per op family and GPU)",
        "",
        f"{'family':20s} {'gpu':14s} {'points':>8s} {'held-out':>8s} {'median':>7s} {'p90':>7s}  target",
    ]
    for s in report["summary"]:
        lines.append(
            f"{s['family']:20s} {s['gpu']:14s} {s['points']:8d} {s['held_out']:8d} {pct(s['median_ape']):>7s} "
            f"{pct(s['p90_ape']):>7s}  {'ok' if s['meets_target'] else 'MISSED'}"
        )
    lines += [
        "",
        f"{'family':20s} {'gpu':14s} {'framework':9s} {'points':>7s} {'median':>7s} {'p90':>7s} {'extrap':>7s}   "
        f"fallback model (median / p90)",
    ]
    for r in report["rows"]:
        lines.append(
            f"{r['family']:20s} {r['gpu']:14s} {r['framework']:9s} {r['points']:7d} {pct(r['median_ape']):>7s} "
            f"{pct(r['p90_ape']):>7s} {pct(r['extrapolated_share']):>7s}   {r['fallback_model']} "
            f"{pct(r['fallback_median_ape'])} / {pct(r['fallback_p90_ape'])}"
        )
    lines += ["", "where the tables do not reach:"] + [f"  - {n}" for n in report["fallbacks"]]
    return "\n".join(lines)
