"""Model catalog: transformer shapes for dense GQA, MLA and MoE models, and HF ``config.json`` files.

Shapes are copied from each model's published Hugging Face ``config.json`` (the source named in each
entry); parameter counts and KV sizes are derived from the shapes, never typed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from simcluster.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # dense SwiGLU FFN width (dense layers)
    vocab_size: int
    tie_word_embeddings: bool = False
    max_context: int = 131072
    attention: str = "gqa"  # "gqa" | "mla"
    # MLA (DeepSeek-V2/V3): latent KV of kv_lora_rank + qk_rope_head_dim per token and layer
    q_lora_rank: int = 0  # 0: queries projected directly from the hidden state
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # MoE
    num_experts: int = 0  # routed experts per MoE layer (0: dense model)
    num_experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    first_k_dense_layers: int = 0  # leading layers with a dense FFN in an MoE model
    # sliding-window attention (gpt-oss alternates full and windowed layers)
    sliding_window: int = 0
    sliding_window_layers: int = 0
    # gated attention (Qwen3-Next, Qwen3.5): the query projection also produces a per-head output
    # gate, so it is twice as wide (``attn_output_gate`` in the config)
    attn_output_gate: bool = False
    # linear-attention (Gated DeltaNet) layers of a hybrid model: their projections are
    # in_proj_qkvz (hidden -> 2 * key heads * key dim + 2 * value heads * value dim), in_proj_ba
    # (hidden -> 2 * value heads) and out_proj (value heads * value dim -> hidden). They are the
    # model's windowed layers (``sliding_window_layers``): their fixed-size recurrent state is priced
    # as the KV of a window of the full layers' geometry (see the Qwen3.5 entry).
    linear_attention_layers: int = 0
    linear_num_key_heads: int = 0
    linear_num_value_heads: int = 0
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    linear_conv_kernel_dim: int = 0
    # DeepSeek sparse attention (DSA: DeepSeek-V3.2, GLM-5): a lightning indexer scores every past
    # token of every query with ``index_n_heads`` FP8 heads of ``index_head_dim`` over its own key
    # cache (one FP8 key and an fp32 scale per token and layer), keeps the ``index_topk`` best, and the
    # MLA attention reads only those. 0: dense attention.
    index_topk: int = 0
    index_n_heads: int = 0
    index_head_dim: int = 0
    # RMSNorm of the queries and keys over all heads of a layer at once ("layer": MiniMax-M2's
    # ``qk_norm_type: per_layer``): under tensor parallelism each rank holds some heads, so the
    # variance is all-reduced over the TP group every layer (vLLM MiniMaxText01RMSNormTP.forward_qk)
    qk_norm: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.index_topk and (self.attention != "mla" or self.index_n_heads <= 0 or self.index_head_dim <= 0):
            raise UserError(f"DeepSeek sparse attention (index_topk {self.index_topk}) needs MLA attention "
                            "(kv_lora_rank) and positive index_n_heads and index_head_dim", where=f"model {self.name}")
        if self.linear_attention_layers and self.linear_attention_layers != self.sliding_window_layers:
            raise UserError(f"linear_attention_layers ({self.linear_attention_layers}) must be the windowed layers "
                            f"({self.sliding_window_layers}): linear layers are priced as windows",
                            where=f"model {self.name}")

    # ---------------------------------------------------------------- structure
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.attention == "mla"

    @property
    def is_dsa(self) -> bool:
        return self.index_topk > 0

    @property
    def moe_layers(self) -> int:
        return self.num_layers - self.first_k_dense_layers if self.is_moe else 0

    @property
    def dense_layers(self) -> int:
        return self.num_layers - self.moe_layers

    # ---------------------------------------------------------------- parameters (elements)
    @property
    def full_attention_layers(self) -> int:
        return self.num_layers - self.linear_attention_layers

    def linear_attention_params_per_layer(self) -> int:
        """Parameters of one linear-attention (Gated DeltaNet) layer: in_proj_qkvz, in_proj_ba, the
        depthwise causal convolution over q, k, v, and out_proj (0 for models without such layers)."""
        if not self.linear_attention_layers:
            return 0
        h = self.hidden_size
        kd = self.linear_num_key_heads * self.linear_key_head_dim
        vd = self.linear_num_value_heads * self.linear_value_head_dim
        in_proj = h * (2 * kd + 2 * vd) + h * 2 * self.linear_num_value_heads
        conv = (2 * kd + vd) * self.linear_conv_kernel_dim
        return in_proj + conv + vd * h

    def attention_params_per_layer(self) -> int:
        """Parameters of one full-attention layer (with the output gate where the model has one)."""
        h, q = self.hidden_size, self.num_attention_heads
        if self.is_mla:
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                wq = h * self.q_lora_rank + self.q_lora_rank * q * qk
            else:
                wq = h * q * qk
            wkv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            wkv_b = self.kv_lora_rank * q * (self.qk_nope_head_dim + self.v_head_dim)
            wo = q * self.v_head_dim * h
            return wq + wkv_a + wkv_b + wo + self.indexer_params_per_layer()
        hd, k = self.head_dim, self.num_kv_heads
        gate = 2 if self.attn_output_gate else 1
        return gate * h * q * hd + 2 * h * k * hd + q * hd * h

    def indexer_params_per_layer(self) -> int:
        """The DSA indexer's projections: wq_b (query LoRA -> index heads x index dim), wk (hidden ->
        index dim) and weights_proj (hidden -> index heads); 0 for dense attention."""
        if not self.is_dsa:
            return 0
        q_in = self.q_lora_rank or self.hidden_size
        return (q_in * self.index_n_heads * self.index_head_dim
                + self.hidden_size * (self.index_head_dim + self.index_n_heads))

    def dense_ffn_params_per_layer(self) -> int:
        return 3 * self.hidden_size * self.intermediate_size  # SwiGLU: gate, up, down

    def expert_params(self) -> int:
        """Parameters of one routed (or shared) expert."""
        return 3 * self.hidden_size * self.moe_intermediate_size

    def embedding_params(self) -> int:
        emb = self.vocab_size * self.hidden_size
        return emb if self.tie_word_embeddings else 2 * emb

    def param_counts(self) -> dict[str, int]:
        """Parameter counts by part; ``total`` and ``active`` (per token) are the sums."""
        attn = (self.full_attention_layers * self.attention_params_per_layer()
                + self.linear_attention_layers * self.linear_attention_params_per_layer())
        dense = self.dense_layers * self.dense_ffn_params_per_layer()
        routed = self.moe_layers * self.num_experts * self.expert_params()
        shared = self.moe_layers * self.num_shared_experts * self.expert_params()
        router = self.moe_layers * self.hidden_size * self.num_experts
        emb = self.embedding_params()
        active_routed = self.moe_layers * self.num_experts_per_token * self.expert_params()
        total = attn + dense + routed + shared + router + emb
        active = attn + dense + active_routed + shared + router + emb
        return {
            "attention": attn,
            "dense_ffn": dense,
            "routed_experts": routed,
            "shared_experts": shared,
            "router": router,
            "embedding": emb,
            "total": total,
            "active": active,
        }

    # ---------------------------------------------------------------- KV cache
    def kv_elements_per_token_per_layer(self) -> int:
        """KV elements one token adds to one layer: 2·K·head_dim (GQA) or d_c + d_rope (MLA)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def indexer_key_bytes_per_token_per_layer(self) -> int:
        """The DSA indexer's key cache: one FP8 key of ``index_head_dim`` and its fp32 scale per token
        and layer (SGLang's and vLLM's DeepSeek-V3.2 indexer cache), whatever the KV format."""
        return self.index_head_dim + 4 if self.is_dsa else 0

    def kv_bytes_per_token(self, bytes_per_element: float) -> float:
        """KV bytes per token over all layers (windowed layers counted as full, see below)."""
        return self.num_layers * (self.kv_elements_per_token_per_layer() * bytes_per_element
                                  + self.indexer_key_bytes_per_token_per_layer())

    def kv_bytes_for_context(self, context_tokens: float, bytes_per_element: float) -> float:
        """KV bytes held for one sequence of ``context_tokens``; windowed layers keep the window only."""
        per = self.kv_elements_per_token_per_layer() * bytes_per_element
        full = self.num_layers - self.sliding_window_layers
        win = min(context_tokens, self.sliding_window) if self.sliding_window_layers else 0
        return (per * (full * context_tokens + self.sliding_window_layers * win)
                + self.indexer_key_bytes_per_token_per_layer() * self.num_layers * context_tokens)

    def with_name(self, name: str) -> "ModelSpec":
        return replace(self, name=name)


