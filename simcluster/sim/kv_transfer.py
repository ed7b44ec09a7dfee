"""KV transfer from prefill to decode instances: layout conversion, streaming modes, flows on links.

**Layout conversion** (:func:`conversion_plan`). A request's KV lives on the GPUs of one attention
replica of each instance: ``pp × tpa × kvp`` GPUs (DP attention puts each request on one replica, so
``dp`` does not multiply it). Layers are split over the ``pp`` stages, KV heads over ``tpa`` (groups of
``K / tpa`` heads; with ``tpa > K`` each head group is held ``tpa / K`` times; MLA has K = 1) and the
sequence over ``kvp`` (Helix: blocks dealt round robin, SEED-NOTES §1.5). Every decode GPU pulls the
part of the KV it will hold from the prefill GPUs that hold it:

* bytes on the wire = unique KV bytes × ``r_dst`` (``r_dst = tpa_dst / min(tpa_dst, K)``: a decode
  layout that duplicates KV heads receives each copy; a duplicating prefill layout costs nothing
  extra, its copies share the sending);
* senders = the source replica's GPUs, receivers = the destination replica's GPUs, each moving an
  equal share;
* GPU-to-GPU flows = overlapping (stage, head group, sequence shard) pairs × ``r_src × r_dst``:
  stages ``pp_s + pp_d − gcd``, head groups ``a_s + a_d − gcd`` (``a = min(tpa, K)``), sequence
  ``kvp_s × kvp_d`` (contiguous prefill shards against round-robin decode blocks all overlap).

The engine moves one aggregate flow per request over the instances' aggregate links, capped at
``min(senders, receivers) ×`` the per-GPU link rate: equivalent to the per-GPU flows when they are
balanced, as they are here, at the cost of one flow instead of ``flows``.

**Modes** (``serving.kv_transfer``):

* ``after_prefill`` — the decode instance is chosen when the prefill ends; the KV then leaves at the
  rate the links give it.
* ``layerwise`` — the decode instance is chosen (and its KV memory reserved) when the prefill starts,
  and the KV streams while the prefill runs: all but the last layer's share (``1/L`` of the bytes)
  at most as fast as it is produced, the last layer's share once the prefill ends. The prefill's end
  is estimated when it starts: the prompts admitted before it on the instance go first (FCFS chunks,
  at the rate of a full-budget step), then its own chunks (alone in their steps). The stream's cap
  spreads the streamed bytes evenly up to that estimated end. This can run ahead of production early
  on (the prompt's own chunks come last) or overall (when later steps are shared), but the transfer
  cannot end before the prefill ends plus the last layer's share.
  If the decode instance has no memory free when the prefill starts, the stream starts when it has
  (or, after the prefill, as a whole transfer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simcluster.perf.interface import BatchShape


@dataclass(frozen=True)
class ConversionPlan:
    """How one request's KV moves between two layouts (see module docstring)."""

    senders: int  # prefill GPUs sending (the request's replica)
    receivers: int  # decode GPUs receiving
    flows: int  # GPU-to-GPU flows
    wire_factor: float  # bytes on the wire / unique KV bytes

    def bytes_per_flow(self, unique_bytes: float) -> float:
        return unique_bytes * self.wire_factor / self.flows

    def bytes_per_sender(self, unique_bytes: float) -> float:
        return unique_bytes * self.wire_factor / self.senders

    def bytes_per_receiver(self, unique_bytes: float) -> float:
        return unique_bytes * self.wire_factor / self.receivers


def _overlaps(a: int, b: int) -> int:
    """Pairs of overlapping parts when one range is cut into ``a`` and into ``b`` equal parts."""
    return a + b - math.gcd(a, b)


def conversion_plan(src, dst, model) -> ConversionPlan:
    """The KV movement between prefill layout ``src`` and decode layout ``dst`` (``perf.layout.Layout``)
    of ``model`` (``catalog.models.ModelSpec``)."""
    k = 1 if model.is_mla else model.num_kv_heads
    a_s, a_d = min(src.tpa, k), min(dst.tpa, k)
    r_s, r_d = src.tpa // a_s, dst.tpa // a_d
    pairs = _overlaps(src.pp, dst.pp) * _overlaps(a_s, a_d) * src.kvp * dst.kvp
    return ConversionPlan(
        senders=src.pp * src.tpa * src.kvp,
        receivers=dst.pp * dst.tpa * dst.kvp,
        flows=pairs * r_s * r_d,
        wire_factor=float(r_d),
    )


class KVTransfer:
    """One request's KV on its way (the ``payload`` of its flows)."""

    __slots__ = ("req", "src", "dst", "route", "flow", "flows", "produced", "t_end_est", "tail", "cap")

    def __init__(self, req, src, t_end_est: float) -> None:
        self.req = req
        self.src = src
        self.dst = None
        self.route = None
        self.flow = None  # the flow that carries its last bytes
        self.flows: list = []  # its flows whose on_done has not run yet
        self.produced = False  # the prefill has ended: every layer's KV exists
        self.t_end_est = t_end_est  # estimated end of the prefill
        self.tail = 0.0  # bytes of the last layer, sent after the prefill
        self.cap = math.inf  # rate limit of the route (senders/receivers)


