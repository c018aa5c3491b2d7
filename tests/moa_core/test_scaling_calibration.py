"""Calibrated scaling-law intervals: the noise bootstrap, the averaged law and the study on known laws."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from moa_core.scaling import (
    AVERAGED,
    ScalingData,
    backtest_weights,
    bootstrap_fit,
    fit_form,
    fit_scaling_laws,
    robust_lm,
)
from moa_core.scaling.averaging import weighted_quantile
from moa_core.scaling.calibration import StudyGrid, coverage_table, run_setting, simulate_points


def test_solver_offsets_equal_a_solve_on_the_shifted_observations() -> None:
    rng = np.random.default_rng(0)
    pts = simulate_points("power_floor", runs=2, noise_sd=0.01, rng=rng)
    data = ScalingData.from_points(pts)
    fit = fit_form(data, "power_floor")
    shift = rng.normal(0, 0.01, size=len(pts))
    moved = pts.assign(metric=np.clip(pts["metric"] + shift, 0, 1))
    moved_data = ScalingData.from_points(moved)
    offsets = moved_data.obs_t - data.obs_t
    kw = dict(jacobian=data.jacobian_fn(fit.form), f_scale=fit.f_scale, max_iter=200)
    with_offsets = robust_lm(data.residual_fn(fit.form), fit.theta[None, :], offsets=offsets[None, :], **kw)
    direct = robust_lm(moved_data.residual_fn(fit.form), fit.theta[None, :], **kw)
    np.testing.assert_allclose(with_offsets.theta, direct.theta, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="offsets has 2 rows"):
        robust_lm(data.residual_fn(fit.form), fit.theta[None, :], offsets=np.zeros((2, len(pts))))


def test_weighted_quantile_matches_order_statistics_and_keeps_inf() -> None:
    x = np.array([3.0, 1.0, 2.0, np.inf, np.nan])
    w = np.ones(5)
    assert weighted_quantile(x, w, np.array([0.5]))[0] == 2.0  # NaN dropped; inverted CDF of 4 values
    assert weighted_quantile(x, w, np.array([1.0]))[0] == np.inf
    np.testing.assert_allclose(
        weighted_quantile(np.arange(10.0), np.ones(10), np.array([0.1, 0.55])),
        np.quantile(np.arange(10.0), [0.1, 0.55], method="inverted_cdf"),
    )
    # weight moves the median
    assert weighted_quantile(np.array([1.0, 2.0]), np.array([0.9, 0.1]), np.array([0.5]))[0] == 1.0


def test_one_point_per_few_sizes_gives_no_interval_and_says_why() -> None:
    """MOAProfiler's replicate-fraction curve with one seed: 3 sizes, one point each."""
    pts = pd.DataFrame({"n": [120.0, 240.0, 480.0], "metric": [0.15, 0.2, 0.3]})
    tab = fit_scaling_laws(pts, n_boot=50, target=0.5).table().set_index("form")
    for form in ("linear", "log_linear"):
        row = tab.loc[form]
        assert math.isnan(row["n_needed_low"]) and math.isnan(row["n_needed_high"])
        assert "no interval" in row["reason"] and "two seeds per size" in row["reason"]
        assert math.isfinite(row["n_needed"])  # the point value is still read off
    assert "no interval" in tab.loc[AVERAGED, "reason"]
    assert math.isnan(tab.loc[AVERAGED, "n_needed_low"])


def test_backtest_weights_drop_a_form_that_misses_the_withheld_size() -> None:
    pts = simulate_points("power_floor", runs=3, noise_sd=0.005, rng=np.random.default_rng(3))
    rep = fit_scaling_laws(pts, n_boot=40)
    w = backtest_weights(rep)
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["linear"] < 1e-6  # a straight line in N on a saturating curve
    assert w["power_floor"] > 0.1
    assert rep.table().set_index("form").loc["linear", "weight"] == pytest.approx(w["linear"])


def test_noise_bootstrap_is_not_collapsed_by_three_runs() -> None:
    """With 3 runs the run bootstrap has 10 distinct resamples; the noise bootstrap's are all distinct."""
    pts = simulate_points("power_floor", runs=3, noise_sd=0.01, rng=np.random.default_rng(1))
    fit = fit_form(pts, "power_floor")
    runs = bootstrap_fit(fit, n_boot=200, seed=0, resample="runs")
    noise = bootstrap_fit(fit, n_boot=200, seed=0)
    assert len(np.unique(runs.good[:, 2].round(10))) <= 10
    assert len(np.unique(noise.good[:, 2].round(10))) == noise.good.shape[0]


def test_averaged_interval_covers_known_laws_where_the_top_form_does_not() -> None:
    """A small fixed-seed slice of the study (bench/bench_scaling_calibration.py runs all of it)."""
    grid = StudyGrid(
        laws=("power_floor", "broken_power"),
        noise_sds=(0.01,),
        runs=(3,),
        factors=(5.0, 30.0),
        levels=(0.95,),
        trials=5,
        n_boot=100,
    )
    rows = pd.concat([run_setting(grid, *s, seed=11) for s in grid.settings()], ignore_index=True)
    cov = coverage_table(rows, by=("method",)).set_index("method")["coverage"]
    assert cov[AVERAGED] >= 0.9
    assert cov[AVERAGED] > cov["power_floor"]  # a single form's interval misses when the form is wrong
    assert cov[AVERAGED] >= cov["top"]
