"""Placing pools of instances on GPUs, NVLink domains, racks and NICs.

An instance occupies ``layout.gpus`` GPUs. The prefill pool is placed first, then decode (or the
co-located pool). An instance larger than a domain is an error unless ``cluster.allow_cross_domain``
says it may span domains (TP over the scale-out network); it then takes whole free domains in a row.

Domains are numbered in order and grouped into racks: domain ``d`` sits in rack ``d // domains_per_rack``.
Policies:

* ``pack`` — first fit over the domains in order (fills rack 0 first): prefill and decode share racks,
  KV transfers rarely cross the spine;
* ``spread`` — each instance goes to the rack with the most free GPUs (ties: the lowest), first fit
  inside it: a pool is spread over the racks (as for failure isolation), and more KV crosses racks.
  Without a fixed cluster size it uses as many racks as ``pack`` would, adding one when fragmentation
  leaves an instance no room.
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
    span: int = 1  # NVLink domains it occupies (more than one only across domains)
    rack: int = 0  # rack of its first domain


def place(pools: list[tuple[str, int, int]], domain_size: int, total_gpus: int | None,
          allow_cross_domain: bool, *, domains_per_rack: int = 1 << 30, racks: int | None = None,
          policy: str = "pack") -> tuple[list[Placement], int]:
    """Place ``(role, instances, gpus_per_instance)`` pools. Returns the placements and the GPUs used
    (the domains holding instances, counted whole, when ``total_gpus`` is None, i.e. the cluster is
    sized to fit). ``racks`` bounds the racks (with ``total_gpus``, the smaller bound holds)."""
    for role, count, g in pools:
        if g > domain_size and not allow_cross_domain:
            raise UserError(
                f"an instance needs {g} GPUs but an NVLink domain has {domain_size}; use a smaller "
                "layout or set cluster.allow_cross_domain: true to run across the scale-out network",
                where=f"pools.{role}.layout",
            )
    if policy == "spread":
        out, free = _spread(pools, domain_size, total_gpus, domains_per_rack, racks)
        used_domains = sum(1 for f in free if f < domain_size)
    else:
        out, free = _pack(pools, domain_size, domains_per_rack)
        used_domains = len(free)
    if racks is not None and total_gpus is None:
        total_gpus = racks * domains_per_rack * domain_size
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


def _pack(pools, domain_size: int, dpr: int) -> tuple[list[Placement], list[int]]:
    free: list[int] = []  # free GPUs per domain
    out: list[Placement] = []
    for role, count, g in pools:
        for i in range(count):
            if g <= domain_size:
                d = next((k for k, f in enumerate(free) if f >= g), None)
                if d is None:
                    free.append(domain_size)
                    d = len(free) - 1
                free[d] -= g
                span = 1
            else:
                span = -(-g // domain_size)
                d = len(free)
                free.extend([0] * span)
            out.append(Placement(role, i, g, d, span, d // dpr))
    return out, free


def _spread(pools, domain_size: int, total_gpus: int | None, dpr: int,
            racks: int | None) -> tuple[list[Placement], list[int]]:
    n_domains = -(-total_gpus // domain_size) if total_gpus is not None else None
    if racks is not None:
        n_domains = min(n_domains, racks * dpr) if n_domains is not None else racks * dpr
    fixed = n_domains is not None
    if not fixed:
        _, packed = _pack(pools, domain_size, dpr)
        n_domains = -(-len(packed) // dpr) * dpr
    while True:
        out = _spread_into(pools, domain_size, dpr, n_domains)
        if out is not None or fixed:
            break
        n_domains += dpr  # fragmentation: one rack more
    if out is None:  # does not fit: report it like pack would
        placed, free = _pack(pools, domain_size, dpr)
        return placed, free
    return out


def _spread_into(pools, domain_size: int, dpr: int, n_domains: int):
    free = [domain_size] * n_domains
    n_racks = -(-n_domains // dpr)
    out: list[Placement] = []
    for role, count, g in pools:
        span = -(-g // domain_size)
        for i in range(count):
            order = sorted(range(n_racks), key=lambda r: (-sum(free[r * dpr:(r + 1) * dpr]), r))
            at = None
            for r in order:
                lo, hi = r * dpr, min((r + 1) * dpr, n_domains)
                if span == 1:
                    at = next((d for d in range(lo, hi) if free[d] >= g), None)
                else:
                    at = next((d for d in range(lo, hi - span + 1)
                               if all(free[k] == domain_size for k in range(d, d + span))), None)
                if at is not None:
                    break
            if at is None and span > 1:  # wider than a rack's free run: whole domains in a row anywhere
                at = next((d for d in range(0, n_domains - span + 1)
                           if all(free[k] == domain_size for k in range(d, d + span))), None)
            if at is None:
                return None
            if span == 1:
                free[at] -= g
            else:
                for k in range(at, at + span):
                    free[k] = 0
            out.append(Placement(role, i, g, at, span, at // dpr))
    return out, free
