"""Form uncertainty: average the law forms by how well each predicted the withheld sizes.

Which form a scaling law has is the largest source of extrapolation error, and a single form's
bootstrap interval leaves it out. This module gives the *averaged* law (:data:`AVERAGED`):

*Weights* (:func:`backtest_weights`): pseudo-BMA weights (Yao et al. 2018, "Using stacking to
average Bayesian predictive distributions", sec. 3.1) from the back-test - each form fitted on the
smaller sizes predicts the withheld ones, and its weight is proportional to the Gaussian
predictive density of what was observed there,
``w_f ~ prod_i N(obs_i; pred_fi, tau_fi^2)``, with ``tau_fi^2 = s^2 / c_i + v_fi``: the noise
of the withheld mean (``s``: the trend check's per-point noise, ``c_i`` points at withheld size
``i``) plus the back-test fit's own prediction variance there (:func:`prediction_sd`, the delta
method). Forms that predict within their predictive SD share the weight; a form that misses by
several ``tau`` gets ~0, and a sloppy form that "predicts" only by being vague pays through the
density's normalization.
Without any back-test (too few sizes) every fitted form gets the same weight: the data cannot
tell the forms apart, and the interval says so by being wide.

*Averaged interval* (:func:`averaged_n_needed`, :func:`averaged_band`): the weighted mixture of
the forms' bootstrap distributions (each resample of form ``f`` carries ``w_f / B_f``), read off
by weighted quantiles (order statistics, so an unreachable ``inf`` stays ``inf``). The point
value is the weighted median of the forms' point fits. Forms without bootstrap fits are left
out of the mixture and the weights renormalized; with none, there is no interval.

Deliberately not stacking (optimizing the mixture's log score over the withheld points): with one
or two withheld sizes the stacking weights overfit to a single point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .forms import FloatArray

if TYPE_CHECKING:  # pragma: no cover
    from .fit import FitResult
    from .report import ScalingReport

AVERAGED = "averaged"
"""The ``form`` name of the back-test-weighted average over the law forms."""


def weighted_quantile(values: FloatArray, weights: FloatArray, qs: FloatArray) -> FloatArray:
    """Quantiles ``qs`` of the discrete distribution putting ``weights`` on ``values`` (along the
    first axis; NaN values dropped per column): the smallest value whose cumulative weight
    reaches ``q`` (inverted CDF, so ``inf`` is returned, never interpolated)."""
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    qs = np.atleast_1d(np.asarray(qs, dtype=np.float64))
    squeeze = v.ndim == 1
    if squeeze:
        v = v[:, None]
    out = np.full((qs.size, v.shape[1]), np.nan)
    for j in range(v.shape[1]):
        col = v[:, j]
        keep = ~np.isnan(col) & (w > 0)
        if not keep.any():
            continue
        order = np.argsort(col[keep], kind="stable")
        vals, cw = col[keep][order], np.cumsum(w[keep][order])
        cw = cw / cw[-1]
        idx = np.minimum(np.searchsorted(cw, qs - 1e-12, side="left"), vals.size - 1)
        out[:, j] = vals[idx]
    return out[:, 0] if squeeze else out


def _pred_grad(fit: FitResult, n: FloatArray) -> FloatArray:
    """d metric / d raw theta (k, P) of ``fit`` at sizes ``n`` (analytic, else central differences)."""
    form, space = fit.form, fit.data.space
    log_x = np.log(np.asarray(n, dtype=np.float64) / space.n_ref)
    theta = fit.theta[None, :]
    out = form.raw_jacobian(theta, space, log_x)
    if out is not None:
        return np.asarray(out[1][0], dtype=np.float64)
    log_n = np.log(np.asarray(n, dtype=np.float64))
    cols = []
    for j in range(theta.shape[1]):
        h = 1e-6 * max(1.0, abs(float(theta[0, j])))
        up, dn = theta.copy(), theta.copy()
        up[0, j] += h
        dn[0, j] -= h
        f_up = form._predict(form.to_natural(up, space), log_n)[0]
        f_dn = form._predict(form.to_natural(dn, space), log_n)[0]
        cols.append((f_up - f_dn) / (2 * h))
    return np.stack(cols, axis=1)


def prediction_sd(fit: FitResult, n: FloatArray, noise_sd: float) -> FloatArray:
    """Delta-method SD of ``fit``'s prediction at sizes ``n``: ``sqrt(g^T (J^T J)^+ g) * noise_sd``
    with ``J`` the metric's Jacobian at the fitted points (homoscedastic Gaussian noise, the
    robust loss linearized away); a sloppy fit (near-singular ``J^T J``) gets a large SD."""
    with np.errstate(all="ignore"):
        jac = _pred_grad(fit, fit.data.n)
        g = _pred_grad(fit, n)
        cov = np.linalg.pinv(jac.T @ jac, rcond=1e-12)
        var = np.einsum("kp,pq,kq->k", g, cov, g)
    return np.sqrt(np.where(np.isfinite(var), np.maximum(var, 0.0), np.inf)) * noise_sd


def backtest_weights(report: ScalingReport) -> dict[str, float]:
    """Pseudo-BMA weight of every fitted form (summing to 1; see the module docstring)."""
    fitted = [name for name, r in report.results.items() if r.fit is not None]
    if not fitted:
        return {}
    tested = [name for name in fitted if report.results[name].backtest is not None]
    if not tested:
        return {name: 1.0 / len(fitted) for name in fitted}
    s = float(report.trend.noise_sd)
    sizes, counts = np.unique(report.points["n"].to_numpy(np.float64), return_counts=True)
    log_w = {}
    for name in tested:
        bt = report.results[name].backtest
        assert bt is not None
        c_test = counts[np.searchsorted(sizes, bt.test_sizes)]
        tau2 = s**2 / c_test + prediction_sd(bt.fit, bt.test_sizes, s) ** 2
        tau2 = np.maximum(tau2, 1e-300)
        z2 = (np.asarray(bt.predicted) - np.asarray(bt.observed)) ** 2 / tau2
        lp = -0.5 * (z2 + np.log(2.0 * math.pi * tau2))
        log_w[name] = float(np.sum(lp)) if np.isfinite(lp).all() else -math.inf
    top = max(log_w.values())
    if not math.isfinite(top):
        return {name: 1.0 / len(fitted) for name in fitted}
    raw = {name: math.exp(v - top) for name, v in log_w.items()}
    total = sum(raw.values())
    return {name: raw.get(name, 0.0) / total for name in fitted}


@dataclass(frozen=True)
class AveragedEstimate:
    """The averaged ``n_needed`` (weighted median of the forms' point fits), its interval
    (``low``/``high``, NaN when no form has bootstrap fits), ``p_reachable`` (weighted) and the
    weights used."""

    n_needed: float
    low: float
    high: float
    p_reachable: float
    weights: dict[str, float]

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))


def _mixture(report: ScalingReport, weights: dict[str, float]) -> list[tuple[str, float]]:
    """(form, weight) of the forms with bootstrap fits, renormalized."""
    have = [
        (name, w)
        for name, w in weights.items()
        if w > 0 and (b := report.results[name].bootstrap) is not None and b.ok.any()
    ]
    total = sum(w for _, w in have)
    return [(name, w / total) for name, w in have] if total > 0 else []


def averaged_n_needed(report: ScalingReport, target: float, ci: float | None = None) -> AveragedEstimate:
    """The averaged law's ``N`` needed for ``target`` with its ``ci`` interval (default: the report's)."""
    ci = report.ci if ci is None else ci
    weights = backtest_weights(report)
    nan = float("nan")
    if not weights:
        return AveragedEstimate(nan, nan, nan, nan, weights)
    over = report.bounded and target > 1.0
    fits = {k: report.results[k].fit for k in weights}
    points = np.array([math.inf if over else float(f.form.inverse(f.params, target)) for f in fits.values() if f])
    n_hat = float(weighted_quantile(points, np.array(list(weights.values())), np.array([0.5]))[0])
    mix = _mixture(report, weights)
    if not mix:
        return AveragedEstimate(n_hat, nan, nan, nan, weights)
    vals, wts, reach = [], [], 0.0
    for name, w in mix:
        r = report.results[name]
        good = r.bootstrap.good  # type: ignore[union-attr]
        s = np.full(good.shape[0], np.inf) if over else np.asarray(r.form.inverse(good, target), dtype=np.float64)
        vals.append(s)
        wts.append(np.full(s.size, w / s.size))
        if not over:
            ok = r.form.asymptote(good) > target if r.form.has_asymptote else r.form.increasing(good)
            reach += w * float(np.mean(np.asarray(ok)))
    a = (1.0 - ci) / 2.0
    lo, hi = weighted_quantile(np.concatenate(vals), np.concatenate(wts), np.array([a, 1.0 - a]))
    return AveragedEstimate(n_hat, float(lo), float(hi), reach, weights)


def averaged_band(
    report: ScalingReport, n: FloatArray, ci: float | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The averaged curve at sizes ``n`` (weighted median of the forms' point curves) and its
    pointwise ``ci`` band from the weighted mixture of bootstrap curves (NaN without any)."""
    ci = report.ci if ci is None else ci
    n = np.atleast_1d(np.asarray(n, dtype=np.float64))
    weights = backtest_weights(report)
    nan = np.full(n.shape, np.nan)
    if not weights:
        return nan, nan, nan
    with np.errstate(all="ignore"):
        curves = np.vstack([np.asarray(report.results[k].fit.predict(n)) for k in weights])  # type: ignore[union-attr]
    mid = weighted_quantile(curves, np.array(list(weights.values())), np.array([0.5]))[0]
    mix = _mixture(report, weights)
    if not mix:
        return mid, nan, nan
    vals, wts = [], []
    for name, w in mix:
        r = report.results[name]
        with np.errstate(all="ignore"):
            c = np.asarray(r.form.predict(r.bootstrap.good, n), dtype=np.float64)  # type: ignore[union-attr]
        vals.append(c)
        wts.append(np.full(c.shape[0], w / c.shape[0]))
    a = (1.0 - ci) / 2.0
    lo, hi = weighted_quantile(np.vstack(vals), np.concatenate(wts), np.array([a, 1.0 - a]))
    return mid, lo, hi
