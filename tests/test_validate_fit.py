"""The fit of the framework profiles by simulation (``simcluster.validate.fit.fit_by_simulation``).

Independent truth: rows whose "measured" times were produced by the simulator itself with known
GPU-time scales and request overhead. A fit that searches grids containing those values must find
them (the objective reaches zero only there), whatever it started from.
"""

from __future__ import annotations

import dataclasses

import pytest

import simcluster.validate.fit as fit
from simcluster.perf.framework import PROFILES
from simcluster.validate.mapping import map_row
from simcluster.validate.silicon import parse_row
from simcluster.validate.simulate import Simulator

from test_validate_silicon import _agg


def _rows():
    out = []
    line = 2
    for isl in (256, 2048):
        for batch in (1, 2, 4, 8, 16, 32):
            out.append(parse_row(_agg(id=f"r{line}", isl=isl, osl=32, batch_size=batch, precision="bf16",
                                      gemm_quant_mode=""), line, "synthetic.csv"))
            line += 1
    return out


def _measured(rows, truth):
    sim = Simulator(profiles={"vllm": truth}, simulated_waves=2)
    out = []
    for r in rows:
        p = sim.run(map_row(r, {"vllm": truth}))
        out.append(dataclasses.replace(r, ttft_ms=p.ttft_ms, tpot_ms=p.tpot_ms))
    return out


def test_the_fit_by_simulation_recovers_known_scales_and_request_overhead(monkeypatch):
    monkeypatch.setattr(fit, "GRIDS", {**fit.GRIDS, "prefill_scale": [0.5, 1.0, 2.0], "decode_scale": [0.8, 1.0, 1.2],
                                       "request_overhead_s": [0.0, 0.02, 0.05],
                                       "request_overhead_per_input_token_s": [0.0, 1e-5], "handover_s": [0.0]})
    monkeypatch.setattr(fit, "_run_table", _small_run_table)
    truth = PROFILES["vllm"].with_(gpu_time_scales=(("h100_sxm", "dense", 1.2, 2.0),), request_overhead_s=0.02,
                                   request_overhead_per_input_token_s=0.0, handover_s=0.0,
                                   request_overhead_by_kind=())
    rows = _measured(_rows(), truth)
    assert len(rows) >= fit.MIN_ROWS_PER_SCALE
    res = fit.fit_by_simulation(rows, workers=1, rounds=2)
    got = res["fit"]["vllm"]
    # 12 rows of one weight format: the format's own group (the truth's kind-wide entry applies to it)
    # (and the kind's fallback for other formats is that one format's)
    assert got["scales"] == {"h100_sxm|dense:bf16": (1.2, 2.0), "h100_sxm|dense": (1.2, 2.0)}
    assert got["params"]["request_overhead_s"] == pytest.approx(0.02)
    assert got["params"]["request_overhead_per_input_token_s"] == 0.0
    assert got["objective_pct"] == pytest.approx(0.0, abs=1e-6)
    # the step overheads are not fitted here: they stay the profile's
    assert got["params"]["decode_overhead_s"] == PROFILES["vllm"].decode_overhead_s


def test_each_weight_format_gets_its_own_scales(monkeypatch):
    """Rows of two weight formats of one (GPU, kind) whose kernels run at different speeds relative to
    the op tables (truth: BF16 decode 1.2 / prefill 2.0, FP8 0.8 / 0.5): each format's group recovers
    its own pair, and the profile it ships applies each to its format only."""
    monkeypatch.setattr(fit, "GRIDS", {**fit.GRIDS, "prefill_scale": [0.5, 1.0, 2.0], "decode_scale": [0.8, 1.0, 1.2],
                                       "request_overhead_s": [0.0, 0.02], "request_overhead_per_input_token_s": [0.0],
                                       "handover_s": [0.0]})
    monkeypatch.setattr(fit, "_run_table", _small_run_table)
    truth = PROFILES["vllm"].with_(gpu_time_scales=(("h100_sxm", "dense:bf16", 1.2, 2.0),
                                                    ("h100_sxm", "dense:fp8", 0.8, 0.5)),
                                   request_overhead_s=0.02, request_overhead_per_input_token_s=0.0, handover_s=0.0,
                                   request_overhead_by_kind=())
    fp8 = [dataclasses.replace(r, line=r.line + 100, precision="fp8", gemm_quant_mode="fp8") for r in _rows()]
    rows = _measured(_rows() + fp8, truth)
    res = fit.fit_by_simulation(rows, workers=1, rounds=2)["fit"]
    got = res["vllm"]
    # a third format falls back to the row-weighted geometric mean, on the grids: √(1.2·0.8) ≈ 0.98 → 1.0, √(2·0.5) = 1
    assert got["scales"] == {"h100_sxm|dense:bf16": (1.2, 2.0), "h100_sxm|dense:fp8": (0.8, 0.5),
                             "h100_sxm|dense": (1.0, 1.0)}
    assert got["objective_pct"] == pytest.approx(0.0, abs=1e-6)
    shipped = fit.profiles_from_fit(res)["vllm"]
    assert shipped.gpu_time_scale("h100_sxm", "dense", "fp8") == (0.8, 0.5)
    assert shipped.gpu_time_scale("h100_sxm", "dense", "bf16") == (1.2, 2.0)


