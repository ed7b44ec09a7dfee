"""A measured deployment (one ``silicon_sample`` row) → the deployment simcluster simulates.

:func:`map_row` returns a :class:`Setup` (the scenario sections, the closed-loop workload and the
assumptions it had to make) or an :class:`Unsupported` with the reason the row cannot be simulated.
Every rule below is written down in ``docs/validation.md``; none looks at the measured times.

Rules:

* **Framework** = ``backend`` (vllm, sglang, trtllm); its scheduler profile
  (:mod:`simcluster.perf.framework`) is applied; pools take the profile's token budget, chunking and
  batch-size defaults, with the sequence cap raised to the concurrency (benchmarks size it so).
* **Weights format**: MoE models take ``moe_quant_mode`` (the bulk of the weights), dense models
  ``gemm_quant_mode``, else ``precision``; ``fp8_block`` prices with the block-scaled FP8 tables,
  ``int4_wo`` as weight-only INT4, ``fp4``/``nvfp4`` as NVFP4, empty as BF16.
* **KV-cache format** (not in the file): FP8 for quantised TRT-LLM deployments and NVIDIA ModelOpt
  checkpoints (``nvidia/...``, whose quant config sets an FP8 KV cache); BF16 otherwise (vLLM and
  SGLang keep ``kv_cache_dtype=auto``).
* **Layout**: attention ``tp_size`` × ``attention_dp_size`` GPUs (pipeline ``pp_size``); experts over
  ``moe_ep_size`` with ``moe_tp_size``-way expert TP. A known encoding of the source export is
  undone: when ``moe_tp_size == moe_ep_size = k > 1`` and ``tp_size × attention_dp_size = k²``, the
  deployment ran on k GPUs with EP k (the export multiplied the TP and EP widths; the row ids of
  these configurations say ``tp{k}_ep{k}``), so the layout is TEP k (or DEP k with DP attention) —
  unless the weights could not fit on k GPUs, when the columns are taken as written.
* **Concurrency**: ``batch_size × attention_dp_size`` (the batch is per attention-DP rank); for
  disaggregated rows ``decode_batch_size × decode_attention_dp_size × decode_num_workers``; when the
  batch sizes are missing, the ``silicon_concurrency`` of the source column (or ``_c<N>_`` of the id).
* **Worker counts missing** (disaggregated rows without ``*_num_workers``): one decode worker, or as
  many as the concurrency needs to fit their KV memory, and a *rate-matched* prefill pool: enough
  prefill workers to keep up with the decode pool's request throughput at that concurrency
  (resolved in :mod:`simcluster.validate.simulate` from the cost models).
* **Workload**: a closed loop of ``concurrency`` clients, each sending its next request when its last
  one finishes (``vllm bench serve --max-concurrency``), ``prompts_per_client`` requests each, fixed
  ``isl``/``osl``, no shared prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass

from simcluster.catalog.gpus import get_gpu
from simcluster.catalog.models import ModelSpec, get_model
from simcluster.errors import UserError
from simcluster.perf.framework import FrameworkProfile, default_chunk_budget, get_profile
from simcluster.perf.layout import Layout
from simcluster.validate.silicon import PoolShape, SiliconRow

FRAMEWORKS = ("vllm", "sglang", "trtllm")
_WEIGHT_FORMATS = {
    "": "bf16", "bf16": "bf16", "bfloat16": "bf16", "fp16": "bf16", "float16": "bf16", "auto": "bf16",
    "fp8": "fp8", "fp8_block": "fp8_block", "fp8_pc_pt": "fp8", "float8": "fp8",
    "nvfp4": "nvfp4", "fp4": "nvfp4", "mxfp4": "mxfp4", "w4a16_mxfp4": "mxfp4", "w4a8_mxfp4_mxfp8": "mxfp4",
    "int4_wo": "int4", "int4": "int4", "w4a16": "int4", "int8": "int8", "int8_wo": "int8",
}


@dataclass(frozen=True)
class PoolPlanSpec:
    """One pool of the simulated deployment."""

    layout: str
    instances: int | None  # None: to be rate-matched (prefill) from the cost models
    max_num_seqs: int
    max_num_batched_tokens: int
    chunked_prefill: bool


@dataclass(frozen=True)
class Setup:
    """What to simulate for one row."""

    row: SiliconRow
    gpu: str
    model: str
    framework: str
    weights: str
    kv_cache: str
    mode: str  # colocated | disaggregated
    concurrency: int
    pools: dict  # role -> PoolPlanSpec
    profile: FrameworkProfile
    notes: tuple[str, ...] = ()

    @property
    def config_key(self) -> tuple:
        """The deployment without its concurrency and lengths: the unit of the train/held-out split."""
        return (self.gpu, self.framework, self.model, self.weights, self.mode,
                tuple(sorted((r, p.layout, p.instances) for r, p in self.pools.items())))


@dataclass(frozen=True)
class Unsupported:
    row: SiliconRow
    reason: str


# Models whose published FP8 checkpoint is block-scaled (128×128 weight tiles): an "fp8" deployment of
# them runs the block-scaled kernels (DeepSeek-V3/R1 FP8 release; Qwen/Qwen3-*-FP8 and
# Qwen3.5-*-FP8 "fine-grained fp8 with block size 128"; MiniMax-M2 "FP8 e4m3 block-wise";
# zai-org/GLM-5-FP8; Kimi-K2 FP8 release). NVIDIA ModelOpt checkpoints (nvidia/...) are per-tensor.
BLOCK_FP8_MODELS = ("deepseek-v3", "deepseek-r1", "qwen3-32b", "qwen3-235b-a22b", "qwen3.5-397b-a17b",
                    "minimax-m2", "minimax-m2.5", "glm-5", "kimi-k2")
# gpt-oss ships MXFP4 experts (block 32, E8M0 scales): its "fp4" rows run MXFP4 kernels, not NVFP4.
MXFP4_MODELS = ("gpt-oss-120b", "gpt-oss-20b")


def weights_format(row: SiliconRow, model: ModelSpec) -> str:
    mode = row.moe_quant_mode if model.is_moe and row.moe_quant_mode else row.gemm_quant_mode
    if not mode:
        mode = row.precision
    fmt = _WEIGHT_FORMATS.get(mode)
    if fmt is None:
        raise UserError(f"unsupported precision {mode!r}")
    nvidia = row.model_path.lower().startswith("nvidia/")
    if fmt == "fp8" and model.name in BLOCK_FP8_MODELS and not nvidia:
        fmt = "fp8_block"
    if fmt == "nvfp4" and model.name in MXFP4_MODELS:
        fmt = "mxfp4"
    return fmt


def kv_format(row: SiliconRow, weights: str) -> str:
    quantised = weights not in ("bf16",)
    if row.model_path.lower().startswith("nvidia/"):
        return "fp8"
    if row.backend == "trtllm" and quantised:
        return "fp8"
    return "bf16"


def _fits(model: ModelSpec, gpu, n_gpus: int, weights: str) -> bool:
    """Whether the model's weights fit on ``n_gpus`` GPUs at all (a coarse check for the decoding)."""
    from simcluster.catalog.formats import get_format

    total = model.param_counts()["total"] * get_format(weights).bytes_per_element
    return total / n_gpus < 0.95 * gpu.memory_bytes


