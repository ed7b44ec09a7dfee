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
  checkpoints (``nvidia/...``, whose quant config sets an FP8 KV cache; also when the row's recipe
  serves one); BF16 otherwise (vLLM and SGLang keep ``kv_cache_dtype=auto``).
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
  ``isl``/``osl``, no shared prefixes — except for rows of a known benchmark harness
  (:mod:`simcluster.validate.recipes`): InferenceX draws lengths uniformly from [0.8 L, L].
* **Recipe** (InferenceX rows, :func:`simcluster.validate.recipes.match`): the entry of the
  harness's published deployment recipes the row was measured with says whether speculative
  decoding (MTP) ran and with how many draft tokens, and, for disaggregated rows without worker
  counts, how many prefill and decode workers there were; for single-node recipes, the launch flags
  (token budget, sequence cap, KV-cache dtype, SGLang's scheduler receive interval; applied by
  :func:`recipe_budget`).
* **Token budget and sequence cap** are per attention-DP rank (each rank schedules its own batch):
  an instance with ``dp`` attention ranks gets ``dp`` times the framework's budget.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from simcluster.catalog.gpus import get_gpu
from simcluster.catalog.models import ModelSpec, get_model, release_weight_format
from simcluster.errors import UserError
from simcluster.perf.framework import FrameworkProfile, default_chunk_budget, get_profile, memory_share_serving
from simcluster.perf.layout import Layout
from simcluster.validate.recipes import HARNESS, Recipe, harness_of, match, match_disaggregated_run
from simcluster.validate.silicon import PoolShape, SiliconRow, ep_squared_encoding

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
    # TRT-LLM attention-DP context balancing: None (off), or the (key, value) pairs its recipe sets
    # (pools.*.attention_dp_balance; the scenario's defaults are TRT-LLM's for the rest)
    adp_balance: tuple | None = None
    # TRT-LLM delayed batching of prompts (pools.*.batch_wait): None, or its (key, value) pairs
    batch_wait: tuple | None = None
    # the pool's own memory settings (pools.*.memory: the recipe's memory share with its framework's
    # meaning, a KV cap): None (the framework's defaults), or (key, value) pairs
    memory: tuple | None = None
    # pools.*.moe_a2a: "deepep" where the recipe file's workers exchange tokens with DeepEP
    moe_a2a: str = "default"


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
    harness: str = ""  # the benchmark harness of the row (recipes.HARNESS), "" when unknown
    spec_tokens: int = 0  # speculative decoding: draft tokens per decode iteration (0 = off)
    range_ratio: float = 1.0  # lengths drawn uniformly from [range_ratio × L, L]
    recipe: str = ""  # the harness recipe the row was matched to
    recipe_ambiguous: bool = False  # the recipes in force list the point with and without MTP (taken as MTP)
    recv_interval: int = 1  # SGLang --scheduler-recv-interval: steps between polls for new requests

    @property
    def config_key(self) -> tuple:
        """The deployment without its concurrency and lengths (rows sharing one build their cost
        models once)."""
        return (self.gpu, self.framework, self.model, self.weights, self.mode, self.spec_tokens,
                tuple(sorted((r, p.layout, p.instances) for r, p in self.pools.items())))


@dataclass(frozen=True)
class Unsupported:
    row: SiliconRow
    reason: str


def weights_format(row: SiliconRow, model: ModelSpec) -> str:
    mode = row.moe_quant_mode if model.is_moe and row.moe_quant_mode else row.gemm_quant_mode
    if not mode:
        mode = row.precision
    fmt = _WEIGHT_FORMATS.get(mode)
    if fmt is None:
        raise UserError(f"unsupported precision {mode!r}")
    return release_weight_format(model, fmt, row.model_path)


def modelopt_checkpoint(name: str) -> bool:
    """An NVIDIA ModelOpt checkpoint (``nvidia/...``): its quant config sets ``kv_cache_quant_algo: FP8``,
    which vLLM and SGLang take with ``--kv-cache-dtype auto``."""
    return str(name).lower().startswith("nvidia/")


def kv_format(row: SiliconRow, weights: str) -> str:
    quantised = weights not in ("bf16",)
    if modelopt_checkpoint(row.model_path):
        return "fp8"
    if row.backend == "trtllm" and quantised:
        return "fp8"
    return "bf16"