def test_a_kind_without_rows_of_its_own_falls_back_to_its_formats_weighted_mean():
    scales = {"b200_sxm|moe:nvfp4": (1.2, 2.0), "b200_sxm|moe:fp8_block": (0.8, 0.5), "h100_sxm|dense": (1.1, 0.85)}
    # 30 : 10 rows -> exp((30 ln 1.2 + 10 ln 0.8) / 40) = 1.09 -> 1.1 on the decode grid; prefill 1.41 -> 1.4
    got = fit.kind_fallbacks(scales, {"b200_sxm|moe:nvfp4": 30, "b200_sxm|moe:fp8_block": 10, "b200_sxm|moe": 5})
    assert got == {"b200_sxm|moe": (1.1, 1.4)}
    # a kind whose other formats had enough rows to be fitted together keeps its own value
    assert fit.kind_fallbacks(scales, {"b200_sxm|moe:nvfp4": 30, "b200_sxm|moe:fp8_block": 10,
                                       "b200_sxm|moe": fit.MIN_ROWS_PER_SCALE}) == {}


def test_a_formats_scales_win_over_its_kinds():
    prof = PROFILES["vllm"].with_(gpu_time_scales=(("b200_sxm", "moe", 0.9, 0.7), ("b200_sxm", "moe:nvfp4", 1.1, 1.4)))
    assert prof.gpu_time_scale("b200_sxm", "moe", "nvfp4") == (1.1, 1.4)
    assert prof.gpu_time_scale("b200_sxm", "moe", "fp8_block") == (0.9, 0.7)  # no entry of its own: the kind's
    assert prof.gpu_time_scale("b200_sxm", "moe") == (0.9, 0.7)
    assert prof.gpu_time_scale("h100_sxm", "moe", "nvfp4") == (1.0, 1.0)


def _small_run_table(rows, profiles, workers):
    """fit._run_table with the short runs the truth was made with."""
    import numpy as np

    sim = Simulator(profiles=profiles, simulated_waves=2)
    cols = []
    for r in rows:
        p = sim.run(map_row(r, profiles))
        cols.append((p.ttft_ms / 1e3, p.tpot_ms / 1e3, p.input_tokens_mean, p.inv_steps_mean))
    a = np.array(cols, dtype=float)
    return {"ttft": a[:, 0], "tpot": a[:, 1], "isl": a[:, 2], "inv_steps": a[:, 3]}


@pytest.mark.parametrize("by_kind", [{}, {"dense": 0.07}, {"moe": 0.07}])
def test_post_run_times_are_added_as_the_simulator_adds_them(by_kind):
    """Request overhead (shared, or the model kind's own), its per-prompt-token part and the hand-over
    added after a run equal a run with those times in the profile (the fit's tables rely on it)."""
    import numpy as np

    rows = _rows()[:4]
    zero = PROFILES["vllm"].with_(request_overhead_s=0.0, request_overhead_per_input_token_s=0.0, handover_s=0.0,
                                  request_overhead_by_kind=())
    with_times = zero.with_(request_overhead_s=0.03, request_overhead_per_input_token_s=2e-5,
                            request_overhead_by_kind=tuple(by_kind.items()))
    table = _small_run_table(rows, {"vllm": zero}, 1)
    ttft, tpot = fit._post_run({"request_overhead_s": 0.03, "request_overhead_per_input_token_s": 2e-5,
                                "handover_s": 0.0, "request_overhead_by_kind": by_kind}, table,
                               np.arange(len(rows)), np.zeros(len(rows)), ["dense"] * len(rows))
    direct = _small_run_table(rows, {"vllm": with_times}, 1)
    assert ttft == pytest.approx(direct["ttft"], rel=1e-9)
    assert tpot == pytest.approx(direct["tpot"], rel=1e-9)
    # the dense rows pay the dense value where one is set, the shared one otherwise
    expect = by_kind.get("dense", 0.03)
    assert float(np.mean(direct["ttft"] - table["ttft"] - 2e-5 * table["isl"])) == pytest.approx(expect, rel=1e-9)


