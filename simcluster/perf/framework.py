"""Serving-framework scheduler profiles: the behaviours of vLLM, SGLang and TRT-LLM that move the numbers.

A step-cost model (:mod:`simcluster.perf.step_cost`) prices the GPU work of one step. A real engine
adds what its scheduler does around that work. Each behaviour is one parameter of a
:class:`FrameworkProfile` with a documented default per framework (:data:`PROFILES`), and
:class:`ScheduledStepCost` applies a profile to any step-cost model:

* **CUDA-graph batch padding** — decode steps replay a CUDA graph captured for a fixed set of batch
  sizes; a batch is padded up to the next captured size (the padded slots cost their GEMM rows,
  not attention: they attend one token). Beyond the largest captured size the step runs eagerly
  and pays ``eager_overhead_s`` of extra launch cost.
* **per-step CPU overhead** — scheduling, input preparation, sampling and detokenisation not hidden
  by the GPU: ``decode_overhead_s + decode_overhead_per_seq_s × batch`` per decode step,
  ``prefill_overhead_s`` per step that carries prefill work (no CUDA graph).
* **mixed batching** — ``fused``: prefill chunks and decodes share one forward pass (vLLM chunked
  prefill, TRT-LLM in-flight batching); ``sequential``: a prefill batch runs as its own forward
  pass and the running decodes wait for it (SGLang without ``--enable-mixed-chunk``).
* **token budget, max sequences, chunked prefill** — the defaults of the pool's
  ``max_num_batched_tokens``, ``max_num_seqs`` and ``chunked_prefill`` (used when a scenario or a
  command does not set them).
* **all-reduce implementation** — the tensor-parallel all-reduces of all three frameworks run their
  own one-shot / two-shot kernels under CUDA graphs inside an NVLink node (vLLM and SGLang
  ``custom_all_reduce`` up to 8 MiB, TRT-LLM's AllReduce AUTO strategy), 3–5× faster than NCCL for
  decode-sized messages: :class:`FrameworkOps` prices them from the measured custom all-reduce tables.
* **KV-cache pool size** — vLLM and SGLang size the pool as a share of the whole GPU memory minus
  the weights (``gpu_memory_utilization`` / ``mem_fraction_static``, the scenario's
  ``serving.gpu_memory_utilization``); TRT-LLM as ``free_gpu_memory_fraction`` (0.9) of the memory
  left *after* the weights (``kv_fraction_of_free``), which leaves more room for KV when weights fill
  most of the GPU.
* **disaggregated hand-over** — the first token reaches the client from the decode worker, after
  the KV transfer and ``handover_s`` of fixed cost (transfer set-up, the decode worker's scheduling
  of the arrived request); ``request_overhead_s`` is the client-side cost of every request (HTTP,
  tokenisation, the frontend), added to TTFT.

* **speculative decoding (MTP)** — ``spec_draft_tokens`` = k > 0: each decode iteration drafts k
  tokens with the model's MTP module (k passes of one decoder layer and the LM head) and verifies
  them in one forward pass of k + 1 tokens per sequence; it emits on average
  :func:`mtp_acceptance_length` (k) tokens. The engine advances one token per step, so a decode
  step costs (verify + k drafts + the iteration's CPU overhead) / acceptance length.
* **kernels the framework runs** — :class:`FrameworkOps` answers a few ops from the table of the
  kernel the framework's recipes actually run where the shipped table holds another one
  (:data:`KERNEL_ROUTES`).

The parameters are physical and few. Their values were fitted on the *train* half of the silicon
validation set and are reported on the held-out half (``docs/validation.md``); the sources of the
structural defaults (captured sizes, budgets) are the frameworks' own defaults, cited per field.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace

import numpy as np

from simcluster.errors import UserError
from simcluster.perf.interface import BatchShape, StepTime


def _vllm_graph_sizes(max_size: int = 512) -> tuple[int, ...]:
    # vLLM >= 0.11 CompilationConfig: [1, 2, 4] + range(8, 256, 8) + range(256, max + 1, 16)
    return tuple([1, 2, 4] + list(range(8, 256, 8)) + list(range(256, max_size + 1, 16)))


def _sglang_graph_sizes(max_size: int = 512) -> tuple[int, ...]:
    # SGLang server_args: 1, 2, 4, 8, 12, then every 8 up to 256, every 16 beyond [INFERRED: the
    # exact list changes between releases; the step matters, not the exact list]
    return tuple([1, 2, 4, 8, 12] + list(range(16, 257, 8)) + list(range(272, max_size + 1, 16)))


def _trtllm_graph_sizes(max_size: int = 2048) -> tuple[int, ...]:
    # TRT-LLM PyTorch backend cuda_graph_config (enable_padding): 1, 2, 4, then every 8 up to 128,
    # then powers of two up to max_batch_size
    sizes = [1, 2, 4] + list(range(8, 129, 8))
    p = 256
    while p <= max_size:
        sizes.append(p)
        p *= 2
    return tuple(sizes)


# Multi-token prediction acceptance (DeepSeek-style MTP heads used as the draft). DeepSeek-V3
# technical report (arXiv 2412.19437, §5.4.3): "the acceptance rate of the second token prediction
# ranges between 85% and 90%" -> 0.875 for the first draft token. Deeper drafts reuse the one MTP
# module, whose acceptance falls with depth: the GLM-5 technical report (arXiv 2602.15763, Table 2)
# gives an acceptance length of 2.55 for DeepSeek-V3.2 with 4 speculative steps, which a per-depth
# acceptance a·d^(i-1) (a = 0.875) meets at d = 0.63. Not fitted to any measured deployment.
MTP_FIRST_ACCEPTANCE = 0.875
MTP_ACCEPTANCE_DECAY = 0.63
# One draft pass = the MTP module (one decoder layer) plus the shared LM head and sampling, taken
# as two layers' share of a decode step of the same batch.
MTP_DRAFT_LAYERS = 2.0


def mtp_acceptance_length(k: int, first: float = MTP_FIRST_ACCEPTANCE, decay: float = MTP_ACCEPTANCE_DECAY) -> float:
    """Mean tokens emitted per decode iteration with ``k`` draft tokens: 1 (the verified token) plus
    the chance that drafts 1..i are all accepted, summed over i (draft i accepted with probability
    ``first · decay^(i-1)`` when the ones before it were)."""
    total, p = 1.0, 1.0
    for i in range(int(k)):
        p *= first * decay ** i
        total += p
    return total


def model_kind(model) -> str:
    """The model class the fitted GPU-time scales are kept per: ``dense``, ``moe`` (GQA attention)
    or ``mla-moe`` (multi-head latent attention with experts: DeepSeek-V3/R1, Kimi-K2, GLM-5). MLA
    models run their own attention kernels (the up-projected form in prefill, the absorbed form in
    decode) and the largest expert layers, and they are the one family whose measured times stand
    apart from the others' on every framework (docs/validation.md)."""
    if not model.is_moe:
        return "dense"
    return "mla-moe" if model.is_mla else "moe"


