"""The replay engine: one SimPy environment, one seeded generator, the cluster's instances and links.

    workload source ─▶ router ─▶ prefill / co-located instance ─▶ KV transfer (flow on links)
                                                     └─▶ decode instance ─▶ completion

Every request of the workload leaves through :meth:`Engine.finish` or :meth:`Engine.terminate`
exactly once, with a terminal status; the recorder writes its row then.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import simpy

from simcluster.errors import UserError
from simcluster.results.histogram import LogHistogram
from simcluster.sim import request as rq
from simcluster.sim.cluster import place
from simcluster.sim.instance import Instance
from simcluster.sim.kvcache import KVCache
from simcluster.sim.network import Link, Network
from simcluster.sim.request import Request
from simcluster.sim.router import Router

NAN = math.nan


@dataclass
class PoolPlan:
    """What the engine needs to build one pool: sizes, the step-cost model and memory per instance."""

    role: str
    spec: object  # config.scenario.PoolSpec
    gpus_per_instance: int
    cost: object  # perf.interface.StepCostModel
    kv_capacity_tokens: int
    kv_bytes_per_token: float  # whole model (all layers, unique shards), for KV transfer sizes
    peak_flops: float = 0.0  # per GPU, for MFU
    peak_bw: float = 0.0  # per GPU, for MBU


@dataclass
class RunStats:
    sim_time_s: float = 0.0
    wall_time_s: float = 0.0
    preemptions: int = 0
    prefix_hit_tokens: int = 0
    prefix_lookup_tokens: int = 0
    gpus: int = 0
    busy_gpu_s: float = 0.0
    flops: float = 0.0
    hbm_bytes: float = 0.0
    peak_flops_gpu_s: float = 0.0
    peak_bytes_gpu_s: float = 0.0
    kv_bytes_transferred: float = 0.0
    instances: dict = field(default_factory=dict)


class Engine:
    def __init__(self, scenario, workload, pools: list[PoolPlan], recorder, progress=None) -> None:
        self.scenario = scenario
        self.workload = workload
        self.recorder = recorder
        self.progress = progress
        self.env = simpy.Environment()
        self.network = Network(self.env)
        self.router = Router(scenario.serving.router)
        self.itl = LogHistogram()
        self.stats_preemptions = 0
        self.n_total = len(workload)
        self.n_done = 0
        self.inflight: dict[int, Request] = {}
        self.kv_bytes_transferred = 0.0
        self._next_i = 0
        self.n_sent = 0
        self.max_concurrency = scenario.clients.max_concurrency
        self._held: deque[int] = deque()  # requests due but held back by the concurrency limit
        c = scenario.cluster
        self.transfer_latency_s = c.transfer_latency_s
        self._steps = recorder.steps
        self._requests = recorder.requests

        from simcluster.catalog.gpus import get_gpu

        gpu = get_gpu(c.gpu, field="cluster.gpu")
        domain = c.nvlink_domain_size or gpu.nvlink_domain_size
        per_node = c.gpus_per_node or gpu.gpus_per_node
        total = c.nodes * per_node if c.nodes else None
        placements, self.gpus = place(
            [(p.role, p.spec.instances, p.gpus_per_instance) for p in pools], domain, total,
            c.allow_cross_domain)
        nic_Bps = (c.nic_gbps * 1e9 / 8 if c.nic_gbps else gpu.nic_Bps) * c.nic_efficiency
        nvl_Bps = gpu.nvlink_Bps * c.nvlink_efficiency
        self.pools: dict[str, list[Instance]] = {p.role: [] for p in pools}
        self.plans = {p.role: p for p in pools}
        self.links: list[Link] = []
        block = scenario.serving.block_size
        for pl in placements:
            plan = self.plans[pl.role]
            name = f"{pl.role}-{pl.index}"
            blocks = plan.kv_capacity_tokens // block
            kv = KVCache(blocks, block, workload.hash_block_tokens,
                         prefix_enabled=scenario.serving.prefix_caching and pl.role != "decode")
            inst = Instance(self, name, pl.role, plan.spec, plan.cost, kv, pl.gpus, pl.domain, pl.index)
            for kind, bw in (("nic", nic_Bps), ("nvlink", nvl_Bps)):
                for d in ("out", "in"):
                    link = Link(f"{name}.{kind}_{d}", kind, bw * pl.gpus)
                    inst.links[f"{kind}_{d}"] = link
                    self.links.append(link)
            self.pools[pl.role].append(inst)
        self.instances = [i for role in self.pools for i in self.pools[role]]
        self.entry_role = "colocated" if "colocated" in self.pools else "prefill"
        # KV blocks of one instance of each pool: a request needing more is rejected on arrival
        self.block_size = block
        self.max_blocks = [p.kv_capacity_tokens // block for p in self.plans.values()]

    # ------------------------------------------------------------------ arrivals
    def _source(self):
        env = self.env
        w = self.workload
        arr = w.arrival_s
        n_in = w.input_tokens
        n_out = w.output_tokens
        hashes = w.hash_ids
        limit = self.max_concurrency
        for i in range(len(arr)):
            t = float(arr[i])
            if t > env.now:
                yield env.timeout(t - env.now)
            self._next_i = i + 1
            if limit is not None and self.n_sent - self.n_done >= limit:
                self._held.append(i)  # the client waits for a free slot
                continue
            self._send(i, t)

    def _send(self, i: int, t: float) -> None:
        w = self.workload
        h = w.hash_ids[i] if w.hash_ids is not None else None
        self.n_sent += 1
        self.arrive(Request(i, t, int(w.input_tokens[i]), int(w.output_tokens[i]), h))

    def arrive(self, req: Request) -> None:
        # the most KV a request ever holds: prompt + all but the last output token, in whole blocks
        blocks = -(-(req.n_in + req.n_out - 1) // self.block_size)
        if any(blocks > cap for cap in self.max_blocks):
            self.terminate(req, rq.REJECTED, "too_long_for_kv_cache")
            return
        inst = self.router.pick(self.entry_role, self.pools[self.entry_role], req)
        if inst is None:
            self.terminate(req, rq.REJECTED, "queue_full")
            return
        self.inflight[req.id] = req
        inst.enqueue(req)

    # ------------------------------------------------------------------ disaggregation
    def prefill_done(self, req: Request, src: Instance) -> None:
        dst = self.router.pick("decode", self.pools["decode"], req, need_queue_room=False)
        dst.offer_transfer(req, src)

    def start_kv_transfer(self, req: Request, src: Instance, dst: Instance) -> None:
        req.kv_start = self.env.now
        size = self.plans["prefill"].kv_bytes_per_token * req.n_in
        self.kv_bytes_transferred += size
        if src.domain == dst.domain:
            path = [src.links["nvlink_out"], dst.links["nvlink_in"]]
        else:
            path = [src.links["nic_out"], dst.links["nic_in"]]
        # the fixed set-up latency is charged as bytes at the path's line rate (one event less per
        # transfer; exact when the path is uncontended)
        size_eff = size + self.transfer_latency_s * min(link.capacity_Bps for link in path)
        self.network.start(path, size_eff, lambda _flow: self._land(req, src, dst))

    def _land(self, req: Request, src: Instance, dst: Instance) -> None:
        req.kv_end = self.env.now
        src.release_after_transfer(req)
        dst.kv_landed(req)

    # ------------------------------------------------------------------ completion
    def finish(self, req: Request, t: float) -> None:
        req.finish = t
        self.inflight.pop(req.id, None)
        self._record(req, rq.COMPLETED, "")

    def terminate(self, req: Request, status: str, reason: str) -> None:
        self.inflight.pop(req.id, None)
        self._record(req, status, reason)

    def _record(self, req: Request, status: str, reason: str) -> None:
        req.status = status
        ft = req.first_token
        fin = req.finish
        ttft = ft - req.arrival
        e2e = fin - req.arrival
        tpot = (fin - ft) / (req.n_out - 1) if req.n_out > 1 and status == rq.COMPLETED else NAN
        queue = req.prefill_start - req.arrival
        self._requests.append((
            req.id, req.arrival, req.n_in, req.n_out, req.cached, status, reason,
            req.prefill_inst, req.decode_inst, req.prefill_start, ft, req.kv_start, req.kv_end, fin,
            queue, ttft, tpot, e2e, req.preemptions,
        ))
        self.n_done += 1
        if self._held:
            self._send(self._held.popleft(), self.env.now)
        if self.progress is not None and (self.n_done & 1023) == 0:
            self.progress(self.n_done, self.env.now)

    def record_step(self, inst: Instance, start: float, phase: str, n_steps: int, batch: int,
                    prefill_tokens: int, decode_tokens: int, context: int, st) -> None:
        if self._steps is not None:
            self._steps.append((start, inst.name, inst.role, phase, n_steps, batch, prefill_tokens,
                                decode_tokens, context, st.latency_s, st.weight_read_s, st.kv_read_s,
                                st.compute_s, st.comm_s, st.other_s))

    # ------------------------------------------------------------------ timeline
    def _sampler(self, interval: float):
        env = self.env
        tl = self.recorder.timeline
        while self.n_done < self.n_total:
            now = env.now
            for role, insts in self.pools.items():
                ent = f"pool:{role}"
                tl.append((now, ent, "instances_serving", float(len(insts))))
                tl.append((now, ent, "queue_depth", float(sum(i.queue_depth for i in insts))))
                tl.append((now, ent, "running", float(sum(i.num_running for i in insts))))
                used = sum(i.kv.used for i in insts)
                cap = sum(i.kv.capacity for i in insts)
                tl.append((now, ent, "kv_used_frac", used / cap if cap else 0.0))
            for kind in ("nic", "nvlink"):
                ls = [l for l in self.links if l.kind == kind]
                if ls:
                    tl.append((now, f"link:{kind}", "utilisation_mean",
                               sum(l.utilisation for l in ls) / len(ls)))
                    tl.append((now, f"link:{kind}", "utilisation_max", max(l.utilisation for l in ls)))
            tl.append((now, "cluster", "requests_in_flight", float(len(self.inflight))))
            tl.append((now, "cluster", "requests_done", float(self.n_done)))
            if env.peek() == float("inf"):
                return  # nothing else can happen: requests still in flight are stuck (reported by run)
            yield env.timeout(interval)

    # ------------------------------------------------------------------ run
    def run(self) -> RunStats:
        env = self.env
        sc = self.scenario
        interval = sc.output.timeline_interval_s
        if interval is None:
            span = float(self.workload.arrival_s[-1]) if len(self.workload) else 0.0
            interval = max(1.0, span / 2000.0)
        wall0 = time.perf_counter()
        env.process(self._source())
        env.process(self._sampler(interval))
        limit = sc.run.max_sim_time_s
        if limit is not None:
            env.run(until=limit)
        else:
            env.run()
        wall = time.perf_counter() - wall0
        if self.inflight:
            status = rq.UNFINISHED if limit is not None else rq.FAILED
            reason = "time_limit" if limit is not None else "stalled"
            for rid in sorted(self.inflight):
                self.terminate(self.inflight[rid], status, reason)
        # requests held by the client or arriving after the time limit never entered the system
        w = self.workload
        held, self._held = list(self._held), deque()
        for i in held:
            self.terminate(Request(i, float(w.arrival_s[i]), int(w.input_tokens[i]), int(w.output_tokens[i])),
                           rq.UNFINISHED, "not_sent_before_time_limit")
        for i in range(self._next_i, self.n_total):
            self.terminate(Request(i, float(w.arrival_s[i]), int(w.input_tokens[i]), int(w.output_tokens[i])),
                           rq.UNFINISHED, "arrives_after_time_limit")
        st = RunStats(sim_time_s=float(env.now), wall_time_s=wall, preemptions=self.stats_preemptions,
                      gpus=self.gpus, kv_bytes_transferred=self.kv_bytes_transferred)
        for inst in self.instances:
            plan = self.plans[inst.role]
            st.busy_gpu_s += inst.busy_time * inst.gpus
            st.flops += inst.flops
            st.hbm_bytes += inst.hbm_bytes
            st.prefix_hit_tokens += inst.kv.hits_tokens
            st.prefix_lookup_tokens += inst.kv.lookup_tokens
            st.peak_flops_gpu_s += plan.peak_flops * inst.gpus * st.sim_time_s
            st.peak_bytes_gpu_s += plan.peak_bw * inst.gpus * st.sim_time_s
            st.instances[inst.name] = {"role": inst.role, "gpus": inst.gpus, "busy_s": inst.busy_time,
                                       "kv_capacity_blocks": inst.kv.capacity}
        return st