def _fits(model: ModelSpec, gpu, n_gpus: int, weights: str) -> bool:
    """Whether the model's weights fit on ``n_gpus`` GPUs at all (a coarse check for the decoding)."""
    from simcluster.catalog.formats import get_format

    total = model.param_counts()["total"] * get_format(weights).bytes_per_element
    return total / n_gpus < 0.95 * gpu.memory_bytes


def _layout(shape: PoolShape, model: ModelSpec, gpu, role: str, weights: str = "bf16",
            dp_attention: bool | None = None) -> tuple[str, int, list[str]]:
    """(layout string, data-parallel replicas of a dense model, notes) of one worker.

    ``dp_attention``: what the row's recipe says of attention data parallelism (None: no recipe)."""
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
    k = ep_squared_encoding(shape)
    if k and _fits(model, gpu, k, weights):
        attn = "attention data-parallel (the recipe's dp-attn)" if dp_attention else "tensor-parallel attention"
        notes.append(f"{role}: tp = attention_dp = {k}, moe_ep = {k * k} read as the export's encoding of "
                     f"{k} GPUs with EP {k}, {attn}")
        return f"{'dp' if dp_attention else 'tp'}={k},ep={k},tpf=1,pp={pp}", 1, notes
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


def _as_disaggregated_run(row: SiliconRow, recipe: Recipe, profiles: dict | None) -> Setup | Unsupported:
    """An ``agg`` row that is the export's encoding of the disaggregated run ``recipe``
    (:func:`~simcluster.validate.recipes.match_disaggregated_run`), mapped as that run: the recipe's
    worker layouts and counts, the row's concurrency."""

    def shape(pool: tuple) -> PoolShape:
        tp, ep, dp = int(pool[0]), max(int(pool[1]), 1), bool(pool[2])
        ep = min(ep, tp)
        return PoolShape(tp=1 if dp else tp, pp=1, attention_dp=tp if dp else 1, moe_tp=max(tp // ep, 1), moe_ep=ep)

    gpus, conc = row.agg.gpus, row.stated_concurrency
    disagg = replace(row, mode="disagg", agg=None, prefill=shape(recipe.prefill), decode=shape(recipe.decode),
                     concurrency_hint=conc)
    setup = map_row(disagg, profiles, _recipe=recipe)
    if isinstance(setup, Unsupported):
        return Unsupported(row, setup.reason)
    ptp, dtp = recipe.prefill[0], recipe.decode[0]
    note = (f"agg row of {gpus} GPUs read as the disaggregated run of recipe {recipe.key}: "
            f"{recipe.prefill_workers} prefill worker(s) of {ptp} + {recipe.decode_workers} decode worker(s) of "
            f"{dtp} GPUs = {gpus} at {conc} clients (the export writes such runs as agg rows with tp = their GPUs)")
    return replace(setup, row=row, notes=(note,) + setup.notes)


def recipe_layout(pool: tuple, model: ModelSpec, framework: str) -> str:
    """A worker's layout from a recipe's (tp, ep, attention DP): the worker has ``tp`` GPUs; with
    attention DP each holds its own attention replica (SGLang / TRT-LLM ``dp-attn``), else attention
    is tensor-parallel over them; experts are ``ep``-way expert-parallel and ``tp / ep``-way TP."""
    tp, ep, dp = int(pool[0]), max(int(pool[1]), 1), bool(pool[2])
    if not model.is_moe:
        return f"tp={tp},pp=1"
    ep = min(ep, tp)
    tpf = max(tp // ep, 1)
    if dp and framework != "vllm":
        return f"tp=1,dp={tp},ep={ep},tpf={tpf},pp=1"
    return f"tp={tp},dp=1,ep={ep},tpf={tpf},pp=1"


def recipe_side(recipe: Recipe | None, side: str, layout: str, replicas: int, workers: int = 0) -> dict:
    """What the recipe file of a disaggregated entry sets for the ``side`` ("prefill"/"decode") workers
    (:mod:`simcluster.validate.srtslurm`: ``max_seqs``, ``budget``, ``mem_fraction``, ``max_tokens``, in the units of the
    framework's flags), or {} when it does not describe the simulated worker: no file, an entry of
    another concurrency (``nearest``), or a worker whose layout is not the recipe's (the export's
    columns split it into other instances, or a row whose own worker count ``workers`` is not the
    entry's)."""
    if recipe is None or recipe.nearest or replicas != 1 or not recipe.settings:
        return {}
    if workers > 0 and workers != (recipe.prefill_workers if side == "prefill" else recipe.decode_workers):
        return {}
    if not _recipe_has_layout(recipe, side, layout):
        return {}
    pre = f"{side}_"
    return {k[len(pre):]: v for k, v in recipe.settings.items() if k.startswith(pre) and k != f"{pre}moe_a2a"}


def _recipe_has_layout(recipe: Recipe, side: str, layout: str) -> bool:
    """Whether the entry's ``side`` workers are the simulated layout (attention tp × dp GPUs)."""
    pool = recipe.prefill if side == "prefill" else recipe.decode
    lay = Layout.parse(layout)
    return bool(pool) and lay.tp * max(lay.dp, 1) == int(pool[0])


def recipe_a2a(recipe: Recipe | None, side: str, layout: str) -> str:
    """``"deepep"`` where the recipe file's ``side`` workers exchange tokens with DeepEP, else
    ``"default"``. Unlike :func:`recipe_side`'s batch caps and budgets, which an entry of another
    concurrency may set otherwise, the expert exchange goes with the worker layout: an entry of the
    nearest concurrency answers when its workers have the simulated layout."""
    if recipe is None or not recipe.settings or recipe.settings.get(f"{side}_moe_a2a") != "deepep":
        return "default"
    return "deepep" if _recipe_has_layout(recipe, side, layout) else "default"


def pool_memory(profile: FrameworkProfile, fraction, max_tokens: int = 0) -> tuple | None:
    """A pool's ``memory`` section (sorted items) from a recipe's memory share, with its framework's
    meaning (:func:`~simcluster.perf.framework.memory_share_serving`; a share outside (0, 1], which
    only a mis-read script could give, is left out), and a cap on its KV pool in tokens (SGLang
    ``--max-total-tokens`` × attention-DP ranks); None when neither is given."""
    mem: dict = {}
    if fraction and 0.0 < float(fraction) <= 1.0:
        mem.update(memory_share_serving(profile, float(fraction)))
    if max_tokens:
        mem["max_kv_tokens"] = int(max_tokens)
    return tuple(sorted(mem.items())) or None


def _dp(layout: str) -> int:
    return max(1, Layout.parse(layout).dp)


def recipe_budget(framework: str, settings: dict, default_budget: int, concurrency: int, dp: int,
                  draft_tokens: int) -> tuple[int, int]:
    """(token budget per step, sequence cap) of an instance with ``dp`` attention ranks from the
    launch flags of its recipe (:data:`simcluster.validate.recipes.SETTINGS`; vLLM's and TRT-LLM's per
    attention-DP rank, SGLang's per server), else the framework's defaults (0 for the cap). The engine
    counts a decode as one token of the budget:

    * vLLM ``--max-num-batched-tokens`` counts decodes as the engine does;
    * SGLang ``--chunked-prefill-size`` and ``--max-running-requests`` are per server: with attention
      DP each rank gets its share (SGLang ``server_args``: ``chunked_prefill_size //= dp_size``; the
      scheduler: ``max_running_requests // dp_size``); the chunk bounds the prefill batch alone
      (decodes run beside it), so the instance's concurrency is added;
    * TRT-LLM ``max_num_tokens`` counts k + 1 tokens per sequence with k draft tokens, so the extra
      k per sequence of the rank's batch are taken off.
    """
    dp = max(dp, 1)
    per_rank = settings.get("budget") or default_budget
    if framework == "sglang" and settings.get("budget"):
        b = (int(settings["budget"]) // dp) * dp + concurrency
    elif framework == "trtllm" and settings.get("budget"):
        bs = -(-int(concurrency) // dp)
        b = max(per_rank - draft_tokens * bs, bs + 1) * dp
    else:
        b = per_rank * dp
    per_server = framework == "sglang"
    seqs = (int(settings["max_seqs"]) // (dp if per_server else 1)) * dp if settings.get("max_seqs") else 0
    return int(b), seqs


def map_row(row: SiliconRow, profiles: dict | None = None, *, _recipe: Recipe | None = None) -> Setup | Unsupported:
    """The simulated deployment of ``row``, or why it cannot be simulated. ``profiles`` (framework →
    :class:`~simcluster.perf.framework.FrameworkProfile`) replace the default profiles. (``_recipe``:
    the entry to use instead of matching one, for an agg row read as a disaggregated run.)"""
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
    harness = harness_of(row.source)
    recipe: Recipe | None = _recipe if _recipe is not None else (match(row, model.name) if harness else None)
    if recipe is None and harness and row.mode == "agg":
        run = match_disaggregated_run(row, model.name)
        if run is not None:
            return _as_disaggregated_run(row, run, profiles)
    spec_tokens = recipe.mtp_draft_tokens if recipe is not None and recipe.spec == "mtp" else 0
    if recipe is not None:
        notes.append(f"recipe {recipe.key}: " + (f"MTP with {spec_tokens} draft tokens" if spec_tokens else
                                                  "no speculative decoding")
                     + (" (listed with and without MTP: taken as the MTP run)" if recipe.ambiguous else "")
                     + (" (from the entry of the nearest concurrency)" if recipe.nearest else ""))
    range_ratio = float(HARNESS.get(harness, {}).get("random_range_ratio", 1.0))
    settings = dict(recipe.settings) if recipe is not None else {}
    if str(settings.get("kv", "")).startswith("fp8") and kv != "fp8":
        kv = "fp8"
        notes.append("FP8 KV cache (the recipe's --kv-cache-dtype)")
    elif recipe is not None and modelopt_checkpoint(recipe.checkpoint) and kv != "fp8":
        kv = "fp8"
        notes.append(f"FP8 KV cache (the recipe serves {recipe.checkpoint})")
    recv_interval = int(settings.get("recv_interval") or 1)
    pools: dict[str, PoolPlanSpec] = {}
    if row.mode == "agg":
        shape = row.agg
        try:
            layout, replicas, n1 = _layout(shape, model, gpu, "agg", weights,
                                           recipe.dp_attention if recipe is not None else None)
        except UserError as exc:
            return Unsupported(row, str(exc))
        notes += n1
        err = check(layout, "agg")
        if err:
            return Unsupported(row, err)
        conc = row.stated_concurrency
        if conc < 1:
            return Unsupported(row, "no concurrency: batch_size is empty and the source names none")
        per = -(-conc // replicas)
        dp = _dp(layout)
        b_agg, seqs = recipe_budget(row.backend, settings, budget, per, dp, spec_tokens)
        if settings:
            notes.append(f"recipe launch flags: {', '.join(f'{k} {v}' for k, v in sorted(settings.items()))}")
        adp = None
        if row.backend == "trtllm" and dp > 1 and settings.get("adp_balance"):
            # the script's attention_dp_config (TRT-LLM's defaults where it is silent)
            adp = tuple((k, int(settings[key])) for k, key in (("timeout_iters", "adp_timeout_iters"),
                                                          ("batching_wait_iters", "adp_wait_iters"))
                        if key in settings)
            notes.append("attention-DP context balancing" + "".join(f", {k} {v}" for k, v in adp))
        bw = None
        if row.backend == "trtllm" and dp == 1 and settings.get("bw_timeout_iters") and settings.get(
                "bw_max_tokens_ratio"):
            bw = (("timeout_iters", int(settings["bw_timeout_iters"])),
                  ("max_tokens_ratio", float(settings["bw_max_tokens_ratio"])))
            notes.append(f"delayed batching: timeout_iters {bw[0][1]}, max_tokens_ratio {bw[1][1]}")
        pools["colocated"] = PoolPlanSpec(layout, replicas, seqs or max(profile.max_num_seqs * dp, per), b_agg,
                                          profile.chunked_prefill, adp, bw,
                                          pool_memory(profile, settings.get("mem_fraction")))
        mode = "colocated"
    else:
        pre, dec = row.prefill, row.decode
        try:
            lp, rp, n1 = _layout(pre, model, gpu, "prefill", weights)
            ld, rd, n2 = _layout(dec, model, gpu, "decode", weights)
        except UserError as exc:
            return Unsupported(row, str(exc))
        notes += n1 + n2
        use_recipe_pools = recipe is not None and bool(recipe.prefill and recipe.decode) and dec.workers <= 0
        if use_recipe_pools:
            # rows that lost their worker counts also lost their pools' layout: the export's pool
            # columns of multi-node recipes are not the recipe's (a DEP32 decode worker is written
            # tp 32 with moe 8 × 4): take the recipe's own, when they describe workers that can hold
            # the model (rows with worker counts keep their own, consistent, columns)
            rlp, rld = recipe_layout(recipe.prefill, model, row.backend), recipe_layout(recipe.decode, model,
                                                                                            row.backend)
            use_recipe_pools = (not check(rlp, "prefill") and not check(rld, "decode")
                                and _fits(model, gpu, recipe.prefill[0], weights)
                                and _fits(model, gpu, recipe.decode[0], weights))
            if use_recipe_pools and (rlp, rld) != (lp, ld):
                notes.append(f"layouts from the recipe: prefill {rlp}, decode {rld}")
                lp, ld, rp, rd = rlp, rld, 1, 1
        for lay, role in ((lp, "prefill"), (ld, "decode")):
            err = check(lay, role)
            if err:
                return Unsupported(row, err)
        conc = row.stated_concurrency
        if conc < 1:
            return Unsupported(row, "no concurrency: decode batch size and workers are empty and the source names none")
        n_dec = dec.workers * rd if dec.workers > 0 else None
        n_pre = pre.workers * rp if pre.workers > 0 else None
        if use_recipe_pools and recipe.decode_workers and n_dec is None:
            n_dec = recipe.decode_workers * rd
            notes.append(f"decode workers from the recipe: {recipe.decode_workers}")
        if use_recipe_pools and recipe.prefill_workers and n_pre is None:
            n_pre = recipe.prefill_workers * rp
            notes.append(f"prefill workers from the recipe: {recipe.prefill_workers}")
        if n_dec is None:
            notes.append("decode workers not given: one, or as many as the KV memory needs")
        if n_pre is None:
            notes.append("prefill workers not given: rate-matched to the decode pool")
        per_dec = -(-conc // (n_dec or 1))
        dpp, dpd = _dp(lp), _dp(ld)
        pre_seqs, pre_budget = max(profile.max_num_seqs * dpp, conc), max(budget * dpp, row.isl)
        dec_seqs, dec_budget = max(profile.max_num_seqs * dpd, per_dec), budget * dpd
        memory = {}
        a2a = {side: recipe_a2a(recipe, side, lay) for side, lay in (("prefill", lp), ("decode", ld))}
        notes.extend(f"{side} workers exchange tokens with DeepEP (the recipe file's moe-a2a-backend)"
                     for side, v in a2a.items() if v == "deepep")
        for side, lay, reps, given in (("prefill", lp, rp, pre.workers), ("decode", ld, rd, dec.workers)):
            st = recipe_side(recipe, side, lay, reps, given)
            if not st:
                continue
            dp = dpp if side == "prefill" else dpd
            # a prefill worker runs no decodes beside its prompts (the decode workers sample on)
            per = 0 if side == "prefill" else per_dec
            tokens = spec_tokens if side == "decode" else 0
            b, seqs = recipe_budget(row.backend, st, budget, per, dp, tokens)
            if side == "prefill":
                pre_budget = max(b, row.isl) if st.get("budget") else pre_budget
                pre_seqs = seqs or pre_seqs
            else:
                dec_budget = max(b, seqs + 1) if st.get("budget") else dec_budget
                dec_seqs = seqs or dec_seqs
            # SGLang --max-total-tokens caps each attention-DP rank's pool
            memory[side] = pool_memory(profile, st.get("mem_fraction"), int(st.get("max_tokens") or 0) * dp)
            notes.append(f"recipe file, {side}: " + ", ".join(f"{k} {v}" for k, v in sorted(st.items())))
        pools["prefill"] = PoolPlanSpec(lp, n_pre, pre_seqs, pre_budget, profile.chunked_prefill,
                                        memory=memory.get("prefill"), moe_a2a=a2a.get("prefill", "default"))
        pools["decode"] = PoolPlanSpec(ld, n_dec, dec_seqs, dec_budget, profile.chunked_prefill,
                                       memory=memory.get("decode"), moe_a2a=a2a.get("decode", "default"))
        mode = "disaggregated"
    return Setup(row=row, gpu=gpu.name, model=model.name, framework=row.backend, weights=weights, kv_cache=kv,
                 mode=mode, concurrency=int(conc), pools=pools, profile=profile, notes=tuple(notes), harness=harness,
                 spec_tokens=int(spec_tokens), range_ratio=range_ratio, recipe=recipe.key if recipe else "",
                 recv_interval=recv_interval, recipe_ambiguous=bool(recipe is not None and recipe.ambiguous))
