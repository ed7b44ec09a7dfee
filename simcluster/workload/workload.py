"""The workload: what arrives at the cluster, when, and how long it is.

A :class:`Workload` is three parallel arrays (arrival time in seconds, input tokens, output tokens)
plus, for traces that have them, per-request prefix-block hash ids. Request ids are the row indices
``0..N-1`` in arrival order. Everything that produces a workload (trace readers, synthetic
generators, transformations) returns one of these, so the engine has a single input type.

The transformations here (:func:`scale_rate`, :func:`time_window`, :func:`head`) return new
workloads and record what they did in :attr:`Workload.notes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from simcluster.errors import UserError

__all__ = ["Workload", "scale_rate", "time_window", "head", "workload_stats"]


@dataclass(eq=False)
class Workload:
    """Requests in arrival order.

    Attributes:
        arrival_s: float64 seconds from the start of the run, non-decreasing, >= 0.
        input_tokens: int64 prompt length of each request in tokens, >= 1.
        output_tokens: int64 number of tokens each request generates, >= 1.
        hash_ids: per request, the int64 ids of its prefix blocks (block ``k`` covers input tokens
            ``[k * hash_block_tokens, (k + 1) * hash_block_tokens)``; equal ids across requests are
            shared prefixes); ``None`` when the source has none.
        hash_block_tokens: tokens per hash block (Mooncake traces: 512).
        source: where the workload came from (file and format, or the synthetic spec).
        notes: things a reader or transformation did that the user must know about.
    """

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: list[np.ndarray] | None = None
    hash_block_tokens: int = 512
    source: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Coerce once here so every consumer can rely on the dtypes; asarray does not copy
        # arrays that already have the right dtype.
        self.arrival_s = np.asarray(self.arrival_s, dtype=np.float64)
        self.input_tokens = np.asarray(self.input_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(self.output_tokens, dtype=np.int64)
        n = self.arrival_s.shape[0] if self.arrival_s.ndim == 1 else -1
        if not (self.arrival_s.ndim == self.input_tokens.ndim == self.output_tokens.ndim == 1) or not (
            n == self.input_tokens.shape[0] == self.output_tokens.shape[0]
        ):
            raise ValueError("arrival_s, input_tokens and output_tokens must be 1-d arrays of one length")
        if self.hash_ids is not None and len(self.hash_ids) != n:
            raise ValueError(f"hash_ids has {len(self.hash_ids)} entries for {n} requests")
        self.notes = tuple(self.notes)

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    def __repr__(self) -> str:
        return (
            f"Workload({len(self)} requests, source={self.source!r}, "
            f"hash_ids={'yes' if self.hash_ids is not None else 'no'}, notes={self.notes!r})"
        )

    def slice(self, start: int, stop: int) -> Workload:
        """Requests ``start..stop-1`` (Python slice semantics), times unchanged.

        The arrays are views of this workload's arrays, not copies.
        """
        sl = slice(start, stop)
        return replace(
            self,
            arrival_s=self.arrival_s[sl],
            input_tokens=self.input_tokens[sl],
            output_tokens=self.output_tokens[sl],
            hash_ids=None if self.hash_ids is None else self.hash_ids[sl],
        )

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last arrival (0 for fewer than two requests)."""
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) > 1 else 0.0

    def validate(self) -> None:
        """Raise ``ValueError`` if an invariant of the contract does not hold.

        Every producer in this package guarantees these; the check exists for code that builds a
        :class:`Workload` by hand (tests, plug-ins).
        """
        a = self.arrival_s
        if len(a) and (not np.all(np.isfinite(a)) or a[0] < 0):
            raise ValueError("arrival_s must be finite and >= 0")
        if len(a) > 1 and np.any(np.diff(a) < 0):
            raise ValueError("arrival_s must be non-decreasing")
        if len(a) and (self.input_tokens.min() < 1 or self.output_tokens.min() < 1):
            raise ValueError("token counts must be >= 1")
        if self.hash_block_tokens < 1:
            raise ValueError("hash_block_tokens must be >= 1")
        if self.hash_ids is not None and any(np.asarray(h).dtype != np.int64 for h in self.hash_ids):
            raise ValueError("hash_ids must be int64 arrays")


