"""A rectilinear interpolation table over log2 size axes, with its holes filled.

Measured shapes rarely form a full grid: large batch x long context attention runs out of memory,
some kernels skip shapes, and the fit report holds out a fifth of the points. A :class:`Grid` puts
the measured latencies on the grid spanned by the measured axis values and fills every hole before
any lookup. Holes are filled in *efficiency* space, ``ln(latency / roofline)`` (see :mod:`.work`),
which keeps the physics across wide gaps (a GEMM's latency grows like its FLOPs once
compute-bound; a decode step's like its KV bytes):

1. **Interpolation passes.** A hole bracketed along some axis by known cells (nearest on each side)
   gets the linear interpolation in log2 coordinates; estimates from several axes are averaged with
   weights 1/span, so the tightest bracket dominates. Repeated until nothing changes, so a hole
   can be bracketed by cells filled in an earlier pass.
2. **Extrapolation passes.** A hole known only on one side takes the efficiency of its nearest
   known neighbour: the efficiency is held constant and the roofline carries the size dependence.

The grid then stores ``ln(latency)`` at every node, and a lookup is multilinear in log2 coordinates
on it (log-log linear): a lookup at a measured cell returns that cell, and between two measured
nodes the latency is monotone whenever the two nodes are. Queries outside the axes are clamped
here; :class:`~.tables.OpTable` scales the clamped value by the roofline ratio.

Each cell remembers its origin (measured, interpolated, extrapolated), and a lookup reports the
worst origin among the cells it blends, plus "extrapolated" when the query is outside the axes.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import product

import numpy as np

# Provenance of one lookup, as codes (arrays) and labels (what a step breakdown prints). Codes are
# ordered by how far the answer is from a measurement, so the worst of several is their maximum.
MEASURED, INTERPOLATED, OTHER_FRAMEWORK, EXTRAPOLATED, ALPHA_BETA, DATASHEET = range(6)
SOURCE_LABELS = (
    "measured",
    "interpolated",
    "measured(other framework)",
    "extrapolated(roofline×eff)",
    "extrapolated(alpha-beta)",
    "datasheet-roofline",
)

# Cell origins inside a grid.
_CELL_MEASURED, _CELL_INTERP, _CELL_EXTRAP = 0, 1, 2


def source_label(code: int) -> str:
    return SOURCE_LABELS[int(code)]


def _fill(value: np.ndarray, axes: list[np.ndarray]) -> np.ndarray:
    """Fill NaN cells of ``value`` in place (see module doc); return the per-cell origin codes."""
    origin = np.where(np.isnan(value), 255, _CELL_MEASURED).astype(np.uint8)
    d = value.ndim
    for extrapolate in (False, True):
        while True:
            holes = np.isnan(value)
            if not holes.any():
                return origin
            est = np.zeros_like(value)
            wsum = np.zeros_like(value)
            for ax in range(d):
                n = value.shape[ax]
                if n == 1:
                    continue
                v = np.moveaxis(value, ax, -1).reshape(-1, n)
                x = axes[ax]
                known = ~np.isnan(v)
                pos = np.arange(n)
                prev = np.maximum.accumulate(np.where(known, pos, -1), axis=1)
                nxt = np.minimum.accumulate(np.where(known, pos, n)[:, ::-1], axis=1)[:, ::-1]
                rows = np.arange(v.shape[0])[:, None]
                has_prev, has_next = prev >= 0, nxt < n
                pi, ni = np.clip(prev, 0, n - 1), np.clip(nxt, 0, n - 1)
                vp, vn = v[rows, pi], v[rows, ni]
                xp, xn = x[pi], x[ni]
                if not extrapolate:
                    ok = ~known & has_prev & has_next
                    span = np.where(ok, xn - xp, 1.0)
                    t = np.where(ok, (x[None, :] - xp) / span, 0.0)
                    e = vp + (vn - vp) * t
                    w = np.where(ok, 1.0 / span, 0.0)
                else:
                    ok = ~known & (has_prev | has_next)
                    # nearest known neighbour along this axis; prefer the closer side
                    dp = np.where(has_prev, x[None, :] - xp, np.inf)
                    dn = np.where(has_next, xn - x[None, :], np.inf)
                    use_prev = dp <= dn
                    e = np.where(use_prev, vp, vn)
                    dist = np.minimum(dp, dn)
                    w = np.where(ok, 1.0 / np.where(ok, dist, 1.0) ** 2, 0.0)
                e = np.where(ok, e, 0.0)
                shape = [s for i, s in enumerate(value.shape) if i != ax] + [n]
                est += np.moveaxis((e * w).reshape(shape), -1, ax)
                wsum += np.moveaxis(w.reshape(shape), -1, ax)
            new = holes & (wsum > 0)
            if not new.any():
                break
            value[new] = est[new] / wsum[new]
            origin[new] = _CELL_EXTRAP if extrapolate else _CELL_INTERP
    return origin


class Grid:
    """Filled table of ``ln(latency seconds)`` over log2 axes; see module doc.

    ``axes[j]`` holds the sorted log2 values of axis j; ``value`` and ``origin`` have one cell per
    combination.
    """

    __slots__ = ("axes", "value", "origin", "_ax", "_flat", "_subs", "_strides", "_axinfo")

    def __init__(self, axes: list[np.ndarray], value: np.ndarray, origin: np.ndarray) -> None:
        self.axes = axes
        self.value = value
        self.origin = origin
        # Plain Python copies for the scalar path: list indexing beats numpy scalar access ~10x.
        self._ax = [a.tolist() for a in axes]
        self._flat = value.ravel().tolist()
        self._subs: list[list[int]] | None = None
        strides, s = [], 1
        for n in reversed(value.shape):
            strides.append(s)
            s *= n
        self._strides = strides[::-1]
        self._axinfo = [(a, len(a), s, a[0], a[-1]) for a, s in zip(self._ax, self._strides)]

    @classmethod
    def from_points(cls, points: np.ndarray, ln_latency: np.ndarray, ln_roofline=None) -> "Grid":
        """``points``: (n, d) positive sizes; ``ln_latency``: (n,) ln(seconds) measured at them.

        ``ln_roofline(node_sizes (m, d)) -> (m,)`` gives the efficiency basis for filling holes;
        without it holes are filled in ln(latency) directly.
        """
        logp = np.log2(np.asarray(points, dtype=np.float64))
        d = logp.shape[1]
        axes = [np.unique(logp[:, j]) for j in range(d)]
        idx = tuple(np.searchsorted(axes[j], logp[:, j]) for j in range(d))
        shape = [len(a) for a in axes]
        if ln_roofline is not None:
            mesh = np.meshgrid(*[np.exp2(a) for a in axes], indexing="ij")
            basis = np.asarray(ln_roofline(np.stack([m.ravel() for m in mesh], axis=1)), dtype=np.float64).reshape(
                shape
            )
        else:
            basis = np.zeros(shape)
        value = np.full(shape, np.nan)
        value[idx] = ln_latency - basis[idx]
        origin = _fill(value, axes)
        value += basis
        value[idx] = ln_latency  # measured nodes exactly as measured
        return cls(axes, value, origin)

    def clamp(self, logq: np.ndarray) -> np.ndarray:
        """(n, d) log2 coordinates clamped into the axes."""
        lo = np.array([a[0] for a in self.axes])
        hi = np.array([a[-1] for a in self.axes])
        return np.clip(logq, lo, hi)

    def clamp1(self, logq) -> list[float]:
        return [
            first if x < first else (last if x > last else x) for (_, _, _, first, last), x in zip(self._axinfo, logq)
        ]

    def lookup(self, logq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised lookup at (n, d) log2 coordinates -> (value, source code) arrays."""
        logq = np.atleast_2d(logq)
        n = logq.shape[0]
        out = np.zeros(n, dtype=bool)
        on_node = np.ones(n, dtype=bool)
        lo_idx, ts = [], []
        for j, ax in enumerate(self.axes):
            x = logq[:, j]
            if len(ax) == 1:
                lo_idx.append(np.zeros(n, dtype=np.int64))
                ts.append(np.zeros(n))
                out |= x != ax[0]
                continue
            i = np.clip(np.searchsorted(ax, x, side="right") - 1, 0, len(ax) - 2)
            t = (x - ax[i]) / (ax[i + 1] - ax[i])
            out |= (t < 0) | (t > 1)
            t = np.clip(t, 0.0, 1.0)
            on_node &= (t == 0) | (t == 1)
            lo_idx.append(i)
            ts.append(t)
        val = np.zeros(n)
        worst = np.zeros(n, dtype=np.uint8)
        flat_v = self.value.ravel()
        flat_o = self.origin.ravel()
        for corner in product((0, 1), repeat=len(self.axes)):
            w = np.ones(n)
            flat = np.zeros(n, dtype=np.int64)
            for j, c in enumerate(corner):
                if len(self.axes[j]) == 1:
                    if c:
                        w = w * 0.0
                    continue
                w = w * (ts[j] if c else 1.0 - ts[j])
                flat += (lo_idx[j] + c) * self._strides[j]
            if not w.any():
                continue
            val += w * flat_v[flat]
            worst = np.where(w > 0, np.maximum(worst, flat_o[flat]), worst)
        code = np.where(
            out | (worst == _CELL_EXTRAP),
            EXTRAPOLATED,
            np.where(on_node & (worst == _CELL_MEASURED), MEASURED, INTERPOLATED),
        ).astype(np.uint8)
        return val, code

    def _sub_origins(self) -> list[list[int]]:
        """Per subset of spanned axes (bit mask), the worst origin over the cell's corners in them.

        Lets the scalar lookup label a query with one list access instead of a loop over corners.
        """
        d = self.value.ndim
        subs = []
        for mask in range(1 << d):
            o = self.origin.copy()
            for j in range(d):
                if mask >> j & 1 and o.shape[j] > 1:
                    shifted = np.zeros_like(o)
                    src = [slice(None)] * d
                    dst = [slice(None)] * d
                    src[j], dst[j] = slice(1, None), slice(None, -1)
                    shifted[tuple(dst)] = o[tuple(src)]
                    o = np.maximum(o, shifted)
            subs.append(o.ravel().tolist())
        return subs

    def lookup1(self, logq) -> tuple[float, int, bool]:
        """Scalar lookup (pure Python, for per-call use) -> (value, source code, outside the axes)."""
        out = False
        base = 0
        mask = 0
        ts = []
        ss = []
        bit = 1
        for (ax, n, s, first, last), x in zip(self._axinfo, logq):
            if n == 1:
                if x != first:
                    out = True
                ts.append(0.0)
                ss.append(0)
            else:
                if x <= first:
                    i, t = 0, 0.0
                    if x < first:
                        out = True
                elif x >= last:
                    i, t = n - 1, 0.0
                    if x > last:
                        out = True
                else:
                    i = bisect_right(ax, x) - 1
                    lo = ax[i]
                    t = (x - lo) / (ax[i + 1] - lo)
                base += i * s
                if t > 0.0:
                    mask |= bit
                    ts.append(t)
                    ss.append(s)
                else:  # on a node: this axis does not blend (stride 0 keeps every index in range)
                    ts.append(0.0)
                    ss.append(0)
            bit <<= 1
        f = self._flat
        d = len(ts)
        if d == 1:
            t0, s0 = ts[0], ss[0]
            val = f[base] * (1.0 - t0) + f[base + s0] * t0
        elif d == 2:
            t0, t1 = ts
            s0, s1 = ss
            b = base
            val = (1.0 - t0) * ((1.0 - t1) * f[b] + t1 * f[b + s1]) + t0 * (
                (1.0 - t1) * f[b + s0] + t1 * f[b + s0 + s1]
            )
        elif d == 3:
            t0, t1, t2 = ts
            s0, s1, s2 = ss
            b = base
            u2 = 1.0 - t2
            lo = (1.0 - t1) * (u2 * f[b] + t2 * f[b + s2]) + t1 * (u2 * f[b + s1] + t2 * f[b + s1 + s2])
            b = base + s0
            hi = (1.0 - t1) * (u2 * f[b] + t2 * f[b + s2]) + t1 * (u2 * f[b + s1] + t2 * f[b + s1 + s2])
            val = (1.0 - t0) * lo + t0 * hi
        else:  # not used by any family; kept general
            val = 0.0
            for corner in product((0, 1), repeat=d):
                w, off = 1.0, base
                for j, c in enumerate(corner):
                    w *= ts[j] if c else 1.0 - ts[j]
                    off += ss[j] * c
                val += w * f[off]
        subs = self._subs
        if subs is None:
            subs = self._subs = self._sub_origins()
        worst = subs[mask][base]
        if out or worst == _CELL_EXTRAP:
            return val, EXTRAPOLATED, out
        if mask == 0 and worst == _CELL_MEASURED:
            return val, MEASURED, False
        return val, INTERPOLATED, False
