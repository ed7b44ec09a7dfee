"""Placing pools of instances on GPUs, NVLink domains and NICs.

An instance occupies ``layout.gpus`` GPUs. Instances are placed first-fit into NVLink domains, the
prefill pool first, then decode (or the co-located pool). An instance larger than a domain is an
error unless ``cluster.allow_cross_domain`` says it may span domains (TP over the scale-out network).
"""

from __future__ import annotations

from dataclasses import dataclass

from simcluster.errors import UserError


@dataclass(frozen=True)
class Placement:
    role: str
    index: int
    gpus: int
    domain: int  # first NVLink domain it occupies


def place(pools: list[tuple[str, int, int]], domain_size: int, total_gpus: int | None,
          allow_cross_domain: bool) -> tuple[list[Placement], int]:
    """Place ``(role, instances, gpus_per_instance)`` pools. Returns the placements and the GPUs used
    (whole domains counted when ``total_gpus`` is None, i.e. the cluster is sized to fit)."""
    free: list[int] = []  # free GPUs per domain
    out: list[Placement] = []
    for role, count, g in pools:
        if g > domain_size and not allow_cross_domain:
            raise UserError(
                f"an instance needs {g} GPUs but an NVLink domain has {domain_size}; use a smaller "
                "layout or set cluster.allow_cross_domain: true to run across the scale-out network",
                where=f"pools.{role}.layout",
            )
        for i in range(count):
            if g <= domain_size:
                d = next((k for k, f in enumerate(free) if f >= g), None)
                if d is None:
                    free.append(domain_size)
                    d = len(free) - 1
                free[d] -= g
            else:
                span = -(-g // domain_size)
                d = len(free)
                free.extend([0] * span)
            out.append(Placement(role, i, g, d))
    used_domains = len(free)
    needed = used_domains * domain_size
    if total_gpus is not None:
        if sum(p.gpus for p in out) > total_gpus or used_domains > -(-total_gpus // domain_size):
            raise UserError(
                f"the pools need {sum(p.gpus for p in out)} GPUs in {used_domains} NVLink domain(s) of "
                f"{domain_size}, but the cluster has {total_gpus} GPUs",
                where="cluster.nodes",
            )
        needed = total_gpus
    return out, needed
