"""Tests for moa_core.scaling: forms, fitting, bootstrap, back-test, extrapolation, report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq, least_squares

from moa_core.errors import MoaInputError
from moa_core.scaling import (
    AVERAGED,
    FORMS,
    SCALING_LAW_COLUMNS,
    ScalingData,
    ScalingError,
    backtest,
    best_of_zoo,
    bootstrap_fit,
    bootstrap_offsets,
    bootstrap_weights,
    check_trend,
    extrapolate,
    fit_form,
    fit_scaling_laws,
    m4_error,
    m4_form,
    robust_cost,
    robust_lm,
    validate_points,
)

SIZES = np.geomspace(1e3, 1e6, 8)

# true parameters and a target for every form (curves rise from ~0.2-0.45 to ~0.5-0.76)
CASES: dict[str, tuple[dict[str, float], float]] = {
    "linear": ({"a": 0.2, "b": 3e-7}, 0.6),
    "log_linear": ({"a": -0.1, "b": 0.1}, 0.55),
    "power_floor": ({"a_inf": 0.7, "A": 2.0, "alpha": 0.3}, 0.68),
    "m4": ({"e_inf": 0.25, "beta": 30.0, "c": 0.5, "gamma": 1.0}, 0.73),
    "broken_power": ({"a_inf": 0.8, "A": 1.0, "alpha0": 0.1, "alpha1": 0.5, "d1": 3e4}, 0.77),
}
# relative tolerance on each fitted parameter and on N needed
REL_TOL: dict[str, float] = {"linear": 0.02, "log_linear": 0.05, "power_floor": 0.05, "m4": 0.12, "broken_power": 0.1}


def make_points(
    form: str,
    truth: dict[str, float],
    *,
    sd: float = 0.003,
    runs: int | None = 4,
    seed: int = 0,
    sizes: np.ndarray = SIZES,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mu = FORMS[form].predict(truth, sizes)
    if runs is None:
        return pd.DataFrame({"n": sizes, "metric": mu + rng.normal(0, sd, sizes.size)})
    rows = [
        {"n": n, "metric": m + rng.normal(0, sd), "run": f"seed{r}"} for r in range(runs) for n, m in zip(sizes, mu)
    ]
    return pd.DataFrame(rows)


def curve_points(means: list[float], *, sd: float = 0.004, runs: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = np.geomspace(1e4, 1e6, len(means))
    return pd.DataFrame(
        [{"n": n, "metric": m + rng.normal(0, sd), "run": r} for r in range(runs) for n, m in zip(sizes, means)]
    )


@pytest.fixture(scope="module")
def saturating() -> pd.DataFrame:
    """A power law with floor, asymptote 0.7, 8 sizes x 4 runs."""
    return make_points("power_floor", CASES["power_floor"][0])


# ---------------------------------------------------------------------- validation
def test_scaling_error_is_input_error() -> None:
    assert issubclass(ScalingError, MoaInputError)


def test_fewer_than_three_sizes_raises() -> None:
    pts = pd.DataFrame({"n": [1e3, 1e3, 1e4, 1e4], "metric": [0.2, 0.21, 0.3, 0.31]})
    with pytest.raises(ScalingError, match="at least 3 distinct data sizes"):
        validate_points(pts)
    with pytest.raises(ScalingError, match="at least 3"):
        fit_scaling_laws(pts, n_boot=10)
    with pytest.raises(ScalingError, match="at least 3"):
        fit_form(pts, "linear")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"metric": [0.1, np.nan, 0.3]}, "NaN/inf"),
        ({"metric": [0.1, np.inf, 0.3]}, "NaN/inf"),
        ({"n": [0.0, 10.0, 100.0]}, "n must be > 0"),
        ({"n": [-5.0, 10.0, 100.0]}, "n must be > 0"),
        ({"n": [1.0, np.nan, 100.0]}, "NaN/inf"),
        ({"metric": [0.1, 0.2, 1.2]}, r"\[0, 1\]"),
        ({"metric": [-0.1, 0.2, 0.3]}, r"\[0, 1\]"),
        ({"metric": ["a", "b", "c"]}, "numeric"),
        ({"run": [1, None, 2]}, "run"),
        ({"model_size": [1.0, 2.0, 2.0]}, "best_of_zoo"),
    ],
)
def test_validation_errors(bad: dict, match: str) -> None:
    base = {"n": [10.0, 100.0, 1000.0], "metric": [0.1, 0.2, 0.3]}
    base.update(bad)
    with pytest.raises(ScalingError, match=match):
        validate_points(pd.DataFrame(base))


def test_validation_other_errors() -> None:
    with pytest.raises(ScalingError, match="lack column"):
        validate_points(pd.DataFrame({"n": [1, 2, 3]}))
    with pytest.raises(ScalingError, match="DataFrame"):
        validate_points({"n": [1, 2, 3], "metric": [0.1, 0.2, 0.3]})  # type: ignore[arg-type]
    pts = pd.DataFrame({"n": [10.0, 100.0, 1000.0], "metric": [1.0, 2.0, 3.0]})
    assert validate_points(pts, bounded=False)["metric"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ScalingError, match="bounded metrics"):
        fit_form(pts, "m4", bounded=False)
    five = make_points("linear", CASES["linear"][0], sizes=np.geomspace(1e3, 1e6, 4))
    with pytest.raises(ScalingError, match="needs >= 5 distinct"):
        fit_form(five, "broken_power")


def test_best_of_zoo_takes_max_over_model_sizes() -> None:
    pts = pd.DataFrame(
        {"n": [10, 10, 20, 20, 30, 30], "metric": [0.1, 0.3, 0.2, 0.25, 0.4, 0.35], "model_size": [1, 2, 1, 2, 1, 2]}
    )
    out = best_of_zoo(pts)
    assert out["metric"].tolist() == [0.3, 0.25, 0.4]
    validate_points(out)  # one model family now


# ---------------------------------------------------------------------- forms
@pytest.mark.parametrize("name", list(CASES))
def test_predict_inverse_roundtrip(name: str) -> None:
    form = FORMS[name]
    truth, _ = CASES[name]
    n = np.geomspace(10, 1e7, 15)
    metric = form.predict(truth, n)
    assert np.all(np.diff(metric) > 0), "every case is increasing"
    back = np.array([form.inverse(truth, float(m)) for m in metric])
    np.testing.assert_allclose(back, n, rtol=1e-6)
    # batch evaluation agrees with single evaluation
    batch = np.stack([form.param_array(truth)] * 3)
    np.testing.assert_allclose(form.predict(batch, n), np.broadcast_to(metric, (3, n.size)))
    if form.has_asymptote:
        asym = form.asymptote(truth)
        assert form.inverse(truth, asym + 1e-3) == math.inf
        assert form.inverse(truth, asym - 1e-9) > 1e7
        assert np.all(metric < asym)
    else:
        assert math.isnan(form.asymptote(truth))
        flat = dict(truth, b=-abs(truth["b"]))
        assert form.inverse(flat, 0.9) == math.inf


def test_m4_solver_matches_brentq_and_closed_forms() -> None:
    e_inf, e0 = 0.3, 0.9
    for gamma in (1e-3, 0.3, 1.0, 2.5, 10.0):
        for ln_k in np.linspace(-10, 10, 11):
            e = float(m4_error(np.array([[e_inf]]), e0, np.array([[ln_k]]), np.array([[gamma]]))[0, 0])
            f = lambda x: (x - e_inf) - math.exp(ln_k) * (e0 - x) ** gamma  # noqa: E731
            ref = brentq(f, e_inf, e0, xtol=1e-15)
            assert abs(e - ref) < 1e-10, (gamma, ln_k, e, ref)
    # gamma = 1: e = (e_inf + k e0) / (1 + k)
    k = np.exp(np.linspace(-5, 5, 7))[None, :]
    got = m4_error(np.array([[e_inf]]), e0, np.log(k), np.array([[1.0]]))
    np.testing.assert_allclose(got, (e_inf + k * e0) / (1 + k), rtol=1e-12)
    # the form uses its e0: metric -> 1 - e0 as N -> 0
    form = m4_form(e0=0.8)
    assert form.fixed == {"e0": 0.8}
    params = {"e_inf": 0.1, "beta": 10.0, "c": 0.5, "gamma": 1.0}
    assert abs(form.predict(params, np.array([1e-12]))[0] - 0.2) < 1e-4
    assert form.inverse(params, 0.1) == 0.0  # below the uninformed level: any N


# ---------------------------------------------------------------------- solver
def test_batched_solver_matches_scipy_on_weighted_resample(saturating: pd.DataFrame) -> None:
    data = ScalingData.from_points(saturating)
    form = FORMS["power_floor"]
    fit = fit_form(data, form)
    w, mode = bootstrap_weights(data, 5, seed=3)
    assert mode == "runs"
    lo, hi = form.raw_bounds(data.space)
    resid = data.residual_fn(form)
    res = robust_lm(
        resid, np.repeat(fit.theta[None], 5, axis=0), weights=w, f_scale=fit.f_scale, lower=lo, upper=hi, max_iter=200
    )
    for b in range(5):
        reps = w[b].astype(int)  # materialize the resample: repeated points, unit weights
        idx = np.repeat(np.arange(w.shape[1]), reps)
        sol = least_squares(
            lambda t: resid(t[None])[0][idx],
            fit.theta,
            loss="soft_l1",
            f_scale=fit.f_scale,
            bounds=(lo, hi),
            xtol=1e-14,
            ftol=1e-14,
            gtol=1e-14,
        )
        ours = robust_cost(resid(res.theta[b : b + 1]), w[b : b + 1], fit.f_scale)[0]
        assert ours <= sol.cost * (1 + 1e-6) + 1e-14
        np.testing.assert_allclose(res.theta[b], sol.x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bounded", [True, False])
def test_analytic_jacobians_match_finite_differences(bounded: bool) -> None:
    pts = make_points("m4", CASES["m4"][0], sd=0.005)
    if not bounded:
        pts = pts.assign(metric=pts["metric"] * 10)
    data = ScalingData.from_points(pts, bounded=bounded)
    rng = np.random.default_rng(0)
    for name, form in FORMS.items():
        if form.bounded_only and not bounded:
            continue
        fit = fit_form(data, name, bounded=bounded)
        lo, hi = form.raw_bounds(data.space)
        theta = np.clip(fit.theta + rng.normal(0, 0.3, (10, form.n_params)), lo + 1e-3, hi - 1e-3)
        resid, jac = data.residual_fn(form), data.jacobian_fn(form)
        analytic = jac(theta)
        numeric = np.zeros_like(analytic)
        for j in range(form.n_params):
            h = 1e-6 * np.maximum(1.0, np.abs(theta[:, j]))
            up, dn = theta.copy(), theta.copy()
            up[:, j] += h
            dn[:, j] -= h
            numeric[:, :, j] = (resid(up) - resid(dn)) / (2 * h[:, None])
        assert np.abs(analytic - numeric).max() <= 1e-6 * np.abs(numeric).max(), name


@pytest.mark.parametrize("resample", ["noise", "runs"])
@pytest.mark.parametrize("name", ["m4", "broken_power"])
def test_bootstrap_fits_are_converged_optima(name: str, resample: str) -> None:
    """Warm-started, iteration-capped batched refits reach what scipy reaches from the same start
    (noise bootstrap: on the redrawn observations; run bootstrap: on the repeated points)."""
    pts = make_points(name, CASES[name][0], sd=0.01, runs=3, sizes=np.geomspace(2e4, 1e6, 7), seed=1)
    fit = fit_form(pts, name)
    boot = bootstrap_fit(fit, n_boot=6, seed=2, resample=resample)  # type: ignore[arg-type]
    data, form = fit.data, FORMS[name]
    lo, hi = form.raw_bounds(data.space)
    resid, jac = data.residual_fn(form), data.jacobian_fn(form)
    if resample == "noise":
        assert boot.mode == "noise-replicates" and boot.noise is not None and boot.noise.dof == 14
        offsets = bootstrap_offsets(data, boot.noise, 6, seed=2)
    for b in range(boot.n_boot):
        if resample == "noise":
            idx = np.arange(data.n.size)
            off = offsets[b]
        else:
            idx = np.repeat(np.arange(data.n.size), boot.weights[b].astype(int))
            off = np.zeros(idx.size)
        sol = least_squares(
            lambda t: resid(t[None])[0][idx] - off,
            fit.theta,
            jac=lambda t: jac(t[None])[0][idx],
            loss="soft_l1",
            f_scale=fit.f_scale,
            bounds=(lo, hi),
            xtol=1e-15,
            ftol=1e-15,
            gtol=1e-15,
        )
        assert boot.cost[b] <= sol.cost * (1 + 1e-4) + 1e-12, (b, boot.cost[b], sol.cost)


# ---------------------------------------------------------------------- recovery of known laws
@pytest.mark.parametrize("name", list(CASES))
def test_known_law_recovered(name: str) -> None:
    truth, target = CASES[name]
    form = FORMS[name]
    pts = make_points(name, truth)
    fit = fit_form(pts, name)
    boot = bootstrap_fit(fit, n_boot=200, seed=0)
    assert boot.ok.mean() == 1.0
    cis = boot.param_ci()
    tol = REL_TOL[name]
    for p in form.param_names:
        lo, hi = cis[p]
        half = 0.5 * (hi - lo)
        assert lo <= fit.params[p] <= hi or abs(fit.params[p] - 0.5 * (lo + hi)) <= half + 1e-12
        assert lo - half <= truth[p] <= hi + half, f"{p}: truth {truth[p]} far outside CI [{lo}, {hi}]"
        assert abs(fit.params[p] - truth[p]) <= tol * abs(truth[p]), f"{p}: {fit.params[p]} vs {truth[p]}"
    true_n = form.inverse(truth, target)
    ex = extrapolate(fit, target, bootstrap=boot)
    assert ex.reliable
    assert ex.n_needed_low <= ex.n_needed <= ex.n_needed_high
    assert ex.n_needed_low <= true_n * (1 + tol) and true_n * (1 - tol) <= ex.n_needed_high
    assert abs(ex.n_needed - true_n) <= tol * true_n
    assert ex.p_reachable == 1.0
    assert fit.r2 > 0.99
    if form.has_asymptote:
        assert abs(fit.asymptote - form.asymptote(truth)) < 0.01


def test_bootstrap_without_runs_resamples_points() -> None:
    truth, _ = CASES["log_linear"]
    pts = make_points("log_linear", truth, runs=None, sd=0.002)
    fit = fit_form(pts, "log_linear")
    auto = bootstrap_fit(fit, n_boot=100, seed=1)
    assert auto.mode == "noise-residuals" and auto.noise is not None
    assert auto.noise.dof == len(pts) - 2  # one point per size: the noise comes from the fit's residuals
    boot = bootstrap_fit(fit, n_boot=100, seed=1, resample="points")
    assert boot.mode == "points"
    assert np.all(boot.weights.sum(axis=1) == len(pts))
    assert np.all((boot.weights > 0).sum(axis=1) >= 3)
    lo, hi = boot.param_ci()["b"]
    assert lo < truth["b"] < hi


# ---------------------------------------------------------------------- back-test
def test_backtest_withholds_exactly_the_largest_sizes(saturating: pd.DataFrame) -> None:
    sizes = np.sort(saturating["n"].unique())
    bt = backtest(saturating, "power_floor", holdout=2)
    np.testing.assert_array_equal(bt.train_sizes, sizes[:-2])
    np.testing.assert_array_equal(bt.test_sizes, sizes[-2:])
    assert bt.fit.n_points == int((saturating["n"] <= sizes[-3]).sum())
    assert bt.fit.n_max == sizes[-3]
    # the fit equals a fit on the training points alone
    direct = fit_form(saturating[saturating["n"] <= sizes[-3]], "power_floor")
    for p, v in direct.params.items():
        assert bt.fit.params[p] == pytest.approx(v, rel=1e-9)
    # scrambling the withheld points changes the observed values but not the fit/prediction
    scrambled = saturating.copy()
    held = scrambled["n"] >= sizes[-2]
    scrambled.loc[held, "metric"] = np.random.default_rng(5).uniform(0, 1, int(held.sum()))
    bt2 = backtest(scrambled, "power_floor", holdout=2)
    np.testing.assert_array_equal(bt2.predicted, bt.predicted)
    assert bt2.fit.params == bt.fit.params
    assert not np.allclose(bt2.observed, bt.observed)
    obs = saturating[held].groupby("n")["metric"].mean().to_numpy()
    np.testing.assert_allclose(bt.observed, obs)
    assert bt.error == pytest.approx(np.mean(np.abs(bt.predicted - obs)))
    # while changing a training point does change it (the check can fail)
    moved = saturating.copy()
    moved.loc[moved["n"] == sizes[-3], "metric"] += 0.02
    assert not np.allclose(backtest(moved, "power_floor", holdout=2).predicted, bt.predicted)
    with pytest.raises(ScalingError, match="training sizes"):
        backtest(saturating, "broken_power", holdout=4)


def test_forms_ranked_by_backtest_not_r2(saturating: pd.DataFrame) -> None:
    rep = fit_scaling_laws(saturating, n_boot=50, seed=0)
    tab = rep.table()
    assert list(tab.columns) == list(SCALING_LAW_COLUMNS)
    ranked = tab.dropna(subset=["rank"])
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert ranked["backtest_error"].is_monotonic_increasing
    assert rep.best in ("power_floor", "m4", "broken_power")
    assert rep.ranking[-1] == "linear"  # the Pheno-CA line is the worst predictor of saturating data
    assert rep.best == ranked.iloc[0]["form"]


# ---------------------------------------------------------------------- reliability
@pytest.mark.parametrize("runs", [3, None])
def test_flat_points_give_no_reliable_extrapolation(runs: int | None) -> None:
    if runs is None:
        rng = np.random.default_rng(2)
        pts = pd.DataFrame({"n": np.geomspace(1e4, 1e6, 6), "metric": 0.4 + rng.normal(0, 0.01, 6)})
    else:
        pts = curve_points([0.4] * 6, sd=0.01, runs=runs)
    trend = check_trend(pts)
    assert trend.flat and not trend.reliable
    rep = fit_scaling_laws(pts, n_boot=30, target=0.5, cost_per_compound=100.0)
    tab = rep.table()
    assert not tab["reliable"].any()
    assert tab["flagged"].all()
    assert tab["reason"].str.contains("no reliable extrapolation").all()
    assert tab["reason"].str.contains("flat").all()
    for col in (
        "n_needed",
        "n_needed_low",
        "n_needed_high",
        "p_reachable",
        "cost",
        "cost_low",
        "cost_high",
        "extrapolation_factor",
    ):
        assert tab[col].isna().all(), col


def test_non_monotone_points_give_no_reliable_extrapolation() -> None:
    pts = curve_points([0.30, 0.40, 0.45, 0.50, 0.42, 0.38], sd=0.005)
    trend = check_trend(pts)
    assert trend.non_monotone and not trend.flat and not trend.reliable
    assert trend.max_drop == pytest.approx(0.12, abs=0.02)
    fit = fit_form(pts, "log_linear")
    ex = extrapolate(fit, 0.6)
    assert not ex.reliable and ex.flagged
    assert ex.reason.startswith("no reliable extrapolation") and "non-monotone" in ex.reason
    assert math.isnan(ex.n_needed) and math.isnan(ex.p_reachable) and math.isnan(ex.cost)
    # a genuinely rising curve with the same noise is reliable
    assert check_trend(curve_points([0.30, 0.40, 0.45, 0.50, 0.52, 0.53], sd=0.005)).reliable


# ---------------------------------------------------------------------- reachability and cost
def test_p_reachable_tracks_the_asymptote(saturating: pd.DataFrame) -> None:
    fit = fit_form(saturating, "power_floor")
    boot = bootstrap_fit(fit, n_boot=200, seed=0)
    above = extrapolate(fit, 0.75, bootstrap=boot)  # true asymptote 0.7
    assert above.p_reachable <= 0.02
    assert above.n_needed == math.inf and above.flagged and "unreachable" in above.reason
    below = extrapolate(fit, 0.69, bootstrap=boot)
    assert below.p_reachable >= 0.98
    assert math.isfinite(below.n_needed)
    within = extrapolate(fit, 0.6, bootstrap=boot)
    assert within.p_reachable == 1.0 and within.extrapolation_factor < 1 and not within.flagged


def test_linear_reports_reachability_honestly(saturating: pd.DataFrame) -> None:
    fit = fit_form(saturating, "linear")
    boot = bootstrap_fit(fit, n_boot=100, seed=0)
    hundred = extrapolate(fit, 1.0, bootstrap=boot)  # the paper's "100% accuracy"
    assert math.isfinite(hundred.n_needed) and hundred.p_reachable == 1.0
    assert "no asymptote" in hundred.reason
    assert hundred.flagged and hundred.extrapolation_factor > 3
    over = extrapolate(fit, 1.01, bootstrap=boot)
    assert over.n_needed == math.inf and over.p_reachable == 0.0 and "upper bound 1" in over.reason
    # the asymptotic form on the same data says 100% is out of reach
    pf = fit_form(saturating, "power_floor")
    assert extrapolate(pf, 1.0, bootstrap=bootstrap_fit(pf, n_boot=100)).p_reachable == 0.0


def test_cost_is_n_times_cost_times_replicates(saturating: pd.DataFrame) -> None:
    fit = fit_form(saturating, "power_floor")
    boot = bootstrap_fit(fit, n_boot=100, seed=0)
    ex = extrapolate(fit, 0.68, bootstrap=boot, cost_per_compound=100.0, replicates=5)
    assert ex.cost == pytest.approx(ex.n_needed * 100.0 * 5)
    assert ex.cost_low == pytest.approx(ex.n_needed_low * 500.0)
    assert ex.cost_high == pytest.approx(ex.n_needed_high * 500.0)
    assert ex.extrapolation_factor == pytest.approx(ex.n_needed / 1e6)
    assert ex.flagged == (ex.extrapolation_factor > 3.0)
    none = extrapolate(fit, 0.68, bootstrap=boot)
    assert math.isnan(none.cost)
    with pytest.raises(ScalingError):
        extrapolate(fit, 0.68, replicates=0)


# ---------------------------------------------------------------------- report
def test_report_table_curves_and_determinism(saturating: pd.DataFrame) -> None:
    kw = dict(n_boot=60, target=0.68, cost_per_compound=100.0, replicates=5, seed=7)
    rep = fit_scaling_laws(saturating, **kw)
    tab = rep.table()
    pd.testing.assert_frame_equal(tab, fit_scaling_laws(saturating, **kw).table())
    other = fit_scaling_laws(saturating, **dict(kw, seed=8)).table()
    assert not np.allclose(other["n_needed_low"], tab["n_needed_low"], equal_nan=True)
    assert set(tab["form"]) == set(FORMS) | {AVERAGED}
    np.testing.assert_allclose(tab["cost"], tab["n_needed"] * 500.0)
    avg = tab.set_index("form").loc[AVERAGED]
    forms = tab[tab["form"] != AVERAGED]
    assert pd.isna(avg["rank"]) and avg["weight"] == 1.0
    assert forms["weight"].sum() == pytest.approx(1.0)
    assert json.loads(avg["params"]) == pytest.approx(dict(zip(forms["form"], forms["weight"])))
    assert avg["n_needed_low"] <= avg["n_needed"] <= avg["n_needed_high"]
    # the mixture's interval spans at least the heaviest form's
    heavy = forms.loc[forms["weight"].idxmax()]
    assert avg["n_needed_high"] - avg["n_needed_low"] >= 0.5 * (heavy["n_needed_high"] - heavy["n_needed_low"])
    for _, row in forms.iterrows():
        params = json.loads(row["params"])
        assert set(FORMS[row["form"]].param_names) <= set(params)
        assert set(json.loads(row["params_low"])) == set(FORMS[row["form"]].param_names)
    assert json.loads(tab.set_index("form").loc["m4", "params"])["e0"] == 1.0
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.register("tab", tab)
    con.execute("CREATE TABLE scaling_laws AS SELECT * FROM tab")
    got = con.execute(
        "SELECT form, rank, CAST(json_extract(params, '$.a_inf') AS DOUBLE) FROM scaling_laws "
        "WHERE form = 'power_floor'"
    ).fetchone()
    assert got[0] == "power_floor" and got[2] == pytest.approx(rep.results["power_floor"].fit.params["a_inf"])
    grid = np.geomspace(1e3, 1e7, 25)
    cur = rep.curves(grid)
    assert list(cur.columns) == ["form", "rank", "n", "metric", "metric_low", "metric_high"]
    assert len(cur) == 25 * (len(FORMS) + 1)  # every form and the averaged law
    assert (cur["metric_low"] <= cur["metric_high"]).all()
    pf = cur[(cur["form"] == "power_floor") & (cur["n"] <= 1e6)]
    assert ((pf["metric"] >= pf["metric_low"] - 1e-3) & (pf["metric"] <= pf["metric_high"] + 1e-3)).all()


def test_report_unbounded_metric_and_unfittable_form() -> None:
    truth = {"a_inf": 7.0, "A": 20.0, "alpha": 0.3}  # e.g. a score on a 0-10 scale
    pts = make_points("power_floor", truth, sd=0.03, sizes=np.geomspace(1e3, 1e6, 4))
    rep = fit_scaling_laws(pts, n_boot=40, bounded=False, target=6.8)
    tab = rep.table().set_index("form")
    assert "m4" not in tab.index
    assert tab.loc["power_floor", "asymptote"] == pytest.approx(7.0, abs=0.1)
    assert pd.isna(tab.loc["broken_power", "rank"]) and "needs >= 5" in tab.loc["broken_power", "reason"]
    assert pd.isna(tab.loc["broken_power", "n_needed"])
    assert not pd.isna(tab.loc["power_floor", "rank"])  # 3 training sizes suffice for 3 parameters
    assert tab.loc["power_floor", "p_reachable"] == 1.0


def test_default_report_with_1000_resamples() -> None:
    """The production setting (n_boot=1000) on a 7-size, 3-run zoo; no timing asserted here
    (bench/bench_scaling_fit.py times it)."""
    truth = CASES["m4"][0]
    pts = make_points("m4", truth, sd=0.005, runs=3, sizes=np.geomspace(1e4, 1e6, 7), seed=4)
    rep = fit_scaling_laws(pts, target=0.75, cost_per_compound=100.0, replicates=5)
    tab = rep.table()
    assert (tab["n_boot"] == 1000).all()
    assert (tab["boot_ok"] >= 0.99).all()
    assert (tab["resample"] == "noise-replicates").all()
    assert tab["reliable"].all()


def _phenoca_rows() -> pd.DataFrame:
    """IBP MoA rows of a phenoca_results table at three OOD keys (2,500 annotated molecules)."""
    base = {"dataset": "d", "task": "moa", "split": "replicate", "metric": "top10", "probe": "mlp3", "n_train_wells": 9}
    rows = []
    for frac, ood in (("ood0", 0), ("ood1", 1_135), ("100", 113_508)):
        for sup in ("ibp", "task"):
            rows.append(
                {
                    **base,
                    "fraction": frac,
                    "supervision": sup,
                    "model": f"{sup}_d1_w128",
                    "params": 1e4,
                    "n_train_compounds": 2_500 + ood,
                    "n_ood_compounds": ood,
                    "value": 0.5,
                }
            )
    return pd.DataFrame(rows)


def test_phenoca_points_ood_axis_counts_training_or_ood_molecules() -> None:
    from moa_core.scaling.studies import phenoca_points

    res = _phenoca_rows()
    ood = phenoca_points(res).query("study == 'phenoca_ood'")
    assert ood["family"].unique().tolist() == ["IBP"]  # task-supervised models never see the OOD molecules
    assert ood["n"].tolist() == [2_500.0, 3_635.0, 116_008.0]
    by_ood = phenoca_points(res, ood_x="ood_molecules").query("study == 'phenoca_ood'")
    assert by_ood["n"].tolist() == [1_135.0, 113_508.0]  # ood0 has no OOD molecule: no place on a log axis
    assert by_ood["n"].max() / by_ood["n"].min() > 100  # two decades, where the training molecules span 46x
    # the replicate study is unaffected by the OOD x
    rep = phenoca_points(res, ood_x="ood_molecules").query("study == 'phenoca_replicates'")
    assert len(rep) == 2 and rep["n"].eq(9.0).all()
    with pytest.raises(ScalingError, match="ood_x"):
        phenoca_points(res, ood_x="wells")
