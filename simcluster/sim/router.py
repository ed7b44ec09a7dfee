"""Routing policies: which instance of a pool takes a request.

* ``round_robin``        — cycle through the instances;
* ``least_outstanding``  — the instance owing the least work (prompt tokens still to prefill for
  prefill/co-located instances; sequences for decode instances); ties go to the lowest index;
* ``prefix_aware``       — the instance whose prefix cache holds the longest prefix of the prompt,
  unless its outstanding work exceeds the least-loaded instance's by more than ``balance_tokens``
  (then least outstanding): cache affinity without hot spots.

Only instances with room in their waiting queue are candidates; ``None`` means every queue is full.
"""

from __future__ import annotations


class Router:
    def __init__(self, policy: str, balance_tokens: float = 16384.0) -> None:
        self.policy = policy
        self.balance_tokens = balance_tokens
        self._rr: dict[str, int] = {}

    def pick(self, pool: str, instances: list, req, need_queue_room: bool = True):
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
