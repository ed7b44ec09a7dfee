"""How a layout turns a model into the ops of one engine step, per GPU, and what each op costs.

The :class:`Composer` resolves a :class:`~simcluster.perf.step_cost.CostSpec` once (formats, per-GPU
shapes and parameter counts, collective groups and links) and exposes:

* the **token-driven ops** of a step in three *sides*, each a function of one token count:
  ``attn`` (tokens on one attention replica: embedding, norms, projections, O-proj and its
  all-reduce, router, MoE dispatch/combine, shared experts, Medha combine, pipeline sends),
  ``ffn`` (tokens of the whole stage: dense FFN, routed experts and their collectives) and
  ``logits`` (sequences that sample a token: LM head, logits gather, sampling);
* the **attention core** per layer (decode: batch × context per GPU; prefill: chunks), and the
  Helix All-to-All per request, which HOP-B overlaps with the core;
* :meth:`Composer.describe`, the exact per-op breakdown of one step (``simcluster cost``).

Every op's bytes and FLOPs come from the count functions of :mod:`simcluster.perf.roofline`; its
time comes from the spec's op-cost model (``spec.ops``, the roofline by default). Everything is per
GPU; StepTime totals multiply by the GPUs of a stage. See ``docs/perf.md`` for every formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from simcluster.catalog.formats import get_format
from simcluster.catalog.models import ceil_div
from simcluster.perf import dsa
from simcluster.perf.collectives import link_for_group
from simcluster.perf.helix import a2a_send_bytes, exchange_span, hop_b_span
from simcluster.perf.layout import expert_slots
from simcluster.perf.moe import expected_experts_touched, load_imbalance, resmoe_expert_bytes
from simcluster.perf.roofline import (
    RooflineOps,
    attention_decode_counts,
    attention_prefill_counts,
    executed_class,
    gemm_counts,
    mla_decode_counts,
    mla_prefill_counts,
    moe_experts_counts,
)

# Embeddings, LM head and router stay in BF16 in quantised checkpoints (FP8 / NVFP4 releases keep
# them unquantised) [INFERRED]; logits are gathered and sampled in FP32 [INFERRED].
EMBEDDING_FORMAT = "bf16"
ROUTER_FORMAT = "bf16"
LOGIT_BYTES = 4.0
# RMSNorm + residual add, fused: read x and residual, write both [INFERRED]; two per layer.
NORM_BYTES_PER_ELEMENT_PASSES = 4.0
# 4-bit releases of MLA mixture-of-experts models quantise the experts (and dense FFNs) and keep the
# attention projections in BF16: NVIDIA ModelOpt's DeepSeek NVFP4 flow disables the quantisers of
# "*attn*" unless asked for FP8 MLA (TensorRT-Model-Optimizer examples/deepseek/ptq.py, mla_quant
# None by default; nvidia/DeepSeek-R1-0528-FP4 and the Kimi/GLM NVFP4 releases built the same way),
# and Kimi-K2.5's INT4 release quantises only the routed experts. gpt-oss ships MXFP4 for the MoE
# weights only (model card). Other models' 4-bit releases quantise every linear layer.
# (The raw "fp4" format of the seed papers' studies, "FP4 = 0.5 bytes" for every weight, is not a release.)
BF16_ATTENTION_FORMATS = ("nvfp4", "mxfp4", "int4")


def attention_weight_format(model, weights: str) -> str:
    """Number format of the attention projection weights of ``model`` released with ``weights``."""
    if weights in BF16_ATTENTION_FORMATS and model.is_moe and (model.is_mla or model.name.startswith("gpt-oss")):
        return "bf16"
    return weights


# Order of the components of a step (see StepTime).
LAT, W, KV, COMP, COMM, OTHER, FLOPS, BYTES = range(8)
N_COMP = 8


@dataclass
class OpEval:
    """One invocation of one op on one GPU. Arrays (or floats) over the evaluation points."""

    time_s: object
    weight_bytes: object = 0.0
    kv_read_bytes: object = 0.0
    kv_write_bytes: object = 0.0
    act_bytes: object = 0.0
    flops: object = 0.0
    mem_s: object = 0.0  # roofline memory time (for attribution)
    compute_s: object = 0.0  # roofline compute time (for attribution)
    overhead_s: object = 0.0  # fixed launch cost included in time_s
    comm_bytes: object = 0.0  # buffer bytes of a collective

    @property
    def hbm_bytes(self):
        return self.weight_bytes + self.kv_read_bytes + self.kv_write_bytes + self.act_bytes


@dataclass(frozen=True)
class Op:
    """A token-driven op: ``evaluate(x)`` for one invocation, ``count`` invocations per step."""

    name: str
    phase: str  # attention | ffn | moe | embedding | lm_head | pipeline
    per: str  # layer | dense | moe | step
    side: str  # attn | ffn | logits
    category: str  # weight | kv | act | comm (what a memory-bound op's time is attributed to)
    count: float
    evaluate: Callable[[np.ndarray], OpEval]
    detail: str = ""  # e.g. "all_reduce over 8 GPUs (nvlink)"
    kind: str | None = None  # per-layer op of one attention kind only (``AttentionKind.name``); None: every layer


def attribute(category: str, ev: OpEval) -> list:
    """Split an op's time into (weight, kv, compute, comm, other) seconds.

    A collective is comm. Otherwise the launch overhead is other, and the rest goes to compute
    when the roofline says the op is compute-bound, else to the op's memory category (weights,
    KV, or activations → other).
    """
    t = ev.time_s
    zero = 0.0 * t
    if category == "comm":
        return [zero, zero, zero, t, zero]
    ovh = np.minimum(ev.overhead_s, t)
    busy = t - ovh
    mem = np.where(ev.mem_s >= ev.compute_s, busy, 0.0)
    comp = busy - mem
    if category == "weight":
        return [mem, zero, comp, zero, ovh]
    if category == "kv":
        return [zero, mem, comp, zero, ovh]
    return [zero, zero, comp, zero, ovh + mem]


@dataclass(frozen=True)
class AttentionKind:
    """Layers that share an attention core: ``full`` or ``window`` (sliding window of ``window``)."""

    name: str
    layers: int
    window: int | None


@dataclass(frozen=True)
class StepSplit:
    """A step as seen by the busiest attention replica (DP attention splits sequences ``dp`` ways).

    Each replica gets ``ceil(seqs/dp)`` of the sequences at most, with their share of the tokens,
    context and pairs [INFERRED: the engine balances replicas]. ``tokens`` is the whole stage's.
    """

    decode_seqs: int
    decode_context: float
    prefill_seqs: int
    prefill_tokens: float
    prefill_pairs: float
    prefill_past: float
    replica_tokens: float
    tokens: int

    @staticmethod
    def of(shape, dp: int) -> "StepSplit":
        d, s = shape.decode_seqs, shape.prefill_seqs
        if dp == 1:
            return StepSplit(d, shape.decode_context_tokens, s, shape.prefill_tokens, shape.prefill_attn_pairs,
                             shape.prefill_past_tokens, d + shape.prefill_tokens, d + shape.prefill_tokens)
        da = -(-d // dp)
        ca = shape.decode_context_tokens * da / d if d else 0.0
        sa = -(-s // dp)
        f = sa / s if s else 0.0
        pa = shape.prefill_tokens * f
        return StepSplit(da, ca, sa, pa, shape.prefill_attn_pairs * f, shape.prefill_past_tokens * f, da + pa,
                         d + shape.prefill_tokens)


class Composer:
    """Everything about one spec that does not depend on the batch."""

    def __init__(self, spec) -> None:
        self.spec = spec
        m = self.model = spec.model
        lay = self.layout = spec.layout
        gpu = self.gpu = spec.gpu
        self.fmt_w = get_format(spec.weights)
        self.fmt_kv = get_format(spec.kv)
        self.fmt_a = get_format(spec.activations)
        self.b_w = self.fmt_w.bytes_per_element
        self.b_kv = self.fmt_kv.bytes_per_element
        self.b_a = self.fmt_a.bytes_per_element
        self.b_emb = get_format(EMBEDDING_FORMAT).bytes_per_element
        self.roof = RooflineOps(gpu, spec.efficiency, sol=spec.sol, activations=self.fmt_a.name)
        self.ops = spec.ops if spec.ops is not None else self.roof
        self.ops_is_roofline = self.ops is self.roof
        self.ops_vectorised = bool(getattr(self.ops, "vectorised", False))
        self.ops_overhead_s = float(getattr(self.ops, "launch_overhead_s", 0.0))
        self._dsa_prefill_scale = dsa.prefill_scale(gpu) if m.is_dsa else 1.0
        self._dsa_module = (dsa.module_source(gpu.calibration_dir or gpu.name, str(spec.framework).lower())
                            if m.is_dsa and not self.ops_is_roofline else None)
        self.domain = spec.nvlink_domain_size or gpu.nvlink_domain_size

        # -- shapes per GPU
        self.H = m.hidden_size
        self.Q = m.num_attention_heads
        self.hd = m.head_dim
        self.k_eff = 1 if m.is_mla else m.num_kv_heads
        self.N = lay.attention_group
        self.nl = lay.replica_gpus  # GPUs of one attention replica (LM head, embedding, shared experts)
        self.q_loc = self.Q / lay.tpa
        self.kvh_loc = ceil_div(self.k_eff, lay.tpa)  # KV heads per GPU: duplicated when tpa > K
        self.out_dim = self.Q * (m.v_head_dim if m.is_mla else m.head_dim)
        self.tp_dense = lay.ffn_group
        self.n_dense = m.dense_layers
        self.n_moe = m.moe_layers
        self.L = m.num_layers
        n_win = m.sliding_window_layers if m.sliding_window else 0
        # linear-attention layers are the windowed ones (catalog/models.py), with projections of their own
        self.n_linear = m.linear_attention_layers if n_win else 0
        self.attention_kinds = [k for k in (AttentionKind("full", self.L - n_win, None),
                                            AttentionKind("linear" if self.n_linear else "window", n_win,
                                                          m.sliding_window or None)) if k.layers]
        # KV elements one token adds to one layer on one GPU (KVP holds 1/kvp of each sequence)
        if m.is_mla:
            self.kv_elems_gpu = (m.kv_lora_rank + m.qk_rope_head_dim) / lay.kvp
        else:
            self.kv_elems_gpu = 2 * self.kvh_loc * self.hd / lay.kvp
        # MoE
        if m.is_moe:
            self.e_loc = m.num_experts / lay.ep  # experts' worth of routed load per GPU (balanced)
            self.expert_slots = expert_slots(m.num_experts, lay.ep)  # experts stored per GPU
            self.expert_params_gpu = 3.0 * self.H * m.moe_intermediate_size / lay.tpf
            keep = spec.resmoe_keep
            self.expert_bytes_gpu = resmoe_expert_bytes(self.expert_params_gpu, self.b_w, keep, spec.resmoe_index_bits)
            self.barycenter_bytes_gpu = self.expert_params_gpu * self.b_w if keep < 1.0 else 0.0
        # executed compute classes (what the breakdown reports)
        self.gemm_executes = executed_class(gpu, self.fmt_w.compute_class, self.fmt_a.compute_class)[1]
        self.attn_executes = executed_class(gpu, self.fmt_kv.compute_class, self.fmt_a.compute_class)[1]
        self.attn_rate = self.roof.flops_rate(self.fmt_kv.name)[0]  # achievable attention FLOP/s

        # -- Helix / Medha exchange after attention
        if m.is_mla and spec.a2a_payload == "latent":
            self.a2a_width = self.Q * m.kv_lora_rank
        else:
            self.a2a_width = self.H
        self.helix = lay.is_helix
        self.medha = lay.is_medha
        self.kvp_link = self.link(lay.kvp * lay.tpa)

        self.ops_list = self._build_ops()

    # ------------------------------------------------------------------ helpers
    def link(self, group_span: int) -> str:
        return link_for_group(group_span, self.domain)

    def _method(self, name: str):
        """The op-cost model's method for ``name`` (or an adapter to its own name for the op), else None."""
        fn = getattr(self.ops, name, None)
        if fn is not None or self.ops_is_roofline:
            return fn
        m = self.model
        ops = self.ops
        # CalibratedOps (perf/calibration/ops.py) names: MLA core attention measured with the
        # DeepSeek-V3 geometry only; the fused MoE op of one layer, tokens across the tp × ep group.
        deepseek_mla = m.is_mla and m.kv_lora_rank == 512 and m.qk_rope_head_dim == 64
        if name == "attention_decode_mla" and deepseek_mla and hasattr(ops, "mla_decode"):
            return lambda b, c, q, dc, dr, fmt: self._pick(ops, "mla_decode", b, c)(b, c, q, fmt)
        if name == "attention_prefill_mla" and deepseek_mla and hasattr(ops, "mla_prefill"):
            return lambda b, n, p, q, dc, dr, qk, v, fmt: ops.mla_prefill(b, n, p, q, fmt)
        return None

    @staticmethod
    def _pick(ops, name: str, *args):
        """``ops.<name>_many`` (the vectorised twin) when any argument is an array and it exists."""
        if any(isinstance(a, np.ndarray) for a in args):
            many = getattr(ops, name + "_many", None)
            if many is not None:
                return many
            return np.vectorize(getattr(ops, name), otypes=[float])
        return getattr(ops, name)

    def _call(self, name: str, *args):
        """Time of one op from the op-cost model; the roofline for ops it does not model."""
        if self.ops_is_roofline or (name == "collective" and args[0] == "p2p"):  # nothing measures p2p sends
            return getattr(self.roof, name)(*args)
        if hasattr(self.ops, name):
            if self.ops_vectorised:
                return getattr(self.ops, name)(*args)
            return self._pick(self.ops, name, *args)(*args)
        fn = self._method(name)
        return (fn if fn is not None else getattr(self.roof, name))(*args)

    def _overhead(self, name: str) -> float:
        fn = self._method(name)
        return self.roof.launch_overhead_s if (fn is None or self.ops_is_roofline) else self.ops_overhead_s

    # ------------------------------------------------------------------ op makers
    def _gemm(self, name, phase, per, side, count, n, k, fmt, kind=None) -> Op:
        """A GEMM with the side's token count as m."""
        b_w = get_format(fmt).bytes_per_element
        rate = self.roof.flops_rate(fmt)[0]

        def ev(x):
            w, a, f = gemm_counts(x, n, k, b_w, self.b_a)
            t = self._call("gemm", x, n, k, fmt)
            return OpEval(t, weight_bytes=w + 0.0 * x, act_bytes=a, flops=f, mem_s=(w + a) / self.roof.mem_Bps,
                          compute_s=f / rate, overhead_s=self._overhead("gemm"))

        return Op(name, phase, per, side, "weight", count, ev, f"[{n}x{k}] {fmt}", kind)

    def _elementwise(self, name, phase, per, side, count, bytes_of) -> Op:
        def ev(x):
            b = bytes_of(x)
            t = self._call("elementwise", b)
            return OpEval(t, act_bytes=b, mem_s=b / self.roof.mem_Bps, overhead_s=self._overhead("elementwise"))

        return Op(name, phase, per, side, "act", count, ev)

    def _collective(self, name, phase, per, side, count, op, group, span, bytes_of) -> Op:
        link = self.link(span)

        def ev(x):
            b = bytes_of(x)
            t = self._call("collective", op, b, group, link)
            return OpEval(t + 0.0 * b, comm_bytes=b)

        return Op(name, phase, per, side, "comm", count, ev, f"{op} over {group} GPUs ({link})")

    # ------------------------------------------------------------------ the op list
    def _build_ops(self) -> list[Op]:
        m, lay = self.model, self.layout
        H, b_a, wf = self.H, self.b_a, self.fmt_w.name
        wa = attention_weight_format(m, wf)  # the attention projections' format
        ops: list[Op] = []
        L, nd, nm, nl, N = self.L, self.n_dense, self.n_moe, self.nl, self.N
        n_full = L - self.n_linear  # full-attention layers (a hybrid's linear layers have their own ops)
        full_kind = "full" if self.n_linear else None
        V = m.vocab_size

        # ---- attention side: x = tokens on one attention replica
        ops.append(self._elementwise("embedding", "embedding", "step", "attn", 1,
                                     lambda x: x * H * (self.b_emb + b_a)))
        if nl > 1:  # vocab-parallel embedding: partial rows summed over the replica (vLLM)
            ops.append(self._collective("embedding_all_reduce", "embedding", "step", "attn", 1, "all_reduce",
                                        nl, nl, lambda x: x * H * b_a))
        ops.append(self._elementwise("rmsnorm_residual", "attention", "layer", "attn", 2 * L,
                                     lambda x: x * H * b_a * NORM_BYTES_PER_ELEMENT_PASSES))
        if m.is_mla:
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank:
                ops.append(self._gemm("q_a_proj", "attention", "layer", "attn", L, m.q_lora_rank, H, wa))
                ops.append(self._gemm("q_b_proj", "attention", "layer", "attn", L, int(self.q_loc * qk),
                                      m.q_lora_rank, wa))
            else:
                ops.append(self._gemm("q_proj", "attention", "layer", "attn", L, int(self.q_loc * qk), H, wa))
            ops.append(self._gemm("kv_a_proj", "attention", "layer", "attn", L,
                                  m.kv_lora_rank + m.qk_rope_head_dim, H, wa))
            # absorbed W_UK / W_UV (decode); for prefill tokens the same FLOPs up-project their K, V
            ops.append(self._gemm("kv_b_absorbed", "attention", "layer", "attn", L,
                                  int(self.q_loc * (m.qk_nope_head_dim + m.v_head_dim)), m.kv_lora_rank, wa))
            if m.is_dsa:  # the DSA indexer's projections, replicated on every GPU of the TP group
                ops.append(self._gemm("indexer_q_proj", "attention", "layer", "attn", L,
                                      m.index_n_heads * m.index_head_dim, m.q_lora_rank or H, wa))
                ops.append(self._gemm("indexer_k_proj", "attention", "layer", "attn", L,
                                      m.index_head_dim + m.index_n_heads, H, wa))
        else:
            gate = 2 if m.attn_output_gate else 1  # the query projection also yields the output gate
            ops.append(self._gemm("qkv_proj", "attention", "layer", "attn", n_full,
                                  int((gate * self.q_loc + 2 * self.kvh_loc) * self.hd), H, wa, kind=full_kind))
        if m.qk_norm == "layer":  # RMSNorm of q and k over the whole layer: fp32 variance, TP-global
            qk_w = (self.q_loc + self.kvh_loc) * self.hd
            norm = self._elementwise("qk_norm", "attention", "layer", "attn", n_full,
                                     lambda x: x * qk_w * b_a * NORM_BYTES_PER_ELEMENT_PASSES)
            ops.append(replace(norm, kind=full_kind))
            if lay.tpa > 1:  # one all-reduce of the q and k sums of squares (fp32) per token
                ar = self._collective("qk_norm_all_reduce", "attention", "layer", "attn", n_full, "all_reduce",
                                      lay.tpa, lay.tpa, lambda x: x * 2 * 4.0)
                ops.append(replace(ar, kind=full_kind))
        if self.n_linear:  # Gated DeltaNet: q, k, v, z and the per-head b, a, heads split over the TP group
            nk = ceil_div(m.linear_num_key_heads, lay.tpa)
            nv = ceil_div(m.linear_num_value_heads, lay.tpa)
            ops.append(self._gemm("linear_in_proj", "attention", "layer", "attn", self.n_linear,
                                  int(2 * nk * m.linear_key_head_dim + 2 * nv * m.linear_value_head_dim + 2 * nv),
                                  H, wa, kind="linear"))
        if self.medha:  # partial outputs + softmax stats gathered over KVP, merged in each TPA group
            per_token = self.out_dim / lay.tpa * b_a + self.q_loc * self.spec.a2a_n_stat * 4.0
            ops.append(self._collective("kvp_all_gather", "attention", "layer", "attn", L, "all_gather",
                                        lay.kvp, lay.kvp * lay.tpa, lambda x: lay.kvp * x * per_token))
        if self.n_linear:
            ops.append(self._gemm("o_proj", "attention", "layer", "attn", n_full, H,
                                  self.out_dim // lay.tpo, wa, kind=full_kind))
            ops.append(self._gemm("linear_out_proj", "attention", "layer", "attn", self.n_linear, H,
                                  m.linear_num_value_heads * m.linear_value_head_dim // lay.tpo, wa, kind="linear"))
        else:
            ops.append(self._gemm("o_proj", "attention", "layer", "attn", L, H, self.out_dim // lay.tpo, wa))
        if lay.tpo > 1:
            ops.append(self._collective("o_proj_all_reduce", "attention", "layer", "attn", L, "all_reduce",
                                        lay.tpo, lay.tpo, lambda x: x * H * b_a))
        if m.is_moe:
            k, E = m.num_experts_per_token, m.num_experts
            ops.append(self._gemm("router", "moe", "moe", "attn", nm, E, H, ROUTER_FORMAT))
            if lay.dp > 1 and lay.tpf == 1:  # pure EP: each token goes to the ranks of its k experts
                g = lay.ffn_group
                ops.append(self._collective("moe_dispatch", "moe", "moe", "attn", nm, "all_to_all", g, N,
                                            lambda x: x * k * H * b_a))
                ops.append(self._collective("moe_combine", "moe", "moe", "attn", nm, "all_to_all", g, N,
                                            lambda x: x * k * H * b_a))
            if m.num_shared_experts:
                f_sh = m.num_shared_experts * m.moe_intermediate_size / nl
                ops.append(self._gemm("shared_gate_up", "moe", "moe", "attn", nm, int(2 * f_sh), H, wf))
                ops.append(self._gemm("shared_down", "moe", "moe", "attn", nm, H, int(f_sh), wf))
                if lay.dp > 1 and nl > 1:
                    ops.append(self._collective("shared_all_reduce", "moe", "moe", "attn", nm, "all_reduce",
                                                nl, nl, lambda x: x * H * b_a))
        if lay.pp > 1:
            ops.append(self._collective("pp_send", "pipeline", "step", "attn", lay.pp - 1, "p2p", 2,
                                        N * lay.pp, lambda x: x * H * b_a))

        # ---- FFN side: x = tokens of the whole stage
        if nd:
            tpd = self.tp_dense
            F = m.intermediate_size
            if lay.dp > 1:
                ops.append(self._collective("ffn_all_gather", "ffn", "dense", "ffn", nd, "all_gather", tpd, tpd,
                                            lambda x: x * H * b_a))
            ops.append(self._gemm("ffn_gate_up", "ffn", "dense", "ffn", nd, 2 * F // tpd, H, wf))
            ops.append(self._elementwise("ffn_activation", "ffn", "dense", "ffn", nd,
                                         lambda x: x * 3.0 * F / tpd * b_a))
            ops.append(self._gemm("ffn_down", "ffn", "dense", "ffn", nd, H, F // tpd, wf))
            if tpd > 1:
                if lay.dp > 1:
                    ops.append(self._collective("ffn_reduce_scatter", "ffn", "dense", "ffn", nd, "reduce_scatter",
                                                tpd, tpd, lambda x: x * H * b_a))
                else:
                    ops.append(self._collective("ffn_all_reduce", "ffn", "dense", "ffn", nd, "all_reduce", tpd,
                                                tpd, lambda x: x * H * b_a))
        if nm:
            ops.append(self._experts_op())
            k = m.num_experts_per_token
            if lay.dp > 1 and lay.tpf > 1:
                # DP attention with TP-sharded experts: every rank gathers the tokens of all replicas,
                # runs its experts' shards on them and sums its partial outputs over its experts
                # locally; one reduce-scatter over the FFN group then sums the shards and returns each
                # replica its tokens (TRT-LLM's MoE all-gather / reduce-scatter path when the
                # all-to-all is not used, SGLang's DP-attention gather / scatter)
                g = lay.ffn_group
                ops.append(self._collective("moe_all_gather", "moe", "moe", "ffn", nm, "all_gather", g, g,
                                            lambda x: x * H * b_a))
                ops.append(self._collective("moe_reduce_scatter", "moe", "moe", "ffn", nm, "reduce_scatter",
                                            g, g, lambda x: x * H * b_a))
            if lay.dp == 1 and lay.ffn_group > 1:
                # Helix / TEP: every GPU holds all tokens; the partial outputs of the experts (and of the
                # TP-sharded shared experts) are summed over the FFN group. The paper's "intra-expert
                # all-reduce + inter-expert all-gather + local reduction" is modelled as the one
                # all-reduce that does the same reduction with the least traffic [INFERRED].
                ops.append(self._collective("moe_all_reduce", "moe", "moe", "ffn", nm, "all_reduce",
                                            lay.ffn_group, lay.ffn_group, lambda x: x * H * b_a))

        # ---- logits side: x = sequences sampling a token on one replica
        ops.append(self._gemm("lm_head", "lm_head", "step", "logits", 1, ceil_div(V, nl), H, EMBEDDING_FORMAT))
        if nl > 1:
            ops.append(self._collective("logits_all_gather", "lm_head", "step", "logits", 1, "all_gather", nl, nl,
                                        lambda x: x * V * LOGIT_BYTES))
        ops.append(self._elementwise("sampling", "lm_head", "step", "logits", 1, lambda x: x * V * LOGIT_BYTES * 2))
        return ops

    def _experts_op(self) -> Op:
        m, lay = self.model, self.layout
        k, E, ep = m.num_experts_per_token, m.num_experts, lay.ep
        inter = m.moe_intermediate_size / lay.tpf
        fixed_imbalance = self.spec.moe_load_imbalance
        wf = self.fmt_w.name
        rate = self.roof.flops_rate(wf)[0]

        # CalibratedOps' fused MoE op (tokens across the group, full expert width) when it applies:
        # plain experts (no ResMoE) and its own routing-imbalance model (no fixed factor)
        fused = (self._method("moe_experts") is None and hasattr(self.ops, "moe") and self.spec.resmoe_keep >= 1.0
                 and fixed_imbalance is None)

        def ev(x):
            imb = fixed_imbalance if fixed_imbalance is not None else load_imbalance(x, k, ep)
            pairs = x * k / ep * imb
            touched = expected_experts_touched(x, E, k, ep)
            extra = np.where(x > 0, self.barycenter_bytes_gpu, 0.0)
            w, a, f = moe_experts_counts(pairs, touched, self.H, inter, self.b_w, self.b_a, self.expert_bytes_gpu,
                                         extra)
            if fused:
                t = self._pick(self.ops, "moe", x)(x, self.H, m.moe_intermediate_size, k, E, lay.tpf, ep, wf)
            else:
                t = self._call("moe_experts", pairs, touched, self.H, inter, wf, self.expert_bytes_gpu, extra)
            return OpEval(t, weight_bytes=w, act_bytes=a, flops=f, mem_s=(w + a) / self.roof.mem_Bps,
                          compute_s=f / rate, overhead_s=self.ops_overhead_s if fused else self._overhead("moe_experts"))

        held = (f"{self.expert_slots} expert slots/GPU ({E} experts + {self.expert_slots * ep - E} redundant)"
                if self.expert_slots * ep != E else f"{self.e_loc:g} experts/GPU")
        return Op("routed_experts", "moe", "moe", "ffn", "weight", self.n_moe, ev, f"{held}, top-{k}, {wf}")

    # ------------------------------------------------------------------ side evaluation (tables)
    def side_components(self, side: str, x: np.ndarray) -> np.ndarray:
        """Σ over the side's ops of count × (latency, weight, kv, compute, comm, other, flops, bytes),
        per GPU, at token counts ``x`` (zero tokens cost nothing). Shape (8, len(x))."""
        out = np.zeros((N_COMP, len(x)))
        live = x > 0
        for op in self.ops_list:
            if op.side != side or op.count == 0:
                continue
            ev = op.evaluate(x)
            parts = attribute(op.category, ev)
            for i, p in enumerate(parts):
                out[W + i] += op.count * np.where(live, p, 0.0)
            out[FLOPS] += op.count * np.where(live, ev.flops, 0.0)
            out[BYTES] += op.count * np.where(live, ev.hbm_bytes, 0.0)
        out[LAT] = out[W:OTHER + 1].sum(axis=0)
        return out

    # ------------------------------------------------------------------ attention core
    def decode_counts(self, batch, ctx_gpu):
        """(KV read, KV write, act bytes, FLOPs) of one layer's decode attention on one GPU."""
        m = self.model
        if m.is_mla:
            return mla_decode_counts(batch, ctx_gpu, self.q_loc, m.kv_lora_rank, m.qk_rope_head_dim, self.b_kv,
                                     self.b_a)
        return attention_decode_counts(batch, ctx_gpu, self.q_loc, self.kvh_loc, self.hd, self.b_kv, self.b_a)

    def attention_decode(self, batch, ctx_gpu) -> OpEval:
        """One layer's decode attention: ``batch`` sequences with ``ctx_gpu`` KV tokens each on this GPU.

        The new token's KV write is spread over the KVP ranks (round-robin), hence ``/kvp``.
        """
        m, kvp = self.model, self.layout.kvp
        ctx_all = ctx_gpu
        if m.is_dsa:  # the sparse attention reads the indexer's top-k tokens only
            ctx_gpu = np.minimum(ctx_gpu, m.index_topk / kvp)
        r, w, a, f = self.decode_counts(batch, ctx_gpu)
        w = w / kvp
        if m.is_mla:
            t = self._call("attention_decode_mla", batch, ctx_gpu, self.q_loc, m.kv_lora_rank, m.qk_rope_head_dim,
                           self.fmt_kv.name)
            ovh = self._overhead("attention_decode_mla")
        else:
            t = self._call("attention_decode", batch, ctx_gpu, self.q_loc, self.kvh_loc, self.hd, self.fmt_kv.name)
            ovh = self._overhead("attention_decode")
        if m.is_dsa:
            ti, ri, fi = self.indexer_decode(batch, ctx_all, t)
            t, r, f = ti, r + ri, f + fi
        return OpEval(t, kv_read_bytes=r, kv_write_bytes=w, act_bytes=a, flops=f,
                      mem_s=(r + w + a) / self.roof.mem_Bps, compute_s=f / self.attn_rate, overhead_s=ovh)

    # ------------------------------------------------------------------ DSA indexer (perf/dsa.py)
    def indexer_decode(self, batch, ctx_gpu, core_s):
        """(seconds, key bytes read, FLOPs) of one layer's decode attention core of a DSA model —
        the indexer and the sparse MLA, whose own time is ``core_s`` — for ``batch`` sequences of
        ``ctx_gpu`` cached tokens each on this GPU. With measured op costs it is what the collectors
        measured for GLM-5's whole attention module on this GPU and framework (perf/dsa.py:
        module_source) at the nearest heads-per-GPU count, less that module's own projections priced
        by the same GEMM tables, and never less than ``core_s``; with the roofline, ``core_s`` plus
        the indexer's roofline. With KVP each rank runs the module over its own share of the context."""
        m = self.model
        keys = np.asarray(batch, dtype=float) * ctx_gpu
        r = keys * m.indexer_key_bytes_per_token_per_layer()
        f = 2.0 * m.index_n_heads * m.index_head_dim * keys
        if self.ops_is_roofline:
            fp8 = self.roof.flops_rate("fp8")[0]
            return core_s + np.maximum(r / self.roof.mem_Bps, f / fp8) + 2.0 * self.roof.launch_overhead_s, r, f
        system, fw, scale = self._dsa_module
        table = dsa.module_table(system, fw, attention_weight_format(m, self.fmt_w.name), self.fmt_kv.name,
                                 float(self.q_loc))
        gemm, h = table[2], table[3]
        x = np.asarray(batch, dtype=float)
        proj = sum(self._call("gemm", x, n, k, gemm) for _, n, k in dsa.module_projections(h))
        module = dsa.module_decode_s(table, batch, ctx_gpu)
        return np.maximum((module - proj) * scale, core_s), r, f

    def indexer_prefill(self, pairs: float, keys: float):
        """(seconds, key bytes read, FLOPs) of one layer's DSA indexer over ``pairs`` causal
        (query, key) pairs whose chunks hold ``keys`` tokens in all."""
        m = self.model
        r = keys * m.indexer_key_bytes_per_token_per_layer()
        f = 2.0 * m.index_n_heads * m.index_head_dim * pairs
        if self.ops_is_roofline:
            fp8 = self.roof.flops_rate("fp8")[0]
            t = max(r / self.roof.mem_Bps, f / fp8) + 2.0 * self.roof.launch_overhead_s
        else:
            t = float(dsa.indexer_prefill_s(pairs, m.index_n_heads, m.index_head_dim, self._dsa_prefill_scale))
        return t, r, f

    def attention_prefill(self, seqs: float, tokens: float, past: float, pairs: float,
                          window: int | None = None) -> OpEval:
        """One layer's prefill attention on one GPU for ``seqs`` chunks (``tokens`` new, ``past`` in
        KV, ``pairs`` causal query–key pairs, all summed over the chunks). A sliding ``window`` caps
        the pairs at ``tokens × window`` and the past read at ``seqs × window`` [INFERRED].

        With KVP every rank sees all queries and its 1/kvp shard of the keys: KV bytes, pairs and the
        MLA up-projection of the past divide by kvp, query/output activations do not. An op-cost
        model other than the roofline is asked for uniform chunks whose past gives the same pair
        count, and its time divided by kvp [INFERRED].
        """
        m, kvp = self.model, self.layout.kvp
        if seqs <= 0 or tokens <= 0:
            return OpEval(0.0)
        idx = None
        q = self.q_loc
        if m.is_dsa and (past + tokens) / seqs > m.index_topk:
            # beyond index_topk keys a query attends to its top-k only, after the indexer scored all
            # of its keys (up to index_topk keys SGLang runs dense MHA and no indexer); the sparse
            # kernels work on at least dsa.SPARSE_MIN_HEADS query heads
            idx = self.indexer_prefill(pairs / kvp, (past + tokens) / kvp)
            window = min(window or m.index_topk, m.index_topk)
            q = max(q, dsa.SPARSE_MIN_HEADS)
        if window:
            pairs = min(pairs, tokens * window)
            past = min(past, seqs * window)
        n, p_avg = tokens / seqs, past / seqs
        p_eq = max(pairs / tokens - (n + 1) / 2.0, 0.0)
        if m.is_mla:
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            r, w, a, f = mla_prefill_counts(seqs, n, p_avg, q, m.kv_lora_rank, m.qk_rope_head_dim, qk,
                                            m.v_head_dim, self.b_kv, self.b_a, pairs=pairs / kvp)
            up_past = 2.0 * past * q * m.kv_lora_rank * (m.qk_nope_head_dim + m.v_head_dim)
            f = f - up_past + up_past / kvp
            name = "attention_prefill_mla"
            call_args = (seqs, n, p_eq, q, m.kv_lora_rank, m.qk_rope_head_dim, qk, m.v_head_dim,
                         self.fmt_kv.name)
        else:
            r, w, a, f = attention_prefill_counts(seqs, n, p_avg, self.q_loc, self.kvh_loc, self.hd, self.b_kv,
                                                  self.b_a, pairs=pairs / kvp)
            name = "attention_prefill"
            call_args = (seqs, n, p_eq, self.q_loc, self.kvh_loc, self.hd, self.fmt_kv.name)
        r, w = r / kvp, w / kvp
        rate = self.attn_rate
        mem_s = (r + w + a) / self.roof.mem_Bps
        fn = self._method(name)
        if self.ops_is_roofline or fn is None:
            ovh = self.roof.launch_overhead_s
            t = max(mem_s, f / rate) + ovh
        else:
            ovh = self.ops_overhead_s
            t = float(fn(*call_args)) / kvp
        if idx is not None:
            t, r, f = t + idx[0], r + idx[1], f + idx[2]
            mem_s += idx[1] / self.roof.mem_Bps
        return OpEval(t, kv_read_bytes=r, kv_write_bytes=w, act_bytes=a, flops=f, mem_s=mem_s, compute_s=f / rate,
                      overhead_s=ovh)

    def exchange_s(self, tokens: float) -> float:
        """Seconds of one Helix All-to-All (one layer) carrying the partial outputs of ``tokens`` tokens."""
        lay = self.layout
        if lay.kvp == 1:
            return 0.0
        send = a2a_send_bytes(tokens, self.a2a_width, self.Q, lay.kvp, lay.tpa, self.b_a, self.spec.a2a_n_stat)
        buffer = send * lay.kvp / (lay.kvp - 1)
        return float(self._call("collective", "all_to_all", buffer, lay.kvp, self.kvp_link))

    def a2a_send_bytes(self, tokens: float) -> float:
        lay = self.layout
        return float(a2a_send_bytes(tokens, self.a2a_width, self.Q, lay.kvp, lay.tpa, self.b_a, self.spec.a2a_n_stat))

    def context_cap(self, kind: AttentionKind) -> float:
        """Largest KV a sequence keeps for this kind of layer (window, eviction budget)."""
        cap = math.inf
        if kind.window:
            cap = kind.window
        if self.spec.kv_eviction_budget:
            cap = min(cap, self.spec.kv_eviction_budget)
        return cap

    # ------------------------------------------------------------------ exact breakdown
    def _reset_provenance(self) -> None:
        ops = self.spec.ops
        if ops is not None and hasattr(ops, "last_sources"):
            ops.last_sources = np.zeros(0, dtype=np.uint8)
            ops.last_source = ""

    def _provenance(self) -> str:
        """Where the op's time came from: measured / interpolated / extrapolated(...) / roofline."""
        ops = self.spec.ops
        if ops is None:
            return "roofline(sol)" if self.spec.sol else "roofline"
        return getattr(ops, "last_source", "") or "roofline"

    def describe(self, shape) -> dict:
        """The exact per-op cost of one step (no table lookups), as plain data.

        Per-layer ``weight_read_s`` and ``kv_read_s`` are DRAM read times (bytes / effective HBM
        bandwidth) whatever bounds the op: under ``sol`` they are Helix Appendix A's t_W and t_KV.
        """
        lay = self.layout
        sp = StepSplit.of(shape, lay.dp)
        x_side = {"attn": sp.replica_tokens, "ffn": sp.tokens, "logits": sp.decode_seqs + sp.prefill_seqs}
        per_op = []
        totals = np.zeros(N_COMP)
        mem_Bps = self.roof.mem_Bps
        for op in self.ops_list:
            x = float(x_side[op.side])
            if op.count == 0:
                continue
            self._reset_provenance()
            ev = op.evaluate(np.array([x])) if x > 0 else OpEval(np.zeros(1))
            parts = [float(np.asarray(p).reshape(-1)[0]) for p in attribute(op.category, ev)]
            rec = _op_record(op.name, op.phase, op.per, op.count, ev, op.category, op.detail)
            rec["source"] = self._provenance()
            if op.kind:
                rec["kind"] = op.kind
            per_op.append(rec)
            totals[W:OTHER + 1] += op.count * np.array(parts)
            totals[FLOPS] += op.count * rec["flops"]
            totals[BYTES] += op.count * rec["hbm_bytes"]

        kinds = []
        hop = []
        for kind in self.attention_kinds:
            cap = self.context_cap(kind)
            core = OpEval(0.0)
            dec = pre = None
            src = {}
            if sp.decode_seqs:
                c = min(sp.decode_context / sp.decode_seqs, cap) / lay.kvp
                self._reset_provenance()
                dec = self.attention_decode(np.array([float(sp.decode_seqs)]), np.array([c]))
                src["attention_decode"] = self._provenance()
                if self._dsa_module is not None:  # the measured DSA module prices it (perf/dsa.py)
                    src["attention_decode"] = "module {}/{}".format(*self._dsa_module[:2])
            if sp.prefill_seqs:
                self._reset_provenance()
                pre = self.attention_prefill(sp.prefill_seqs, sp.prefill_tokens, sp.prefill_past, sp.prefill_pairs,
                                             kind.window)
                src["attention_prefill"] = self._provenance()
            recs = []
            core_t = 0.0
            for name, ev in (("attention_decode", dec), ("attention_prefill", pre)):
                if ev is None:
                    continue
                dsa_note = f", DSA indexer + top-{self.model.index_topk}" if self.model.is_dsa else ""
                rec = _op_record(name, "attention", "layer", kind.layers, ev, "kv",
                                 f"{kind.name}, executes as {self.attn_executes}{dsa_note}")
                rec["source"] = src[name]
                recs.append(rec)
                parts = [float(np.asarray(p).reshape(-1)[0]) for p in attribute("kv", ev)]
                totals[W:OTHER + 1] += kind.layers * np.array(parts)
                totals[FLOPS] += kind.layers * rec["flops"]
                totals[BYTES] += kind.layers * rec["hbm_bytes"]
                core_t += rec["time_s"]
            hop_rec = None
            if self.helix and (sp.decode_seqs or sp.prefill_seqs):
                n = sp.decode_seqs + sp.prefill_seqs
                t_req = self.exchange_s(sp.replica_tokens / n)
                t_batch = self.exchange_s(sp.replica_tokens)
                t_c = core_t / n
                model, on = self.spec.exchange_model, self.spec.hop_b
                span = float(exchange_span(n, core_t, t_req, t_batch, on, model))
                no_overlap = float(exchange_span(n, core_t, t_req, t_batch, False, model))
                exposed = span - core_t
                totals[COMM] += kind.layers * exposed
                hop_rec = {"kind": kind.name, "hop_b": on, "exchange_model": model, "requests": n,
                           "t_c_s": t_c, "t_m_request_s": t_req, "t_m_batch_s": t_batch,
                           "paper_lockstep_s": float(hop_b_span(n, t_c, t_req, False)),
                           "paper_pipelined_s": float(hop_b_span(n, t_c, t_req, True)),
                           "no_overlap_s": no_overlap, "span_s": span, "hidden_s": no_overlap - span,
                           "exposed_comm_s": exposed, "a2a_send_bytes": self.a2a_send_bytes(sp.replica_tokens),
                           "link": self.kvp_link}
                hop.append(hop_rec)
            kinds.append((kind, recs, hop_rec))

        overhead = 0.0 if self.spec.sol else self.spec.resolved_step_overhead_s
        totals[OTHER] += overhead
        totals[LAT] = totals[W:OTHER + 1].sum()
        n_gpu = self.N
        layers = self._layer_report(per_op, kinds, mem_Bps)
        return {
            "latency_s": float(totals[LAT]),
            "components": {"weight_read_s": float(totals[W]), "kv_read_s": float(totals[KV]),
                           "compute_s": float(totals[COMP]), "comm_s": float(totals[COMM]),
                           "other_s": float(totals[OTHER])},
            "flops": float(totals[FLOPS] * n_gpu),
            "hbm_bytes": float(totals[BYTES] * n_gpu),
            "step_overhead_s": overhead,
            "layers": layers,
            "per_step_ops": [r for r in per_op if r["per"] == "step"],
            "hop_b": hop,
            "split": {"decode_seqs_per_replica": sp.decode_seqs, "prefill_seqs_per_replica": sp.prefill_seqs,
                      "tokens_per_replica": sp.replica_tokens, "tokens_per_stage": sp.tokens},
        }

    def _layer_combos(self) -> list[tuple[AttentionKind, str, int]]:
        """(attention kind, ffn kind, layers) for every kind of layer that occurs."""
        combos = []
        for kind in self.attention_kinds:
            for ffn, n in (("dense", self.n_dense), ("moe", self.n_moe)):
                share = round(kind.layers * n / self.L)
                if share:
                    combos.append((kind, ffn, share))
        return combos

    def _layer_report(self, per_op, kinds, mem_Bps) -> list[dict]:
        out = []
        by_kind = {k.name: (recs, hop) for k, recs, hop in kinds}
        for kind, ffn, count in self._layer_combos():
            recs = [r for r in per_op if r["per"] in ("layer", ffn) and r.get("kind") in (None, kind.name)]
            # per-layer records: ops counted several times per layer (norms) scaled to one layer
            layer_recs = []
            for r in recs:
                if r.get("kind"):
                    layers_of_kind = kind.layers
                else:
                    layers_of_kind = self.L if r["per"] == "layer" else (self.n_dense if ffn == "dense" else self.n_moe)
                reps = r["count"] / layers_of_kind
                layer_recs.append({**r, "per_layer": reps})
            attn_recs, hop = by_kind.get(kind.name, ([], None))
            # the attention core sits between the projections and the exchange / O-projection
            ends = ("kvp_all_gather", "o_proj", "linear_out_proj")
            at = next((i for i, r in enumerate(layer_recs) if r["name"] in ends), len(layer_recs))
            layer_recs[at:at] = [{**r, "per_layer": 1.0} for r in attn_recs]
            wb = sum(r["weight_bytes"] * r["per_layer"] for r in layer_recs)
            kvb = sum(r["kv_read_bytes"] * r["per_layer"] for r in layer_recs)
            kvw = sum(r["kv_write_bytes"] * r["per_layer"] for r in layer_recs)
            fl = sum(r["flops"] * r["per_layer"] for r in layer_recs)
            lat = sum(r["time_s"] * r["per_layer"] for r in layer_recs)
            if hop:
                lat += hop["exposed_comm_s"]
            out.append({
                "attention": kind.name, "ffn": ffn, "count": count,
                "latency_s": lat,
                "weight_read_s": wb / mem_Bps, "kv_read_s": kvb / mem_Bps, "kv_write_s": kvw / mem_Bps,
                "weight_bytes": wb, "kv_read_bytes": kvb, "flops": fl,
                "a2a_send_bytes": hop["a2a_send_bytes"] if hop else 0.0,
                "hop_b_hidden_s": hop["hidden_s"] if hop else 0.0,
                "ops": layer_recs,
            })
        return out


def _op_record(name, phase, per, count, ev: OpEval, category, detail) -> dict:
    def f(v):
        return float(np.asarray(v).reshape(-1)[0]) if np.ndim(v) else float(v)

    t = f(ev.time_s)
    mem, comp = f(ev.mem_s), f(ev.compute_s)
    if category == "comm":
        bound = "comm"
    elif t == 0.0:
        bound = "-"
    else:
        bound = "memory" if mem >= comp else "compute"
    return {"name": name, "phase": phase, "per": per, "count": count, "time_s": t,
            "weight_bytes": f(ev.weight_bytes), "kv_read_bytes": f(ev.kv_read_bytes),
            "kv_write_bytes": f(ev.kv_write_bytes), "act_bytes": f(ev.act_bytes), "flops": f(ev.flops),
            "hbm_bytes": f(ev.hbm_bytes), "comm_bytes": f(ev.comm_bytes), "bound": bound, "detail": detail}
