"""Simulation study of the scaling-law intervals: do they hold the truth as often as they claim?

Draws noisy points from *known* saturating laws (:data:`TRUE_LAWS`) at ``sizes``, fits them
with :func:`moa_core.scaling.fit_scaling_laws` exactly as the pipeline does, and asks, for a
target that the true law reaches at ``factor`` times the largest observed size: does each
reported interval of "N needed" contain the true N (``factor * n_max``)? and how far off is
the point estimate? The *coverage* of a nominal ``level`` interval is the share of trials whose
interval contains the truth; a calibrated interval has coverage ~= ``level``.

Methods scored per trial (:func:`score_report`): every law form's own interval, ``top`` (the
form the back-test ranks first - what a user reading the first row gets) and ``averaged``
(:data:`moa_core.scaling.averaging.AVERAGED`, the back-test-weighted mixture over forms).
A trial whose method gives no interval (too few replicates, see
:func:`moa_core.scaling.fit.bootstrap_offsets`) counts under ``no_interval`` and not in the
coverage, so the table says how often there was an interval at all.

No other library runs this study; it mirrors the design of Alabdulmohsin et al. (2022) and
Caballero et al. (2022), who score scaling-law forms by extrapolation error on withheld sizes,
extended to interval coverage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .averaging import AVERAGED, averaged_n_needed
from .fit import interval
from .forms import FORMS
from .report import ScalingReport, fit_scaling_laws

TRUE_LAWS: dict[str, tuple[str, dict[str, float]]] = {
    "power_floor": ("power_floor", {"a_inf": 0.8, "A": 3.0, "alpha": 0.35}),
    "m4": ("m4", {"e_inf": 0.35, "beta": 40.0, "c": 0.45, "gamma": 1.2}),
    "broken_power": ("broken_power", {"a_inf": 0.85, "A": 1.2, "alpha0": 0.1, "alpha1": 0.3, "d1": 800.0}),
    "log_linear": ("log_linear", {"a": -0.3, "b": 0.25}),
}
"""Known laws, as (form, natural parameters), on sizes ``DEFAULT_SIZES``: each rises by ~0.2-0.45
over the data (like Pheno-CA's MoA accuracy, 0.15 -> 0.6) and keeps rising past it. ``log_linear``
never saturates (within the study's range), so forms with an asymptote are wrong for it;
``broken_power`` bends inside the data."""

DEFAULT_SIZES: tuple[float, ...] = tuple(float(x) for x in np.geomspace(100.0, 4000.0, 6))
"""Six sizes over 1.6 decades, as the issue's study and a Pheno-CA zoo of six data scales."""


def simulate_points(
    law: str,
    *,
    sizes: Sequence[float] = DEFAULT_SIZES,
    runs: int = 3,
    noise_sd: float = 0.01,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Points ``n, metric, run`` from the true law ``law`` plus iid Gaussian noise of ``noise_sd``
    per (size, run), clipped to [0, 1]."""
    form, params = TRUE_LAWS[law]
    n = np.asarray(sizes, dtype=np.float64)
    mu = np.asarray(FORMS[form].predict(params, n), dtype=np.float64)
    metric = np.clip(mu[None, :] + rng.normal(0.0, noise_sd, size=(runs, n.size)), 0.0, 1.0)
    return pd.DataFrame({"n": np.tile(n, runs), "metric": metric.ravel(), "run": np.repeat(np.arange(runs), n.size)})


def true_target(law: str, n: float) -> float:
    """The true law's metric at size ``n`` (the target whose N needed is ``n``)."""
    form, params = TRUE_LAWS[law]
    return float(np.asarray(FORMS[form].predict(params, np.array([n], dtype=np.float64)))[0])


def score_report(
    report: ScalingReport, law: str, factors: Iterable[float], levels: Iterable[float]
) -> list[dict[str, object]]:
    """One row per (factor, method, level): ``covered`` (None when no interval), the interval's
    width in decades, the point estimate's error as ``log10(n_hat / n_true)`` and whether the
    method gave an interval at all (``has_interval``)."""
    n_max = float(report.points["n"].max())
    rows: list[dict[str, object]] = []
    for factor in factors:
        n_true = factor * n_max
        target = true_target(law, n_true)
        methods: dict[str, tuple[float, np.ndarray | None, np.ndarray | None]] = {}
        for name, r in report.results.items():
            if r.fit is None:
                continue
            n_hat = float(r.form.inverse(r.fit.params, target))
            samples = None
            if r.bootstrap is not None and r.bootstrap.ok.any():
                samples = np.asarray(r.form.inverse(r.bootstrap.good, target), dtype=np.float64)
            methods[name] = (n_hat, samples, None)
        if report.best is not None and report.best in methods:
            methods["top"] = methods[report.best]
        for level in levels:
            for name, (n_hat, samples, _) in methods.items():
                lo, hi = interval(samples, level) if samples is not None else (math.nan, math.nan)
                rows.append(_row(factor, name, level, n_hat, lo, hi, n_true))
            avg = averaged_n_needed(report, target, level)
            rows.append(_row(factor, AVERAGED, level, avg.n_needed, avg.low, avg.high, n_true))
    return rows


def _row(factor: float, method: str, level: float, n_hat: float, lo: float, hi: float, n_true: float) -> dict:
    has = not (math.isnan(lo) or math.isnan(hi))
    width = math.log10(hi / lo) if has and math.isfinite(hi) and lo > 0 else (math.inf if has else math.nan)
    err = math.log10(n_hat / n_true) if n_hat > 0 and math.isfinite(n_hat) else math.inf
    return {
        "factor": float(factor),
        "method": method,
        "level": float(level),
        "has_interval": has,
        "covered": (lo <= n_true <= hi) if has else None,
        "width_decades": width,
        "log10_error": err,
    }


@dataclass(frozen=True)
class StudyGrid:
    """The settings of a calibration study (every combination is run ``trials`` times)."""

    laws: tuple[str, ...] = tuple(TRUE_LAWS)
    noise_sds: tuple[float, ...] = (0.005, 0.01, 0.02)
    runs: tuple[int, ...] = (1, 2, 3, 5)
    factors: tuple[float, ...] = (2.0, 5.0, 10.0, 30.0)
    levels: tuple[float, ...] = (0.8, 0.95)
    trials: int = 8
    sizes: tuple[float, ...] = DEFAULT_SIZES
    n_boot: int = 200
    resample: str = "auto"
    """The bootstrap scored (:func:`moa_core.scaling.bootstrap_fit`): ``auto`` (the parametric
    noise bootstrap) or the case-resampling ``runs`` it replaced (needs >= 2 runs)."""

    def settings(self) -> list[tuple[str, float, int]]:
        runs = [r for r in self.runs if self.resample != "runs" or r >= 2]
        return [(law, sd, r) for law in self.laws for sd in self.noise_sds for r in runs]


def run_setting(grid: StudyGrid, law: str, noise_sd: float, runs: int, *, seed: int = 0) -> pd.DataFrame:
    """All trials of one (law, noise, runs) setting; deterministic for ``seed``."""
    key = [seed, list(TRUE_LAWS).index(law), int(round(noise_sd * 1e4)), runs]
    rng = np.random.default_rng(key)
    rows = []
    for trial in range(grid.trials):
        pts = simulate_points(law, sizes=grid.sizes, runs=runs, noise_sd=noise_sd, rng=rng)
        report = fit_scaling_laws(pts, n_boot=grid.n_boot, seed=trial, resample=grid.resample)  # type: ignore[arg-type]
        for row in score_report(report, law, grid.factors, grid.levels):
            rows.append({"law": law, "noise_sd": noise_sd, "runs": runs, "trial": trial, **row})
    return pd.DataFrame(rows)


def coverage_table(rows: pd.DataFrame, by: Sequence[str] = ("runs", "factor", "method", "level")) -> pd.DataFrame:
    """Coverage (share of trials with an interval whose interval holds the truth), the share of
    trials with an interval, the median width in decades and the median |log10 error| of the
    point estimate, per group ``by``."""
    g = rows.groupby(list(by), sort=True)
    out = g.agg(
        trials=("covered", "size"),
        with_interval=("has_interval", "mean"),
        median_width_decades=("width_decades", "median"),
        median_abs_log10_error=("log10_error", lambda x: float(np.median(np.abs(x)))),
    )
    cov = rows[rows["has_interval"]].assign(covered=lambda d: d["covered"].astype(float))
    out["coverage"] = cov.groupby(list(by), sort=True)["covered"].mean()
    return out.reset_index()
