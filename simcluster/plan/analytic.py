"""The analytic steady-state evaluation of a design point (the sweep's fast path).

No simulation: each point is a handful of latency-table lookups (``perf``), so a core evaluates
thousands of points per second. Latency tables are built once per (GPU, model, formats, layout,
framework, knobs) and reused by every batch size and traffic pattern of that configuration.

Per mode (``docs/planning.md`` has the derivations):

* **decode** — one decode instance of ``G`` GPUs running ``B`` sequences (per micro-batch) at a
  context of ``ISL + OSL/2`` tokens each (or the spec's ``context_tokens``):
  ``TTL = step(B decodes).latency``; tokens/s/user ``= 1/TTL``; tokens/s/GPU ``= B·pp/(TTL·G)``
  (``pp`` micro-batches in flight [INFERRED]). The KV of ``B·pp`` sequences at their longest
  (``ISL + OSL``, or the context given) must fit the memory plan.
* **prefill** (a part of disaggregated points) — ``B_p`` prompts of ``ISL`` tokens in one step:
  ``FTL = step(prefill of B_p × ISL).latency``; ``p = B_p·pp/(FTL·G_p)`` requests/s/GPU. FTL above
  the limit (10 s) excludes the configuration; the KV of ``B_p·pp`` prompts must fit.
* **disaggregated** — decode as above, prefill the best candidate (``select: best``) or the point's
  own; rate matched (:mod:`simcluster.plan.ratematch`) or at a fixed ctx:gen GPU ratio.
* **colocated** — piggybacked chunked prefill (Sarathi-style) in steady state, under a token
  budget ``T`` per step: every step runs the ``B`` decodes, and ``room = T − B`` tokens are left for
  prompt chunks. Keeping ``B`` requests in flight needs ``C̄ = B·ISL/(OSL − 1)`` prompt tokens per
  step on average (a request decodes for ``OSL − 1`` steps). A prompt is prefilled as soon as it
  is admitted, in chunks of ``s = room`` tokens (``room < ISL``; mean past ``(ISL − s)/2``) or whole
  (``s = ISL``; several prompts, ``s = C̄``, when ``C̄ > ISL``); a share ``f = C̄/s`` of the steps
  carries a chunk. ``t_mix = step(B decodes + chunk)``, ``t_dec = step(B decodes)``;
  ``TPOT = f·t_mix + (1 − f)·t_dec`` (tokens/s/user = 1/TPOT; ``tbt_max_s`` = ``t_mix``, the stall
  a decode sees in a chunked step); ``FTL = ⌈ISL/s⌉·t_mix``; tokens/s/GPU ``= B·pp/(TPOT·G)``
  [INFERRED]. ``C̄ > room`` means the budget cannot sustain ``B`` (invalid). The KV of ``B·pp``
  sequences at ``ISL + OSL`` plus the prompt in prefill must fit. For MLA models every chunk
  re-reads and up-projects the past latent (perf), the co-location penalty of Beyond the Buzz.

Every point returns a row (:data:`METRICS`) whose ``status`` is ``ok``, ``invalid`` (does not fit:
layout, NVLink domain, weights, KV), ``excluded`` (FTL over the limit) or ``error`` (an unexpected
exception: the message is kept and the sweep goes on).
"""

from __future__ import annotations

import functools
import math
import traceback
from collections import OrderedDict
from typing import Any

from simcluster.errors import UserError
from simcluster.perf.interface import BatchShape
from simcluster.plan import ratematch
from simcluster.plan.space import PARAMS, RATE_MATCHED