@dataclass(frozen=True)
class FrameworkProfile:
    """What a serving framework's scheduler adds to the GPU work of a step. Times in seconds."""

    name: str
    cuda_graph_sizes: tuple[int, ...] = ()  # captured decode batch sizes (per DP rank); () = no graphs
    eager_overhead_s: float = 0.0  # extra launch cost of a decode step beyond the largest graph
    decode_overhead_s: float = 0.0  # CPU time per decode step not hidden by the GPU
    decode_overhead_per_seq_s: float = 0.0  # ... and per sequence in the batch (sampling, output)
    prefill_overhead_s: float = 0.0  # CPU + launch time per step that carries prefill work
    mixed_batching: str = "fused"  # fused | sequential
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    kv_fraction_of_free: float | None = None  # KV pool = this share of memory left after weights (TRT-LLM)
    # the framework's own memory-share flag holds the weights and the KV pool only, activations and
    # CUDA graphs live outside it (SGLang --mem-fraction-static); else the share also holds them (vLLM
    # --gpu-memory-utilization); see memory_share_serving
    memory_fraction_static: bool = False
    custom_all_reduce: bool = True  # TP all-reduces inside a node use the framework's one-shot kernel
    custom_all_reduce_max_bytes: float = 8 * 2**20  # larger buffers go to NCCL
    handover_s: float = 0.0  # disaggregated: fixed cost between KV landing and the first token
    request_overhead_s: float = 0.0  # per request, client-visible (HTTP, tokenisation, frontend)
    request_overhead_per_input_token_s: float = 0.0  # ... growing with the prompt (tokenisation, payload)
    # the per-request overhead of one model kind where it differs from ``request_overhead_s``:
    # ((kind, seconds), ...), kind = model_kind(); fitted (validation)
    request_overhead_by_kind: tuple = ()
    # fitted corrections of the op-table GPU time, per (GPU, model kind[, weight format]): (gpu, kind,
    # decode-step scale, prefill-step scale), kind = model_kind(): "dense" | "moe" | "mla-moe", or
    # "kind:format" (e.g. "mla-moe:fp8_block") for one weight format's kernels, which wins over the
    # kind's entry; see simcluster.validate.fit and docs/validation.md
    gpu_time_scales: tuple = ()
    # speculative decoding: draft tokens per decode iteration (0 = off); set per deployment
    spec_draft_tokens: int = 0
    # ... and the host time per decode iteration that speculative decoding exposes on top of
    # decode_overhead_s, fixed and per sequence (SGLang runs EAGLE/MTP without its overlap
    # scheduler, so the scheduling and draft/verify bookkeeping no longer hide behind the GPU); fitted
    spec_iteration_overhead_s: float = 0.0
    spec_iteration_overhead_per_seq_s: float = 0.0
    # KV admission (scenario serving.kv_admission) and, disaggregated, when the client sees the first
    # token (serving.first_token_at): the framework's behaviour, applied by validation and bench
    kv_admission: str = "on_demand"
    first_token_at: str = "first_decode_step"
    sources: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.mixed_batching not in ("fused", "sequential"):
            raise UserError(f"mixed_batching must be fused or sequential, got {self.mixed_batching!r}",
                            where="mixed_batching")
        for name in ("eager_overhead_s", "decode_overhead_s", "decode_overhead_per_seq_s", "prefill_overhead_s",
                     "handover_s", "request_overhead_s", "request_overhead_per_input_token_s",
                     "spec_iteration_overhead_s", "spec_iteration_overhead_per_seq_s"):
            if getattr(self, name) < 0:
                raise UserError("must be non-negative", where=name)
        object.__setattr__(self, "cuda_graph_sizes", tuple(sorted(set(int(s) for s in self.cuda_graph_sizes))))
        if self.kv_admission not in ("on_demand", "reserve_full"):
            raise UserError(f"must be on_demand or reserve_full, got {self.kv_admission!r}", where="kv_admission")
        if self.first_token_at not in ("prefill_end", "kv_landed", "first_decode_step"):
            raise UserError(f"must be prefill_end, kv_landed or first_decode_step, got {self.first_token_at!r}",
                            where="first_token_at")
        if int(self.spec_draft_tokens) != self.spec_draft_tokens or self.spec_draft_tokens < 0:
            raise UserError("must be a non-negative whole number of tokens", where="spec_draft_tokens")

    def request_overhead(self, kind: str = "") -> float:
        """The client-visible fixed cost of one request for a model of ``kind`` (seconds)."""
        for k, v in self.request_overhead_by_kind:
            if k == kind:
                return float(v)
        return float(self.request_overhead_s)

    def gpu_time_scale(self, gpu: str, kind: str, weights: str = "") -> tuple[float, float]:
        """(decode, prefill) multipliers of the op-table GPU time on ``gpu`` for ``kind`` models with
        ``weights`` (a number-format name): the entry of that format if there is one, else the kind's."""
        for key in ((f"{kind}:{weights}", kind) if weights else (kind,)):
            for g, k, d, pf in self.gpu_time_scales:
                if g == gpu and k == key:
                    return float(d), float(pf)
        return 1.0, 1.0

    def with_(self, **changes) -> "FrameworkProfile":
        return replace(self, **changes)

    def padded_batch(self, batch: int) -> int:
        """The captured batch size a decode batch of ``batch`` sequences runs at (itself if eager)."""
        sizes = self.cuda_graph_sizes
        if not sizes or batch <= 0:
            return batch
        i = bisect.bisect_left(sizes, batch)
        return sizes[i] if i < len(sizes) else batch

    def is_eager(self, batch: int) -> bool:
        sizes = self.cuda_graph_sizes
        return not sizes or batch > sizes[-1]

    def decode_overhead(self, batch: int) -> float:
        """CPU overhead of one decode step of ``batch`` sequences (seconds)."""
        t = self.decode_overhead_s + self.decode_overhead_per_seq_s * batch
        if self.is_eager(batch):
            t += self.eager_overhead_s
        return t


