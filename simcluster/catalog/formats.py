"""Number formats for weights, activations and KV cache.

Bits per element include the shared scale of block formats:
``bits = element_bits + scale_bits / block_size``.
MX formats: OCP Microscaling v1.0 (block 32, E8M0 scale) -> MXFP8 8.25, MXFP6 6.25, MXFP4 4.25,
MXINT8 8.25 bits. NVFP4: E2M1 elements, block 16, E4M3 scale -> 4.5 bits (per-tensor FP32 scale
ignored). Source: SEED-NOTES §5 (OCP MX spec Table 1; NVIDIA NVFP4 description).

``compute_class`` names the tensor-core rate the format executes at on hardware that supports it
(see :meth:`simcluster.catalog.gpus.GPUSpec.flops_for`).
"""

from __future__ import annotations

from dataclasses import dataclass

from simcluster.errors import UserError


@dataclass(frozen=True)
class NumberFormat:
    name: str
    element_bits: int
    block_size: int | None = None  # elements sharing one scale; None = per-tensor scale only
    scale_bits: int = 0
    compute_class: str = "bf16"  # "bf16" | "fp8" | "fp6" | "fp4" | "int8"

    @property
    def bits_per_element(self) -> float:
        if self.block_size:
            return self.element_bits + self.scale_bits / self.block_size
        return float(self.element_bits)

    @property
    def bytes_per_element(self) -> float:
        return self.bits_per_element / 8.0


FORMATS: dict[str, NumberFormat] = {
    f.name: f
    for f in (
        NumberFormat("bf16", 16, compute_class="bf16"),
        NumberFormat("fp16", 16, compute_class="bf16"),
        NumberFormat("fp8", 8, compute_class="fp8"),  # E4M3 with per-tensor/per-channel scale (not counted)
        NumberFormat("int8", 8, compute_class="int8"),
        NumberFormat("mxfp8", 8, 32, 8, compute_class="fp8"),
        NumberFormat("mxfp6", 6, 32, 8, compute_class="fp6"),
        NumberFormat("mxfp4", 4, 32, 8, compute_class="fp4"),
        NumberFormat("mxint8", 8, 32, 8, compute_class="int8"),
        NumberFormat("nvfp4", 4, 16, 8, compute_class="fp4"),
        # Raw FP4 (E2M1) without counting scales: Helix App. A's "FP4 = 0.5 bytes" (SEED-NOTES §1.6).
        # Use mxfp4 / nvfp4 for byte accounting that includes the block scales.
        NumberFormat("fp4", 4, compute_class="fp4"),
        NumberFormat("int4", 4, 32, 16, compute_class="int8"),  # weight-only INT4, group 32, fp16 scale (AWQ/GPTQ style)
        # FP8 E4M3 with block scales (DeepSeek-V3 style: one FP32 scale per 128x128 weight tile and per
        # 1x128 activation group); the weight scales add 32/16384 bits per element (counted). Priced
        # from the measured ``fp8_block`` GEMM and MoE tables, which differ from per-tensor FP8.
        NumberFormat("fp8_block", 8, 16384, 32, compute_class="fp8"),
    )
}


def get_format(name: str, *, field: str | None = None) -> NumberFormat:
    """Look a format up by (case-insensitive) name; unknown names are a :class:`UserError`."""
    key = str(name).strip().lower()
    if key in ("bfloat16",):
        key = "bf16"
    if key in ("float16", "half"):
        key = "fp16"
    if key in ("e4m3", "float8", "fp8_e4m3"):
        key = "fp8"
    if key in ("fp8_blockwise", "fp8-block", "fp8block"):
        key = "fp8_block"
    try:
        return FORMATS[key]
    except KeyError:
        raise UserError(
            f"unknown number format {name!r}; known: {', '.join(sorted(FORMATS))}", where=field
        ) from None