# Result columns of a point, after the parameters (see docs/planning.md for units).
METRICS = (
    "point_id", "status", "reason", "error",
    "layout_label", "layout_kind", "tp", "pp", "ep", "dp", "kvp", "tpa", "tpf", "tpo", "gpus_per_instance",
    "prefill_layout_used", "prefill_label", "prefill_batch_used", "prefill_kind", "prefill_tp", "prefill_pp",
    "prefill_ep",
    "prefill_dp", "prefill_kvp", "prefill_gpus_per_instance",
    "gpus", "n_prefill", "n_decode", "ctx_gen_ratio", "ratio_error",
    "ttl_s", "ftl_s", "ttft_s", "tpot_s", "e2e_s",
    "tokens_per_s_per_gpu", "tokens_per_s_per_user", "decode_tokens_per_s_per_gpu",
    "prefill_requests_per_s_per_gpu", "decode_requests_per_s_per_gpu", "requests_per_s",
    "concurrency", "context_tokens_used", "chunk_tokens", "prefill_step_fraction", "tbt_max_s",
    "kv_capacity_tokens", "kv_tokens_needed", "weight_gb_per_gpu",
    "kv_transfer_GBps_per_prefill_gpu", "kv_transfer_GBps_per_decode_gpu",
    "price_per_gpu_hour", "usd_per_million_tokens",
)
_INT_METRICS = {"tp", "pp", "ep", "dp", "kvp", "tpa", "tpf", "tpo", "gpus_per_instance", "prefill_batch_used",
                "prefill_tp", "prefill_pp", "prefill_ep", "prefill_dp", "prefill_kvp", "prefill_gpus_per_instance",
                "gpus", "n_prefill", "n_decode", "concurrency", "kv_capacity_tokens", "kv_tokens_needed"}
_STR_METRICS = {"point_id", "status", "reason", "error", "layout_label", "layout_kind", "prefill_layout_used",
                "prefill_label", "prefill_kind"}


class Invalid(Exception):
    """The point cannot run: ``status`` (invalid | excluded) and the reason."""

    def __init__(self, reason: str, status: str = "invalid") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Config:
    """One built configuration: cost model, memory plan and resolved layout (or why it cannot run)."""

    __slots__ = ("cost", "mem", "layout", "model", "gpu", "kv_bytes_per_token", "error")

    def __init__(self, cost=None, mem=None, layout=None, model=None, gpu=None, kv_bytes_per_token=0.0,
                 error: str | None = None):
        self.cost, self.mem, self.layout, self.model, self.gpu = cost, mem, layout, model, gpu
        self.kv_bytes_per_token = kv_bytes_per_token
        self.error = error


