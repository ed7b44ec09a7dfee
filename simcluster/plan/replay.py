"""DES replay of design points: the analytic steady state checked by the discrete-event simulator.

A point becomes a scenario (:func:`scenario_for`): its deployment (``n_prefill`` × prefill layout,
``n_decode`` × decode layout, or one co-located instance), its formats and knobs, and a synthetic
workload of fixed ISL/OSL with Poisson arrivals at ``load`` × the point's analytic request capacity.
:func:`replay_points` runs each through :func:`simcluster.sim.runner.run_scenario`, writes the run
under ``DIR/replay/<point_id>/`` and one row per point to ``DIR/replay.parquet`` with the analytic
and simulated metrics side by side.

Not replayable (a row with the reason): decode-only points (no prefill pool to feed them), the
speed-of-light cost (``cost: sol`` has no scenario counterpart), points that are not ``ok``.
The framework ``ideal`` replays as vLLM with ``serving.step_overhead_s: 0``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd

from simcluster.errors import UserError
from simcluster.perf.memory import NCCL_MEM_BYTES, OTHER_MEM_BYTES

SERVING_FRAMEWORKS = ("vllm", "sglang", "trtllm")


def _none(v):
    """None for missing values (None, NaN, pandas NA), the value otherwise."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        return None if pd.isna(v) else v
    except (TypeError, ValueError):  # arrays and other non-scalars
        return v


def scenario_for(row: dict, *, requests: int = 400, load: float = 0.8, seed: int = 0, slo: dict | None = None,
                 rate_per_s: float | None = None, workload: dict | None = None,
                 instances: tuple[int, int] | int | None = None) -> dict:
    """A scenario dict that deploys the point ``row`` (a sweep row) under a fixed-length workload.

    ``rate_per_s`` overrides ``load`` × the point's capacity; ``workload`` replaces the workload
    section; ``instances`` overrides the pool sizes (``(n_prefill, n_decode)``, or the co-located
    count). Raises :class:`UserError` when the point cannot be replayed.
    """
    row = {k: _none(v) for k, v in row.items()}
    if row.get("status") != "ok":
        raise UserError(f"point {row.get('point_id')} is {row.get('status')}: {row.get('reason')}")
    mode = row["mode"]
    if mode == "decode":
        raise UserError("decode-only points have no prefill pool to replay")
    if row["cost"] == "sol":
        raise UserError("speed-of-light points have no scenario counterpart (cost: sol)")
    fw = row["framework"]
    serving = {"mode": mode, "prefix_caching": False, "hop_b": bool(row["hop_b"]),
               "gpu_memory_utilization": float(row["gpu_memory_utilization"]),
               "framework": fw if fw in SERVING_FRAMEWORKS else "vllm"}
    if fw not in SERVING_FRAMEWORKS:
        serving["step_overhead_s"] = 0.0
    # the analytic path reserves the memory plan's default for activations (multi-GPU): do the same
    serving["activation_reserve_gb"] = (OTHER_MEM_BYTES + NCCL_MEM_BYTES) / 1e9
    cluster = {"gpu": row["gpu"]}
    if row.get("nvlink_domain_size"):
        cluster["nvlink_domain_size"] = int(row["nvlink_domain_size"])
    model = {"name": row["model"], "weights": row["weights"], "kv_cache": row["kv"],
             "activations": row["activations"], "resmoe_keep": float(row["resmoe_keep"])}
    if row.get("kv_eviction_budget"):
        model["kv_eviction_budget"] = int(row["kv_eviction_budget"])
    isl, osl = int(row["isl"]), int(row["osl"])
    pp = int(row.get("pp") or 1)
    if mode == "disaggregated":
        bp = int(row["prefill_batch_used"])
        ppp = int(row.get("prefill_pp") or 1)
        n_p, n_d = instances if isinstance(instances, tuple) else (int(row["n_prefill"]), int(row["n_decode"]))
        pools = {
            "prefill": {"instances": int(n_p), "layout": row["prefill_layout_used"],
                        "max_num_seqs": max(1, bp * ppp), "max_num_batched_tokens": max(bp * isl, 1)},
            "decode": {"instances": int(n_d), "layout": row["decode_layout"],
                       "max_num_seqs": int(row["decode_batch"]) * pp},
        }
    else:
        b = int(row["decode_batch"])
        n = int(instances) if isinstance(instances, int) else 1
        pools = {"colocated": {"instances": n, "layout": row["decode_layout"], "max_num_seqs": b * pp,
                               "max_num_batched_tokens": int(row["token_budget"]), "chunked_prefill": True}}
    rate = rate_per_s if rate_per_s is not None else load * float(row["requests_per_s"])
    if not rate > 0:
        raise UserError("the point has no request capacity to replay")
    wl = workload or {"kind": "synthetic", "num_requests": int(requests),
                      "arrival": {"process": "poisson", "rate_per_s": rate},
                      "input_tokens": {"dist": "fixed", "value": isl},
                      "output_tokens": {"dist": "fixed", "value": osl}}
    return {
        "name": f"replay-{row['point_id']}",
        "description": f"DES replay of sweep point {row['point_id']}",
        "seed": int(seed),
        "cluster": cluster, "model": model, "serving": serving, "pools": pools,
        "cost": {"source": row["cost"]},
        "workload": wl,
        "slo": {k: v for k, v in (slo or {}).items() if v is not None} or {"ttft_s": None, "tpot_s": None},
        "output": {"steps": False},
    }


