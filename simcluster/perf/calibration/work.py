"""FLOPs and HBM bytes of each measured op: the roofline that measured latencies are normalised by.

The calibrated tables store, and interpolate, *efficiency*: ``ln(latency / roofline)`` where
``roofline = max(flops / peak_flops, bytes / hbm_bandwidth)`` from the GPU's datasheet numbers.
Interpolating efficiency rather than raw latency keeps the physics (a GEMM's latency grows like
its FLOPs once compute-bound) and makes the fallback outside the table natural: hold the efficiency
of the nearest measured point and scale by the roofline.

Every function accepts Python numbers or numpy arrays (only arithmetic is used), so the same
formulas serve the scalar and the vectorised lookups. FLOPs count multiply and add separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from simcluster.catalog.formats import get_format
from simcluster.catalog.gpus import GPUSpec
from simcluster.errors import UserError

# Number formats as named by the measured tables -> (compute class, weight bytes, activation bytes).
# Block formats include their scales: fp8_block 128x128 weight blocks (fp32 scale) and 1x128
# activation groups; NVFP4 block 16 with an E4M3 scale; MXFP4 block 32 with an E8M0 scale;
# INT4 weight-only group 128 with a bf16 scale. Other format names come from the catalog
# (:mod:`simcluster.catalog.formats`), see :func:`dtype_info`.
DTYPES: dict[str, tuple[str, float, float]] = {
    "bfloat16": ("bf16", 2.0, 2.0),
    "float16": ("bf16", 2.0, 2.0),
    "fp8": ("fp8", 1.0, 1.0),
    "fp8_block": ("fp8", 1.0 + 4.0 / (128 * 128), 1.0 + 4.0 / 128),
    "nvfp4": ("fp4", 0.5625, 0.5625),
    "int4_wo": ("bf16", 0.5 + 2.0 / 128, 2.0),
    "w4a16_mxfp4": ("bf16", 0.53125, 2.0),
    "w4a8_mxfp4_mxfp8": ("fp8", 0.53125, 1.03125),
}
KV_BYTES = {"bfloat16": 2.0, "fp8": 1.0}


def _kv_bytes(key: dict) -> float:
    # ``kv_bytes`` carries a KV format that has no table of its own (e.g. 4-bit KV): the roofline
    # then uses its true size while the efficiency comes from the nearest measured KV format.
    return key.get("kv_bytes") or KV_BYTES.get(key.get("kv_dtype"), 2.0)


# DeepSeek-V3 MLA geometry (the only MLA model measured): hidden, q LoRA rank, KV LoRA rank,
# RoPE dim, no-PE qk dim, v head dim.
MLA_HIDDEN, MLA_Q_LORA, MLA_KV_LORA, MLA_ROPE, MLA_NOPE, MLA_V = 7168, 1536, 512, 64, 128, 128


@dataclass(frozen=True)
class Peaks:
    """Datasheet peaks of one GPU: FLOP/s per compute class, HBM bytes/s, scale-up link bytes/s."""

    flops: dict[str, float]
    hbm_Bps: float
    link_Bps: float

    @classmethod
    def of(cls, gpu: GPUSpec) -> "Peaks":
        flops = {c: gpu.flops_for(c)[0] for c in ("bf16", "fp8", "fp6", "fp4", "int8")}
        return cls(flops=flops, hbm_Bps=gpu.mem_bw_Bps, link_Bps=gpu.nvlink_Bps)

    def as_dict(self) -> dict[str, Any]:
        return {"flops": dict(self.flops), "hbm_Bps": self.hbm_Bps, "link_Bps": self.link_Bps}


def dtype_info(dtype: str) -> tuple[str, float, float]:
    """(compute class, weight bytes, activation bytes) of a table dtype or a catalog format name.

    Catalog formats carry their own compute class and bytes per element; activations are 16-bit
    for 16-bit compute, 8-bit for FP8/INT8 compute (W8A8, W4A8) and at the format's width below.
    """
    got = DTYPES.get(dtype)
    if got is None:
        got = _catalog_dtype(dtype)
    return got


@lru_cache(maxsize=64)
def _catalog_dtype(name: str) -> tuple[str, float, float]:
    try:
        fmt = get_format(name)
    except UserError:
        return DTYPES["bfloat16"]
    wb = fmt.bytes_per_element
    ab = {"bf16": 2.0, "fp8": max(wb, 1.0), "int8": max(wb, 1.0)}.get(fmt.compute_class, wb)
    return fmt.compute_class, wb, ab


def gemm(key: dict, m, n, k):
    """(flops, bytes, compute class) of ``[m,k] x [k,n]`` with bf16 output."""
    cls, wb, ab = dtype_info(key["dtype"])
    return 2.0 * m * n * k, m * k * ab + n * k * wb + m * n * 2.0, cls


def attention_prefill(key: dict, batch, isl, past=0):
    """One layer of causal attention over ``isl`` new tokens per sequence after ``past`` cached ones."""
    q, kv, hd = key["q_heads"], key["kv_heads"], key["head_dim"]
    kvb = _kv_bytes(key)
    pairs = isl * (past + (isl + 1) * 0.5)
    flops = 4.0 * batch * q * hd * pairs
    nbytes = batch * isl * q * hd * 4.0 + batch * (isl + past) * 2.0 * kv * hd * kvb
    return flops, nbytes, "fp8" if key.get("attn_dtype") == "fp8" else "bf16"


def attention_decode(key: dict, batch, ctx):
    """One layer of attention of one new token per sequence over ``ctx`` keys."""
    q, kv, hd = key["q_heads"], key["kv_heads"], key["head_dim"]
    kvb = _kv_bytes(key)
    flops = 4.0 * batch * q * hd * ctx
    nbytes = batch * ctx * 2.0 * kv * hd * kvb + batch * q * hd * 4.0
    return flops, nbytes, "bf16"


def mla_prefill(key: dict, batch, isl, past=0):
    """MLA core attention in prefill (K/V expanded from the latent: qk 192, v 128 per head)."""
    h = key["q_heads"]
    kvb = _kv_bytes(key)
    pairs = isl * (past + (isl + 1) * 0.5)
    flops = 2.0 * batch * h * pairs * (MLA_NOPE + MLA_ROPE + MLA_V)
    nbytes = (
        batch * isl * h * (2 * (MLA_NOPE + MLA_ROPE) + 2 * MLA_V) * 2.0 + batch * past * (MLA_KV_LORA + MLA_ROPE) * kvb
    )
    return flops, nbytes, "bf16"


def mla_decode(key: dict, batch, ctx):
    """MLA core attention in decode, absorbed form: every head reads the shared 576-wide latent."""
    h = key["q_heads"]
    kvb = _kv_bytes(key)
    lat = MLA_KV_LORA + MLA_ROPE
    flops = 2.0 * batch * h * ctx * (lat + MLA_KV_LORA)
    nbytes = batch * ctx * lat * kvb + batch * h * (lat + MLA_KV_LORA) * 2.0
    return flops, nbytes, "bf16"


def _mla_projections(h, tokens, wb, absorbed: bool):
    params = MLA_HIDDEN * MLA_Q_LORA + MLA_Q_LORA * h * (MLA_NOPE + MLA_ROPE) + MLA_HIDDEN * (MLA_KV_LORA + MLA_ROPE)
    params = params + h * MLA_V * MLA_HIDDEN
    params = params + (
        h * MLA_NOPE * MLA_KV_LORA + h * MLA_KV_LORA * MLA_V if absorbed else MLA_KV_LORA * h * (MLA_NOPE + MLA_V)
    )
    return 2.0 * tokens * params, params * wb + tokens * MLA_HIDDEN * 4.0


def mla_module_prefill(key: dict, batch, isl, past=0):
    """Whole MLA attention block of DeepSeek-V3 in prefill: projections plus core attention."""
    f, b, _ = mla_prefill(key, batch, isl, past)
    cls, wb, _ = dtype_info(key["gemm_dtype"])
    pf, pb = _mla_projections(key["q_heads"], batch * isl, wb, absorbed=False)
    return f + pf, b + pb, "bf16"


def mla_module_decode(key: dict, batch, ctx):
    """Whole MLA attention block of DeepSeek-V3 in decode (absorbed)."""
    f, b, _ = mla_decode(key, batch, ctx)
    cls, wb, _ = dtype_info(key["gemm_dtype"])
    pf, pb = _mla_projections(key["q_heads"], batch, wb, absorbed=True)
    return f + pf, b + pb, "bf16"


def mla_bmm(key: dict, tokens):
    """Per-head batched GEMM that absorbs W_UK (pre) or W_UV (post): [h,T,128] x [h,128,512] or back."""
    h = key["q_heads"]
    cls, wb, ab = dtype_info(key["dtype"])
    flops = 2.0 * tokens * h * MLA_NOPE * MLA_KV_LORA
    nbytes = h * MLA_NOPE * MLA_KV_LORA * wb + tokens * h * (MLA_NOPE + MLA_KV_LORA) * 2.0
    return flops, nbytes, cls


def moe(key: dict, tokens, tp, ep):
    """Routed experts of one MoE layer on one GPU of a tp x ep group (SwiGLU: 3 matrices per expert).

    ``tokens`` enter the layer (the whole group's batch); each goes to ``topk`` of ``experts``
    experts; this GPU holds ``experts/ep`` experts, each cut ``tp`` ways along the intermediate
    dimension. Weight bytes count the experts actually touched, assuming uniform routing.
    """
    cls, wb, ab = dtype_info(key["dtype"])
    hidden, inter, topk, experts = key["hidden"], key["inter"], key["topk"], key["experts"]
    local_experts = experts / ep
    inter_local = inter / tp
    local_assign = tokens * topk / ep
    touched = local_experts * (1.0 - (1.0 - topk / experts) ** tokens)
    flops = 6.0 * hidden * inter_local * local_assign
    nbytes = touched * 3.0 * hidden * inter_local * wb + local_assign * hidden * (ab + 2.0) + tokens * hidden * 4.0
    return flops, nbytes, cls


WORK = {
    "gemm": gemm,
    "attention_prefill": attention_prefill,
    "attention_decode": attention_decode,
    "mla_prefill": mla_prefill,
    "mla_decode": mla_decode,
    "mla_module_prefill": mla_module_prefill,
    "mla_module_decode": mla_module_decode,
    "mla_bmm": mla_bmm,
    "moe": moe,
}