class Evaluator:
    """Evaluates design points; keeps the latency tables of recent configurations (LRU).

    ``settings`` is :func:`simcluster.plan.space.spec_settings` of the spec (prefill candidates,
    search bounds). One evaluator per process: its caches are not shared and it is not picklable
    (calibrated op models are not).
    """

    def __init__(self, settings: dict | None = None, cache_size: int = 24) -> None:
        s = settings or {}
        self.prefill_layouts: list[str] = list(s.get("prefill_layouts", []))
        self.prefill_batches: list[int] = list(s.get("prefill_batches", []))
        self.max_instances: int = int(s.get("max_instances", 512))
        self.allow_cross_domain: bool = bool(s.get("allow_cross_domain", False))
        self._configs: OrderedDict[tuple, _Config] = OrderedDict()
        self._cache_size = cache_size
        self._ops: dict[tuple, Any] = {}
        self._best_prefill: dict[tuple, tuple] = {}
        self.tables_built = 0

    # ------------------------------------------------------------------ configurations
    def _ops_for(self, gpu: str, framework: str):
        key = (gpu, framework)
        if key not in self._ops:
            from simcluster.perf.calibration.ops import CalibratedOps

            self._ops[key] = CalibratedOps(gpu, framework=framework)  # one per (gpu, framework): shared tables
        return self._ops[key]

    def config(self, p: dict, layout: str) -> _Config:
        """The configuration of point ``p`` with ``layout`` (built once, then from the cache)."""
        key = (p["gpu"], p["nvlink_domain_size"], p["model"], p["weights"], p["kv"], p["activations"],
               p["framework"], p["cost"], p["kv_eviction_budget"], p["resmoe_keep"], p["hop_b"],
               p["exchange_model"], p["a2a_payload"], p["gpu_memory_utilization"], layout)
        cfg = self._configs.get(key)
        if cfg is not None:
            self._configs.move_to_end(key)
            return cfg
        cfg = self._build(p, layout)
        self._configs[key] = cfg
        if len(self._configs) > self._cache_size:
            self._configs.popitem(last=False)
        return cfg

    def _build(self, p: dict, layout: str) -> _Config:
        from simcluster.catalog.formats import get_format
        from simcluster.catalog.gpus import get_gpu
        from simcluster.catalog.models import get_model
        from simcluster.perf.layout import Layout
        from simcluster.perf.step_cost import CostSpec, build_step_cost

        try:
            gpu = get_gpu(p["gpu"], field="gpu")
            model = get_model(p["model"], field="model")
        except UserError as exc:
            return _Config(error=str(exc))
        try:
            lay = Layout.parse(layout, field="layout")
        except UserError as exc:
            return _Config(error=f"layout {layout}: {exc}")
        domain = p["nvlink_domain_size"] or gpu.nvlink_domain_size
        try:
            lay.validate(model, domain_size=domain, allow_cross_domain=self.allow_cross_domain, field=None)
        except UserError as exc:
            return _Config(error=f"layout {layout_short(lay)}: {exc}")
        try:
            ops = None
            if p["cost"] == "calibrated":
                ops = self._ops_for(gpu.name, p["framework"])
            spec = CostSpec(gpu, model, p["weights"], p["kv"], p["activations"], lay, framework=p["framework"],
                            hop_b=bool(p["hop_b"]), kv_eviction_budget=p["kv_eviction_budget"],
                            resmoe_keep=float(p["resmoe_keep"]), a2a_payload=p["a2a_payload"],
                            sol=p["cost"] == "sol", ops=ops, exchange_model=p["exchange_model"],
                            nvlink_domain_size=domain)
            cost = build_step_cost(spec)
            self.tables_built += 1
        except UserError as exc:
            return _Config(error=f"configuration ({layout_short(lay)}): {exc}")
        try:
            mem = cost.memory(gpu_memory_utilization=p["gpu_memory_utilization"])
        except UserError as exc:
            return _Config(error=f"does not fit ({layout_short(lay)}): {exc}")
        kv_b = model.kv_bytes_per_token(get_format(p["kv"]).bytes_per_element)
        return _Config(cost, mem, lay, model, gpu, kv_b)

    # ------------------------------------------------------------------ phases
    def decode_metrics(self, p: dict, layout: str, batch: int, context: float, kv_len: int) -> dict:
        """TTL and throughput of a decode instance (raises :class:`Invalid`)."""
        cfg = self.config(p, layout)
        if cfg.error:
            raise Invalid(cfg.error)
        lay, mem = cfg.layout, cfg.mem
        kv_len = _kv_len(kv_len, p["kv_eviction_budget"])
        seqs = batch * lay.pp
        need = seqs * kv_len
        if need > mem.kv_capacity_tokens:
            raise Invalid(f"KV cache: {seqs} sequences × {kv_len:,} tokens = {need:,} tokens > capacity "
                          f"{mem.kv_capacity_tokens:,} of {layout_short(lay)}")
        ttl = cfg.cost.step(BatchShape(decode_seqs=batch, decode_context_tokens=int(round(batch * context)))).latency_s
        return {"cfg": cfg, "ttl_s": ttl, "seqs": seqs, "need": need,
                "tps_gpu": ratematch.decode_tokens_per_s_per_gpu(batch, ttl, lay.gpus, lay.pp)}

    def prefill_metrics(self, p: dict, layout: str, batch: int) -> dict:
        """FTL and requests/s/GPU of a prefill instance (raises :class:`Invalid`)."""
        cfg = self.config(p, layout)
        if cfg.error:
            raise Invalid(f"prefill {cfg.error}")
        lay, mem, isl = cfg.layout, cfg.mem, p["isl"]
        need = batch * lay.pp * _kv_len(isl, p["kv_eviction_budget"])
        if need > mem.kv_capacity_tokens:
            raise Invalid(f"prefill KV cache: {batch * lay.pp} prompts × {isl:,} tokens > capacity "
                          f"{mem.kv_capacity_tokens:,} of {layout_short(lay)}")
        ftl = cfg.cost.step(BatchShape(prefill_tokens=batch * isl, prefill_seqs=batch,
                                       prefill_attn_pairs=batch * isl * (isl + 1) / 2.0)).latency_s
        if ftl > p["ftl_limit_s"]:
            raise Invalid(f"FTL {ftl:.3g} s > limit {p['ftl_limit_s']:g} s (prefill {layout_short(lay)}, "
                          f"batch {batch})", status="excluded")
        return {"cfg": cfg, "lay": lay, "gpu": cfg.gpu, "ftl_s": ftl,
                "p": ratematch.prefill_rate(batch, ftl, lay.gpus, lay.pp), "layout": layout, "batch": batch}

    def best_prefill(self, p: dict) -> dict:
        """The prefill candidate with the highest requests/s/GPU under the FTL limit (cached)."""
        key = (p["gpu"], p["nvlink_domain_size"], p["model"], p["weights"], p["kv"], p["activations"],
               p["framework"], p["cost"], p["kv_eviction_budget"], p["resmoe_keep"], p["hop_b"],
               p["exchange_model"], p["a2a_payload"], p["gpu_memory_utilization"], p["isl"], p["ftl_limit_s"],
               p["prefill_layout"])
        hit = self._best_prefill.get(key)
        if hit is None:
            best, why = None, []
            for lay in self.prefill_layouts:
                for b in self.prefill_batches:
                    try:
                        m = self.prefill_metrics(p, lay, b)
                    except Invalid as exc:
                        why.append(exc)
                        continue
                    if best is None or m["p"] > best["p"]:
                        best = m
            if best is None:
                excluded = [e for e in why if e.status == "excluded"]
                if excluded:
                    first = min(excluded, key=lambda e: e.reason)
                    hit = (None, Invalid(f"no prefill configuration meets the FTL limit ({first.reason}; "
                                         f"{len(why)} candidates)", status="excluded"))
                elif why:
                    hit = (None, Invalid(f"no prefill configuration fits ({why[0].reason}; {len(why)} candidates)"))
                else:
                    hit = (None, Invalid("the spec has no prefill candidates"))
            else:
                # keep the numbers, not the configuration: its latency tables must stay evictable
                hit = ({k: v for k, v in best.items() if k != "cfg"}, None)
            if len(self._best_prefill) > 4096:
                self._best_prefill.clear()
            self._best_prefill[key] = hit
        if hit[1] is not None:
            raise hit[1]
        return hit[0]

    # ------------------------------------------------------------------ points
    def evaluate(self, point: tuple, pid: str) -> dict:
        """One design point → its result row (never raises)."""
        p = dict(zip(PARAMS, point))
        row: dict[str, Any] = {"point_id": pid, "status": "ok", "reason": None, "error": None}
        try:
            mode = p["mode"]
            if mode == "decode":
                self._decode_point(p, row)
            elif mode == "disaggregated":
                self._disagg_point(p, row)
            elif mode == "colocated":
                self._colocated_point(p, row)
            else:
                raise Invalid(f"unknown mode {mode!r}")
        except Invalid as exc:
            row["status"], row["reason"] = exc.status, exc.reason
        except Exception as exc:  # noqa: BLE001 -- a failing point is a recorded fact, not a crashed sweep
            row["status"] = "error"
            row["error"] = f"{type(exc).__name__}: {exc}"
            row["reason"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
        return row

    def _layout_columns(self, row: dict, layout: str) -> None:
        cols = _layout_cols(layout)
        if cols:
            row.update(cols)

    def _common(self, p: dict, row: dict, cfg: _Config) -> None:
        row["weight_gb_per_gpu"] = cfg.mem.weight_bytes_per_gpu / 1e9
        row["kv_capacity_tokens"] = int(cfg.mem.kv_capacity_tokens)
        price = cfg.gpu.price_per_hour_usd
        row["price_per_gpu_hour"] = price
        tps = row.get("tokens_per_s_per_gpu")
        if tps:
            row["usd_per_million_tokens"] = price / 3600.0 / tps * 1e6

    def _decode_point(self, p: dict, row: dict) -> None:
        self._layout_columns(row, p["decode_layout"])
        isl, osl, b = p["isl"], p["osl"], p["decode_batch"]
        ctx = p["context_tokens"] if p["context_tokens"] is not None else isl + osl / 2.0
        kv_len = int(p["context_tokens"]) if p["context_tokens"] is not None else isl + osl
        d = self.decode_metrics(p, p["decode_layout"], b, ctx, kv_len)
        cfg = d["cfg"]
        ttl = d["ttl_s"]
        row.update(ttl_s=ttl, tpot_s=ttl, e2e_s=None, tokens_per_s_per_user=1.0 / ttl,
                   tokens_per_s_per_gpu=d["tps_gpu"], decode_tokens_per_s_per_gpu=d["tps_gpu"],
                   decode_requests_per_s_per_gpu=d["tps_gpu"] / (osl - 1), gpus=cfg.layout.gpus, n_decode=1,
                   concurrency=d["seqs"], context_tokens_used=ctx, kv_tokens_needed=d["need"])
        self._common(p, row, cfg)

    def _disagg_point(self, p: dict, row: dict) -> None:
        self._layout_columns(row, p["decode_layout"])
        isl, osl, bd = p["isl"], p["osl"], p["decode_batch"]
        d = self.decode_metrics(p, p["decode_layout"], bd, isl + osl / 2.0, isl + osl)
        cfg = d["cfg"]
        if str(p["prefill_layout"]).startswith("best-of:"):
            pre = self.best_prefill(p)
        else:
            pre = self.prefill_metrics(p, p["prefill_layout"], p["prefill_batch"])
        plc = pre["lay"]
        ttl, ftl = d["ttl_s"], pre["ftl_s"]
        lay = cfg.layout
        pr = pre["p"]
        dr = ratematch.decode_rate(bd, ttl, lay.gpus, osl, lay.pp)
        P_inst = pr * plc.gpus  # requests/s of one prefill instance
        D_inst = dr * lay.gpus
        ratio = p["ratio"]
        if ratio == RATE_MATCHED:
            r = ratematch.ctx_gen_ratio(pr, dr)
            tps = ratematch.system_tokens_per_s_per_gpu(bd, ttl, lay.gpus, r, lay.pp)
            ir = ratematch.integer_ratio(P_inst, D_inst, p["ratio_tolerance"], self.max_instances)
        else:
            r = float(ratio)
            tps = ratematch.fixed_ratio_tokens_per_s_per_gpu(pr, dr, r, osl)
            # whole instances with n_p·G_p ≈ r·n_d·G_d (GPU ratio, not rate balance)
            ir = ratematch.integer_ratio(float(plc.gpus), r * lay.gpus, p["ratio_tolerance"], self.max_instances)
        n_p, n_d = ir.n_prefill, ir.n_decode
        kv_req = cfg.kv_bytes_per_token * _kv_len(isl, p["kv_eviction_budget"])  # bytes moved per request
        row.update(
            prefill_layout_used=pre["layout"], prefill_label=_label(pre["layout"]), prefill_batch_used=pre["batch"],
            prefill_kind=plc.kind,
            prefill_tp=plc.tpa, prefill_pp=plc.pp, prefill_ep=plc.ep, prefill_dp=plc.dp, prefill_kvp=plc.kvp,
            prefill_gpus_per_instance=plc.gpus,
            gpus=n_p * plc.gpus + n_d * lay.gpus, n_prefill=n_p, n_decode=n_d, ctx_gen_ratio=r, ratio_error=ir.error,
            ttl_s=ttl, ftl_s=ftl, ttft_s=ftl, tpot_s=ttl, e2e_s=ftl + (osl - 1) * ttl,
            tokens_per_s_per_gpu=tps, tokens_per_s_per_user=1.0 / ttl, decode_tokens_per_s_per_gpu=d["tps_gpu"],
            prefill_requests_per_s_per_gpu=pr, decode_requests_per_s_per_gpu=dr,
            requests_per_s=min(n_p * P_inst, n_d * D_inst), concurrency=d["seqs"],
            context_tokens_used=isl + osl / 2.0, kv_tokens_needed=d["need"],
            kv_transfer_GBps_per_prefill_gpu=kv_req * pr / 1e9, kv_transfer_GBps_per_decode_gpu=kv_req * dr / 1e9,
        )
        self._common(p, row, cfg)

    def _colocated_point(self, p: dict, row: dict) -> None:
        layout = p["decode_layout"]
        self._layout_columns(row, layout)
        cfg = self.config(p, layout)
        if cfg.error:
            raise Invalid(cfg.error)
        lay, mem = cfg.layout, cfg.mem
        isl, osl, b, budget = p["isl"], p["osl"], p["decode_batch"], p["token_budget"]
        short = layout_short(lay)
        seqs = b * lay.pp
        need = seqs * _kv_len(isl + osl, p["kv_eviction_budget"]) + lay.pp * _kv_len(isl, p["kv_eviction_budget"])
        if need > mem.kv_capacity_tokens:
            raise Invalid(f"KV cache: {seqs} sequences × {isl + osl:,} tokens + prompts in prefill = {need:,} "
                          f"tokens > capacity {mem.kv_capacity_tokens:,} of {short}")
        room = budget - b  # prefill tokens a step can carry beside its b decodes
        if room < 1:
            raise Invalid(f"token budget {budget} leaves no room for prefill beside {b} decodes")
        mean_chunk = b * isl / (osl - 1)  # prompt tokens per step that keep b requests in flight
        if room < isl:  # prompts are sliced into chunks of `room` tokens
            chunk, chunk_seqs, past = room, 1, (isl - room) / 2.0
            chunks_per_prompt = math.ceil(isl / room)
        elif mean_chunk <= isl:  # a prefill step carries one whole prompt
            chunk, chunk_seqs, past, chunks_per_prompt = isl, 1, 0.0, 1
        else:  # every step carries about mean_chunk tokens of several whole prompts
            chunk, chunk_seqs, past, chunks_per_prompt = int(math.ceil(mean_chunk)), math.ceil(mean_chunk / isl), 0.0, 1
        if mean_chunk > room:
            raise Invalid(f"token budget {budget}: keeping {b} requests in flight needs {mean_chunk:,.0f} prompt "
                          f"tokens per step, more than the {room} beside the decodes", status="invalid")
        if chunk_seqs == 1:
            pairs = chunk * (past + (chunk + 1) / 2.0)
        else:
            pairs = chunk * (isl + 1) / 2.0
        ctx = isl + osl / 2.0
        decode_ctx = int(round(b * ctx))
        t_mix = cfg.cost.step(BatchShape(prefill_tokens=chunk, prefill_seqs=chunk_seqs, prefill_attn_pairs=pairs,
                                         prefill_past_tokens=int(round(past * chunk_seqs)), decode_seqs=b,
                                         decode_context_tokens=decode_ctx)).latency_s
        t_dec = cfg.cost.step(BatchShape(decode_seqs=b, decode_context_tokens=decode_ctx)).latency_s
        frac = min(1.0, mean_chunk / chunk)  # share of steps that carry a prefill chunk
        tpot = frac * t_mix + (1.0 - frac) * t_dec
        ftl = chunks_per_prompt * t_mix
        if ftl > p["ftl_limit_s"]:
            raise Invalid(f"FTL {ftl:.3g} s > limit {p['ftl_limit_s']:g} s ({chunks_per_prompt} chunks of {chunk} "
                          f"tokens)", status="excluded")
        tps = ratematch.decode_tokens_per_s_per_gpu(b, tpot, lay.gpus, lay.pp)
        row.update(gpus=lay.gpus, n_decode=1, n_prefill=0, ttl_s=tpot, ftl_s=ftl, ttft_s=ftl, tpot_s=tpot,
                   tbt_max_s=t_mix, prefill_step_fraction=frac,
                   e2e_s=ftl + (osl - 1) * tpot, tokens_per_s_per_gpu=tps, tokens_per_s_per_user=1.0 / tpot,
                   decode_tokens_per_s_per_gpu=tps, decode_requests_per_s_per_gpu=tps / (osl - 1),
                   requests_per_s=tps * lay.gpus / (osl - 1), concurrency=seqs, context_tokens_used=ctx,
                   chunk_tokens=chunk, kv_tokens_needed=need)
        self._common(p, row, cfg)


def _kv_len(tokens: int, budget: int | None) -> int:
    """Tokens of KV a sequence keeps: all of them, or the eviction budget."""
    return int(tokens if budget is None else min(tokens, budget))


@functools.lru_cache(maxsize=4096)
def _layout_cols(layout: str) -> dict | None:
    """The layout columns of a result row (``None`` when ``layout`` does not parse)."""
    from simcluster.perf.layout import Layout

    try:
        lay = Layout.parse(layout, field=None)
    except UserError:
        return None
    return dict(layout_label=_label(str(lay)), layout_kind=lay.kind, tp=lay.tpa, pp=lay.pp, ep=lay.ep, dp=lay.dp,
                kvp=lay.kvp, tpa=lay.tpa, tpf=lay.tpf, tpo=lay.tpo, gpus_per_instance=lay.gpus)


@functools.lru_cache(maxsize=4096)
def _label(canonical: str) -> str:
    from simcluster.plan.space import layout_label

    return layout_label(canonical)


def layout_short(lay) -> str:
    return _label(str(lay))


def evaluate_points(evaluator: Evaluator, points: list[tuple], ids: list[str]) -> list[dict]:
    return [evaluator.evaluate(pt, pid) for pt, pid in zip(points, ids)]