def _spec(**kw) -> ModelSpec:
    return ModelSpec(**kw)


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        _spec(
            name="llama-3.1-8b", num_layers=32, hidden_size=4096, num_attention_heads=32,
            num_kv_heads=8, head_dim=128, intermediate_size=14336, vocab_size=128256,
            source="meta-llama/Llama-3.1-8B config.json",
        ),
        _spec(
            name="llama-3.1-70b", num_layers=80, hidden_size=8192, num_attention_heads=64,
            num_kv_heads=8, head_dim=128, intermediate_size=28672, vocab_size=128256,
            source="meta-llama/Llama-3.1-70B config.json",
        ),
        _spec(
            name="llama-3.1-405b", num_layers=126, hidden_size=16384, num_attention_heads=128,
            num_kv_heads=8, head_dim=128, intermediate_size=53248, vocab_size=128256,
            source="meta-llama/Llama-3.1-405B config.json; SEED-NOTES §1.8",
        ),
        _spec(
            name="qwen3-32b", num_layers=64, hidden_size=5120, num_attention_heads=64,
            num_kv_heads=8, head_dim=128, intermediate_size=25600, vocab_size=151936,
            max_context=40960, source="Qwen/Qwen3-32B config.json",
        ),
        _spec(
            name="qwen3-235b-a22b", num_layers=94, hidden_size=4096, num_attention_heads=64,
            num_kv_heads=4, head_dim=128, intermediate_size=12288, vocab_size=151936,
            num_experts=128, num_experts_per_token=8, moe_intermediate_size=1536,
            max_context=40960, source="Qwen/Qwen3-235B-A22B config.json",
        ),
        _spec(
            name="deepseek-v3", num_layers=61, hidden_size=7168, num_attention_heads=128,
            num_kv_heads=128, head_dim=128, intermediate_size=18432, vocab_size=129280,
            attention="mla", q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
            qk_rope_head_dim=64, v_head_dim=128, num_experts=256, num_experts_per_token=8,
            moe_intermediate_size=2048, num_shared_experts=1, first_k_dense_layers=3,
            max_context=163840, source="deepseek-ai/DeepSeek-V3 config.json; SEED-NOTES §1.8",
        ),
        _spec(
            name="gpt-oss-120b", num_layers=36, hidden_size=2880, num_attention_heads=64,
            num_kv_heads=8, head_dim=64, intermediate_size=2880, vocab_size=201088,
            num_experts=128, num_experts_per_token=4, moe_intermediate_size=2880,
            sliding_window=128, sliding_window_layers=18,
            source="openai/gpt-oss-120b config.json (alternating sliding/full attention)",
        ),
        # -- added for the silicon validation set (docs/validation.md); shapes from each config.json
        _spec(
            name="kimi-k2", num_layers=61, hidden_size=7168, num_attention_heads=64,
            num_kv_heads=64, head_dim=128, intermediate_size=18432, vocab_size=163840,
            attention="mla", q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
            qk_rope_head_dim=64, v_head_dim=128, num_experts=384, num_experts_per_token=8,
            moe_intermediate_size=2048, num_shared_experts=1, first_k_dense_layers=1,
            max_context=262144,
            source="moonshotai/Kimi-K2-Instruct and Kimi-K2.5 config.json (text model; DeepSeek-V3 "
            "architecture with 64 heads and 384 experts)",
        ),
        _spec(
            name="glm-5", num_layers=78, hidden_size=6144, num_attention_heads=64,
            num_kv_heads=64, head_dim=64, intermediate_size=12288, vocab_size=154880,
            attention="mla", q_lora_rank=2048, kv_lora_rank=512, qk_nope_head_dim=192,
            qk_rope_head_dim=64, v_head_dim=256, num_experts=256, num_experts_per_token=8,
            moe_intermediate_size=2048, num_shared_experts=1, first_k_dense_layers=3,
            max_context=202752, index_topk=2048, index_n_heads=32, index_head_dim=128,
            source="zai-org/GLM-5-FP8 config.json (GlmMoeDsa: MLA + MoE with DeepSeek sparse attention: "
            "index_topk 2048, index_n_heads 32, index_head_dim 128)",
        ),
        _spec(
            name="minimax-m2", num_layers=62, hidden_size=3072, num_attention_heads=48,
            num_kv_heads=8, head_dim=128, intermediate_size=1536, vocab_size=200064,
            num_experts=256, num_experts_per_token=8, moe_intermediate_size=1536,
            max_context=196608, qk_norm="layer",
            source="MiniMaxAI/MiniMax-M2 config.json (MiniMaxM2ForCausalLM; M2.5 shares the architecture): "
            "62 full-attention layers, GQA 48/8, head_dim 128, 256 experts top-8, no shared expert, "
            "use_qk_norm with qk_norm_type per_layer",
        ),
        _spec(
            name="gpt-oss-20b", num_layers=24, hidden_size=2880, num_attention_heads=64,
            num_kv_heads=8, head_dim=64, intermediate_size=2880, vocab_size=201088,
            num_experts=32, num_experts_per_token=4, moe_intermediate_size=2880,
            sliding_window=128, sliding_window_layers=12,
            source="openai/gpt-oss-20b config.json (alternating sliding/full attention)",
        ),
        _spec(
            # Hybrid: 45 Gated-DeltaNet (linear attention) layers and 15 gated full-attention layers
            # (full_attention_interval 4). The linear layers' projections are their own (linear_*
            # fields; 118 M parameters a layer, against 105 M for a gated full layer); their attention
            # core is priced as a windowed layer [INFERRED]: the recurrent state (64 value heads x
            # 128 x 128 = 1 Mi elements per layer and sequence; 4 MiB in fp32, 2 MiB in bf16) is the
            # KV of a 2,048-token (fp32 state) or 1,024-token (bf16) window of the full layers'
            # geometry at 2 x 2 x 256 elements of 2 B per token; 2,048 is used. With these shapes
            # the parameter counts are 396 B total and 17.3 B active (the name: 397B-A17B).
            name="qwen3.5-397b-a17b", num_layers=60, hidden_size=4096, num_attention_heads=32,
            num_kv_heads=2, head_dim=256, intermediate_size=1024, vocab_size=248320,
            num_experts=512, num_experts_per_token=10, moe_intermediate_size=1024, num_shared_experts=1,
            sliding_window=2048, sliding_window_layers=45, max_context=262144, attn_output_gate=True,
            linear_attention_layers=45, linear_num_key_heads=16, linear_num_value_heads=64,
            linear_key_head_dim=128, linear_value_head_dim=128, linear_conv_kernel_dim=4,
            source="Qwen/Qwen3.5-397B-A17B config.json (text_config; linear-attention state priced as a "
            "2,048-token window, see the comment)",
        ),
    )
}
MODELS["deepseek-r1"] = MODELS["deepseek-v3"].with_name("deepseek-r1")  # same architecture
MODELS["kimi-k2.5"] = MODELS["kimi-k2"].with_name("kimi-k2.5")  # same text model
MODELS["minimax-m2.5"] = MODELS["minimax-m2"].with_name("minimax-m2.5")  # same architecture
# DeepSeek-V3 with DeepSeek sparse attention (deepseek-ai/DeepSeek-V3.2 config.json: index_topk 2048,
# index_n_heads 64, index_head_dim 128)
MODELS["deepseek-v3.2"] = replace(MODELS["deepseek-v3"], name="deepseek-v3.2", index_topk=2048, index_n_heads=64,
                                  index_head_dim=128, source="deepseek-ai/DeepSeek-V3.2 config.json (DeepSeek-V3 "
                                  "with DeepSeek sparse attention: index_topk 2048, index_n_heads 64, index_head_dim 128)")

