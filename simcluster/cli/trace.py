"""``simcluster trace``: workload statistics and conversion between trace formats."""

from __future__ import annotations

import json
from pathlib import Path

import click

from simcluster.workload.traces import TRACE_FORMATS, WRITE_FORMATS, read_trace, write_trace
from simcluster.workload.workload import workload_stats

_READ_CHOICES = click.Choice(["auto", *TRACE_FORMATS])
# Output format from the file name when --format is not given.
_FORMAT_BY_SUFFIX = {".parquet": "parquet", ".jsonl": "mooncake", ".csv": "azure"}


@click.group()
def trace() -> None:
    """Workload statistics and conversion between trace formats.

    Formats: Azure LLM CSV, Mooncake JSONL, BurstGPT CSV, simcluster parquet (see docs/workloads.md).
    """


def _format_stats(stats: dict) -> str:
    def num(x: object, digits: int = 1) -> str:
        return "-" if x is None else f"{x:,.{digits}f}"

    lines = [
        f"source           {stats['source']}",
        f"requests         {stats['requests']:,}",
        f"duration_s       {num(stats['duration_s'], 3)}",
        f"rate_per_s       {num(stats['rate_per_s'], 3)}",
        f"interarrival_cv  {num(stats['interarrival_cv'], 3)}",
        "",
        f"{'tokens':<16} {'mean':>10} {'p50':>10} {'p90':>10} {'p99':>10} {'max':>10}",
    ]
    for side in ("input_tokens", "output_tokens"):
        s = stats[side]
        lines.append(f"{side:<16} " + " ".join(f"{num(s[k]):>10}" for k in ("mean", "p50", "p90", "p99", "max")))
    if stats["prefix_block_reuse"] is not None:
        lines += [
            "",
            f"prefix_block_reuse {stats['prefix_block_reuse']:.3f} "
            f"(share of {stats['hash_block_tokens']}-token blocks whose hash id occurred before)",
        ]
    lines += [f"note: {note}" for note in stats["notes"]]
    return "\n".join(lines)


@trace.command()
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--format", "fmt", type=_READ_CHOICES, default="auto", show_default=True, help="Input format.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(file: Path, fmt: str, as_json: bool) -> None:
    """Statistics of a trace FILE: count, rate, token percentiles, prefix reuse."""
    result = workload_stats(read_trace(file, fmt))
    click.echo(json.dumps(result, indent=2) if as_json else _format_stats(result))


@trace.command()
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="File to write.")
@click.option(
    "--format",
    "out_fmt",
    type=click.Choice(list(WRITE_FORMATS)),
    default=None,
    help="Output format (default: from the output's suffix: .parquet, .jsonl = mooncake, .csv = azure).",
)
@click.option("--from", "in_fmt", type=_READ_CHOICES, default="auto", show_default=True, help="Input format.")
def convert(file: Path, output: Path, out_fmt: str | None, in_fmt: str) -> None:
    """Convert a trace FILE to another format."""
    if out_fmt is None:
        out_fmt = _FORMAT_BY_SUFFIX.get(output.suffix.lower())
        if out_fmt is None:
            raise click.UsageError(f"cannot tell the output format from {output.name!r}: give --format")
    workload = read_trace(file, in_fmt)
    warnings = write_trace(workload, output, out_fmt)
    for note in (*workload.notes, *warnings):
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {len(workload):,} requests to {output} ({out_fmt})")
