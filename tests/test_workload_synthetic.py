"""Synthetic workloads against probability theory: arrival rates and gap variability, length
moments against closed forms, joint sampling, the Azure-like preset against the trace it stands for.

Tolerances are 4 standard errors of the estimator, derived from the distribution in each test,
so a correct generator fails about once in 16,000 runs, and a biased one (say a Poisson generator
that truncates gaps, running 5% fast) fails every time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from simcluster.errors import UserError
from simcluster.workload import (
    ConstantArrivals,
    EmpiricalLength,
    FixedLength,
    GammaArrivals,
    LengthTable,
    LognormalLength,
    PoissonArrivals,
    QuantileLength,
    UniformLength,
    azure_conversation_like,
    build_workload,
    load_preset,
    read_trace,
    synthetic_workload,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
AZURE = SHARED / "traces" / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
SEEDS = range(5)
N = 100_000


def cv_standard_error(cv: float, n: int) -> float:
    """Standard error of the sample coefficient of variation of ``n`` gamma gaps (delta method).

    For a gamma with shape k (cv**2 = 1/k): Var(cv_hat) ~ cv**2 / n * (1/2 + 1/(2k)).
    Exponential gaps (cv = 1) give 1/sqrt(n).
    """
    return cv * math.sqrt((1 + cv**2) / (2 * n))


def gaps_of(process, seed: int, n: int = N) -> np.ndarray:
    times = process.times(np.random.default_rng(seed), num_requests=n)
    assert times[0] == 0.0 and len(times) == n
    return np.diff(times)


# --------------------------------------------------------------------------------------------
# Arrivals


@pytest.mark.parametrize("rate", [0.5, 5.5, 200.0])
def test_poisson_long_run_rate_is_the_configured_rate(rate):
    for seed in SEEDS:
        gaps = gaps_of(PoissonArrivals(rate), seed)
        # The mean of n exponential gaps has standard error (1/rate) / sqrt(n).
        assert abs(gaps.mean() - 1 / rate) < 4 * (1 / rate) / math.sqrt(len(gaps)), f"seed {seed}"


def test_poisson_gaps_are_exponential_and_never_truncated():
    for seed in SEEDS:
        gaps = gaps_of(PoissonArrivals(2.0), seed)
        cv = gaps.std() / gaps.mean()
        assert abs(cv - 1) < 4 * cv_standard_error(1.0, len(gaps))
        # P(gap > t) = exp(-rate t) at the mean and far in the tail, where truncation would show.
        for t in (0.5, 3.0):
            p = math.exp(-2.0 * t)
            assert abs((gaps > t).mean() - p) < 4 * math.sqrt(p * (1 - p) / len(gaps)), (seed, t)


def test_poisson_count_over_a_duration_is_poisson():
    rate, duration = 5.5, 2000.0
    for seed in SEEDS:
        times = PoissonArrivals(rate).times(np.random.default_rng(seed), duration_s=duration)
        assert times[0] == 0.0 and times[-1] < duration and np.all(np.diff(times) >= 0)
        # One arrival at t = 0, then a Poisson(rate * duration) count in (0, duration).
        assert abs(len(times) - 1 - rate * duration) < 4 * math.sqrt(rate * duration)


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0])
def test_gamma_arrivals_have_the_configured_rate_and_cv(cv):
    rate = 3.0
    for seed in SEEDS:
        gaps = gaps_of(GammaArrivals(rate, cv), seed)
        assert abs(gaps.mean() - 1 / rate) < 4 * (cv / rate) / math.sqrt(len(gaps))
        assert abs(gaps.std() / gaps.mean() - cv) < 4 * cv_standard_error(cv, len(gaps))


def test_gamma_over_a_duration_covers_the_window_and_no_more():
    times = GammaArrivals(10.0, 2.0).times(np.random.default_rng(3), duration_s=500.0)
    assert times[-1] < 500.0
    # The count of a renewal process over T has sd ~ cv * sqrt(rate T).
    assert abs(len(times) - 5000) < 4 * 2.0 * math.sqrt(5000) + 1


def test_constant_arrivals_are_exact():
    times = ConstantArrivals(4.0).times(num_requests=1001)
    assert np.array_equal(times, np.arange(1001) * 0.25)  # quarter seconds are exact in binary
    times = ConstantArrivals(3.0).times(num_requests=10_000)
    np.testing.assert_allclose(np.diff(times), 1 / 3, rtol=1e-9)
    assert times[-1] == 9999 / 3
    # Every i / rate below the duration: 0, 0.25, ..., 2.5 -> 11 arrivals in [0, 2.6).
    assert len(ConstantArrivals(4.0).times(duration_s=2.6)) == 11
    assert len(ConstantArrivals(4.0).times(duration_s=2.5)) == 10


def test_bad_arrival_parameters_are_user_errors():
    with pytest.raises(UserError, match="rate_per_s"):
        PoissonArrivals(0)
    with pytest.raises(UserError, match="cv"):
        GammaArrivals(1.0, -1)
    with pytest.raises(UserError, match="exactly one"):
        PoissonArrivals(1.0).times(np.random.default_rng(0))
    with pytest.raises(UserError, match="more than"):
        PoissonArrivals(1e6).times(np.random.default_rng(0), duration_s=1e9)


# --------------------------------------------------------------------------------------------
# Lengths


def test_fixed_and_uniform_lengths():
    rng = np.random.default_rng(0)
    assert np.all(FixedLength(1024).sample(1000, rng) == 1024)
    low, high = 10, 29
    x = UniformLength(low, high).sample(N, rng)
    assert x.min() == low and x.max() == high, "both bounds are included"
    width = high - low + 1
    # Discrete uniform: mean (low + high) / 2, variance (width**2 - 1) / 12.
    assert abs(x.mean() - (low + high) / 2) < 4 * math.sqrt((width**2 - 1) / 12 / N)
    counts = np.bincount(x - low, minlength=width)
    p = 1 / width
    assert np.all(np.abs(counts / N - p) < 4 * math.sqrt(p * (1 - p) / N))


def test_lognormal_parameterisation_by_median_and_p90():
    dist = LognormalLength(median=1000, p90=3000)
    z90 = NormalDist().inv_cdf(0.9)
    assert dist.mu == pytest.approx(math.log(1000))
    assert dist.sigma == pytest.approx(math.log(3) / z90)


@pytest.mark.parametrize("median, p90", [(1020, 2734.5), (129, 424), (50, 60)])
def test_lognormal_moments_match_closed_forms(median, p90):
    dist = LognormalLength(median=median, p90=p90)
    mu, s2 = dist.mu, dist.sigma**2
    mean = math.exp(mu + s2 / 2)
    sd = math.sqrt((math.exp(s2) - 1) * math.exp(2 * mu + s2))
    for seed in SEEDS:
        x = dist.sample(N, np.random.default_rng(seed))
        assert x.dtype == np.int64 and x.min() >= 1
        # Rounding to whole tokens moves the mean by far less than a token.
        assert abs(x.mean() - mean) < 4 * sd / math.sqrt(N) + 0.5
        for value in (median, p90):
            # Draws are rounded to the nearest token: rint(X) <= v exactly when X < floor(v) + 0.5.
            q = NormalDist(mu, dist.sigma).cdf(math.log(math.floor(value) + 0.5))
            frac = (x <= value).mean()
            assert abs(frac - q) < 4 * math.sqrt(q * (1 - q) / N), (seed, value)


def test_lognormal_is_clipped_only_when_asked():
    rng = np.random.default_rng(1)
    free = LognormalLength(median=100, p90=1000).sample(N, rng)
    assert free.min() < 20 and free.max() > 20_000
    clipped = LognormalLength(median=100, p90=1000, min_tokens=20, max_tokens=20_000).sample(N, rng)
    assert clipped.min() == 20 and clipped.max() == 20_000
    with pytest.raises(UserError):
        LognormalLength(median=100, p90=50)


def test_quantile_table_mean_and_quantiles():
    dist = QuantileLength(np.array([0.0, 0.5, 1.0]), np.array([100.0, 200.0, 1000.0]))
    # Piecewise-uniform: half the mass uniform on [100, 200], half on [200, 1000].
    assert dist.mean == pytest.approx(0.5 * 150 + 0.5 * 600)
    x = dist.sample(N, np.random.default_rng(2))
    assert abs(x.mean() - dist.mean) < 4 * x.std() / math.sqrt(N) + 0.5
    # rint(X) <= 200 exactly when X < 200.5: half the mass plus half a token of the upper segment.
    q = 0.5 + 0.5 * 0.5 / 800
    assert abs((x <= 200).mean() - q) < 4 * math.sqrt(q * (1 - q) / N)


def test_empirical_lengths_from_one_table_are_drawn_jointly():
    table = LengthTable({"in": np.array([10, 20, 30, 40]), "out": np.array([1, 2, 3, 4])}, source="t")
    w = synthetic_workload(
        ConstantArrivals(1.0), EmpiricalLength(table, "in"), EmpiricalLength(table, "out"),
        np.random.default_rng(0), num_requests=N,
    )
    assert np.array_equal(w.input_tokens, 10 * w.output_tokens), "every request is one row of the table"
    counts = np.bincount(w.output_tokens, minlength=5)[1:]
    assert np.all(np.abs(counts / N - 0.25) < 4 * math.sqrt(0.25 * 0.75 / N))
    # Two different tables are sampled independently.
    other = LengthTable({"out": np.array([1, 2, 3, 4])}, source="u")
    w = synthetic_workload(
        ConstantArrivals(1.0), EmpiricalLength(table, "in"), EmpiricalLength(other, "out"),
        np.random.default_rng(0), num_requests=N,
    )
    assert (w.input_tokens == 10 * w.output_tokens).mean() == pytest.approx(0.25, abs=0.01)


def test_empirical_spec_reads_a_length_table_relative_to_the_scenario(tmp_path):
    (tmp_path / "lengths.csv").write_text("num_prefill_tokens,num_decode_tokens,extra\n100,7,x\n300,9,y\n")
    spec = {
        "kind": "synthetic", "duration_s": 100, "arrival": {"process": "poisson", "rate_per_s": 20},
        "input_tokens": {"dist": "empirical", "path": "lengths.csv", "column": "num_prefill_tokens"},
        "output_tokens": {"dist": "empirical", "path": "lengths.csv", "column": "num_decode_tokens"},
    }
    w = build_workload(spec, np.random.default_rng(0), tmp_path)
    assert set(zip(w.input_tokens.tolist(), w.output_tokens.tolist())) == {(100, 7), (300, 9)}
    spec["output_tokens"]["column"] = "missing"
    with pytest.raises(UserError, match=r"lengths\.csv:1: missing column 'missing'"):
        build_workload(spec, np.random.default_rng(0), tmp_path)


# --------------------------------------------------------------------------------------------
# Whole workloads


def spec(**changes) -> dict:
    base = {
        "kind": "synthetic", "num_requests": 5000, "arrival": {"process": "poisson", "rate_per_s": 5.5},
        "input_tokens": {"dist": "lognormal", "median": 1000, "p90": 3000},
        "output_tokens": {"dist": "uniform", "low": 10, "high": 500},
    }
    return {**base, **changes}


def test_same_seed_same_workload_and_streams_are_independent():
    a = build_workload(spec(), np.random.default_rng(42), Path("."))
    b = build_workload(spec(), np.random.default_rng(42), Path("."))
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.input_tokens, b.input_tokens)
    c = build_workload(spec(), np.random.default_rng(43), Path("."))
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    # Changing the output lengths leaves arrivals and input lengths as they were.
    d = build_workload(spec(output_tokens={"dist": "fixed", "value": 7}), np.random.default_rng(42), Path("."))
    assert np.array_equal(a.arrival_s, d.arrival_s) and np.array_equal(a.input_tokens, d.input_tokens)
    assert "poisson" in a.source and "lognormal" in a.source


def test_duration_spec_gives_one_length_per_arrival():
    w = build_workload(spec(num_requests=None, duration_s=60.0), np.random.default_rng(0), Path("."))
    assert len(w.input_tokens) == len(w.output_tokens) == len(w.arrival_s) > 0
    assert w.arrival_s[-1] < 60.0


def test_a_million_requests_fit_in_tens_of_megabytes():
    w = azure_conversation_like(1_000_000, 5.5, np.random.default_rng(0))
    assert len(w) == 1_000_000
    assert w.arrival_s.nbytes + w.input_tokens.nbytes + w.output_tokens.nbytes == 24_000_000
    assert np.all(np.diff(w.arrival_s) >= 0) and w.input_tokens.min() >= 1


# --------------------------------------------------------------------------------------------
# The Azure-like preset


def test_azure_conversation_like_matches_the_published_trace_statistics():
    """../shared/README.md: rate ~5.5/s, context mean 1,155 (p50 1,020), generated mean 211 (p50 129)."""
    w = azure_conversation_like(200_000, None, np.random.default_rng(0))
    assert w.input_tokens.mean() == pytest.approx(1155, rel=0.02)
    assert w.output_tokens.mean() == pytest.approx(211, rel=0.02)
    assert np.median(w.input_tokens) == pytest.approx(1020, rel=0.02)
    assert np.median(w.output_tokens) == pytest.approx(129, rel=0.03)
    rate = (len(w) - 1) / w.arrival_s[-1]
    assert rate == pytest.approx(5.53, rel=0.02)
    poisson = azure_conversation_like(200_000, 2.0, np.random.default_rng(0), interarrival_cv=1.0)
    gaps = np.diff(poisson.arrival_s)
    assert abs(gaps.std() / gaps.mean() - 1) < 4 * cv_standard_error(1.0, len(gaps))


def test_preset_works_from_package_data_and_carries_attribution():
    preset = load_preset("azure_conv_2023")
    assert preset["source"]["license"] == "CC-BY-4.0" and "Splitwise" in preset["source"]["attribution"]
    w = build_workload(
        {"kind": "synthetic", "num_requests": 100, "arrival": {"process": "preset", "name": "azure_conv_2023"},
         "input_tokens": {"dist": "preset", "name": "azure_conv_2023"},
         "output_tokens": {"dist": "preset", "name": "azure_conv_2023"}},
        np.random.default_rng(0), Path("."),
    )
    assert len(w) == 100


def test_preset_is_reproduced_by_its_fit_script_and_follows_the_trace():
    if not AZURE.exists():
        pytest.skip(f"{AZURE} is absent: the real traces live in ../shared beside the repository")
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("fit", REPO / "traces" / "fit_azure_conv_preset.py")
    fit = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(fit)
    shipped = json.loads((REPO / "simcluster" / "data" / "azure_conv_2023_lengths.json").read_text())
    assert json.loads(json.dumps(fit.fit(AZURE))) == shipped, "re-run traces/fit_azure_conv_preset.py"

    trace = read_trace(AZURE)
    synthetic = azure_conversation_like(200_000, None, np.random.default_rng(5))
    for side in ("input_tokens", "output_tokens"):
        real, fake = getattr(trace, side), getattr(synthetic, side)
        for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99):
            assert np.quantile(fake, q) == pytest.approx(np.quantile(real, q), rel=0.03, abs=2), (side, q)