# Defaults. Structural values are the frameworks' documented defaults (cited). The times (CPU
# overhead per scheduler step, request overhead, hand-over) and the GPU-time scales per (GPU, model
# kind) were fitted on the train half of the configuration split of the silicon validation set
# (``python -m simcluster.validate.fit ../shared/validation/silicon_sample_dev.csv``, fit of the
# current model; docs/validation.md has the split, the values and the held-out errors). The
# prefill-step overhead equals the decode-step one (one scheduler iteration). No eager-mode penalty
# is charged beyond the largest captured graph (vLLM V1 falls back to piecewise graphs).
PROFILES: dict[str, FrameworkProfile] = {
    "vllm": FrameworkProfile(
        name="vllm",
        cuda_graph_sizes=_vllm_graph_sizes(512),
        eager_overhead_s=0.0,
        decode_overhead_s=0.0005,
        decode_overhead_per_seq_s=0.0,
        prefill_overhead_s=0.0005,
        mixed_batching="fused",
        max_num_seqs=1024,
        max_num_batched_tokens=8192,
        chunked_prefill=True,
        handover_s=0.0,
        request_overhead_s=0.04,
        request_overhead_per_input_token_s=5e-06,
        request_overhead_by_kind=(("mla-moe", 0.06),),  # (kind, seconds), fitted
        first_token_at="first_decode_step",
        gpu_time_scales=(  # (GPU, kind[:weight format], decode scale, prefill scale), fitted by simulation
            ("b200_sxm", "dense", 0.85, 1.2),
            ("b200_sxm", "dense:fp8", 0.85, 1.2),
            ("b200_sxm", "mla-moe", 0.95, 0.6),
            ("b200_sxm", "mla-moe:int4", 0.95, 0.6),
            ("b200_sxm", "moe", 0.9, 1.0),
            ("b200_sxm", "moe:fp8_block", 1.0, 1.4),
            ("b200_sxm", "moe:mxfp4", 0.7, 0.5),
            ("h100_sxm", "dense", 1.2, 0.85),
            ("h100_sxm", "dense:bf16", 1.2, 0.85),
            ("h100_sxm", "dense:fp8", 1.05, 0.85),
            ("h100_sxm", "moe", 0.9, 0.7),
            ("h100_sxm", "moe:fp8_block", 0.95, 1.0),
            ("h100_sxm", "moe:mxfp4", 0.8, 0.5),
            ("h200_sxm", "dense", 1.0, 0.5),
            ("h200_sxm", "dense:fp8", 1.0, 0.5),
            ("h200_sxm", "mla-moe", 1.0, 0.7),
            ("h200_sxm", "mla-moe:int4", 1.0, 0.7),
            ("h200_sxm", "moe", 1.1, 1.4),
            ("h200_sxm", "moe:fp8_block", 1.3, 1.2),
            ("h200_sxm", "moe:mxfp4", 0.7, 2.0),
        ),
        sources={
            "max_num_seqs": "vLLM V1 EngineArgs default for >= 70 GB GPUs (OpenAI server): 1024",
            "max_num_batched_tokens": "vLLM V1 EngineArgs default for >= 70 GB GPUs (OpenAI server): 8192",
            "cuda_graph_sizes": "vLLM CompilationConfig: [1,2,4] + range(8,256,8) + range(256,513,16)",
            "chunked_prefill": "always on in vLLM V1",
            "mixed_batching": "vLLM V1 runs prefill chunks and decodes in one forward pass",
            "first_token_at": "vLLM's NIXL / P2P NCCL connectors: the prefill instance runs the prompt with "
                              "max_tokens=1 and its token is dropped; the decode instance recomputes the last "
                              "prompt token and samples the first token in its first step after the KV landed",
        },
    ),
    "sglang": FrameworkProfile(
        name="sglang",
        cuda_graph_sizes=_sglang_graph_sizes(512),
        eager_overhead_s=0.0,
        decode_overhead_s=0.001,
        decode_overhead_per_seq_s=0.0,
        prefill_overhead_s=0.001,
        mixed_batching="sequential",
        max_num_seqs=2048,
        max_num_batched_tokens=8192,
        chunked_prefill=True,
        memory_fraction_static=True,
        handover_s=0.05,
        request_overhead_s=0.15,
        request_overhead_per_input_token_s=2e-05,
        request_overhead_by_kind=(("dense", 0.3),),  # (kind, seconds), fitted
        spec_iteration_overhead_s=0.004,  # fitted (python -m simcluster.validate.fit ... --spec-overhead)
        first_token_at="kv_landed",
        gpu_time_scales=(  # (GPU, kind[:weight format], decode scale, prefill scale), fitted by simulation
            ("b200_sxm", "mla-moe", 0.85, 0.85),
            ("b200_sxm", "mla-moe:fp8_block", 0.85, 0.85),
            ("b200_sxm", "mla-moe:nvfp4", 0.85, 0.7),
            ("b200_sxm", "moe", 0.8, 2.0),
            ("b200_sxm", "moe:fp8_block", 0.8, 2.0),
            ("gb200", "mla-moe", 0.8, 0.85),
            ("gb200", "mla-moe:fp8_block", 1.0, 0.7),
            ("gb200", "mla-moe:nvfp4", 0.5, 1.2),
            ("h100_sxm", "dense", 1.0, 0.6),
            ("h100_sxm", "dense:bf16", 1.0, 0.6),
            ("h200_sxm", "dense", 1.3, 1.0),
            ("h200_sxm", "dense:fp8_block", 1.3, 1.0),
            ("h200_sxm", "mla-moe", 0.95, 0.6),
            ("h200_sxm", "mla-moe:fp8_block", 0.95, 0.6),
            ("h200_sxm", "moe", 1.1, 1.0),
            ("h200_sxm", "moe:fp8_block", 1.1, 1.0),
        ),
        sources={
            "max_num_batched_tokens": "SGLang --chunked-prefill-size default 8192 (16384 on >= 160 GB GPUs)",
            "mixed_batching": "SGLang runs a prefill batch as its own forward pass unless --enable-mixed-chunk",
            "memory_fraction_static": "SGLang --mem-fraction-static: the share of GPU memory for weights and the "
                                      "KV pool; activations and CUDA graphs use the rest",
            "cuda_graph_sizes": "SGLang capture batch sizes up to --cuda-graph-max-bs [INFERRED list]",
            "max_num_seqs": "SGLang --max-running-requests: sized from KV memory; 2048 as a cap [INFERRED]",
            "spec_iteration_overhead_s": "SGLang ServerArgs (v0.5.6): EAGLE/NEXTN speculative decoding sets "
                                         "disable_overlap_schedule unless SGLANG_ENABLE_SPEC_V2; the value is "
                                         "fitted on the train half's speculative rows",
            "first_token_at": "SGLang PD disaggregation: the prefill server samples the first token and sends it "
                              "with the KV; the decode server streams it when the transferred request joins "
                              "(its prebuilt batch), before its first decode step",
        },
    ),
    "trtllm": FrameworkProfile(
        name="trtllm",
        cuda_graph_sizes=_trtllm_graph_sizes(2048),
        eager_overhead_s=0.0,
        decode_overhead_s=0.00025,
        decode_overhead_per_seq_s=4e-06,
        prefill_overhead_s=0.00025,
        mixed_batching="fused",
        max_num_seqs=2048,
        max_num_batched_tokens=8192,
        chunked_prefill=False,
        kv_fraction_of_free=0.9,
        handover_s=0.0,
        request_overhead_s=0.04,
        request_overhead_per_input_token_s=5e-06,
        request_overhead_by_kind=(("mla-moe", 0.2),),  # (kind, seconds), fitted
        spec_iteration_overhead_s=0.001,  # fitted (python -m simcluster.validate.fit ... --spec-overhead)
        kv_admission="reserve_full",
        first_token_at="first_decode_step",
        gpu_time_scales=(  # (GPU, kind[:weight format], decode scale, prefill scale), fitted by simulation
            ("b200_sxm", "dense", 0.8, 1.0),
            ("b200_sxm", "dense:nvfp4", 0.8, 1.0),
            ("b200_sxm", "mla-moe", 0.8, 0.7),
            ("b200_sxm", "mla-moe:fp8_block", 0.85, 1.4),
            ("b200_sxm", "mla-moe:nvfp4", 0.8, 0.6),
            ("b200_sxm", "moe", 0.85, 1.0),
            ("b200_sxm", "moe:mxfp4", 0.85, 1.0),
            ("gb200", "mla-moe", 0.8, 0.85),
            ("gb200", "mla-moe:fp8_block", 0.8, 1.4),
            ("gb200", "mla-moe:nvfp4", 0.8, 0.7),
            ("gb200", "moe", 0.8, 0.7),
            ("gb200", "moe:mxfp4", 0.8, 0.7),
            ("h100_sxm", "dense", 1.05, 1.0),
            ("h100_sxm", "dense:bf16", 1.0, 1.0),
            ("h100_sxm", "dense:fp8_block", 1.2, 1.0),
            ("h100_sxm", "moe", 1.0, 1.0),
            ("h100_sxm", "moe:fp8_block", 1.0, 1.0),
            ("h200_sxm", "dense", 0.8, 1.0),
            ("h200_sxm", "dense:fp8", 0.8, 1.0),
            ("h200_sxm", "mla-moe", 1.1, 0.85),
            ("h200_sxm", "mla-moe:fp8_block", 1.1, 0.85),
            ("h200_sxm", "moe", 0.9, 1.2),
            ("h200_sxm", "moe:mxfp4", 0.9, 1.2),
        ),
        sources={
            "max_num_seqs": "trtllm-serve --max_batch_size default 2048",
            "max_num_batched_tokens": "trtllm-serve --max_num_tokens default 8192",
            "chunked_prefill": "TRT-LLM enable_chunked_prefill default False: a context runs whole",
            "cuda_graph_sizes": "TRT-LLM cuda_graph_config with padding: 1,2,4, 8..128 step 8, powers of two",
            "mixed_batching": "TRT-LLM in-flight batching: context and generation requests in one step",
            "kv_fraction_of_free": "trtllm-serve kv_cache_config.free_gpu_memory_fraction default 0.9",
            "kv_admission": "TRT-LLM capacity scheduler GUARANTEED_NO_EVICT (default): a request is admitted only "
                            "if the KV of its whole output fits beside the admitted ones",
            "first_token_at": "TRT-LLM disaggregated: the generation server gets the context server's first "
                              "token (first_gen_tokens) with the request and returns it in the response of its "
                              "first generation iteration after the KV arrived",
        },
    ),
}
PROFILES["ideal"] = FrameworkProfile(name="ideal", max_num_seqs=10**6, max_num_batched_tokens=10**9)


