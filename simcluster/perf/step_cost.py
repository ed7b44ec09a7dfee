"""Step latency of one instance: the latency table built once per spec, and its fast lookups.

:func:`build_step_cost` turns a :class:`CostSpec` into a :class:`TableStepCost`, which implements
:class:`~simcluster.perf.interface.StepCostModel`. At construction it evaluates the op model of
:mod:`simcluster.perf.composition` on grids, once:

* **token tables** (1-D): the per-step cost of every token-driven op (projections, FFN, experts,
  collectives, embeddings, LM head, sampling) at every integer token count up to a dense bound,
  then on a geometric grid; exact at integers inside the dense bound, linear interpolation between
  geometric points, linear extrapolation past the last one;
* a **decode attention table** (2-D): one layer's decode attention over (sequences per replica,
  KV tokens per sequence per GPU), interpolated bilinearly; exact in the batch direction for the
  roofline (it is linear there) and off only near the memory/compute ridge in the context direction.

Prefill attention (one call per prefill step) and the Helix HOP-B span are evaluated in closed form
at lookup time. ``step()`` is plain-float Python; ``decode_run()`` is vectorised with numpy. See
``docs/perf.md`` for the accuracy and speed figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simcluster.catalog.formats import get_format
from simcluster.catalog.gpus import GPUSpec, get_gpu
from simcluster.catalog.models import ModelSpec, get_model
from simcluster.errors import UserError
from simcluster.perf.composition import BYTES, COMM, COMP, FLOPS, KV, LAT, OTHER, W, Composer
from simcluster.perf.helix import EXCHANGE_MODELS, exchange_span
from simcluster.perf.interface import BatchShape, OpCosts, StepTime
from simcluster.perf.layout import Layout
from simcluster.perf.memory import MemoryPlan, memory_plan  # noqa: F401  (re-exported)
from simcluster.perf.roofline import Efficiency

# Per-step host overhead of each serving framework outside the GPU work (scheduling, input
# preparation, detokenisation), seconds [INFERRED: order of magnitude of the frameworks' CPU time
# per decode iteration under CUDA graphs; to be fitted by `simcluster calibrate`].
FRAMEWORK_STEP_OVERHEAD_S = {"vllm": 4e-4, "sglang": 3e-4, "trtllm": 2e-4, "ideal": 0.0}
A2A_PAYLOADS = ("hidden", "latent")


@dataclass(frozen=True)
class CostSpec:
    """Everything that fixes the cost of a step of one instance.

    ``gpu`` and ``model`` take catalog names (or a ``config.json`` path) or catalog objects;
    ``weights``/``kv``/``activations`` are number-format names; ``layout`` a layout string or
    :class:`Layout`. Knobs: ``hop_b`` (Helix overlap), ``kv_eviction_budget`` (tokens of KV a
    sequence keeps: H2O / SnapKV / StreamingLLM), ``resmoe_keep`` (fraction of expert residual
    values kept, with ``resmoe_index_bits`` of index each, plus one barycenter expert per layer),
    ``a2a_payload`` (Helix exchange width for MLA: ``hidden`` H or ``latent`` heads × d_c),
    ``a2a_n_stat`` (softmax statistics per head: 1 LSE, or 2 as TRT-LLM), ``moe_load_imbalance``
    (busiest EP rank over mean; None = uniform-routing estimate), ``step_overhead_s`` (None = the
    framework's default), ``sol`` (speed of light: 100 % of peak, no overheads), ``ops`` (an
    :class:`OpCosts`, e.g. calibrated tables; None = roofline), ``efficiency`` (roofline
    efficiencies), ``nvlink_domain_size`` (None = the GPU's; groups larger than it use the NIC),
    ``exchange_model`` (how the Helix All-to-All is issued and overlapped, see
    :func:`~simcluster.perf.helix.exchange_span`).
    """

    gpu: GPUSpec | str
    model: ModelSpec | str
    weights: str
    kv: str
    activations: str
    layout: Layout | str
    framework: str = "vllm"
    hop_b: bool = True
    kv_eviction_budget: int | None = None
    resmoe_keep: float = 1.0
    a2a_payload: str = "hidden"
    step_overhead_s: float | None = None
    sol: bool = False
    ops: OpCosts | None = None
    a2a_n_stat: int = 1
    moe_load_imbalance: float | None = None
    resmoe_index_bits: float = 16.0
    efficiency: Efficiency | None = None
    nvlink_domain_size: int | None = None
    exchange_model: str = "batched"

    def __post_init__(self) -> None:
        def put(name, value):
            object.__setattr__(self, name, value)

        if not isinstance(self.gpu, GPUSpec):
            put("gpu", get_gpu(self.gpu, field="gpu"))
        if not isinstance(self.model, ModelSpec):
            put("model", get_model(self.model, field="model"))
        for name in ("weights", "kv", "activations"):
            put(name, get_format(getattr(self, name), field=name).name)
        put("layout", Layout.parse(self.layout, field="layout").validate(self.model, field="layout"))
        fw = str(self.framework).lower()
        if fw not in FRAMEWORK_STEP_OVERHEAD_S:
            raise UserError(f"unknown framework {self.framework!r}; known: {', '.join(FRAMEWORK_STEP_OVERHEAD_S)}",
                            where="framework")
        put("framework", fw)
        if self.kv_eviction_budget is not None and (int(self.kv_eviction_budget) != self.kv_eviction_budget
                                                    or self.kv_eviction_budget < 1):
            raise UserError(f"must be a positive number of tokens, got {self.kv_eviction_budget!r}",
                            where="kv_eviction_budget")
        if not (0.0 < float(self.resmoe_keep) <= 1.0):
            raise UserError(f"must be in (0, 1], got {self.resmoe_keep!r}", where="resmoe_keep")
        if self.resmoe_keep < 1.0 and not self.model.is_moe:
            raise UserError(f"ResMoE compresses experts; {self.model.name} is dense", where="resmoe_keep")
        if self.resmoe_index_bits < 0:
            raise UserError("must be non-negative", where="resmoe_index_bits")
        if self.a2a_payload not in A2A_PAYLOADS:
            raise UserError(f"must be one of {', '.join(A2A_PAYLOADS)}, got {self.a2a_payload!r}",
                            where="a2a_payload")
        if self.a2a_payload == "latent" and not self.model.is_mla:
            raise UserError(f"the latent payload needs an MLA model; {self.model.name} is not", where="a2a_payload")
        if isinstance(self.a2a_n_stat, bool) or not isinstance(self.a2a_n_stat, int) or self.a2a_n_stat < 0:
            raise UserError(f"must be a non-negative integer, got {self.a2a_n_stat!r}", where="a2a_n_stat")
        if self.moe_load_imbalance is not None and self.moe_load_imbalance < 1.0:
            raise UserError("must be ≥ 1 (busiest rank over the mean)", where="moe_load_imbalance")
        if self.step_overhead_s is not None and self.step_overhead_s < 0:
            raise UserError("must be non-negative", where="step_overhead_s")
        if self.sol and self.ops is not None:
            raise UserError("speed of light uses the analytic roofline; do not pass an op-cost model", where="sol")
        if self.exchange_model not in EXCHANGE_MODELS:
            raise UserError(f"must be one of {', '.join(EXCHANGE_MODELS)}, got {self.exchange_model!r}",
                            where="exchange_model")
        if self.nvlink_domain_size is not None and self.nvlink_domain_size < 1:
            raise UserError("must be a positive number of GPUs", where="nvlink_domain_size")

    def __hash__(self) -> int:
        return hash((self.gpu.name, self.gpu.mem_bw_Bps, self.model, self.weights, self.kv, self.activations,
                     self.layout, self.framework, self.hop_b, self.kv_eviction_budget, self.resmoe_keep,
                     self.a2a_payload, self.step_overhead_s, self.sol, id(self.ops), self.a2a_n_stat,
                     self.moe_load_imbalance, self.resmoe_index_bits, self.efficiency, self.nvlink_domain_size,
                     self.exchange_model))

    @property
    def resolved_step_overhead_s(self) -> float:
        """Seconds of host overhead per step: the explicit value, else the framework's default."""
        if self.step_overhead_s is not None:
            return float(self.step_overhead_s)
        return FRAMEWORK_STEP_OVERHEAD_S[self.framework]


def build_step_cost(spec: CostSpec) -> "TableStepCost":
    """The step-cost model of ``spec`` (builds its latency tables; milliseconds)."""
    return TableStepCost(spec)


# ----------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class _Grids:
    tokens_dense: int  # exact integer rows 0..tokens_dense
    tokens_ratio: float
    tokens_max: float
    batch_dense: int  # exact rows 1..batch_dense
    batch_ratio: float
    batch_max: float
    context_ratio: float
    context_max: float


# Vectorised op models (the roofline) get fine grids; scalar ones (calibrated tables) coarse ones.
_FINE = _Grids(2048, 2 ** (1 / 16), 2.0 ** 24, 256, 2 ** (1 / 8), 2.0 ** 17, 2 ** (1 / 8), 2.0 ** 25)
_COARSE = _Grids(64, 2 ** (1 / 4), 2.0 ** 24, 8, 2 ** 0.5, 2.0 ** 17, 2 ** 0.5, 2.0 ** 25)


def _geometric(start: float, ratio: float, stop: float) -> list[float]:
    n = int(math.ceil(math.log(stop / start) / math.log(ratio)))
    return [start * ratio ** j for j in range(1, n + 1)]


class _Axis:
    """A grid axis: exact integers up to ``dense`` (from ``first``), then geometric; O(1) cell lookup."""

    def __init__(self, first: int, dense: int, ratio: float, stop: float) -> None:
        self.first = first
        self.dense = dense
        self.inv_ln_ratio = 1.0 / math.log(ratio)
        self.points = [float(v) for v in range(first, dense + 1)] + _geometric(dense, ratio, stop)
        self.array = np.array(self.points)
        self.last = len(self.points) - 2  # last cell index

    def cell(self, x: float) -> tuple[int, float]:
        """(i, w): x lies between points i and i+1 at fraction w (w may exceed 1 past the end)."""
        pts = self.points
        if x <= self.dense:
            i = int(x) - self.first
            if i < 0:
                return 0, x - self.first  # below the grid (only 0 < x < 1 on context axes)
            if i >= self.last + 1:
                i = self.last
            return i, x - pts[i]
        i = self.dense - self.first + int(math.log(x / self.dense) * self.inv_ln_ratio)
        if i > self.last:
            i = self.last
        elif pts[i] > x:
            i -= 1
        elif pts[i + 1] < x and i < self.last:
            i += 1
        x0 = pts[i]
        return i, (x - x0) / (pts[i + 1] - x0)

    def interp(self, x: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Vectorised linear interpolation along the axis, extrapolating past the last point."""
        pts = self.array
        out = np.interp(x, pts, values)
        hi = x > pts[-1]
        if hi.any():
            slope = (values[-1] - values[-2]) / (pts[-1] - pts[-2])
            out = np.where(hi, values[-1] + slope * (x - pts[-1]), out)
        return out


class _TokenTable:
    """Per-step components (8 floats) of one group of token-driven ops, over a token axis."""

    def __init__(self, axis: _Axis, comps: np.ndarray) -> None:
        self.axis = axis
        self.dense = axis.dense
        self.points = axis.points
        self.inv_ln = axis.inv_ln_ratio
        self.last = axis.last
        self.rows = list(map(tuple, comps.T.tolist()))

    def at(self, x: float) -> tuple:
        dense = self.dense
        if x <= dense:
            i = int(x)
            if i == x:
                return self.rows[i]
            if i == dense:
                i -= 1
            w = x - i
        else:
            pts = self.points
            i = dense + int(math.log(x / dense) * self.inv_ln)
            if i > self.last:
                i = self.last
            elif pts[i] > x:
                i -= 1
            elif i < self.last and pts[i + 1] < x:
                i += 1
            w = (x - pts[i]) / (pts[i + 1] - pts[i])
        a = self.rows[i]
        b = self.rows[i + 1]
        return (a[0] + w * (b[0] - a[0]), a[1] + w * (b[1] - a[1]), a[2] + w * (b[2] - a[2]),
                a[3] + w * (b[3] - a[3]), a[4] + w * (b[4] - a[4]), a[5] + w * (b[5] - a[5]),
                a[6] + w * (b[6] - a[6]), a[7] + w * (b[7] - a[7]))


_NO_TOKENS = (0.0,) * 8
_ZERO_STEP = StepTime(0.0)


def _add(a: tuple, b: tuple) -> tuple:
    return tuple(p + q for p, q in zip(a, b))


class TableStepCost:
    """:class:`~simcluster.perf.interface.StepCostModel` of one :class:`CostSpec`, from latency tables.

    ``describe(shape)`` gives the exact per-op breakdown (what ``simcluster cost`` prints);
    ``memory()`` the memory plan. ``pipeline_stages`` is the number of PP stages: a step's latency
    is one micro-batch through all of them (see ``docs/perf.md``).
    """

    def __init__(self, spec: CostSpec) -> None:
        self._run_cache: dict = {}  # (batch, context) -> (n, parts) of decode runs in flight
        self._prefill_memo: dict = {}  # exact prefill-attention shapes -> OpEval (measured tables)
        self.spec = spec
        c = self.composer = Composer(spec)
        lay = spec.layout
        g = _FINE if c.ops_vectorised else _COARSE
        self.grids = g
        self.pipeline_stages = lay.pp
        self._dp = lay.dp
        self._kvp = lay.kvp
        self._n_gpu = float(c.N)
        self._overhead = 0.0 if spec.sol else spec.resolved_step_overhead_s

        # -- token tables
        ax = self._tok_axis = _Axis(0, g.tokens_dense, g.tokens_ratio, g.tokens_max)
        x = ax.array
        attn = c.side_components("attn", x)
        ffn = c.side_components("ffn", x)
        logit = c.side_components("logits", x)
        if self._dp == 1:
            self._tok = _TokenTable(ax, attn + ffn)
            self._dec = _TokenTable(ax, attn + ffn + logit)
        else:
            self._attn = _TokenTable(ax, attn)
            self._ffn = _TokenTable(ax, ffn)
        self._logit = _TokenTable(ax, logit)

        # -- decode attention table: busy time (s) and memory-bound flag per (batch, context/GPU)
        self._b_axis = _Axis(1, g.batch_dense, g.batch_ratio, g.batch_max)
        self._c_axis = _Axis(0, 1, g.context_ratio, g.context_max)
        bb, cc = np.meshgrid(self._b_axis.array, self._c_axis.array, indexing="ij")
        ev = c.attention_decode(bb, cc)
        t = np.broadcast_to(np.asarray(ev.time_s, dtype=float), bb.shape)
        ovh = float(ev.overhead_s)
        self._core_ovh = ovh
        busy = np.maximum(t - ovh, 0.0)
        memflag = np.broadcast_to(ev.mem_s >= ev.compute_s, bb.shape)
        self._busy_np = busy
        self._mem_np = np.array(memflag, dtype=bool)
        self._busy = busy.tolist()
        self._mem = self._mem_np.tolist()
        kr, kw, ka, kf = c.decode_counts(1.0, 1.0)
        self._kv_coef = (kr, kw / self._kvp + ka, kf)  # bytes per seq·ctx, bytes per seq, flops per seq·ctx
        self._kinds = [(k.layers, c.context_cap(k)) for k in c.attention_kinds]
        self._kind_windows = [k.window for k in c.attention_kinds]
        # per kind: layers, context cap, and the closed-form decode counts summed over its layers
        self._kind_consts = [(n, cap, n * kr, n * (kw / self._kvp + ka), n * kf) for n, cap in self._kinds]
        self._b_dense = g.batch_dense
        self._c_pts = self._c_axis.points
        self._c_last = self._c_axis.last
        self._c_inv_ln = self._c_axis.inv_ln_ratio
        self._inv_kvp = 1.0 / self._kvp
        self._tok_dense = g.tokens_dense
        self._dec_rows = self._dec.rows if self._dp == 1 else None
        # prefill attention is linear in (new tokens, past tokens, pairs): for the roofline, keep the
        # coefficients per kind and evaluate max(bytes/BW, flops/FLOPS) + overhead inline
        # (not for DSA models: their indexer and top-k cap make prefill attention non-linear)
        self._prefill_closed = not c.model.is_dsa and (c.ops_is_roofline or (
            c._method("attention_prefill_mla" if c.model.is_mla else "attention_prefill") is None))
        self._prefill_consts = []
        for k in c.attention_kinds:
            e_new = c.attention_prefill(1.0, 1.0, 0.0, 0.0)
            e_past = c.attention_prefill(1.0, 1.0, 1.0, 0.0)
            e_pair = c.attention_prefill(1.0, 1.0, 0.0, 1.0)
            b_new = e_new.hbm_bytes
            self._prefill_consts.append((k.window or math.inf, b_new, e_past.hbm_bytes - b_new, e_pair.flops,
                                         e_past.flops))
        self._inv_bw = 1.0 / c.roof.mem_Bps
        self._inv_attn_rate = 1.0 / c.attn_rate
        self._prefill_ovh = c.roof.launch_overhead_s
        self._helix = c.helix
        self._hop_b = spec.hop_b
        self._per_request = spec.exchange_model == "per_request"
        self._tm1 = c.exchange_s(1.0) if c.helix else 0.0
        self._tmb_cache: dict[int, float] = {}
        # with the roofline the exchange is α + β·tokens: keep the two numbers
        self._ex_affine = (c.exchange_s(0.0), c.exchange_s(1.0) - c.exchange_s(0.0)) \
            if (c.helix and c.ops_is_roofline) else None

    def _exchange(self, tokens: float) -> float:
        if self._ex_affine is not None:
            return self._ex_affine[0] + self._ex_affine[1] * tokens
        return self.composer.exchange_s(tokens)

    def _t_batch(self, tokens: int) -> float:
        """Helix exchange of a decode batch of ``tokens`` tokens as one collective (cached)."""
        t = self._tmb_cache.get(tokens)
        if t is None:
            if len(self._tmb_cache) > 4096:
                self._tmb_cache.clear()
            t = self._tmb_cache[tokens] = self._exchange(tokens)
        return t

    # ------------------------------------------------------------------ lookups
    def _attention(self, da: int, ca: float, sa: int, pa: float, ppa: float, aa: float):
        """Attention cores (+ Helix exchange) of all layers on one GPU: (kv, comp, comm, other, flops, bytes).

        Hot path: the table cells are found inline (exact batch rows up to the dense bound, the
        context column from a logarithm) and everything is plain floats.
        """
        kv = comp = comm = other = flops = hbm = 0.0
        closed = self._prefill_closed
        if da:
            cbar = ca / da
            if da <= self._b_dense:
                r0 = self._busy[da - 1]
                m0 = self._mem[da - 1]
                r1 = None
            else:
                i, wb = self._b_axis.cell(da)
                r0, r1, m0 = self._busy[i], self._busy[i + 1], self._mem[i]
            pts = self._c_pts
            last = self._c_last
            ovh = self._core_ovh
        for kind, (layers, cap, kr, kb, kf) in enumerate(self._kind_consts):
            core = 0.0
            if da:
                cg = (cbar if cbar < cap else cap) * self._inv_kvp
                if cg > 1.0:
                    j = 1 + int(math.log(cg) * self._c_inv_ln)
                    if j > last:
                        j = last
                    x0 = pts[j]
                    if x0 > cg:
                        j -= 1
                        x0 = pts[j]
                    elif j < last and pts[j + 1] < cg:
                        j += 1
                        x0 = pts[j]
                    wc = (cg - x0) / (pts[j + 1] - x0)
                else:
                    j, wc = 0, cg
                a = r0[j]
                busy = a + wc * (r0[j + 1] - a)
                if r1 is not None:
                    a = r1[j]
                    busy += wb * (a + wc * (r1[j + 1] - a) - busy)
                if m0[j + 1 if wc >= 0.5 else j]:
                    kv += layers * busy
                else:
                    comp += layers * busy
                other += layers * ovh
                core = busy + ovh
                flops += da * cg * kf
                hbm += da * (cg * kr + kb)
            if sa:
                if closed:
                    window, b_new, b_past, f_pair, f_past = self._prefill_consts[kind]
                    pairs, past = aa, ppa
                    if window != math.inf:  # a sliding window caps the pairs and the past read
                        if pairs > pa * window:
                            pairs = pa * window
                        if past > sa * window:
                            past = sa * window
                    p_bytes = b_new * pa + b_past * past
                    p_flops = f_pair * pairs + f_past * past
                    m_s = p_bytes * self._inv_bw
                    c_s = p_flops * self._inv_attn_rate
                    p_ovh = self._prefill_ovh
                    p_mem = m_s >= c_s
                    p_time = (m_s if p_mem else c_s) + p_ovh
                else:
                    # measured-table lookups are the slow part of a step: the same chunk shapes recur
                    # (equal prompt lengths, the chunks of one long prompt), so remember them exactly
                    key = (kind, sa, pa, ppa, aa)
                    pre = self._prefill_memo.get(key)
                    if pre is None:
                        if len(self._prefill_memo) >= 65536:
                            self._prefill_memo.clear()
                        pre = self._prefill_memo[key] = self.composer.attention_prefill(
                            sa, pa, ppa, aa, self._kind_windows[kind])
                    p_time, p_flops, p_bytes = pre.time_s, pre.flops, pre.hbm_bytes
                    p_ovh = pre.overhead_s if pre.overhead_s < p_time else p_time
                    p_mem = pre.mem_s >= pre.compute_s
                busy = p_time - p_ovh
                if p_mem:
                    kv += layers * busy
                else:
                    comp += layers * busy
                other += layers * p_ovh
                core += p_time
                flops += layers * p_flops
                hbm += layers * p_bytes
            if self._helix:
                n = da + sa
                if sa:
                    t_req = self._exchange((da + pa) / n)
                    t_batch = self._exchange(da + pa)
                else:
                    t_req = self._tm1
                    t_batch = self._t_batch(da)
                t_c = core / n
                pipelined = t_c + (n - 1) * (t_c if t_c > t_req else t_req) + t_req
                if self._per_request:
                    span = pipelined if self._hop_b else n * (t_c + t_req)
                else:
                    span = core + t_batch
                    if self._hop_b and pipelined < span:
                        span = pipelined
                comm += layers * (span - core)
        return kv, comp, comm, other, flops, hbm

    def step(self, shape: BatchShape) -> StepTime:
        d = shape.decode_seqs
        p = shape.prefill_tokens
        if p <= 0 and self._dp == 1:  # pure decode, the common case: one token-table row
            if d <= 0:
                return _ZERO_STEP
            tok = self._dec_rows[d] if d <= self._tok_dense else self._dec.at(d)
            kv, comp, comm, other, flops, hbm = self._attention(d, shape.decode_context_tokens, 0, 0.0, 0.0, 0.0)
            w = tok[1]
            kv += tok[2]
            comp += tok[3]
            comm += tok[4]
            other += tok[5] + self._overhead
            n = self._n_gpu
            return StepTime(w + kv + comp + comm + other, w, kv, comp, comm, other, (tok[6] + flops) * n,
                            (tok[7] + hbm) * n)
        if d <= 0 and p <= 0:
            return _ZERO_STEP
        s = shape.prefill_seqs
        if self._dp == 1:
            da, ca, sa, pa, ppa, aa = (d, shape.decode_context_tokens, s, p, shape.prefill_past_tokens,
                                       shape.prefill_attn_pairs)
            t1 = self._tok.at(d + p)
            t2 = self._logit.at(d + s)
            t3 = _NO_TOKENS
        else:
            dp = self._dp
            da = -(-d // dp)
            ca = shape.decode_context_tokens * da / d if d else 0.0
            sa = -(-s // dp)
            f = sa / s if s else 0.0
            pa, ppa, aa = p * f, shape.prefill_past_tokens * f, shape.prefill_attn_pairs * f
            t1 = self._attn.at(da + pa)
            t2 = self._ffn.at(d + p)
            t3 = self._logit.at(da + sa)
        kv, comp, comm, other, flops, hbm = self._attention(da, ca, sa, pa, ppa, aa)
        w = t1[1] + t2[1] + t3[1]
        kv += t1[2] + t2[2] + t3[2]
        comp += t1[3] + t2[3] + t3[3]
        comm += t1[4] + t2[4] + t3[4]
        other += t1[5] + t2[5] + t3[5] + self._overhead
        n = self._n_gpu
        return StepTime(w + kv + comp + comm + other, w, kv, comp, comm, other,
                        (t1[6] + t2[6] + t3[6] + flops) * n, (t1[7] + t2[7] + t3[7] + hbm) * n)

    # ------------------------------------------------------------------ runs of decode steps
    def _run_parts(self, batch: int, context_tokens: float, n_steps: int):
        """Token part (8-tuple, per step) and per-kind arrays over the run for pure decode steps."""
        dp = self._dp
        da = -(-batch // dp)
        if dp == 1:
            tok = self._dec.at(batch)
        else:
            tok = _add(_add(self._attn.at(da), self._ffn.at(batch)), self._logit.at(da))
        c = context_tokens / batch + np.arange(n_steps, dtype=float)
        i, wb = self._b_axis.cell(da)
        row = self._busy_np[i]
        if wb:
            row = row + wb * (self._busy_np[i + 1] - row)
        kinds = []
        for layers, cap in self._kinds:
            cg = (np.minimum(c, cap) if cap != math.inf else c) / self._kvp
            busy = np.maximum(self._c_axis.interp(cg, row), 0.0)
            kinds.append((layers, cg, busy))
        return da, tok, kinds

    def _tok_row(self, batch: int, da: int) -> tuple:
        if self._dp == 1:
            return self._dec.at(batch)
        return _add(_add(self._attn.at(da), self._ffn.at(batch)), self._logit.at(da))

    def _affine_run(self, batch: int, context_tokens: float, n_steps: int, detail: list | None = None):
        """(first step's latency, increase per step) of a pure-decode run whose steps all fall in one
        context cell of the attention table — the latency is then exactly affine in the step index,
        as ``np.interp`` over the cell would give — else None (the caller evaluates every step)."""
        if self._helix:
            return None
        da = -(-batch // self._dp)
        c0 = context_tokens / batch
        c1 = c0 + (n_steps - 1)
        i, wb = self._b_axis.cell(da)
        r0 = self._busy[i]
        r1 = self._busy[i + 1] if wb else None
        cell = self._c_axis.cell
        inv_kvp = self._inv_kvp
        lat0 = self._tok_row(batch, da)[LAT] + self._overhead
        rise = 0.0
        ovh = self._core_ovh
        for layers, cap in self._kinds:
            if c1 <= cap:
                g0, g1 = c0 * inv_kvp, c1 * inv_kvp
            elif c0 >= cap:
                g0 = g1 = cap * inv_kvp
            else:
                return None
            j, w0 = cell(g0)
            j1, w1 = cell(g1)
            if j1 != j:
                return None
            a, b = r0[j], r0[j + 1]
            b0, b1 = a + w0 * (b - a), a + w1 * (b - a)
            if r1 is not None:
                a, b = r1[j], r1[j + 1]
                b0 += wb * (a + w0 * (b - a) - b0)
                b1 += wb * (a + w1 * (b - a) - b1)
            if b0 < 0.0 or b1 < 0.0:
                return None
            lat0 += layers * (b0 + ovh)
            rise += layers * (b1 - b0)
            if detail is not None:
                detail.append((layers, g0, g1, j, b0, b1))
        return lat0, (rise / (n_steps - 1) if n_steps > 1 else 0.0)

    def decode_run_affine(self, batch: int, context_tokens: int, n_steps: int):
        """``(first step's latency, increase per step)`` when the run's latencies are exactly affine in
        the step index (the run stays in one cell of the table), else None: the engine then times the
        run in closed form, without arrays. Equal to :meth:`decode_run` step by step."""
        if n_steps <= 0 or batch <= 0:
            return None
        return self._affine_run(batch, context_tokens, n_steps)

    def decode_run(self, batch: int, context_tokens: int, n_steps: int) -> np.ndarray:
        if n_steps <= 0:
            return np.zeros(0)
        if batch <= 0:
            return np.full(n_steps, 0.0)
        aff = self._affine_run(batch, context_tokens, n_steps)
        if aff is not None:
            lat0, slope = aff
            if slope == 0.0 or n_steps == 1:
                return np.full(n_steps, lat0)
            return lat0 + slope * np.arange(n_steps, dtype=float)
        da, tok, kinds = parts = self._run_parts(batch, context_tokens, n_steps)
        # the engine may ask for the totals of (a prefix of) the same run when it ends: keep its parts
        # (a few runs of the instances sharing this model can be in flight at once)
        cache = self._run_cache
        if len(cache) >= 64:
            cache.clear()
        cache[(batch, context_tokens)] = (n_steps, parts)
        out = np.full(n_steps, tok[LAT] + self._overhead)
        ovh = self._core_ovh
        for layers, _, busy in kinds:
            core = busy + ovh
            if self._helix:
                core = self._span(da, core)
            out += layers * core
        return out

    def _span(self, da: int, core: np.ndarray) -> np.ndarray:
        return exchange_span(da, core, self._tm1, self._t_batch(da), self._hop_b, self.spec.exchange_model)

    def decode_run_work(self, batch: int, context_tokens: int, n_steps: int) -> tuple[float, float]:
        """(FLOPs, HBM bytes) of a run of decode steps, summed over the instance: the part of
        :meth:`decode_run_totals` that MFU/MBU need, without classifying each step's bound."""
        if n_steps <= 0 or batch <= 0:
            return 0.0, 0.0
        self._run_cache.pop((batch, context_tokens), None)
        da = -(-batch // self._dp)
        tok = self._tok_row(batch, da)
        c0 = context_tokens / batch
        c1 = c0 + (n_steps - 1)
        sums = []
        for layers, cap in self._kinds:  # Σ over the run of min(context, cap) / kvp, in closed form
            if c1 <= cap:
                total = n_steps * c0 + n_steps * (n_steps - 1) / 2.0
            elif c0 >= cap:
                total = n_steps * cap
            else:
                k = int(math.floor(cap - c0)) + 1  # steps below the cap
                total = k * c0 + k * (k - 1) / 2.0 + (n_steps - k) * cap
            sums.append((layers, total * self._inv_kvp))
        kr, kb, kf = self._kv_coef
        flops = tok[FLOPS] * n_steps
        hbm = tok[BYTES] * n_steps
        for layers, csum in sums:
            flops += layers * da * kf * csum
            hbm += layers * da * (kr * csum + kb * n_steps)
        n = self._n_gpu
        return flops * n, hbm * n

    def decode_run_totals(self, batch: int, context_tokens: int, n_steps: int) -> StepTime:
        if n_steps <= 0 or batch <= 0:
            return StepTime(0.0)
        detail: list = []
        if self._affine_run(batch, context_tokens, n_steps, detail) is not None:
            return self._affine_totals(batch, n_steps, detail)
        hit = self._run_cache.pop((batch, context_tokens), None)
        if hit is not None and n_steps <= hit[0]:
            da, tok, kinds = hit[1]
            if n_steps < hit[0]:
                kinds = [(layers, cg[:n_steps], busy[:n_steps]) for layers, cg, busy in kinds]
        else:
            da, tok, kinds = self._run_parts(batch, context_tokens, n_steps)
        w, kv, comp, comm, other, flops, hbm = self._token_totals(tok, n_steps)
        kr, kb, kf = self._kv_coef
        ovh = self._core_ovh
        row_mem = self._mem_np[self._b_axis.cell(da)[0]]
        for layers, cg, busy in kinds:
            # memory- or compute-bound per step, from the nearest grid column at or above the context
            is_mem = row_mem[np.clip(np.searchsorted(self._c_axis.array, cg), 0, len(row_mem) - 1)]
            kv += layers * float(busy[is_mem].sum())
            comp += layers * float(busy[~is_mem].sum())
            other += layers * ovh * n_steps
            flops += layers * da * kf * float(cg.sum())
            hbm += layers * da * (kr * float(cg.sum()) + kb * n_steps)
            if self._helix:
                core = busy + ovh
                comm += layers * float((self._span(da, core) - core).sum())
        n = self._n_gpu
        return StepTime(w + kv + comp + comm + other, w, kv, comp, comm, other, flops * n, hbm * n)

    def _token_totals(self, tok: tuple, n: int) -> list[float]:
        """The token-driven part of ``n`` decode steps: weights, KV, compute, comm, other (with the step
        overhead), FLOPs, bytes."""
        return [tok[W] * n, tok[KV] * n, tok[COMP] * n, tok[COMM] * n, (tok[OTHER] + self._overhead) * n,
                tok[FLOPS] * n, tok[BYTES] * n]

    def _affine_totals(self, batch: int, n: int, detail: list) -> StepTime:
        """:meth:`decode_run_totals` of a run inside one context cell, in closed form: each kind's
        busy time is affine in the step (Σ = n·(first + last)/2) and its context grows by 1/kvp per
        step, so every step is classified by the grid column above it — the first step by its own
        column when it sits exactly on one."""
        da = -(-batch // self._dp)
        tok = self._tok_row(batch, da)
        w, kv, comp, comm, other, flops, hbm = self._token_totals(tok, n)
        kr, kb, kf = self._kv_coef
        ovh = self._core_ovh
        row_mem = self._mem_np[self._b_axis.cell(da)[0]]
        axis = self._c_axis.array
        last = len(row_mem) - 1
        for layers, g0, g1, j, b0, b1 in detail:
            total = n * (b0 + b1) * 0.5
            # steps whose context is ≤ grid point j take column j, the others column j + 1 (clipped),
            # as searchsorted does step by step; the context grows by (g1 − g0)/(n − 1) a step
            d = (g1 - g0) / (n - 1) if n > 1 else 0.0
            if g0 > axis[j]:
                m = 0
            elif d <= 0.0:
                m = n
            else:
                m = min(n, int((axis[j] - g0) / d) + 1)
            db = (b1 - b0) / (n - 1) if n > 1 else 0.0
            low = m * b0 + db * (m * (m - 1) * 0.5)  # busy time of those first m steps
            low_mem, high_mem = bool(row_mem[j]), bool(row_mem[min(j + 1, last)])
            kv += layers * ((low if low_mem else 0.0) + (total - low if high_mem else 0.0))
            comp += layers * ((0.0 if low_mem else low) + (0.0 if high_mem else total - low))
            other += layers * ovh * n
            csum = n * (g0 + g1) * 0.5  # Σ of the per-step (capped, per-KVP-rank) context
            flops += layers * da * kf * csum
            hbm += layers * da * (kr * csum + kb * n)
        g = self._n_gpu
        return StepTime(w + kv + comp + comm + other, w, kv, comp, comm, other, flops * g, hbm * g)

    # ------------------------------------------------------------------ reports
    def describe(self, shape: BatchShape) -> dict:
        """Exact per-op breakdown of one step (see :meth:`Composer.describe`)."""
        return self.composer.describe(shape)

    def memory(self, **kw) -> MemoryPlan:
        return memory_plan(self.spec, composer=self.composer, **kw)
