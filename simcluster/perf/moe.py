"""MoE step quantities: experts touched per EP rank, routing imbalance, ResMoE expert bytes.

Uniform routing is assumed throughout (each token picks ``top_k`` distinct experts out of ``E``
uniformly at random) [INFERRED, SEED-NOTES §1.6]; real routers are more skewed, which the
``load_imbalance`` override covers.
"""

from __future__ import annotations

import numpy as np


def expected_experts_touched(tokens, num_experts: int, top_k: int, ep: int = 1):
    """Expected distinct experts of one EP rank that at least one of ``tokens`` tokens routes to:

    ``E_loc · (1 − (1 − k/E)^tokens)`` with ``E_loc = E / ep`` (an expert is missed by one token
    with probability exactly ``1 − k/E``, independently across tokens).
    Lies in ``[k/ep, min(E_loc, tokens·k/ep)]`` for tokens ≥ 1.
    """
    e_loc = num_experts / ep
    return e_loc * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def load_imbalance(tokens, top_k: int, ep: int):
    """Expected busiest-rank load over the mean load under uniform routing [INFERRED].

    The token-expert pairs a rank receives are ≈ normal with mean ``μ = tokens·k/ep`` and
    variance ``μ·(1 − 1/ep)``; the expected maximum of ``ep`` such ranks is about
    ``μ + σ·sqrt(2·ln ep)``. Returns ``1 + sqrt(2·ln(ep)·(1 − 1/ep)/μ)``, capped so the busiest rank
    gets at most every token ``min(k, E_loc)`` times; 1 for ``ep = 1`` or no tokens.
    """
    tokens = np.asarray(tokens, dtype=float)
    if ep <= 1:
        return np.ones_like(tokens) if tokens.ndim else 1.0
    mu = np.maximum(tokens * top_k / ep, 1e-300)
    factor = 1.0 + np.sqrt(2.0 * np.log(ep) * (1.0 - 1.0 / ep) / mu)
    factor = np.minimum(factor, float(ep))  # the busiest rank cannot get more than all pairs
    factor = np.where(tokens > 0, factor, 1.0)
    return factor if factor.ndim else float(factor)


def resmoe_expert_bytes(expert_params: float, bytes_per_param: float, keep: float, index_bits: float):
    """Stored bytes of one ResMoE-compressed expert (SEED-NOTES §4 model) [INFERRED]:

    the residual keeps ``keep = 1 − sparsity`` of the expert's values, each with ``index_bits`` of
    index (unstructured pruning). ``keep = 1`` means no compression (plain bytes, no index).
    """
    if keep >= 1.0:
        return expert_params * bytes_per_param
    return expert_params * keep * (bytes_per_param + index_bits / 8.0)