def get_profile(name: str, *, field: str | None = "framework") -> FrameworkProfile:
    key = str(name).strip().lower()
    if key not in PROFILES:
        raise UserError(f"unknown framework {name!r}; known: {', '.join(sorted(PROFILES))}", where=field)
    return PROFILES[key]


def memory_share_serving(profile: FrameworkProfile, fraction: float) -> dict:
    """The scenario ``serving`` settings of a framework's own memory-share flag set to ``fraction``:
    TRT-LLM ``free_gpu_memory_fraction`` is a share of the memory the weights and activations leave
    (``kv_free_memory_fraction``); SGLang ``--mem-fraction-static`` a share of the whole GPU for weights
    and KV only (no activation reserve inside it); vLLM ``--gpu-memory-utilization`` a share of the
    whole GPU that also holds the activations."""
    if profile.kv_fraction_of_free:
        return {"kv_free_memory_fraction": float(fraction)}
    out = {"gpu_memory_utilization": float(fraction)}
    if profile.memory_fraction_static:
        out["activation_reserve_gb"] = 0.0
    return out


def default_chunk_budget(profile: FrameworkProfile, gpu_memory_bytes: float) -> int:
    """The token budget per step a framework picks by default on a GPU of this memory size."""
    if profile.name == "sglang" and gpu_memory_bytes >= 160e9:
        return 16384  # SGLang server_args: larger chunked-prefill size on >= 160 GB GPUs
    return profile.max_num_batched_tokens


