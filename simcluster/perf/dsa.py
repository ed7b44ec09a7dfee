"""The cost of DeepSeek sparse attention (DSA: DeepSeek-V3.2, GLM-5) and its lightning indexer.

Per layer, every query token of a DSA model is scored against every past token by the indexer
(``index_n_heads`` FP8 heads of ``index_head_dim`` over the indexer's own key cache: DeepGEMM's
``fp8_mqa_logits``), the ``index_topk`` best are selected (a top-k kernel), and the MLA attention
then reads only those. Against dense MLA, a step of a DSA model pays the indexer's projections and
two kernels whose work grows with the whole context, and saves attention reads beyond
``index_topk`` tokens.

Measurements: NVIDIA aiconfigurator systems data (Apache-2.0), condensed by :func:`build_table`
(``python -m simcluster.perf.dsa ROOT [-o DIR]``) into ``simcluster/data/calibration/dsa_module_decode.parquet``
and ``dsa_indexer.json``:

* **decode** — ``<system>/sparse_attention/<framework>/<version>/dsa_generation_module_perf`` (the
  newest version per system and framework): GLM-5's whole attention module at decode (the MLA and
  indexer projections, the indexer's scores and top-k, the sparse MLA, the output projection) per
  (projection format, KV format, heads per GPU, batch, context), as each framework runs it (H100,
  H200, B200, GB200 × vLLM, SGLang, TRT-LLM; where a (format, KV format) pair was measured with
  several kernels, the one with most rows, as in :mod:`simcluster.perf.calibration.load`). The
  simulator keeps its own projections (priced from the GEMM tables like every other model's) and
  prices the rest — the indexer and the sparse core — as the module less the module's projections
  priced by the same tables (:meth:`~simcluster.perf.composition.Composer.indexer_decode`). Batch
  sizes above 512 are left out: SGLang's B200 module takes 1.32–1.38 ms at batch 1,024 whatever the
  context (batch 512: 0.12–0.16 ms), i.e. launch-bound outside CUDA graphs, which the framework
  profiles price separately; beyond the measured batches and contexts the module grows linearly
  along its last measured segment [INFERRED]. The kernel-level tables of the same collection
  (``glm5_mqa_logits_module_perf`` + ``glm5_topk_module_perf``) sum to more than the whole module at
  long contexts (160 µs vs 83 µs at batch 4, 16k tokens, 8 heads, B200) and are not used for decode.
* **prefill** — B200 ``sparse_attention/sglang/0.5.14/glm5_mqa_logits_module_perf`` and
  ``glm5_topk_module_perf`` (score mode ``flat``): both kernels' time per causal (query, key) pair
  at >= 1e8 pairs (median), and the smallest measured time as a floor. SGLang runs dense MHA without
  the indexer while a prompt's keys fit in ``index_topk``; beyond, the indexer scores every pair and
  the attention is capped at ``index_topk`` keys a query, on at least :data:`SPARSE_MIN_HEADS` heads.

GPUs and frameworks without a module table take B200 SGLang's scaled by memory bandwidth; prefill on
other GPUs scales by dense FP8 FLOP/s [INFERRED]. Index geometries other than GLM-5's (32 heads ×
128) scale the prefill kernels by heads × dim [INFERRED]; decode is looked up by heads per GPU only.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "calibration"
DATA = DATA_DIR / "dsa_indexer.json"
MODULE_DATA = DATA_DIR / "dsa_module_decode.parquet"
TABLE_DIR = "b200_sxm/sparse_attention/sglang/0.5.14"
MODULE_TABLE = "dsa_generation_module_perf.parquet"
MODULE_MODELS = ("zai-org/GLM-5-FP8", "zai-org/GLM-5")  # one geometry; the FP8 release preferred
MODULE_MAX_BATCH = 512  # larger batches are left out (see above)
FALLBACK = ("b200_sxm", "sglang")
# vLLM's own DSA module tables start at 150-230 µs a layer at batch 1 on every GPU (SGLang's 58-139,
# TRT-LLM's 74-140), the host-bound floor of a path timed outside CUDA graphs, and vLLM's MLA module
# tables likewise sit above what vLLM serving shows (docs/validation.md): vLLM is priced from the
# same GPU's SGLang (else TRT-LLM) module [INFERRED]
MODULE_FRAMEWORK_PREFERENCE = {"vllm": ("sglang", "trtllm", "vllm")}
LOGITS_TABLE = "glm5_mqa_logits_module_perf.parquet"
TOPK_TABLE = "glm5_topk_module_perf.parquet"
TOPK_SCORE_MODE = "flat"
REFERENCE_GPU = "b200_sxm"
REFERENCE_HEADS, REFERENCE_DIM = 32, 128  # GLM-5's indexer (config.json index_n_heads, index_head_dim)
# The sparse MLA prefill kernels work on at least this many query heads per GPU: the collector's
# GLM-5 context module beyond index_topk tokens takes about as long at 8 and 16 heads per GPU as
# 64 heads' worth of sparse attention (B200 SGLang, 8k-token prompt: 2.35 ms at TP 8, 2.51 at TP 4,
# 3.52 at TP 1) [INFERRED: FlashMLA's sparse kernels take 64 or 128 heads]
SPARSE_MIN_HEADS = 64
PREFILL_LARGE_PAIRS = 1e8  # pairs above which both kernels run at their throughput


def _prefill_pairs(batch, isl, past):
    """Causal (query, key) pairs of ``batch`` chunks of ``isl`` new tokens over ``past`` cached ones."""
    return batch * (isl * past + isl * (isl + 1) / 2.0)


def _module_rows(root: Path):
    """GLM-5's decode attention module, every system and framework measured (newest version each)."""
    import pandas as pd

    from simcluster.perf.calibration.load import SYSTEMS, version_order

    out = []
    for system in SYSTEMS:
        base = root / system / "sparse_attention"
        for fw in ("vllm", "sglang", "trtllm"):
            files = sorted((base / fw).glob(f"*/{MODULE_TABLE}"), key=lambda f: version_order(f.parent.name))
            if not files:
                continue
            f = files[-1]
            d = pd.read_parquet(f, columns=["op_name", "kernel_source", "model", "kv_cache_dtype", "gemm_type",
                                            "num_heads", "batch_size", "isl", "step", "latency"])
            d = d[(d["op_name"] == "dsa_generation_module") & d["model"].isin(MODULE_MODELS)
                  & (d["batch_size"] <= MODULE_MAX_BATCH) & (d["latency"] > 0)]
            if d.empty:
                continue
            d = d.assign(kv=np.where(d["kv_cache_dtype"].astype(str).str.startswith("fp8"), "fp8", "bf16"),
                         ctx=d["step"] + d["isl"])
            # projection formats under the names the GEMM tables answer to (bfloat16 -> bf16)
            d = d.assign(gemm=d["gemm_type"].astype(str).replace({"bfloat16": "bf16"}))
            for (gemm, kv), g in d.groupby(["gemm", "kv"]):
                pref = next(m for m in MODULE_MODELS if (g["model"] == m).any())
                g = g[g["model"] == pref]
                counts = g["kernel_source"].value_counts()
                kernel = sorted(counts.index, key=lambda k: (-counts[k], k))[0]
                g = g[g["kernel_source"] == kernel]
                g = g.groupby(["num_heads", "batch_size", "ctx"])["latency"].median().reset_index()
                g = g.assign(system=system, framework=fw, version=f.parent.name, gemm=gemm, kv=kv,
                             kernel=kernel, model=pref)
                out.append(g)
    if not out:
        from simcluster.errors import UserError

        raise UserError(f"no {MODULE_TABLE} of GLM-5 under <system>/sparse_attention/<framework>/<version>/",
                        where=str(root))
    df = pd.concat(out, ignore_index=True)
    df["latency_s"] = (df.pop("latency") / 1e3).astype("float32")  # the tables hold milliseconds
    df = df.rename(columns={"num_heads": "heads", "batch_size": "batch"})
    cols = ["system", "framework", "version", "gemm", "kv", "kernel", "model", "heads", "batch", "ctx", "latency_s"]
    return df[cols].sort_values(cols[:-1]).reset_index(drop=True)


