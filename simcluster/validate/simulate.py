"""Simulating mapped deployments fast: shared cost models, closed-loop workloads, no output files.

:class:`Simulator` keeps one cache of op tables and step-cost models for all the rows it runs
(thousands of rows share a few hundred configurations), runs each deployment through the same
engine as ``simcluster run`` (:func:`simcluster.sim.deployment.build_pools`,
:class:`simcluster.sim.engine.Engine`) with an in-memory recorder, and turns the per-request records
into what the benchmark client measured:

* co-located: TTFT = first token − send time + the profile's request overhead (for the model's kind);
* disaggregated: the engine's first token as the framework shows it (``serving.first_token_at`` from
  the profile: vLLM and TRT-LLM after the decode worker's first step once the KV landed, SGLang when
  the KV landed) + ``handover_s`` + the request overhead; TPOT is the decode worker's time per
  token after that;
* TPOT = (E2E − TTFT) / (output tokens − 1) per request (``vllm bench serve``'s definition), means
  over completed requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from simcluster.errors import UserError
from simcluster.validate.mapping import PoolPlanSpec, Setup

# share of the prefill pool's capacity a rate-matched pool runs at, for disaggregated rows without
# worker counts [INFERRED]: 1.0 sizes it to the decode side's demand exactly. 0.8 (the usual
# planning headroom) moves the train half's figures by < 0.1 point (few rows still take this path:
# the recipes give most worker counts), so nothing in the data chooses between them.
RATE_MATCH_UTILISATION = 1.0
# sequences per attention rank a decode worker of unknown count is assumed to batch at most
# [INFERRED: the decode batch of the benchmark sweeps' disaggregated recipes]; None = no cap
DECODE_SEQS_PER_RANK_CAP: int | None = None


@dataclass(frozen=True)
class Prediction:
    ttft_ms: float
    tpot_ms: float
    requests: int
    completed: int
    sim_time_s: float
    prefill_workers: int = 0
    decode_workers: int = 0
    note: str = ""
    # benchmark-weighted means over completed requests: prompt tokens, and 1 / (output tokens - 1)
    # (what a shift of the first token moves TPOT by); the fit adds its post-run times with them
    input_tokens_mean: float = math.nan
    inv_steps_mean: float = math.nan
    # the mean TTFT (as the client sees it) of the benchmark's start-up wave and of the requests
    # after it: how much of the weighted mean comes from the burst at the start
    ttft_first_wave_ms: float = math.nan
    ttft_steady_ms: float = math.nan


class _Sink:
    """A table that keeps rows in memory (requests) or drops them (timeline)."""

    def __init__(self, keep: bool) -> None:
        self.rows: list[tuple] = []
        self.keep = keep

    def append(self, row: tuple) -> None:
        if self.keep:
            self.rows.append(row)


class _MemoryRecorder:
    def __init__(self) -> None:
        self.requests = _Sink(True)
        self.steps = None
        self.timeline = _Sink(False)

    def close(self) -> None:
        pass


# columns of the engine's request rows (simcluster.sim.engine.Engine._record)
_I_STATUS, _I_FIRST, _I_KV_END, _I_FINISH, _I_ARRIVAL, _I_N_OUT = 5, 10, 12, 13, 1, 3


def run_in_memory(scenario, workload, *, cost_cache: dict | None = None, profile=None):
    """Run ``scenario`` on ``workload`` without writing files: (request rows, engine, run stats).

    The rows are the engine's request records (``requests.parquet`` columns, in the engine's order).
    """
    from simcluster.sim.deployment import build_pools
    from simcluster.sim.engine import Engine

    if len(workload) == 0:
        raise UserError("the workload has no requests", where="workload")
    plans = build_pools(scenario, cost_cache=cost_cache, profile=profile)
    rec = _MemoryRecorder()
    engine = Engine(scenario, workload, plans, rec)
    stats = engine.run()
    return rec.requests.rows, engine, stats


def closed_loop_workload(n_requests: int, isl: int, osl: int, range_ratio: float = 1.0, seed: int = 0,
                         output_jitter: float = 0.0):
    """``n_requests`` requests all due at 0: with ``clients.max_concurrency`` = C they are sent as the
    C clients free up (a closed loop). ``range_ratio`` < 1 draws each length uniformly from
    ``[range_ratio × L, L]`` (the random dataset of ``benchmark_serving.py --random-range-ratio``)."""
    from simcluster.workload.workload import Workload

    n = max(1, int(n_requests))
    if range_ratio >= 1.0:
        i = np.full(n, int(isl))
        o = np.full(n, int(osl))
        if output_jitter > 0:  # a few tokens either way: completions of one wave spread over steps
            rng = np.random.Generator(np.random.PCG64(seed))
            lo = max(1, int(round(osl * (1.0 - output_jitter))))
            o = rng.integers(lo, int(osl) + 1, size=n)
    else:
        rng = np.random.Generator(np.random.PCG64(seed))
        i = rng.integers(max(1, int(isl * range_ratio)), int(isl) + 1, size=n)
        o = rng.integers(max(1, int(osl * range_ratio)), int(osl) + 1, size=n)
    return Workload(np.zeros(n), i, o, source=f"closed loop: {n} requests of {isl}/{osl} tokens"
                    + (f", range ratio {range_ratio}" if range_ratio < 1.0 else ""))


def scenario_dict(setup: Setup, pools: dict[str, PoolPlanSpec], *, seed: int = 0, profile=None) -> dict:
    """The scenario of a setup (with every pool's instance count resolved). ``profile`` (default: the
    setup's) sets the framework's KV admission and, disaggregated, when the first token is shown."""
    prof = profile or setup.profile
    pool_sections = {}
    for role, p in pools.items():
        pool_sections[role] = {
            "instances": int(p.instances or 1), "layout": p.layout, "max_num_seqs": int(p.max_num_seqs),
            "max_num_batched_tokens": int(p.max_num_batched_tokens), "chunked_prefill": bool(p.chunked_prefill),
            "max_queue": 10**9,
        }
        if p.adp_balance is not None:
            pool_sections[role]["attention_dp_balance"] = dict(p.adp_balance)
        if p.batch_wait is not None:
            pool_sections[role]["batch_wait"] = dict(p.batch_wait)
        if p.memory is not None:
            pool_sections[role]["memory"] = dict(p.memory)
        if p.moe_a2a != "default":
            pool_sections[role]["moe_a2a"] = p.moe_a2a
    serving = {"framework": setup.framework, "mode": setup.mode, "prefix_caching": False,
               "router": "least_outstanding", "framework_profile": True,
               "kv_admission": prof.kv_admission, "first_token_at": prof.first_token_at}
    return {
        "name": f"silicon:{setup.row.id}",
        "seed": seed,
        "cluster": {"gpu": setup.gpu, "allow_cross_domain": True},
        "model": {"name": setup.model, "weights": setup.weights, "kv_cache": setup.kv_cache, "activations": "bf16"},
        "serving": serving,
        "pools": pool_sections,
        "cost": {"source": "calibrated"},
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate_per_s": 1.0},
                     "input_tokens": {"dist": "fixed", "value": setup.row.isl},
                     "output_tokens": {"dist": "fixed", "value": setup.row.osl}},
        "clients": {"max_concurrency": int(setup.concurrency)},
        "output": {"steps": False, "timeline_interval_s": 1e9},
    }


class Simulator:
    """Runs :class:`Setup` objects; one instance shares its cost models across every run.

    A benchmark of C clients × P (``benchmark_prompts_per_client``) requests has a start-up wave (the
    first C, sent at once), a steady state, and a drain: the last C requests, in flight when the last
    one is sent, finish while the batch empties. The simulation runs ``simulated_waves`` × C requests
    (at most ``max_requests``, at least 2 C + ``min_steady_requests``) and weights them like the
    benchmark: the start-up wave once each, the simulation's own drain (requests still running when
    its last request arrived) C in total, the requests between them (P − 2) × C in total. The drain
    runs at ever smaller batches, so counting it as steady state understates TPOT and TTFT under
    load; so does a run too short to have a steady state at all.
    """

    def __init__(self, *, benchmark_prompts_per_client: int = 10, simulated_waves: int = 3,
                 max_requests: int = 50_000, min_steady_requests: int = 32, range_ratio: float | None = None,
                 profiles: dict | None = None, seed: int = 0, framework_profile: bool = True,
                 output_jitter: float = 0.0) -> None:
        self.framework_profile = framework_profile
        self.output_jitter = output_jitter
        self.benchmark_prompts_per_client = benchmark_prompts_per_client
        self.simulated_waves = simulated_waves
        self.max_requests = max_requests
        self.min_steady_requests = min_steady_requests
        self.range_ratio = range_ratio
        self.profiles = profiles or {}
        self.seed = seed
        self.cache: dict = {}

    # ------------------------------------------------------------------ building
    def _profile(self, setup: Setup):
        """The framework's profile (``profiles`` replace the defaults) with the row's speculative
        decoding."""
        prof = self.profiles.get(setup.framework) or setup.profile
        if setup.spec_tokens != prof.spec_draft_tokens:
            prof = prof.with_(spec_draft_tokens=setup.spec_tokens)
        return prof

    def _range_ratio(self, setup: Setup) -> float:
        return setup.range_ratio if self.range_ratio is None else self.range_ratio

    def _plans(self, setup: Setup, pools: dict[str, PoolPlanSpec]):
        from simcluster.config.scenario import Scenario
        from simcluster.sim.deployment import build_pools

        data = scenario_dict(setup, pools, seed=self.seed, profile=self._profile(setup))
        data["serving"]["framework_profile"] = self.framework_profile
        if not self.framework_profile:  # the engine's defaults
            data["serving"].pop("kv_admission")
            data["serving"].pop("first_token_at")
        sc = Scenario.model_validate(data)
        return sc, build_pools(sc, cost_cache=self.cache,
                               profile=self._profile(setup) if self.framework_profile else None)

    def resolve_pools(self, setup: Setup) -> dict[str, PoolPlanSpec]:
        """Fill in missing worker counts (disaggregated rows): KV-fitting decode, rate-matched prefill."""
        pools = dict(setup.pools)
        if setup.mode != "disaggregated" or all(p.instances for p in pools.values()):
            return pools
        from simcluster.perf.interface import BatchShape

        row = setup.row
        probe = {r: replace(p, instances=p.instances or 1) for r, p in pools.items()}
        _, plans = self._plans(setup, probe)
        pre_plan = next(p for p in plans if p.role == "prefill")
        dec_plan = next(p for p in plans if p.role == "decode")
        conc = setup.concurrency
        n_dec = pools["decode"].instances
        if not n_dec:
            need = conc * (row.isl + row.osl)
            n_dec = max(1, math.ceil(need / max(dec_plan.kv_capacity_tokens * 0.95, 1.0)))
            if DECODE_SEQS_PER_RANK_CAP:
                from simcluster.perf.layout import Layout

                ranks = Layout.parse(pools["decode"].layout).dp
                n_dec = max(n_dec, math.ceil(conc / (DECODE_SEQS_PER_RANK_CAP * ranks)))
            pools["decode"] = replace(pools["decode"], instances=n_dec)
        if not pools["prefill"].instances:
            b = max(1, -(-conc // n_dec))
            ctx = b * (row.isl + row.osl / 2.0)
            step = float(np.mean(dec_plan.cost.decode_run(b, int(ctx), 1)))
            decode_rps = n_dec * b / max(row.osl * step, 1e-9)
            budget = max(pools["prefill"].max_num_batched_tokens, row.isl)
            k = max(1, budget // row.isl)
            pairs = k * row.isl * (row.isl + 1) / 2.0
            t = pre_plan.cost.step(BatchShape(k * row.isl, k, pairs, 0)).latency_s
            per_req = t / k
            n_pre = max(1, math.ceil(decode_rps * per_req / RATE_MATCH_UTILISATION))
            pools["prefill"] = replace(pools["prefill"], instances=n_pre)
        return pools

    # ------------------------------------------------------------------ running
    def n_requests(self, concurrency: int) -> int:
        c = int(concurrency)
        n = c * self.simulated_waves
        n = min(n, max(self.max_requests, 2 * c + self.min_steady_requests))
        return max(n, 2 * c + self.min_steady_requests)

    def _simulate(self, setup: Setup):
        from simcluster.sim.engine import Engine

        row = setup.row
        pools = self.resolve_pools(setup)
        # the KV pool is what the GPU memory holds beside the weights, at the recipe's memory share
        # where its launch script sets one (else the framework's default): a deployment whose pool
        # cannot hold every client's sequence queues, as the measured ones do
        sc, plans = self._plans(setup, pools)
        n = self.n_requests(setup.concurrency)
        workload = closed_loop_workload(n, row.isl, row.osl, self._range_ratio(setup), seed=self.seed,
                                        output_jitter=self.output_jitter)
        rec = _MemoryRecorder()
        engine = Engine(sc, workload, plans, rec)
        stats = engine.run()
        return rec.requests.rows, stats.sim_time_s, pools

    def run(self, setup: Setup) -> Prediction:
        rows, sim_time, pools = self._simulate(setup)
        return self._metrics(setup, rows, sim_time, pools)

    def timeline(self, setup: Setup) -> tuple[list[dict], Prediction]:
        """The simulated requests of one row as the benchmark's client sees them, and the row's
        prediction from the same run. Requests in request order:
        ``request, arrival_s, first_token_s, finish_s, input_tokens, output_tokens, ttft_ms, tpot_ms``
        (with the framework profile's request overheads, as the prediction takes them), ``part``
        (``start-up`` wave, ``steady`` state or ``drain``) and ``weight`` (the request's weight in the
        prediction's means; TPOT skips single-token requests). Requests that did not complete are
        listed with their status and no times."""
        rows, sim_time, pools = self._simulate(setup)
        per = self._per_request(setup, rows)
        out = []
        done = {}
        if per is not None:
            for i, rid in enumerate(per["rid"]):
                done[int(rid)] = i
        for r in sorted(rows, key=lambda x: x[0]):
            i = done.get(int(r[0]))
            if i is None:
                out.append({"request": int(r[0]), "status": r[_I_STATUS]})
                continue
            part = "start-up" if per["first_wave"][i] else ("drain" if per["drain"][i] else "steady")
            out.append({"request": int(r[0]), "status": "completed", "arrival_s": float(per["arrival"][i]),
                        "first_token_s": float(per["first"][i]), "finish_s": float(per["finish"][i]),
                        "input_tokens": int(per["n_in"][i]), "output_tokens": int(per["n_out"][i]),
                        "ttft_ms": float(per["ttft"][i]) * 1e3,
                        "tpot_ms": float(per["tpot"][i]) * 1e3 if per["n_out"][i] > 1 else math.nan,
                        "part": part, "weight": float(per["w"][i])})
        return out, self._metrics(setup, rows, sim_time, pools, per)

    def _per_request(self, setup: Setup, rows: list[tuple]) -> dict | None:
        """Per completed request: times as the client sees them, the benchmark's parts and weights."""
        prof = self._profile(setup)
        ok = [r for r in rows if r[_I_STATUS] == "completed"]
        if not ok:
            return None
        a = np.array([(r[0], r[_I_ARRIVAL], r[_I_FIRST], r[_I_KV_END], r[_I_FINISH], r[_I_N_OUT], r[2]) for r in ok],
                     dtype=float)
        rid, arrival, first, kv_end, finish, n_out, n_in = a.T
        steps = np.maximum(n_out - 1, 1)
        if not self.framework_profile:  # the engine's own view
            ttft = first - arrival
            tpot = (finish - first) / steps
        elif setup.mode == "disaggregated":  # the engine's first token as the framework shows it
            first_client = np.minimum(first + prof.handover_s, finish)
        else:
            first_client = first
        if self.framework_profile:
            from simcluster.catalog.models import get_model
            from simcluster.perf.framework import model_kind

            overhead = prof.request_overhead(model_kind(get_model(setup.model)))
            ttft = first_client - arrival + overhead + prof.request_overhead_per_input_token_s * n_in
            tpot = (finish - first_client) / steps
            if setup.recv_interval > 1:
                # SGLang polls for new requests every N scheduler iterations: a request waits for
                # (N - 1) / 2 of them on average before it is scheduled at all
                from simcluster.perf.framework import mtp_acceptance_length

                it = float(np.mean(tpot)) * mtp_acceptance_length(setup.spec_tokens)
                ttft = ttft + (setup.recv_interval - 1) / 2.0 * it
        # benchmark weighting: the start-up wave once each, the drain C in total, the steady state
        # (requests after the start-up wave that finished before the last request arrived) the rest
        c = setup.concurrency
        first_wave = rid < c
        w = np.ones(len(rid))
        later = ~first_wave
        drain = later & (finish > arrival.max())
        steady = later & ~drain
        n_drain, n_steady = int(drain.sum()), int(steady.sum())
        prompts = self.benchmark_prompts_per_client
        if n_steady and prompts > 2:
            w[steady] = (prompts - 2) * c / n_steady
            if n_drain:
                w[drain] = c / n_drain
        elif later.any():  # no steady state simulated: everything after the start-up wave stands for it
            steady = later
            n_steady = int(later.sum())
            w[later] = (prompts - 1) * c / n_steady
        return {"rid": rid, "arrival": arrival, "first": first_client if self.framework_profile else first,
                "finish": finish, "n_in": n_in, "n_out": n_out, "steps": steps, "ttft": ttft, "tpot": tpot,
                "first_wave": first_wave, "steady": steady, "drain": drain & ~steady, "w": w,
                "n_steady": n_steady}

    def _metrics(self, setup: Setup, rows: list[tuple], sim_time: float, pools, per: dict | None = None) -> Prediction:
        n_pre = int(pools["prefill"].instances) if "prefill" in pools else 0
        n_dec = int(pools["decode"].instances) if "decode" in pools else 0
        if per is None:
            per = self._per_request(setup, rows)
        if per is None:
            return Prediction(math.nan, math.nan, len(rows), 0, sim_time, n_pre, n_dec, "no request completed")
        n_ok = len(per["rid"])
        ttft, tpot, w, steps, n_in, n_out = per["ttft"], per["tpot"], per["w"], per["steps"], per["n_in"], per["n_out"]
        first_wave, steady, n_steady = per["first_wave"], per["steady"], per["n_steady"]
        multi = n_out > 1
        ttft_ms = float(np.average(ttft, weights=w)) * 1e3
        tpot_ms = float(np.average(tpot[multi], weights=w[multi])) * 1e3 if multi.any() else math.nan
        in_mean = float(np.average(n_in, weights=w))
        inv_steps = float(np.average(1.0 / steps[multi], weights=w[multi])) if multi.any() else math.nan
        first_ms = float(np.mean(ttft[first_wave])) * 1e3 if first_wave.any() else math.nan
        steady_ms = float(np.mean(ttft[steady])) * 1e3 if n_steady else math.nan
        return Prediction(ttft_ms, tpot_ms, len(rows), n_ok, sim_time, n_pre, n_dec,
                          input_tokens_mean=in_mean, inv_steps_mean=inv_steps,
                          ttft_first_wave_ms=first_ms, ttft_steady_ms=steady_ms)
