"""The Pareto frontier against the O(n²) definition, and per-group frontiers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simcluster.plan.pareto import (best_interactivity_at, best_throughput_at, brute_force_mask, frontier,
                                   interactivity_on_curve, pareto_mask)

coords = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=0, max_size=60)


@settings(max_examples=300, deadline=None)
@given(coords)
def test_frontier_matches_brute_force_with_ties(pts):
    x = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    assert np.array_equal(pareto_mask(x, y), brute_force_mask(x, y))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e6) | st.just(float("nan")), st.floats(0, 1e6) | st.just(float("nan"))),
                max_size=80))
def test_frontier_matches_brute_force_floats_and_nan(pts):
    x = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    m = pareto_mask(x, y)
    assert np.array_equal(m, brute_force_mask(x, y))
    assert not m[np.isnan(x) | np.isnan(y)].any()


def test_no_frontier_point_is_dominated_and_every_other_is():
    rng = np.random.default_rng(7)
    x, y = rng.random(500), rng.random(500)
    m = pareto_mask(x, y)
    for i in range(len(x)):
        dominated = ((x >= x[i]) & (y >= y[i]) & ((x > x[i]) | (y > y[i]))).any()
        assert m[i] != dominated


def test_frontier_per_group_uses_ok_points_only():
    df = pd.DataFrame({
        "point_id": list("abcdef"), "status": ["ok", "ok", "ok", "invalid", "ok", "ok"],
        "model": ["m1", "m1", "m1", "m1", "m2", "m2"],
        "tokens_per_s_per_gpu": [10.0, 5.0, 4.0, 100.0, 1.0, 2.0],
        "tokens_per_s_per_user": [1.0, 2.0, 1.5, 100.0, 5.0, 5.0],
    })
    f = frontier(df, ["model"])
    assert set(f["point_id"]) == {"a", "b", "f"}  # c dominated by b; d invalid; e dominated by f
    assert set(f["group"]) == {"m1", "m2"}


def test_budget_lookups():
    fx, fy = [10.0, 5.0, 1.0], [1.0, 2.0, 3.0]
    assert best_throughput_at(fx, fy, 1.5) == 5.0
    assert np.isnan(best_throughput_at(fx, fy, 4.0))
    assert best_interactivity_at(fx, fy, 6.0) == 1.0


def test_a_frontier_read_as_a_curve_passes_through_its_points_and_is_straight_in_log_log():
    fx, fy = [1.0, 4.0, 16.0], [100.0, 50.0, 10.0]  # throughput ascending, interactivity descending
    for x, y in zip(fx, fy):
        assert interactivity_on_curve(fx, fy, x) == pytest.approx(y)
    assert interactivity_on_curve(fx, fy, 2.0) == pytest.approx((100.0 * 50.0) ** 0.5)  # geometric midpoint
    assert interactivity_on_curve(fx, fy, 0.5) == 100.0  # below the curve's reach: its best interactivity
    assert np.isnan(interactivity_on_curve(fx, fy, 17.0))  # beyond its highest throughput: unreachable
    assert interactivity_on_curve(fx[::-1], fy[::-1], 2.0) == pytest.approx(interactivity_on_curve(fx, fy, 2.0))