def build_table(root: str | Path):
    """Condense the collector's tables under ``root`` (the aiconfigurator ``systems/data`` folder):
    (the decode module frame :data:`MODULE_DATA` holds, the dict :data:`DATA` holds)."""
    import pandas as pd

    from simcluster.errors import UserError

    base = Path(root) / TABLE_DIR
    for name in (LOGITS_TABLE, TOPK_TABLE):
        if not (base / name).is_file():
            raise UserError("DSA indexer table not found", where=str(base / name))
    logits = pd.read_parquet(base / LOGITS_TABLE)
    topk = pd.read_parquet(base / TOPK_TABLE)
    topk = topk[topk["score_mode"] == TOPK_SCORE_MODE]
    key = ["batch_size", "isl", "step"]
    lg = logits.groupby(key)["latency"].median()
    tk = topk.groupby(key)["latency"].median()
    both = pd.concat({"logits": lg, "topk": tk}, axis=1).dropna().reset_index()
    both["latency_s"] = (both["logits"] + both["topk"]) / 1e3  # the tables hold milliseconds
    modules = _module_rows(Path(root))
    pre = both[both["isl"] > 1].copy()
    pre["pairs"] = _prefill_pairs(pre["batch_size"], pre["isl"], pre["step"])
    big = pre[pre["pairs"] >= PREFILL_LARGE_PAIRS]
    per_pair = float(np.median(big["latency_s"] / big["pairs"]))
    floor = float(pre.loc[pre["latency_s"] > 0, "latency_s"].min())
    return modules, {
        "source": "NVIDIA ai-dynamo/aiconfigurator systems data (Apache-2.0): "
                  f"<system>/sparse_attention/<framework>/<version>/{MODULE_TABLE} (decode) and "
                  f"{TABLE_DIR}/{{{LOGITS_TABLE},{TOPK_TABLE}}} (score_mode {TOPK_SCORE_MODE}; prefill); "
                  "condensed by simcluster.perf.dsa.build_table",
        "gpu": REFERENCE_GPU,
        "index_heads": REFERENCE_HEADS,
        "index_head_dim": REFERENCE_DIM,
        "decode_module": {"note": "dsa_module_decode.parquet: seconds of GLM-5's attention module (one layer) by "
                                  "system, framework, projection format, KV format, heads per GPU, batch, context",
                          "tables": sorted("/".join(r) for r in modules[["system", "framework", "version"]]
                                           .drop_duplicates().to_numpy()),
                          "rows": int(len(modules))},
        "prefill": {"note": "seconds per causal (query, key) pair at >= 1e8 pairs (median), and the floor",
                    "seconds_per_pair": per_pair, "floor_s": floor, "rows": int(len(big))},
    }


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(DATA.read_text())


