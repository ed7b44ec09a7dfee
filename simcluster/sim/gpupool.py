"""The cluster's GPUs as slots: which are free, which an instance holds, which have failed.

GPU ``g`` sits in node ``g // gpus_per_node`` and NVLink domain ``g // domain_size``. An instance of
``k ≤ domain_size`` GPUs takes ``k`` free GPUs of one domain (first fit, lowest domain first); a wider
one (``cluster.allow_cross_domain``) takes whole free domains in a row. Failed GPUs are never handed
out until repaired.
"""

from __future__ import annotations


class GPUPool:
    def __init__(self, total: int, domain_size: int, gpus_per_node: int) -> None:
        self.total = total
        self.domain_size = domain_size
        self.gpus_per_node = gpus_per_node
        self.n_domains = -(-total // domain_size)
        self.free = [sorted(range(d * domain_size, min((d + 1) * domain_size, total)))
                     for d in range(self.n_domains)]
        self.failed: set[int] = set()

    def domain_of(self, gpu: int) -> int:
        return gpu // self.domain_size

    def node_of(self, gpu: int) -> int:
        return gpu // self.gpus_per_node

    @property
    def n_free(self) -> int:
        return sum(len(f) for f in self.free)

    def take(self, domain: int, k: int) -> list[int] | None:
        """``k`` free GPUs starting at ``domain`` (one domain, or whole domains in a row)."""
        ds = self.domain_size
        if k <= ds:
            f = self.free[domain]
            if len(f) < k:
                return None
            out, self.free[domain] = f[:k], f[k:]
            return out
        span = -(-k // ds)
        if domain + span > self.n_domains or any(len(self.free[d]) < ds for d in range(domain, domain + span)):
            return None
        out = []
        for d in range(domain, domain + span):
            out += self.free[d]
            self.free[d] = []
        return out[:k] if len(out) >= k else None

    def allocate(self, k: int, spread_by=None) -> list[int] | None:
        """``k`` free GPUs: first fit, or with ``spread_by`` (domain -> rack) in the rack with the most
        free GPUs (``cluster.topology.placement: spread``), first fit inside it."""
        order = range(self.n_domains)
        if spread_by is not None and k <= self.domain_size:
            free_in: dict[int, int] = {}
            for d in order:
                r = spread_by(d)
                free_in[r] = free_in.get(r, 0) + len(self.free[d])
            order = sorted(order, key=lambda d: (-free_in[spread_by(d)], spread_by(d), d))
        for d in order:
            got = self.take(d, k)
            if got is not None:
                return got
        return None

    def release(self, gpus) -> None:
        for g in gpus:
            if g not in self.failed:
                f = self.free[self.domain_of(g)]
                f.append(g)
                f.sort()

    def fail(self, gpu: int) -> None:
        self.failed.add(gpu)
        f = self.free[self.domain_of(gpu)]
        if gpu in f:
            f.remove(gpu)

    def repair(self, gpu: int) -> None:
        if gpu in self.failed:
            self.failed.discard(gpu)
            self.release([gpu])
