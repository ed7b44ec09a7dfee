"""Lookups in the measured tables of one op family on one GPU for one framework.

An :class:`OpTable` holds the measured points of every key (discrete shape: dtype, heads, expert
configuration, ...) and answers "latency of this key at these sizes". Keys that were not measured
are answered from measured neighbours, in efficiency space (the roofline is always computed for the
*queried* shape):

* **bracketing**: another key differs in one numeric field (e.g. ``q_heads``) with measured keys
  on both sides -> blend of their efficiencies, linear in log2 of that field -> "interpolated";
* **nearest**: otherwise the key nearest in summed |log2 ratio| of the numeric fields, with the same
  dtypes -> its efficiency -> "extrapolated(roofline×eff)".

Grids are built lazily, on the first lookup of a key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from simcluster.perf.calibration.grid import EXTRAPOLATED, INTERPOLATED, MEASURED, Grid
from simcluster.perf.calibration.load import FAMILIES
from simcluster.perf.calibration.work import WORK, Peaks

# Key fields that are sizes (may be bracketed or approximated by the nearest); the others must match.
NUMERIC_KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "attention_prefill": ("q_heads", "kv_heads", "head_dim"),
    "attention_decode": ("q_heads", "kv_heads", "head_dim"),
    "mla_prefill": ("q_heads",),
    "mla_decode": ("q_heads",),
    "mla_module_prefill": ("q_heads",),
    "mla_module_decode": ("q_heads",),
    "mla_bmm": ("q_heads",),
    "moe": ("hidden", "inter", "experts", "topk"),
}


def roofline_s(family: str, peaks: Peaks, key: dict, axes, vectorised: bool):
    """Datasheet roofline seconds of ``family`` at ``axes`` (arrays if ``vectorised``), >= 1 ns."""
    if family not in WORK:  # collectives are interpolated on raw latency
        return np.ones_like(axes[0], dtype=np.float64) if vectorised else 1.0
    flops, nbytes, cls = WORK[family](key, *axes)
    peak = peaks.flops.get(cls, peaks.flops["bf16"])
    if vectorised:
        return np.maximum(np.maximum(flops / peak, nbytes / peaks.hbm_Bps), 1e-9)
    return max(flops / peak, nbytes / peaks.hbm_Bps, 1e-9)


@dataclass
class OpTable:
    """Measured points of one family (one system, one framework), with lazily built grids.

    ``frame`` has the family's key columns, its axes and ``latency_ms``.
    """

    family: str
    frame: pd.DataFrame
    peaks: Peaks
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = FAMILIES[self.family]
        self.key_fields = spec.key
        self.axis_fields = spec.axes
        self.numeric = NUMERIC_KEY_FIELDS.get(self.family, ())
        self._points: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        for key, g in self.frame.groupby(list(spec.key), sort=True):
            key = key if isinstance(key, tuple) else (key,)
            key = tuple(_plain(k) for k in key)
            pts = g[list(spec.axes)].to_numpy(dtype=np.float64)
            self._points[key] = (pts, g["latency_ms"].to_numpy(dtype=np.float64) * 1e-3)
        self._grids: dict[tuple, Grid] = {}
        self._resolved: dict[tuple, tuple[list[tuple[tuple, float]], int] | None] = {}
        # Flattened for the scalar path.
        self._work = WORK.get(self.family)
        self._key_dicts: dict[tuple, dict] = {}
        self._peak_flops = self.peaks.flops
        self._peak_bf16 = self.peaks.flops["bf16"]
        self._hbm = self.peaks.hbm_Bps

    # ----- keys -----
    def keys(self) -> list[tuple]:
        return list(self._points)

    def key_dict(self, key: tuple) -> dict:
        return dict(zip(self.key_fields, key))

    def has(self, **match) -> bool:
        """Whether some measured key matches all of ``match`` (field=value)."""
        idx = [self.key_fields.index(f) for f in match]
        vals = list(match.values())
        return any(all(k[i] == v for i, v in zip(idx, vals)) for k in self._points)

    def key_values(self, field_name: str, **match) -> list:
        i = self.key_fields.index(field_name)
        idx = [self.key_fields.index(f) for f in match]
        vals = list(match.values())
        return sorted({k[i] for k in self._points if all(k[j] == v for j, v in zip(idx, vals))})

    def resolve(self, key: tuple) -> tuple[list[tuple[tuple, float]], int] | None:
        """Measured keys (with blend weights) that answer ``key``, and the provenance they imply."""
        if key in self._resolved:
            return self._resolved[key]
        res = self._resolve(key)
        self._resolved[key] = res
        return res

    def _resolve(self, key: tuple):
        if key in self._points:
            return [(key, 1.0)], MEASURED
        num_idx = [self.key_fields.index(f) for f in self.numeric]
        fixed_idx = [i for i in range(len(key)) if i not in num_idx]
        cands = [k for k in self._points if all(k[i] == key[i] for i in fixed_idx)]
        if not cands or not num_idx:
            return None
        for i in num_idx:  # bracketing along one numeric field, the others equal
            others = [j for j in num_idx if j != i]
            same = [k for k in cands if all(k[j] == key[j] for j in others)]
            lo = [k for k in same if k[i] < key[i]]
            hi = [k for k in same if k[i] > key[i]]
            if lo and hi:
                klo = max(lo, key=lambda k: k[i])
                khi = min(hi, key=lambda k: k[i])
                t = (math.log2(key[i]) - math.log2(klo[i])) / (math.log2(khi[i]) - math.log2(klo[i]))
                return [(klo, 1.0 - t), (khi, t)], INTERPOLATED

        def dist(k):
            return sum(abs(math.log2(max(k[i], 1e-9)) - math.log2(max(key[i], 1e-9))) for i in num_idx)

        best = min(cands, key=lambda k: (dist(k), k))
        return [(best, 1.0)], EXTRAPOLATED

    # ----- grids -----
    def grid(self, key: tuple) -> Grid:
        g = self._grids.get(key)
        if g is None:
            pts, lat = self._points[key]
            basis = None
            if self.family in WORK:
                kd = self.key_dict(key)

                def basis(nodes: np.ndarray) -> np.ndarray:
                    axes = [nodes[:, j] for j in range(nodes.shape[1])]
                    return np.log(roofline_s(self.family, self.peaks, kd, axes, True))

            g = Grid.from_points(pts, np.log(lat), basis)
            self._grids[key] = g
        return g

    # ----- lookups -----
    def predict(self, key: tuple, axes: list[np.ndarray], roof_key: dict | None = None):
        """Seconds and source codes at ``axes`` (arrays of equal length) for ``key``, or None.

        Inside the measured axes of a measured key this is the log-log interpolation of the table.
        Otherwise the answering table's latency at the nearest point inside its axes is scaled by
        the ratio of rooflines, ``roofline(key, sizes) / roofline(table key, clamped sizes)``: the
        efficiency is held. ``roof_key`` overrides the queried key for the roofline: a format
        without its own table (e.g. NVFP4 on Hopper) takes the efficiency of ``key``'s table and
        the work of ``roof_key``.
        """
        res = self.resolve(key)
        if res is None:
            return None
        parts, kcode = res
        axes = [np.asarray(a, dtype=np.float64) for a in axes]
        logq = np.log2(np.maximum(np.stack(axes, axis=1), 1e-9))
        val = np.zeros(len(axes[0]))
        code = np.zeros(len(axes[0]), dtype=np.uint8)
        scaled = self.family in WORK
        for k, w in parts:
            g = self.grid(k)
            v, c = g.lookup(logq)
            if scaled:
                qc = np.exp2(g.clamp(logq))
                v = v - np.log(
                    roofline_s(self.family, self.peaks, self.key_dict(k), [qc[:, j] for j in range(qc.shape[1])], True)
                )
            val += w * v
            code = np.maximum(code, c)
        if kcode != MEASURED:
            code = np.maximum(code, kcode)
        if scaled:
            val += np.log(roofline_s(self.family, self.peaks, roof_key or self.key_dict(key), axes, True))
        return np.exp(val), code

    def predict1(self, key: tuple, axes: tuple, roof_key: dict | None = None):
        """Scalar :meth:`predict`: (seconds, source code), or None."""
        res = self._resolved.get(key)
        if res is None:
            res = self.resolve(key)
            if res is None:
                return None
        parts, kcode = res
        try:
            logq = [_log2(a) for a in axes]
        except ValueError:  # a zero size: far below every axis, clamps to the first node
            logq = [_log2(a) if a > 0 else -30.0 for a in axes]
        work = self._work
        if len(parts) == 1:
            k0 = parts[0][0]
            g = self._grids.get(k0) or self.grid(k0)
            val, code, out = g.lookup1(logq)
            if work is None or (not out and kcode == MEASURED and roof_key is None):
                return math.exp(val), code  # inside a measured table: no roofline involved
            val -= math.log(self._roof1(k0, [2.0**x for x in g.clamp1(logq)]))
        else:
            val, code = 0.0, 0
            for k, w in parts:
                g = self.grid(k)
                v, c, _ = g.lookup1(logq)
                if work is not None:
                    v -= math.log(self._roof1(k, [2.0**x for x in g.clamp1(logq)]))
                val += w * v
                code = max(code, c)
        if kcode > code:
            code = kcode
        if work is None:
            return math.exp(val), code
        return math.exp(val) * self._roof1(key, axes, roof_key), code

    def _roof1(self, key: tuple, axes, roof_key: dict | None = None) -> float:
        rk = roof_key
        if rk is None:
            rk = self._key_dicts.get(key)
            if rk is None:
                rk = self._key_dicts[key] = self.key_dict(key)
        flops, nbytes, cls = self._work(rk, *axes)
        roof = flops / self._peak_flops.get(cls, self._peak_bf16)
        mem = nbytes / self._hbm
        if mem > roof:
            roof = mem
        return roof if roof > 1e-9 else 1e-9


_log2 = math.log2


def _plain(x):
    """numpy scalars -> Python scalars, so keys hash and compare like user input."""
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return x


__all__ = ["OpTable", "roofline_s", "NUMERIC_KEY_FIELDS", "INTERPOLATED", "EXTRAPOLATED", "MEASURED"]