@lru_cache(maxsize=1)
def _modules():
    import pandas as pd

    return pd.read_parquet(MODULE_DATA)


@lru_cache(maxsize=None)
def module_source(system: str, framework: str) -> tuple[str, str, float]:
    """(system, framework) whose measured module prices ``system`` / ``framework``, and the factor
    on its times: the pair itself (vLLM: see :data:`MODULE_FRAMEWORK_PREFERENCE`), else the same GPU
    under another framework, else B200 SGLang's scaled by memory bandwidth [INFERRED]."""
    from simcluster.catalog.gpus import get_gpu
    from simcluster.errors import UserError

    have = set(map(tuple, _modules()[["system", "framework"]].drop_duplicates().to_numpy()))
    for fw in MODULE_FRAMEWORK_PREFERENCE.get(framework, (framework,)) + ("sglang", "trtllm", "vllm"):
        if (system, fw) in have:
            return system, fw, 1.0
    ref = get_gpu(FALLBACK[0])
    try:
        bw = get_gpu(system).mem_bw_Bps
    except UserError:  # a GPU outside the catalog: no scaling
        bw = ref.mem_bw_Bps
    return FALLBACK[0], FALLBACK[1], float(ref.mem_bw_Bps / bw)


@lru_cache(maxsize=None)
def module_table(system: str, framework: str, gemm: str, kv: str, heads: float):
    """The measured module grid that prices a model with ``heads`` query heads per GPU, attention
    projections in ``gemm`` and KV cache in ``kv`` under ``system`` / ``framework`` (a pair that
    has a table, see :func:`module_source`): the requested KV format where measured; the requested
    projection format, else FP8 blocks, else BF16, else any measured with that KV format; the
    nearest measured heads count (in ratio). Returns (log batch sizes, [(log contexts, log seconds,
    last context, last seconds, slope)] per batch, projection format, heads)."""
    d = _modules()
    d = d[(d["system"] == system) & (d["framework"] == framework)]
    kv = "fp8" if str(kv).startswith("fp8") else "bf16"
    d = d[d["kv"] == (kv if (d["kv"] == kv).any() else sorted(set(d["kv"]))[-1])]
    g_used = next((g for g in (gemm, "fp8_block", "bf16") if (d["gemm"] == g).any()), str(d["gemm"].iloc[0]))
    d = d[d["gemm"] == g_used]
    h = int(min((int(k) for k in d["heads"].unique()),
                key=lambda k: (abs(math.log(k / max(heads, 1e-9))), k)))
    d = d[d["heads"] == h]
    bs = sorted(int(b) for b in d["batch"].unique())
    rows = []
    for b in bs:
        pts = d[d["batch"] == b].sort_values("ctx")[["ctx", "latency_s"]].to_numpy(dtype=float)
        # beyond the largest measured context: the last measured segment's seconds per token
        slope = max((pts[-1, 1] - pts[-2, 1]) / (pts[-1, 0] - pts[-2, 0]), 0.0) if len(pts) > 1 else 0.0
        rows.append((np.log(pts[:, 0]), np.log(pts[:, 1]), pts[-1, 0], pts[-1, 1], slope))
    return np.log(np.array(bs, dtype=float)), rows, g_used, h


