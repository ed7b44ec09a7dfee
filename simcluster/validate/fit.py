"""The train / held-out split of a validation file, and the fit of the framework profiles on it.

**Split.** A row belongs to *train* or *test* by a stable hash of its deployment configuration
(system, backend, model, precision, mode and every parallel-layout column) — not of the row: all the
concurrency and length points of one configuration fall on the same side, so the held-out half
measures configurations the fit never saw. About half the configurations go each way.

**Fit.** Per framework, on the train rows only: the times of its
:class:`~simcluster.perf.framework.FrameworkProfile` (CPU overhead per scheduler step and per
sequence, the per-request overhead and its per-prompt-token part, the disaggregated hand-over) and a
GPU-time correction of the op tables per (GPU, model kind dense/MoE) for decode steps and for
prefill steps, bounded to 0.5–1.5 (decode) and 0.5–2 (prefill). The search is a coordinate descent
on grids of physically plausible values minimising TTFT MAPE + 2 × TPOT MAPE of a linearised model
around one simulation with every fitted value at zero (:func:`linearised`); groups with fewer than
``MIN_ROWS_PER_SCALE`` train rows keep the neutral value. Nothing is fitted per model or per row.

Reproduce (about two minutes on two cores)::

    python -m simcluster.validate.fit ../shared/validation/silicon_sample_dev.csv

prints the fitted values as JSON; they are copied into :data:`simcluster.perf.framework.PROFILES`.
"""

from __future__ import annotations

import hashlib
import math

from simcluster.validate.silicon import SiliconRow

SPLIT_SALT = "simcluster-silicon-split-v1"


def config_signature(row: SiliconRow) -> str:
    """The deployment configuration of a row (what the split hashes)."""
    parts = [row.system, row.backend, row.model_path.lower(), row.precision, row.gemm_quant_mode,
             row.moe_quant_mode, row.mode]
    for shape in (row.agg, row.prefill, row.decode):
        if shape is not None:
            parts.append(f"{shape.tp}/{shape.pp}/{shape.attention_dp}/{shape.moe_tp}/{shape.moe_ep}/{shape.workers}")
    return "|".join(str(p) for p in parts)


def is_train(row: SiliconRow) -> bool:
    h = hashlib.sha256((SPLIT_SALT + config_signature(row)).encode()).digest()
    return h[0] % 2 == 0


def split_rows(rows: list[SiliconRow]) -> tuple[list[SiliconRow], list[SiliconRow]]:
    """(train, test) rows, each in file order."""
    train = [r for r in rows if is_train(r)]
    test = [r for r in rows if not is_train(r)]
    return train, test


def split_description() -> dict:
    return {"unit": "deployment configuration (system, backend, model, precision, mode, layout columns)",
            "rule": f"sha256('{SPLIT_SALT}' + configuration)[0] even -> train, odd -> test"}


# ----------------------------------------------------------------------------- the fit
def objective(results) -> float:
    """TTFT MAPE + 2 × TPOT MAPE over simulated rows (percent)."""
    from simcluster.validate.report import row_errors

    t, p = [], []
    for r in results:
        et, ep = row_errors(r)
        if not math.isnan(et):
            t.append(et)
        if not math.isnan(ep):
            p.append(ep)
    if not t or not p:
        return math.inf
    return sum(t) / len(t) + 2.0 * sum(p) / len(p)


FITTED_TIMES = ("decode_overhead_s", "decode_overhead_per_seq_s", "request_overhead_s",
                "request_overhead_per_input_token_s", "handover_s")
# the grids searched (seconds, or factors): physically plausible ranges, not free curve fitting
GRIDS = {
    "decode_overhead_s": [0.0, 0.25e-3, 0.5e-3, 1e-3, 1.5e-3, 2e-3, 3e-3, 4e-3],
    "decode_overhead_per_seq_s": [0.0, 1e-6, 2e-6, 4e-6, 8e-6, 16e-6],
    "request_overhead_s": [0.0, 5e-3, 10e-3, 20e-3, 40e-3, 60e-3, 80e-3, 100e-3, 150e-3, 200e-3, 250e-3, 300e-3],
    "request_overhead_per_input_token_s": [0.0, 2e-6, 5e-6, 10e-6, 20e-6, 40e-6],
    "handover_s": [0.0, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, 200e-3],
    # GPU-time corrections are bounded to what kernel-efficiency differences between the op
    # micro-benchmarks and the serving engines' fused kernels can explain (± ~2x)
    "decode_scale": [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5],
    "prefill_scale": [0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.4, 1.7, 2.0],
}
MIN_ROWS_PER_SCALE = 12  # a (GPU, framework, model kind) group with fewer train rows keeps scale 1


