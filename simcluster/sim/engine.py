"""The replay engine: one SimPy environment, one seeded generator, the cluster's instances and links.

    workload source ─▶ router ─▶ prefill / co-located instance ─▶ KV transfer (flow on links)
                                                     └─▶ decode instance ─▶ completion
    control loops (sim/control.py): rate matcher, autoscaler;  fault injector (sim/faults.py)

Instances live through ``starting → serving → draining → stopped`` (or ``failed``); the router only
sees serving instances. Every request of the workload leaves through :meth:`Engine.finish` or
:meth:`Engine.terminate` exactly once, with a terminal status; the recorder writes its row then.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import simpy

from simcluster.results.histogram import LogHistogram
from simcluster.sim import request as rq
from simcluster.sim.gpupool import GPUPool
from simcluster.sim.instance import DRAINING, FAILED, SERVING, STARTING, STOPPED, Instance
from simcluster.sim.kvcache import KVCache
from simcluster.sim.collective_traffic import CollectiveTraffic, comm_fraction
from simcluster.sim.kv_transfer import KVTransfers, conversion_plan
from simcluster.sim.network import Link, Network
from simcluster.sim.request import Request
from simcluster.sim.topology import LINK_KINDS, Topology
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
    weight_bytes: float = 0.0  # whole instance, for the weight-loading time of provisioning


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
    gpu_seconds_allocated: float = 0.0  # GPUs held by instances (starting, serving, draining) × time
    elastic: bool = False  # autoscaling on: cost follows the allocated GPUs, not the whole cluster
    restarts: int = 0
    control: dict = field(default_factory=dict)


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
        self.restarts = 0
        self.n_arrived = 0  # counters a metrics scraper would see (sim/control.py)
        self.isl_arrived = 0
        self.n_completed = 0
        self.osl_completed = 0
        self.recent = None  # deque of (finish, ttft, tpot) when an SLO controller needs them
        self.handoff: dict[int, list] = {}  # request id -> [req, src, dst, flow] from prefill end to KV landed
        self.parked: deque = deque()  # prefilled requests waiting for any serving decode instance
        self._all_done = None  # fires when every request of the workload has left
        self._next_i = 0
        self.n_sent = 0
        self.max_concurrency = scenario.clients.max_concurrency
        self._held: deque[int] = deque()  # requests due but held back by the concurrency limit
        c = scenario.cluster
        self._steps = recorder.steps
        self._requests = recorder.requests

        from simcluster.catalog.gpus import get_gpu

        gpu = get_gpu(c.gpu, field="cluster.gpu")
        self.gpu_spec = gpu
        domain = c.nvlink_domain_size or gpu.nvlink_domain_size
        per_node = c.gpus_per_node or gpu.gpus_per_node
        self.topology = Topology.from_scenario(c, gpu)  # racks, NICs, fabric (sim/topology.py)
        total = self.topology.fabric.total_gpus
        self.plans = {p.role: p for p in pools}
        from simcluster.sim import control

        # rate matching may change the initial split; autoscaling sizes a cluster left unsized for its maxima
        counts = control.initial_counts(scenario, pools, workload)
        self.elastic = scenario.autoscaling.policy != "none"
        if total is None and self.elastic:
            bounds = {r: getattr(scenario.autoscaling, r).max for r in counts}
            _, total = self.topology.place(
                [(p.role, max(counts[p.role], bounds[p.role]), p.gpus_per_instance) for p in pools], None,
                c.allow_cross_domain)
        placements, self.gpus = self.topology.place(
            [(p.role, counts[p.role], p.gpus_per_instance) for p in pools], total, c.allow_cross_domain)
        self.gpupool = GPUPool(self.gpus, domain, per_node)
        self.pools: dict[str, list[Instance]] = {p.role: [] for p in pools}  # serving instances, by role
        self.all_instances: list[Instance] = []  # every instance ever started, in start order
        self.by_name: dict[str, Instance] = {}
        self._count = {p.role: 0 for p in pools}
        self.links: list[Link] = self.topology.links
        self.kv_transfers = self._kv_transfers(scenario)
        self.collectives = CollectiveTraffic(self.network, self.topology)
        self._comm_fraction: dict[str, float] = {}
        self._gpu_alloc = 0
        self._gpu_s = 0.0
        self._gpu_t = 0.0
        for pl in placements:
            ids = self.gpupool.take(pl.domain, pl.gpus)
            assert ids is not None, "placement and GPU pool agree"
            inst = self._new_instance(pl.role, ids)
            self._go_live(inst)
        self.entry_role = "colocated" if "colocated" in self.pools else "prefill"
        # KV blocks of one instance of each pool: a request needing more is rejected on arrival
        block = scenario.serving.block_size
        self.block_size = block
        self.max_blocks = [p.kv_capacity_tokens // block for p in self.plans.values()]
        from simcluster.sim import faults

        self.faults = faults.build(self)  # checks the fault targets against the cluster just built

    # ------------------------------------------------------------------ instances
    def _new_instance(self, role: str, gpu_ids: list[int]) -> Instance:
        plan = self.plans[role]
        k = self._count[role]
        self._count[role] = k + 1
        name = f"{role}-{k}"
        sv = self.scenario.serving
        kv = KVCache(plan.kv_capacity_tokens // sv.block_size, sv.block_size, self.workload.hash_block_tokens,
                     prefix_enabled=sv.prefix_caching and role != "decode")
        inst = Instance(self, name, role, plan.spec, plan.cost, kv, len(gpu_ids),
                        self.gpupool.domain_of(gpu_ids[0]), k)
        inst.gpu_ids = gpu_ids
        self._attach_links(inst)
        self.all_instances.append(inst)
        self.by_name[name] = inst
        self._gpu_change(len(gpu_ids))
        return inst

    def _attach_links(self, inst: Instance) -> None:
        """The links an instance sends and receives KV on (its NICs and NVLink ports, sim/topology.py);
        an instance spanning NVLink domains also loads its NICs with its collectives."""
        domains = sorted({self.gpupool.domain_of(g) for g in inst.gpu_ids}) or [inst.domain]
        self.topology.attach(inst, domains[0], domains[-1] - domains[0] + 1)
        if self.topology.spans_domains(inst):
            f = self._comm_fraction.get(inst.role)
            if f is None:
                plan = self.plans[inst.role]
                f = self._comm_fraction[inst.role] = comm_fraction(
                    inst.role, plan.cost, plan.spec.max_num_batched_tokens, plan.spec.max_num_seqs,
                    plan.kv_capacity_tokens)
            self.collectives.add(inst, f)

    def _kv_transfers(self, scenario) -> KVTransfers | None:
        """KV movement between the prefill and decode layouts (sim/kv_transfer.py); None if co-located."""
        if "prefill" not in self.plans or "decode" not in self.plans:
            return None
        from simcluster.catalog.models import get_model
        from simcluster.perf.layout import Layout

        model = get_model(scenario.model.name, field="model.name")
        pre, dec = self.plans["prefill"], self.plans["decode"]
        plan = conversion_plan(Layout.parse(pre.spec.layout, field="pools.prefill.layout"),
                               Layout.parse(dec.spec.layout, field="pools.decode.layout"), model)
        return KVTransfers(self, self.topology, self.network, scenario.serving.kv_transfer, plan,
                           pre.kv_bytes_per_token, model.num_layers)

    def _gpu_change(self, delta: int) -> None:
        now = self.env.now
        self._gpu_s += self._gpu_alloc * (now - self._gpu_t)
        self._gpu_t = now
        self._gpu_alloc += delta

    def provisioning_delay(self, role: str, *, allocate: bool = True, reload: bool = True) -> float:
        """Node allocation + weight loading at the storage bandwidth + warm-up (scenario.provisioning)."""
        pv = self.scenario.provisioning
        t = pv.warmup_s
        if reload:
            t += self.plans[role].weight_bytes / (pv.storage_GBps * 1e9)
        if allocate:
            t += pv.node_allocation_s
        return t

    def start_instance(self, role: str, delay: float, gpu_ids: list[int] | None = None) -> Instance | None:
        """Start an instance of ``role`` on free GPUs; it serves after ``delay``. None: no free GPUs."""
        if gpu_ids is None:
            spread = self.scenario.cluster.topology.placement == "spread"
            gpu_ids = self.gpupool.allocate(self.plans[role].gpus_per_instance,
                                            spread_by=self.topology.rack_of_domain if spread else None)
            if gpu_ids is None:
                return None
        inst = self._new_instance(role, gpu_ids)
        inst.state = STARTING
        if delay > 0:
            self.env.timeout(delay).callbacks.append(lambda _ev: self._go_live(inst))
        else:
            self._go_live(inst)
        return inst

    def _go_live(self, inst: Instance) -> None:
        if inst.state not in (STARTING, SERVING):
            return  # failed while starting
        inst.state = SERVING
        inst.serving_since = self.env.now
        self.pools[inst.role].append(inst)
        inst._touch()  # the router keys it
        if inst.role == "decode":
            while self.parked and inst.state == SERVING:
                req, src = self.parked.popleft()
                self.prefill_done(req, src)

    def drain(self, inst: Instance, then=None) -> bool:
        """Stop routing to ``inst``; it finishes what it holds, then stops (and ``then(inst)`` runs)."""
        if inst.state != SERVING:
            return False
        inst.state = DRAINING
        inst.on_drained = then
        self.pools[inst.role].remove(inst)
        inst.kick()
        return True

    def instance_drained(self, inst: Instance) -> None:
        inst.state = STOPPED
        inst.ended = self.env.now
        self.topology.detach(inst)
        self.gpupool.release(inst.gpu_ids)
        self._gpu_change(-inst.gpus)
        then, inst.on_drained = inst.on_drained, None
        if then is not None:
            then(inst)

    def fail_instance(self, inst: Instance, reason: str) -> None:
        """``inst`` dies now: its requests are rerouted or failed (failures.on_failure), its KV is lost."""
        if inst.state in (STOPPED, FAILED):
            return
        if inst.state in (SERVING,):
            self.pools[inst.role].remove(inst)
        inst.state = FAILED
        inst.ended = self.env.now
        held = inst.evacuate()
        held_ids = {r.id for r, _ in held}
        self.gpupool.release(inst.gpu_ids)  # failed GPUs stay out (GPUPool.fail)
        self._gpu_change(-inst.gpus)
        # transfers that touch it: KV leaving it is lost; KV coming to it can go elsewhere
        for rid in [rid for rid, h in self.handoff.items() if h[1] is inst or h[2] is inst]:
            req, src, dst, flow = self.handoff.pop(rid)
            if flow is not None:
                self.network.cancel(flow)
            if dst is None:
                self.parked = deque(x for x in self.parked if x[0] is not req)
            elif dst is not inst:
                dst.cancel_incoming(req, started=flow is not None)
            if src is inst:
                if req.id not in held_ids:  # (a layer-wise stream of a prompt still prefilling is in both)
                    held.append((req, req.generated if req.first_token == req.first_token else 0))
            else:  # the KV is still at the (live) source: offer it to another decode instance
                req.decode_inst = ""
                self.prefill_done(req, src)
        self.topology.detach(inst)
        for req, streamed in held:
            self._recover(req, streamed, reason)

    def _recover(self, req: Request, streamed: int, reason: str) -> None:
        fs = self.scenario.failures
        if fs.on_failure == "fail" or req.restarts >= fs.max_restarts:
            self.terminate(req, rq.FAILED, reason)
            return
        req.restarts += 1
        self.restarts += 1
        req.reset_for_retry(streamed)
        self.arrive(req, retry=True)

    # ------------------------------------------------------------------ arrivals
    def _source(self):
        env = self.env
        arr = self.workload.arrival_s
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

    def arrive(self, req: Request, retry: bool = False) -> None:
        if not retry:
            self.n_arrived += 1
            self.isl_arrived += req.n_in
            # the most KV a request ever holds: prompt + all but the last output token, in whole blocks
            blocks = -(-(req.n_in + req.n_out - 1) // self.block_size)
            if any(blocks > cap for cap in self.max_blocks):
                self.terminate(req, rq.REJECTED, "too_long_for_kv_cache")
                return
        serving = self.pools[self.entry_role]
        inst = self.router.pick(self.entry_role, serving, req)
        if inst is None:
            # a retried request was admitted once: losing it now is a failure, not a rejection
            self.terminate(req, rq.FAILED if retry else rq.REJECTED, "queue_full" if serving else "no_serving_instance")
            return
        self.inflight[req.id] = req
        inst.enqueue(req)

    # ------------------------------------------------------------------ disaggregation
    def prefill_started(self, req: Request, inst: Instance) -> None:
        """(prefill role) ``req`` begins its prefill on ``inst``: a layer-wise KV stream starts here."""
        self.kv_transfers.prefill_started(req, inst)

    def prefill_done(self, req: Request, src: Instance) -> None:
        if self.kv_transfers.prefill_finished(req, src):
            return  # a layer-wise stream already has its destination
        dst = self.router.pick("decode", self.pools["decode"], req, need_queue_room=False)
        if dst is None:  # no decode instance serving (all failed or starting): wait for one
            self.handoff[req.id] = [req, src, None, None]
            self.parked.append((req, src))
            return
        self.handoff[req.id] = [req, src, dst, None]
        dst.offer_transfer(req, src)

    def start_kv_transfer(self, req: Request, src: Instance, dst: Instance) -> None:
        """``dst`` reserved KV memory for ``req``: its KV moves on the route between the two instances
        (sizes, layout conversion, streaming: sim/kv_transfer.py); ``_land`` runs when it arrived."""
        self.kv_transfers.start(req, src, dst)

    def _land(self, req: Request, src: Instance, dst: Instance, flow=None) -> None:
        h = self.handoff.get(req.id)
        if h is None or h[3] is not flow:
            return  # cancelled by a failure (the request went elsewhere)
        del self.handoff[req.id]
        req.kv_end = self.env.now
        src.release_after_transfer(req)
        dst.kv_landed(req)

    # ------------------------------------------------------------------ completion
    def finish(self, req: Request, t: float) -> None:
        req.finish = t
        self.inflight.pop(req.id, None)
        self.n_completed += 1
        self.osl_completed += req.n_out
        if self.recent is not None:
            tpot = (t - req.first_token) / (req.n_out - 1) if req.n_out > 1 else 0.0
            self.recent.append((t, req.first_token - req.arrival, tpot))
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
            queue, ttft, tpot, e2e, req.preemptions, req.restarts,
        ))
        self.n_done += 1
        if self.n_done >= self.n_total and self._all_done is not None and not self._all_done.triggered:
            self._all_done.succeed()
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
            for role in self.pools:
                ent = f"pool:{role}"
                by_state = {STARTING: 0, SERVING: 0, DRAINING: 0, FAILED: 0}
                live = []
                for i in self.all_instances:
                    if i.role == role and i.state in by_state:
                        by_state[i.state] += 1
                        if i.state != FAILED:
                            live.append(i)
                for st_name, n in by_state.items():
                    tl.append((now, ent, f"instances_{st_name}", float(n)))
                tl.append((now, ent, "queue_depth", float(sum(i.queue_depth for i in live))))
                tl.append((now, ent, "running", float(sum(i.num_running for i in live))))
                used = sum(i.kv.used for i in live)
                cap = sum(i.kv.capacity for i in live)
                tl.append((now, ent, "kv_used_frac", used / cap if cap else 0.0))
            tl.append((now, "cluster", "gpus_allocated", float(self._gpu_alloc)))
            self.network.sync()  # bytes carried up to now
            self.collectives.refresh()
            # utilisation over the links in service (live instances, racks); bytes over every link ever
            live = {k: [] for k in LINK_KINDS}
            for i in self.all_instances:
                if i.state not in (STOPPED, FAILED):
                    for link in i.links.values():
                        live[link.kind].append(link)
            for kind in LINK_KINDS:
                every = self.topology.links_of_kind(kind)
                if every:
                    ls = live[kind] if kind in ("nic", "nvlink") else every
                    ent = f"link:{kind}"
                    tl.append((now, ent, "utilisation_mean", sum(l.utilisation for l in ls) / len(ls) if ls else 0.0))
                    tl.append((now, ent, "utilisation_max", max((l.utilisation for l in ls), default=0.0)))
                    tl.append((now, ent, "bytes_carried", sum(l.bytes_carried for l in every)))
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
        from simcluster.sim import control

        self.controllers = control.start(self)
        if self.faults is not None:
            self.faults.start()
        limit = sc.run.max_sim_time_s
        # the run ends when the last request leaves (a pending repair or controller tick must not
        # stretch the clock), at the time limit, or when nothing can happen any more (stalled)
        self._all_done = env.event()
        if self.n_done >= self.n_total:
            self._all_done.succeed()
        until = self._all_done if limit is None else env.any_of([self._all_done, env.timeout(limit)])
        try:
            env.run(until=until)
        except RuntimeError as exc:  # simpy: no events left before `until` fired (requests stuck)
            if "No scheduled events left" not in str(exc):
                raise
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
        self._gpu_change(0)
        st = RunStats(sim_time_s=float(env.now), wall_time_s=wall, preemptions=self.stats_preemptions,
                      gpus=self.gpus, kv_bytes_transferred=self.kv_bytes_transferred,
                      gpu_seconds_allocated=self._gpu_s, elastic=self.elastic, restarts=self.restarts,
                      control={k: v for c in self.controllers for k, v in c.report().items()})
        if self.faults is not None:
            st.control.update(self.faults.report())
        for inst in self.all_instances:
            st.busy_gpu_s += inst.busy_time * inst.gpus
            st.flops += inst.flops
            st.hbm_bytes += inst.hbm_bytes
            st.prefix_hit_tokens += inst.kv.hits_tokens
            st.prefix_lookup_tokens += inst.kv.lookup_tokens
        for role, plan in self.plans.items():  # peak work of the GPUs the instances held, over the run
            gpu_s = sum(i.gpus * i.held_time(st.sim_time_s) for i in self.all_instances if i.role == role)
            st.peak_flops_gpu_s += plan.peak_flops * gpu_s
            st.peak_bytes_gpu_s += plan.peak_bw * gpu_s
        for inst in self.all_instances:
            st.instances[inst.name] = {"role": inst.role, "gpus": inst.gpus, "busy_s": inst.busy_time,
                                       "kv_capacity_blocks": inst.kv.capacity, "state": inst.state,
                                       "started_s": inst.born, "serving_s": inst.serving_since,
                                       "ended_s": inst.ended}
        return st