BLACKWELL = ("b200_sxm", "gb200", "b300_sxm", "gb300")
HOPPER = ("h100_sxm", "h200_sxm")

# Ops the frameworks' recipes run with another kernel than the one in the shipped table, on these
# GPUs. Each: (op, framework, number formats, GPUs) -> what answers, with the evidence.
KERNEL_ROUTES = {
    # vLLM's FP8 block-scaled GEMM tables (DeepGemm / FlashInfer Fp8BlockScaledMMKernel, collector of
    # vLLM 0.24.0) carry a per-call cost the same kernels do not have in the other frameworks' tables:
    # on Blackwell they are flat at 0.17-0.27 ms for every shape, from m = 1 on a 12 MB weight (2 µs of
    # HBM traffic); on Hopper they sit a median 47 µs (m <= 16), 72 µs (m 17-256), 56 µs (m 257-2048)
    # and 45 µs (m > 2048) above SGLang's DeepGEMM table over the ~29,000 shapes both measured (4.7-6.3x
    # at m <= 256, where TRT-LLM's table is a median 1.08x SGLang's, 0.9-1.36x from p10 to p90). A
    # collection artefact: under CUDA graphs that time is not paid. vLLM serves block-scaled FP8 with
    # the same DeepGEMM / CUTLASS kernels: answer from SGLang's DeepGEMM table on Hopper, and on
    # Blackwell from TRT-LLM's (next entry).
    "vllm_fp8_block_gemm": {"op": "gemm", "framework": "vllm", "formats": ("fp8_block",),
                            "gpus": HOPPER, "answer": ("framework", "sglang")},
    # On Blackwell SGLang's DeepGEMM table sits 1.8-1.9x above TRT-LLM's DeepGEMM table at m <= 256
    # (medians over ~15,000 shapes both measured on B200, and on GB200; 1.5x at 257-2048, 1.2x above;
    # on Hopper the two agree, 0.83-0.98x). Three measurements of whole attention modules side with
    # TRT-LLM's: DeepSeek-V3's MLA decode module at TP 8, batch 1, 1k context takes 46 us in TRT-LLM's
    # collector and 52 us in vLLM's, where the op tables sum to 52 us with TRT-LLM's GEMMs and 107 us with
    # SGLang's; and SGLang's own GLM-5 DSA decode module (five fp8_block projections + indexer + sparse
    # attention) takes 58 us, less than its GEMM table's 79 us for the five projections alone (TRT-LLM's
    # table: 40 us). Block-FP8 GEMMs on Blackwell answer from TRT-LLM's table for vLLM and SGLang.
    "vllm_fp8_block_gemm_blackwell": {"op": "gemm", "framework": "vllm", "formats": ("fp8_block",),
                                      "gpus": BLACKWELL, "answer": ("framework", "trtllm")},
    "sglang_fp8_block_gemm_blackwell": {"op": "gemm", "framework": "sglang", "formats": ("fp8_block",),
                                        "gpus": BLACKWELL, "answer": ("framework", "trtllm")},
    # TRT-LLM runs gpt-oss's MXFP4 experts on Blackwell with MXFP8 activations in its TRTLLM-gen MoE
    # backend (trtllm-serve moe_config.backend TRTLLM, as in InferenceX gptoss_fp4_b200_trt.sh); the
    # w4a16 table is its slower fallback (3-4x the w4a8 one, and 3x FlashInfer's w4a16 in vLLM).
    "trtllm_mxfp4_moe": {"op": "moe", "framework": "trtllm", "formats": ("mxfp4", "w4a16_mxfp4"), "gpus": BLACKWELL,
                         "answer": ("format", "w4a8_mxfp4_mxfp8")},
    # TRT-LLM's NVFP4 MoE table holds its CUTLASS backend; recipes with tensor-parallel attention run
    # the TRTLLM-gen backend (InferenceX dsr1_fp4_b200_trt*.sh: MOE_BACKEND=TRTLLM unless attention
    # DP; NVIDIA's DeepSeek-R1 B200 deployment guide), the kernel FlashInfer exposes and vLLM's table
    # measures (trtllm nvfp4 experts, monolithic): 1.5-2.3x faster at 8-128 tokens. The recipes pick
    # the backend per regime, so the faster of the two answers.
    "trtllm_nvfp4_moe": {"op": "moe", "framework": "trtllm", "formats": ("nvfp4",), "gpus": BLACKWELL,
                         "answer": ("faster_of", "vllm")},
    # Pools whose experts exchange tokens with DeepEP (a route with "moe_a2a": "deepep" applies to those
    # pools only: scenario pools.*.moe_a2a; SGLang --moe-a2a-backend deepep, vLLM --all2all-backend
    # deepep_*) run their block-FP8 experts as DeepGEMM grouped GEMMs, not the framework's fused MoE
    # kernel. On Blackwell the measured DeepGEMM MoE table is TRT-LLM's (its collector's only block-FP8
    # MoE source on B200 and GB200); SGLang's and vLLM's block-FP8 tables hold FlashInfer's TRTLLM-gen
    # kernel, which from 1,024 to 8,192 tokens the DeepGEMM table undercuts 4-17x (GB200, DeepSeek
    # experts, EP 32, 8,192 tokens: 3.24 ms against 0.18 ms per layer; 0.18 ms is 20 % of the FP8 peak,
    # 3.24 ms 1 %). Hopper has no DeepGEMM MoE table: there the framework's own table answers.
    "sglang_deepep_fp8_block_moe": {"op": "moe", "framework": "sglang", "formats": ("fp8_block",),
                                    "gpus": BLACKWELL, "moe_a2a": "deepep", "answer": ("framework", "trtllm")},
    "vllm_deepep_fp8_block_moe": {"op": "moe", "framework": "vllm", "formats": ("fp8_block",),
                                  "gpus": BLACKWELL, "moe_a2a": "deepep", "answer": ("framework", "trtllm")},
}
MOE_A2A = ("default", "deepep")  # scenario pools.*.moe_a2a


