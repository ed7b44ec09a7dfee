"""The repeat-measurement floor of a validation file (simcluster/validate/repeats.py).

Truth: the floor's definition. For a group measured at m_i, the best single prediction minimises
sum |c/m_i - 1|; a dense search over c must find no lower value than the closed form, and a predictor
that answers each group with its best constant must score exactly the floor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simcluster.validate.repeats import best_constant_error, format_spread, repeat_key, repeat_spread
from simcluster.validate.runner import RowResult
from simcluster.validate.silicon import PoolShape, SiliconRow
from simcluster.validate.simulate import Prediction


def _row(line, tpot, ttft=100.0, conc=8, version="1.0", source="image=img:1"):
    return SiliconRow(line=line, id=f"r{line}", backend="vllm", backend_version=version, model_path="m/x",
                      system="h200_sxm", precision="fp8", mode="agg", isl=1024, osl=1024, gemm_quant_mode="fp8",
                      moe_quant_mode="", agg=PoolShape(tp=8, pp=1, attention_dp=1, batch_size=conc),
                      prefill=None, decode=None, concurrency_hint=conc, ttft_ms=ttft, tpot_ms=tpot, source=source)


def _res(row, pred_tpot=None):
    p = None if pred_tpot is None else Prediction(100.0, pred_tpot, 1, 1, 1.0, 0, 0)
    return RowResult(row, None, p, "")


@pytest.mark.parametrize("seed", range(5))
def test_best_constant_matches_a_dense_search(seed):
    m = np.random.default_rng(seed).lognormal(3.0, 0.6, size=int(2 + seed))
    grid = np.geomspace(m.min() * 0.5, m.max() * 2.0, 20001)
    brute = min(np.sum(np.abs(c / m - 1.0)) for c in grid)
    exact = best_constant_error(m)
    assert exact <= brute + 1e-12
    assert exact == pytest.approx(brute, rel=1e-3, abs=1e-9)


def test_single_measurement_has_no_floor():
    assert best_constant_error([12.0]) == 0.0
    assert best_constant_error([]) == 0.0


def test_floor_of_a_small_file():
    rows = [
        _row(2, 10.0), _row(3, 20.0),             # one configuration measured twice, 2x apart
        _row(4, 15.0, conc=16), _row(5, 15.0, conc=16),  # one measurement exported twice
        _row(6, 30.0, conc=32),                    # measured once
        _row(7, 40.0, version="2.0"),              # another framework version: its own configuration
    ]
    assert repeat_key(rows[0]) == repeat_key(rows[1]) != repeat_key(rows[5])
    # the best single answer for {10, 20} is 10: errors 0 and 0.5
    preds = [10.0, 10.0, 15.0, 15.0, 30.0, 40.0]
    sp = repeat_spread([_res(r, p) for r, p in zip(rows, preds)])
    t = sp["tpot"]
    assert t["rows"] == 6
    assert t["all"]["configurations"] == 1 and t["all"]["rows"] == 2
    assert t["all"]["max_over_min_median"] == pytest.approx(2.0)
    assert t["all"]["floor_mape_pct_on_rows"] == pytest.approx(25.0)
    assert t["all"]["floor_mape_pct_of_file"] == pytest.approx(100.0 * 0.5 / 6)
    # a predictor that gives each configuration its best constant scores the floor exactly
    assert t["all"]["model_mape_pct_on_rows"] == pytest.approx(t["all"]["floor_mape_pct_on_rows"])
    assert t["mtp_ambiguous"]["configurations"] == 0
    # TTFT is the same everywhere: nothing repeated differs
    assert sp["ttft"]["all"]["configurations"] == 0
    text = "\n".join(format_spread(sp))
    assert "TPOT all" in text and "TTFT all" not in text
    single = repeat_spread([_res(rows[4], 30.0)])
    assert "no configuration was measured more than once" in "\n".join(format_spread(single))


def test_configurations_whose_recipe_is_ambiguous_are_kept_apart():
    from types import SimpleNamespace

    amb = SimpleNamespace(recipe_ambiguous=True)
    rows = [_row(2, 10.0), _row(3, 15.0), _row(4, 20.0, conc=16), _row(5, 30.0, conc=16)]
    res = [RowResult(r, amb if r.concurrency_hint == 16 else None, None, "") for r in rows]
    t = repeat_spread(res)["tpot"]
    assert (t["all"]["configurations"], t["mtp_ambiguous"]["configurations"], t["other"]["configurations"]) == (2, 1, 1)
    assert t["mtp_ambiguous"]["max_over_min_median"] == pytest.approx(1.5)
    assert t["other"]["max_over_min_median"] == pytest.approx(1.5)
    assert t["all"]["floor_mape_pct_of_file"] == pytest.approx(
        t["mtp_ambiguous"]["floor_mape_pct_of_file"] + t["other"]["floor_mape_pct_of_file"])


def test_the_floor_bounds_every_constant_predictor():
    rng = np.random.default_rng(7)
    rows, truth = [], []
    for g in range(6):
        for k in range(3):
            v = float(rng.lognormal(2.0, 0.4))
            rows.append(_row(2 + 3 * g + k, v, conc=4 * (g + 1)))
            truth.append(v)
    floor = repeat_spread([_res(r) for r in rows])["tpot"]["all"]["floor_mape_pct_on_rows"]
    for trial in range(20):  # any one value per configuration does no better
        c = rng.lognormal(2.0, 0.4, size=6)
        mape = np.mean([abs(c[i // 3] / v - 1.0) for i, v in enumerate(truth)]) * 100.0
        assert mape >= floor - 1e-9
    assert not math.isnan(floor)
