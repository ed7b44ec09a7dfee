"""Run scenarios in-process for tests."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd

from simcluster.config.scenario import Scenario
from simcluster.sim.runner import run_scenario

# A small co-located deployment with constant step costs: an analysable queueing system.
CONSTANT_COLOCATED = {
    "name": "constant-colocated",
    "cluster": {"gpu": "h200_sxm"},
    "model": {"name": "llama-3.1-8b", "weights": "bf16", "kv_cache": "bf16"},
    "serving": {"mode": "colocated", "prefix_caching": False},
    "pools": {"colocated": {"instances": 1, "layout": "tp=1", "max_num_seqs": 1, "max_queue": 10**9}},
    "cost": {"source": "constant", "constant_step_s": 0.01},
    "workload": {
        "kind": "synthetic",
        "num_requests": 2000,
        "arrival": {"process": "poisson", "rate_per_s": 50.0},
        "input_tokens": {"dist": "fixed", "value": 16},
        "output_tokens": {"dist": "fixed", "value": 1},
    },
    "output": {"steps": False},
}

SMALL_DISAGG = {
    "name": "small-disagg",
    "cluster": {"gpu": "h200_sxm", "nodes": 1},
    "model": {"name": "llama-3.1-70b", "weights": "fp8", "kv_cache": "fp8"},
    "serving": {"mode": "disaggregated"},
    "pools": {"prefill": {"instances": 2, "layout": "tp=2"}, "decode": {"instances": 2, "layout": "tp=2"}},
    "cost": {"source": "roofline"},
    "workload": {
        "kind": "synthetic",
        "num_requests": 400,
        "arrival": {"process": "poisson", "rate_per_s": 8.0},
        "input_tokens": {"dist": "preset", "name": "azure_conv_2023"},
        "output_tokens": {"dist": "preset", "name": "azure_conv_2023"},
    },
}


def merged(base: dict, **sections) -> dict:
    """A deep copy of ``base`` where each given section's keys replace the base's."""
    out = copy.deepcopy(base)
    for key, val in sections.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            for k, v in val.items():
                out[key][k] = v
        else:
            out[key] = val
    return out


def run(tmp_path: Path, data: dict, name: str = "run"):
    """Validate and run ``data``; returns (summary, requests DataFrame, output folder)."""
    sc = Scenario.model_validate(data)
    out = tmp_path / name
    summary = run_scenario(sc, tmp_path, out)
    return summary, pd.read_parquet(out / "requests.parquet"), out