def test_a_kinds_own_request_overhead_replaces_the_shared_one():
    prof = PROFILES["vllm"].with_(request_overhead_s=0.04, request_overhead_by_kind=(("mla-moe", 0.12),))
    assert prof.request_overhead("mla-moe") == 0.12
    assert prof.request_overhead("dense") == 0.04 and prof.request_overhead() == 0.04


def test_the_post_run_only_fit_finds_the_request_overhead_at_given_scales(monkeypatch):
    monkeypatch.setattr(fit, "GRIDS", {**fit.GRIDS, "request_overhead_s": [0.0, 0.02, 0.05],
                                       "request_overhead_per_input_token_s": [0.0, 1e-5], "handover_s": [0.0]})
    monkeypatch.setattr(fit, "_run_table", _small_run_table)
    truth = PROFILES["vllm"].with_(gpu_time_scales=(("h100_sxm", "dense", 1.2, 2.0),), request_overhead_s=0.05,
                                   request_overhead_per_input_token_s=1e-5, handover_s=0.0,
                                   request_overhead_by_kind=())
    rows = _measured(_rows(), truth)
    start = {"vllm": {"scales": {"h100_sxm|dense": [1.2, 2.0]}, "params": {"request_overhead_s": 0.0}}}
    got = fit.fit_by_simulation(rows, workers=1, start=start, scales_fixed=True)["fit"]["vllm"]
    # the start's (kind-wide) value, not searched
    assert got["scales"] == {"h100_sxm|dense:bf16": (1.2, 2.0), "h100_sxm|dense": (1.2, 2.0)}
    assert got["params"]["request_overhead_s"] == pytest.approx(0.05)
    assert got["params"]["request_overhead_per_input_token_s"] == pytest.approx(1e-5)
    assert got["objective_pct"] == pytest.approx(0.0, abs=1e-6)


