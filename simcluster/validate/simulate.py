"""Simulating mapped deployments fast: shared cost models, closed-loop workloads, no output files.

:class:`Simulator` keeps one cache of op tables and step-cost models for all the rows it runs
(thousands of rows share a few hundred configurations), runs each deployment through the same
engine as ``simcluster run`` (:func:`simcluster.sim.deployment.build_pools`,
:class:`simcluster.sim.engine.Engine`) with an in-memory recorder, and turns the per-request records
into what the benchmark client measured:

* co-located: TTFT = first token − send time + the profile's ``request_overhead_s``;
* disaggregated: the decode worker streams the first token, so TTFT = KV landed − send time +
  ``handover_s`` + one decode step of that request + ``request_overhead_s``; TPOT is the decode
  worker's time per token after that;
* TPOT = (E2E − TTFT) / (output tokens − 1) per request (``vllm bench serve``'s definition), means
  over completed requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from simcluster.errors import UserError
from simcluster.validate.mapping import PoolPlanSpec, Setup

# share of the prefill pool's capacity a rate-matched pool runs at [INFERRED: deployments are sized
# with headroom; 0.8 is the usual planning target]
RATE_MATCH_UTILISATION = 0.8


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


def closed_loop_workload(n_requests: int, isl: int, osl: int):
    """``n_requests`` requests all due at 0: with ``clients.max_concurrency`` = C they are sent as the
    C clients free up (a closed loop)."""
    from simcluster.workload.workload import Workload

    n = max(1, int(n_requests))
    return Workload(np.zeros(n), np.full(n, int(isl)), np.full(n, int(osl)),
                    source=f"closed loop: {n} requests of {isl}/{osl} tokens")


def scenario_dict(setup: Setup, pools: dict[str, PoolPlanSpec], *, seed: int = 0) -> dict:
    """The scenario of a setup (with every pool's instance count resolved)."""
    pool_sections = {}
    for role, p in pools.items():
        pool_sections[role] = {
            "instances": int(p.instances or 1), "layout": p.layout, "max_num_seqs": int(p.max_num_seqs),
            "max_num_batched_tokens": int(p.max_num_batched_tokens), "chunked_prefill": bool(p.chunked_prefill),
            "max_queue": 10**9,
        }
    return {
        "name": f"silicon:{setup.row.id}",
        "seed": seed,
        "cluster": {"gpu": setup.gpu, "allow_cross_domain": True},
        "model": {"name": setup.model, "weights": setup.weights, "kv_cache": setup.kv_cache, "activations": "bf16"},
        "serving": {"framework": setup.framework, "mode": setup.mode, "prefix_caching": False,
                    "router": "least_outstanding", "framework_profile": True},
        "pools": pool_sections,
        "cost": {"source": "calibrated"},
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate_per_s": 1.0},
                     "input_tokens": {"dist": "fixed", "value": setup.row.isl},
                     "output_tokens": {"dist": "fixed", "value": setup.row.osl}},
        "clients": {"max_concurrency": int(setup.concurrency)},
        "output": {"steps": False},
    }


class Simulator:
    """Runs :class:`Setup` objects; one instance shares its cost models across every run."""

    def __init__(self, prompts_per_client: int = 10, max_requests: int = 20000, min_requests: int = 64,
                 profiles: dict | None = None) -> None:
        self.prompts_per_client = prompts_per_client
        self.max_requests = max_requests
        self.min_requests = min_requests
        self.profiles = profiles or {}
        self.cache: dict = {}

    # ------------------------------------------------------------------ building
    def _profile(self, setup: Setup):
        return self.profiles.get(setup.framework) or setup.profile

    def _plans(self, setup: Setup, pools: dict[str, PoolPlanSpec]):
        from simcluster.config.scenario import Scenario
        from simcluster.sim.deployment import build_pools

        sc = Scenario.model_validate(scenario_dict(setup, pools))
        return sc, build_pools(sc, cost_cache=self.cache, profile=self._profile(setup))

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
    def run(self, setup: Setup) -> Prediction:
        from simcluster.sim.engine import Engine

        row = setup.row
        pools = self.resolve_pools(setup)
        sc, plans = self._plans(setup, pools)
        n = setup.concurrency * self.prompts_per_client
        n = int(min(max(n, self.min_requests, setup.concurrency), max(self.max_requests, setup.concurrency)))
        workload = closed_loop_workload(n, row.isl, row.osl)
        rec = _MemoryRecorder()
        engine = Engine(sc, workload, plans, rec)
        stats = engine.run()
        return self._metrics(setup, rec.requests.rows, stats.sim_time_s, pools)

    def _metrics(self, setup: Setup, rows: list[tuple], sim_time: float, pools) -> Prediction:
        prof = self._profile(setup)
        ok = [r for r in rows if r[_I_STATUS] == "completed"]
        n_pre = int(pools["prefill"].instances) if "prefill" in pools else 0
        n_dec = int(pools["decode"].instances) if "decode" in pools else 0
        if not ok:
            return Prediction(math.nan, math.nan, len(rows), 0, sim_time, n_pre, n_dec, "no request completed")
        a = np.array([(r[_I_ARRIVAL], r[_I_FIRST], r[_I_KV_END], r[_I_FINISH], r[_I_N_OUT]) for r in ok], dtype=float)
        arrival, first, kv_end, finish, n_out = a.T
        steps = np.maximum(n_out - 1, 1)
        if setup.mode == "disaggregated":
            decode_tpot = (finish - kv_end) / steps
            first_client = kv_end + prof.handover_s + decode_tpot
            first_client = np.minimum(first_client, finish)
        else:
            first_client = first
        ttft = first_client - arrival + prof.request_overhead_s
        tpot = np.where(n_out > 1, (finish - first_client) / steps, np.nan)
        return Prediction(float(np.mean(ttft)) * 1e3, float(np.nanmean(tpot)) * 1e3 if np.any(n_out > 1) else math.nan,
                          len(rows), len(ok), sim_time, n_pre, n_dec)
