"""The cluster's topology: racks of nodes, NVLink domains, NICs and a leaf–spine scale-out fabric.

Links (one direction each; capacities are achieved payload rates in bytes/s):

==================  =============  ==========================================================================
link                one per        capacity
==================  =============  ==========================================================================
``nvlink_out/in``   instance       GPUs × NVLink per GPU × ``nvlink_efficiency``
``nic_out/in``      instance       GPUs × ``nics_per_gpu`` × min(``nic_efficiency`` × NIC line rate,
                                   ``nic_max_gbps``)
``rack_uplink``     rack           (leaf → spine) whole fabric links ≥ rack NIC line rate /
                                   ``oversubscription``, × ``nic_efficiency``
``rack_downlink``   rack           (spine → leaf) the same
==================  =============  ==========================================================================

Paths (:meth:`Topology.path`), by where the two instances sit:

* same NVLink domain: ``nvlink_out(src) → nvlink_in(dst)``, no switch hop beyond the NVSwitch;
* same rack: ``nic_out(src) → nic_in(dst)`` through the leaf (1 hop; a rail-optimised leaf is
  non-blocking, so it adds no link of its own);
* different racks: ``nic_out(src) → rack_uplink(src rack) → rack_downlink(dst rack) → nic_in(dst)``
  (leaf, spine, leaf: 3 hops). The rack's uplinks act as one pooled link (adaptive routing spreads
  a rack's traffic over them).

A route's latency is the transfer set-up (``cluster.transfer_latency_s``) plus ``hop_latency_s`` per
switch hop; the network applies it explicitly (the last byte arrives that much after it left).

An instance spanning NVLink domains (``allow_cross_domain``) counts as sitting in its first domain's
rack; it never shares a domain with another instance, so its transfers use the NIC.
Paths are cached per (source, destination) instance pair: the engine's hot path is a dict look-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from simcluster.errors import UserError
from simcluster.sim.cluster import Placement, place
from simcluster.sim.network import Link

GBIT_BYTES = 1e9 / 8.0  # bytes per Gbit

LINK_KINDS = ("nvlink", "nic", "rack_uplink", "rack_downlink")


def nic_achieved_Bps(line_Bps: float, efficiency: float, max_Bps: float | None) -> float:
    """Achieved payload rate of one NIC: ``min(efficiency × line rate, ceiling)`` (bytes/s).

    Fitted to Mooncake's transfer-engine measurements (SEED-NOTES M-1, docs/topology.md): 87 GB/s on
    4 × 200 Gb/s is 87 % of line rate, so the protocol efficiency is 0.87; 190 GB/s on 8 × 400 Gb/s is
    23.75 GB/s = 190 Gb/s per NIC, below 0.87 × 400 Gb/s, so a per-NIC ceiling (host path: PCIe,
    memory, the transfer engine) of 190 Gb/s binds there.
    """
    rate = efficiency * line_Bps
    return min(rate, max_Bps) if max_Bps is not None else rate


@dataclass(frozen=True)
class Fabric:
    """The resolved numbers of a cluster's topology (every default filled in)."""

    gpus_per_node: int
    domain_size: int  # GPUs per NVLink domain
    nodes_per_rack: int
    racks: int | None  # None: as many as needed
    total_gpus: int | None  # None: the cluster is sized to fit the pools
    nics_per_gpu: float
    nic_line_Bps: float  # one NIC, line rate
    nic_Bps: float  # one NIC, achieved
    nvlink_Bps: float  # one GPU, achieved, one direction
    fabric_link_Bps: float  # one leaf-spine link, line rate
    uplink_links: int  # leaf-spine links per rack
    uplink_Bps: float  # a rack's pooled uplink (and downlink), achieved
    efficiency: float  # payload efficiency of the scale-out links
    hop_latency_s: float
    setup_latency_s: float
    placement: str

    @property
    def rack_gpus(self) -> int:
        return self.nodes_per_rack * self.gpus_per_node

    @property
    def domains_per_rack(self) -> int:
        return self.rack_gpus // self.domain_size

    @property
    def nic_Bps_per_gpu(self) -> float:
        return self.nics_per_gpu * self.nic_Bps

    @classmethod
    def from_cluster(cls, c, gpu) -> "Fabric":
        """Resolve ``scenario.cluster`` (a :class:`ClusterSpec`) against the GPU catalog entry."""
        t = c.topology
        gpn = c.gpus_per_node or gpu.gpus_per_node
        domain = c.nvlink_domain_size or gpu.nvlink_domain_size
        npr = t.nodes_per_rack
        if npr is None:
            npr = -(-domain // gpn) if domain > gpn else 4
            while (npr * gpn) % domain:
                npr += 1
        elif npr * gpn < domain or (npr * gpn) % domain:
            raise UserError(
                f"a rack of {npr} nodes × {gpn} GPUs = {npr * gpn} GPUs must hold whole NVLink domains of "
                f"{domain} GPUs", where="cluster.topology.nodes_per_rack")
        if c.nodes is not None:
            total = c.nodes * gpn
            if t.racks is not None and c.nodes > t.racks * npr:
                raise UserError(
                    f"{c.nodes} nodes do not fit {t.racks} racks of {npr} nodes", where="cluster.topology.racks")
        elif t.racks is not None:
            total = t.racks * npr * gpn
        else:
            total = None
        line = c.nic_gbps * GBIT_BYTES if c.nic_gbps else gpu.nic_Bps
        ceiling = c.nic_max_gbps * GBIT_BYTES if c.nic_max_gbps else None
        nic = nic_achieved_Bps(line, c.nic_efficiency, ceiling)
        link = t.fabric_link_gbps * GBIT_BYTES if t.fabric_link_gbps else line
        rack_line = npr * gpn * c.nics_per_gpu * line
        n_links = max(1, math.ceil(rack_line / t.oversubscription / link - 1e-9))
        return cls(
            gpus_per_node=gpn, domain_size=domain, nodes_per_rack=npr, racks=t.racks, total_gpus=total,
            nics_per_gpu=c.nics_per_gpu, nic_line_Bps=line, nic_Bps=nic,
            nvlink_Bps=gpu.nvlink_Bps * c.nvlink_efficiency, fabric_link_Bps=link, uplink_links=n_links,
            uplink_Bps=n_links * link * c.nic_efficiency, efficiency=c.nic_efficiency,
            hop_latency_s=t.hop_latency_s, setup_latency_s=c.transfer_latency_s, placement=t.placement,
        )


class Route(NamedTuple):
    """How bytes go from one instance to another."""

    links: tuple  # the Links crossed, in order
    latency_s: float  # set-up + switch hops: the last byte lands this long after it left
    per_gpu_Bps: float  # achieved rate of one GPU's share of the path (its NICs, or its NVLink)
    kind: str  # "nvlink" | "rack" (through the leaf) | "spine" (across racks)


class _Where(NamedTuple):
    domain: int
    span: int
    rack: int
    racks: tuple  # every rack it occupies


class Topology:
    """Links of a cluster and the routes between its instances.

    Build with :meth:`from_scenario`; :meth:`place` the pools, then :meth:`attach` each instance
    (which creates its links); :meth:`path` answers which links a transfer crosses.
    """

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self.links: list[Link] = []
        self._by_kind: dict[str, list[Link]] = {k: [] for k in LINK_KINDS}
        self._racks: dict[int, tuple[Link, Link]] = {}
        self._where: dict[object, _Where] = {}
        self._paths: dict[tuple, Route] = {}

    @classmethod
    def from_scenario(cls, cluster, gpu) -> "Topology":
        return cls(Fabric.from_cluster(cluster, gpu))

    # ------------------------------------------------------------------ placement
    def place(self, pools: list[tuple[str, int, int]], total_gpus: int | None,
              allow_cross_domain: bool) -> tuple[list[Placement], int]:
        """Place ``(role, instances, gpus_per_instance)`` pools on the racks with the fabric's policy
        (``cluster.place``); ``total_gpus`` None: size the cluster to fit."""
        f = self.fabric
        return place(pools, f.domain_size, total_gpus, allow_cross_domain,
                     domains_per_rack=f.domains_per_rack, racks=f.racks, policy=f.placement)

    def rack_of_domain(self, domain: int) -> int:
        return domain // self.fabric.domains_per_rack

    def rack_of_gpu(self, gpu: int) -> int:
        """Rack of GPU ``gpu`` when GPUs are numbered domain by domain (``gpu // domain_size``)."""
        return self.rack_of_domain(gpu // self.fabric.domain_size)

    # ------------------------------------------------------------------ links
    def _add(self, link: Link) -> Link:
        self.links.append(link)
        self._by_kind[link.kind].append(link)
        return link

    def rack_links(self, rack: int) -> tuple[Link, Link]:
        """(uplink, downlink) of ``rack``, created on first use."""
        pair = self._racks.get(rack)
        if pair is None:
            cap = self.fabric.uplink_Bps
            pair = (self._add(Link(f"rack{rack}.uplink", "rack_uplink", cap)),
                    self._add(Link(f"rack{rack}.downlink", "rack_downlink", cap)))
            self._racks[rack] = pair
        return pair

    def attach(self, inst, domain: int, span: int = 1) -> None:
        """Give ``inst`` (its ``name``, ``gpus`` and a ``links`` dict) its NIC and NVLink links and
        register where it sits: ``span`` NVLink domains from ``domain``."""
        f = self.fabric
        for kind, per_gpu in (("nic", f.nic_Bps_per_gpu), ("nvlink", f.nvlink_Bps)):
            for d in ("out", "in"):
                inst.links[f"{kind}_{d}"] = self._add(Link(f"{inst.name}.{kind}_{d}", kind, per_gpu * inst.gpus))
        racks = tuple(sorted({self.rack_of_domain(d) for d in range(domain, domain + span)}))
        for r in racks:
            self.rack_links(r)
        self._where[inst] = _Where(domain, span, racks[0], racks)

    def detach(self, inst) -> None:
        """Forget an instance (it stopped); its links stay in :attr:`links` for the record."""
        self._where.pop(inst, None)
        self._paths = {k: v for k, v in self._paths.items() if inst not in k}

    def links_of_kind(self, kind: str) -> list[Link]:
        return self._by_kind.get(kind, [])

    # ------------------------------------------------------------------ routes
    def path(self, src, dst) -> Route:
        """The route from instance ``src`` to instance ``dst`` (cached)."""
        key = (src, dst)
        r = self._paths.get(key)
        if r is None:
            r = self._paths[key] = self._route(src, dst)
        return r

    def _route(self, src, dst) -> Route:
        f = self.fabric
        ws, wd = self._where[src], self._where[dst]
        if ws.span == 1 and wd.span == 1 and ws.domain == wd.domain:
            return Route((src.links["nvlink_out"], dst.links["nvlink_in"]), f.setup_latency_s, f.nvlink_Bps, "nvlink")
        nic = f.nic_Bps_per_gpu
        if ws.rack == wd.rack:
            return Route((src.links["nic_out"], dst.links["nic_in"]), f.setup_latency_s + f.hop_latency_s, nic, "rack")
        up, _ = self.rack_links(ws.rack)
        _, down = self.rack_links(wd.rack)
        return Route((src.links["nic_out"], up, down, dst.links["nic_in"]),
                     f.setup_latency_s + 3 * f.hop_latency_s, nic, "spine")

    def collective_links(self, inst) -> list[Link]:
        """Links an instance's own collectives load when its group spans NVLink domains: its NICs, and
        the uplinks and downlinks of every rack it spans when it spans more than one."""
        w = self._where[inst]
        out = [inst.links["nic_out"], inst.links["nic_in"]]
        if len(w.racks) > 1:
            for r in w.racks:
                out.extend(self.rack_links(r))
        return out

    def spans_domains(self, inst) -> bool:
        return self._where[inst].span > 1
