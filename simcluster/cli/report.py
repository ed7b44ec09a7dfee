"""``simcluster report DIR``: Pareto plots with SLO lines, study figures, run timelines, one HTML page.

Examples::

    simcluster report out/helix-dsr1                  # a sweep folder: frontiers, study.json
    simcluster report out/run --out /tmp/run-report   # a run folder: timeline, latency CDFs, summary

Needs matplotlib (``pip install 'simcluster[plot]'``). See ``docs/planning.md``.
"""

from __future__ import annotations

import json

import click


@click.command("report")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Report folder [default: FOLDER/report].")
@click.option("--ttft", type=float, default=None, help="TTFT target (s) to draw [default: the spec's slo].")
@click.option("--tpot", type=float, default=None, help="TPOT target (s) to draw [default: the spec's slo].")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def report(folder, out_dir, ttft, tpot, as_json):
    """Plots (PNG and SVG) and an HTML page of a sweep or a run folder."""
    from simcluster.plan.report import _clean, make_report

    res = make_report(folder, out_dir, slo={"ttft_s": ttft, "tpot_s": tpot})
    if as_json:
        click.echo(json.dumps(_clean(res), indent=2, default=str))
        return
    click.echo(f"report: {res['index']} ({len(res['figures'])} figures, PNG and SVG)")
    study = res.get("sweep", {}).get("study")
    if study:
        click.echo(f"study ({study['kind']}): {res['out']}/study.json")
        targets = study.get("targets") or [t for g in study.get("groups", []) for t in g.get("targets", [])]
        for t in targets:
            ours = t.get("ours")
            ours = f"{ours:.3g}" if isinstance(ours, float) else ours
            extra = f" (paper {t['paper']}, band {t['band']})" if "band" in t else (
                f" (paper {t['paper']})" if "paper" in t else "")
            click.echo(f"  {t['id']} {t['what']}"
                       + (f" [{t.get('model')}]" if t.get("model") else "")
                       + (f" [{t.get('exchange_model')}]" if t.get("exchange_model") else "")
                       + f": {ours}{extra} -> {'within' if t.get('within') else 'NOT within'}")
