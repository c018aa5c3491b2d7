"""The forecast ledger: a fit's predictions above its data, kept, and scored when a larger scale arrives."""

import math

import numpy as np
import pandas as pd
import pytest

from moa_core.scaling import AVERAGED, ScalingError, ledger
from moa_core.scaling.studies import curve_points, fit_curve_reports, next_scales

SIZES = [100, 200, 400, 800, 1600, 3200, 6400]
KEY = {"dataset": "d", "study": "mp_fractions", "task": "knn_f1", "family": "MP"}


def _law(n):
    return 0.9 - 0.8 * np.asarray(n, dtype=float) ** -0.3


def _points(sizes, runs=3, sd=0.01, seed=0):
    rng = np.random.default_rng(seed)
    rows = [
        KEY | {"n": float(n), "metric": float(_law(n) + rng.normal(0, sd)), "run": f"seed{s}", "model_size": np.nan}
        for n in sizes
        for s in range(runs)
    ]
    return pd.DataFrame(rows)


def _forecast(points, **kw):
    fitted = fit_curve_reports(points, n_boot=200)
    return ledger.forecasts([(k, p, r) for k, p, r in fitted], made_at="2026-01-01T00:00:00Z", **kw), fitted


def _curves(fitted):
    return pd.concat([p.assign(**{c: str(k[c]) for c in ledger.KEY_COLUMNS}) for k, p, _ in fitted], ignore_index=True)


@pytest.fixture(scope="module")
def scored():
    pts = _points(SIZES)
    early, _ = _forecast(pts[pts["n"] <= 1600], next_scales={("mp_fractions", "knn_f1"): {"100": 3200.0, "25": 50.0}})
    late, fitted = _forecast(pts)
    stored = ledger.merge_forecasts(early, late)
    return early, late, stored, ledger.score_forecasts(stored, _curves(fitted))


def test_fit_id_is_the_data_not_the_order():
    pts = _points(SIZES[:4])
    assert ledger.fit_id(KEY, pts) == ledger.fit_id(KEY, pts.sample(frac=1, random_state=1))
    moved = pts.copy()
    moved.loc[0, "metric"] += 1e-6
    assert ledger.fit_id(KEY, moved) != ledger.fit_id(KEY, pts)
    assert ledger.fit_id(KEY | {"family": "CP"}, pts) != ledger.fit_id(KEY, pts)


def test_forecast_sizes_are_the_grid_above_the_data_and_the_next_scales():
    s = ledger.forecast_sizes(1000.0, {"100": 4000.0, "10": 200.0})
    grid = s[s["scale"] == ""]["n"].to_numpy()
    assert len(grid) == ledger.DECADES * ledger.PER_DECADE
    assert grid.min() > 1000 and grid.max() == pytest.approx(1000 * 10**ledger.DECADES)
    assert list(s[s["scale"] != ""]["scale"]) == ["100"]  # a scale below the data is no forecast
    assert s["n"].is_monotonic_increasing
    with pytest.raises(ScalingError):
        ledger.forecast_sizes(0.0)


def test_every_form_and_the_average_forecast_with_predictive_intervals(scored):
    early, _, _, _ = scored
    assert {AVERAGED, "power_floor", "log_linear"} <= set(early["form"])
    assert (early["n"] > early["n_max_observed"]).all()
    assert np.allclose(early["decades"], np.log10(early["n"] / early["n_max_observed"]))
    assert (early["metric_low"] <= early["metric"] + 1e-9).all() and (
        early["metric"] <= early["metric_high"] + 1e-9
    ).all()
    # a predictive interval holds the next point's noise: wider than the mean curve's band near the data
    rep = fit_curve_reports(_points(SIZES)[lambda d: d["n"] <= 1600], n_boot=200)[0][2]
    lo, hi = rep.results["power_floor"].bootstrap.band(np.array([2000.0]))
    f = early[(early["form"] == "power_floor")].sort_values("n").iloc[0]
    assert f["metric_high"] - f["metric_low"] > hi[0] - lo[0]
    assert early[early["scale"] == "100"]["n"].eq(3200.0).all()


def test_later_points_score_the_early_forecasts(scored):
    early, late, stored, led = scored
    assert set(stored["fit_id"]) == set(early["fit_id"]) | set(late["fit_id"])  # the record is kept
    assert set(led["fit_id"]) == set(early["fit_id"])  # the latest fit has nothing above its data yet
    assert set(led["n"]) == {3200.0, 6400.0}
    obs = _points(SIZES).groupby("n")["metric"].mean()
    for r in led.itertuples():
        assert r.observed == pytest.approx(obs[r.n])
        assert r.error == pytest.approx(r.predicted - r.observed)
        assert r.inside == (r.low <= r.observed <= r.high)
    exact = led[(led["n"] == 3200.0)]
    assert (exact["scale"] == "100").all()  # read at the catalogue scale's own forecast, not interpolated
    avg = led[led["form"] == AVERAGED]
    # a known law, 3 runs: the average is close and holds the next scale (2x); at 4x the noise can carry the point out
    assert (avg["abs_error"] < 0.04).all() and bool(avg[avg["n"] == 3200.0]["inside"].iloc[0])
    line = led[led["form"] == "linear"]
    assert not line["inside"].any() and (line["abs_error"] > avg["abs_error"].max()).all()  # Pheno-CA's line: far off
    rec = ledger.ledger_record(led).set_index("form")
    assert rec.loc[AVERAGED, "scored"] == 2 and rec.loc[AVERAGED, "coverage"] >= 0.5
    assert rec.loc["linear", "coverage"] == 0.0
    assert rec.loc[AVERAGED, "max_decades"] == pytest.approx(math.log10(6400 / 1600))


