"""The design space of a sweep: a typed YAML spec and its expansion into design points.

A spec lists **axes**; the sweep evaluates their Cartesian product, mode by mode::

    name: llama70b-disagg
    gpu: [h200_sxm]                       # any field below takes a scalar or a list
    model: llama-3.1-70b
    formats: {weights: fp8, kv: fp8, activations: bf16}
    framework: vllm
    cost: roofline                        # roofline | calibrated | sol (scalar)
    knobs: {hop_b: [true, false]}         # kv_eviction_budget, resmoe_keep, hop_b, exchange_model, a2a_payload
    traffic: [{isl: 16384, osl: 2048}]    # or {isl: [...], osl: [...]} for a product
    mode: [disaggregated, colocated]      # decode | disaggregated | colocated
    decode:
      layouts: ["tp=8", {tp: [1, 2, 4], pp: [1, 2]}, {kvp: [2, 4, 8], tpa: 8}]
      batch: {start: 1, stop: 512, factor: 2}
      gpus: {min: 1, max: 64}
    prefill: {layouts: [{tp: [1, 2, 4, 8]}], batch: [1, 2], select: best}
    ratio: [rate_matched, 3.5, 0.5]
    constraints: {ftl_limit_s: 10}

Which axes a point has depends on its mode (the others are not multiplied in):

* ``decode``: a decode instance alone (Helix studies): decode layout × batch;
* ``disaggregated``: decode layout × batch × ratio, and prefill layout × batch when
  ``prefill.select`` is ``each`` (with ``best``, each point takes the prefill configuration of the
  prefill axes with the highest requests/s/GPU under the FTL limit, SEED-NOTES §2.3 Alg. 1);
* ``colocated``: the ``colocated`` section's layouts × token budget × batch (the decode section when
  absent).

Layout entries are layout strings (``"kvp=4,tpa=8,tpf=32"``) or **generators**: a mapping of layout
keys to a value or a list of values, expanded as a product (``{kvp: [1, 2, 4], tpa: [1, 8]}``).
Generator combinations that are not layouts at all (``tpf×ep`` not dividing the attention group)
are dropped and counted; layouts outside ``gpus: {min, max}`` are outside the space. Layouts that
are layouts but do not fit the model, the NVLink domain or GPU memory become points with status
``invalid`` and the reason. Layouts are stored in their canonical form, so ``tp=8`` and ``tpa=8``
are the same point.

Every point has a stable ``point_id``: a hash of its parameters (:func:`point_id`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simcluster.errors import UserError
from simcluster.perf.layout import KEYS as LAYOUT_KEYS
from simcluster.perf.layout import Layout

MODES = ("decode", "disaggregated", "colocated")
COST_SOURCES = ("roofline", "calibrated", "sol")

# The parameters of a design point, in the order of a point tuple (and of the parquet columns).
PARAMS = (
    "gpu", "nvlink_domain_size", "model", "weights", "kv", "activations", "framework", "cost",
    "kv_eviction_budget", "resmoe_keep", "hop_b", "exchange_model", "a2a_payload",
    "mode", "isl", "osl", "context_tokens",
    "decode_layout", "decode_batch", "ratio", "prefill_layout", "prefill_batch", "token_budget",
    "ftl_limit_s", "gpu_memory_utilization", "ratio_tolerance",
)
_PARAM_INDEX = {name: i for i, name in enumerate(PARAMS)}
RATE_MATCHED = "rate_matched"


def _listify(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FormatAxes(_Spec):
    """Number formats: each a format name or a list of them."""

    weights: list[str] = ["fp8"]
    kv: list[str] = ["fp8"]
    activations: list[str] = ["bf16"]

    _lists = field_validator("weights", "kv", "activations", mode="before")(lambda cls, v: _listify(v))


class KnobAxes(_Spec):
    """Cost-model knobs (``CostSpec`` fields of the same names)."""

    kv_eviction_budget: list[Optional[int]] = [None]
    resmoe_keep: list[float] = [1.0]
    hop_b: list[bool] = [True]
    exchange_model: list[Literal["batched", "per_request"]] = ["batched"]
    a2a_payload: list[Literal["hidden", "latent"]] = ["hidden"]

    _lists = field_validator("kv_eviction_budget", "resmoe_keep", "hop_b", "exchange_model", "a2a_payload",
                             mode="before")(lambda cls, v: _listify(v))

    @field_validator("kv_eviction_budget")
    @classmethod
    def _budget(cls, v: list) -> list:
        for b in v:
            if b is not None and b < 1:
                raise ValueError(f"an eviction budget must be a positive number of tokens, got {b}")
        return v

    @field_validator("resmoe_keep")
    @classmethod
    def _keep(cls, v: list) -> list:
        for k in v:
            if not 0.0 < k <= 1.0:
                raise ValueError(f"resmoe_keep must be in (0, 1], got {k}")
        return v


class TrafficItem(_Spec):
    """One traffic pattern: input (prompt) and output lengths in tokens."""

    isl: int = Field(ge=1)
    osl: int = Field(ge=2, description="at least 2: decode makes OSL − 1 tokens after the first")


class TrafficProduct(_Spec):
    isl: list[int]
    osl: list[int]

    _lists = field_validator("isl", "osl", mode="before")(lambda cls, v: _listify(v))


class BatchRange(_Spec):
    """Batch sizes ``start, start·factor, …`` up to ``stop`` (included when reached)."""

    start: int = Field(1, ge=1)
    stop: int = Field(ge=1)
    factor: float = Field(2.0, gt=1.0)

    def values(self) -> list[int]:
        out, v = [], float(self.start)
        while v <= self.stop + 1e-9:
            b = int(round(v))
            if not out or b != out[-1]:
                out.append(b)
            v *= self.factor
        return out


class GPURange(_Spec):
    min: int = Field(1, ge=1)
    max: Optional[int] = Field(None, ge=1)


class PhaseAxes(_Spec):
    """Layouts and batch sizes of one instance role."""

    layouts: list[Union[str, dict[str, Union[int, list[int]]]]]
    batch: Union[list[int], BatchRange] = [1]
    gpus: GPURange = GPURange()
    context_tokens: Optional[int] = Field(
        None, ge=1, description="decode mode only: KV tokens per sequence (default ISL + OSL/2)")
    token_budget: list[int] = Field(
        [2048], description="colocated only: tokens per step (decodes + prefill chunk), Sarathi-style budgets")
    select: Literal["best", "each"] = Field(
        "best", description="prefill only: best = the prefill configuration with the highest requests/s/GPU "
        "under the FTL limit; each = every prefill configuration is an axis of the point")

    @field_validator("batch", mode="before")
    @classmethod
    def _batch(cls, v):
        return v if isinstance(v, dict) else _listify(v)

    @field_validator("layouts", "token_budget", mode="before")
    @classmethod
    def _layouts(cls, v):
        return _listify(v)

    @field_validator("token_budget")
    @classmethod
    def _budgets(cls, v: list) -> list:
        for b in v:
            if b < 2:
                raise ValueError(f"a token budget must be at least 2 tokens, got {b}")
        return v

    def batches(self) -> list[int]:
        vals = self.batch.values() if isinstance(self.batch, BatchRange) else list(self.batch)
        for b in vals:
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise ValueError(f"batch sizes must be positive integers, got {b!r}")
        return sorted(set(vals))


class Constraints(_Spec):
    ftl_limit_s: float = Field(10.0, gt=0, description="prefill configurations with a longer FTL are excluded "
                               "(Beyond the Buzz: 10 s)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    ratio_tolerance: float = Field(0.03, gt=0, lt=1, description="integer n_p:n_d must balance rates within this")
    max_instances: int = Field(512, ge=1, description="search bound for the integer n_p:n_d")
    allow_cross_domain: bool = Field(False, description="allow collective groups larger than an NVLink domain")


class SLOSpec(_Spec):
    ttft_s: Optional[float] = Field(None, gt=0)
    tpot_s: Optional[float] = Field(None, gt=0)
    e2e_s: Optional[float] = Field(None, gt=0)


class ParetoSpec(_Spec):
    group_by: list[str] = ["model", "isl", "osl", "mode", "ratio"]


class ReplaySpec(_Spec):
    requests: int = Field(400, ge=1, description="requests per DES replay")
    load: float = Field(0.8, gt=0, le=2, description="offered load as a fraction of the analytic capacity")
    seed: int = 0


class StudySpec(_Spec):
    """What ``simcluster report`` computes from this sweep beyond the Pareto plots (docs/studies.md)."""

    kind: Literal["helix", "ratio", "fixed_ratio", "disagg_vs_colocated"]
    paper: Optional[str] = None
    notes: Optional[str] = None


class SweepSpec(_Spec):
    name: str = "sweep"
    description: str = ""
    gpu: list[str] = ["h200_sxm"]
    nvlink_domain_size: Optional[int] = Field(None, ge=1)
    model: list[str]
    formats: FormatAxes = FormatAxes()
    framework: list[str] = ["vllm"]
    cost: Literal["roofline", "calibrated", "sol"] = "roofline"
    knobs: KnobAxes = KnobAxes()
    traffic: Union[list[TrafficItem], TrafficProduct]
    mode: list[Literal["decode", "disaggregated", "colocated"]] = ["disaggregated"]
    decode: Optional[PhaseAxes] = None
    prefill: Optional[PhaseAxes] = None
    colocated: Optional[PhaseAxes] = None
    ratio: list[Union[Literal["rate_matched"], float]] = ["rate_matched"]
    constraints: Constraints = Constraints()
    slo: SLOSpec = SLOSpec()
    pareto: ParetoSpec = ParetoSpec()
    replay: ReplaySpec = ReplaySpec()
    study: Optional[StudySpec] = None

    _lists = field_validator("gpu", "model", "framework", "mode", "ratio", mode="before")(
        lambda cls, v: _listify(v))

    @field_validator("traffic", mode="before")
    @classmethod
    def _traffic(cls, v):
        return v if isinstance(v, dict) else _listify(v)

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: list) -> list:
        for r in v:
            if not isinstance(r, str) and not r > 0:
                raise ValueError(f"a fixed ctx:gen GPU ratio must be positive, got {r}")
        return v

    @model_validator(mode="after")
    def _sections(self) -> "SweepSpec":
        needs = set()
        if "decode" in self.mode or "disaggregated" in self.mode:
            needs.add("decode")
        if "disaggregated" in self.mode:
            needs.add("prefill")
        if "colocated" in self.mode and self.colocated is None:
            needs.add("decode")
        for section in sorted(needs):
            if getattr(self, section) is None:
                raise ValueError(f"mode {', '.join(self.mode)} needs a '{section}:' section with layouts")
        return self

    def traffic_pairs(self) -> list[tuple[int, int]]:
        if isinstance(self.traffic, TrafficProduct):
            pairs = [(i, o) for i in self.traffic.isl for o in self.traffic.osl]
            for i, o in pairs:
                TrafficItem(isl=i, osl=o)  # same checks as the list form
            return pairs
        return [(t.isl, t.osl) for t in self.traffic]


# ----------------------------------------------------------------------------- loading
def _dotted(loc: tuple) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p in ("list[str]", "list[int]", "BatchRange", "TrafficProduct", "list[TrafficItem]") or "[" in str(p):
            continue  # union branch names pydantic inserts into the location
        else:
            out += ("." if out else "") + str(p)
    return out


def parse_spec(data: Any, source: str = "spec") -> SweepSpec:
    """Validate a spec mapping; an error names the file and the dotted field."""
    if not isinstance(data, dict):
        raise UserError("a sweep spec must be a YAML mapping at the top level", where=source)
    try:
        spec = SweepSpec.model_validate(data)
        spec.traffic_pairs()
        for section in ("decode", "prefill", "colocated"):
            phase = getattr(spec, section)
            if phase is not None:
                try:
                    phase.batches()
                except ValueError as exc:
                    raise UserError(str(exc), where=f"{source}: {section}.batch") from None
                expand_layouts(phase, where=f"{source}: {section}.layouts")
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        if err["type"] not in ("extra_forbidden", "missing") and "input" in err and not isinstance(
                err["input"], dict):
            msg += f" (got {err['input']!r})"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise UserError(msg + more, where=f"{source}: {_dotted(tuple(err['loc'])) or '<root>'}") from None
    return spec


def load_spec(path: str | Path) -> tuple[SweepSpec, str]:
    """Read and validate a spec file; returns the spec and the file's text (copied into the sweep folder)."""
    from simcluster.config.loader import read_yaml

    p = Path(path)
    data = read_yaml(p)
    return parse_spec(data, str(p)), p.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- layouts