def run_point(row: dict, out_dir: Path, *, base_dir: Path | None = None, **kw) -> dict:
    """Replay one point; returns the DES summary (also written to ``out_dir/summary.json``)."""
    from simcluster.config.scenario import Scenario
    from simcluster.sim.runner import run_scenario

    data = scenario_for(row, **kw)
    scenario = Scenario.model_validate(data)
    return run_scenario(scenario, base_dir or out_dir, out_dir)


def replay_points(rows: pd.DataFrame, sweep_dir: Path, *, requests: int = 400, load: float = 0.8, seed: int = 0,
                  slo: dict | None = None) -> pd.DataFrame:
    """Replay each row; writes ``replay/<point_id>/`` and ``replay.parquet``; returns the table."""
    from simcluster.plan.store import write_table_atomic
    import pyarrow as pa

    out = []
    for row in rows.to_dict("records"):
        rec = {"point_id": row["point_id"], "mode": row.get("mode"), "layout_label": row.get("layout_label"),
               "decode_batch": row.get("decode_batch"), "load": load,
               "analytic_ttft_s": _none(row.get("ttft_s")), "analytic_tpot_s": _none(row.get("tpot_s")),
               "analytic_tokens_per_s_per_gpu": _none(row.get("tokens_per_s_per_gpu")),
               "analytic_tokens_per_s_per_user": _none(row.get("tokens_per_s_per_user")),
               "status": "ok", "reason": None}
        t0 = time.perf_counter()
        try:
            s = run_point(row, sweep_dir / "replay" / str(row["point_id"]), requests=requests, load=load,
                          seed=seed, slo=slo)
        except UserError as exc:
            rec.update(status="skipped", reason=str(exc))
            out.append(rec)
            continue
        rec.update(
            des_ttft_mean_s=s["ttft_s"]["mean"], des_ttft_p90_s=s["ttft_s"]["p90"],
            des_tpot_mean_s=s["tpot_s"]["mean"], des_tpot_p90_s=s["tpot_s"]["p90"],
            des_tokens_per_s_per_gpu=s["throughput"]["output_tokens_per_s_per_gpu"],
            des_tokens_per_s_per_user=s["throughput"]["tokens_per_s_per_user_mean"],
            des_slo_attainment=s["slo"]["attainment"], des_requests_per_s=s["throughput"]["requests_per_s"],
            gpus=s.get("gpus"), wall_s=time.perf_counter() - t0,
        )
        out.append(rec)
    df = pd.DataFrame(out)
    if len(df):
        write_table_atomic(pa.Table.from_pandas(df, preserve_index=False), sweep_dir / "replay.parquet")
    return df