def module_projections(heads: int) -> list[tuple[str, int, int]]:
    """(name, n, k) of the GEMMs inside the measured module (GLM-5's geometry, ``heads`` query heads
    per GPU): the MLA projections, the indexer's (replicated) and the output projection. They are
    priced in the module table's projection format (:func:`module_table`)."""
    hidden, q_lora, kv_lora, nope, rope, v = 6144, 2048, 512, 192, 64, 256  # zai-org/GLM-5-FP8 config.json
    return [("q_a_proj", q_lora, hidden), ("q_b_proj", heads * (nope + rope), q_lora),
            ("kv_a_proj", kv_lora + rope, hidden), ("kv_b_absorbed", heads * (nope + v), kv_lora),
            ("indexer_q_proj", REFERENCE_HEADS * REFERENCE_DIM, q_lora),
            ("indexer_k_proj", REFERENCE_DIM + REFERENCE_HEADS, hidden), ("o_proj", hidden, heads * v)]


def _at_batch(row, ctx: np.ndarray) -> np.ndarray:
    lc, lt, c_max, t_max, slope = row
    inside = np.exp(np.interp(np.log(np.clip(ctx, 1.0, c_max)), lc, lt))
    return np.where(ctx > c_max, t_max + slope * (ctx - c_max), inside)


def module_decode_s(table, batch, ctx):
    """Seconds of one layer's whole DSA attention module from a :func:`module_table` grid for
    ``batch`` decoding sequences of ``ctx`` cached tokens each: log-space interpolation over batch
    and context; beyond the measured contexts of a batch size, and beyond the largest measured
    batch, linear continuation of the last measured segment [INFERRED]. Array-friendly."""
    b, c = np.broadcast_arrays(np.maximum(np.asarray(batch, dtype=float), 1.0),
                               np.maximum(np.asarray(ctx, dtype=float), 1.0))
    lb, rows = table[0], table[1]
    x = np.clip(np.log(b), lb[0], lb[-1])
    i = np.clip(np.searchsorted(lb, x, side="right") - 1, 0, len(lb) - 2)
    w = (x - lb[i]) / (lb[i + 1] - lb[i])
    at = np.array([_at_batch(r, c) for r in rows])  # (batches, *shape)
    lo = np.take_along_axis(at, i[None, ...], axis=0)[0]
    hi = np.take_along_axis(at, (i + 1)[None, ...], axis=0)[0]
    t = np.exp((1.0 - w) * np.log(lo) + w * np.log(hi))
    # beyond the largest measured batch: the two largest batch sizes' difference, continued linearly
    b_hi, b_lo = np.exp(lb[-1]), np.exp(lb[-2])
    over = b > b_hi
    if np.any(over):
        grow = np.maximum(at[-1] - at[-2], 0.0) / (b_hi - b_lo)
        t = np.where(over, at[-1] + grow * (b - b_hi), t)
    return t


def indexer_prefill_s(pairs, heads: int = REFERENCE_HEADS, dim: int = REFERENCE_DIM, scale: float = 1.0):
    """Seconds of one layer's indexer over ``pairs`` causal (query, key) pairs on the reference GPU
    times ``scale``."""
    p = _table()["prefill"]
    t = np.maximum(np.asarray(pairs, dtype=float) * p["seconds_per_pair"] * (heads * dim)
                   / (REFERENCE_HEADS * REFERENCE_DIM), p["floor_s"])
    return np.where(np.asarray(pairs) > 0, t * scale, 0.0)


def prefill_scale(gpu) -> float:
    """Multiplier of the B200 indexer kernels' prefill time for ``gpu``: the dense FP8 FLOP/s ratio
    [INFERRED: no other GPU was measured]."""
    from simcluster.catalog.gpus import get_gpu

    ref = get_gpu(REFERENCE_GPU)
    f_ref = ref.flops_per_s.get("fp8") or ref.flops_per_s.get("bf16")
    f_gpu = gpu.flops_per_s.get("fp8") or gpu.flops_per_s.get("bf16")
    return float(f_ref / f_gpu)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from simcluster.errors import UserError

    ap = argparse.ArgumentParser(description="Condense the collectors' DeepSeek-sparse-attention tables into the "
                                             "shipped artefacts (dsa_module_decode.parquet, dsa_indexer.json).")
    ap.add_argument("root", help="aiconfigurator systems/data folder (e.g. ../shared/calibration/aiconfigurator/"
                                 "systems/data)")
    ap.add_argument("-o", "--out", default=str(DATA_DIR), help="output folder [default: the package's]")
    a = ap.parse_args(argv)
    try:
        modules, meta = build_table(a.root)
    except UserError as exc:
        print(f"simcluster.perf.dsa: error: {exc}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    modules.to_parquet(out / MODULE_DATA.name, index=False, compression="zstd")
    (out / DATA.name).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out / MODULE_DATA.name}: {len(modules)} decode module points from "
          f"{len(meta['decode_module']['tables'])} tables; {out / DATA.name}: prefill "
          f"{meta['prefill']['seconds_per_pair'] * 1e12:.3f} ps per pair")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