@dataclass
class LayoutSet:
    """The layouts of one phase: canonical strings, and how many generator combinations were dropped."""

    layouts: list[str]
    dropped: int = 0
    outside_gpu_range: int = 0


def expand_layouts(phase: PhaseAxes, where: str = "layouts") -> LayoutSet:
    """Canonical layout strings of a phase, in spec order, without duplicates.

    A literal string that is not a layout is a :class:`UserError` (a typo); generator combinations
    that are not layouts are dropped and counted.
    """
    seen: dict[str, None] = {}
    dropped = outside = 0
    lo, hi = phase.gpus.min, phase.gpus.max

    def keep(lay: Layout) -> None:
        nonlocal outside
        if lay.gpus < lo or (hi is not None and lay.gpus > hi):
            outside += 1
            return
        seen.setdefault(str(lay), None)

    for i, entry in enumerate(phase.layouts):
        if isinstance(entry, str):
            keep(Layout.parse(entry, field=f"{where}[{i}]"))
            continue
        keys = list(entry)
        for k in keys:
            if k not in LAYOUT_KEYS:
                raise UserError(f"unknown layout key {k!r}; known: {', '.join(LAYOUT_KEYS)}",
                                where=f"{where}[{i}].{k}")
        values = [_listify(entry[k]) for k in keys]
        for k, vs in zip(keys, values):
            for v in vs:
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise UserError(f"layout values must be positive integers, got {v!r}", where=f"{where}[{i}].{k}")
        for combo in itertools.product(*values):
            try:
                lay = Layout.of(**dict(zip(keys, combo)), field=None)
            except UserError:
                dropped += 1
                continue
            keep(lay)
    return LayoutSet(list(seen), dropped, outside)


