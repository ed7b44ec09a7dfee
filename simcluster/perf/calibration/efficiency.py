"""Roofline × efficiency: the fallback where no measured table applies at all.

Per (op family, GPU, framework, number format) the measured latencies are fitted as

    t = max(flops / (e_compute · peak_flops), bytes / (e_memory · hbm_bandwidth)) + t_overhead

(``e_compute``, ``e_memory`` in (0, 1.5]; ``t_overhead`` the launch/latency floor, seconds),
minimising the squared log error. The three numbers summarise a GPU ("H100 bf16 GEMMs reach 75 %
of peak compute and 85 % of HBM bandwidth") and predict the family on a GPU with no measurement
for it (median of the fits of the measured GPUs, scaled by the target GPU's datasheet peaks:
"datasheet-roofline"). Inside a measured range the tables are far more accurate; the fit report
shows both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EfficiencyFit:
    e_compute: float
    e_memory: float
    overhead_s: float

    def predict(self, flops, nbytes, peak_flops: float, hbm_Bps: float):
        return np.maximum(flops / (self.e_compute * peak_flops), nbytes / (self.e_memory * hbm_Bps)) + self.overhead_s

    def as_dict(self) -> dict:
        return {"e_compute": self.e_compute, "e_memory": self.e_memory, "overhead_s": self.overhead_s}


def _nelder_mead(f, x0: np.ndarray, step: float = 0.5, iters: int = 400, tol: float = 1e-9) -> np.ndarray:
    """Minimise ``f`` from ``x0`` (plain Nelder–Mead; deterministic, no SciPy needed)."""
    n = len(x0)
    simplex = [x0] + [x0 + step * np.eye(n)[i] for i in range(n)]
    vals = [f(x) for x in simplex]
    for _ in range(iters):
        order = np.argsort(vals)
        simplex = [simplex[i] for i in order]
        vals = [vals[i] for i in order]
        if abs(vals[-1] - vals[0]) < tol:
            break
        centroid = np.mean(simplex[:-1], axis=0)
        xr = centroid + (centroid - simplex[-1])
        fr = f(xr)
        if fr < vals[0]:
            xe = centroid + 2.0 * (centroid - simplex[-1])
            fe = f(xe)
            simplex[-1], vals[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < vals[-2]:
            simplex[-1], vals[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(xc)
            if fc < vals[-1]:
                simplex[-1], vals[-1] = xc, fc
            else:
                simplex = [simplex[0] + 0.5 * (s - simplex[0]) for s in simplex]
                vals = [f(s) for s in simplex]
    return simplex[int(np.argmin(vals))]


def fit_efficiency(
    flops, nbytes, latency_s, peak_flops: float, hbm_Bps: float, max_points: int = 4000
) -> EfficiencyFit:
    """Fit :class:`EfficiencyFit` to measured points (arrays); see module doc."""
    flops = np.asarray(flops, dtype=np.float64)
    nbytes = np.asarray(nbytes, dtype=np.float64)
    t = np.asarray(latency_s, dtype=np.float64)
    if len(t) > max_points:  # an even, deterministic subsample keeps the fit fast
        idx = np.linspace(0, len(t) - 1, max_points).astype(np.int64)
        flops, nbytes, t = flops[idx], nbytes[idx], t[idx]
    tc = flops / peak_flops
    tm = nbytes / hbm_Bps
    lt = np.log(t)

    def loss(x):
        ec, em, t0 = np.exp(np.clip(x, -30, 30))
        ec, em = min(ec, 1.5), min(em, 1.5)
        pred = np.maximum(tc / ec, tm / em) + t0
        return float(np.mean((np.log(pred) - lt) ** 2))

    x0 = np.array([np.log(0.6), np.log(0.6), np.log(max(np.percentile(t, 5) * 0.5, 1e-7))])
    x = _nelder_mead(loss, x0)
    x = _nelder_mead(loss, x, step=0.1)
    ec, em, t0 = np.exp(x)
    return EfficiencyFit(float(min(ec, 1.5)), float(min(em, 1.5)), float(t0))
