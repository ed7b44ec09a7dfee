"""Synthetic workloads: arrival processes and request-length distributions.

Everything random takes an explicit :class:`numpy.random.Generator`; nothing here touches global
random state. :func:`synthetic_workload` splits the generator it is given into independent
sub-streams for arrivals, input lengths and output lengths, so changing one of the three specs
leaves the other two draws unchanged.

Arrivals: the first request arrives at t = 0 and each later one one gap after the previous, so
``N`` requests span ``N - 1`` gaps (like ``vllm bench serve``, which sends its first request at
once). Gaps are never truncated: the long-run rate is exactly the configured rate.

Lengths are whole numbers of tokens, at least 1. Input and output lengths are drawn independently,
except from one empirical table, whose rows are drawn jointly.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from simcluster.errors import UserError
from simcluster.workload.workload import Workload

__all__ = [
    "ArrivalProcess",
    "LengthDistribution",
    "PoissonArrivals",
    "GammaArrivals",
    "ConstantArrivals",
    "FixedLength",
    "UniformLength",
    "LognormalLength",
    "LengthTable",
    "EmpiricalLength",
    "QuantileLength",
    "PRESETS",
    "load_preset",
    "preset_length",
    "synthetic_workload",
    "azure_conversation_like",
    "Z90",
]

# Standard-normal 90th percentile: a lognormal's p90 is median * exp(Z90 * sigma).
Z90 = 1.2815515655446004
# A synthetic workload larger than this is a mistake (it would need gigabytes before the run starts).
MAX_SYNTHETIC_REQUESTS = 100_000_000


class ArrivalProcess(Protocol):
    """Draws arrival times in seconds (float64, non-decreasing, first at 0)."""

    def times(
        self, rng: np.random.Generator, *, num_requests: int | None = None, duration_s: float | None = None
    ) -> np.ndarray: ...

    def describe(self) -> str: ...


class LengthDistribution(Protocol):
    """Draws ``n`` request lengths in tokens (int64, >= 1)."""

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def describe(self) -> str: ...


# --------------------------------------------------------------------------------------------
# Arrivals


def _check_count(num_requests: int | None, duration_s: float | None, rate_per_s: float) -> None:
    if (num_requests is None) == (duration_s is None):
        raise UserError("give exactly one of num_requests and duration_s", where="workload")
    if num_requests is not None and not 1 <= num_requests <= MAX_SYNTHETIC_REQUESTS:
        raise UserError(
            f"num_requests must be in [1, {MAX_SYNTHETIC_REQUESTS:,}], got {num_requests}", where="workload.num_requests"
        )
    if duration_s is not None:
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise UserError(f"duration_s must be a positive number, got {duration_s!r}", where="workload.duration_s")
        if duration_s * rate_per_s > MAX_SYNTHETIC_REQUESTS:
            raise UserError(
                f"duration_s x rate_per_s = {duration_s * rate_per_s:,.0f} requests, more than "
                f"{MAX_SYNTHETIC_REQUESTS:,}",
                where="workload.duration_s",
            )


def _renewal_times(draw_gaps, rate_per_s: float, num_requests: int | None, duration_s: float | None) -> np.ndarray:
    """Arrival times of a renewal process with first arrival at 0.

    ``draw_gaps(k)`` returns ``k`` independent gaps in seconds. With ``duration_s`` every arrival
    in ``[0, duration_s)`` is returned.
    """
    if num_requests is not None:
        times = np.empty(num_requests, dtype=np.float64)
        times[0] = 0.0
        np.cumsum(draw_gaps(num_requests - 1), out=times[1:])
        return times
    # Draw in chunks sized to cover the window with high probability; loop in the rare case not.
    expected = rate_per_s * duration_s
    chunk = int(expected + 6 * math.sqrt(expected) + 16)
    parts = [np.zeros(1)]
    last = 0.0
    while last < duration_s:
        part = last + np.cumsum(draw_gaps(chunk))
        parts.append(part)
        last = float(part[-1])
    times = np.concatenate(parts)
    return times[: int(np.searchsorted(times, duration_s, side="left"))]


def _check_rate(rate_per_s: float) -> None:
    if not (isinstance(rate_per_s, (int, float)) and math.isfinite(rate_per_s) and rate_per_s > 0):
        raise UserError(
            f"rate_per_s must be a positive number, got {rate_per_s!r}", where="workload.arrival.rate_per_s"
        )


@dataclass(frozen=True)
class PoissonArrivals:
    """Poisson arrivals: exponential gaps with mean exactly ``1 / rate_per_s`` seconds."""

    rate_per_s: float

    def __post_init__(self) -> None:
        _check_rate(self.rate_per_s)

    def times(
        self, rng: np.random.Generator, *, num_requests: int | None = None, duration_s: float | None = None
    ) -> np.ndarray:
        _check_count(num_requests, duration_s, self.rate_per_s)
        mean_gap = 1.0 / self.rate_per_s
        return _renewal_times(lambda k: rng.exponential(mean_gap, size=k), self.rate_per_s, num_requests, duration_s)

    def describe(self) -> str:
        return f"poisson {self.rate_per_s:g}/s"


@dataclass(frozen=True)
class GammaArrivals:
    """Gamma-renewal arrivals: gaps with mean ``1 / rate_per_s`` and coefficient of variation ``cv``.

    ``cv = 1`` is Poisson; ``cv > 1`` is burstier, ``cv < 1`` more regular. Shape ``1 / cv**2``,
    scale ``cv**2 / rate_per_s``.
    """

    rate_per_s: float
    cv: float

    def __post_init__(self) -> None:
        _check_rate(self.rate_per_s)
        if not (isinstance(self.cv, (int, float)) and math.isfinite(self.cv) and self.cv > 0):
            raise UserError(f"cv must be a positive number, got {self.cv!r}", where="workload.arrival.cv")

    def times(
        self, rng: np.random.Generator, *, num_requests: int | None = None, duration_s: float | None = None
    ) -> np.ndarray:
        _check_count(num_requests, duration_s, self.rate_per_s)
        shape = 1.0 / self.cv**2
        scale = self.cv**2 / self.rate_per_s
        return _renewal_times(lambda k: rng.gamma(shape, scale, size=k), self.rate_per_s, num_requests, duration_s)

    def describe(self) -> str:
        return f"gamma {self.rate_per_s:g}/s cv={self.cv:g}"


@dataclass(frozen=True)
class ConstantArrivals:
    """Deterministic arrivals every ``1 / rate_per_s`` seconds: request ``i`` at ``i / rate_per_s``."""

    rate_per_s: float

    def __post_init__(self) -> None:
        _check_rate(self.rate_per_s)

    def times(
        self, rng: np.random.Generator | None = None, *, num_requests: int | None = None, duration_s: float | None = None
    ) -> np.ndarray:
        _check_count(num_requests, duration_s, self.rate_per_s)
        if num_requests is None:
            num_requests = math.ceil(duration_s * self.rate_per_s) + 1
        # i / rate rather than a running sum, so no rounding error accumulates.
        times = np.arange(num_requests, dtype=np.float64) / self.rate_per_s
        return times if duration_s is None else times[times < duration_s]

    def describe(self) -> str:
        return f"constant {self.rate_per_s:g}/s"


# --------------------------------------------------------------------------------------------
# Lengths


def _to_tokens(x: np.ndarray, low: int | None = None, high: int | None = None) -> np.ndarray:
    """Continuous lengths to whole tokens: round to nearest, at least 1, clipped to [low, high] if given."""
    tokens = np.rint(x)
    if low is not None or high is not None:
        tokens = np.clip(tokens, low, high)
    if tokens.size and tokens.max() >= 2.0**53:
        raise UserError("the length distribution produced a length above 2**53 tokens: give max", where="workload")
    return np.maximum(tokens, 1).astype(np.int64)


@dataclass(frozen=True)
class FixedLength:
    """Every request has ``value`` tokens."""

    value: int

    def __post_init__(self) -> None:
        if self.value < 1:
            raise UserError(f"a fixed length must be >= 1 token, got {self.value}", where="workload")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int64)

    def describe(self) -> str:
        return f"fixed {self.value}"


@dataclass(frozen=True)
class UniformLength:
    """Uniform whole numbers of tokens in ``[low, high]``, both ends included."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high:
            raise UserError(f"uniform lengths need 1 <= low <= high, got [{self.low}, {self.high}]", where="workload")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.low, self.high, size=n, endpoint=True, dtype=np.int64)

    def describe(self) -> str:
        return f"uniform [{self.low}, {self.high}]"