_ALIASES = {
    "llama3.1-8b": "llama-3.1-8b", "meta-llama/llama-3.1-8b": "llama-3.1-8b",
    "meta-llama/llama-3.1-8b-instruct": "llama-3.1-8b",
    "llama3.1-70b": "llama-3.1-70b", "meta-llama/llama-3.1-70b": "llama-3.1-70b",
    "meta-llama/llama-3.1-70b-instruct": "llama-3.1-70b", "meta-llama/llama-3.3-70b-instruct": "llama-3.1-70b",
    "llama3.1-405b": "llama-3.1-405b", "meta-llama/llama-3.1-405b": "llama-3.1-405b",
    "meta-llama/llama-3.1-405b-instruct": "llama-3.1-405b",
    "qwen/qwen3-32b": "qwen3-32b", "qwen/qwen3-235b-a22b": "qwen3-235b-a22b",
    "deepseek-ai/deepseek-v3": "deepseek-v3", "deepseek-ai/deepseek-r1": "deepseek-r1",
    "deepseek-ai/deepseek-r1-0528": "deepseek-r1", "deepseek-ai/deepseek-v3-0324": "deepseek-v3",
    "openai/gpt-oss-120b": "gpt-oss-120b",
    # checkpoints of the catalog architectures (quantised releases keep the shapes)
    "qwen/qwen3-235b-a22b-fp8": "qwen3-235b-a22b", "qwen/qwen3-32b-fp8": "qwen3-32b",
    "nvidia/qwen3-32b-nvfp4": "qwen3-32b", "nvidia/qwen3-235b-a22b-nvfp4": "qwen3-235b-a22b",
    "nvidia/llama-3.1-8b-instruct-fp8": "llama-3.1-8b", "nvidia/llama-3.3-70b-instruct-fp8": "llama-3.1-70b",
    "nvidia/llama-3.1-70b-instruct-fp8": "llama-3.1-70b", "meta-llama/llama-3.3-70b": "llama-3.1-70b",
    "llama-3.3-70b": "llama-3.1-70b",
    "nvidia/deepseek-r1-nvfp4": "deepseek-r1", "nvidia/deepseek-r1-0528-nvfp4": "deepseek-r1",
    "nvidia/deepseek-r1-fp4": "deepseek-r1", "nvidia/deepseek-v3-0324-nvfp4": "deepseek-v3",
    "nvidia/deepseek-v3.1-nvfp4": "deepseek-v3", "deepseek-ai/deepseek-v3.1": "deepseek-v3",
    "moonshotai/kimi-k2-instruct": "kimi-k2", "moonshotai/kimi-k2-thinking": "kimi-k2",
    "moonshotai/kimi-k2.5": "kimi-k2.5", "nvidia/kimi-k2.5-nvfp4": "kimi-k2.5",
    "zhipuai/glm-5": "glm-5", "zai-org/glm-5": "glm-5", "zai-org/glm-5-fp8": "glm-5", "nvidia/glm-5-nvfp4": "glm-5",
    "minimaxai/minimax-m2": "minimax-m2", "minimaxai/minimax-m2.5": "minimax-m2.5",
    "qwen/qwen3.5-397b-a17b": "qwen3.5-397b-a17b", "qwen/qwen3.5-397b-a17b-fp8": "qwen3.5-397b-a17b",
    "openai/gpt-oss-20b": "gpt-oss-20b",
}