class FrameworkOps:
    """An op-cost model as a framework calls the ops: TP all-reduces over NVLink use the framework's
    custom all-reduce (``ops.custom_all_reduce``) when the profile says so and the buffer is small
    enough; a few ops answer from the kernel the framework's recipes run (:data:`KERNEL_ROUTES`);
    every other op is answered by the wrapped model unchanged."""

    def __init__(self, ops, profile: FrameworkProfile, node_gpus: int = 8, moe_a2a: str = "default") -> None:
        self._ops = ops
        self._profile = profile
        self._node_gpus = node_gpus
        self._others: dict[str, object] = {}
        gpu = getattr(getattr(ops, "gpu", None), "name", "")
        fw = getattr(ops, "framework", None)
        if moe_a2a not in MOE_A2A:
            raise UserError(f"moe_a2a must be one of {', '.join(MOE_A2A)}, got {moe_a2a!r}", where="moe_a2a")
        # the routes of every pool, then those of this pool's expert exchange (which win)
        routes = sorted((r for r in KERNEL_ROUTES.values() if fw == r["framework"] and gpu in r["gpus"]
                         and r.get("moe_a2a", "default") in ("default", moe_a2a)),
                        key=lambda r: "moe_a2a" in r)
        self._routes = {(r["op"], f): r["answer"] for r in routes for f in r["formats"]}

    def with_moe_a2a(self, moe_a2a: str) -> "FrameworkOps":
        """The same framework's ops for a pool whose experts exchange tokens with ``moe_a2a``."""
        return FrameworkOps(self._ops, self._profile, node_gpus=self._node_gpus, moe_a2a=moe_a2a)

    def __getattr__(self, name):
        return getattr(self._ops, name)

    def __setattr__(self, name, value):  # provenance fields (last_source, ...) live on the wrapped model
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._ops, name, value)

    # ------------------------------------------------------------------ kernel routes
    def _other(self, framework: str):
        o = self._others.get(framework)
        if o is None:
            from simcluster.perf.calibration.ops import CalibratedOps

            # how the deployment's framework runs expert TP decides, whichever table answers
            o = self._others[framework] = CalibratedOps(self._ops.gpu, framework=framework,
                                                        calibration=self._ops.calibration,
                                                        moe_tp_as_ep=getattr(self._ops, "moe_tp_as_ep", False))
        return o

    def _provenance(self, src) -> None:
        for name in ("last_source", "last_detail", "last_sources"):
            if hasattr(src, name):
                setattr(self._ops, name, getattr(src, name))

    def _route(self, op: str, fmt: str):
        return self._routes.get((op, str(fmt).strip().lower())) if self._routes else None

    def _from_other(self, framework: str, name: str, *args):
        """An op answered by another framework's measured kernel, with its provenance."""
        o = self._other(framework)
        t = getattr(o, name)(*args)
        self._provenance(o)
        return t

    def _gemm(self, name: str, m, n, k, fmt):
        r = self._route("gemm", fmt)
        if r is not None and r[0] == "framework":
            return self._from_other(r[1], name, m, n, k, fmt)
        return getattr(self._ops, name)(m, n, k, fmt)

    def gemm(self, m, n, k, fmt):
        return self._gemm("gemm", m, n, k, fmt)

    def gemm_many(self, m, n, k, fmt):
        return self._gemm("gemm_many", m, n, k, fmt)

    def _moe(self, many: bool, tokens, hidden, inter, topk, n_experts, tp, ep, fmt, distribution="balanced"):
        r = self._route("moe", fmt)
        name = "moe_many" if many else "moe"
        if r is not None and r[0] == "framework":  # another framework's measured kernel (DeepEP pools)
            return self._from_other(r[1], name, tokens, hidden, inter, topk, n_experts, tp, ep, fmt, distribution)
        if r is not None and r[0] == "format":
            fmt = r[1]
        t = getattr(self._ops, name)(tokens, hidden, inter, topk, n_experts, tp, ep, fmt, distribution)
        if r is not None and r[0] == "faster_of":
            o = self._other(r[1])
            t2 = getattr(o, name)(tokens, hidden, inter, topk, n_experts, tp, ep, fmt, distribution)
            if np.ndim(t) == 0:
                if t2 < t:
                    self._provenance(o)
                    t = t2
            else:
                t = np.minimum(t, t2)
        return t

    def moe(self, tokens, hidden, inter, topk, n_experts, tp, ep, fmt, distribution="balanced"):
        return self._moe(isinstance(tokens, np.ndarray) or isinstance(tp, np.ndarray) or isinstance(ep, np.ndarray),
                         tokens, hidden, inter, topk, n_experts, tp, ep, fmt, distribution)

    def moe_many(self, tokens, hidden, inter, topk, n_experts, tp, ep, fmt, distribution="balanced"):
        return self._moe(True, tokens, hidden, inter, topk, n_experts, tp, ep, fmt, distribution)

    # ------------------------------------------------------------------ all-reduce
    def _custom(self, op: str, n_gpus: int, link: str) -> bool:
        p = self._profile
        return (p.custom_all_reduce and op in ("all_reduce", "allreduce") and link == "nvlink"
                and 1 < n_gpus <= self._node_gpus and hasattr(self._ops, "custom_all_reduce"))

    def collective(self, op: str, bytes_per_gpu, n_gpus: int, link: str):
        if isinstance(bytes_per_gpu, np.ndarray):
            return self.collective_many(op, bytes_per_gpu, n_gpus, link)
        if self._custom(op, n_gpus, link) and bytes_per_gpu <= self._profile.custom_all_reduce_max_bytes:
            return self._ops.custom_all_reduce(float(bytes_per_gpu), int(n_gpus))
        return self._ops.collective(op, bytes_per_gpu, n_gpus, link)

    def collective_many(self, op: str, bytes_per_gpu, n_gpus: int, link: str):
        b = np.asarray(bytes_per_gpu, dtype=float)
        many = getattr(self._ops, "collective_many", None)
        base = many(op, b, n_gpus, link) if many is not None else np.array(
            [self._ops.collective(op, float(x), n_gpus, link) for x in b.ravel()]).reshape(b.shape)
        if not self._custom(op, n_gpus, link):
            return base
        out = np.array(base, dtype=float, copy=True)
        small = b <= self._profile.custom_all_reduce_max_bytes
        if small.any():
            cache: dict[float, float] = {}
            flat_b = b[small]
            vals = []
            for x in flat_b.ravel():
                v = cache.get(x)
                if v is None:
                    v = cache[x] = self._ops.custom_all_reduce(float(x), int(n_gpus))
                vals.append(v)
            out[small] = np.array(vals).reshape(flat_b.shape)
        return out


