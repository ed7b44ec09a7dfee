"""Condensing measurements into the shipped calibration artefacts, and reading them back.

What ships in ``simcluster/data/calibration/`` (all derived, never the raw files):

* ``<family>.parquet`` — the chosen measured points of one op family for every GPU and framework:
  ``system, framework, <key columns>, <size axes>, ln_eff_q``. The latency is stored as its ratio
  to the datasheet roofline of the shape (:mod:`.work`, with the peaks recorded in the manifest
  under ``encoding_peaks``): ``latency_s = roofline_s · exp(ln_eff_q / 500)``; collectives use a
  roofline of 1 s. Rounding is <= 0.1 %, far below measurement noise; the ratio varies slowly along
  the size axes, so the delta-encoded integers compress to ~1.2 bytes a point, which is what keeps
  the package small. Rows are sorted so that the first size axis varies fastest.
* ``manifest.json`` — provenance (source repository and commit, license, the tables, versions and
  kernel sources used, the simcluster version and command that produced it), the fitted α–β
  coefficients of every collective, and the roofline × efficiency fits.
* ``fit_report.json`` — the held-out accuracy report of the run that produced them.

:class:`Calibration` is the in-memory view used by :class:`~.ops.CalibratedOps`: built from raw
measurements (``calibrate``) or loaded lazily from artefacts (the simulator), one family file at a
time on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from simcluster import __version__
from simcluster.catalog.gpus import GPUS, GPUSpec
from simcluster.errors import UserError
from simcluster.perf.calibration.collectives import alpha_per_doubling, fit_alpha_beta, fit_alpha_line
from simcluster.perf.calibration.efficiency import EfficiencyFit, fit_efficiency
from simcluster.perf.calibration.load import (
    FAMILIES,
    LICENSE,
    SOURCE,
    SYSTEMS,
    MeasuredFrame,
    available_systems,
    read_family,
)
from simcluster.perf.calibration.work import WORK, Peaks

ARTEFACT_DIR = Path(__file__).resolve().parents[2] / "data" / "calibration"
FORMAT_VERSION = 1
LN_SCALE = 500.0  # ln(latency / roofline) is stored as round(ln * LN_SCALE)
MANIFEST = "manifest.json"
REPORT = "fit_report.json"


def system_gpu(system: str) -> GPUSpec | None:
    """The catalog GPU whose measurements live under ``system``."""
    for g in GPUS.values():
        if g.calibration_dir == system:
            return g
    return None


@dataclass
class Calibration:
    """Measured points per (family, system, framework), plus the fitted collective and efficiency models.

    ``frames`` maps (family, system, framework) -> (frame with key columns, axes and
    ``latency_ms``; info dict with versions, kernel sources, files). With ``directory`` set,
    families are read from ``<directory>/<family>.parquet`` when first needed.
    """

    manifest: dict
    frames: dict[tuple[str, str, str], tuple[pd.DataFrame, dict]] = field(default_factory=dict)
    directory: Path | None = None

    # ----- construction -----
    @classmethod
    def from_measurements(
        cls,
        data: Path,
        systems: Iterable[str] | None = None,
        frameworks: Iterable[str] | None = None,
        families: Iterable[str] | None = None,
        command: str = "",
    ) -> "Calibration":
        """Read raw aiconfigurator tables under ``data`` and fit the models (no hold-out)."""
        frames = collect(data, systems, frameworks, families)
        return cls.from_frames(frames, command=command)

    @classmethod
    def from_frames(cls, frames: list[MeasuredFrame], command: str = "") -> "Calibration":
        """Fit the models on frames read by :func:`~.load.read_family`."""
        table = {(f.family, f.system, f.framework): (f.frame, table_info(f)) for f in frames}
        return cls.from_tables(table, command)

    @classmethod
    def from_tables(
        cls, table: dict[tuple[str, str, str], tuple[pd.DataFrame, dict]], command: str = ""
    ) -> "Calibration":
        """Fit the models on measured points ``(family, system, framework) -> (frame, info)``."""
        systems = sorted({s for (_, s, _) in table})
        manifest = {
            "format_version": FORMAT_VERSION,
            "encoding_peaks": {s: (Peaks.of(g).as_dict() if (g := system_gpu(s)) else None) for s in systems},
            "provenance": provenance([info for _, info in (table[k] for k in sorted(table))], command),
            "collectives": fit_collectives(table),
            "efficiency": fit_efficiencies(table),
        }
        return cls(manifest=manifest, frames=dict(table))

    def merged_with(self, newer: "Calibration", command: str = "") -> "Calibration":
        """These tables with ``newer``'s replacing the (family, system, framework) entries it has."""
        table = {}
        if self.directory is not None:
            for key in sorted(self._listed()):
                got = self.table(*key)
                if got is not None:
                    table[key] = got
        table.update(self.frames)
        table.update(newer.frames)
        return Calibration.from_tables(table, command)

    @classmethod
    def load(cls, directory: Path | str | None = None) -> "Calibration":
        """Open shipped (or ``calibrate -o``) artefacts; family tables are read on first use."""
        directory = Path(directory) if directory is not None else ARTEFACT_DIR
        path = directory / MANIFEST
        if not path.is_file():
            raise UserError(
                f"no calibration artefacts in {str(directory)!r} (missing {MANIFEST}); run `simcluster calibrate`"
            )
        manifest = json.loads(path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{path}: calibration format {manifest.get('format_version')} is not {FORMAT_VERSION}")
        return cls(manifest=manifest, directory=directory)

    # ----- access -----
    def _listed(self) -> set[tuple[str, str, str]]:
        return {(t["family"], t["system"], t["framework"]) for t in self.manifest["provenance"]["tables"]}

    def _read(self, family: str, system: str, framework: str) -> None:
        """Read one (family, system, framework) row group and turn its codes back into latencies."""
        path = self.directory / f"{family}.parquet"
        if not path.is_file():
            raise UserError(f"calibration artefact {str(path)!r} is missing; re-run `simcluster calibrate`")
        g = pq.read_table(path, filters=[("system", "=", system), ("framework", "=", framework)]).to_pandas()
        g = g.drop(columns=["system", "framework"]).reset_index(drop=True)
        for c in g.columns:
            if isinstance(g[c].dtype, pd.CategoricalDtype) or g[c].dtype.kind == "O":
                g[c] = g[c].astype(str)
        ln_eff = g.pop("ln_eff_q").to_numpy(dtype=np.float64) / LN_SCALE
        g["latency_ms"] = np.exp(ln_eff) * self._roof_ms(family, system, g)
        infos = {(t["family"], t["system"], t["framework"]): t for t in self.manifest["provenance"]["tables"]}
        self.frames[(family, system, framework)] = (g, infos.get((family, system, framework), {}))

    def _roof_ms(self, family: str, system: str, frame: pd.DataFrame) -> np.ndarray:
        """Roofline (ms) the stored ratios are relative to (1 ms-equivalent for collectives)."""
        peaks = self.manifest.get("encoding_peaks", {}).get(system)
        if family not in WORK or peaks is None:
            return np.ones(len(frame))
        return roof_ms(family, Peaks(**peaks), frame)

    def table(self, family: str, system: str, framework: str) -> tuple[pd.DataFrame, dict] | None:
        """Measured points (key columns, axes, ``latency_ms``) and their provenance, or None."""
        key = (family, system, framework)
        if key not in self.frames and self.directory is not None and key in self._listed():
            self._read(family, system, framework)
        return self.frames.get(key)

    def frameworks_with(self, family: str, system: str) -> list[str]:
        have = set(self.frames) | (self._listed() if self.directory is not None else set())
        return sorted(fw for (fam, s, fw) in have if fam == family and s == system)

    def systems(self) -> list[str]:
        return sorted({t["system"] for t in self.manifest["provenance"]["tables"]})

    def _encode(self, family: str, system: str, framework: str, frame: pd.DataFrame) -> pa.Table:
        spec = FAMILIES[family]
        df = frame.sort_values([*spec.key, *reversed(spec.axes)], kind="stable").reset_index(drop=True)
        cols = {
            "system": pa.array([system] * len(df), pa.string()).dictionary_encode(),
            "framework": pa.array([framework] * len(df), pa.string()).dictionary_encode(),
        }
        for c in spec.key:
            if df[c].dtype.kind in "iu":
                cols[c] = pa.array(df[c].to_numpy(dtype=np.int32))
            else:
                cols[c] = pa.array(df[c].astype(str).tolist(), pa.string()).dictionary_encode()
        for c in spec.axes:
            cols[c] = pa.array(df[c].to_numpy(dtype=np.int64))
        roof = self._roof_ms(family, system, df)
        q = np.round(np.log(df["latency_ms"].to_numpy(dtype=np.float64) / roof) * LN_SCALE).astype(np.int32)
        cols["ln_eff_q"] = pa.array(q)
        return pa.table(cols)

    @property
    def collectives(self) -> dict:
        return self.manifest["collectives"]

    @property
    def efficiency(self) -> dict:
        return self.manifest["efficiency"]

    # ----- writing -----
    def write(self, out: Path, report: dict | None = None) -> dict[str, int]:
        """Write the artefacts to ``out``; returns file sizes in bytes."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if self.directory is not None:
            for family, system, framework in self._listed():
                self.table(family, system, framework)
        sizes: dict[str, int] = {}
        meta = {b"simcluster.provenance": json.dumps(self.manifest["provenance"]["source"]).encode()}
        for fam, spec in FAMILIES.items():
            path = out / f"{fam}.parquet"
            chunks = [
                (system, framework, frame)
                for (f, system, framework), (frame, _) in sorted(self.frames.items())
                if f == fam
            ]
            if not chunks:
                if path.exists():
                    path.unlink()
                continue
            delta = {c: "DELTA_BINARY_PACKED" for c in [*spec.axes, "ln_eff_q"]}
            writer = None
            # One row group per (system, framework): a simulator reads only its GPU's groups.
            for system, framework, frame in chunks:
                table = self._encode(fam, system, framework, frame).replace_schema_metadata(meta)
                if writer is None:
                    writer = pq.ParquetWriter(
                        path,
                        table.schema,
                        compression="zstd",
                        compression_level=19,
                        use_dictionary=["system", "framework", *[c for c in spec.key if c not in delta]],
                        column_encoding=delta,
                    )
                writer.write_table(table)
            writer.close()
            sizes[path.name] = path.stat().st_size
        (out / MANIFEST).write_text(json.dumps(self.manifest, separators=(",", ":"), sort_keys=True) + "\n")
        sizes[MANIFEST] = (out / MANIFEST).stat().st_size
        if report is not None:
            (out / REPORT).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
            sizes[REPORT] = (out / REPORT).stat().st_size
        return sizes


@lru_cache(maxsize=4)
def shipped(directory: str | None = None) -> Calibration:
    """The shipped artefacts (cached: they are read-only)."""
    return Calibration.load(directory)


def collect(
    data: Path,
    systems: Iterable[str] | None = None,
    frameworks: Iterable[str] | None = None,
    families: Iterable[str] | None = None,
) -> list[MeasuredFrame]:
    """Every (family, system, framework) measured under ``data``, filtered."""
    present = available_systems(data)
    systems = [s for s in (systems or SYSTEMS) if s in present]
    if not systems:
        raise UserError(f"no measured system under {str(data)!r} matches the filter (present: {', '.join(present)})")
    out = []
    for fam in families or FAMILIES:
        spec = FAMILIES[fam]
        for system in systems:
            for fw in spec.frameworks:
                # NCCL is framework-independent: always read it, whatever the framework filter.
                if frameworks and fw != "nccl" and fw not in frameworks:
                    continue
                mf = read_family(data, fam, system, fw)
                if mf is not None:
                    out.append(mf)
    return out


def table_info(mf: MeasuredFrame) -> dict:
    spec = FAMILIES[mf.family]
    f = mf.frame
    qcols = list(spec.quant)
    by_q: dict[str, dict] = {}
    groups = f.groupby(qcols, sort=True) if qcols else [((), f)]
    for q, g in groups:
        label = "/".join(str(x) for x in (q if isinstance(q, tuple) else (q,))) if qcols else "all"
        kernels = g["kernel_source"].value_counts()
        by_q[label] = {
            "version": str(g["version"].iloc[0]),
            "kernel_source": str(kernels.index[0]),
            "kernel_points": {str(k): int(v) for k, v in kernels.items()},
            "points": int(len(g)),
        }
    return {
        "family": mf.family,
        "system": mf.system,
        "framework": mf.framework,
        "files": list(mf.files),
        "quant_modes": by_q,
        "points": int(len(f)),
    }


def provenance(infos: list[dict], command: str) -> dict:
    return {
        "source": {
            "repository": SOURCE,
            "license": LICENSE,
            "attribution": "Measured op latencies by NVIDIA (ai-dynamo/aiconfigurator), Apache-2.0; "
            "condensed and fitted by simcluster.",
        },
        "produced_by": {"simcluster_version": __version__, "command": command},
        "storage": "latency_s = roofline_s(shape, encoding_peaks[system]) * exp(ln_eff_q / 500); "
        "one version per quant mode; one kernel per shape (ranked by coverage, never averaged)",
        "tables": [i for i in infos if i],
    }


def fit_collectives(table: dict) -> dict:
    """α–β per (system, op, N) for NCCL and per (system, framework, N) for custom all-reduce."""
    out: dict = {"nccl": {}, "custom_allreduce": {}}
    for (fam, system, fw), (frame, _) in sorted(table.items()):
        if fam not in ("nccl", "custom_allreduce"):
            continue
        for key, g in frame.groupby(list(FAMILIES[fam].key), sort=True):
            op = key[0] if fam == "nccl" else "all_reduce"
            per_n = {}
            for n, gn in g.groupby("n_gpus", sort=True):
                alpha, bw = fit_alpha_beta(gn["bytes"].to_numpy(), gn["latency_ms"].to_numpy() * 1e-3, op, int(n))
                per_n[str(int(n))] = {
                    "alpha_s": alpha,
                    "busbw_Bps": bw,
                    "max_bytes": int(gn["bytes"].max()),
                    "min_bytes": int(gn["bytes"].min()),
                }
            ns = sorted(int(n) for n in per_n)
            a0, a1 = fit_alpha_line(ns, [per_n[str(n)]["alpha_s"] for n in ns])
            doubling = alpha_per_doubling({n: per_n[str(n)]["alpha_s"] for n in ns}, a0, a1)
            entry = {
                "per_n": per_n,
                "alpha0_s": a0,
                "alpha_per_step_s": a1,
                "alpha_per_doubling_s": doubling,
                "max_n": max(ns),
            }
            if fam == "nccl":
                out["nccl"].setdefault(system, {})[op] = entry
            else:
                out["custom_allreduce"].setdefault(system, {})[fw] = entry
    return out


def roof_ms(family: str, peaks: Peaks, frame: pd.DataFrame) -> np.ndarray:
    """Datasheet roofline (ms) of every row of ``frame`` (rows may differ in key)."""
    flops, nbytes, classes = _work_rows(family, frame)
    peak = np.array([peaks.flops.get(c, peaks.flops["bf16"]) for c in classes])
    return np.maximum(np.maximum(flops / peak, nbytes / peaks.hbm_Bps), 1e-9) * 1e3


def fit_efficiencies(table: dict) -> dict:
    """Roofline × efficiency fit per (family, system, framework, quant mode)."""
    out: dict = {}
    for (fam, system, fw), (frame, _) in sorted(table.items()):
        if fam not in WORK:
            continue
        gpu = system_gpu(system)
        if gpu is None:
            continue
        fits = fit_efficiency_frame(fam, frame, Peaks.of(gpu))
        out.setdefault(fam, {}).setdefault(system, {})[fw] = {q: f.as_dict() for q, f in fits.items()}
    return out


def fit_efficiency_frame(family: str, frame: pd.DataFrame, peaks: Peaks) -> dict[str, EfficiencyFit]:
    spec = FAMILIES[family]
    fits = {}
    qcols = list(spec.quant)
    for q, g in frame.groupby(qcols, sort=True):
        label = "/".join(str(x) for x in (q if isinstance(q, tuple) else (q,)))
        # All rows of one quant mode share their compute class, hence one peak per fit.
        flops, nbytes, classes = _work_rows(family, g)
        peak = peaks.flops.get(classes[0], peaks.flops["bf16"])
        fits[label] = fit_efficiency(flops, nbytes, g["latency_ms"].to_numpy() * 1e-3, peak, peaks.hbm_Bps)
    return fits


def _work_rows(family: str, g: pd.DataFrame):
    """FLOPs, bytes and compute class of every row of ``g`` (in its row order; keys may differ).

    Grouped by quant mode only (a handful of groups): the numeric key fields enter the work
    formulas as arrays, which is what makes decoding a million rows take milliseconds.
    """
    spec = FAMILIES[family]
    flops = np.zeros(len(g))
    nbytes = np.zeros(len(g))
    classes = np.empty(len(g), dtype=object)
    qcols = list(spec.quant)
    groups = g.groupby(qcols, sort=False, observed=True).indices.items() if qcols else [((), np.arange(len(g)))]
    for q, idx in groups:
        q = q if isinstance(q, tuple) else (q,)
        rows = g.iloc[idx]
        key = {c: str(v) for c, v in zip(qcols, q)}
        for c in spec.key:
            if c not in key:
                col = rows[c]
                key[c] = col.to_numpy(dtype=np.float64) if col.dtype.kind in "iuf" else str(col.iloc[0])
        f, b, cls = WORK[family](key, *[rows[c].to_numpy(dtype=np.float64) for c in spec.axes])
        flops[idx] = f
        nbytes[idx] = b
        classes[idx] = cls
    return flops, nbytes, classes


def median_efficiency(eff: dict, family: str, framework: str, quant: str) -> EfficiencyFit | None:
    """Median efficiency fit of ``family`` across measured GPUs (same framework and quant mode if any)."""
    fam = eff.get(family, {})
    exact = [fits[framework][quant] for fits in fam.values() if framework in fits and quant in fits[framework]]
    anyfw = [f[quant] for fits in fam.values() for f in fits.values() if quant in f]
    every = [q for fits in fam.values() for f in fits.values() for q in f.values()]
    pool = exact or anyfw or every
    if not pool:
        return None
    return EfficiencyFit(
        float(np.median([p["e_compute"] for p in pool])),
        float(np.median([p["e_memory"] for p in pool])),
        float(np.median([p["overhead_s"] for p in pool])),
    )


def total_size(sizes: dict[str, int]) -> str:
    total = sum(sizes.values())
    return f"{total / 1e6:.2f} MB" if total >= 1e5 else f"{total / 1e3:.1f} kB"


__all__ = [
    "ARTEFACT_DIR",
    "Calibration",
    "collect",
    "shipped",
    "system_gpu",
    "median_efficiency",
]
