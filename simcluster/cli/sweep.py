"""``simcluster sweep``: evaluate a design space; resumable; points, Pareto frontier and manifest.

Example::

    simcluster sweep scenarios/studies/helix_deepseek_r1_1m.yaml -o out/helix-dsr1
    simcluster sweep space.yaml -o out/space --executor dask --workers 8 --replay pareto

See ``docs/planning.md``.
"""

from __future__ import annotations

import json

import click


@click.command("sweep")
@click.argument("spec_path", metavar="SPEC.yaml", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Sweep folder (created; an existing one is resumed).")
@click.option("--executor", default="local", show_default=True,
              help="local (processes), dask (a LocalCluster on 127.0.0.1) or dask=ADDRESS (a running scheduler).")
@click.option("--workers", type=int, default=None, help="Worker processes [default: the CPU count].")
@click.option("--batch-size", type=int, default=2000, show_default=True,
              help="Points per batch (the unit of work and of crash-safe writes).")
@click.option("--replay", default=None,
              help="After the sweep, replay points with the DES: 'pareto' (the frontier) or comma-separated point ids.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: when a terminal].")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def sweep(spec_path, out_dir, executor, workers, batch_size, replay, progress, as_json):
    """Evaluate every point of a design space (analytic steady state) and write the Pareto frontier."""
    from simcluster.plan.executor import parse_executor
    from simcluster.plan.space import load_spec
    from simcluster.plan.sweep import run_sweep

    spec, text = load_spec(spec_path)
    choice = parse_executor(executor, workers)
    if batch_size < 1:
        from simcluster.errors import UserError

        raise UserError(f"must be at least 1, got {batch_size}", where="--batch-size")
    manifest = run_sweep(spec, out_dir, spec_text=text, executor=choice, batch_size=batch_size, progress=progress,
                         replay=replay)
    if as_json:
        click.echo(json.dumps(manifest, indent=2, default=str))
        return
    st = manifest["statuses"]
    rate = manifest["points_per_s"]
    click.echo(f"{manifest['name']}: {manifest['points']:,} points "
               f"({manifest['points_already_done']:,} already done, {manifest['points_evaluated']:,} evaluated"
               + (f", {rate:,.0f} points/s" if rate else "") + ")")
    click.echo("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(st.items())))
    click.echo(f"  Pareto frontier: {manifest['pareto_points']} points -> {out_dir}/pareto.parquet")
    click.echo(f"  points: {out_dir}/points/  manifest: {out_dir}/sweep.json")
    if "replay" in manifest:
        r = manifest["replay"]
        click.echo(f"  DES replay: {r['replayed']} of {r['points']} points -> {out_dir}/replay.parquet")
