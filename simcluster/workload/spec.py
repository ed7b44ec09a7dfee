"""The ``workload:`` section of a scenario: typed models and :func:`build_workload`.

Two kinds, chosen by ``kind``::

    workload:                        workload:
      kind: trace                      kind: synthetic
      path: traces/sample_azure.csv    num_requests: 2000          # or duration_s
      format: auto                     arrival: {process: poisson, rate_per_s: 5.5}
      rate_scale: 1.0                  input_tokens: {dist: preset, name: azure_conv_2023}
      window_s: [0, 600]               output_tokens: {dist: lognormal, median: 129, p90: 424}
      max_requests: null

Arrival processes (``process``): ``poisson``, ``gamma`` (adds ``cv``), ``constant``, ``preset``.
Length distributions (``dist``): ``fixed``, ``uniform``, ``lognormal``, ``empirical``, ``preset``.
Unknown keys are rejected; a wrong key or value is reported at its dotted path
(``workload.arrival.rate_per_s``). ``docs/workloads.md`` documents every field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from simcluster.config.paths import dotted_location
from simcluster.errors import UserError
from simcluster.workload import synthetic
from simcluster.workload.traces import read_trace
from simcluster.workload.workload import Workload, head, scale_rate, time_window

__all__ = [
    "WorkloadSpec",
    "TraceWorkloadSpec",
    "SyntheticWorkloadSpec",
    "ArrivalSpec",
    "LengthSpec",
    "parse_workload_spec",
    "build_workload",
]

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1)]
PresetName = Literal["azure_conv_2023"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- arrivals -------------------------------------------------------------------------------


class PoissonArrivalSpec(_Spec):
    """Poisson arrivals: exponential gaps with mean ``1 / rate_per_s``."""

    process: Literal["poisson"]
    rate_per_s: PositiveFloat

    def build(self) -> synthetic.ArrivalProcess:
        return synthetic.PoissonArrivals(self.rate_per_s)


class GammaArrivalSpec(_Spec):
    """Gamma-renewal arrivals: mean gap ``1 / rate_per_s``, gap coefficient of variation ``cv``."""

    process: Literal["gamma"]
    rate_per_s: PositiveFloat
    cv: PositiveFloat

    def build(self) -> synthetic.ArrivalProcess:
        return synthetic.GammaArrivals(self.rate_per_s, self.cv)


class ConstantArrivalSpec(_Spec):
    """A request every ``1 / rate_per_s`` seconds."""

    process: Literal["constant"]
    rate_per_s: PositiveFloat

    def build(self) -> synthetic.ArrivalProcess:
        return synthetic.ConstantArrivals(self.rate_per_s)


class PresetArrivalSpec(_Spec):
    """The arrival statistics fitted to a public trace: gamma renewal with the trace's rate and
    inter-arrival CV; ``rate_per_s`` overrides the rate."""

    process: Literal["preset"]
    name: PresetName
    rate_per_s: PositiveFloat | None = None

    def build(self) -> synthetic.ArrivalProcess:
        fitted = synthetic.load_preset(self.name)["arrival"]
        rate = fitted["rate_per_s"] if self.rate_per_s is None else self.rate_per_s
        return synthetic.GammaArrivals(rate, fitted["interarrival_cv"])


ArrivalSpec = Annotated[
    Union[PoissonArrivalSpec, GammaArrivalSpec, ConstantArrivalSpec, PresetArrivalSpec],
    Field(discriminator="process"),
]


# --- lengths --------------------------------------------------------------------------------


class FixedLengthSpec(_Spec):
    """Every request has ``value`` tokens."""

    dist: Literal["fixed"]
    value: PositiveInt


class UniformLengthSpec(_Spec):
    """Whole numbers of tokens uniform in ``[low, high]``, both included."""

    dist: Literal["uniform"]
    low: PositiveInt
    high: PositiveInt

    @model_validator(mode="after")
    def _ordered(self) -> UniformLengthSpec:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class LognormalLengthSpec(_Spec):
    """Lognormal by median and 90th percentile (tokens); clipped to ``[min, max]`` where given."""

    dist: Literal["lognormal"]
    median: PositiveFloat
    p90: PositiveFloat
    min: PositiveInt | None = None
    max: PositiveInt | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LognormalLengthSpec:
        if self.p90 <= self.median:
            raise ValueError(f"p90 ({self.p90}) must be above median ({self.median})")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class EmpiricalLengthSpec(_Spec):
    """Rows of a CSV length table, drawn with replacement; ``path`` is relative to the scenario.

    When ``input_tokens`` and ``output_tokens`` name the same file, each request draws one row
    for both.
    """

    dist: Literal["empirical"]
    path: str
    column: str


class PresetLengthSpec(_Spec):
    """The length distribution fitted to a public trace (input or output side, by position)."""

    dist: Literal["preset"]
    name: PresetName


LengthSpec = Annotated[
    Union[FixedLengthSpec, UniformLengthSpec, LognormalLengthSpec, EmpiricalLengthSpec, PresetLengthSpec],
    Field(discriminator="dist"),
]


# --- workloads ------------------------------------------------------------------------------


class TraceWorkloadSpec(_Spec):
    """Replay a trace file; ``path`` is relative to the scenario file's folder.

    Applied in this order: ``window_s`` (in the trace's own time, then shifted to start at 0),
    ``rate_scale`` (2 = twice the request rate), ``max_requests`` (the first N).
    """

    kind: Literal["trace"]
    path: str
    format: Literal["auto", "azure", "mooncake", "burstgpt", "parquet"] = "auto"
    rate_scale: PositiveFloat = 1.0
    window_s: tuple[Annotated[float, Field(ge=0, allow_inf_nan=False)], PositiveFloat | None] | None = None
    max_requests: PositiveInt | None = None

    @field_validator("window_s")
    @classmethod
    def _window(cls, window: tuple[float, float | None] | None) -> tuple[float, float | None] | None:
        if window is not None and window[1] is not None and window[1] <= window[0]:
            raise ValueError(f"the end ({window[1]}) must be after the start ({window[0]})")
        return window


class SyntheticWorkloadSpec(_Spec):
    """Generate requests: ``num_requests`` of them, or every arrival in ``[0, duration_s)``."""

    kind: Literal["synthetic"]
    num_requests: Annotated[int, Field(ge=1, le=synthetic.MAX_SYNTHETIC_REQUESTS)] | None = None
    duration_s: PositiveFloat | None = None
    arrival: ArrivalSpec
    input_tokens: LengthSpec
    output_tokens: LengthSpec

    @model_validator(mode="after")
    def _one_size(self) -> SyntheticWorkloadSpec:
        if (self.num_requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of num_requests and duration_s")
        return self


class PhaseSpec(_Spec):
    """One phase of a phased workload: its own arrivals and lengths for ``duration_s`` seconds."""

    duration_s: PositiveFloat
    arrival: ArrivalSpec
    input_tokens: LengthSpec
    output_tokens: LengthSpec


class PhasedWorkloadSpec(_Spec):
    """Synthetic phases back to back: traffic that rises and falls, or a length mix that shifts.

    Phase ``k`` covers ``[Σ earlier durations, + duration_s)``; its arrivals start afresh at its
    beginning (a renewal process restarted per phase) and are drawn from the run's generator in
    phase order, so the same seed gives the same requests.
    """

    kind: Literal["phased"]
    phases: Annotated[list[PhaseSpec], Field(min_length=1)]


WorkloadSpec = Annotated[Union[TraceWorkloadSpec, SyntheticWorkloadSpec, PhasedWorkloadSpec],
                         Field(discriminator="kind")]
_WORKLOAD_ADAPTER: TypeAdapter = TypeAdapter(WorkloadSpec)


def parse_workload_spec(data: Any, where: str = "workload") -> TraceWorkloadSpec | SyntheticWorkloadSpec:
    """Validate a ``workload:`` mapping; errors become a :class:`UserError` at the field's dotted path."""
    try:
        return _WORKLOAD_ADAPTER.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        kind = err["type"]
        path = dotted_location(tuple(err["loc"]), data, where, missing=kind == "missing")
        message = err["msg"].removeprefix("Value error, ")
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            tag = err.get("ctx", {}).get("discriminator", "").strip("'")
            path = f"{path}.{tag}" if tag else path
            if kind == "union_tag_invalid":
                message = f"{err['ctx'].get('tag')!r} is not one of {err['ctx'].get('expected_tags')}"
            else:
                message = "required but missing"
        elif kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "required but missing"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise UserError(message + more, where=path) from None


def _length(
    spec: Any, side: str, base_dir: Path, tables: dict[Path, synthetic.LengthTable]
) -> synthetic.LengthDistribution:
    if isinstance(spec, FixedLengthSpec):
        return synthetic.FixedLength(spec.value)
    if isinstance(spec, UniformLengthSpec):
        return synthetic.UniformLength(spec.low, spec.high)
    if isinstance(spec, LognormalLengthSpec):
        return synthetic.LognormalLength(spec.median, spec.p90, spec.min, spec.max)
    if isinstance(spec, PresetLengthSpec):
        return synthetic.preset_length(spec.name, side)
    if isinstance(spec, EmpiricalLengthSpec):
        return synthetic.EmpiricalLength(tables[_resolve(spec.path, base_dir)], spec.column)
    raise TypeError(f"not a length spec: {spec!r}")  # pragma: no cover


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


def build_workload(
    spec: TraceWorkloadSpec | SyntheticWorkloadSpec | PhasedWorkloadSpec | dict[str, Any], rng: np.random.Generator, base_dir: Path
) -> Workload:
    """The workload a ``workload:`` section describes.

    Args:
        spec: a validated spec, or a plain mapping (validated here).
        rng: the run's generator (only synthetic workloads draw from it).
        base_dir: the scenario file's folder; relative paths resolve against it.
    """
    if not isinstance(spec, (TraceWorkloadSpec, SyntheticWorkloadSpec, PhasedWorkloadSpec)):
        spec = parse_workload_spec(spec)
    if isinstance(spec, PhasedWorkloadSpec):
        parts, t0 = [], 0.0
        for ph in spec.phases:
            w = build_workload(SyntheticWorkloadSpec(kind="synthetic", duration_s=ph.duration_s, arrival=ph.arrival,
                                                     input_tokens=ph.input_tokens, output_tokens=ph.output_tokens),
                               rng, base_dir)
            parts.append((w.arrival_s + t0, w.input_tokens, w.output_tokens, w.source))
            t0 += ph.duration_s
        return Workload(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                        np.concatenate([p[2] for p in parts]),
                        source="phased: " + " | ".join(f"{ph.duration_s:g} s {p[3]}" for ph, p in zip(spec.phases, parts)))
    if isinstance(spec, TraceWorkloadSpec):
        workload = read_trace(_resolve(spec.path, base_dir), None if spec.format == "auto" else spec.format)
        if spec.window_s is not None:
            workload = time_window(workload, spec.window_s[0], spec.window_s[1])
            if len(workload) == 0:
                raise UserError(
                    f"no request of {spec.path} arrives in the window {list(spec.window_s)}", where="workload.window_s"
                )
        workload = scale_rate(workload, spec.rate_scale)
        if spec.max_requests is not None:
            workload = head(workload, spec.max_requests)
        return workload

    # One LengthTable per file, holding every column either side asks for, so that two sides
    # naming the same file share the table object and are drawn jointly.
    columns: dict[Path, list[str]] = {}
    for side in (spec.input_tokens, spec.output_tokens):
        if isinstance(side, EmpiricalLengthSpec):
            columns.setdefault(_resolve(side.path, base_dir), []).append(side.column)
    tables = {path: synthetic.LengthTable.read(path, list(dict.fromkeys(cols))) for path, cols in columns.items()}
    return synthetic.synthetic_workload(
        spec.arrival.build(),
        _length(spec.input_tokens, "input", base_dir, tables),
        _length(spec.output_tokens, "output", base_dir, tables),
        rng,
        num_requests=spec.num_requests,
        duration_s=spec.duration_s,
    )
