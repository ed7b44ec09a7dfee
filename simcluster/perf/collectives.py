"""Collective communication time: the α–β model per link type.

``t = α + factor(op, n) · bytes_per_gpu / (link_bw · efficiency)``

``bytes_per_gpu`` is the size of the buffer one GPU holds, in the nccl-tests convention: the
all-reduce buffer, the all-gather **output**, the reduce-scatter **input**, the all-to-all buffer
(of which the part addressed to the GPU itself never moves), the point-to-point message. The
bus-bandwidth factors are the standard ring ones:

===============  =================
op               factor(op, n)
===============  =================
all_reduce       2·(n−1)/n
all_gather       (n−1)/n
reduce_scatter   (n−1)/n
all_to_all       (n−1)/n
p2p              1
===============  =================

A collective over a single GPU costs nothing. Inside an NVLink domain the link is NVLink; a group
that spans domains goes over the scale-out NIC (InfiniBand / RoCE), which then bounds the whole
collective (hierarchical algorithms are not modelled) [INFERRED].

Every function works on Python numbers and on numpy arrays alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from simcluster.catalog.gpus import GPUSpec

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p")
LINKS = ("nvlink", "ib")

# α (seconds) per collective call, one per link type.
# NVLink: small-message latency of the frameworks' one-shot custom all-reduce under CUDA graphs in
# the shared calibration data (vLLM on H100: 4.3–4.7 µs for 2–8 GPUs; TRT-LLM on GB200: 3.8–4.7 µs)
# and of NCCL all-gather / all-to-all at 2–8 GPUs (5–10 µs). SEED-NOTES §1.6: "several µs".
NVLINK_ALPHA_S = 5e-6
# Scale-out: aiconfigurator systems/*.yaml ``p2p_latency: 10us`` [INFERRED for collectives].
IB_ALPHA_S = 10e-6
# Achievable fraction of the one-direction link bandwidth: SEED-NOTES §7 "about 80 % of it as
# achievable busbw" [INFERRED]; Mooncake M-1 reports 60–87 % of line rate on the NIC.
LINK_EFFICIENCY = 0.8


@dataclass(frozen=True)
class LinkParams:
    """One link type: latency per collective (s), bandwidth per GPU one direction (B/s), efficiency."""

    alpha_s: float
    bw_Bps: float
    efficiency: float = LINK_EFFICIENCY

    @property
    def effective_Bps(self) -> float:
        return self.bw_Bps * self.efficiency


def default_links(gpu: GPUSpec, *, sol: bool = False) -> dict[str, LinkParams]:
    """NVLink and NIC parameters of ``gpu``; ``sol`` = peak bandwidth and zero latency."""
    if sol:
        return {"nvlink": LinkParams(0.0, gpu.nvlink_Bps, 1.0), "ib": LinkParams(0.0, gpu.nic_Bps, 1.0)}
    return {"nvlink": LinkParams(NVLINK_ALPHA_S, gpu.nvlink_Bps), "ib": LinkParams(IB_ALPHA_S, gpu.nic_Bps)}


def bus_factor(op: str, n_gpus: int) -> float:
    """Bytes a GPU moves over its link per byte of its buffer (see module table)."""
    if n_gpus <= 1:
        return 0.0
    if op == "all_reduce":
        return 2.0 * (n_gpus - 1) / n_gpus
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n_gpus - 1) / n_gpus
    if op == "p2p":
        return 1.0
    raise ValueError(f"unknown collective {op!r}; known: {', '.join(OPS)}")


def collective_time(op: str, bytes_per_gpu, n_gpus: int, link: LinkParams):
    """Seconds for one collective ``op`` over ``n_gpus`` GPUs with a buffer of ``bytes_per_gpu``.

    ``p2p`` with ``n_gpus`` ≥ 2 is one send between two GPUs.
    """
    factor = bus_factor(op, n_gpus)
    if factor == 0.0:
        return 0.0 * bytes_per_gpu
    return link.alpha_s + factor * bytes_per_gpu / link.effective_Bps


def link_for_group(n_gpus: int, domain_size: int) -> str:
    """``nvlink`` when a group of ``n_gpus`` fits one NVLink domain, else ``ib``."""
    return "nvlink" if n_gpus <= domain_size else "ib"