def zero_time_profiles(frameworks=("vllm", "sglang", "trtllm")) -> dict:
    """The default profiles with every fitted time at zero and no GPU-time scales (the fit's start)."""
    from simcluster.perf.framework import PROFILES

    zero = {k: 0.0 for k in FITTED_TIMES}
    return {fw: PROFILES[fw].with_(prefill_overhead_s=0.0, gpu_time_scales=(), **zero) for fw in frameworks}


def _row_arrays(results):
    """Per simulated row with a measurement: what the linearised model needs."""
    import numpy as np

    from simcluster.catalog.models import get_model
    from simcluster.perf.framework import mtp_acceptance_length

    recs = []
    for r in results:
        if not r.simulated or math.isnan(r.row.ttft_ms) or math.isnan(r.row.tpot_ms):
            continue
        s, p = r.setup, r.prediction
        dec = s.pools.get("decode") or s.pools.get("colocated")
        inst = (p.decode_workers if s.mode == "disaggregated" else dec.instances) or 1
        kind = "moe" if get_model(s.model).is_moe else "dense"
        # disaggregated rows whose first token waits for a decode step (the framework's first_token_at)
        first_step = s.mode == "disaggregated" and s.profile.first_token_at == "first_decode_step"
        recs.append((s.framework, f"{s.gpu}|{kind}", first_step, p.ttft_ms / 1e3, p.tpot_ms / 1e3,
                     r.row.ttft_ms / 1e3, r.row.tpot_ms / 1e3, float(r.row.isl), s.concurrency / inst,
                     mtp_acceptance_length(s.spec_tokens), s.mode == "disaggregated"))
    if not recs:
        return {}
    fw = np.array([x[0] for x in recs])
    grp = np.array([x[1] for x in recs])
    cols = np.array([x[2:] for x in recs], dtype=float)
    return {"fw": fw, "group": grp, "first_step": cols[:, 0] > 0, "ttft0": cols[:, 1], "tpot0": cols[:, 2],
            "ttft": cols[:, 3], "tpot": cols[:, 4], "isl": cols[:, 5], "batch": cols[:, 6], "al": cols[:, 7],
            "disagg": cols[:, 8] > 0}


def linearised(params: dict, scales: dict, a: dict, idx):
    """TTFT, TPOT (seconds) of rows ``idx`` with the fitted parameters applied to a zero-time simulation.

    Each decode step's GPU time scales by its group's decode scale and gains ``decode_overhead_s +
    decode_overhead_per_seq_s × batch`` (per speculative iteration: divided by the acceptance length),
    so TPOT does; the prefill side (TTFT) scales by the prefill scale; a disaggregated TTFT waits for
    the hand-over, and for one decode step where the framework shows the first token after it; every
    TTFT pays the request overhead. Queueing effects of the changes are second order; the reported figures come
    from full simulations with the fitted values.
    """
    import numpy as np

    sd = np.array([scales.get(g, (1.0, 1.0))[0] for g in a["group"][idx]])
    sp = np.array([scales.get(g, (1.0, 1.0))[1] for g in a["group"][idx]])
    step = (params["decode_overhead_s"] + params["decode_overhead_per_seq_s"] * a["batch"][idx]) / a["al"][idx]
    tpot = sd * a["tpot0"][idx] + step
    first_step = a["first_step"][idx]
    ttft = (sp * np.where(first_step, a["ttft0"][idx] - a["tpot0"][idx], a["ttft0"][idx])
            + params["request_overhead_s"] + params["request_overhead_per_input_token_s"] * a["isl"][idx]
            + a["disagg"][idx] * params["handover_s"] + first_step * tpot)
    return ttft, tpot


