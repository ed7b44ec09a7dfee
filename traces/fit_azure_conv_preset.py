"""Fit the ``azure_conv_2023`` workload preset from the Azure LLM inference trace 2023 (conversation).

Writes ``simcluster/data/azure_conv_2023_lengths.json``: quantile tables of context and generated
tokens, the arrival rate and inter-arrival coefficient of variation, and the provenance of the
source. The package ships that derived file, never the trace itself.

Usage (from the repository root, with ../shared beside it)::

    python traces/fit_azure_conv_preset.py [TRACE.csv] [-o OUT.json]

The same input gives the same file, byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simcluster.workload import read_trace  # noqa: E402

DEFAULT_TRACE = REPO.parent / "shared" / "traces" / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
DEFAULT_OUT = REPO / "simcluster" / "data" / "azure_conv_2023_lengths.json"

# Every percentile, plus finer steps in both tails where the mean is decided.
PROBABILITIES = [0.0, 0.001, 0.005] + [round(0.01 * k, 2) for k in range(1, 100)] + [0.995, 0.999, 1.0]


def _side(values: np.ndarray) -> dict:
    quantiles = np.quantile(values, PROBABILITIES)  # numpy's default (linear) interpolation
    p = np.asarray(PROBABILITIES)
    table_mean = float(np.sum(np.diff(p) * (quantiles[1:] + quantiles[:-1]) / 2))
    return {
        "trace_mean": round(float(values.mean()), 3),
        "trace_p50": float(np.median(values)),
        "trace_p90": float(np.quantile(values, 0.9)),
        "table_mean": round(table_mean, 3),
        "probabilities": PROBABILITIES,
        "quantiles": [round(float(q), 4) for q in quantiles],
    }


def fit(trace: Path) -> dict:
    """The preset's content, fitted from the trace at ``trace``."""
    workload = read_trace(trace, "azure")
    gaps = np.diff(workload.arrival_s)
    inputs = workload.input_tokens.astype(float)
    outputs = workload.output_tokens.astype(float)
    return {
        "name": "azure_conv_2023",
        "description": (
            "Request lengths and arrival statistics fitted to the Azure LLM inference trace 2023, "
            "conversation service. Lengths are drawn by inverse transform from the quantile tables "
            "(linear between quantiles); context and generated tokens are drawn independently, "
            "as their correlation in the trace is weak (see correlation)."
        ),
        "source": {
            "dataset": "Azure LLM inference trace 2023 (AzureLLMInferenceTrace_conv.csv)",
            "url": "https://github.com/Azure/AzurePublicDataset",
            "sha256": hashlib.sha256(trace.read_bytes()).hexdigest(),
            "license": "CC-BY-4.0",
            "attribution": (
                "Derived from the Azure Public Dataset (Microsoft), licensed CC-BY-4.0. Cite: Pratyush Patel, "
                "Esha Choukse, Chaojie Zhang, Aashaka Shah, Inigo Goiri, Saeed Maleki, Ricardo Bianchini. "
                "Splitwise: Efficient generative LLM inference using phase splitting. ISCA 2024."
            ),
            "changes": "condensed to quantiles and summary statistics; no trace rows are included",
        },
        "fitted_by": "traces/fit_azure_conv_preset.py",
        "requests": len(workload),
        "arrival": {
            "duration_s": round(workload.duration_s, 6),
            "rate_per_s": round((len(workload) - 1) / workload.duration_s, 6),
            "interarrival_cv": round(float(gaps.std() / gaps.mean()), 6),
        },
        "correlation": {
            "pearson": round(float(np.corrcoef(inputs, outputs)[0, 1]), 4),
            # Spearman = Pearson correlation of the ranks (average ranks for ties); no scipy needed
            "spearman": round(float(pd.Series(inputs).rank().corr(pd.Series(outputs).rank())), 4),
        },
        "input_tokens": _side(inputs),
        "output_tokens": _side(outputs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.output.write_text(json.dumps(fit(args.trace), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