def _layout(shape: PoolShape, model: ModelSpec, gpu, role: str, weights: str = "bf16") -> tuple[str, int, list[str]]:
    """(layout string, data-parallel replicas of a dense model, notes) of one worker."""
    notes: list[str] = []
    tp = max(shape.tp, 1)
    dp = max(shape.attention_dp, 1)
    pp = max(shape.pp, 1)
    replicas = 1
    if not model.is_moe:
        if dp > 1:  # attention DP on a dense model is plain data parallelism: independent replicas
            replicas = dp
            notes.append(f"{role}: attention_dp_size {dp} on a dense model taken as {dp} replicas")
        return f"tp={tp},pp={pp}", replicas, notes
    mtp, mep = shape.moe_tp, shape.moe_ep
    n = tp * dp
    if mtp > 1 and mtp == mep and n == mtp * mep and _fits(model, gpu, mep, weights):
        k = mep
        notes.append(f"{role}: tp×dp = moe_tp×moe_ep = {n} read as the export's encoding of {k} GPUs with EP {k}")
        if dp > 1:
            return f"dp={k},ep={k},tpf=1,pp={pp}", 1, notes
        return f"tp={k},ep={k},tpf=1,pp={pp}", 1, notes
    ep = mep if mep > 0 else 1
    if mtp > 0 and mtp * ep > n and (mtp * ep) % n == 0 and dp == 1:
        # the experts span more GPUs than the attention group: the extra GPUs hold attention
        # replicas (data-parallel attention), as the memory of the experts requires
        dp = mtp * ep // tp
        n = tp * dp
        notes.append(f"{role}: moe_tp×moe_ep = {mtp * ep} GPUs > tp = {tp}: attention data-parallel over {dp}")
    if mtp > 0:
        tpf = mtp
    else:
        tpf = n // ep if n % ep == 0 else 0
    if tpf < 1 or tpf * ep != n:
        raise UserError(f"{role}: moe_tp_size×moe_ep_size = {mtp}×{mep} does not match tp×attention_dp = {n}")
    return f"tp={tp},dp={dp},ep={ep},tpf={tpf},pp={pp}", 1, notes


