"""GPU memory of one instance: weights per GPU, KV bytes per token per GPU, KV capacity.

Weights per GPU come from the same per-GPU op shapes the step cost uses (so the two never
disagree): attention projections (Helix/KVP replicate QKV over the KVP ranks; MLA's down-projections
are replicated over TP), the O-projection sharded ``tpo`` ways, dense FFNs over the FFN group,
routed experts ``E/ep`` per GPU each sharded ``tpf`` ways (ResMoE: compressed residuals plus one
barycenter expert), shared experts and the vocab-parallel embedding and LM head over one attention
replica. Layers are split over PP stages as evenly as possible (the first stages take the extra
layer; the dense-FFN layers of an MoE model come first); the busiest stage decides.

KV per token per GPU = layers of the stage × KV elements per token per layer on one GPU × bytes,
where a GPU holds ``⌈K/tpa⌉`` KV heads (duplicated when tpa > K; MLA's latent counts as one head)
and ``1/kvp`` of every sequence. Sliding-window layers are counted as full layers here
(conservative, as :meth:`ModelSpec.kv_bytes_per_token`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simcluster.errors import UserError

# Memory that is neither weights nor KV, per GPU: aiconfigurator systems/*.yaml ``misc.other_mem``
# (3.5 GiB, "covers part of the inaccurate mem calc") plus ``nccl_mem`` for groups of ≥ 4 GPUs
# (392 MiB) when the instance has more than one GPU.
OTHER_MEM_BYTES = 3_758_096_384
NCCL_MEM_BYTES = 411_041_792
_ONE_TOKEN = np.array([1.0])


@dataclass(frozen=True)
class MemoryPlan:
    """Memory of one instance. Bytes; token counts per instance (all DP replicas)."""

    gpus: int
    memory_bytes_per_gpu: float
    gpu_memory_utilization: float
    activation_reserve_bytes: float  # per GPU
    weight_bytes_per_gpu: float  # busiest stage
    kv_bytes_per_gpu: float  # left for KV on the stage that limits capacity
    kv_bytes_per_token_per_gpu: float  # on that stage
    kv_capacity_tokens: int  # tokens of KV the instance holds (× dp replicas, × kvp sharding)
    kv_copies: int  # copies of each KV element inside a replica (tpa / K when tpa > K, else 1)
    kv_tokens_per_seq_cap: int | None  # eviction budget: a sequence keeps at most this many tokens
    weight_bytes_total: float  # over all GPUs of the instance


def _stage_layers(n_layers: int, pp: int) -> list[int]:
    base, extra = divmod(n_layers, pp)
    return [base + (1 if s < extra else 0) for s in range(pp)]


def memory_plan(spec, gpu_memory_utilization: float = 0.9, activation_reserve_bytes: float | None = None, *,
                field: str | None = None, composer=None) -> MemoryPlan:
    """Weights and KV capacity of one instance of ``spec``; a :class:`UserError` when weights do not fit.

    ``activation_reserve_bytes`` per GPU defaults to :data:`OTHER_MEM_BYTES` (+ :data:`NCCL_MEM_BYTES`
    with more than one GPU).
    """
    from simcluster.perf.composition import Composer

    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise UserError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization!r}", where=field)
    c = composer if composer is not None else Composer(spec)
    m, lay, gpu = c.model, c.layout, c.gpu
    if activation_reserve_bytes is None:
        activation_reserve_bytes = OTHER_MEM_BYTES + (NCCL_MEM_BYTES if lay.gpus > 1 else 0)

    # weight bytes per GPU of one layer of each kind, and per-step tensors (from the op shapes)
    per_layer = {"layer": 0.0, "dense": 0.0, "moe": 0.0}
    lm_head = 0.0
    for op in c.ops_list:
        if op.category != "weight" or op.name == "routed_experts":
            continue
        w = float(op.evaluate(_ONE_TOKEN).weight_bytes[0])
        if op.per == "step":
            lm_head += w
        else:
            reps = op.count / {"layer": c.L, "dense": c.n_dense, "moe": c.n_moe}[op.per]
            per_layer[op.per] += w * reps
    if m.is_moe:
        per_layer["moe"] += c.expert_slots * c.expert_bytes_gpu + c.barycenter_bytes_gpu
    embedding = lm_head  # vocab-parallel table over one replica, same shape and format as the LM head
    # (DSA models also cache the indexer's FP8 keys and scales, not split over the TP group)
    kv_per_layer = c.kv_elems_gpu * c.b_kv + m.indexer_key_bytes_per_token_per_layer() / lay.kvp

    usable = gpu.memory_bytes * gpu_memory_utilization
    stages = _stage_layers(c.L, lay.pp)
    start = 0
    worst_w = 0.0
    best = None  # (tokens per replica, free bytes, kv bytes/token) of the limiting stage
    for s, n in enumerate(stages):
        dense = max(0, min(start + n, c.n_dense) - start)
        w = n * per_layer["layer"] + dense * per_layer["dense"] + (n - dense) * per_layer["moe"]
        if s == 0:
            w += embedding
        if s == lay.pp - 1 and not (m.tie_word_embeddings and lay.pp == 1):
            w += lm_head
        start += n
        worst_w = max(worst_w, w)
        free = usable - activation_reserve_bytes - w
        if free <= 0:
            raise UserError(
                f"model does not fit: weights need {w / 1e9:.1f} GB per GPU, GPU has "
                f"{gpu.memory_bytes / 1e9:.1f} GB × utilisation {gpu_memory_utilization:g} "
                f"(= {usable / 1e9:.1f} GB) minus {activation_reserve_bytes / 1e9:.1f} GB for activations",
                where=field)
        kv_tok = n * kv_per_layer
        tokens = int(free // kv_tok) if kv_tok > 0 else 0
        if best is None or tokens < best[0]:
            best = (tokens, free, kv_tok)
    tokens, free, kv_tok = best
    copies = max(1, lay.tpa // c.k_eff) if lay.tpa > c.k_eff else 1
    return MemoryPlan(
        gpus=lay.gpus, memory_bytes_per_gpu=gpu.memory_bytes, gpu_memory_utilization=gpu_memory_utilization,
        activation_reserve_bytes=float(activation_reserve_bytes), weight_bytes_per_gpu=worst_w,
        kv_bytes_per_gpu=free, kv_bytes_per_token_per_gpu=kv_tok, kv_capacity_tokens=tokens * lay.dp,
        kv_copies=copies, kv_tokens_per_seq_cap=spec.kv_eviction_budget,
        weight_bytes_total=_total_weights(c, per_layer, embedding, lm_head),
    )


def _total_weights(c, per_layer, embedding, lm_head) -> float:
    m = c.model
    per_gpu_all_layers = (c.L * per_layer["layer"] + c.n_dense * per_layer["dense"] + c.n_moe * per_layer["moe"]
                          + embedding + (0.0 if m.tie_word_embeddings else lm_head))
    return per_gpu_all_layers * c.N