@dataclass(frozen=True)
class LognormalLength:
    """Lognormal lengths given by their ``median`` and 90th percentile ``p90`` (tokens).

    The underlying normal has ``mu = ln(median)`` and ``sigma = ln(p90 / median) / Z90``; the mean
    is ``median * exp(sigma**2 / 2)``. Draws are rounded to whole tokens (at least 1) and clipped
    to ``[min_tokens, max_tokens]`` only where those are given.
    """

    median: float
    p90: float
    min_tokens: int | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.median) and math.isfinite(self.p90) and 0 < self.median < self.p90):
            raise UserError(
                f"lognormal lengths need 0 < median < p90, got median={self.median}, p90={self.p90}", where="workload"
            )
        if self.min_tokens is not None and self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise UserError(f"min {self.min_tokens} is above max {self.max_tokens}", where="workload")

    @property
    def mu(self) -> float:
        return math.log(self.median)

    @property
    def sigma(self) -> float:
        return math.log(self.p90 / self.median) / Z90

    @property
    def mean(self) -> float:
        """Mean of the unrounded, unclipped distribution in tokens."""
        return math.exp(self.mu + self.sigma**2 / 2)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return _to_tokens(rng.lognormal(self.mu, self.sigma, size=n), self.min_tokens, self.max_tokens)

    def describe(self) -> str:
        clip = f" clipped to [{self.min_tokens}, {self.max_tokens}]" if self.min_tokens or self.max_tokens else ""
        return f"lognormal median={self.median:g} p90={self.p90:g}{clip}"