def map_row(row: SiliconRow, profiles: dict | None = None) -> Setup | Unsupported:
    """The simulated deployment of ``row``, or why it cannot be simulated. ``profiles`` (framework →
    :class:`~simcluster.perf.framework.FrameworkProfile`) replace the default profiles."""
    if row.backend not in FRAMEWORKS:
        return Unsupported(row, f"unsupported backend {row.backend!r} (known: {', '.join(FRAMEWORKS)})")
    try:
        gpu = get_gpu(row.system)
    except UserError:
        return Unsupported(row, f"unknown system {row.system!r}")
    try:
        model = get_model(row.model_path)
    except UserError:
        return Unsupported(row, f"unknown model {row.model_path!r}")
    try:
        weights = weights_format(row, model)
    except UserError as exc:
        return Unsupported(row, str(exc))
    kv = kv_format(row, weights)
    profile = (profiles or {}).get(row.backend) or get_profile(row.backend)
    notes: list[str] = []
    domain = gpu.nvlink_domain_size

    def check(layout: str, role: str) -> str | None:
        try:
            Layout.parse(layout).validate(model, domain_size=domain, allow_cross_domain=True)
        except UserError as exc:
            return f"{role} layout {layout}: {exc.message if hasattr(exc, 'message') else exc}"
        return None

    budget = default_chunk_budget(profile, gpu.memory_bytes)
    pools: dict[str, PoolPlanSpec] = {}
    if row.mode == "agg":
        shape = row.agg
        try:
            layout, replicas, n1 = _layout(shape, model, gpu, "agg", weights)
        except UserError as exc:
            return Unsupported(row, str(exc))
        notes += n1
        err = check(layout, "agg")
        if err:
            return Unsupported(row, err)
        if shape.batch_size > 0:
            conc = shape.batch_size * max(shape.attention_dp, 1)
        else:
            conc = row.concurrency_hint
        if conc < 1:
            return Unsupported(row, "no concurrency: batch_size is empty and the source names none")
        per = -(-conc // replicas)
        pools["colocated"] = PoolPlanSpec(layout, replicas, max(profile.max_num_seqs, per), budget,
                                          profile.chunked_prefill)
        mode = "colocated"
    else:
        pre, dec = row.prefill, row.decode
        try:
            lp, rp, n1 = _layout(pre, model, gpu, "prefill", weights)
            ld, rd, n2 = _layout(dec, model, gpu, "decode", weights)
        except UserError as exc:
            return Unsupported(row, str(exc))
        notes += n1 + n2
        for lay, role in ((lp, "prefill"), (ld, "decode")):
            err = check(lay, role)
            if err:
                return Unsupported(row, err)
        if dec.batch_size > 0 and dec.workers > 0:
            conc = dec.batch_size * max(dec.attention_dp, 1) * dec.workers
        else:
            conc = row.concurrency_hint
        if conc < 1:
            return Unsupported(row, "no concurrency: decode batch size and workers are empty and the source names none")
        n_dec = dec.workers * rd if dec.workers > 0 else None
        n_pre = pre.workers * rp if pre.workers > 0 else None
        if n_dec is None:
            notes.append("decode workers not given: one, or as many as the KV memory needs")
        if n_pre is None:
            notes.append("prefill workers not given: rate-matched to the decode pool")
        per_dec = -(-conc // (n_dec or 1))
        pools["prefill"] = PoolPlanSpec(lp, n_pre, max(profile.max_num_seqs, conc), max(budget, row.isl),
                                        profile.chunked_prefill)
        pools["decode"] = PoolPlanSpec(ld, n_dec, max(profile.max_num_seqs, per_dec), budget,
                                       profile.chunked_prefill)
        mode = "disaggregated"
    return Setup(row=row, gpu=gpu.name, model=model.name, framework=row.backend, weights=weights, kv_cache=kv,
                 mode=mode, concurrency=int(conc), pools=pools, profile=profile, notes=tuple(notes))