def layout_label(canonical: str) -> str:
    """A short layout string (keys at their default omitted), for tables and plots.

    ``Layout.parse(layout_label(x))`` is the same layout as ``x``.
    """
    lay = Layout.parse(canonical, field=None)
    n = lay.attention_group
    parts = []
    if lay.dp > 1:
        parts.append(f"dp={lay.dp}")
    if lay.kvp > 1:
        parts += [f"kvp={lay.kvp}", f"tpa={lay.tpa}"]
    elif lay.tpa > 1 or lay.dp == 1:
        parts.append(f"tp={lay.tpa}")
    if lay.ep > 1:
        parts.append(f"ep={lay.ep}")
    if lay.tpf != n // lay.ep:
        parts.append(f"tpf={lay.tpf}")
    if lay.tpo != (lay.tpa * lay.kvp if lay.tpf * lay.ep == n else lay.tpa):
        parts.append(f"tpo={lay.tpo}")
    if lay.pp > 1:
        parts.append(f"pp={lay.pp}")
    return ",".join(parts)


# ----------------------------------------------------------------------------- points
def _encode(value: Any) -> str:
    """Canonical text of one parameter value: 1.0 and 1 are the same value; strings are JSON-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 2 ** 53:
            return str(int(value))
        return repr(value)
    return json.dumps(str(value))


# Hashing order: every parameter but the batch, then the batch. Consecutive points of an expansion
# differ only in the batch, so the text of everything before it is encoded once per run of points.
_ID_ORDER = tuple(n for n in PARAMS if n != "decode_batch") + ("decode_batch",)
_ID_INDEX = tuple(PARAMS.index(n) for n in _ID_ORDER)
_BATCH_INDEX = PARAMS.index("decode_batch")


def _encode_part(names, values) -> str:
    return "".join(f"{n}={_encode(v)};" for n, v in zip(names, values))


def point_id(params: dict[str, Any] | tuple) -> str:
    """Stable id of a design point: 16 hex digits of SHA-256 over its parameters.

    The hashed text is ``name=value;`` for every parameter (the order of :data:`PARAMS` with
    ``decode_batch`` moved last), with canonical values (:func:`_encode`). It depends only on the
    parameter values (not on the spec's order, Python's hash seed or the process), so a resumed
    sweep recognises the points already done.
    """
    if isinstance(params, dict):
        params = tuple(params.get(n) for n in PARAMS)
    values = [params[i] for i in _ID_INDEX]
    return hashlib.sha256(_encode_part(_ID_ORDER, values).encode()).hexdigest()[:16]


class _IdMaker:
    """:func:`point_id` for many points, encoding all but the batch once per run of points."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._text = ""

    def __call__(self, point: tuple) -> str:
        key = point[:_BATCH_INDEX] + point[_BATCH_INDEX + 1:]
        if key != self._key:
            self._key = key
            self._text = _encode_part(_ID_ORDER[:-1], [point[i] for i in _ID_INDEX[:-1]])
        text = self._text + f"decode_batch={_encode(point[_BATCH_INDEX])};"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def prefill_space_id(layouts: list[str], batches: list[int]) -> str:
    """``best-of:<hash>``: the prefill parameter of a point that takes the best of these candidates."""
    text = json.dumps([layouts, batches], separators=(",", ":"))
    return "best-of:" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Expansion:
    """The points of a spec (tuples in :data:`PARAMS` order) and what the expansion dropped."""

    points: list[tuple]
    ids: list[str]
    layouts: dict[str, LayoutSet] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)


