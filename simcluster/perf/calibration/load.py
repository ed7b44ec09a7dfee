"""Reading the aiconfigurator measurement tree into tidy frames, one implementation per op.

Layout read: ``<data>/systems/data/<system>/<op folder>/<framework>/<version>/<table>.parquet``
(NVIDIA ai-dynamo/aiconfigurator, Apache-2.0). ``latency`` there is milliseconds for one invocation
on one GPU (attention and MLA: one layer); NCCL ``message_size`` counts elements (2 bytes each for
``half``).

Two choices are made here, and only here:

* **Version**: per (system, framework, table, quant mode) the newest version that measured that
  quant mode. Usually that is simply the newest version; it differs where a newer collection only
  re-measured one quant mode (B200 TRT-LLM MoE 1.3.0rc23 holds only ``w4a8_mxfp4_mxfp8``).
* **Kernel source**: one shape often has rows from several kernels. We never average them. Per
  (system, framework, table, quant mode) the kernels are ranked by the number of shapes they
  measured (the framework's general-purpose path first; ties: most rows in the whole table, then
  the name), and every shape takes the best-ranked kernel that measured it. So the primary kernel
  answers wherever it ran, and another kernel only fills shapes the primary never measured — which
  is what the frameworks' own dispatchers do (vLLM's FP8 block GEMM on H100 runs FlashInfer below
  m = 32 and DeepGEMM from m = 32 up). Custom all-reduce is the exception: eager and CUDA-graph
  variants cover the same shapes, and we take the CUDA-graph one, because the frameworks serve
  decode under CUDA graphs.

Repeated rows of the same shape from the chosen kernel are reduced to their median.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from simcluster.errors import UserError

SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm", "gb200", "rtx_pro_6000_server")
FRAMEWORKS = ("vllm", "sglang", "trtllm")
SOURCE = "NVIDIA ai-dynamo/aiconfigurator @ 095f58a5, aic-core/src/aiconfigurator_core/systems/"
LICENSE = "Apache-2.0"


@dataclass(frozen=True)
class FamilySpec:
    """How one op family is read: where its table lives and which columns mean what.

    ``key`` columns are discrete (one interpolation grid per distinct key), ``axes`` are the size
    axes interpolated in log space. ``quant`` names the key columns that form the quant mode used
    for the version and kernel-source choice.
    """

    family: str
    folder: str
    table: str
    key: tuple[str, ...]
    axes: tuple[str, ...]
    quant: tuple[str, ...]
    rename: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    frameworks: tuple[str, ...] = FRAMEWORKS


def _col(df: pd.DataFrame, name: str, default: int) -> pd.Series:
    # Older collections lack some columns; they measured the default then.
    return df[name] if name in df.columns else pd.Series(default, index=df.index)


def _attention_context(df: pd.DataFrame) -> pd.DataFrame:
    # Full (not sliding-window) attention only; step 0 = no cached prefix.
    return df[(_col(df, "window_size", 0) == 0) & (_col(df, "beam_width", 1) == 1) & (_col(df, "step", 0) == 0)]


def _attention_generation(df: pd.DataFrame) -> pd.DataFrame:
    df = df[(_col(df, "window_size", 0) == 0) & (_col(df, "beam_width", 1) == 1)].copy()
    # step = tokens already cached, isl = 1 new token: the new query attends to step + 1 keys.
    df["ctx"] = df["step"] + df["isl"]
    return df


def _mla_generation(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["ctx"] = df["step"] + df["isl"]
    return df


def _mla_module(df: pd.DataFrame) -> pd.DataFrame:
    # DeepSeek-V3 geometry only (R1 and V3.1 share it; older collections repeat it under those names).
    return df[(df["model"] == "deepseek-ai/DeepSeek-V3") & (_col(df, "tp_size", 1) == 1)]


def _mla_module_generation(df: pd.DataFrame) -> pd.DataFrame:
    return _mla_generation(_mla_module(df))


# Expert-load distributions kept: even routing, and the measured power law closest to real traffic
# (exponent 1.01). The steeper power_law_1.2 tables are left out to keep the package small.
MOE_DISTRIBUTIONS = ("balanced", "power_law_1.01")


def _moe(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["distribution"].isin(MOE_DISTRIBUTIONS)]


def _nccl(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df["nccl_dtype"] == "half"].copy()  # serving collectives move bf16/fp16 activations
    df["bytes"] = df["message_size"] * 2
    df["op_name"] = df["op_name"].replace({"alltoall": "all_to_all"})
    return df


def _custom_allreduce(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["bytes"] = df["message_size"] * 2  # bfloat16 elements
    return df


FAMILIES: dict[str, FamilySpec] = {
    s.family: s
    for s in (
        FamilySpec(
            "gemm",
            "gemm",
            "gemm_perf",
            key=("dtype",),
            axes=("m", "n", "k"),
            quant=("dtype",),
            rename={"gemm_dtype": "dtype"},
        ),
        FamilySpec(
            "attention_prefill",
            "attention",
            "context_attention_perf",
            key=("attn_dtype", "kv_dtype", "q_heads", "kv_heads", "head_dim"),
            axes=("batch", "isl"),
            quant=("attn_dtype", "kv_dtype"),
            rename={
                "kv_cache_dtype": "kv_dtype",
                "num_heads": "q_heads",
                "num_key_value_heads": "kv_heads",
                "batch_size": "batch",
            },
            prepare=_attention_context,
        ),
        FamilySpec(
            "attention_decode",
            "attention",
            "generation_attention_perf",
            key=("attn_dtype", "kv_dtype", "q_heads", "kv_heads", "head_dim"),
            axes=("batch", "ctx"),
            quant=("attn_dtype", "kv_dtype"),
            rename={
                "kv_cache_dtype": "kv_dtype",
                "num_heads": "q_heads",
                "num_key_value_heads": "kv_heads",
                "batch_size": "batch",
            },
            prepare=_attention_generation,
        ),
        FamilySpec(
            "mla_prefill",
            "mla",
            "context_mla_perf",
            key=("mla_dtype", "kv_dtype", "q_heads"),
            axes=("batch", "isl"),
            quant=("mla_dtype", "kv_dtype"),
            rename={"kv_cache_dtype": "kv_dtype", "num_heads": "q_heads", "batch_size": "batch"},
        ),
        FamilySpec(
            "mla_decode",
            "mla",
            "generation_mla_perf",
            key=("mla_dtype", "kv_dtype", "q_heads"),
            axes=("batch", "ctx"),
            quant=("mla_dtype", "kv_dtype"),
            rename={"kv_cache_dtype": "kv_dtype", "num_heads": "q_heads", "batch_size": "batch"},
            prepare=_mla_generation,
        ),
        FamilySpec(
            "mla_module_prefill",
            "mla",
            "mla_context_module_perf",
            key=("kv_dtype", "gemm_dtype", "q_heads"),
            axes=("batch", "isl"),
            quant=("kv_dtype", "gemm_dtype"),
            rename={
                "kv_cache_dtype": "kv_dtype",
                "gemm_type": "gemm_dtype",
                "num_heads": "q_heads",
                "batch_size": "batch",
            },
            prepare=_mla_module,
        ),
        FamilySpec(
            "mla_module_decode",
            "mla",
            "mla_generation_module_perf",
            key=("kv_dtype", "gemm_dtype", "q_heads"),
            axes=("batch", "ctx"),
            quant=("kv_dtype", "gemm_dtype"),
            rename={
                "kv_cache_dtype": "kv_dtype",
                "gemm_type": "gemm_dtype",
                "num_heads": "q_heads",
                "batch_size": "batch",
            },
            prepare=_mla_module_generation,
        ),
        FamilySpec(
            "mla_bmm",
            "mla_bmm",
            "mla_bmm_perf",
            key=("stage", "dtype", "q_heads"),
            axes=("tokens",),
            quant=("stage", "dtype"),
            rename={"op_name": "stage", "bmm_dtype": "dtype", "num_heads": "q_heads", "num_tokens": "tokens"},
        ),
        FamilySpec(
            "moe",
            "moe",
            "moe_perf",
            key=("dtype", "distribution", "hidden", "inter", "topk", "experts"),
            axes=("tokens", "tp", "ep"),
            quant=("dtype",),
            rename={
                "moe_dtype": "dtype",
                "num_tokens": "tokens",
                "hidden_size": "hidden",
                "inter_size": "inter",
                "num_experts": "experts",
                "moe_tp_size": "tp",
                "moe_ep_size": "ep",
            },
            prepare=_moe,
        ),
        FamilySpec(
            "nccl",
            "comm",
            "nccl_perf",
            key=("op",),
            axes=("n_gpus", "bytes"),
            quant=("op",),
            rename={"op_name": "op", "num_gpus": "n_gpus"},
            prepare=_nccl,
            frameworks=("nccl",),
        ),
        FamilySpec(
            "custom_allreduce",
            "comm",
            "custom_allreduce_perf",
            key=("dtype",),
            axes=("n_gpus", "bytes"),
            quant=(),
            rename={"num_gpus": "n_gpus", "allreduce_dtype": "dtype"},
            prepare=_custom_allreduce,
        ),
    )
}


@dataclass(frozen=True)
class MeasuredFrame:
    """The chosen measurements of one family on one system and framework.

    ``frame`` columns: the family's key columns, its axes, ``latency_ms``, ``version``,
    ``kernel_source``. One row per distinct (key, axes).
    """

    family: str
    system: str
    framework: str
    frame: pd.DataFrame
    files: tuple[str, ...]


def version_order(version: str) -> tuple:
    """Sort key for framework versions: 1.3.0rc15 < 1.3.0rc20 < 1.3.0 < 1.3.0.post1; dev sorts first."""
    m = re.match(r"^(\d+(?:\.\d+)*)(.*)$", version)
    if not m:
        return ((), 0, 0)
    release = tuple(int(p) for p in m.group(1).split("."))
    tail = m.group(2).lstrip(".")
    rank, num = 2, 0  # final release
    t = re.match(r"^(dev|a|b|rc|post)(\d*)", tail)
    if t:
        rank = {"dev": 0, "a": 1, "b": 1, "rc": 1, "post": 3}[t.group(1)]
        num = int(t.group(2) or 0)
    return (release, rank, num)


def check_data_dir(data: Path) -> Path:
    """The ``systems/data`` folder under ``data``; a :class:`UserError` naming ``data`` if absent or empty."""
    data = Path(data)
    root = data / "systems" / "data"
    if not data.is_dir():
        raise UserError(f"calibration data directory {str(data)!r} does not exist")
    if not root.is_dir() or not any(root.iterdir()):
        raise UserError(
            f"calibration data directory {str(data)!r} has no measured tables "
            "(expected systems/data/<system>/<op>/<framework>/<version>/*.parquet)"
        )
    return root


def available_systems(data: Path) -> list[str]:
    root = check_data_dir(data)
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def read_family(data: Path, family: str, system: str, framework: str) -> MeasuredFrame | None:
    """Measurements of ``family`` on ``system`` for ``framework``, or None where nothing was measured."""
    spec = FAMILIES[family]
    root = check_data_dir(data)
    base = root / system / spec.folder / framework
    if not base.is_dir():
        return None
    parts = []
    files = []
    for vdir in sorted(base.iterdir(), key=lambda p: version_order(p.name)):
        f = vdir / f"{spec.table}.parquet"
        if not f.is_file():
            continue
        df = pd.read_parquet(f)
        if spec.prepare is not None:
            df = spec.prepare(df)
        # ``prepare`` works on the collector's column names; ours apply from here on.
        df = df.rename(columns=spec.rename)
        df["version"] = vdir.name
        df["_vorder"] = len(files)
        missing = [c for c in (*spec.key, *spec.axes, "latency", "kernel_source") if c not in df.columns]
        if missing:
            raise UserError(f"{f}: missing columns {missing}")
        keep = [*spec.key, *spec.axes, "latency", "kernel_source", "version", "_vorder"]
        parts.append(df[keep])
        files.append(str(f.relative_to(root)))
    if not parts:
        return None
    df = pd.concat(parts, ignore_index=True)
    df = df[np.isfinite(df["latency"]) & (df["latency"] > 0)]
    if df.empty:
        return None
    df = choose_implementation(df, spec.quant, spec.family, [*spec.key, *spec.axes])
    df = df.groupby([*spec.key, *spec.axes], as_index=False, sort=True).agg(
        latency_ms=("latency", "median"), version=("version", "first"), kernel_source=("kernel_source", "first")
    )
    for c in spec.axes:
        df[c] = df[c].astype(np.int64)
    used_versions = set(df["version"])
    files = [f for f in files if f.split("/")[3] in used_versions]
    return MeasuredFrame(family, system, framework, df.reset_index(drop=True), tuple(files))


def choose_implementation(
    df: pd.DataFrame, quant: tuple[str, ...], family: str, shape: list[str] | None = None
) -> pd.DataFrame:
    """Keep, per quant mode, the newest version that has it, and one kernel per shape (see module doc)."""
    qcols = list(quant)
    if not qcols:
        df = df.assign(_q="all")
        qcols = ["_q"]
    newest = df.groupby(qcols)["_vorder"].transform("max")
    df = df[df["_vorder"] == newest]
    if family == "custom_allreduce":
        graph = df["kernel_source"].str.contains("graph", case=False) | ~df.groupby(qcols)["kernel_source"].transform(
            lambda s: s.str.contains("graph", case=False).any()
        )
        df = df[graph]
    total = df.groupby("kernel_source").size()
    rows = df.groupby([*qcols, "kernel_source"]).size().rename("n").reset_index()
    rows["total"] = rows["kernel_source"].map(total)
    rows = rows.sort_values(
        [*qcols, "n", "total", "kernel_source"], ascending=[True] * len(qcols) + [False, False, True]
    )
    rows["_rank"] = rows.groupby(qcols).cumcount()
    df = df.merge(rows[[*qcols, "kernel_source", "_rank"]], on=[*qcols, "kernel_source"], how="inner")
    if shape:
        # A lower-ranked kernel only answers shapes the preferred one never measured.
        best = df.groupby([*qcols, *shape])["_rank"].transform("min")
        df = df[df["_rank"] == best]
    else:
        df = df[df["_rank"] == 0]
    return df.drop(columns=[c for c in ("_q", "_vorder", "_rank") if c in df.columns])
