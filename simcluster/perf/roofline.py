"""The analytic op model: roofline time per op on one GPU, and the byte and FLOP counts behind it.

``t = max(bytes / (HBM_BW · eff_bw), flops / (FLOPS(class) · eff_compute)) + launch_overhead``

The *count* functions (``*_counts``) are the single source of every op's bytes and FLOPs: the
roofline uses them for time, the step composition (:mod:`simcluster.perf.composition`) uses them for
the breakdown, MFU/MBU and the ``simcluster cost`` report, whatever op-cost model supplies the time.
FLOPs count a multiply-add as 2. Shapes are per GPU (already divided by TP, KVP, EP).

Every function and method accepts Python numbers or numpy arrays (only arithmetic and
``np.maximum``), so the latency tables are built in one vectorised call per op.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simcluster.catalog.formats import get_format
from simcluster.catalog.gpus import GPUSpec
from simcluster.perf.collectives import LinkParams, collective_time, default_links

# Bit width of each compute class, to find which one a mixed-format op executes at.
_CLASS_WIDTH = {"fp4": 4, "fp6": 6, "fp8": 8, "int8": 8, "bf16": 16}


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of peak, and the fixed cost of one kernel.

    * ``mem_bw`` 0.8: aiconfigurator ``systems/*.yaml`` ``mem_bw_empirical_scaling_factor: 0.8``;
      shared calibration README: H200 bf16 m=1 8192×8192 GEMM reads weights at ≈3.8 of 4.8 TB/s.
    * ``compute`` 0.7: shared calibration README: H100 bf16 8192³ GEMM ≈713 of 989 TFLOP/s (0.72).
    * ``launch_overhead_s`` 3 µs: aiconfigurator ``mem_empirical_constant_latency: 0.000003``.
    """

    mem_bw: float = 0.8
    compute: float = 0.7
    launch_overhead_s: float = 3e-6

    @classmethod
    def peak(cls) -> "Efficiency":
        """Speed of light: 100 % of peak bandwidth and FLOP/s, no launch overhead."""
        return cls(1.0, 1.0, 0.0)


def executed_class(gpu: GPUSpec, *compute_classes: str) -> tuple[float, str]:
    """Peak FLOP/s and the compute class an op with these operand classes executes at.

    The widest operand decides (FP4 weights with BF16 activations run BF16 math after
    dequantisation); on a tie the last operand wins. Hardware without the class falls back to the
    next wider one (:meth:`GPUSpec.flops_for`: FP4 on Hopper runs as FP8).
    """
    widest = compute_classes[0]
    for cls in compute_classes[1:]:
        if _CLASS_WIDTH.get(cls, 16) >= _CLASS_WIDTH.get(widest, 16):
            widest = cls
    return gpu.flops_for(widest)


# ----------------------------------------------------------------------------- counts
def gemm_counts(m, n, k, b_w: float, b_a: float):
    """``[m,k] × [k,n]``: (weight bytes, activation bytes in + out, FLOPs)."""
    return n * k * b_w, (m * k + m * n) * b_a, 2.0 * m * n * k


def attention_decode_counts(batch, context_tokens, q_heads, kv_heads, head_dim, b_kv: float, b_a: float):
    """One decode token per sequence against ``context_tokens`` of GQA KV per sequence (this GPU).

    Returns (KV bytes read, KV bytes written, activation bytes (q in, o out), FLOPs: QK and PV).
    """
    kv_per_token = 2.0 * kv_heads * head_dim * b_kv
    kv_read = batch * context_tokens * kv_per_token
    kv_write = batch * kv_per_token
    act = batch * 2.0 * q_heads * head_dim * b_a
    flops = 4.0 * batch * q_heads * head_dim * context_tokens
    return kv_read, kv_write, act, flops


def causal_pairs(batch, new_tokens, past_tokens):
    """Query–key pairs of ``batch`` chunks of ``new_tokens`` after ``past_tokens`` (causal mask)."""
    return batch * new_tokens * (past_tokens + (new_tokens + 1) / 2.0)