class KVTransfers:
    """Starts and tracks KV transfers for an engine.

    Uses ``engine.router``, ``engine.pools``, ``engine.handoff`` (request id → ``[req, src, dst,
    flow]`` from the choice of the destination until the KV lands; a failure model settles the
    entries that touch a failed instance and cancels their flow) and ``engine._land``.
    """

    def __init__(self, engine, topology, network, mode: str, plan: ConversionPlan, unique_bytes_per_token: float,
                 layers: int) -> None:
        self.engine = engine
        self.env = engine.env
        self.topology = topology
        self.network = network
        self.layerwise = mode == "layerwise"
        self.plan = plan
        self.bytes_per_token = unique_bytes_per_token * plan.wire_factor
        self.layers = max(1, int(layers))
        self.lanes = min(plan.senders, plan.receivers)
        self.live: dict[int, KVTransfer] = {}  # streams (layerwise) by request id
        self._est: dict[tuple, float] = {}

    def size_bytes(self, req) -> float:
        """Bytes on the wire for ``req``'s KV."""
        return self.bytes_per_token * req.n_in

    # ------------------------------------------------------------------ engine hooks
    def prefill_started(self, req, src) -> None:
        """(layerwise) choose the decode instance now and ask it for KV memory; the stream starts when
        it is reserved (:meth:`start`)."""
        if not self.layerwise or req.n_out <= 1:
            return  # a one-token request finishes at the prefill: nothing to move
        eng = self.engine
        dst = eng.router.pick("decode", eng.pools["decode"], req, need_queue_room=False)
        if dst is None:
            return  # no decode instance serving: the KV goes after the prefill (the engine parks it)
        tr = KVTransfer(req, src, self.env.now + self._prefill_time(src, req) * getattr(src, "slow", 1.0))
        tr.dst = dst
        self.live[req.id] = tr
        eng.handoff[req.id] = [req, src, dst, None]
        dst.offer_transfer(req, src)

    def prefill_finished(self, req, src) -> bool:
        """The engine is asked to hand ``req`` over (its prefill ended, or a failure cancelled its
        destination). Returns False when the engine must choose a destination and move the whole KV
        (``after_prefill``); True when a stream owns the request."""
        tr = self.live.get(req.id)
        if tr is None:
            return False
        h = self.engine.handoff.get(req.id)
        finished = req.prefill_done >= req.prefill_target
        if h is None or h[2] is not tr.dst:  # a failure took the stream's destination or source
            del self.live[req.id]
            tr.flows.clear()  # late on_done of its old flows is ignored
            if finished:
                return False
            self.prefill_started(req, src)  # still prefilling: stream again, to another instance
            return True
        if not finished:
            return True
        tr.produced = True
        if tr.flow is None:
            return True  # decode memory not reserved yet: the whole KV goes when it is
        if tr.flow.active:  # the stream is still on the wire: add the last layer, lift the cap
            self.network.extend(tr.flow, tr.tail)
            self.network.set_cap(tr.flow, tr.cap)
        else:  # the streamed part has left: the last layer's share follows
            self._send(tr, tr.tail, tr.cap)
        return True

    def start(self, req, src, dst) -> None:
        """The decode instance reserved KV memory for ``req``: start moving it."""
        eng = self.engine
        now = self.env.now
        route = self.topology.path(src, dst)
        cap = route.per_gpu_Bps * self.lanes
        size = self.size_bytes(req)
        req.kv_start = now
        eng.kv_bytes_transferred += size
        tr = self.live.get(req.id)
        if tr is None or tr.produced:  # after the prefill: one flow with everything
            if tr is None:
                tr = KVTransfer(req, src, now)
                tr.produced = True
            tr.dst, tr.route, tr.cap = dst, route, cap
            self._send(tr, size, cap)
            return
        # the prefill is running: stream all but the last layer, no faster than it is produced
        tr.dst, tr.route, tr.cap = dst, route, cap
        tr.tail = size / self.layers
        streamed = size - tr.tail
        left = tr.t_end_est - now
        self._send(tr, streamed, min(cap, streamed / left) if left > 0 else cap)

    # ------------------------------------------------------------------ internals
    def _send(self, tr: KVTransfer, size: float, cap: float) -> None:
        flow = self.network.start(list(tr.route.links), size, self._arrived, tr, cap=cap,
                                  latency_s=tr.route.latency_s)
        tr.flow = flow
        tr.flows.append(flow)
        h = self.engine.handoff.get(tr.req.id)
        if h is not None:
            h[3] = flow

    def _arrived(self, flow) -> None:
        tr = flow.payload
        if flow not in tr.flows:
            return  # a flow of a stream that a failure re-routed
        tr.flows.remove(flow)
        if not tr.flows and tr.produced:
            if self.live.get(tr.req.id) is tr:
                del self.live[tr.req.id]
            # the engine lands it only if this flow is still the request's current one (a failure may
            # have sent the request elsewhere meanwhile)
            self.engine._land(tr.req, tr.src, tr.dst, flow)

    def _prefill_time(self, inst, req) -> float:
        """Seconds until ``req``'s prefill on ``inst`` ends: the prompts admitted before it go first
        (FCFS chunks under the token budget, at the rate of a full-budget step), then its own chunks."""
        ahead = sum(r.prefill_target - r.prefill_done for r in inst.prefilling if r is not req)
        t = self._alone(inst, req.prefill_done, req.prefill_target)
        if ahead > 0:
            t += ahead * self._alone(inst, 0, inst.budget) / inst.budget
        return t

    def _alone(self, inst, past: int, target: int) -> float:
        """Seconds to prefill tokens ``past`` to ``target`` of one prompt alone (chunks under the budget)."""
        key = (inst.cost, inst.budget, inst.chunked, past, target)
        t = self._est.get(key)
        if t is None:
            t = 0.0
            step = inst.budget if inst.chunked else target
            while past < target:
                c = min(step, target - past)
                t += inst.cost.step(BatchShape(c, 1, c * (past + (c + 1) / 2.0), past, 0, 0)).latency_s
                past += c
            if len(self._est) < 65536:
                self._est[key] = t
        return t
