"""``simcluster validate``: predict measured deployments and report the error.

``simcluster validate silicon FILE.csv -o PRED.csv`` reads a file in the ``silicon_sample`` format
(aiconfigurator's; e.g. ``../shared/validation/silicon_sample_dev.csv``), simulates every row it can,
writes the predictions next to the measurements (or the reason a row was not simulated), and prints
the MAPE of TTFT and TPOT per system, framework, model, mode, harness and concurrency band. See
``docs/validation.md``.
"""

from __future__ import annotations

import json
import sys

import click


@click.group("validate")
def validate() -> None:
    """Compare simcluster's predictions with measured deployments."""


@validate.command("silicon")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_csv", type=click.Path(dir_okay=False), default=None,
              help="Write the rows with predictions and errors to this CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--split", type=click.Choice(["all", "train", "test"]), default="all", show_default=True,
              help="Rows to evaluate: all, or the train / held-out half of the configuration split.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes (default: the CPU count, at most 8).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N rows (after --split).")
@click.option("--waves", type=click.IntRange(min=2), default=3, show_default=True,
              help="Simulated requests per client (the start-up wave, the steady state, the drain).")
@click.option("--prompts-per-client", type=click.IntRange(min=1), default=10, show_default=True,
              help="Requests per client of the measured benchmark (weights start-up wave, steady state, drain "
                   "1 : N - 2 : 1).")
@click.option("--no-scheduler-profile", "no_profile", is_flag=True,
              help="Baseline: GPU work only, no framework scheduler profile.")
@click.option("--timeline", "timeline_line", type=click.IntRange(min=2), default=None, metavar="LINE",
              help="Simulate only the row on this line of FILE.csv (the `line` column of -o) and print its "
                   "simulated requests as CSV instead of the report.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def silicon(csv_file, out_csv, as_json, split, workers, limit, waves, prompts_per_client, no_profile, timeline_line,
            quiet):
    """Predict TTFT and TPOT for every row of FILE.csv and report the error per group."""
    from simcluster.validate.fit import split_rows, split_description
    from simcluster.validate.report import build_report, format_report, write_predictions
    from simcluster.validate.runner import default_workers, validate_rows
    from simcluster.validate.silicon import read_silicon_csv
    from simcluster.validate.simulate import Simulator

    rows, columns = read_silicon_csv(csv_file)
    sim = Simulator(benchmark_prompts_per_client=prompts_per_client, simulated_waves=waves,
                    framework_profile=not no_profile)
    if timeline_line is not None:  # one line of the file, whatever --split / --limit would keep
        _timeline(csv_file, rows, timeline_line, sim)
        return
    split_info = None
    if split != "all":
        train, test = split_rows(rows)
        rows = train if split == "train" else test
        split_info = {"part": split, **split_description()}
    if limit:
        rows = rows[:limit]
    progress = None
    if not quiet and sys.stderr.isatty():
        def progress(done, total):
            click.echo(f"\rsimulated {done}/{total} rows", err=True, nl=done >= total)
    results = validate_rows(rows, simulator=sim, workers=workers or default_workers(), progress=progress)
    if out_csv:
        write_predictions(out_csv, results, columns)
    rep = build_report(results, split=split_info)
    if as_json:
        click.echo(json.dumps(rep, indent=2))
    else:
        title = f"simcluster validate silicon {csv_file}" + (f" ({split} split)" if split != "all" else "")
        click.echo(format_report(rep, title=title))
        if out_csv:
            click.echo(f"\npredictions: {out_csv}")


TIMELINE_COLUMNS = ("request", "status", "part", "weight", "arrival_s", "first_token_s", "finish_s", "input_tokens",
                    "output_tokens", "ttft_ms", "tpot_ms")


def _timeline(csv_file, rows, line: int, sim) -> None:
    """``--timeline LINE``: one row's simulated requests as CSV on stdout; the prediction on stderr."""
    import csv
    import math

    from simcluster.errors import UserError
    from simcluster.validate.mapping import Unsupported, map_row

    row = next((r for r in rows if r.line == line), None)
    if row is None:
        raise UserError(f"{csv_file}: no row on line {line} (its data rows are lines 2-{len(rows) + 1})",
                        where="--timeline")
    setup = map_row(row)
    if isinstance(setup, Unsupported):
        raise UserError(f"{csv_file}:{line}: not simulated: {setup.reason}", where="--timeline")
    reqs, pred = sim.timeline(setup)
    w = csv.DictWriter(sys.stdout, fieldnames=TIMELINE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in reqs:
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else f"{v:.6f}" if isinstance(v, float) else v)
                    for k, v in r.items()})
    click.echo(f"{csv_file}:{line}: {len(reqs)} requests simulated; weighted means (the prediction): TTFT "
               f"{pred.ttft_ms:.1f} ms, TPOT {pred.tpot_ms:.2f} ms; measured {row.ttft_ms:.1f} / "
               f"{row.tpot_ms:.2f} ms", err=True)