def test_the_fit_tool_reports_bad_inputs_with_exit_2(tmp_path, capsys):
    assert fit.main([str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("not,a,silicon,file\n")
    bad_start = tmp_path / "start.json"
    bad_start.write_text("{}")
    code = fit.main([str(csv_path), "--start", str(bad_start)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "error:" in err


def test_the_shipped_profiles_round_trip_through_a_fit_section():
    # what `python -m simcluster.validate.fit FILE --start shipped` starts from
    from simcluster.perf.framework import PROFILES
    from simcluster.validate.fit import fit_of_profiles, profiles_from_fit

    fit = fit_of_profiles()
    assert set(fit) == {"vllm", "sglang", "trtllm"}
    back = profiles_from_fit(fit)
    for fw in fit:
        assert back[fw] == PROFILES[fw], fw


def test_a_start_outside_the_grids_is_snapped_onto_them(monkeypatch):
    """A fit never returns a post-run time off its grid, even when started from one (e.g. the shipped
    profiles after a grid was narrowed): the descent only takes improving moves, so an off-grid start
    that happens to fit well would otherwise never be left."""
    grids = {"request_overhead_s": [0.0, 0.02, 0.05], "request_overhead_per_input_token_s": [0.0, 1e-5],
             "handover_s": [0.0]}
    monkeypatch.setattr(fit, "GRIDS", {**fit.GRIDS, **grids})
    monkeypatch.setattr(fit, "_run_table", _small_run_table)
    truth = PROFILES["vllm"].with_(gpu_time_scales=(("h100_sxm", "dense", 1.2, 2.0),), request_overhead_s=0.02,
                                   request_overhead_per_input_token_s=4e-5, handover_s=0.0,
                                   request_overhead_by_kind=())
    rows = _measured(_rows(), truth)
    start = {"vllm": {"scales": {"h100_sxm|dense": [1.2, 2.0]},
                      "params": {"request_overhead_s": 0.02, "request_overhead_per_input_token_s": 4e-5}}}
    got = fit.fit_by_simulation(rows, workers=1, start=start, scales_fixed=True)["fit"]["vllm"]
    for k, grid in grids.items():
        assert got["params"][k] in grid, (k, got["params"][k])
    assert got["objective_pct"] > 0.0  # the truth itself is off the grid


def test_the_shipped_post_run_times_lie_on_the_fits_grids():
    for fw in ("vllm", "sglang", "trtllm"):
        p = PROFILES[fw]
        for k in fit.POST_RUN_TIMES:
            assert getattr(p, k) in fit.GRIDS[k], (fw, k, getattr(p, k))
        for kind, v in p.request_overhead_by_kind:
            assert v in fit.GRIDS["request_overhead_s"], (fw, kind, v)


def test_the_spec_overhead_fit_recovers_a_known_host_time_per_speculative_iteration(monkeypatch):
    """Rows made by the simulator with MTP (2 draft tokens) and 3 ms of exposed host time per
    iteration: the fit over the grid finds 3 ms, and a framework without speculative rows keeps its value."""
    import simcluster.validate.mapping as mapping

    plain = mapping.map_row

    def spec_map_row(row, profiles=None):
        s = plain(row, profiles)
        return dataclasses.replace(s, spec_tokens=2) if isinstance(s, mapping.Setup) else s

    monkeypatch.setattr(mapping, "map_row", spec_map_row)
    monkeypatch.setattr(fit, "GRIDS", {**fit.GRIDS, "spec_iteration_overhead_s": [0.0, 1e-3, 3e-3, 6e-3]})

    def run_table(rows, profiles, workers):
        import numpy as np

        sim = Simulator(profiles=profiles, simulated_waves=2)
        a = np.array([(p.ttft_ms / 1e3, p.tpot_ms / 1e3, p.input_tokens_mean, p.inv_steps_mean)
                      for p in (sim.run(spec_map_row(r, profiles)) for r in rows)], dtype=float)
        return {"ttft": a[:, 0], "tpot": a[:, 1], "isl": a[:, 2], "inv_steps": a[:, 3]}

    monkeypatch.setattr(fit, "_run_table", run_table)
    truth = PROFILES["vllm"].with_(spec_iteration_overhead_s=3e-3)
    sim = Simulator(profiles={"vllm": truth}, simulated_waves=2)
    rows = []
    for r in _rows():
        p = sim.run(spec_map_row(r, {"vllm": truth}))
        rows.append(dataclasses.replace(r, ttft_ms=p.ttft_ms, tpot_ms=p.tpot_ms))
    base = {"vllm": PROFILES["vllm"], "sglang": PROFILES["sglang"]}
    got = fit.fit_spec_overhead(rows, workers=1, base=base)
    assert got["vllm"]["spec_iteration_overhead_s"] == 3e-3
    assert got["vllm"]["objective_pct"][3e-3] == pytest.approx(0.0, abs=1e-6)
    assert min(got["vllm"]["objective_pct"].values()) == got["vllm"]["objective_pct"][3e-3]
    assert got["sglang"] == {"spec_iteration_overhead_s": PROFILES["sglang"].spec_iteration_overhead_s, "rows": 0,
                             "objective_pct": {}}


def test_speculative_iterations_pay_their_exposed_host_time_per_token():
    """A decode step with k draft tokens costs one iteration / acceptance length: its exposed host
    time (fixed + per sequence) shows up divided by the acceptance length; without MTP it is not charged."""
    from simcluster.perf.framework import ScheduledStepCost, mtp_acceptance_length
    from simcluster.perf.interface import BatchShape, StepTime

    class Flat:
        def step(self, shape):
            return StepTime(0.01 if shape.decode_seqs else 0.0)

    shape = BatchShape(decode_seqs=8, decode_context_tokens=8 * 100)
    prof = PROFILES["vllm"].with_(cuda_graph_sizes=(), decode_overhead_s=0.0, decode_overhead_per_seq_s=0.0,
                                  gpu_time_scales=())
    for k in (0, 2):
        a = ScheduledStepCost(Flat(), prof.with_(spec_draft_tokens=k)).step(shape).latency_s
        b = ScheduledStepCost(Flat(), prof.with_(spec_draft_tokens=k, spec_iteration_overhead_s=4e-3,
                                                 spec_iteration_overhead_per_seq_s=1e-4)).step(shape).latency_s
        expect = 0.0 if k == 0 else (4e-3 + 8 * 1e-4) / mtp_acceptance_length(k)
        assert b - a == pytest.approx(expect, rel=1e-9), k