def _req_int(cfg: dict, keys: tuple[str, ...], path: str, default: int | None = None) -> int:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            v = cfg[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise UserError(f"field {k!r} must be a non-negative integer, got {v!r}", where=path)
            return v
    if default is None:
        raise UserError(f"missing field {keys[0]!r}", where=path)
    return default


def model_from_hf_config(cfg: dict, *, name: str, path: str = "config.json") -> ModelSpec:
    """Build a :class:`ModelSpec` from a Hugging Face ``config.json`` dictionary."""
    if not isinstance(cfg, dict):
        raise UserError("expected a JSON object", where=path)
    if "text_config" in cfg and isinstance(cfg["text_config"], dict):  # multimodal wrappers
        cfg = {**cfg["text_config"]}
    layers = _req_int(cfg, ("num_hidden_layers", "n_layer", "num_layers"), path)
    hidden = _req_int(cfg, ("hidden_size", "n_embd", "d_model"), path)
    heads = _req_int(cfg, ("num_attention_heads", "n_head"), path)
    if heads == 0 or layers == 0 or hidden == 0:
        raise UserError("num_hidden_layers, hidden_size and num_attention_heads must be positive", where=path)
    kv_heads = _req_int(cfg, ("num_key_value_heads",), path, default=heads)
    head_dim = _req_int(cfg, ("head_dim",), path, default=hidden // heads)
    inter = _req_int(cfg, ("intermediate_size", "ffn_dim", "n_inner"), path, default=4 * hidden)
    vocab = _req_int(cfg, ("vocab_size",), path)
    n_experts = _req_int(cfg, ("n_routed_experts", "num_experts", "num_local_experts"), path, default=0)
    kw: dict = dict(
        name=name, num_layers=layers, hidden_size=hidden, num_attention_heads=heads,
        num_kv_heads=kv_heads or heads, head_dim=head_dim, intermediate_size=inter, vocab_size=vocab,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        max_context=_req_int(cfg, ("max_position_embeddings",), path, default=131072),
        source=f"Hugging Face config {path}",
    )
    if cfg.get("kv_lora_rank"):
        kw.update(
            attention="mla",
            q_lora_rank=_req_int(cfg, ("q_lora_rank",), path, default=0),
            kv_lora_rank=_req_int(cfg, ("kv_lora_rank",), path),
            qk_nope_head_dim=_req_int(cfg, ("qk_nope_head_dim",), path),
            qk_rope_head_dim=_req_int(cfg, ("qk_rope_head_dim",), path),
            v_head_dim=_req_int(cfg, ("v_head_dim",), path),
        )
    if cfg.get("use_qk_norm") and str(cfg.get("qk_norm_type", "")).lower() == "per_layer":
        kw.update(qk_norm="layer")
    if cfg.get("index_topk"):
        kw.update(
            index_topk=_req_int(cfg, ("index_topk",), path),
            index_n_heads=_req_int(cfg, ("index_n_heads",), path),
            index_head_dim=_req_int(cfg, ("index_head_dim",), path),
        )
    if n_experts:
        kw.update(
            num_experts=n_experts,
            num_experts_per_token=_req_int(cfg, ("num_experts_per_tok", "experts_per_token", "moe_topk"), path),
            moe_intermediate_size=_req_int(cfg, ("moe_intermediate_size",), path, default=inter),
            num_shared_experts=_req_int(cfg, ("n_shared_experts", "num_shared_experts"), path, default=0),
            first_k_dense_layers=_req_int(cfg, ("first_k_dense_replace",), path, default=0),
        )
    layer_types = cfg.get("layer_types")
    window = cfg.get("sliding_window")
    if isinstance(layer_types, list) and isinstance(window, int) and window > 0:
        n_swa = sum(1 for t in layer_types if t == "sliding_attention")
        kw.update(sliding_window=window, sliding_window_layers=n_swa)
    if cfg.get("attn_output_gate"):
        kw.update(attn_output_gate=True)
    n_lin = 0
    if isinstance(layer_types, list):
        n_lin = sum(1 for t in layer_types if t == "linear_attention")
    elif cfg.get("linear_num_value_heads") and cfg.get("full_attention_interval"):
        every = _req_int(cfg, ("full_attention_interval",), path)
        n_lin = layers - layers // every if every else 0
    if n_lin:
        if kw.get("sliding_window_layers"):
            raise UserError("a model with both sliding-window and linear-attention layers is not supported",
                            where=path)
        lin = dict(
            linear_attention_layers=n_lin,
            linear_num_key_heads=_req_int(cfg, ("linear_num_key_heads",), path),
            linear_num_value_heads=_req_int(cfg, ("linear_num_value_heads",), path),
            linear_key_head_dim=_req_int(cfg, ("linear_key_head_dim",), path),
            linear_value_head_dim=_req_int(cfg, ("linear_value_head_dim",), path),
            linear_conv_kernel_dim=_req_int(cfg, ("linear_conv_kernel_dim",), path, default=4),
        )
        # the recurrent state (value heads x key dim x value dim, fp32) as a window of the full
        # layers' KV (2 x KV heads x head dim, 2-byte elements), as in the Qwen3.5 catalog entry
        state = lin["linear_num_value_heads"] * lin["linear_key_head_dim"] * lin["linear_value_head_dim"] * 4
        per_token = 2 * (kv_heads or heads) * head_dim * 2
        kw.update(sliding_window=max(1, -(-state // per_token)), sliding_window_layers=n_lin, **lin)
    try:
        return ModelSpec(**kw)
    except UserError as exc:  # a rule across the config's own fields: name the file
        raise UserError(exc.message, where=str(path)) from None


def load_hf_config(path: str | Path) -> ModelSpec:
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise UserError("model config file not found", where=str(p))
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"not valid JSON ({exc})", where=str(p)) from None
    name = cfg.get("_name_or_path") or p.parent.name or p.stem
    return model_from_hf_config(cfg, name=str(name), path=str(p))


# Models whose published FP8 checkpoint is block-scaled (128×128 weight tiles): an "fp8" deployment of
# them runs the block-scaled kernels (DeepSeek-V3/R1/V3.2 FP8 releases; Qwen/Qwen3-*-FP8 and
# Qwen3.5-*-FP8 "fine-grained fp8 with block size 128"; MiniMax-M2 "FP8 e4m3 block-wise";
# zai-org/GLM-5-FP8; Kimi-K2 FP8 release). NVIDIA ModelOpt checkpoints (nvidia/...) are per-tensor.
BLOCK_FP8_MODELS = ("deepseek-v3", "deepseek-r1", "deepseek-v3.2", "qwen3-32b", "qwen3-235b-a22b",
                    "qwen3.5-397b-a17b", "minimax-m2", "minimax-m2.5", "glm-5", "kimi-k2")
# gpt-oss ships MXFP4 experts (block 32, E8M0 scales): its "fp4" deployments run MXFP4 kernels, not NVFP4.
MXFP4_MODELS = ("gpt-oss-120b", "gpt-oss-20b")


def release_weight_format(model: ModelSpec, fmt: str, repo: str = "") -> str:
    """The weight format a deployment of ``model`` asked for as ``fmt`` runs, given its published
    checkpoints: ``fp8`` is block-scaled for the models of :data:`BLOCK_FP8_MODELS` (unless ``repo``
    is an NVIDIA ModelOpt one, ``nvidia/...``: per-tensor), ``nvfp4`` is MXFP4 for gpt-oss."""
    if fmt == "fp8" and model.name in BLOCK_FP8_MODELS and not str(repo).lower().startswith("nvidia/"):
        return "fp8_block"
    if fmt == "nvfp4" and model.name in MXFP4_MODELS:
        return "mxfp4"
    return fmt


def get_model(name_or_path: str, *, field: str | None = None) -> ModelSpec:
    """A catalog model by name (case-insensitive, HF repo ids accepted) or a ``config.json`` path."""
    key = str(name_or_path).strip()
    low = key.lower()
    low = _ALIASES.get(low, low)
    if low in MODELS:
        return MODELS[low]
    if key.endswith(".json") or "/" in key and Path(key).exists() or Path(key).is_dir():
        return load_hf_config(key)
    raise UserError(
        f"unknown model {name_or_path!r}; known: {', '.join(sorted(MODELS))}, or a path to a config.json",
        where=field,
    )


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)

