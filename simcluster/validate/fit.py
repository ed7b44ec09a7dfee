"""The train / held-out split of a validation file, and the fit of the framework profiles on it.

**Split.** A row belongs to *train* or *test* by a stable hash of its deployment configuration
(system, backend, model, precision, mode and every parallel-layout column) — not of the row: all the
concurrency and length points of one configuration fall on the same side, so the held-out half
measures configurations the fit never saw. About half the configurations go each way.

**Fit.** Per framework, on the train rows only: the per-request overhead and its per-prompt-token
part and the disaggregated hand-over of its :class:`~simcluster.perf.framework.FrameworkProfile`,
and a GPU-time correction of the op tables for decode steps and for prefill steps, bounded to
0.5–1.5 (decode) and 0.5–2 (prefill), minimising TTFT MAPE + 2 × TPOT MAPE. The corrections are
kept per (GPU, model kind dense / MoE / MLA-MoE, weight format) where the framework has at least
``MIN_ROWS_PER_SCALE`` train rows of the format (:func:`fit_groups`: each format runs its own
kernels), else per (GPU, model kind); a format without a group of its own falls back to the kind's
(:func:`kind_fallbacks`). :func:`fit_by_simulation` (the default) simulates every grid value of the scales:
in a closed loop near saturation a slower prefill does not lengthen TTFT in proportion, it makes the
prefill pool the bottleneck and TTFT grows with the queue, which no linear model of one run can
see. The older :func:`fit_times` (``--method linearised``) searches a model linearised around one
simulation with every fitted value at zero (:func:`linearised`) and also fits the step overheads
(per (GPU, model kind) only). A (GPU, model kind) with fewer than ``MIN_ROWS_PER_SCALE`` train rows
and no format group keeps the neutral value. Nothing is fitted per model or per row.

Reproduce (the simulated fit is about 22 runs of the train rows: 25 minutes on two cores)::

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
    # host time a speculative iteration exposes beyond the decode step's own (scheduler, draft and
    # verify bookkeeping run on the CPU between GPU passes): up to a Python scheduler loop's few ms
    "spec_iteration_overhead_s": [0.0, 1e-3, 2e-3, 3e-3, 4e-3, 6e-3, 10e-3],
    # GPU-time corrections are bounded to what kernel-efficiency differences between the op
    # micro-benchmarks and the serving engines' fused kernels can explain (± ~2x)
    "decode_scale": [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5],
    "prefill_scale": [0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.4, 1.7, 2.0],
}
MIN_ROWS_PER_SCALE = 12  # a (GPU, framework, model kind) group with fewer train rows keeps scale 1


def _mape_objective(ttft, tpot, meas_ttft, meas_tpot) -> float:
    """TTFT MAPE + 2 × TPOT MAPE (fractions) over the rows both predictions exist for; inf if none."""
    import numpy as np

    ok = ~(np.isnan(ttft) | np.isnan(tpot))
    if not ok.any():
        return math.inf
    return float(np.mean(np.abs(ttft[ok] - meas_ttft[ok]) / meas_ttft[ok])
                 + 2.0 * np.mean(np.abs(tpot[ok] - meas_tpot[ok]) / meas_tpot[ok]))


def _snap(value: float, grid: list[float]) -> float:
    """The grid value nearest ``value``."""
    return min(grid, key=lambda v: (abs(v - value), v))


def zero_time_profiles(frameworks=("vllm", "sglang", "trtllm")) -> dict:
    """The default profiles with every fitted time at zero and no GPU-time scales (the fit's start)."""
    from simcluster.perf.framework import PROFILES

    zero = {k: 0.0 for k in FITTED_TIMES}
    return {fw: PROFILES[fw].with_(prefill_overhead_s=0.0, gpu_time_scales=(), **zero) for fw in frameworks}


def _row_arrays(results):
    """Per simulated row with a measurement: what the linearised model needs."""
    import numpy as np

    from simcluster.perf.framework import mtp_acceptance_length

    recs = []
    for r in results:
        if not r.simulated or math.isnan(r.row.ttft_ms) or math.isnan(r.row.tpot_ms):
            continue
        s, p = r.setup, r.prediction
        dec = s.pools.get("decode") or s.pools.get("colocated")
        inst = (p.decode_workers if s.mode == "disaggregated" else dec.instances) or 1
        # disaggregated rows whose first token waits for a decode step (the framework's first_token_at)
        first_step = s.mode == "disaggregated" and s.profile.first_token_at == "first_decode_step"
        recs.append((s.framework, group_of(s), first_step, p.ttft_ms / 1e3, p.tpot_ms / 1e3,
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


# ----------------------------------------------------------------------------- the fit by simulation
POST_RUN_TIMES = ("request_overhead_s", "request_overhead_per_input_token_s", "handover_s")


def group_of(setup) -> str:
    """The (GPU, model kind) group of a mapped row."""
    from simcluster.catalog.models import get_model
    from simcluster.perf.framework import model_kind

    return f"{setup.gpu}|{model_kind(get_model(setup.model))}"


def format_group_of(setup) -> str:
    """The (GPU, model kind, weight format) group of a mapped row: ``gpu|kind:format``."""
    return f"{group_of(setup)}:{setup.weights}"


def coarse_group(group: str) -> str:
    """``gpu|kind`` of a ``gpu|kind:format`` group (itself if it has no format)."""
    return group.split(":")[0]


def fit_groups(setups, frameworks) -> list[str]:
    """The group each mapped row's GPU-time scales are fitted in: (GPU, model kind, weight format)
    where its framework has at least ``MIN_ROWS_PER_SCALE`` such rows — the engines run each format
    through its own kernels (FP8 block-scaled and NVFP4 experts are different GEMMs), whose speed
    relative to the op micro-benchmarks differs — else (GPU, model kind)."""
    from collections import Counter

    fine = [format_group_of(s) for s in setups]
    n = Counter(zip(frameworks, fine))
    return [g if n[(f, g)] >= MIN_ROWS_PER_SCALE else coarse_group(g) for f, g in zip(frameworks, fine)]


def _scale_of(scales_fw: dict, g: str) -> tuple[float, float]:
    """A group's current scales: its own, else its (GPU, kind) group's (a first fit per format starts
    there), else neutral."""
    return tuple(scales_fw.get(g, scales_fw.get(coarse_group(g), (1.0, 1.0))))


def kind_fallbacks(scales: dict, counts: dict) -> dict:
    """(GPU, kind) entries for the weight formats of a kind that have no group of their own (too few
    train rows, or none: a held-out configuration's format): where the kind's own leftover rows were
    too few to be fitted, the geometric mean of its formats' fitted scales weighted by their train
    rows, on the grids. ``scales``: {group: (decode, prefill)} of one framework; ``counts``: its train
    rows per group. Returns the entries to add."""
    out = {}
    by_kind: dict[str, list[str]] = {}
    for g in scales:
        if ":" in g:
            by_kind.setdefault(coarse_group(g), []).append(g)
    for coarse, fmts in sorted(by_kind.items()):
        if counts.get(coarse, 0) >= MIN_ROWS_PER_SCALE:
            continue  # the kind's other formats were fitted together: their value stands
        w = [counts.get(g, 0) for g in fmts]
        if sum(w) <= 0:
            continue
        mean = [math.exp(sum(wi * math.log(scales[g][i]) for wi, g in zip(w, fmts)) / sum(w)) for i in (0, 1)]
        out[coarse] = (_snap(mean[0], GRIDS["decode_scale"]), _snap(mean[1], GRIDS["prefill_scale"]))
    return out


def _swept_profiles(base: dict, scales: dict, groups: dict, which: int | None, value: float | None) -> dict:
    """``base`` profiles with every group of ``groups[framework]`` at decode (``which`` 0) or prefill
    (1) scale ``value`` and its other scale at the current fitted one (``which`` None: both at the
    fitted ones); the post-run times at zero (added after the runs)."""
    out = {}
    for fw, prof in base.items():
        entries = []
        for g in groups.get(fw, []):
            cur = list(_scale_of(scales.get(fw, {}), g))
            if which is not None:
                cur[which] = value
            gpu, kind = g.split("|")
            entries.append((gpu, kind, cur[0], cur[1]))
        out[fw] = prof.with_(gpu_time_scales=tuple(entries), request_overhead_by_kind=(),
                             **{k: 0.0 for k in POST_RUN_TIMES})
    return out


def _run_table(rows, profiles: dict, workers: int) -> dict:
    """Per row (in ``rows`` order): the simulated TTFT and TPOT with the post-run times ``profiles``
    carry (the scale sweeps zero them and add them afterwards), and what those times are applied with."""
    import numpy as np

    from simcluster.validate.runner import validate_rows
    from simcluster.validate.simulate import Simulator

    results = validate_rows(rows, simulator=Simulator(profiles=profiles), workers=workers, profiles=profiles)
    nan = float("nan")
    cols = []
    for r in results:
        p = r.prediction if r.simulated else None
        cols.append((p.ttft_ms / 1e3, p.tpot_ms / 1e3, p.input_tokens_mean, p.inv_steps_mean) if p else (nan,) * 4)
    a = np.array(cols, dtype=float).reshape(-1, 4)
    return {"ttft": a[:, 0], "tpot": a[:, 1], "isl": a[:, 2], "inv_steps": a[:, 3]}


def _post_run(params: dict, table: dict, idx, disagg, kinds):
    """TTFT, TPOT of rows ``idx`` from one run's table with the post-run times added (as
    :meth:`simcluster.validate.simulate.Simulator._metrics` adds them, except that the simulator
    clips a hand-over longer than a request's whole output, which no fitted row comes near);
    ``kinds`` are the rows' model
    kinds (``params["request_overhead_by_kind"]`` overrides the request overhead per kind)."""
    import numpy as np

    by_kind = params.get("request_overhead_by_kind", {})
    ro = np.array([by_kind.get(k, params["request_overhead_s"]) for k in kinds]) if by_kind \
        else params["request_overhead_s"]
    h = params["handover_s"] * disagg
    ttft = table["ttft"][idx] + ro + params["request_overhead_per_input_token_s"] * table["isl"][idx] + h
    tpot = table["tpot"][idx] - h * table["inv_steps"][idx]
    return ttft, tpot


def fit_by_simulation(rows, *, workers: int = 1, base: dict | None = None, rounds: int = 1,
                      sweeps: int = 4, start: dict | None = None, scales_fixed: bool = False,
                      progress=None) -> dict:
    """Fit on ``rows`` (the train split) with whole simulations instead of a linearised model.

    The GPU-time scales change queueing, batching and — in a closed loop — how fast clients come
    back, so their effect on TTFT is far from proportional where a pool runs near saturation. Here
    every grid value of a scale is *simulated*: one run of all the rows with every group's prefill
    (then decode) scale at that value gives each row's TTFT and TPOT as a function of its own group's
    scale (a row depends on no other group). The per-framework post-run times (request overhead and
    its per-prompt-token part, the disaggregated hand-over) are added to those tables exactly. A
    coordinate descent over the tables picks, per framework, the post-run times and, per (GPU, model
    kind) group with at least ``MIN_ROWS_PER_SCALE`` rows, the scales minimising TTFT MAPE + 2 × TPOT
    MAPE; every scale starts at 1, or at ``start``'s (a previous result's ``fit``: another round).
    ``rounds`` repeats the prefill-then-decode pass. The request overhead is fitted once shared by
    the framework's model kinds (``request_overhead_s``, the value for kinds without rows), then per
    kind with at least ``MIN_ROWS_PER_SCALE`` rows (``request_overhead_by_kind``).
    A ``start`` with per-kind overheads keeps them through the scale stages.
    ``scales_fixed``: one run at ``start``'s scales, only the post-run times are fitted. The step
    overheads (per scheduler step and per sequence) stay at ``base``'s values. Costs about
    (9 + 13) × ``rounds`` runs of ``rows`` (one with ``scales_fixed``).
    """
    import numpy as np

    from simcluster.perf.framework import PROFILES
    from simcluster.validate.mapping import Setup, map_row

    frameworks = ("vllm", "sglang", "trtllm")
    base = dict(base or {fw: PROFILES[fw] for fw in frameworks})
    mapped = [map_row(r, base) for r in rows]
    keep = [i for i, m in enumerate(mapped) if isinstance(m, Setup)
            and not (math.isnan(rows[i].ttft_ms) or math.isnan(rows[i].tpot_ms))]
    rows = [rows[i] for i in keep]
    setups = [mapped[i] for i in keep]
    fw = np.array([s.framework for s in setups])
    grp = np.array(fit_groups(setups, list(fw)))
    kind = np.array([coarse_group(g).split("|")[1] for g in grp])
    disagg = np.array([s.mode == "disaggregated" for s in setups], dtype=float)
    meas_ttft = np.array([r.ttft_ms / 1e3 for r in rows])
    meas_tpot = np.array([r.tpot_ms / 1e3 for r in rows])
    fw_groups = {f: sorted(str(g) for g in set(grp[fw == f])) for f in frameworks}
    scales: dict[str, dict[str, tuple[float, float]]] = {f: {} for f in frameworks}
    params = {f: {k: float(getattr(base[f], k)) for k in POST_RUN_TIMES} for f in frameworks}
    for f, prev in (start or {}).items():
        scales[f] = {g: (float(v[0]), float(v[1])) for g, v in prev.get("scales", {}).items()}
        # a start value outside today's grid (a grid narrowed since) is snapped to its nearest
        # value: the descent only accepts moves that improve, so it would never leave it
        params[f].update({k: _snap(float(prev["params"][k]), GRIDS[k]) for k in POST_RUN_TIMES
                          if k in prev.get("params", {})})
        if prev.get("params", {}).get("request_overhead_by_kind"):
            params[f]["request_overhead_by_kind"] = {k: _snap(float(v), GRIDS["request_overhead_s"]) for k, v in
                                                     prev["params"]["request_overhead_by_kind"].items()}

    def loss(idx, p, pick):
        ttft = np.empty(len(idx))
        tpot = np.empty(len(idx))
        for tab, sel in pick:
            t, q = _post_run(p, tab, idx[sel], disagg[idx[sel]], kind[idx[sel]])
            ttft[sel], tpot[sel] = t, q
        return _mape_objective(ttft, tpot, meas_ttft[idx], meas_tpot[idx])

    def descend(idx, p, choice, fgroups, grid, pick, by_kind: bool):
        """Coordinate descent over the post-run times (the request overhead shared, or per kind) and
        the groups' grid indices ``choice``."""
        kinds = [k for k in sorted(set(kind[idx])) if np.sum(kind[idx] == k) >= MIN_ROWS_PER_SCALE]
        if by_kind:  # every kind with enough rows gets an entry (its own value if it has one)
            own = p.get("request_overhead_by_kind", {})
            p = {**p, "request_overhead_by_kind": {k: own.get(k, p["request_overhead_s"]) for k in kinds}}
        best = loss(idx, p, pick(choice))
        for _ in range(sweeps):
            keys = [k for k in POST_RUN_TIMES if not (by_kind and k == "request_overhead_s")]
            for k in keys:
                if k == "handover_s" and disagg[idx].sum() < MIN_ROWS_PER_SCALE:
                    continue
                for v in GRIDS[k]:
                    val = loss(idx, {**p, k: v}, pick(choice))
                    if val < best - 1e-12:
                        best, p = val, {**p, k: v}
            for kd in (kinds if by_kind else []):
                for v in GRIDS["request_overhead_s"]:
                    trial = {**p, "request_overhead_by_kind": {**p["request_overhead_by_kind"], kd: v}}
                    val = loss(idx, trial, pick(choice))
                    if val < best - 1e-12:
                        best, p = val, trial
            for g in fgroups:
                for i in range(len(grid)):
                    val = loss(idx, p, pick({**choice, g: i}))
                    if val < best - 1e-12:
                        best, choice = val, {**choice, g: i}
        return p, choice, best

    history = []
    stages = [(None, "post_run")] if scales_fixed else [(1, "prefill_scale"), (0, "decode_scale")]
    for rnd in range(1 if scales_fixed else rounds):
        last_round = rnd == (0 if scales_fixed else rounds - 1)
        for which, name in stages:
            grid = GRIDS[name] if which is not None else [None]
            tables = []
            for v in grid:
                tables.append(_run_table(rows, _swept_profiles(base, scales, fw_groups, which, v), workers))
                if progress:
                    progress(f"round {rnd + 1} {name} {v}")
            neutral = grid.index(1.0) if which is not None else 0
            for f in frameworks:
                idx = np.nonzero(fw == f)[0]
                if len(idx) == 0:
                    continue
                fgroups = ([g for g in fw_groups[f] if np.sum(grp[idx] == g) >= MIN_ROWS_PER_SCALE]
                           if which is not None else [])
                choice = {g: grid.index(min(grid, key=lambda v, g=g: abs(v - _scale_of(scales[f], g)[which])))
                          for g in fgroups}

                def pick(ch):
                    by = {}
                    for g in set(grp[idx]):
                        by.setdefault(ch.get(g, neutral), []).append(g)
                    return [(tables[i], np.isin(grp[idx], gs)) for i, gs in by.items()]

                p, choice, best = descend(idx, dict(params[f]), choice, fgroups, grid, pick, by_kind=False)
                if last_round and (which is None or which == 0):  # last stage: the per-kind overheads
                    p, choice, best = descend(idx, p, choice, fgroups, grid, pick, by_kind=True)
                params[f] = p
                for g in (fw_groups[f] if which is not None else []):
                    cur = list(_scale_of(scales[f], g))
                    cur[which] = grid[choice[g]] if g in choice else 1.0
                    if cur == [1.0, 1.0] and ":" not in g:  # a format's 1.0 must not fall back to its kind's
                        scales[f].pop(g, None)
                    else:
                        scales[f][g] = tuple(cur)
                history.append({"round": rnd + 1, "stage": name, "framework": f, "objective_pct": best * 100})
    out = {}
    for f in frameworks:
        engine = {k: float(getattr(base[f], k)) for k in FITTED_TIMES if k not in POST_RUN_TIMES}
        fitted = {g: tuple(_scale_of(scales[f], g)) for g in fw_groups[f]
                  if ":" in g or tuple(_scale_of(scales[f], g)) != (1.0, 1.0)}
        counts = {g: int(np.sum((fw == f) & (grp == g))) for g in fw_groups[f]}
        by_kind = {k: v for k, v in params[f].get("request_overhead_by_kind", {}).items()
                   if v != params[f]["request_overhead_s"]}
        out[f] = {"params": {**engine, **{k: params[f][k] for k in POST_RUN_TIMES},
                             "request_overhead_by_kind": dict(sorted(by_kind.items()))},
                  # the groups this framework's rows were fitted in (a start entry no row uses is
                  # dropped), and what formats without a group of their own fall back to
                  "scales": dict(sorted({**fitted, **kind_fallbacks(fitted, counts)}.items())),
                  "group_rows": counts,
                  "rows": int(np.sum(fw == f)),
                  "objective_pct": next((h["objective_pct"] for h in reversed(history) if h["framework"] == f),
                                        math.nan)}
    return {"fit": out, "history": history}


def fit_spec_overhead(rows, *, workers: int = 1, base: dict | None = None, progress=None) -> dict:
    """Fit each framework's ``spec_iteration_overhead_s`` on its speculative-decoding rows of ``rows``
    (the train split): every grid value is simulated on those rows with everything else as in
    ``base`` (the shipped profiles); the value minimising TTFT MAPE + 2 × TPOT MAPE is kept.
    Frameworks with fewer than ``MIN_ROWS_PER_SCALE`` such rows keep ``base``'s value.
    Returns {framework: {"spec_iteration_overhead_s", "rows", "objective_pct" per grid value}}."""
    import numpy as np

    from simcluster.perf.framework import PROFILES
    from simcluster.validate.mapping import Setup, map_row

    base = dict(base or {fw: PROFILES[fw] for fw in ("vllm", "sglang", "trtllm")})
    spec = [(r, s.framework) for r in rows if not (math.isnan(r.ttft_ms) or math.isnan(r.tpot_ms))
            and isinstance(s := map_row(r, base), Setup) and s.spec_tokens > 0]
    out = {}
    for fw in base:
        mine = [r for r, f in spec if f == fw]
        if len(mine) < MIN_ROWS_PER_SCALE:
            out[fw] = {"spec_iteration_overhead_s": float(base[fw].spec_iteration_overhead_s), "rows": len(mine),
                       "objective_pct": {}}
            continue
        meas_t = np.array([r.ttft_ms / 1e3 for r in mine])
        meas_p = np.array([r.tpot_ms / 1e3 for r in mine])
        scores = {}
        for v in GRIDS["spec_iteration_overhead_s"]:
            profiles = {**base, fw: base[fw].with_(spec_iteration_overhead_s=v)}
            tab = _run_table(mine, profiles, workers)  # the profiles' own post-run times included
            scores[v] = 100.0 * _mape_objective(tab["ttft"], tab["tpot"], meas_t, meas_p)
            if progress:
                progress(f"{fw} spec_iteration_overhead_s {v}: {scores[v]:.2f}")
        best = min(scores, key=lambda v: (scores[v], v))
        out[fw] = {"spec_iteration_overhead_s": best, "rows": len(mine), "objective_pct": scores}
    return out


def fit_of_profiles(profiles: dict | None = None) -> dict:
    """The shipped framework profiles (or ``profiles``) in the form of a fit's ``fit`` section: what
    ``--start shipped`` starts from (:func:`profiles_from_fit` turns it back into the profiles)."""
    from simcluster.perf.framework import PROFILES

    profiles = profiles or PROFILES
    out = {}
    for fw in ("vllm", "sglang", "trtllm"):
        p = profiles[fw]
        out[fw] = {"params": {**{k: float(getattr(p, k)) for k in FITTED_TIMES},
                              "request_overhead_by_kind": dict(p.request_overhead_by_kind)},
                   "scales": {f"{g}|{k}": [float(d), float(pf)] for g, k, d, pf in p.gpu_time_scales}}
    return out


def profiles_from_fit(fit: dict) -> dict:
    """Framework profiles with the fitted values (the prefill-step overhead = the decode-step one:
    one scheduler iteration either way)."""
    from simcluster.perf.framework import PROFILES

    out = {}
    for fw, f in fit.items():
        p = f["params"]
        scales = tuple((g.split("|")[0], g.split("|")[1], d, pf) for g, (d, pf) in sorted(f["scales"].items()))
        by_kind = tuple(sorted(p.get("request_overhead_by_kind", {}).items()))
        out[fw] = PROFILES[fw].with_(prefill_overhead_s=p["decode_overhead_s"], gpu_time_scales=scales,
                                     request_overhead_by_kind=by_kind, **{k: p[k] for k in FITTED_TIMES})
    return out


def main(argv: list[str] | None = None) -> int:
    """Fit the framework profiles on the train split of a silicon_sample file; print them as JSON."""
    import argparse
    import json
    import sys

    from simcluster.validate.runner import default_workers, validate_rows
    from simcluster.validate.silicon import read_silicon_csv
    from simcluster.validate.simulate import Simulator

    ap = argparse.ArgumentParser(prog="python -m simcluster.validate.fit", description=main.__doc__)
    ap.add_argument("csv")
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--method", choices=("simulated", "linearised"), default="simulated",
                    help="simulate every grid value of the GPU-time scales (default; about 25 runs of the "
                         "train rows) or the older linearised model around one zero-overhead run")
    ap.add_argument("--rounds", type=int, default=1, help="prefill-then-decode passes (simulated method)")
    ap.add_argument("--start", help="a previous fit's JSON output: start from its values (one more round); "
                                    "'shipped': from the profiles in the package")
    ap.add_argument("--post-run-only", action="store_true",
                    help="one run at --start's scales; fit only the request overheads and the hand-over")
    ap.add_argument("--spec-overhead", action="store_true",
                    help="fit only the host time per speculative iteration, on the speculative-decoding train "
                         "rows, with everything else as shipped (--start, --rounds and --method do not apply)")
    args = ap.parse_args(argv)
    from simcluster.errors import UserError

    try:
        rows, _ = read_silicon_csv(args.csv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train, _ = split_rows(rows)
    if args.method == "linearised":
        results = validate_rows(train, simulator=Simulator(profiles=zero_time_profiles()), workers=args.workers)
        print(json.dumps({"split": split_description(), "fit": fit_times(results)}, indent=2))
        return 0
    if args.spec_overhead:
        res = fit_spec_overhead(train, workers=args.workers,
                                progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        print(json.dumps({"split": split_description(), "spec_overhead": res}, indent=2))
        return 0
    start = None
    if args.start == "shipped":
        start = fit_of_profiles()
    elif args.start:
        try:
            with open(args.start) as fh:
                start = json.load(fh)["fit"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"error: --start {args.start}: not a fit's JSON output ({exc})", file=sys.stderr)
            return 2
    res = fit_by_simulation(train, workers=args.workers, rounds=args.rounds, start=start,
                            scales_fixed=args.post_run_only,
                            progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps({"split": split_description(), "method": "simulated", **res}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
