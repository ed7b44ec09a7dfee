"""Routing policies: which instance of a pool takes a request.

* ``round_robin``        — cycle through the instances;
* ``least_outstanding``  — the instance owing the least work (prompt tokens still to prefill for
  prefill/co-located instances; sequences for decode instances); ties go to the lowest index;
* ``prefix_aware``       — the instance whose prefix cache holds the longest prefix of the prompt,
  unless its outstanding work exceeds the least-loaded instance's by more than ``balance_tokens``
  (then least outstanding): cache affinity without hot spots.

Only instances with room in their waiting queue are candidates; ``None`` means every queue is full.

Least-outstanding picks cost O(log N), not O(N), in a pool of N instances: a heap per pool holds
``(outstanding, index)`` keys; an instance whose outstanding work changes marks itself dirty
(``Instance._touch``) and is re-keyed at the next pick; stale entries are skipped when they surface
and the heap is rebuilt when they pile up. The choice is the same as a scan's.
"""

from __future__ import annotations

import heapq


class Router:
    def __init__(self, policy: str, balance_tokens: float = 16384.0) -> None:
        self.policy = policy
        self.balance_tokens = balance_tokens
        self._rr: dict[str, int] = {}
        self.dirty: list = []  # instances whose key changed since the last pick
        self._heaps: dict[str, list] = {}

    def _refresh(self) -> None:
        heaps = self._heaps
        for inst in self.dirty:
            inst._rdirty = False
            inst._rver += 1
            h = heaps.get(inst.role)
            if h is not None:  # (a pool's heap is built whole at its first pick)
                heapq.heappush(h, (inst.outstanding(), inst.index, inst._rver, inst))
        self.dirty.clear()

    def _least(self, pool: str, instances: list, need_queue_room: bool):
        """The least-loaded serving instance of ``instances`` (all of one role), by heap."""
        self._refresh()
        h = self._heaps.get(pool)
        if h is None or len(h) > 4 * len(instances) + 64:  # (re)build from the live set
            h = self._heaps[pool] = [(i.outstanding(), i.index, i._rver, i) for i in instances]
            heapq.heapify(h)
        while h:
            _, _, ver, inst = h[0]
            if ver != inst._rver or inst.state != "serving":
                heapq.heappop(h)  # superseded key, or no longer serving
                continue
            if need_queue_room and not inst.has_queue_room():
                return None  # the least loaded is full: let the caller scan
            return inst
        return None

    def pick(self, pool: str, instances: list, req, need_queue_room: bool = True):
        if self.policy == "least_outstanding" and len(instances) > 1 and hasattr(instances[0], "_rver"):
            inst = self._least(pool, instances, need_queue_room)
            if inst is not None:
                return inst
        if need_queue_room:
            cands = [i for i in instances if i.has_queue_room()]
        else:
            cands = instances
        if not cands:
            return None
        if len(cands) == 1:
            return cands[0]
        policy = self.policy
        if policy == "round_robin":
            k = self._rr.get(pool, 0)
            self._rr[pool] = k + 1
            return cands[k % len(cands)]
        least = min(cands, key=_load)
        if policy == "prefix_aware" and req.hashes is not None:
            best, best_len = None, 0
            for inst in cands:
                m = len(inst.kv.match(req.hashes, req.n_in))
                if m > best_len:
                    best, best_len = inst, m
            if best is not None and best.outstanding() - least.outstanding() <= self.balance_tokens:
                return best
        return least


def _load(inst):
    return (inst.outstanding(), inst.index)