@dataclass(frozen=True, eq=False)
class LengthTable:
    """Rows of a length table (e.g. ``num_prefill_tokens,num_decode_tokens``) to draw from.

    ``columns`` maps each column name to an int64 array; all arrays have one length.
    """

    columns: dict[str, np.ndarray]
    source: str = ""

    @classmethod
    def read(cls, path: str | Path, columns: list[str]) -> LengthTable:
        from simcluster.workload.traces import read_length_table

        return cls(read_length_table(path, columns), source=str(path))

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))


@dataclass(frozen=True, eq=False)
class EmpiricalLength:
    """Lengths drawn from column ``column`` of a :class:`LengthTable`, with replacement.

    When the input and the output lengths of a workload come from the same table object, each
    request draws one row for both (joint sampling keeps their correlation).
    """

    table: LengthTable
    column: str

    def __post_init__(self) -> None:
        if self.column not in self.table.columns:
            raise UserError(f"the length table has no column {self.column!r}", where=self.table.source)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.table.columns[self.column][rng.integers(0, len(self.table), size=n)]

    def describe(self) -> str:
        return f"empirical {self.table.source}:{self.column}"


@dataclass(frozen=True, eq=False)
class QuantileLength:
    """Lengths drawn by inverse transform from a quantile table.

    ``probabilities`` (increasing, from 0 to 1) and ``quantiles`` (non-decreasing, tokens) define a
    piecewise-linear CDF; a uniform draw ``u`` maps to ``interp(u, probabilities, quantiles)``,
    rounded to whole tokens (at least 1).
    """

    probabilities: np.ndarray
    quantiles: np.ndarray
    name: str = "quantile table"

    def __post_init__(self) -> None:
        p, q = np.asarray(self.probabilities, float), np.asarray(self.quantiles, float)
        if (
            p.ndim != 1
            or p.shape != q.shape
            or p.size < 2
            or (p[0], p[-1]) != (0, 1)
            or np.any(np.diff(p) <= 0)
            or np.any(np.diff(q) < 0)
        ):
            raise ValueError(f"{self.name}: not a valid quantile table")
        object.__setattr__(self, "probabilities", p)
        object.__setattr__(self, "quantiles", q)

    @property
    def mean(self) -> float:
        """Mean of the piecewise-linear distribution (before rounding), in tokens."""
        return float(np.sum(np.diff(self.probabilities) * (self.quantiles[1:] + self.quantiles[:-1]) / 2))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return _to_tokens(np.interp(rng.random(n), self.probabilities, self.quantiles))

    def describe(self) -> str:
        return self.name


