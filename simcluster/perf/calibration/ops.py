"""Op costs from measured tables: :class:`CalibratedOps`, an :class:`~simcluster.perf.interface.OpCosts`.

Conventions a step-cost composer must know:

* Every method returns **seconds for one invocation on one GPU**; attention and MLA methods cost
  **one layer**. Shapes are **per GPU** (after tensor parallelism): ``q_heads``/``kv_heads`` are the
  heads this GPU holds, GEMM ``n``/``k`` the local slice.
* Attention: ``batch`` sequences; ``new_tokens``, ``past_tokens`` and ``context_tokens`` are **per
  sequence** (pass the batch mean for a ragged batch). Decode attends ``context_tokens`` keys
  (cached tokens plus the new one).
* MoE: ``tokens`` enter the layer across the whole ``tp × ep`` group (each goes to ``topk`` of
  ``n_experts``); ``inter`` is the full expert intermediate size and ``n_experts`` the total: this GPU
  holds ``n_experts/ep`` experts cut ``tp`` ways. The time is the fused MoE kernel (routing permute,
  grouped GEMMs, activation, finalize) as the frameworks' MoE op runs it; dispatch/combine
  communication is not included.
* Collectives: ``bytes_per_gpu`` follows NCCL-tests: the all-reduce buffer, the all-gather *output*,
  the reduce-scatter *input*, the all-to-all send buffer, per GPU.

Provenance: after every scalar call ``last_source`` holds one of :data:`SOURCE_LABELS`
("measured", "interpolated", "extrapolated(roofline×eff)", "extrapolated(alpha-beta)",
"datasheet-roofline", "measured(other framework)") and ``last_detail`` says which table answered;
the ``*_many`` variants take and return arrays and leave per-element codes in ``last_sources``
(decode with :func:`source_label`). :meth:`CalibratedOps.explain` wraps any call into a dict.

How a lookup is answered, in order (see ``docs/calibration.md``): the framework's own table for the
quant mode (interpolated in log space, efficiency held at the nearest measured point outside it) ->
another framework's table on the same GPU -> the nearest measured quant mode, scaled by the
roofline of the requested one -> datasheet peaks × the median fitted efficiency of the other GPUs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simcluster.catalog.formats import get_format
from simcluster.catalog.gpus import GPUSpec, get_gpu
from simcluster.errors import UserError
from simcluster.perf.calibration.collectives import traffic_factor
from simcluster.perf.calibration.condense import Calibration, median_efficiency, shipped
from simcluster.perf.calibration.grid import (
    ALPHA_BETA,
    DATASHEET,
    EXTRAPOLATED,
    MEASURED,
    OTHER_FRAMEWORK,
    SOURCE_LABELS,
    source_label,
)
from simcluster.perf.calibration.load import FAMILIES, FRAMEWORKS
from simcluster.perf.calibration.tables import OpTable
from simcluster.perf.calibration.work import KV_BYTES, WORK, Peaks

__all__ = ["CalibratedOps", "SOURCE_LABELS", "source_label"]

# Achievable share of the NIC line rate for collectives over the scale-out network (no measured
# table exists; Mooncake reports 60-87 % of line rate for bulk transfers, SEED-NOTES M-1).
IB_EFFICIENCY = 0.8

# Frameworks whose expert-TP MoE is priced as the expert parallelism of equal work per GPU even where
# their table has a tp axis (CalibratedOps._moe_fold_tp). TRT-LLM: its tables put expert TP 8 at
# 1.6-1.8x the EP 8 time of the same work (DeepSeek FP8 block, B200, 8-1,024 tokens), while its measured
# TP 8 deployments with expert TP decode faster than its EP 8 ones (DeepSeek-R1 FP8 on B200, MTP 3, 8
# clients, the same three length pairs: 5.9-7.5 ms TPOT against 8.0-10.5 ms). SGLang's rows were tried
# the same way and not adopted (docs/calibration.md, docs/validation.md "The latest changes").
MOE_TP_AS_EP_FRAMEWORKS = ("trtllm",)
# Where a MoE layer streams weights (at most this many tokens per expert, tokens x top-k / experts:
# at most 2 x 16 FLOP per weight byte at FP8, under a tenth of the ridge point of every GPU in the
# catalog), expert TP k and EP k of equal work read the same bytes per GPU, and 1/k-wide slices of
# every expert stream them no faster than whole experts. So in that regime an expert-TP query is
# answered no faster than the table's measured EP point of equal work (CalibratedOps.moe, .moe_many).
# The tables break this bound: SGLang's FlashInfer TRTLLM-gen block-FP8 table for DeepSeek's experts
# (B200, balanced routing, 64 tokens: every expert active, 1.41 GB per GPU) puts expert TP 8 at
# 0.156 ms = 9.0 TB/s, above B200's 7.7 TB/s, where EP 8 of the same bytes takes 0.345 ms; SGLang's
# Hopper Triton table likewise puts TP 8 at 5.7 TB/s on H200 (4.8 TB/s). Measured SGLang deployments
# side with the bound: DeepSeek on B200 with expert TP decodes at 0.64-0.68 of the simulated speed
# under the table's tp axis, against 0.96-1.00 for the EP layouts of the same recipes
# (docs/validation.md, "This session: expert TP in the weight-streaming regime").
MOE_TP_FLOOR_TOKENS_PER_EXPERT = 16.0
_FOLD_NOTES: dict[tuple, str] = {}  # provenance note of a folded (tp, ep)

# Extra latency per tree level (ceil(log2 N)) across the scale-out network (NIC + switch hop),
# seconds; an assumption, nothing measures it.
IB_STEP_LATENCY_S = 2e-6

_OPS = {
    "all_reduce": "all_reduce",
    "allreduce": "all_reduce",
    "all_gather": "all_gather",
    "allgather": "all_gather",
    "reduce_scatter": "reduce_scatter",
    "reducescatter": "reduce_scatter",
    "all_to_all": "all_to_all",
    "alltoall": "all_to_all",
    "p2p": "p2p",
    "send": "p2p",
}
_SCALE_OUT_LINKS = {"ib", "infiniband", "roce", "ethernet", "scale_out", "network"}

# Table dtype names (what the measurements call the format) for each number format name, and the
# formats measured tables stand in for when a format has no table (nearest first).
_GEMM_TABLE = {
    "bfloat16": "bfloat16",
    "fp8": "fp8",
    "fp8_block": "fp8_block",
    "nvfp4": "nvfp4",
    "mxfp8": "fp8_block",
    "mxint8": "fp8_block",
    "int8": "fp8",
    "mxfp6": "fp8_block",
    "mxfp4": "nvfp4",
    "fp4": "nvfp4",
    "int4": "bfloat16",
}
_GEMM_SUBST = {
    "nvfp4": ("fp8", "fp8_block", "bfloat16"),
    "fp8_block": ("fp8", "bfloat16"),
    "fp8": ("fp8_block", "bfloat16"),
    "bfloat16": (),
}
_MOE_TABLE = {
    "bfloat16": "bfloat16",
    "fp8": "fp8",
    "fp8_block": "fp8_block",
    "nvfp4": "nvfp4",
    "mxfp8": "fp8_block",
    "int8": "fp8",
    "mxint8": "fp8_block",
    "mxfp6": "fp8_block",
    "mxfp4": "w4a16_mxfp4",
    "fp4": "nvfp4",
    "int4": "int4_wo",
    "int4_wo": "int4_wo",
    "w4a16_mxfp4": "w4a16_mxfp4",
    "w4a8_mxfp4_mxfp8": "w4a8_mxfp4_mxfp8",
}
_MOE_SUBST = {
    "bfloat16": (),
    "fp8": ("fp8_block", "bfloat16"),
    "fp8_block": ("fp8", "bfloat16"),
    "nvfp4": ("w4a8_mxfp4_mxfp8", "fp8_block", "fp8", "bfloat16"),
    "w4a16_mxfp4": ("int4_wo", "w4a8_mxfp4_mxfp8", "nvfp4", "bfloat16"),
    "w4a8_mxfp4_mxfp8": ("nvfp4", "w4a16_mxfp4", "fp8_block", "bfloat16"),
    "int4_wo": ("w4a16_mxfp4", "bfloat16"),
}
_DISTRIBUTIONS = {
    "balanced": "balanced",
    "uniform": "balanced",
    "power_law": "power_law_1.01",
    "power_law_1.01": "power_law_1.01",
}


def _table_fmt(fmt: str, field: str) -> str:
    """Canonical lower-case format name; a :class:`UserError` for unknown names."""
    key = str(fmt).strip().lower()
    if key in ("bf16", "bfloat16", "fp16", "float16", "half"):
        return "bfloat16"
    if key in ("fp8_block", "w4a16_mxfp4", "w4a8_mxfp4_mxfp8", "int4_wo"):
        return key
    return get_format(key, field=field).name


def _kv_table(kv_fmt: str) -> tuple[str, float, bool]:
    """(KV table dtype, KV bytes per element, whether the format has its own table)."""
    name = _table_fmt(kv_fmt, "kv_fmt")
    if name == "bfloat16":
        return "bfloat16", 2.0, True
    if name == "fp8":
        return "fp8", 1.0, True
    return "fp8", get_format(name).bytes_per_element, False


class CalibratedOps:
    """:class:`~simcluster.perf.interface.OpCosts` from measured tables (see module doc).

    ``gpu``: a catalog GPU or its name; ``framework``: vllm | sglang | trtllm (the serving stack
    whose kernels are assumed); ``calibration``: artefacts to use (default: the shipped ones).
    """

    # Every method also takes numpy arrays for its size arguments (``perf.composition`` builds its
    # latency tables in one call per op); the ``*_many`` twins are the explicit array versions.
    vectorised = True
    # Measured latencies include kernel launch; none of it is split out as separate overhead.
    launch_overhead_s = 0.0

    def __init__(self, gpu: GPUSpec | str, framework: str = "vllm", calibration: Calibration | None = None,
                 moe_tp_as_ep: bool | None = None) -> None:
        self.gpu = get_gpu(gpu) if isinstance(gpu, str) else gpu
        fw = str(framework).strip().lower()
        if fw not in FRAMEWORKS:
            raise UserError(
                f"unknown serving framework {framework!r}; known: {', '.join(FRAMEWORKS)}", where="framework"
            )
        self.framework = fw
        self.calibration = calibration if calibration is not None else shipped()
        self.system = self.gpu.calibration_dir
        self.peaks = Peaks.of(self.gpu)
        self.last_source: str = SOURCE_LABELS[MEASURED]
        self.last_detail: str = ""
        self.last_sources: np.ndarray = np.zeros(0, dtype=np.uint8)
        self._tables: dict[tuple[str, str], OpTable | None] = {}
        self._routes: dict[tuple, Any] = {}
        self._moe_tp_spans: dict[tuple, tuple[float, float]] = {}
        # expert TP priced as EP of equal work even where the table has a tp axis; None: as this
        # framework's deployments do (the deployment's framework decides, so FrameworkOps passes its own
        # to the tables of other frameworks it routes to)
        self.moe_tp_as_ep = self.framework in MOE_TP_AS_EP_FRAMEWORKS if moe_tp_as_ep is None else moe_tp_as_ep

    # ------------------------------------------------------------------ plumbing
    def _table(self, family: str, framework: str) -> OpTable | None:
        k = (family, framework)
        if k not in self._tables:
            got = self.calibration.table(family, self.system, framework) if self.system else None
            self._tables[k] = OpTable(family, got[0], self.peaks, got[1]) if got is not None else None
        return self._tables[k]

    def _frameworks(self, family: str) -> list[str]:
        own = "nccl" if family == "nccl" else self.framework
        others = [fw for fw in ("trtllm", "vllm", "sglang") if fw != own]
        return [own] + ([] if family in ("nccl", "custom_allreduce") else others)

    def _locate(self, family: str, keys: list[tuple], substitutes: list[tuple]):
        """First table that answers one of ``keys`` (exact quant) or ``substitutes`` (another quant).

        Order: own framework exact, other frameworks exact, own framework substitutes, other
        frameworks substitutes. Returns (table, key, floor code, detail) or None.
        """
        fws = self._frameworks(family)
        for cands, code in ((keys, MEASURED), (substitutes, EXTRAPOLATED)):
            for i, fw in enumerate(fws):
                tab = self._table(family, fw)
                if tab is None:
                    continue
                for key in cands:
                    if tab.resolve(key) is not None:
                        floor = code if i == 0 else max(code, OTHER_FRAMEWORK)
                        quant = _quant_of(family, key)
                        version = tab.info.get("quant_modes", {}).get(quant, {}).get("version", "")
                        detail = f"{family} {fw} {version}".rstrip()
                        if i > 0:
                            detail += f" (no {self.framework} table)"
                        if code == EXTRAPOLATED:
                            detail += f"; efficiency of {quant}"
                        return tab, key, floor, detail
        return None

    @staticmethod
    def _with_roof(loc, roof_key: dict):
        """``loc`` plus the roofline key its lookups need: None when the table's own key does the
        same work (the lookup then stays a pure table interpolation, and is faster)."""
        if loc is None:
            return None
        tab, key, floor, detail = loc
        own = tab.key_dict(key)
        same = all(
            (
                (own.get("kv_dtype") is not None and KV_BYTES.get(own["kv_dtype"]) == v)
                if k == "kv_bytes"
                else own.get(k) == v
            )
            for k, v in roof_key.items()
        )
        return tab, key, floor, detail, (None if same else roof_key)

    def _finish1(self, value: float, code: int, floor: int, detail: str) -> float:
        # ``floor``: the least a route implies (another framework's table, a stand-in format)
        self.last_source = SOURCE_LABELS[code if code > floor else floor]
        self.last_detail = detail
        return value

    def _finish(self, value: np.ndarray, code: np.ndarray, floor: int, detail: str) -> np.ndarray:
        code = np.maximum(code, floor).astype(np.uint8)
        self.last_sources = code
        self.last_source = SOURCE_LABELS[int(code.max())] if len(code) else SOURCE_LABELS[MEASURED]
        self.last_detail = detail
        return value

    def _datasheet(self, family: str, key: dict, axes, quant: str, vectorised: bool):
        """Datasheet peaks × the median fitted efficiency of the measured GPUs."""
        fit = median_efficiency(self.calibration.efficiency, family, self.framework, quant)
        flops, nbytes, cls = WORK[family](key, *axes)
        peak = self.peaks.flops.get(cls, self.peaks.flops["bf16"])
        if fit is None:  # nothing measured anywhere: the bare roofline
            t = np.maximum(flops / peak, nbytes / self.peaks.hbm_Bps)
        else:
            t = fit.predict(flops, nbytes, peak, self.peaks.hbm_Bps)
        return np.asarray(t, dtype=np.float64) if vectorised else float(t)

    def explain(self, method: str, *args, **kwargs) -> dict:
        """Call ``method`` (e.g. "gemm") and return seconds with its provenance."""
        seconds = getattr(self, method)(*args, **kwargs)
        return {"seconds": seconds, "source": self.last_source, "detail": self.last_detail}

    # ------------------------------------------------------------------ GEMM
    def _gemm_route(self, fmt: str):
        r = self._routes.get(("gemm", fmt))
        if r is None:
            name = _table_fmt(fmt, "fmt")
            table = _GEMM_TABLE.get(name)
            if table is None:
                raise UserError(f"no GEMM model for number format {fmt!r}", where="fmt")
            exact = table == name
            subs = [(s,) for s in _GEMM_SUBST[table]]
            loc = self._locate("gemm", [(table,)] if exact else [], ([(table,)] if not exact else []) + subs)
            roof_key = {"dtype": name}
            r = (self._with_roof(loc, roof_key), roof_key)
            self._routes[("gemm", fmt)] = r
        return r

    def gemm(self, m: int, n: int, k: int, fmt: str) -> float:
        """Seconds of ``[m,k] x [k,n]`` (activations m x k, weights k x n) in number format ``fmt``."""
        if _arrays(m, n, k):
            return self.gemm_many(m, n, k, fmt)
        loc, roof_key = self._gemm_route(fmt)
        if loc is None:
            t = self._datasheet("gemm", roof_key, (m, n, k), roof_key["dtype"], False)
            return self._finish1(t, DATASHEET, DATASHEET, "datasheet peaks × median GEMM efficiency")
        tab, key, floor, detail, lookup_roof = loc
        t, code = tab.predict1(key, (m, n, k), lookup_roof)
        return self._finish1(t, code, floor, detail)

    def gemm_many(self, m, n, k, fmt: str) -> np.ndarray:
        """Vectorised :meth:`gemm` over broadcast arrays ``m``, ``n``, ``k``."""
        m, n, k = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(m, n, k))
        shape = m.shape
        m, n, k = m.ravel(), n.ravel(), k.ravel()
        loc, roof_key = self._gemm_route(fmt)
        if loc is None:
            t = self._datasheet("gemm", roof_key, (m, n, k), roof_key["dtype"], True)
            return self._finish(t, np.full(len(t), DATASHEET, np.uint8), DATASHEET, "datasheet").reshape(shape)
        tab, key, floor, detail, lookup_roof = loc
        t, code = tab.predict(key, [m, n, k], lookup_roof)
        return self._finish(t, code, floor, detail).reshape(shape)

    # ------------------------------------------------------------------ attention (GQA/MHA)
    def _attn_route(self, family: str, q_heads: int, kv_heads: int, head_dim: int, kv_fmt: str):
        rk = (family, q_heads, kv_heads, head_dim, kv_fmt)
        r = self._routes.get(rk)
        if r is None:
            kv, kv_bytes, exact = _kv_table(kv_fmt)
            other = "bfloat16" if kv == "fp8" else "fp8"

            def keys_for(kvd):
                return [(a, kvd, q_heads, kv_heads, head_dim) for a in self._attn_dtypes(family, kvd)]

            main = keys_for(kv) if exact else []
            subs = (keys_for(kv) if not exact else []) + keys_for(other)
            loc = self._locate(family, main, subs)
            roof_key = {
                "attn_dtype": "bfloat16",
                "kv_dtype": kv,
                "kv_bytes": kv_bytes,
                "q_heads": q_heads,
                "kv_heads": kv_heads,
                "head_dim": head_dim,
            }
            if loc is not None:
                roof_key["attn_dtype"] = loc[1][0]
            r = (self._with_roof(loc, roof_key), roof_key, f"{'/'.join(('bfloat16', kv))}")
            self._routes[rk] = r
        return r

    def _attn_dtypes(self, family: str, kv: str) -> list[str]:
        """Attention compute dtypes to try with KV dtype ``kv``: the one run by the framework's main kernel first."""
        tab = self._table(family, self.framework)
        if tab is None:
            return ["bfloat16", "fp8"]
        modes = tab.info.get("quant_modes", {})
        totals: dict[str, int] = {}
        for m in modes.values():
            totals[m["kernel_source"]] = totals.get(m["kernel_source"], 0) + m["points"]
        main = max(totals, key=lambda s: (totals[s], s)) if totals else None
        order = sorted(
            ("bfloat16", "fp8"),
            key=lambda a: (modes.get(f"{a}/{kv}", {}).get("kernel_source") != main, a != "bfloat16"),
        )
        return order

    def _attention1(self, family: str, batch, ax2, q_heads, kv_heads, head_dim, kv_fmt) -> tuple[float, int, int, str]:
        loc, roof_key, quant = self._attn_route(family, q_heads, kv_heads, head_dim, kv_fmt)
        if loc is None:
            t = self._datasheet(family, roof_key, (batch, ax2), quant, False)
            return t, DATASHEET, DATASHEET, f"datasheet peaks × median {family} efficiency"
        tab, key, floor, detail, lookup_roof = loc
        t, code = tab.predict1(key, (batch, ax2), lookup_roof)
        return t, code, floor, detail

    def attention_decode(
        self, batch: int, context_tokens: int, q_heads: int, kv_heads: int, head_dim: int, kv_fmt: str
    ) -> float:
        """One layer of decode attention: ``batch`` sequences, one new token each, ``context_tokens`` keys each."""
        if _arrays(batch, context_tokens):
            return self.attention_decode_many(batch, context_tokens, q_heads, kv_heads, head_dim, kv_fmt)
        t, code, floor, detail = self._attention1(
            "attention_decode", batch, context_tokens, q_heads, kv_heads, head_dim, kv_fmt
        )
        return self._finish1(t, code, floor, detail)

    def attention_prefill(
        self, batch: int, new_tokens: int, past_tokens: int, q_heads: int, kv_heads: int, head_dim: int, kv_fmt: str
    ) -> float:
        """One layer of causal prefill attention: ``batch`` sequences of ``new_tokens`` after ``past_tokens`` cached.

        Without a cached prefix this is the measured table. With one (chunked prefill, prefix
        caching) no measurement exists; the cost is the larger of a full prefill with the same
        number of causal query-key pairs and a decode step reading the whole context, and is
        labelled extrapolated.
        """
        if _arrays(batch, new_tokens, past_tokens):
            return self.attention_prefill_many(batch, new_tokens, past_tokens, q_heads, kv_heads, head_dim, kv_fmt)
        if past_tokens <= 0:
            t, code, floor, detail = self._attention1(
                "attention_prefill", batch, new_tokens, q_heads, kv_heads, head_dim, kv_fmt
            )
            return self._finish1(t, code, floor, detail)
        t1, c1, f1, d1 = self._attention1(
            "attention_prefill",
            batch,
            _equivalent_prefill(new_tokens, past_tokens),
            q_heads,
            kv_heads,
            head_dim,
            kv_fmt,
        )
        t2, c2, f2, d2 = self._attention1(
            "attention_decode", batch, past_tokens + new_tokens, q_heads, kv_heads, head_dim, kv_fmt
        )
        code = max(c1, c2, EXTRAPOLATED)
        return self._finish1(max(t1, t2), code, max(f1, f2), f"{d1}; max with {d2}")

    def _attention_many(self, family, batch, ax2, q_heads, kv_heads, head_dim, kv_fmt):
        loc, roof_key, quant = self._attn_route(family, q_heads, kv_heads, head_dim, kv_fmt)
        if loc is None:
            t = self._datasheet(family, roof_key, (batch, ax2), quant, True)
            return t, np.full(len(t), DATASHEET, np.uint8), DATASHEET, "datasheet"
        tab, key, floor, detail, lookup_roof = loc
        t, code = tab.predict(key, [batch, ax2], lookup_roof)
        return t, code, floor, detail

    def attention_decode_many(
        self, batch, context_tokens, q_heads: int, kv_heads: int, head_dim: int, kv_fmt: str
    ) -> np.ndarray:
        """Vectorised :meth:`attention_decode` over broadcast arrays ``batch``, ``context_tokens``."""
        b, c = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(batch, context_tokens))
        t, code, floor, detail = self._attention_many(
            "attention_decode", b.ravel(), c.ravel(), q_heads, kv_heads, head_dim, kv_fmt
        )
        return self._finish(t, code, floor, detail).reshape(b.shape)

    def attention_prefill_many(
        self, batch, new_tokens, past_tokens, q_heads: int, kv_heads: int, head_dim: int, kv_fmt: str
    ) -> np.ndarray:
        """Vectorised :meth:`attention_prefill` over broadcast arrays ``batch``, ``new_tokens``, ``past_tokens``."""
        return self._prefill_many(
            lambda fam, b, x: self._attention_many(fam, b, x, q_heads, kv_heads, head_dim, kv_fmt),
            "attention_prefill",
            "attention_decode",
            batch,
            new_tokens,
            past_tokens,
        )

    def _prefill_many(self, lookup, prefill: str, decode: str, batch, new_tokens, past_tokens) -> np.ndarray:
        """Prefill chunks with or without a cached prefix (see :meth:`attention_prefill`), vectorised."""
        shape = np.broadcast_shapes(np.shape(batch), np.shape(new_tokens), np.shape(past_tokens))
        b, n, p = (np.asarray(a, dtype=np.float64).ravel() for a in np.broadcast_arrays(batch, new_tokens, past_tokens))
        has_past = p > 0
        t, code, floor, detail = lookup(prefill, b, np.where(has_past, _equivalent_prefill(n, p), n))
        if has_past.any():
            t2, c2, f2, d2 = lookup(decode, b, p + n)
            t = np.where(has_past, np.maximum(t, t2), t)
            code = np.where(has_past, np.maximum(np.maximum(code, c2), EXTRAPOLATED), code).astype(np.uint8)
            floor = max(floor, f2)
            detail = f"{detail}; with a cached prefix: max with {d2}"
        return self._finish(t, code, floor, detail).reshape(shape)

    # ------------------------------------------------------------------ MLA
    def _mla_route(self, family: str, q_heads: int, kv_fmt: str, gemm_fmt: str | None = None):
        rk = (family, q_heads, kv_fmt, gemm_fmt)
        r = self._routes.get(rk)
        if r is None:
            kv, kv_bytes, exact = _kv_table(kv_fmt)
            other = "bfloat16" if kv == "fp8" else "fp8"
            if family.startswith("mla_module"):
                gname = _table_fmt(gemm_fmt or "bf16", "gemm_fmt")
                # DeepSeek's FP8 projections are block-scaled: the module tables measure fp8_block only
                g = "fp8_block" if gname in ("fp8", "fp8_block", "mxfp8") else _GEMM_TABLE.get(gname, "bfloat16")
                g_exact = gname in ("bfloat16", "fp8", "fp8_block", "nvfp4")
                gsubs = [g, *[s for s in ("fp8_block", "nvfp4", "bfloat16") if s != g]]
                main = [(kv, g, q_heads)] if exact and g_exact else []
                subs = (
                    ([] if main else [(kv, g, q_heads)])
                    + [(kv, s, q_heads) for s in gsubs[1:]]
                    + [(other, s, q_heads) for s in gsubs]
                )
                roof_key = {
                    "kv_dtype": kv,
                    "kv_bytes": kv_bytes,
                    "gemm_dtype": g if g_exact else gname,
                    "q_heads": q_heads,
                }
                quant = f"{kv}/{g}"
            else:
                main = [("bfloat16", kv, q_heads)] if exact else []
                subs = ([("bfloat16", kv, q_heads)] if not exact else []) + [("bfloat16", other, q_heads)]
                roof_key = {"mla_dtype": "bfloat16", "kv_dtype": kv, "kv_bytes": kv_bytes, "q_heads": q_heads}
                quant = f"bfloat16/{kv}"
            r = (self._with_roof(self._locate(family, main, subs), roof_key), roof_key, quant)
            self._routes[rk] = r
        return r

    def _mla1(self, family, batch, ax2, q_heads, kv_fmt, gemm_fmt=None):
        loc, roof_key, quant = self._mla_route(family, q_heads, kv_fmt, gemm_fmt)
        if loc is None:
            t = self._datasheet(family, roof_key, (batch, ax2), quant, False)
            return t, DATASHEET, DATASHEET, f"datasheet peaks × median {family} efficiency"
        tab, key, floor, detail, lookup_roof = loc
        t, code = tab.predict1(key, (batch, ax2), lookup_roof)
        return t, code, floor, detail

    def _mla_many(self, family, batch, ax2, q_heads, kv_fmt, gemm_fmt=None):
        loc, roof_key, quant = self._mla_route(family, q_heads, kv_fmt, gemm_fmt)
        if loc is None:
            t = self._datasheet(family, roof_key, (batch, ax2), quant, True)
            return t, np.full(len(t), DATASHEET, np.uint8), DATASHEET, "datasheet"
        tab, key, floor, detail, lookup_roof = loc
        t, code = tab.predict(key, [batch, ax2], lookup_roof)
        return t, code, floor, detail

    def mla_decode(self, batch: int, context_tokens: int, q_heads: int, kv_fmt: str) -> float:
        """One layer of MLA core attention in decode (DeepSeek-V3 geometry, absorbed; projections excluded)."""
        if _arrays(batch, context_tokens):
            return self.mla_decode_many(batch, context_tokens, q_heads, kv_fmt)
        t, code, floor, detail = self._mla1("mla_decode", batch, context_tokens, q_heads, kv_fmt)
        return self._finish1(t, code, floor, detail)

    def mla_prefill(self, batch: int, new_tokens: int, past_tokens: int, q_heads: int, kv_fmt: str) -> float:
        """One layer of MLA core attention in prefill (DeepSeek-V3 geometry; projections excluded).

        A cached prefix is handled like :meth:`attention_prefill` (and labelled extrapolated).
        """
        if _arrays(batch, new_tokens, past_tokens):
            return self.mla_prefill_many(batch, new_tokens, past_tokens, q_heads, kv_fmt)
        if past_tokens <= 0:
            t, code, floor, detail = self._mla1("mla_prefill", batch, new_tokens, q_heads, kv_fmt)
            return self._finish1(t, code, floor, detail)
        t1, c1, f1, d1 = self._mla1("mla_prefill", batch, _equivalent_prefill(new_tokens, past_tokens), q_heads, kv_fmt)
        t2, c2, f2, d2 = self._mla1("mla_decode", batch, past_tokens + new_tokens, q_heads, kv_fmt)
        return self._finish1(max(t1, t2), max(c1, c2, EXTRAPOLATED), max(f1, f2), f"{d1}; max with {d2}")

    def mla_decode_many(self, batch, context_tokens, q_heads: int, kv_fmt: str) -> np.ndarray:
        """Vectorised :meth:`mla_decode`."""
        b, c = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(batch, context_tokens))
        t, code, floor, detail = self._mla_many("mla_decode", b.ravel(), c.ravel(), q_heads, kv_fmt)
        return self._finish(t, code, floor, detail).reshape(b.shape)

    def mla_prefill_many(self, batch, new_tokens, past_tokens, q_heads: int, kv_fmt: str) -> np.ndarray:
        """Vectorised :meth:`mla_prefill` over broadcast arrays ``batch``, ``new_tokens``, ``past_tokens``."""
        return self._prefill_many(
            lambda fam, b, x: self._mla_many(fam, b, x, q_heads, kv_fmt),
            "mla_prefill",
            "mla_decode",
            batch,
            new_tokens,
            past_tokens,
        )

    def mla_module_decode(self, batch: int, context_tokens: int, q_heads: int, kv_fmt: str, gemm_fmt: str) -> float:
        """The whole DeepSeek-V3 MLA attention block of one layer in decode: projections + core attention.

        Measured for vLLM and TRT-LLM only (SGLang uses the TRT-LLM tables); ``gemm_fmt`` is the
        format of the projection weights.
        """
        t, code, floor, detail = self._mla1("mla_module_decode", batch, context_tokens, q_heads, kv_fmt, gemm_fmt)
        return self._finish1(t, code, floor, detail)

    def mla_module_prefill(self, batch: int, new_tokens: int, q_heads: int, kv_fmt: str, gemm_fmt: str) -> float:
        """The whole DeepSeek-V3 MLA attention block of one layer in prefill (no cached prefix)."""
        t, code, floor, detail = self._mla1("mla_module_prefill", batch, new_tokens, q_heads, kv_fmt, gemm_fmt)
        return self._finish1(t, code, floor, detail)

    def mla_bmm(self, tokens: int, q_heads: int, stage: str = "pre", fmt: str = "bf16") -> float:
        """The per-head batched GEMM absorbing W_UK (``stage="pre"``) or W_UV (``"post"``) in MLA decode."""
        st = {"pre": "mla_gen_pre", "post": "mla_gen_post"}.get(stage, stage)
        if st not in ("mla_gen_pre", "mla_gen_post"):
            raise UserError(f"mla_bmm stage must be 'pre' or 'post', not {stage!r}", where="stage")
        rk = ("mla_bmm", q_heads, st, fmt)
        r = self._routes.get(rk)
        if r is None:
            d = "fp8" if _table_fmt(fmt, "fmt") in ("fp8", "fp8_block", "mxfp8") else "bfloat16"
            other = "bfloat16" if d == "fp8" else "fp8"
            roof_key = {"stage": st, "dtype": d, "q_heads": q_heads}
            r = (
                self._with_roof(self._locate("mla_bmm", [(st, d, q_heads)], [(st, other, q_heads)]), roof_key),
                roof_key,
            )
            self._routes[rk] = r
        loc, roof_key = r
        if loc is None:
            t = self._datasheet("mla_bmm", roof_key, (tokens,), f"{st}/{roof_key['dtype']}", False)
            return self._finish1(t, DATASHEET, DATASHEET, "datasheet peaks × median mla_bmm efficiency")
        tab, key, floor, detail, lookup_roof = loc
        t, code = tab.predict1(key, (tokens,), lookup_roof)
        return self._finish1(t, code, floor, detail)

    # ------------------------------------------------------------------ MoE
    def _moe_route(self, hidden, inter, topk, n_experts, fmt, distribution):
        rk = ("moe", hidden, inter, topk, n_experts, fmt, distribution)
        r = self._routes.get(rk)
        if r is None:
            name = _table_fmt(fmt, "fmt")
            table = _MOE_TABLE.get(name)
            if table is None:
                raise UserError(f"no MoE model for number format {fmt!r}", where="fmt")
            dist = _DISTRIBUTIONS.get(str(distribution).strip().lower())
            if dist is None:
                raise UserError(
                    f"unknown expert-load distribution {distribution!r}; known: {', '.join(sorted(_DISTRIBUTIONS))}",
                    where="distribution",
                )
            exact = table == name or name in ("mxfp4", "int4")

            def key(d):
                return (d, dist, hidden, inter, topk, n_experts)

            main = [key(table)] if exact else []
            subs = ([key(table)] if not exact else []) + [key(s) for s in _MOE_SUBST[table]]
            roof_dtype = table if exact else name
            roof_key = {
                "dtype": roof_dtype,
                "distribution": dist,
                "hidden": hidden,
                "inter": inter,
                "topk": topk,
                "experts": n_experts,
            }
            r = (self._with_roof(self._locate("moe", main, subs), roof_key), roof_key, table)
            self._routes[rk] = r
        return r

    def moe(
        self,
        tokens: int,
        hidden: int,
        inter: int,
        topk: int,
        n_experts: int,
        tp: int,
        ep: int,
        fmt: str,
        distribution: str = "balanced",
    ) -> float:
        """One MoE layer's routed experts on one GPU of a ``tp × ep`` group (see module doc for the convention).

        ``distribution``: balanced | power_law (= power_law_1.01, the measured skewed routing) — how
        unevenly tokens spread over experts (the slowest GPU sets the time).
        """
        if _arrays(tokens, tp, ep):
            return self.moe_many(tokens, hidden, inter, topk, n_experts, tp, ep, fmt, distribution)
        loc, roof_key, quant = self._moe_route(hidden, inter, topk, n_experts, fmt, distribution)
        if loc is None:
            t = self._datasheet("moe", roof_key, (tokens, tp, ep), quant, False)
            return self._finish1(t, DATASHEET, DATASHEET, "datasheet peaks × median MoE efficiency")
        tab, key, floor, detail, lookup_roof = loc
        tp, ep, folded = self._moe_fold_tp(tab, key, tp, ep)
        t, code = tab.predict1(key, (tokens, tp, ep), lookup_roof)
        if (tp > 1 and tokens * topk <= MOE_TP_FLOOR_TOKENS_PER_EXPERT * n_experts
                and tp * ep <= self._moe_span(tab, key)[1]):
            # weight streaming: no faster than EP of equal work (MOE_TP_FLOOR_TOKENS_PER_EXPERT)
            t_ep, code_ep = tab.predict1(key, (tokens, 1, tp * ep), lookup_roof)
            if t_ep > t:
                t, code = t_ep, code_ep
                folded = "; expert TP no faster than EP of equal work (weight streaming)"
        return self._finish1(t, code, floor, detail + folded)

    @staticmethod
    def _moe_tp_span(tab: OpTable, key) -> tuple[float, float] | None:
        """(largest tp, largest ep) the tables answering ``key`` measured, or None if unresolved."""
        res = tab.resolve(key)
        if res is None:
            return None
        tps, eps = [], []
        for k, _ in res[0]:
            g = tab.grid(k)
            tps.append(2.0 ** g.axes[1][-1])
            eps.append(2.0 ** g.axes[2][-1])
        return min(tps), min(eps)

    def _moe_span(self, tab: OpTable, key) -> tuple[float, float]:
        """(largest tp, largest ep) measured for ``key``, cached; (0, 0) if unresolved."""
        span = self._moe_tp_spans.get(key)
        if span is None:
            span = self._moe_tp_spans[key] = self._moe_tp_span(tab, key) or (0.0, 0.0)
        return span

    def _moe_fold_tp(self, tab: OpTable, key, tp, ep):
        """Expert tensor parallelism priced as the expert parallelism of the same work per GPU.

        A table measured at ``tp = 1`` only (TRT-LLM's w4a16 MXFP4 tables) would answer ``tp = k``
        by holding the efficiency of its ``tp = 1`` point: the whole-expert GEMM's efficiency on a
        1/k-wide slice, k times too fast where the kernel is latency-bound (TRT-LLM gpt-oss on H200,
        TP 8 with expert TP: 2.1 ms simulated TPOT against 4.4 ms measured, while the measured EP 8
        points of the same table give 4.2-4.5 ms). ``tp = k, ep = e`` and ``tp = 1, ep = k·e`` hold the
        same bytes of expert weights per GPU and do the same FLOPs per GPU at balanced routing (all
        experts 1/k wide against 1/k of the experts whole), so the measured ``ep = k·e`` point answers,
        while it lies inside the table. With ``moe_tp_as_ep`` (the frameworks of
        :data:`MOE_TP_AS_EP_FRAMEWORKS`, and any table they are routed to) this answer is taken even
        where the table has a tp axis (their deployments' expert TP does not run at the table's tp
        cost). Returns (tp, ep, a note for the detail)."""
        max_tp, max_ep = self._moe_span(tab, key)
        if max_tp != 1.0 and not self.moe_tp_as_ep:
            return tp, ep, ""
        if isinstance(tp, np.ndarray):
            fold = (tp > 1) & (tp * ep <= max_ep)
            if not fold.any():
                return tp, ep, ""
            return np.where(fold, 1.0, tp), np.where(fold, tp * ep, ep), "; expert TP as EP of equal work"
        if tp > 1 and tp * ep <= max_ep:
            note = _FOLD_NOTES.get((tp, ep))
            if note is None:  # formatted once per (tp, ep): the scalar lookup is on the simulator's hot path
                note = _FOLD_NOTES[(tp, ep)] = f"; expert TP {tp} as EP {tp * ep} (equal work per GPU)"
            return 1, tp * ep, note
        return tp, ep, ""

    def moe_many(
        self,
        tokens,
        hidden: int,
        inter: int,
        topk: int,
        n_experts: int,
        tp,
        ep,
        fmt: str,
        distribution: str = "balanced",
    ) -> np.ndarray:
        """Vectorised :meth:`moe` over broadcast arrays ``tokens``, ``tp``, ``ep``."""
        t_, tp_, ep_ = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(tokens, tp, ep))
        shape = t_.shape
        loc, roof_key, quant = self._moe_route(hidden, inter, topk, n_experts, fmt, distribution)
        axes = [t_.ravel(), tp_.ravel(), ep_.ravel()]
        if loc is None:
            t = self._datasheet("moe", roof_key, axes, quant, True)
            return self._finish(t, np.full(len(t), DATASHEET, np.uint8), DATASHEET, "datasheet").reshape(shape)
        tab, key, floor, detail, lookup_roof = loc
        tp_f, ep_f, folded = self._moe_fold_tp(tab, key, axes[1], axes[2])
        axes = [axes[0], np.asarray(tp_f, dtype=np.float64), np.asarray(ep_f, dtype=np.float64)]
        t, code = tab.predict(key, axes, lookup_roof)
        eq = axes[1] * axes[2]
        low = ((axes[1] > 1) & (axes[0] * topk <= MOE_TP_FLOOR_TOKENS_PER_EXPERT * n_experts)
               & (eq <= self._moe_span(tab, key)[1]))
        if low.any():  # weight streaming: no faster than EP of equal work (MOE_TP_FLOOR_TOKENS_PER_EXPERT)
            idx = np.flatnonzero(low)
            t_ep, code_ep = tab.predict(key, [axes[0][idx], np.ones(len(idx)), eq[idx]], lookup_roof)
            up = t_ep > t[idx]
            if up.any():
                t, code = np.array(t, copy=True), np.array(code, copy=True)
                t[idx[up]], code[idx[up]] = t_ep[up], code_ep[up]
                folded += "; expert TP no faster than EP of equal work (weight streaming)"
        return self._finish(t, code, floor, detail + folded).reshape(shape)

    # ------------------------------------------------------------------ collectives
    def collective(self, op: str, bytes_per_gpu: float, n_gpus: int, link: str) -> float:
        """Seconds of one collective over ``n_gpus`` GPUs (see module doc for the byte convention).

        ``link``: nvlink (or pcie: the measured scale-up fabric of this GPU) | ib (scale-out
        network: datasheet NIC bandwidth, no measurement). ``op="p2p"`` is a point-to-point send
        of ``bytes_per_gpu`` (no measurement: α and bandwidth of the 2-GPU all-gather).
        """
        if _arrays(bytes_per_gpu):
            return self.collective_many(op, bytes_per_gpu, n_gpus, link)
        op_n, route = self._collective_route(op, n_gpus, link)
        nbytes = float(bytes_per_gpu)
        if route[0] != "table" or nbytes <= 0:
            t, code, detail = self._collective(op, np.asarray([nbytes]), n_gpus, link)
            return self._finish1(float(t[0]), int(code[0]), MEASURED, detail)
        _, tab, key, ent, detail = route
        t, code = self._scale_up1(op_n, tab, key, ent, nbytes, int(n_gpus))
        return self._finish1(t, code, MEASURED, detail)

    def _collective_route(self, op: str, n_gpus: int, link: str):
        rk = ("coll", op, n_gpus, link)
        r = self._routes.get(rk)
        if r is None:
            op_n = _OPS.get(str(op).strip().lower())
            if op_n is None:
                raise UserError(
                    f"unknown collective {op!r}; known: {', '.join(sorted(set(_OPS.values())))}", where="op"
                )
            ent = self.calibration.collectives.get("nccl", {}).get(self.system or "", {}).get(op_n)
            tab = self._table("nccl", "nccl")
            if (
                int(n_gpus) > 1
                and str(link).strip().lower() not in _SCALE_OUT_LINKS
                and tab is not None
                and ent is not None
            ):
                route = ("table", tab, (op_n,), ent, f"nccl {op_n}")
            else:
                route = ("model",)
            r = (op_n, route)
            self._routes[rk] = r
        return r

    def _scale_up1(self, op: str, tab: OpTable, key: tuple, ent: dict, nbytes: float, n: int) -> tuple[float, int]:
        """Scalar :meth:`_scale_up`."""
        per_n = ent["per_n"]
        n_max = ent["max_n"]
        n_tab = min(n, n_max)
        near = (
            per_n.get(str(n_tab))
            or per_n[str(min((int(x) for x in per_n), key=lambda x: (abs(math.log2(x) - math.log2(n_tab)), x)))]
        )
        max_b = float(near["max_bytes"])
        t, code = tab.predict1(key, (float(n_tab), min(max(nbytes, 1.0), max_b)))
        if nbytes > max_b:
            t += (nbytes - max_b) * traffic_factor(op, n_tab) / near["busbw_Bps"]
            code = ALPHA_BETA
        if n > n_max:
            bw_max = per_n[str(n_max)]["busbw_Bps"]
            t += _alpha_growth(ent, n) + nbytes * (traffic_factor(op, n) - traffic_factor(op, n_max)) / bw_max
            code = ALPHA_BETA
        return t, code

    def collective_many(self, op: str, bytes_per_gpu, n_gpus: int, link: str) -> np.ndarray:
        """Vectorised :meth:`collective` over an array of message sizes."""
        b = np.asarray(bytes_per_gpu, dtype=np.float64)
        t, code, detail = self._collective(op, b.ravel(), n_gpus, link)
        return self._finish(t, code, MEASURED, detail).reshape(b.shape)

    def custom_all_reduce(self, bytes_per_gpu: float, n_gpus: int) -> float:
        """Seconds of the framework's own (one-shot / two-shot, CUDA-graph) all-reduce within a node.

        Where the framework has no measurement for this group size, NCCL's all-reduce answers.
        """
        if n_gpus <= 1 or bytes_per_gpu <= 0:
            return self._finish1(0.0, MEASURED, MEASURED, "no communication")
        tab = self._table("custom_allreduce", self.framework)
        ent = self.calibration.collectives.get("custom_allreduce", {}).get(self.system or "", {}).get(self.framework)
        if tab is None or ent is None or n_gpus > ent["max_n"] or n_gpus < min(int(x) for x in ent["per_n"]):
            t = self.collective("all_reduce", bytes_per_gpu, n_gpus, "nvlink")
            self.last_detail += f" (no {self.framework} custom all-reduce for {n_gpus} GPUs)"
            return t
        t, code = self._scale_up1("all_reduce", tab, ("bfloat16",), ent, float(bytes_per_gpu), int(n_gpus))
        return self._finish1(t, code, MEASURED, f"custom_allreduce {self.framework}")

    def _collective(self, op: str, nbytes: np.ndarray, n_gpus: int, link: str):
        op_n = _OPS.get(str(op).strip().lower())
        if op_n is None:
            raise UserError(f"unknown collective {op!r}; known: {', '.join(sorted(set(_OPS.values())))}", where="op")
        n = int(n_gpus)
        if n <= 1:
            return np.zeros(len(nbytes)), np.full(len(nbytes), MEASURED, np.uint8), "no communication"
        nccl = self.calibration.collectives.get("nccl", {})
        if op_n == "p2p":
            return self._p2p(nbytes, str(link).strip().lower() in _SCALE_OUT_LINKS)
        ent = nccl.get(self.system or "", {}).get(op_n)
        if str(link).strip().lower() in _SCALE_OUT_LINKS:
            alpha = self._alpha(op_n, ent, n) + IB_STEP_LATENCY_S * math.ceil(math.log2(n))
            t = alpha + nbytes * traffic_factor(op_n, n) / (IB_EFFICIENCY * self.gpu.nic_Bps)
            t = np.where(nbytes > 0, t, 0.0)
            return t, np.full(len(t), DATASHEET, np.uint8), f"scale-out α–β: {IB_EFFICIENCY:.0%} of NIC line rate"
        tab = self._table("nccl", "nccl")
        if tab is None or ent is None:
            bw = self._median_busbw_ratio(op_n) * self.peaks.link_Bps
            t = self._alpha(op_n, None, n) + nbytes * traffic_factor(op_n, n) / bw
            t = np.where(nbytes > 0, t, 0.0)
            return t, np.full(len(t), DATASHEET, np.uint8), "datasheet link bandwidth × median NCCL efficiency"
        t, code = self._scale_up(op_n, tab, (op_n,), ent, nbytes, n)
        return t, code, f"nccl {op_n}"

    def _scale_up(self, op: str, tab: OpTable, key: tuple, ent: dict, nbytes: np.ndarray, n: int):
        """Measured (n, bytes) table; α–β beyond the largest message or group (see collectives doc)."""
        per_n = ent["per_n"]
        ns = sorted(int(x) for x in per_n)
        n_max = ns[-1]
        n_tab = min(n, n_max)
        near = str(min(ns, key=lambda x: (abs(math.log2(x) - math.log2(n_tab)), x)))
        max_b = float(per_n[near]["max_bytes"])
        busbw = float(per_n[near]["busbw_Bps"])
        b_tab = np.clip(nbytes, 1.0, max_b)
        t, code = tab.predict(key, [np.full(len(nbytes), float(n_tab)), b_tab])
        over = nbytes > max_b
        if over.any():  # beyond the largest message: the asymptotic bandwidth carries on
            t = t + np.where(over, (nbytes - max_b) * traffic_factor(op, n_tab) / busbw, 0.0)
            code = np.where(over, ALPHA_BETA, code)
        if n > n_max:  # beyond the largest group: α–β difference on top of the largest measured group
            bw_max = float(per_n[str(n_max)]["busbw_Bps"])
            t = t + _alpha_growth(ent, n) + nbytes * (traffic_factor(op, n) - traffic_factor(op, n_max)) / bw_max
            code = np.full(len(t), ALPHA_BETA, np.uint8)
        t = np.where(nbytes > 0, t, 0.0)
        return t, code.astype(np.uint8)

    def _p2p(self, nbytes: np.ndarray, scale_out: bool):
        """Point-to-point send: α of a 2-GPU all-gather plus the message at the link's bandwidth."""
        ent = self.calibration.collectives.get("nccl", {}).get(self.system or "", {}).get("all_gather")
        two = ent["per_n"].get("2") if ent else None
        if scale_out:
            alpha = (two["alpha_s"] if two else self._alpha_line("all_gather", None)[0]) + IB_STEP_LATENCY_S
            t = alpha + nbytes / (IB_EFFICIENCY * self.gpu.nic_Bps)
            code, detail = DATASHEET, f"p2p over the scale-out network: {IB_EFFICIENCY:.0%} of NIC line rate"
        elif two is not None:
            t = two["alpha_s"] + nbytes / two["busbw_Bps"]
            code, detail = ALPHA_BETA, "p2p: α–β of the 2-GPU NCCL all-gather"
        else:
            a0, _ = self._alpha_line("all_gather", None)
            t = a0 + nbytes / (self._median_busbw_ratio("all_gather") * self.peaks.link_Bps)
            code, detail = DATASHEET, "p2p: datasheet link bandwidth × median NCCL efficiency"
        t = np.where(nbytes > 0, t, 0.0)
        return t, np.full(len(t), code, np.uint8), detail

    def _alpha(self, op: str, ent: dict | None, n: int) -> float:
        """α(N) of the fitted model (see :mod:`.collectives`); the median GPU's where ``ent`` is None."""
        if ent is None:
            pool = [e[op] for e in self.calibration.collectives.get("nccl", {}).values() if op in e]
            if not pool:
                return 10e-6
            ent = {
                k: float(np.median([p[k] for p in pool]))
                for k in ("alpha0_s", "alpha_per_step_s", "alpha_per_doubling_s")
            }
            ent["max_n"] = int(min(p["max_n"] for p in pool))
        n_max = int(ent["max_n"])
        base = ent["alpha0_s"] + ent["alpha_per_step_s"] * (min(n, n_max) - 1)
        return base + (_alpha_growth(ent, n) if n > n_max else 0.0)

    def _alpha_line(self, op: str, ent: dict | None) -> tuple[float, float]:
        """(α0, α per ring step) of ``ent``, or the medians over the measured GPUs."""
        if ent is not None:
            return ent["alpha0_s"], ent["alpha_per_step_s"]
        pool = [e[op] for e in self.calibration.collectives.get("nccl", {}).values() if op in e]
        if not pool:
            return 10e-6, 1e-6
        return float(np.median([p["alpha0_s"] for p in pool])), float(np.median([p["alpha_per_step_s"] for p in pool]))

    def _median_busbw_ratio(self, op: str) -> float:
        """Median over measured GPUs of (bus bandwidth at their largest group) / (datasheet link bandwidth)."""
        from simcluster.perf.calibration.condense import system_gpu

        ratios = []
        for system, ops in self.calibration.collectives.get("nccl", {}).items():
            g = system_gpu(system)
            if g is None or op not in ops:
                continue
            e = ops[op]
            ratios.append(e["per_n"][str(e["max_n"])]["busbw_Bps"] / g.nvlink_Bps)
        return float(np.median(ratios)) if ratios else 0.8


def _alpha_growth(ent: dict, n: int) -> float:
    """Extra α of a group of ``n`` beyond the largest measured one: per doubling (tree / NVLS growth)."""
    return ent.get("alpha_per_doubling_s", 0.0) * math.log2(n / ent["max_n"])


_ND = np.ndarray


def _arrays(*args) -> bool:
    for a in args:
        if a.__class__ is _ND or isinstance(a, _ND):
            return True
    return False


def _equivalent_prefill(new_tokens, past_tokens):
    """Length of a prefix-free prefill with the same causal query-key pairs as a chunk after a prefix."""
    pairs = new_tokens * (past_tokens + (new_tokens + 1) * 0.5)
    return (
        (np.sqrt(1.0 + 8.0 * pairs) - 1.0) * 0.5
        if isinstance(pairs, np.ndarray)
        else (math.sqrt(1.0 + 8.0 * pairs) - 1.0) * 0.5
    )


def _quant_of(family: str, key: tuple) -> str:
    q = FAMILIES[family].quant
    fields = FAMILIES[family].key
    return "/".join(str(key[fields.index(c)]) for c in q) if q else "all"