def fit_times(results, frameworks=("vllm", "sglang", "trtllm"), sweeps: int = 4, loss_kind: str = "mape") -> dict:
    """Per framework: the fitted times and the GPU-time scales per (GPU, model kind), minimising
    TTFT MAPE + 2 × TPOT MAPE over the framework's rows in ``results`` (coordinate search on GRIDS)."""
    import numpy as np

    a = _row_arrays(results)
    out = {}
    for fw in frameworks:
        idx = np.nonzero(a["fw"] == fw)[0] if a else np.zeros(0, dtype=int)
        params = {k: 0.0 for k in FITTED_TIMES}
        scales: dict[str, tuple[float, float]] = {}
        if len(idx) == 0:
            out[fw] = {"params": params, "scales": {}, "rows": 0}
            continue
        groups = [g for g in sorted(set(a["group"][idx])) if np.sum(a["group"][idx] == g) >= MIN_ROWS_PER_SCALE]

        def loss(p, sc):
            ttft, tpot = linearised(p, sc, a, idx)
            if loss_kind == "log":  # symmetric in over- and under-prediction
                return (np.mean(np.abs(np.log(np.maximum(ttft, 1e-9) / a["ttft"][idx])))
                        + 2.0 * np.mean(np.abs(np.log(np.maximum(tpot, 1e-9) / a["tpot"][idx]))))
            return (np.mean(np.abs(ttft - a["ttft"][idx]) / a["ttft"][idx])
                    + 2.0 * np.mean(np.abs(tpot - a["tpot"][idx]) / a["tpot"][idx]))

        best = loss(params, scales)
        for _ in range(sweeps):
            for k in FITTED_TIMES:
                if k == "handover_s" and a["disagg"][idx].sum() < MIN_ROWS_PER_SCALE:
                    continue  # too few disaggregated rows to say anything about the hand-over
                for v in GRIDS[k]:
                    val = loss({**params, k: v}, scales)
                    if val < best - 1e-12:
                        best, params = val, {**params, k: v}
            for g in groups:
                for which, grid in ((0, GRIDS["decode_scale"]), (1, GRIDS["prefill_scale"])):
                    for v in grid:
                        cur = list(scales.get(g, (1.0, 1.0)))
                        cur[which] = v
                        trial = {**scales, g: tuple(cur)}
                        val = loss(params, trial)
                        if val < best - 1e-12:
                            best, scales = val, trial
        out[fw] = {"params": params, "scales": scales, "rows": int(len(idx)), "objective_pct": float(best * 100)}
    return out


def profiles_from_fit(fit: dict) -> dict:
    """Framework profiles with the fitted values (the prefill-step overhead = the decode-step one:
    one scheduler iteration either way)."""
    from simcluster.perf.framework import PROFILES

    out = {}
    for fw, f in fit.items():
        p = f["params"]
        scales = tuple((g.split("|")[0], g.split("|")[1], d, pf) for g, (d, pf) in sorted(f["scales"].items()))
        out[fw] = PROFILES[fw].with_(prefill_overhead_s=p["decode_overhead_s"], gpu_time_scales=scales,
                                     **{k: p[k] for k in FITTED_TIMES})
    return out


def main(argv: list[str] | None = None) -> int:
    """Fit the framework profiles on the train split of a silicon_sample file; print them as JSON."""
    import argparse
    import json

    from simcluster.validate.runner import default_workers, validate_rows
    from simcluster.validate.silicon import read_silicon_csv
    from simcluster.validate.simulate import Simulator

    ap = argparse.ArgumentParser(prog="python -m simcluster.validate.fit", description=main.__doc__)
    ap.add_argument("csv")
    ap.add_argument("--workers", type=int, default=default_workers())
    args = ap.parse_args(argv)
    rows, _ = read_silicon_csv(args.csv)
    train, _ = split_rows(rows)
    results = validate_rows(train, simulator=Simulator(profiles=zero_time_profiles()), workers=args.workers)
    fit = fit_times(results)
    print(json.dumps({"split": split_description(), "fit": fit}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