def test_between_forecast_sizes_the_prediction_is_interpolated_in_log_n():
    pts = _points(SIZES[:5])
    fc, fitted = _forecast(pts)
    f = fc[fc["form"] == "log_linear"].sort_values("n")
    a, b = f.iloc[2], f.iloc[3]
    n_mid = math.sqrt(a["n"] * b["n"])
    later = _curves(fitted)
    later = pd.concat([later, later.iloc[:1].assign(n=n_mid, metric=0.5)], ignore_index=True)
    led = ledger.score_forecasts(fc, later)
    row = led[led["form"] == "log_linear"].iloc[0]
    assert row["predicted"] == pytest.approx((a["metric"] + b["metric"]) / 2)
    assert row["low"] == pytest.approx((a["metric_low"] + b["metric_low"]) / 2)


def test_refitting_the_same_data_replaces_its_forecasts():
    pts = _points(SIZES[:4])
    a, _ = _forecast(pts)
    b, _ = _forecast(pts)
    assert len(ledger.merge_forecasts(a, b)) == len(b)
    with pytest.raises(ScalingError, match="schema drift"):
        ledger.merge_forecasts(a.drop(columns=["metric_low"]), b)


def test_one_run_per_size_forecasts_without_an_interval_and_says_why():
    pts = _points(SIZES[:3], runs=1)
    fc, fitted = _forecast(pts)
    assert not fc.empty
    assert fc["metric_low"].isna().all() and fc["reason"].str.startswith("no interval").all()
    later = pd.concat([_curves(fitted), _curves(fitted).iloc[:1].assign(n=fc["n"].min(), metric=0.6)])
    led = ledger.score_forecasts(fc, later)
    assert not led.empty and led["inside"].isna().all() and led["error"].notna().all()


def test_a_flat_curve_forecasts_but_is_marked_unreliable():
    pts = _points(SIZES[:5]).assign(metric=lambda d: 0.5 + np.random.default_rng(2).normal(0, 0.01, len(d)))
    fc, _ = _forecast(pts)
    assert not fc.empty and not fc["reliable"].any()


def test_curve_points_keep_seeds_and_take_a_zoos_envelope():
    seeds = _points(SIZES[:3])
    assert len(curve_points(seeds)) == len(seeds)  # seeds of one model are replicates
    zoo = pd.DataFrame(
        {
            "n": [10.0, 10.0, 20.0, 20.0],
            "metric": [0.1, 0.3, 0.2, 0.4],
            "run": ["small", "big", "small", "big"],
            "model_size": [1.0, 2.0, 1.0, 2.0],
        }
    )
    assert curve_points(zoo)["metric"].tolist() == [0.3, 0.4]
    assert curve_points(zoo, "largest")["metric"].tolist() == [0.3, 0.4]
    with pytest.raises(ScalingError):
        curve_points(zoo, "mean")


def test_next_scales_are_the_sizes_above_each_curve():
    pts = _points(SIZES[:3])
    got = next_scales(pts, {"mp_fractions": {"100": 800.0, "50": 400.0, "25": 200.0}, "other": {"x": 1e9}})
    assert got == {("mp_fractions", "knn_f1"): {"100": 800.0}}


def test_phenoca_scale_sizes_put_each_split_s_counts_on_its_studies_axes():
    from moa_core.scaling.studies import phenoca_scale_sizes

    counts = pd.DataFrame(
        [
            {"fraction": f, "split": s, "n_train_wells": w, "n_train_compounds": c, "n_ood_compounds": o}
            for f, s, w, c, o in [
                ("ood25", "replicate", 900, 300, 50),
                ("100", "replicate", 2000, 450, 200),
                ("50", "replicate", 1100, 450, 200),
                ("100", "novel", 1500, 400, 200),
                ("ood0", "novel", 700, 200, 0),
            ]
        ]
    )
    sizes = phenoca_scale_sizes(counts)
    # the OOD axis counts training molecules, the replicate axis training wells; each task takes its split's counts
    assert sizes[("phenoca_ood", "moa_top10")] == {"ood25": 300.0, "100": 450.0}
    assert sizes[("phenoca_ood", "moa_top10_novel")] == {"100": 400.0, "ood0": 200.0}
    assert sizes[("phenoca_replicates", "moa_top10")] == {"100": 2000.0, "50": 1100.0}
    assert ("phenoca_ood", "molecule_top10") not in sizes  # molecule deconvolution: replicate axis only
    assert sizes[("phenoca_replicates", "molecule_top10")] == {"100": 2000.0, "50": 1100.0}
    assert "ood0" not in phenoca_scale_sizes(counts, ood_x="ood_molecules")[("phenoca_ood", "moa_top10_novel")]
    # (study, task) sizes take precedence over a study's; the scales above each curve's largest N are kept
    pts = pd.DataFrame(
        {"study": "phenoca_ood", "task": "moa_top10", "family": "IBP", "n": [100.0, 300.0], "metric": 0.5, "run": "a"}
    )
    assert next_scales(pts, {"phenoca_ood": {"x": 1e9}, **sizes}) == {("phenoca_ood", "moa_top10"): {"100": 450.0}}