# --------------------------------------------------------------------------------------------
# Presets: distributions fitted to public traces, shipped as package data


PRESETS = {"azure_conv_2023": "azure_conv_2023_lengths.json"}


@functools.lru_cache(maxsize=None)
def load_preset(name: str) -> dict:
    """The fitted parameters of preset ``name`` (see ``simcluster/data/<file>.json``)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}", where="workload")
    text = resources.files("simcluster").joinpath("data", PRESETS[name]).read_text(encoding="utf-8")
    return json.loads(text)


def preset_length(name: str, side: str) -> QuantileLength:
    """The ``side`` (``"input"`` or ``"output"``) length distribution of preset ``name``."""
    table = load_preset(name)[f"{side}_tokens"]
    return QuantileLength(
        np.array(table["probabilities"]), np.array(table["quantiles"]), name=f"preset {name} {side}"
    )


def azure_conversation_like(
    num_requests: int,
    rate_per_s: float | None,
    rng: np.random.Generator,
    *,
    interarrival_cv: float | None = None,
) -> Workload:
    """A synthetic stand-in for the Azure LLM inference trace 2023, conversation service.

    Context and generated token counts follow quantile tables fitted to that trace
    (``simcluster/data/azure_conv_2023_lengths.json``; drawn independently, their rank
    correlation in the trace is below 0.1). Arrivals are a gamma renewal process with the trace's
    inter-arrival coefficient of variation unless ``interarrival_cv`` is given (1 = Poisson).

    Args:
        num_requests: how many requests.
        rate_per_s: requests per second; ``None`` for the trace's own rate (about 5.5/s).
        rng: the random generator.
    """
    fitted = load_preset("azure_conv_2023")["arrival"]
    arrival = GammaArrivals(
        rate_per_s=fitted["rate_per_s"] if rate_per_s is None else rate_per_s,
        cv=fitted["interarrival_cv"] if interarrival_cv is None else interarrival_cv,
    )
    return synthetic_workload(
        arrival,
        preset_length("azure_conv_2023", "input"),
        preset_length("azure_conv_2023", "output"),
        rng,
        num_requests=num_requests,
    )


# --------------------------------------------------------------------------------------------


def synthetic_workload(
    arrival: ArrivalProcess,
    input_tokens: LengthDistribution,
    output_tokens: LengthDistribution,
    rng: np.random.Generator,
    *,
    num_requests: int | None = None,
    duration_s: float | None = None,
) -> Workload:
    """A synthetic workload of ``num_requests`` requests, or of every arrival in ``[0, duration_s)``.

    Arrival times, input lengths and output lengths use three independent sub-streams of ``rng``
    (``rng.spawn(3)``). Two :class:`EmpiricalLength` on the same :class:`LengthTable` are
    sampled jointly: one table row per request.
    """
    arrival_rng, input_rng, output_rng = rng.spawn(3)
    times = arrival.times(arrival_rng, num_requests=num_requests, duration_s=duration_s)
    n = len(times)
    if (
        isinstance(input_tokens, EmpiricalLength)
        and isinstance(output_tokens, EmpiricalLength)
        and input_tokens.table is output_tokens.table
    ):
        rows = input_rng.integers(0, len(input_tokens.table), size=n)
        inputs = input_tokens.table.columns[input_tokens.column][rows]
        outputs = output_tokens.table.columns[output_tokens.column][rows]
        lengths = f"lengths {input_tokens.describe()} / {output_tokens.column} (joint rows)"
    else:
        inputs = input_tokens.sample(n, input_rng)
        outputs = output_tokens.sample(n, output_rng)
        lengths = f"input {input_tokens.describe()}, output {output_tokens.describe()}"
    count = f"{num_requests} requests" if num_requests is not None else f"{duration_s:g} s ({n} requests)"
    return Workload(
        arrival_s=times,
        input_tokens=inputs,
        output_tokens=outputs,
        source=f"synthetic: {count}, arrivals {arrival.describe()}, {lengths}",
    )
