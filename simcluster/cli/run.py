"""``simcluster run``: replay a scenario."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("run")
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Output folder (default: ./simcluster-out/<scenario name>).")
@click.option("--trace", type=click.Path(dir_okay=False),
              help="Replace the scenario's workload with this trace (Azure CSV, Mooncake JSONL, BurstGPT CSV, parquet).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a scenario field by dotted path, e.g. --set pools.decode.instances=4 (repeatable).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (overrides the scenario's).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary on the terminal.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
def run(scenario, out_dir, trace, overrides, seed, quiet, as_json):
    """Replay SCENARIO (a YAML file; the built-in default when omitted).

    Writes requests.parquet, steps.parquet, timeline.parquet and summary.json to the output folder.
    """
    import json

    from simcluster.config.loader import load_scenario
    from simcluster.errors import UserError
    from simcluster.results.summary import format_summary
    from simcluster.sim.runner import run_scenario

    sc, base = load_scenario(scenario, overrides, seed)
    if trace is not None and not Path(trace).is_file():
        raise UserError("trace file not found", where=str(trace))
    out = Path(out_dir) if out_dir else Path("simcluster-out") / _slug(sc.name)
    progress = not quiet and sys.stderr.isatty()
    summary = run_scenario(sc, base, out, trace=trace, progress=progress)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet:
        click.echo(f"scenario      {sc.name}")
        click.echo(format_summary(summary))
        click.echo(f"outputs       {out}/{{requests,steps,timeline}}.parquet, summary.json")


def _slug(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.strip())
    return keep.strip("-") or "scenario"