def _with_note(workload: Workload, note: str, **changes: object) -> Workload:
    return replace(workload, notes=workload.notes + (note,), **changes)


def scale_rate(workload: Workload, factor: float) -> Workload:
    """Multiply the request rate by ``factor``: every arrival time is divided by ``factor``.

    ``factor=2`` replays the same requests twice as fast; counts and lengths are unchanged.
    """
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise UserError(f"the rate scale must be a positive number, got {factor!r}", where="rate_scale")
    if factor == 1:
        return workload
    return _with_note(
        workload,
        f"arrival times divided by {factor:g} (request rate x{factor:g})",
        arrival_s=workload.arrival_s / factor,
    )


def time_window(workload: Workload, start_s: float, end_s: float | None = None) -> Workload:
    """Keep the requests that arrive in ``[start_s, end_s)`` and shift times so ``start_s`` is 0.

    ``end_s=None`` keeps everything from ``start_s`` on. The window's start, not its first
    request, becomes time 0, so the idle time before the first kept request is preserved.
    """
    end = math.inf if end_s is None else float(end_s)
    start = float(start_s)
    if not (math.isfinite(start) and start >= 0 and end > start) or math.isnan(end):
        raise UserError(
            f"the window must satisfy 0 <= start < end, got [{start_s!r}, {end_s!r})", where="window_s"
        )
    # Arrivals are sorted, so the window is one contiguous slice.
    lo = int(np.searchsorted(workload.arrival_s, start, side="left"))
    hi = int(np.searchsorted(workload.arrival_s, end, side="left"))
    kept = workload.slice(lo, hi)
    return _with_note(
        kept,
        f"window [{start:g}, {end:g}) s of the source: kept {hi - lo} of {len(workload)} requests, "
        f"times shifted by -{start:g} s",
        arrival_s=kept.arrival_s - start,
    )


def head(workload: Workload, n: int) -> Workload:
    """The first ``n`` requests (all of them when there are fewer)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise UserError(f"the request limit must be a whole number >= 0, got {n!r}", where="max_requests")
    if n >= len(workload):
        return workload
    return _with_note(workload.slice(0, int(n)), f"kept the first {n} of {len(workload)} requests")


def _summary(values: np.ndarray) -> dict[str, float]:
    p50, p90, p99 = np.quantile(values, [0.5, 0.9, 0.99])
    return {
        "mean": float(values.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(values.max()),
    }


def workload_stats(workload: Workload) -> dict[str, object]:
    """Summary statistics of a workload, as plain JSON-ready values.

    Keys: ``requests``; ``duration_s`` (first to last arrival); ``rate_per_s`` (1 / mean
    inter-arrival gap, ``None`` for fewer than two requests or zero duration);
    ``interarrival_cv`` (coefficient of variation of the gaps: 1 for Poisson arrivals);
    ``input_tokens`` / ``output_tokens`` (mean, p50, p90, p99, max); ``prefix_block_reuse``
    (fraction of prefix blocks whose hash id already occurred earlier in the workload, ``None``
    without hash ids); ``source``; ``notes``.
    """
    n = len(workload)
    duration = workload.duration_s
    gaps = np.diff(workload.arrival_s)
    stats: dict[str, object] = {
        "requests": n,
        "duration_s": duration,
        "rate_per_s": (n - 1) / duration if duration > 0 else None,
        "interarrival_cv": float(gaps.std() / gaps.mean()) if n > 2 and gaps.mean() > 0 else None,
        "input_tokens": _summary(workload.input_tokens) if n else None,
        "output_tokens": _summary(workload.output_tokens) if n else None,
        "prefix_block_reuse": None,
        "source": workload.source,
        "notes": list(workload.notes),
    }
    if workload.hash_ids is not None and n:
        blocks = np.concatenate(workload.hash_ids) if workload.hash_ids else np.empty(0, np.int64)
        if blocks.size:
            # A block is reused when its id occurred before: total minus distinct ids.
            stats["prefix_block_reuse"] = 1.0 - np.unique(blocks).size / blocks.size
        stats["hash_block_tokens"] = workload.hash_block_tokens
    return stats
