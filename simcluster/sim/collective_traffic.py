"""Collectives of instances whose group spans NVLink domains, as background load on their NICs.

An instance wider than an NVLink domain (``cluster.allow_cross_domain``) runs its collectives
(TP all-reduce, EP all-to-all, ...) over the scale-out NICs, the same links its KV transfers use.
The step-cost model already charges the collective time to the steps; here its *traffic* is put on the
links, so KV transfers see less bandwidth while the instance computes:

* one endless flow per such instance crosses its ``nic_out`` and ``nic_in`` (and the uplinks and
  downlinks of every rack it spans when it spans more than one);
* its rate cap is ``f_comm ×`` the instance's NIC capacity while the instance has work (it then steps
  back to back), 0 while idle. ``f_comm`` = exposed collective time / step time of a representative
  step of the role (prefill: one full token-budget chunk; decode and co-located: a batch of
  ``max_num_seqs`` at 2,048 tokens of context, fewer if the KV cache holds fewer) [INFERRED];
* the cap is re-set at every timeline sample (cheap: no event per step). Being a flow, it shares the
  links max-min fairly with the KV transfers; the coupling is one way: a KV transfer slows no step.
"""

from __future__ import annotations

import math

from simcluster.perf.interface import BatchShape

CONTEXT_TOKENS = 2048  # representative decode context for f_comm [INFERRED]


def comm_fraction(role: str, cost, budget: int, max_seqs: int, kv_capacity_tokens: int) -> float:
    """Share of a representative step's time spent in (exposed) collectives, in [0, 1]."""
    if role == "prefill":
        c = budget
        st = cost.step(BatchShape(c, 1, c * (c + 1) / 2.0, 0, 0, 0))
    else:
        b = max(1, min(max_seqs, kv_capacity_tokens // CONTEXT_TOKENS))
        st = cost.step(BatchShape(0, 0, 0.0, 0, b, b * CONTEXT_TOKENS))
    if st.latency_s <= 0:
        return 0.0
    return min(1.0, max(0.0, st.comm_s / st.latency_s))


class CollectiveTraffic:
    def __init__(self, network, topology) -> None:
        self.network = network
        self.topology = topology
        self.entries: list[tuple] = []  # (instance, flow, demand while busy in bytes/s)

    def add(self, inst, f_comm: float) -> None:
        """Start the background flow of ``inst`` (no-op unless it spans NVLink domains)."""
        if not self.topology.spans_domains(inst) or f_comm <= 0:
            return
        links = self.topology.collective_links(inst)
        flow = self.network.start(links, math.inf, _never, ("collectives", inst.name), cap=0.0)
        self.entries.append((inst, flow, f_comm * inst.links["nic_out"].capacity_Bps))

    def refresh(self) -> None:
        """Re-set each flow's cap from whether its instance has work now."""
        for inst, flow, demand in self.entries:
            want = demand if inst.num_running > 0 else 0.0
            if flow.active and flow.cap != want:
                self.network.set_cap(flow, want)


def _never(_flow) -> None:  # an endless flow never completes
    raise AssertionError("a collective background flow completed")