def _sub(a: StepTime, b: StepTime) -> StepTime:
    return StepTime(*(x - y for x, y in zip(a, b)))


def _add(a: StepTime, b: StepTime, k: float = 1.0) -> StepTime:
    return StepTime(*(x + k * y for x, y in zip(a, b)))


def _scale(a: StepTime, k: float) -> StepTime:
    """Times scaled by ``k`` (a GPU-time correction); FLOPs and bytes unchanged."""
    if k == 1.0:
        return a
    return StepTime(a.latency_s * k, a.weight_read_s * k, a.kv_read_s * k, a.compute_s * k, a.comm_s * k,
                    a.other_s * k, a.flops, a.hbm_bytes)


class ScheduledStepCost:
    """A :class:`~simcluster.perf.interface.StepCostModel` with a framework's scheduling applied.

    ``base`` prices the GPU work and must carry no step overhead of its own (build its
    :class:`~simcluster.perf.step_cost.CostSpec` with ``step_overhead_s=0``). ``dp`` is the number of
    data-parallel attention replicas (CUDA graphs are captured per replica). ``pipeline_stages`` is
    passed through.

    With speculative decoding (``profile.spec_draft_tokens`` = k > 0) one engine decode step stands
    for one token of every sequence: a real iteration of batch B verifies k + 1 tokens per sequence
    (the GEMMs of B(k + 1) token rows, the attention of B sequences over their context, read once) and
    runs k draft passes (each :data:`MTP_DRAFT_LAYERS` layers' share of a decode step), and emits
    :func:`mtp_acceptance_length` (k) tokens per sequence on average; the step costs that iteration
    divided by the acceptance length. Prefill work grows by the MTP layer's share (it fills its own KV).

    The GPU-time scales of ``(gpu, kind, weights)`` apply by the kind of work: a decode step takes the decode
    scale, a prefill pass the prefill scale, and one fused pass of decodes and prompt tokens the decode
    scale on what its decodes alone would cost and the prefill scale on what the prompt tokens add.
    """

    def __init__(self, base, profile: FrameworkProfile, dp: int = 1, gpu: str = "", kind: str = "",
                 weights: str = "") -> None:
        self.base = base
        self.profile = profile
        self.dp = max(1, int(dp))
        self.decode_scale, self.prefill_scale = profile.gpu_time_scale(gpu, kind, weights)
        self.pipeline_stages = getattr(base, "pipeline_stages", 1)
        self._pad_cache: dict[int, StepTime] = {}
        self._step_cache: dict[BatchShape, StepTime] = {}
        self.spec_k = int(profile.spec_draft_tokens)
        if self.spec_k:
            spec = getattr(base, "spec", None) or getattr(getattr(base, "base", None), "spec", None)
            layers = int(getattr(getattr(spec, "model", None), "num_layers", 0) or 60)
            self.spec_al = mtp_acceptance_length(self.spec_k)
            self.spec_draft = MTP_DRAFT_LAYERS / layers  # one draft pass, as a share of a decode step
            self.spec_prefill = 1.0 / layers  # the MTP layer's share of a prefill
        else:
            self.spec_al, self.spec_draft, self.spec_prefill = 1.0, 0.0, 0.0

    # padding of a decode batch: what the padded slots add (GEMM rows, no KV); with speculative
    # decoding, what verifying k + 1 tokens of each (padded) sequence adds to a one-token step
    def _padded(self, batch: int) -> int:
        dp = self.dp
        per = -(-batch // dp)
        return self.profile.padded_batch(per) * dp if dp > 1 else self.profile.padded_batch(batch)

    def _pad_delta(self, batch: int) -> StepTime:
        d = self._pad_cache.get(batch)
        if d is None:
            padded = self._padded(batch)
            rows = padded * (self.spec_k + 1)
            if rows <= batch:
                d = StepTime(0.0)
            else:
                hi = self.base.step(BatchShape(decode_seqs=rows, decode_context_tokens=rows))
                lo = self.base.step(BatchShape(decode_seqs=batch, decode_context_tokens=batch))
                d = _sub(hi, lo)
                if d.latency_s < 0:
                    d = StepTime(0.0)
            if len(self._pad_cache) > 65536:
                self._pad_cache.clear()
            self._pad_cache[batch] = d
        return d

    def _decode_overhead(self, batch: int) -> float:
        per = -(-batch // self.dp)
        p = self.profile
        t = p.decode_overhead_s + p.decode_overhead_per_seq_s * batch
        if p.is_eager(per):
            t += p.eager_overhead_s
        if self.spec_k:  # one speculative iteration's exposed host time
            t += p.spec_iteration_overhead_s + p.spec_iteration_overhead_per_seq_s * batch
        return t

    def step(self, shape: BatchShape) -> StepTime:
        # Steps with prefill work are priced through the op tables at lookup time (milliseconds for
        # calibrated ones); closed-loop benchmarks repeat the same shapes, so they are memoised.
        if shape.prefill_tokens > 0:
            d = shape.decode_seqs
            # the decodes' attention is additive to the rest of the step: memoise the step with
            # one-token decode contexts and add the decode-attention difference (two table lookups)
            key = BatchShape(shape.prefill_tokens, shape.prefill_seqs, shape.prefill_attn_pairs,
                             shape.prefill_past_tokens, d, d)
            st = self._step_cache.get(key)
            if st is None:
                if len(self._step_cache) > 65536:
                    self._step_cache.clear()
                st = self._step_cache[key] = self._step(key)
            if d > 0 and shape.decode_context_tokens != d:  # decode work: the decode scale
                hi = self.base.step(BatchShape(decode_seqs=d, decode_context_tokens=shape.decode_context_tokens))
                lo = self.base.step(BatchShape(decode_seqs=d, decode_context_tokens=d))
                st = _add(st, _scale(_sub(hi, lo), self.decode_scale))
            return st
        return self._step(shape)

    def _decode_step(self, shape: BatchShape) -> StepTime:
        d = shape.decode_seqs
        k = self.spec_k
        st = self.base.step(shape)
        if k:  # one iteration (verify + k drafts) per acceptance length
            st = _scale(_add(_scale(st, 1.0 + k * self.spec_draft), self._pad_delta(d)),
                        self.decode_scale / self.spec_al)
        else:
            st = _scale(_add(st, self._pad_delta(d)), self.decode_scale)
        ovh = self._decode_overhead(d) / self.spec_al
        return st._replace(latency_s=st.latency_s + ovh, other_s=st.other_s + ovh)

    def _step(self, shape: BatchShape) -> StepTime:
        base = self.base
        p = self.profile
        if shape.prefill_tokens <= 0:
            if shape.decode_seqs <= 0:
                return StepTime(0.0)
            return self._decode_step(shape)
        pk = self.prefill_scale * (1.0 + self.spec_prefill)
        if p.mixed_batching == "sequential" and shape.decode_seqs > 0:
            pre = base.step(BatchShape(shape.prefill_tokens, shape.prefill_seqs, shape.prefill_attn_pairs,
                                       shape.prefill_past_tokens))
            dec = self.step(BatchShape(decode_seqs=shape.decode_seqs,
                                       decode_context_tokens=shape.decode_context_tokens))
            st = _add(_scale(pre, pk), dec)
        elif shape.decode_seqs > 0:
            # one fused pass: the decodes' share of it is decode work (decode scale), what the
            # prompt tokens add to it is prefill work (prefill scale)
            full = base.step(shape)
            dec = base.step(BatchShape(decode_seqs=shape.decode_seqs, decode_context_tokens=shape.decode_context_tokens))
            st = _add(_scale(dec, self.decode_scale), _scale(_sub(full, dec), pk))
        else:
            st = _scale(base.step(shape), pk)
        ovh = p.prefill_overhead_s
        return st._replace(latency_s=st.latency_s + ovh, other_s=st.other_s + ovh)

    def decode_run(self, batch: int, context_tokens: int, n_steps: int) -> np.ndarray:
        lats = self.base.decode_run(batch, context_tokens, n_steps)
        if n_steps <= 0 or batch <= 0:
            return lats
        k = self.decode_scale / self.spec_al
        grow = 1.0 + self.spec_k * self.spec_draft
        return (lats * grow + self._pad_delta(batch).latency_s) * k + self._decode_overhead(batch) / self.spec_al

    def decode_run_totals(self, batch: int, context_tokens: int, n_steps: int) -> StepTime:
        st = self.base.decode_run_totals(batch, context_tokens, n_steps)
        if n_steps <= 0 or batch <= 0:
            return st
        grow = 1.0 + self.spec_k * self.spec_draft
        st = _scale(_add(_scale(st, grow), self._pad_delta(batch), float(n_steps)), self.decode_scale / self.spec_al)
        ovh = self._decode_overhead(batch) * n_steps / self.spec_al
        return st._replace(latency_s=st.latency_s + ovh, other_s=st.other_s + ovh)

    def decode_run_work(self, batch: int, context_tokens: int, n_steps: int) -> tuple[float, float]:
        flops, hbm = self.base.decode_run_work(batch, context_tokens, n_steps)
        if n_steps <= 0 or batch <= 0:
            return flops, hbm
        d = self._pad_delta(batch)
        grow = 1.0 + self.spec_k * self.spec_draft
        return ((flops * grow + d.flops * n_steps) / self.spec_al, (hbm * grow + d.hbm_bytes * n_steps) / self.spec_al)

    def describe(self, shape: BatchShape) -> dict:
        return self.base.describe(shape)

    def memory(self, **kw):
        return self.base.memory(**kw)
