"""A weighted log-spaced histogram: percentiles of millions of samples in constant memory.

Bins are 1/200 of a decade wide (≈1.16 % relative), from 1 µs to 10^4 s; a percentile is reported
as the geometric centre of its bin, so it is within ±0.6 % of the exact sample percentile.
"""

from __future__ import annotations

import math

import numpy as np

_LO = -6.0  # log10 of the lowest edge (1 µs)
_PER_DECADE = 200
_NBINS = 10 * _PER_DECADE  # up to 10^4 s


class LogHistogram:
    __slots__ = ("counts", "total", "sum", "max")

    def __init__(self) -> None:
        self.counts = np.zeros(_NBINS + 2, dtype=np.float64)  # [underflow, bins..., overflow]
        self.total = 0.0
        self.sum = 0.0
        self.max = 0.0

    @staticmethod
    def _index(x: float) -> int:
        if x <= 0:
            return 0
        i = int((math.log10(x) - _LO) * _PER_DECADE) + 1
        return 0 if i < 1 else (_NBINS + 1 if i > _NBINS else i)

    def add_one(self, x: float, weight: float = 1.0) -> None:
        self.counts[self._index(x)] += weight
        self.total += weight
        self.sum += x * weight
        if x > self.max:
            self.max = x

    def add_many(self, xs: np.ndarray, weight: float = 1.0) -> None:
        if len(xs) == 0:
            return
        with np.errstate(divide="ignore"):
            idx = ((np.log10(np.maximum(xs, 1e-300)) - _LO) * _PER_DECADE).astype(np.int64) + 1
        np.clip(idx, 0, _NBINS + 1, out=idx)
        np.add.at(self.counts, idx, weight)
        self.total += weight * len(xs)
        self.sum += float(np.sum(xs)) * weight
        m = float(np.max(xs))
        if m > self.max:
            self.max = m

    def add_run(self, xs: np.ndarray, total: float, weight: float = 1.0) -> None:
        """Add the step latencies of a run of decode steps (``total`` = their sum).

        Step latency grows with context, so a run is sorted: when its first and last values share a
        bin, so do all, and the run costs O(1) instead of a pass over its steps.
        """
        n = len(xs)
        if n == 0:
            return
        lo = self._index(float(xs[0]))
        last = float(xs[-1])
        if lo != self._index(last) or (n > 2 and float(xs[n // 2]) < float(xs[0])):
            self.add_many(xs, weight)
            return
        self.counts[lo] += weight * n
        self.total += weight * n
        self.sum += total * weight
        if last > self.max:
            self.max = last

    def add_affine(self, first: float, slope: float, n: int, total: float, weight: float = 1.0) -> None:
        """Add ``n`` step latencies ``first + slope·i`` (i = 0..n−1) summing to ``total``: O(1) when
        the first and last share a bin (the usual case), else one pass."""
        if n <= 0:
            return
        last = first + slope * (n - 1)
        lo = self._index(first)
        if lo != self._index(last):
            self.add_many(first + slope * np.arange(n, dtype=float), weight)
            return
        self.counts[lo] += weight * n
        self.total += weight * n
        self.sum += total * weight
        m = max(first, last)
        if m > self.max:
            self.max = m

    def mean(self) -> float:
        return self.sum / self.total if self.total else math.nan

    def percentile(self, q: float) -> float:
        """q in [0, 100]."""
        if self.total <= 0:
            return math.nan
        target = self.total * q / 100.0
        c = np.cumsum(self.counts)
        i = int(np.searchsorted(c, target, side="left"))
        i = min(i, _NBINS + 1)
        if i == 0:
            return 10**_LO
        if i == _NBINS + 1:
            return self.max
        lo = _LO + (i - 1) / _PER_DECADE
        return 10 ** (lo + 0.5 / _PER_DECADE)