def attention_prefill_counts(batch, new_tokens, past_tokens, q_heads, kv_heads, head_dim, b_kv, b_a, pairs=None):
    """Prefill chunks: (KV bytes read, KV bytes written, activation bytes, FLOPs).

    KV is read once per chunk (past and new keys), written once for the new tokens; ``pairs``
    (default: :func:`causal_pairs`) sets the FLOPs, 4·heads·head_dim per pair.
    """
    if pairs is None:
        pairs = causal_pairs(batch, new_tokens, past_tokens)
    kv_per_token = 2.0 * kv_heads * head_dim * b_kv
    kv_read = batch * (past_tokens + new_tokens) * kv_per_token
    kv_write = batch * new_tokens * kv_per_token
    act = batch * new_tokens * 2.0 * q_heads * head_dim * b_a
    flops = 4.0 * q_heads * head_dim * pairs
    return kv_read, kv_write, act, flops


def mla_decode_counts(batch, context_tokens, q_heads, kv_lora_rank, rope_dim, b_kv, b_a):
    """Absorbed MLA decode (SEED-NOTES §1.6): latent KV of ``d_c + d_rope`` per token, shared by heads.

    FLOPs ≈ 2·B·heads·S·(2·d_c + d_rope): QK over d_c + d_rope, PV over d_c.
    """
    latent = (kv_lora_rank + rope_dim) * b_kv
    kv_read = batch * context_tokens * latent
    kv_write = batch * latent
    act = batch * q_heads * (2 * kv_lora_rank + rope_dim) * b_a
    flops = 2.0 * batch * q_heads * context_tokens * (2 * kv_lora_rank + rope_dim)
    return kv_read, kv_write, act, flops


def mla_prefill_counts(batch, new_tokens, past_tokens, q_heads, kv_lora_rank, rope_dim, qk_head_dim, v_head_dim,
                       b_kv, b_a, pairs=None):
    """MLA prefill, not absorbed: the latent KV of the past is up-projected to per-head K and V
    again for each chunk (Beyond the Buzz's chunked-prefill MLA penalty), then ordinary attention
    with QK over ``qk_head_dim`` and PV over ``v_head_dim``. The new tokens' up-projection is
    counted with the projections (same FLOPs per token as the absorbed decode form)."""
    if pairs is None:
        pairs = causal_pairs(batch, new_tokens, past_tokens)
    latent = (kv_lora_rank + rope_dim) * b_kv
    kv_read = batch * (past_tokens + new_tokens) * latent
    kv_write = batch * new_tokens * latent
    act = batch * new_tokens * q_heads * (qk_head_dim + v_head_dim) * b_a
    nope = qk_head_dim - rope_dim
    up_past = 2.0 * batch * past_tokens * q_heads * kv_lora_rank * (nope + v_head_dim)
    flops = 2.0 * q_heads * (qk_head_dim + v_head_dim) * pairs + up_past
    return kv_read, kv_write, act, flops


def moe_experts_counts(tokens, experts, hidden, inter, b_w, b_a, weight_bytes_per_expert=None, extra_weight_bytes=0.0):
    """Grouped SwiGLU experts on one GPU: ``tokens`` token-expert pairs over ``experts`` distinct
    experts, each ``hidden × inter`` (this GPU's shard). Returns (weight bytes, act bytes, FLOPs).

    ``weight_bytes_per_expert`` overrides ``3·hidden·inter·b_w`` (compressed experts, ResMoE);
    ``extra_weight_bytes`` is read once (the ResMoE barycenter expert).
    """
    if weight_bytes_per_expert is None:
        weight_bytes_per_expert = 3.0 * hidden * inter * b_w
    w = experts * weight_bytes_per_expert + extra_weight_bytes
    act = tokens * (2.0 * hidden + 3.0 * inter) * b_a
    flops = 6.0 * tokens * hidden * inter
    return w, act, flops


