"""α–β model of collectives, fitted on the measured NCCL / custom all-reduce latencies.

For one (GPU, op, group size N) the measured latency of a message of S bytes (NCCL-tests size:
the all-reduce buffer, the all-gather output, the reduce-scatter input, the all-to-all send
buffer, per GPU) is fitted as

    t(S) = α + S · f(N) / B_bus

with the ring traffic factor f(N) = 2(N−1)/N for all-reduce and (N−1)/N for all-gather,
reduce-scatter and all-to-all, so B_bus is NCCL's "bus bandwidth" (see :func:`fit_alpha_beta`).

Across group sizes the data (N = 2, 4, 8 on H100, H200, B200, RTX PRO 6000) shows α growing
linearly in N − 1 (ring steps), not in log2 N: H100 all-reduce 7.1, 10.7, 17.8 µs is 1.8 µs per
added ring step both from 2 to 4 and from 4 to 8 GPUs, while per doubling it is 3.6 then 7.1 µs. So
inside the measured range α(N) = α0 + α1·(N − 1), fitted over the measured N.

Beyond the largest measured group (8 GPUs; 4 on GB200) a ring's N − 1 steps would put α near
200 µs at 72 GPUs, which NCCL avoids by switching to tree / NVLS algorithms whose latency grows with
log2 N. There α grows by the increment the data shows for the *last doubling* of the measured range
(α(N_max) − α(N_max/2): 1–13 µs depending on op and GPU) per further doubling. B_bus stays at its
value at the largest measured N (a switched NVLink fabric gives every GPU the same per-GPU
bandwidth), and the traffic factor f(N) follows the ring formula. The measured curve of the
largest group is kept and only the α–β *difference* is added, so the model is continuous there and
keeps the shape of NCCL's protocol switches:

    t(N, S) = t_meas(N_max, S) + α1_doubling · log2(N / N_max) + S·[f(N) − f(N_max)] / B_bus(N_max)

Both halves are documented assumptions in ``docs/calibration.md``; nothing measures groups beyond
8 GPUs.
"""

from __future__ import annotations

import numpy as np


def traffic_factor(op: str, n):
    """Bytes each GPU sends per byte of NCCL-tests message size, for a ring over ``n`` GPUs."""
    n = np.asarray(n, dtype=np.float64) if not isinstance(n, (int, float)) else float(n)
    return 2.0 * (n - 1) / n if op == "all_reduce" else (n - 1) / n


def fit_alpha_beta(nbytes: np.ndarray, latency_s: np.ndarray, op: str, n_gpus: int) -> tuple[float, float]:
    """(α seconds, bus bandwidth bytes/s) of t = α + S·f(N)/B_bus fitted to measured points.

    B_bus is the slope of the four largest messages (the asymptotic bandwidth, which is what the
    model is used for: messages and groups beyond the measured ones); α then minimises the relative
    error over all sizes with B_bus fixed, so it sits at the small-message latency floor.
    """
    order = np.argsort(nbytes)
    s = np.asarray(nbytes, dtype=np.float64)[order]
    t = np.asarray(latency_s, dtype=np.float64)[order]
    x = s * traffic_factor(op, n_gpus)
    top = slice(max(len(x) - 4, 0), len(x))
    if len(x) >= 2 and np.ptp(x[top]) > 0:
        slope = float(np.polyfit(x[top], t[top], 1)[0])
    else:
        slope = float(t[-1] / x[-1]) if x[-1] > 0 else 0.0
    if slope <= 0:
        slope = float(t[-1] / x[-1])
    rest = t - x * slope
    alpha = float(np.sum(rest / t**2) / np.sum(1.0 / t**2))
    return max(alpha, 0.0), 1.0 / slope


def fit_alpha_line(n_gpus: list[int], alphas: list[float]) -> tuple[float, float]:
    """α(N) = α0 + α1·(N−1), least squares over the measured group sizes; α1 >= 0."""
    n = np.asarray(n_gpus, dtype=np.float64) - 1.0
    a = np.asarray(alphas, dtype=np.float64)
    if len(n) == 1:
        return float(a[0]), 0.0
    slope, icpt = np.polyfit(n, a, 1)
    if slope < 0:
        return float(np.mean(a)), 0.0
    return float(icpt), float(slope)


def alpha_per_doubling(per_n_alpha: dict[int, float], alpha0: float, alpha1: float) -> float:
    """α increase per doubling of the group at the top of the measured range (seconds, >= 0)."""
    n_max = max(per_n_alpha)
    half = n_max // 2
    if half in per_n_alpha:
        return max(per_n_alpha[n_max] - per_n_alpha[half], 0.0)
    return max(alpha1 * (n_max - max(half, 1)), 0.0)


def alpha_beta_s(op: str, nbytes, n_gpus, alpha_s: float, busbw_Bps: float):
    """Latency (s) of the plain α–β model."""
    return alpha_s + np.asarray(nbytes, dtype=np.float64) * traffic_factor(op, n_gpus) / busbw_Bps
