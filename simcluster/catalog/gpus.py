"""GPU catalog: memory, bandwidth, tensor-core FLOP/s per compute class, links, domain sizes.

Every number carries its source. Abbreviations used below:

* ``AIC``  NVIDIA ai-dynamo/aiconfigurator @095f58a5, ``systems/<gpu>.yaml`` (Apache-2.0); these
  files hold NVIDIA datasheet values (dense tensor FLOP/s) and nvidia-smi memory capacities.
* ``SN7``  SEED-NOTES §7 (NVIDIA datasheets as reproduced by glennklockwood.com and DGX docs).
* ``MX``   NVIDIA Blackwell architecture brief: FP6 runs at the FP8 rate, FP4 at twice FP8
  (Hopper has no FP6/FP4 tensor cores; those formats execute as FP8 after up-conversion).

FLOP/s are **dense** (no 2:4 sparsity). Bandwidths are bytes/s, **one direction**, per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from simcluster.errors import UserError

# Order in which a compute class falls back when the hardware lacks it: the next wider format.
_FALLBACK = {"fp4": "fp6", "fp6": "fp8", "fp8": "bf16", "int8": "bf16", "bf16": "bf16"}


@dataclass(frozen=True)
class GPUSpec:
    name: str
    display_name: str
    memory_bytes: float
    mem_bw_Bps: float
    flops_per_s: Mapping[str, float]  # dense tensor FLOP/s per compute class
    nvlink_Bps: float  # scale-up bandwidth per GPU, one direction
    nic_Bps: float  # scale-out NIC bandwidth per GPU, one direction
    gpus_per_node: int
    nvlink_domain_size: int  # GPUs that share one NVLink/NVSwitch fabric
    power_w: float
    price_per_hour_usd: float  # indicative on-demand price per GPU-hour, for cost summaries
    calibration_dir: str | None  # folder name under the aiconfigurator data, when measured
    sources: Mapping[str, str] = field(default_factory=dict)

    def flops_for(self, compute_class: str) -> tuple[float, str]:
        """Peak dense FLOP/s for a compute class, and the class that actually executes.

        A format without hardware support runs at the next wider rate (FP4 on Hopper runs as FP8).
        """
        cls = compute_class
        while cls not in self.flops_per_s:
            nxt = _FALLBACK.get(cls, "bf16")
            if nxt == cls:
                break
            cls = nxt
        return self.flops_per_s[cls], cls


def _flops(bf16: float, fp8: float, fp4: float | None = None) -> Mapping[str, float]:
    d = {"bf16": bf16, "fp8": fp8, "int8": fp8}
    if fp4 is not None:
        d["fp6"] = fp8  # MX: Blackwell FP6 at the FP8 rate
        d["fp4"] = fp4
    return MappingProxyType(d)


GPUS: dict[str, GPUSpec] = {
    g.name: g
    for g in (
        GPUSpec(
            name="h100_sxm",
            display_name="NVIDIA H100 SXM 80GB",
            memory_bytes=85_899_345_920,  # AIC mem_capacity (80 GiB)
            mem_bw_Bps=3.35e12,  # AIC / SN7: 3.35 TB/s HBM3
            flops_per_s=_flops(989e12, 1978e12),  # AIC / SN7 dense
            nvlink_Bps=450e9,  # AIC intra_node_bw; SN7 NVLink4 900 GB/s bidirectional
            nic_Bps=50e9,  # AIC inter_node_bw; ConnectX-7 400 Gb/s
            gpus_per_node=8,
            nvlink_domain_size=8,  # HGX H100
            power_w=700,  # AIC
            price_per_hour_usd=2.50,  # indicative cloud on-demand price, 2025
            calibration_dir="h100_sxm",
            sources=MappingProxyType({"all": "AIC systems/h100_sxm.yaml; SEED-NOTES §7"}),
        ),
        GPUSpec(
            name="h200_sxm",
            display_name="NVIDIA H200 SXM 141GB",
            memory_bytes=151_397_597_184,  # AIC mem_capacity (141 GiB)
            mem_bw_Bps=4.8e12,  # AIC / SN7: 4.8 TB/s HBM3e
            flops_per_s=_flops(989e12, 1978e12),  # AIC / SN7 dense (same die as H100)
            nvlink_Bps=450e9,  # AIC intra_node_bw
            nic_Bps=50e9,  # AIC inter_node_bw; ConnectX-7 400 Gb/s
            gpus_per_node=8,
            nvlink_domain_size=8,  # HGX H200
            power_w=700,  # AIC
            price_per_hour_usd=3.50,  # indicative cloud on-demand price, 2025
            calibration_dir="h200_sxm",
            sources=MappingProxyType({"all": "AIC systems/h200_sxm.yaml; SEED-NOTES §7"}),
        ),
        GPUSpec(
            name="b200_sxm",
            display_name="NVIDIA B200 SXM (HGX, 1000 W)",
            memory_bytes=193_273_528_320,  # AIC mem_capacity (180 GiB usable)
            mem_bw_Bps=7.7e12,  # AIC 7.7 TB/s (SN7: 8 TB/s marketed, DGX 64 TB/s / 8)
            flops_per_s=_flops(2250e12, 4500e12, 9000e12),  # AIC / SN7 dense
            nvlink_Bps=900e9,  # AIC intra_node_bw; NVLink5 1.8 TB/s bidirectional
            nic_Bps=50e9,  # SN7: DGX B200 has 8x ConnectX-7 400 Gb/s (AIC assumes CX8 100e9)
            gpus_per_node=8,
            nvlink_domain_size=8,
            power_w=1000,  # AIC
            price_per_hour_usd=5.50,  # indicative cloud on-demand price, 2025
            calibration_dir="b200_sxm",
            sources=MappingProxyType({"all": "AIC systems/b200_sxm.yaml; SEED-NOTES §7"}),
        ),
        GPUSpec(
            name="gb200",
            display_name="NVIDIA GB200 NVL72 (per GPU, 1200 W)",
            memory_bytes=198_674_743_296,  # AIC: 189,471 MiB reported by nvidia-smi
            mem_bw_Bps=8.0e12,  # AIC / SN7: 576 TB/s / 72; Helix uses 8000 GB/s
            flops_per_s=_flops(2500e12, 5000e12, 10000e12),  # AIC / SN7 dense
            nvlink_Bps=900e9,  # AIC; NVLink5 through NVSwitch across the rack
            nic_Bps=50e9,  # SN7: ConnectX-7 400 Gb/s per GPU [INFERRED]; AIC assumes CX8 100e9
            gpus_per_node=4,  # AIC: 4 GPUs per compute tray
            nvlink_domain_size=72,  # NVL72 rack
            power_w=1200,  # AIC
            price_per_hour_usd=6.50,  # indicative, 2025
            calibration_dir="gb200",
            sources=MappingProxyType({"all": "AIC systems/gb200.yaml; SEED-NOTES §7"}),
        ),
        GPUSpec(
            name="rtx_pro_6000",
            display_name="NVIDIA RTX PRO 6000 Blackwell Server",
            memory_bytes=102_641_958_912,  # AIC: 97,887 MiB reported by nvidia-smi
            mem_bw_Bps=1.792e12,  # AIC: 1.792 TB/s GDDR7
            flops_per_s=_flops(467.8e12, 935.6e12, 1871.2e12),  # AIC dense at 2430 MHz
            nvlink_Bps=64e9,  # AIC: no NVLink, PCIe Gen5 x16 between GPUs
            nic_Bps=50e9,  # AIC placeholder 400 Gb/s
            gpus_per_node=8,
            nvlink_domain_size=1,  # no NVLink: every GPU is its own scale-up domain
            power_w=600,  # AIC
            price_per_hour_usd=1.80,  # indicative, 2025
            calibration_dir="rtx_pro_6000_server",
            sources=MappingProxyType({"all": "AIC systems/rtx_pro_6000_server.yaml"}),
        ),
    )
}

_ALIASES = {
    "h100": "h100_sxm",
    "h100-sxm": "h100_sxm",
    "h200": "h200_sxm",
    "h200-sxm": "h200_sxm",
    "b200": "b200_sxm",
    "b200-sxm": "b200_sxm",
    "gb200-nvl72": "gb200",
    "gb200_nvl72": "gb200",
    "rtx-pro-6000": "rtx_pro_6000",
    "rtx_pro_6000_server": "rtx_pro_6000",
}


def get_gpu(name: str, *, field: str | None = None) -> GPUSpec:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return GPUS[key]
    except KeyError:
        raise UserError(f"unknown GPU {name!r}; known: {', '.join(sorted(GPUS))}", where=field) from None