# ----------------------------------------------------------------------------- the op model
class RooflineOps:
    """:class:`~simcluster.perf.interface.OpCosts` from datasheet peaks × :class:`Efficiency`.

    ``sol=True`` is speed of light: 100 % of peak, no launch overhead, no collective latency.
    ``activations`` is the activation format of every GEMM and attention (it decides, with the
    weight or KV format, which compute class executes). All methods are numpy-broadcast safe
    (``vectorised = True``).

    Beyond the :class:`OpCosts` protocol it offers ``attention_decode_mla``,
    ``attention_prefill_mla``, ``moe_experts`` and ``elementwise``; the step composition uses
    them from any op-cost model that has them and falls back to this class otherwise.
    """

    vectorised = True

    def __init__(self, gpu: GPUSpec, efficiency: Efficiency | None = None, *, sol: bool = False,
                 activations: str = "bf16", links: dict[str, LinkParams] | None = None) -> None:
        eff = Efficiency.peak() if sol else (efficiency or Efficiency())
        self.gpu = gpu
        self.efficiency = eff
        self.sol = sol
        self.mem_Bps = gpu.mem_bw_Bps * eff.mem_bw
        self.launch_overhead_s = eff.launch_overhead_s
        self.activations = get_format(activations)
        self.links = links if links is not None else default_links(gpu, sol=sol)

    # -- helpers
    def flops_rate(self, fmt: str) -> tuple[float, str]:
        """Achievable FLOP/s and executed class for an op on ``fmt`` operands with the activations."""
        peak, cls = executed_class(self.gpu, get_format(fmt).compute_class, self.activations.compute_class)
        return peak * self.efficiency.compute, cls

    def time(self, hbm_bytes, flops, flops_per_s: float):
        """Roofline seconds of one kernel."""
        return np.maximum(hbm_bytes / self.mem_Bps, flops / flops_per_s) + self.launch_overhead_s

    # -- OpCosts
    def gemm(self, m, n, k, fmt: str):
        w, a, f = gemm_counts(m, n, k, get_format(fmt).bytes_per_element, self.activations.bytes_per_element)
        return self.time(w + a, f, self.flops_rate(fmt)[0])

    def attention_decode(self, batch, context_tokens, q_heads, kv_heads, head_dim, kv_fmt: str):
        r, w, a, f = attention_decode_counts(batch, context_tokens, q_heads, kv_heads, head_dim,
                                             get_format(kv_fmt).bytes_per_element, self.activations.bytes_per_element)
        return self.time(r + w + a, f, self.flops_rate(kv_fmt)[0])

    def attention_prefill(self, batch, new_tokens, past_tokens, q_heads, kv_heads, head_dim, kv_fmt: str):
        r, w, a, f = attention_prefill_counts(batch, new_tokens, past_tokens, q_heads, kv_heads, head_dim,
                                              get_format(kv_fmt).bytes_per_element,
                                              self.activations.bytes_per_element)
        return self.time(r + w + a, f, self.flops_rate(kv_fmt)[0])

    def collective(self, op: str, bytes_per_gpu, n_gpus: int, link: str):
        return collective_time(op, bytes_per_gpu, n_gpus, self.links[link])

    # -- extensions
    def attention_decode_mla(self, batch, context_tokens, q_heads, kv_lora_rank, rope_dim, kv_fmt: str):
        r, w, a, f = mla_decode_counts(batch, context_tokens, q_heads, kv_lora_rank, rope_dim,
                                       get_format(kv_fmt).bytes_per_element, self.activations.bytes_per_element)
        return self.time(r + w + a, f, self.flops_rate(kv_fmt)[0])

    def attention_prefill_mla(self, batch, new_tokens, past_tokens, q_heads, kv_lora_rank, rope_dim,
                              qk_head_dim, v_head_dim, kv_fmt: str):
        r, w, a, f = mla_prefill_counts(batch, new_tokens, past_tokens, q_heads, kv_lora_rank, rope_dim,
                                        qk_head_dim, v_head_dim, get_format(kv_fmt).bytes_per_element,
                                        self.activations.bytes_per_element)
        return self.time(r + w + a, f, self.flops_rate(kv_fmt)[0])

    def moe_experts(self, tokens, experts, hidden, inter, fmt: str, weight_bytes_per_expert=None,
                    extra_weight_bytes=0.0):
        w, a, f = moe_experts_counts(tokens, experts, hidden, inter, get_format(fmt).bytes_per_element,
                                     self.activations.bytes_per_element, weight_bytes_per_expert,
                                     extra_weight_bytes)
        return self.time(w + a, f, self.flops_rate(fmt)[0])

    def elementwise(self, hbm_bytes):
        """A memory-bound kernel moving ``hbm_bytes`` (norms, activation functions, sampling)."""
        return hbm_bytes / self.mem_Bps + self.launch_overhead_s
