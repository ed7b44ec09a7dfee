"""Rate matching of a disaggregated deployment: the prefill:decode balance (SEED-NOTES §2.3).

The balance equation, implemented directly (the transcription of the paper's Alg. 1/2 is ambiguous
about which instance size multiplies which side, so it is not followed literally)::

    p = B_p / (FTL · G_p)                    prefill requests/s per prefill GPU
    d = B_d / (TTL · G_d · (OSL − 1))        decode requests/s per decode GPU (the first token
                                             comes from prefill, so decode makes OSL − 1)
    r = N_p / N_d = d / p                    ctx:gen GPU ratio that balances the two pools
    tokens/s/GPU (system) = (B_d / (TTL · G_d)) / (1 + r)
    tokens/s/user = 1 / TTL

A real deployment has whole instances: :func:`integer_ratio` finds the smallest ``n_p:n_d`` whose
request rates ``n_p·B_p/FTL`` and ``n_d·B_d/(TTL·(OSL−1))`` agree within a tolerance (3 %).

With pipeline parallelism an instance keeps ``pp`` micro-batches in flight, so its rate is ``pp``
times that of one batch [INFERRED]; the functions take ``pp`` for that (default 1, the paper's form).
All rates are per second; batches are sequences; GPU counts are per instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def prefill_rate(batch: int, ftl_s: float, gpus: int, pp: int = 1) -> float:
    """``p``: prefill requests/s per GPU of a prefill instance (``batch`` prompts every ``ftl_s``)."""
    return batch * pp / (ftl_s * gpus)


def decode_rate(batch: int, ttl_s: float, gpus: int, osl: int, pp: int = 1) -> float:
    """``d``: requests/s per GPU of a decode instance that makes ``osl − 1`` tokens per request."""
    if osl < 2:
        raise ValueError("decode needs OSL ≥ 2 (the first token comes from prefill)")
    return batch * pp / (ttl_s * gpus * (osl - 1))


def ctx_gen_ratio(p: float, d: float) -> float:
    """``r = d / p``: prefill GPUs per decode GPU that balance the request rates."""
    return d / p


def decode_tokens_per_s_per_gpu(batch: int, ttl_s: float, gpus: int, pp: int = 1) -> float:
    """Tokens/s per decode GPU: ``B_d / (TTL · G_d)``."""
    return batch * pp / (ttl_s * gpus)


def system_tokens_per_s_per_gpu(batch: int, ttl_s: float, gpus: int, ratio: float, pp: int = 1) -> float:
    """Rate-matched tokens/s over all GPUs (prefill and decode): ``(B_d / (TTL·G_d)) / (1 + r)``."""
    return decode_tokens_per_s_per_gpu(batch, ttl_s, gpus, pp) / (1.0 + ratio)


def fixed_ratio_tokens_per_s_per_gpu(p: float, d: float, ratio: float, osl: int) -> float:
    """Tokens/s over all GPUs when prefill GPUs = ``ratio`` × decode GPUs (not rate matched).

    Per decode GPU the pools serve ``min(ratio·p, d)`` requests/s (the slower pool sets the rate),
    each making ``OSL − 1`` decode tokens, spread over ``1 + ratio`` GPUs. Equal to
    :func:`system_tokens_per_s_per_gpu` when ``ratio = d / p``, lower for any other ratio.
    """
    return min(ratio * p, d) * (osl - 1) / (1.0 + ratio)


@dataclass(frozen=True)
class IntegerRatio:
    """Whole instances: ``n_prefill`` prefill and ``n_decode`` decode instances.

    ``error`` is ``n_prefill·P / (n_decode·D) − 1`` for the instance rates ``P`` and ``D`` passed to
    :func:`integer_ratio` (positive: prefill has spare capacity); ``within`` whether ``|error|`` met
    the tolerance (else the best pair under the search bound).
    """

    n_prefill: int
    n_decode: int
    error: float
    within: bool


def integer_ratio(prefill_per_instance: float, decode_per_instance: float, tolerance: float = 0.03,
                  max_instances: int = 512) -> IntegerRatio:
    """The smallest ``n_p:n_d`` with ``n_p·P ≈ n_d·D`` within ``tolerance`` (relative).

    ``P`` and ``D`` are the request rates of one prefill and one decode instance. The search walks
    the smaller side up from 1 (``n_d`` when prefill instances are the slower, else ``n_p``) and
    tries the two nearest whole numbers on the other side, so the first pair found has the fewest
    instances on the smaller side; ``max_instances`` bounds the larger side. Without a pair inside
    the tolerance, the pair with the smallest error is returned with ``within=False``.
    """
    if not (prefill_per_instance > 0 and decode_per_instance > 0):
        raise ValueError("instance rates must be positive")
    P, D = prefill_per_instance, decode_per_instance
    want = D / P  # n_p / n_d
    best = None
    k = 1
    while True:
        if want >= 1.0:
            n_d = k
            cands = {(max(1, math.floor(k * want)), n_d), (max(1, math.ceil(k * want)), n_d)}
            big = math.floor(k * want)
        else:
            n_p = k
            cands = {(n_p, max(1, math.floor(k / want))), (n_p, max(1, math.ceil(k / want)))}
            big = math.floor(k / want)
        if big > max_instances and best is not None:
            break
        for n_p, n_d in sorted(cands):
            if n_p > max_instances or n_d > max_instances:
                continue
            err = n_p * P / (n_d * D) - 1.0
            if best is None or abs(err) < abs(best.error) - 1e-15:
                best = IntegerRatio(n_p, n_d, err, abs(err) <= tolerance)
        if best is not None and best.within:
            return best
        k += 1
        if k > max_instances:
            break
    if best is None:  # even one instance of the smaller side needs more than max_instances of the other
        n_p, n_d = (max_instances, 1) if want >= 1.0 else (1, max_instances)
        err = n_p * P / (n_d * D) - 1.0
        best = IntegerRatio(n_p, n_d, err, abs(err) <= tolerance)
    return best
