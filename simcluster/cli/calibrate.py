"""``simcluster calibrate``: condense measured op latencies into the shipped tables, with a fit report.

Reads the aiconfigurator layout (``systems/data/<system>/<op>/<framework>/<version>/*.parquet``),
keeps one implementation per op (see ``simcluster.perf.calibration.load``), writes the derived
artefacts, and reports the accuracy on held-out measured points.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import click

from simcluster.errors import UserError

DEFAULT_DATA = Path("../shared/calibration/aiconfigurator")


def _system_of(name: str) -> str:
    """A catalog GPU name (or alias) or a measured system folder -> the system folder."""
    from simcluster.catalog.gpus import GPUS, get_gpu
    from simcluster.perf.calibration.load import SYSTEMS

    if name in SYSTEMS:
        return name
    try:
        gpu = get_gpu(name, field="--gpu")
    except UserError:
        raise UserError(
            f"unknown GPU {name!r}; known: {', '.join(sorted(set(GPUS) | set(SYSTEMS)))}", where="--gpu"
        ) from None
    if gpu.calibration_dir is None:
        raise UserError(f"GPU {name!r} has no measured data", where="--gpu")
    return gpu.calibration_dir


def _command(data, out, gpus, frameworks, families, holdout, seed) -> str:
    """The invocation, spelled out (recorded in the artefacts' provenance)."""
    parts = ["simcluster", "calibrate", "--data", str(data)]
    if out is not None:
        parts += ["-o", str(out)]
    for flag, values in (("--gpu", gpus), ("--framework", frameworks), ("--family", families)):
        for v in values:
            parts += [flag, v]
    parts += ["--holdout", f"{holdout:g}", "--seed", str(seed)]
    return " ".join(shlex.quote(p) for p in parts)


@click.command("calibrate")
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_DATA,
    show_default=True,
    help="Measured op latencies in the aiconfigurator layout (systems/data/<system>/<op>/<framework>/<version>/).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write the artefacts [default: the package's simcluster/data/calibration/].",
)
@click.option("--gpu", "gpus", multiple=True, help="Only this GPU (catalog name or system folder); repeatable.")
@click.option(
    "--framework",
    "frameworks",
    multiple=True,
    type=click.Choice(["vllm", "sglang", "trtllm"]),
    help="Only this serving framework; repeatable. NCCL tables are always read.",
)
@click.option(
    "--family",
    "families",
    multiple=True,
    help="Only this op family (gemm, attention_decode, moe, nccl, ...); repeatable.",
)
@click.option(
    "--holdout", type=float, default=0.2, show_default=True, help="Fraction of measured points held out for the report."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hold-out split.")
@click.option("--json", "as_json", is_flag=True, help="Print the fit report as JSON.")
def calibrate(
    data: Path,
    out: Path | None,
    gpus: tuple[str, ...],
    frameworks: tuple[str, ...],
    families: tuple[str, ...],
    holdout: float,
    seed: int,
    as_json: bool,
) -> None:
    """Fit cost models to measured op latencies and report their held-out accuracy.

    The artefacts are fitted on all points; the report refits on the points not held out and
    predicts the held-out ones. With --gpu/--framework/--family filters, the tables written replace
    only the filtered entries of the existing artefacts in the output directory.
    """
    from simcluster.perf.calibration.condense import ARTEFACT_DIR, MANIFEST, REPORT, Calibration, collect, total_size
    from simcluster.perf.calibration.load import FAMILIES, check_data_dir
    from simcluster.perf.calibration.report import fit_report, format_report, merge_reports

    if not 0.0 < holdout < 1.0:
        raise UserError(f"must be between 0 and 1 (exclusive), not {holdout}", where="--holdout")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise UserError(f"unknown op family {unknown[0]!r}; known: {', '.join(FAMILIES)}", where="--family")
    check_data_dir(data)
    systems = [_system_of(g) for g in gpus] or None
    started = time.perf_counter()
    command = _command(data, out, gpus, frameworks, families, holdout, seed)
    frames = collect(data, systems, frameworks or None, families or None)
    if not frames:
        raise UserError(f"no measured tables under {str(data)!r} match the filters")
    fitted = Calibration.from_frames(frames, command=command)
    report = fit_report(frames, fitted.collectives, holdout=holdout, seed=seed)

    out_dir = out if out is not None else ARTEFACT_DIR
    filtered = bool(gpus or frameworks or families)
    if filtered and (out_dir / MANIFEST).is_file():
        existing = Calibration.load(out_dir)
        fitted = existing.merged_with(fitted, command=command)
        old_report = json.loads((out_dir / REPORT).read_text()) if (out_dir / REPORT).is_file() else None
        report = merge_reports(old_report, report)
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    sizes = fitted.write(out_dir, report=report)
    report["artefacts"] = {"directory": str(out_dir), "bytes": sizes, "total": total_size(sizes)}
    if as_json:
        click.echo(json.dumps(report, indent=1, sort_keys=True))
    else:
        click.echo(format_report(report))
        click.echo(f"\nwrote {len(sizes)} files ({total_size(sizes)}) to {out_dir} in {report['wall_time_s']:.1f} s")