def prefill_candidates(spec: SweepSpec) -> tuple[list[str], list[int]]:
    if spec.prefill is None:
        return [], []
    return expand_layouts(spec.prefill).layouts, spec.prefill.batches()


def iter_points(spec: SweepSpec) -> Iterator[tuple]:
    """Every design point of ``spec`` as a tuple in :data:`PARAMS` order (batch innermost; all the
    points of one configuration together, so that consecutive points share a latency table)."""
    c = spec.constraints
    k = spec.knobs
    f = spec.formats
    dec = expand_layouts(spec.decode).layouts if spec.decode else []
    dec_b = spec.decode.batches() if spec.decode else []
    col_phase = spec.colocated or spec.decode
    col = expand_layouts(col_phase).layouts if col_phase else []
    col_b = col_phase.batches() if col_phase else []
    col_budgets = sorted(set(col_phase.token_budget)) if col_phase else []
    pre_l, pre_b = prefill_candidates(spec)
    select_each = spec.prefill is not None and spec.prefill.select == "each"
    best_of = prefill_space_id(pre_l, pre_b)
    ratios = [r if isinstance(r, str) else float(r) for r in spec.ratio]
    context = spec.decode.context_tokens if spec.decode else None

    # hardware, model, formats and knobs outermost, then the layout, then traffic and the rest: every
    # point of one latency table is produced before the next table is needed
    outer = itertools.product(
        spec.gpu, spec.model, f.weights, f.kv, f.activations, spec.framework,
        k.kv_eviction_budget, k.resmoe_keep, k.hop_b, k.exchange_model, k.a2a_payload, spec.mode)
    traffic = spec.traffic_pairs()
    tail = (c.ftl_limit_s, c.gpu_memory_utilization, c.ratio_tolerance)
    for (gpu, model, w, kv, act, fw, budget, keep, hop_b, exch, payload, mode) in outer:
        hw = (gpu, spec.nvlink_domain_size, model, w, kv, act, fw, spec.cost, budget, float(keep), hop_b, exch, payload,
              mode)
        if mode == "decode":
            for lay in dec:
                for isl, osl in traffic:
                    for b in dec_b:
                        yield hw + (isl, osl, context, lay, b, None, None, None, None) + tail
        elif mode == "colocated":
            for lay in col:
                for tb in col_budgets:
                    for isl, osl in traffic:
                        for b in col_b:
                            yield hw + (isl, osl, None, lay, b, None, None, None, tb) + tail
        else:
            pre = [(pl, pb) for pl in pre_l for pb in pre_b] if select_each else [(best_of, None)]
            for lay in dec:
                for isl, osl in traffic:
                    for ratio in ratios:
                        for pl, pb in pre:
                            for b in dec_b:
                                yield hw + (isl, osl, None, lay, b, ratio, pl, pb, None) + tail


def expand(spec: SweepSpec) -> Expansion:
    """All points of ``spec`` with their ids (duplicates removed, first kept)."""
    points, ids, seen = [], [], set()
    make_id = _IdMaker()
    for p in iter_points(spec):
        pid = make_id(p)
        if pid in seen:
            continue
        seen.add(pid)
        points.append(p)
        ids.append(pid)
    sets = {}
    for section in ("decode", "prefill", "colocated"):
        phase = getattr(spec, section)
        if phase is not None:
            sets[section] = expand_layouts(phase)
    return Expansion(points, ids, sets)


def param(point: tuple, name: str) -> Any:
    return point[_PARAM_INDEX[name]]


def spec_settings(spec: SweepSpec) -> dict:
    """What an evaluator needs besides the points (plain data: it travels to worker processes)."""
    pre_l, pre_b = prefill_candidates(spec)
    return {
        "prefill_layouts": pre_l, "prefill_batches": pre_b,
        "max_instances": spec.constraints.max_instances,
        "allow_cross_domain": spec.constraints.allow_cross_domain,
    }
