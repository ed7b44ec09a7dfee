"""``simcluster report DIR``: plots (PNG and SVG) and one HTML page for a sweep folder or a run folder.

* **Sweep** (``points/``, ``pareto.parquet``, ``spec.yaml``): per model and traffic, throughput
  (tokens/s/GPU) against interactivity (tokens/s/user) — every ``ok`` point in grey, the Pareto
  frontier of each group as a line; SLO lines: a vertical line at ``1/TPOT`` and, with a TTFT target,
  a dashed frontier of the points that meet it. A spec with a ``study:`` section also gets the
  study's figures and ``study.json`` (:mod:`simcluster.plan.studies`); ``replay.parquet`` becomes a
  table.
* **Run** (``timeline.parquet``, ``requests.parquet``, ``summary.json``): one panel per timeline
  metric with a line per entity (the long format ``time_s, entity, metric, value``), TTFT and TPOT
  distributions, and the summary as a table.

matplotlib is an optional extra (``pip install 'simcluster[plot]'``); without it the command is a
:class:`UserError`. Output: ``DIR/report/`` (or ``--out``) with ``index.html`` and the figures.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from simcluster.errors import UserError
from simcluster.plan.pareto import X, Y, pareto_mask

LINE_KEYS = ("mode", "ratio", "hop_b", "exchange_model", "layout_family")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("simcluster report draws with matplotlib, which is not installed: "
                        "pip install 'simcluster[plot]'") from None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


class _Page:
    def __init__(self, title: str, out: Path) -> None:
        self.title = title
        self.out = out
        self.parts: list[str] = []
        self.figures: list[str] = []

    def h2(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def p(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, df: pd.DataFrame, max_rows: int = 60) -> None:
        self.parts.append(df.head(max_rows).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0,
                                                    classes="t", na_rep=""))
        if len(df) > max_rows:
            self.p(f"({len(df) - max_rows} more rows)")

    def figure(self, fig, name: str, caption: str = "") -> None:
        plt = _pyplot()
        for ext in ("png", "svg"):
            fig.savefig(self.out / f"{name}.{ext}", dpi=130, bbox_inches="tight")
        plt.close(fig)
        self.figures.append(name)
        self.parts.append(f'<figure><a href="{name}.svg"><img src="{name}.png" alt="{html.escape(name)}"></a>'
                          f"<figcaption>{html.escape(caption)} (<a href=\"{name}.svg\">SVG</a>)</figcaption></figure>")

    def write(self) -> Path:
        page = ("<!doctype html><html><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>"
                "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
                "img{max-width:100%;border:1px solid #ddd}table.t{border-collapse:collapse;font-size:0.85em}"
                "table.t td,table.t th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}"
                "figure{margin:1em 0}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1>" + "\n".join(self.parts) + "</body></html>\n")
        path = self.out / "index.html"
        path.write_text(page, encoding="utf-8")
        return path


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))[:120]


# ----------------------------------------------------------------------------- sweep
def _load_sweep(d: Path):
    from simcluster.plan.space import load_spec
    from simcluster.plan.store import read_points

    spec = None
    if (d / "spec.yaml").is_file():
        try:
            spec, _ = load_spec(d / "spec.yaml")
        except UserError:
            spec = None
    df = read_points(d) if (d / "points").is_dir() else pd.DataFrame()
    return spec, df


def _family(df: pd.DataFrame) -> pd.Series:
    return np.where(df["layout_kind"] == "helix", "helix", "baseline")


def sweep_report(d: Path, page: _Page, slo: dict) -> dict:
    plt = _pyplot()
    spec, df = _load_sweep(d)
    if df.empty:
        raise UserError("the sweep folder has no points yet", where=str(d))
    if spec is not None:
        page.p(f"Sweep '{spec.name}': {spec.description}".strip())
        for k, v in spec.slo.model_dump().items():
            slo.setdefault(k, v)
    counts = df["status"].value_counts().to_dict()
    page.p(f"{len(df):,} points: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    ok = df[df["status"] == "ok"].copy()
    if spec is not None and spec.study is not None and spec.study.kind == "helix":
        ok["layout_family"] = _family(ok)
    group_by = list(spec.pareto.group_by) if spec is not None else ["model", "isl", "osl", "mode", "ratio"]
    plot_keys = [k for k in ("gpu", "model", "isl", "osl") if k in group_by or k in ("model",)]
    line_keys = [k for k in group_by if k not in plot_keys] + (["layout_family"] if "layout_family" in ok else [])
    tpot, ttft = slo.get("tpot_s"), slo.get("ttft_s")
    for key, g in ok.groupby(plot_keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        title = ", ".join(f"{k}={v}" for k, v in zip(plot_keys, key))
        fig, ax = plt.subplots(figsize=(7.5, 5))
        ax.scatter(g[Y], g[X], s=6, color="0.8", label="design points", zorder=1)
        lines = g.groupby(line_keys, sort=True, dropna=False) if line_keys else [((), g)]
        for lk, lg in lines:
            lk = lk if isinstance(lk, tuple) else (lk,)
            f = lg[pareto_mask(lg[X].to_numpy(), lg[Y].to_numpy())].sort_values(Y)
            label = ", ".join(f"{k}={v}" for k, v in zip(line_keys, lk)) or "frontier"
            line, = ax.plot(f[Y], f[X], marker="o", ms=3, label=label, zorder=3)
            if ttft is not None and "ttft_s" in lg and lg["ttft_s"].notna().any():
                m = lg[lg["ttft_s"] <= ttft]
                if len(m):
                    fm = m[pareto_mask(m[X].to_numpy(), m[Y].to_numpy())].sort_values(Y)
                    ax.plot(fm[Y], fm[X], ls="--", color=line.get_color(), lw=1, zorder=2,
                            label=f"{label}, TTFT ≤ {ttft:g} s")
        if tpot is not None:
            ax.axvline(1.0 / tpot, color="crimson", lw=1, ls=":", label=f"TPOT ≤ {tpot * 1e3:g} ms")
        ax.set_xlabel("interactivity (tokens/s/user)")
        ax.set_ylabel("throughput (tokens/s/GPU)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
        page.h2(f"Pareto frontier: {title}")
        page.figure(fig, "pareto_" + _safe("_".join(map(str, key))), "throughput against interactivity")
    if (d / "pareto.parquet").is_file():
        front = pd.read_parquet(d / "pareto.parquet")
        page.h2("Frontier points (pareto.parquet)")
        cols = [c for c in ("group", "point_id", X, Y, "ttft_s", "tpot_s", "gpus", "layout_label", "decode_batch",
                            "mode", "ratio", "ctx_gen_ratio", "prefill_label") if c in front]
        page.table(front[cols])
    if (d / "replay.parquet").is_file():
        page.h2("DES replay of chosen points (replay.parquet)")
        page.table(pd.read_parquet(d / "replay.parquet"))
    out = {"points": int(len(df)), "statuses": {k: int(v) for k, v in counts.items()}}
    if spec is not None and spec.study is not None:
        out["study"] = study_section(spec.study.kind, df, page, plt)
        (page.out / "study.json").write_text(json.dumps(_clean(out["study"]), indent=2) + "\n")
    return out


def _clean(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.floating,)):
        return _clean(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def study_section(kind: str, df: pd.DataFrame, page: _Page, plt) -> dict:
    from simcluster.plan.studies import run_study

    res = run_study(kind, df)
    page.h2(f"Study: {kind}")
    targets = res.get("targets") or [t for g in res.get("groups", []) for t in g.get("targets", [])]
    if targets:
        page.table(pd.DataFrame(targets))
    if kind == "helix":
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for g in res["groups"]:
            if "error" in g:
                continue
            c = pd.DataFrame(g["ratio_curve"]).dropna(subset=["ratio"])
            ax.plot(c["ttl_ms"], c["ratio"], marker="o", ms=3,
                    label=f"{g['model']} hop_b={g['hop_b']} {g['exchange_model']}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("TTL budget (ms), tighter to the right")
        ax.set_ylabel("Helix / best baseline tokens/s/GPU")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        page.figure(fig, "study_helix_ratio", "throughput ratio under a TTL budget (H-8 peaks at the baseline floor)")
    elif kind == "ratio":
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m in res["models"]:
            c = pd.DataFrame(m["curve"])
            ax.plot(c["tokens_per_s_per_user"], c["ctx_gen_ratio"], marker="o", ms=3, label=m["model"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactivity (tokens/s/user)")
        ax.set_ylabel("optimal ctx:gen GPU ratio")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        page.figure(fig, "study_ratio", "rate-matched ctx:gen ratio along each frontier (B-3)")
        page.table(pd.DataFrame([{k: v for k, v in m.items() if k != "curve"} for m in res["models"]]))
    elif kind == "fixed_ratio":
        for g in res["groups"]:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            c = pd.DataFrame(g["dynamic_curve"])
            ax.plot(c["tokens_per_s_per_user"], c["normalised"], marker="o", ms=3, label="dynamic (rate matched)")
            for r, v in g["ratios"].items():
                c = pd.DataFrame(v["curve"])
                if len(c):
                    ax.plot(c["tokens_per_s_per_user"], c["normalised"], marker="o", ms=3, label=f"fixed {r}")
            ax.set_xlabel("interactivity (tokens/s/user)")
            ax.set_ylabel("tokens/s/GPU / best dynamic")
            ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
            page.figure(fig, "study_fixed_ratio_" + _safe(g["model"]), f"{g['model']} {g['isl']}/{g['osl']} (B-4)")
    elif kind == "disagg_vs_colocated":
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        for g in res["groups"]:
            c = pd.DataFrame(g["curve"]).dropna()
            ax.plot(c["tokens_per_s_per_user"], c["disaggregated_over_colocated"], marker="o", ms=3,
                    label=f"{g['model']} {g['isl']}/{g['osl']}")
        ax.axhline(1.0, color="0.5", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactivity (tokens/s/user)")
        ax.set_ylabel("disaggregated / co-located tokens/s/GPU")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        page.figure(fig, "study_disagg_vs_colocated", "gain of disaggregation at matched interactivity (B-6)")
        page.table(pd.DataFrame([{k: v for k, v in g.items() if k != "curve"} for g in res["groups"]]))
    return res


# ----------------------------------------------------------------------------- run
def run_report(d: Path, page: _Page) -> dict:
    plt = _pyplot()
    out: dict = {}
    if (d / "summary.json").is_file():
        s = json.loads((d / "summary.json").read_text())
        rows = []
        for key in ("ttft_s", "tpot_s", "e2e_s"):
            if isinstance(s.get(key), dict):
                rows.append({"metric": key, **{k: s[key].get(k) for k in ("mean", "p50", "p90", "p99")}})
        page.h2("Summary (summary.json)")
        if rows:
            page.table(pd.DataFrame(rows))
        flat = {"requests/s": s.get("throughput", {}).get("requests_per_s"),
                "tokens/s/GPU": s.get("throughput", {}).get("output_tokens_per_s_per_gpu"),
                "tokens/s/user (mean)": s.get("throughput", {}).get("tokens_per_s_per_user_mean"),
                "SLO attainment": s.get("slo", {}).get("attainment"), "GPUs": s.get("gpus"),
                "GPU-hours": s.get("gpu_hours"), "cost (USD)": s.get("cost_usd")}
        page.table(pd.DataFrame([{"quantity": k, "value": v} for k, v in flat.items()]))
        out["summary"] = True
    if (d / "timeline.parquet").is_file():
        t = pd.read_parquet(d / "timeline.parquet")
        missing = {"time_s", "entity", "metric", "value"} - set(t.columns)
        if missing:
            raise UserError(f"timeline.parquet lacks columns {sorted(missing)}", where=str(d / "timeline.parquet"))
        metrics = sorted(t["metric"].unique())
        if metrics:
            ncol = 2
            nrow = math.ceil(len(metrics) / ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(11, 2.4 * nrow), squeeze=False, sharex=True)
            for ax, metric in zip(axes.flat, metrics):
                mt = t[t["metric"] == metric]
                for entity, et in mt.groupby("entity"):
                    ax.plot(et["time_s"], et["value"], lw=1, label=entity)
                ax.set_title(metric, fontsize=9)
                ax.grid(True, alpha=0.3)
                ax.legend(fontsize=6)
            for ax in list(axes.flat)[len(metrics):]:
                ax.set_visible(False)
            for ax in axes[-1]:
                ax.set_xlabel("time (s)")
            page.h2("Timeline (timeline.parquet)")
            page.figure(fig, "timeline", "sampled state over time, one panel per metric, one line per entity")
        out["timeline_metrics"] = metrics
    if (d / "requests.parquet").is_file():
        r = pd.read_parquet(d / "requests.parquet", columns=["status", "ttft_s", "tpot_s"])
        r = r[r["status"] == "completed"]
        if len(r):
            fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
            for ax, col in zip(axes, ("ttft_s", "tpot_s")):
                v = np.sort(r[col].dropna().to_numpy())
                if len(v):
                    ax.plot(v, np.arange(1, len(v) + 1) / len(v))
                ax.set_xlabel(col.replace("_s", " (s)").upper())
                ax.set_ylabel("fraction of requests")
                ax.grid(True, alpha=0.3)
            page.h2("Latency distributions (requests.parquet)")
            page.figure(fig, "latency_cdf", "cumulative distribution of TTFT and TPOT over completed requests")
    return out


def make_report(d: str | Path, out: str | Path | None = None, slo: dict | None = None) -> dict:
    """Write the report of folder ``d``; returns what was found and the page path."""
    d = Path(d)
    if not d.is_dir():
        raise UserError("not a folder", where=str(d))
    is_sweep = (d / "points").is_dir() or (d / "pareto.parquet").is_file()
    is_run = any((d / f).is_file() for f in ("timeline.parquet", "summary.json", "requests.parquet"))
    if not (is_sweep or is_run):
        raise UserError("neither a sweep folder (points/, pareto.parquet) nor a run folder (timeline.parquet, "
                        "summary.json)", where=str(d))
    _pyplot()
    out_dir = Path(out) if out else d / "report"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the report folder ({exc.strerror})", where=str(out_dir)) from None
    page = _Page(f"simcluster report: {d.name}", out_dir)
    res: dict = {"folder": str(d), "out": str(out_dir)}
    slo = {k: v for k, v in (slo or {}).items() if v is not None}
    if is_sweep:
        res["sweep"] = sweep_report(d, page, slo)
    if is_run:
        res["run"] = run_report(d, page)
    res["index"] = str(page.write())
    res["figures"] = page.figures
    return res
