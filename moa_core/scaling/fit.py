"""Validate points, fit one form, bootstrap it, back-test it, check the trend and extrapolate.

Each step is a separate public function; :func:`moa_core.scaling.fit_scaling_laws` composes them.
See the package docstring for the definitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import least_squares

from .errors import ScalingError
from .forms import FitSpace, FloatArray, LawForm, StartData, get_form
from .solver import robust_cost, robust_lm

ERROR_FLOOR = 1e-4
"""Below this error (metric within 1e-4 of 1) ``log`` is continued linearly, so residuals stay
finite (and keep a gradient) for a metric of exactly 1 and for curves that overshoot 1."""

DEFAULT_F_SCALE = 0.05
"""Soft-L1 scale in residual units (log error for bounded metrics): residuals below it are
penalized quadratically, larger ones linearly."""

Resample = Literal["auto", "noise", "runs", "points"]

_LOG_FLOOR = math.log(ERROR_FLOOR)


def safe_log_error(metric: FloatArray) -> FloatArray:
    """``log(1 - metric)``, continued linearly (C1) below :data:`ERROR_FLOOR`."""
    e = 1.0 - np.asarray(metric, dtype=np.float64)
    with np.errstate(all="ignore"):
        linear = _LOG_FLOOR + (e - ERROR_FLOOR) / ERROR_FLOOR
        return np.where(e > ERROR_FLOOR, np.log(np.maximum(e, ERROR_FLOOR)), linear)


# ---------------------------------------------------------------------- validation
def validate_points(points: pd.DataFrame, *, bounded: bool = True) -> pd.DataFrame:
    """Check a points table and return a clean copy (columns ``n``, ``metric`` [, ``run``,
    ``model_size``], sorted by ``n``).

    Raises :class:`ScalingError` for: a non-DataFrame or missing ``n``/``metric``; non-numeric,
    NaN or infinite ``n``/``metric``/``model_size``; missing ``run`` ids; ``n <= 0``; a metric
    outside [0, 1] when ``bounded``; more than one ``model_size`` (fit one model family at a
    time, or reduce with :func:`best_of_zoo`); fewer than three distinct sizes.
    """
    if not isinstance(points, pd.DataFrame):
        raise ScalingError(f"points must be a pandas DataFrame, got {type(points).__name__}")
    missing = [c for c in ("n", "metric") if c not in points.columns]
    if missing:
        raise ScalingError(f"points lack column(s) {missing}; have {list(points.columns)}")
    cols = [c for c in ("n", "metric", "run", "model_size") if c in points.columns]
    out = points[cols].copy()
    for col in [c for c in ("n", "metric", "model_size") if c in cols]:
        try:
            out[col] = pd.to_numeric(out[col], errors="raise").astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise ScalingError(f"column {col!r} must be numeric: {exc}") from None
        bad = ~np.isfinite(out[col].to_numpy())
        if bad.any():
            rows = out.index[bad][:5].tolist()
            raise ScalingError(f"column {col!r} has {int(bad.sum())} NaN/inf value(s) (rows {rows})")
    if "run" in cols and out["run"].isna().any():
        raise ScalingError(f"column 'run' has {int(out['run'].isna().sum())} missing id(s)")
    if (out["n"] <= 0).any():
        raise ScalingError(f"data size n must be > 0; got min n = {out['n'].min():g}")
    if bounded and ((out["metric"] < 0) | (out["metric"] > 1)).any():
        lo, hi = out["metric"].min(), out["metric"].max()
        raise ScalingError(
            f"bounded metric must lie in [0, 1]; got range [{lo:g}, {hi:g}] (pass bounded=False for an "
            "unbounded metric)"
        )
    if "model_size" in cols:
        if (out["model_size"] <= 0).any():
            raise ScalingError("model_size must be > 0")
        if out["model_size"].nunique() > 1:
            raise ScalingError(
                f"points mix {out['model_size'].nunique()} model sizes; fit one model family at a time "
                "or reduce them with best_of_zoo()"
            )
    k = out["n"].nunique()
    if k < 3:
        raise ScalingError(f"need at least 3 distinct data sizes to fit a scaling law, got {k}")
    sort_cols = ["n", "run"] if "run" in cols else ["n"]
    try:
        out = out.sort_values(sort_cols, kind="mergesort")
    except TypeError:
        out = out.sort_values("n", kind="mergesort")
    return out.reset_index(drop=True)


def best_of_zoo(points: pd.DataFrame) -> pd.DataFrame:
    """Pheno-CA's "best of the zoo" envelope: per ``n`` (and ``run``), the best metric over
    ``model_size``. Note: a maximum over noisy models is biased upward and its bias grows with
    the zoo size at each ``n``; prefer fitting each model family separately."""
    if not isinstance(points, pd.DataFrame) or not {"n", "metric"} <= set(points.columns):
        raise ScalingError("best_of_zoo needs a DataFrame with columns 'n' and 'metric'")
    keys = ["n", "run"] if "run" in points.columns else ["n"]
    return points.groupby(keys, as_index=False, sort=True)["metric"].max()


# ---------------------------------------------------------------------- data
def _transform(metric: FloatArray, bounded: bool, y_scale: float) -> FloatArray:
    if bounded:
        return safe_log_error(metric)
    return np.asarray(metric, dtype=np.float64) / y_scale


@dataclass(frozen=True)
class ScalingData:
    """Validated points as arrays, plus the per-size summary and the fit frame."""

    n: FloatArray
    y: FloatArray
    run_codes: NDArray[np.int64] | None
    sizes: FloatArray
    size_index: NDArray[np.int64]
    means: FloatArray
    counts: NDArray[np.int64]
    space: FitSpace
    bounded: bool
    obs_t: FloatArray
    table: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    @classmethod
    def from_points(cls, points: pd.DataFrame, *, bounded: bool = True) -> ScalingData:
        pts = validate_points(points, bounded=bounded)
        n = pts["n"].to_numpy(np.float64)
        y = pts["metric"].to_numpy(np.float64)
        run_codes = None
        if "run" in pts.columns:
            run_codes = pd.factorize(pts["run"], sort=True)[0].astype(np.int64)
        sizes, size_index, counts = np.unique(n, return_inverse=True, return_counts=True)
        means = np.bincount(size_index, weights=y) / counts
        y_scale = float(np.std(y))
        space = FitSpace(
            n_ref=float(np.exp(np.log(sizes).mean())),
            n_min=float(sizes[0]),
            n_max=float(sizes[-1]),
            bounded=bounded,
            y_ref=float(means.mean()),
            y_scale=y_scale if y_scale > 0 else 1.0,
        )
        return cls(
            n,
            y,
            run_codes,
            sizes,
            size_index.astype(np.int64),
            means,
            counts.astype(np.int64),
            space,
            bounded,
            _transform(y, bounded, space.y_scale),
            pts,
        )

    @property
    def n_runs(self) -> int:
        return 0 if self.run_codes is None else int(self.run_codes.max()) + 1

    def transform(self, metric: FloatArray) -> FloatArray:
        """Residual scale: ``log(1 - metric)`` (bounded) or ``metric / y_scale`` (unbounded)."""
        return _transform(metric, self.bounded, self.space.y_scale)

    def residual_fn(self, form: LawForm) -> Callable[[FloatArray], FloatArray]:
        """``theta (B, P) -> residuals (B, m)`` on the transformed scale (prediction - observed)."""
        log_n = np.log(self.n)
        obs = self.obs_t[None, :]

        def resid(theta: FloatArray) -> FloatArray:
            with np.errstate(all="ignore"):
                pred = form._predict(form.to_natural(theta, self.space), log_n)
                r = self.transform(pred) - obs
            return np.where(np.isfinite(r), r, 1e6)

        return resid

    def jacobian_fn(self, form: LawForm) -> Callable[[FloatArray], FloatArray] | None:
        """``theta (B, P) -> d residual / d theta (B, m, P)`` from the form's analytic
        derivatives, or ``None`` when the form has none (the solver then uses differences)."""
        log_x = np.log(self.n / self.space.n_ref)
        if form.raw_jacobian(np.zeros((0, form.n_params)), self.space, log_x) is None:
            return None

        def jac(theta: FloatArray) -> FloatArray:
            with np.errstate(all="ignore"):
                pred, dpred = form.raw_jacobian(theta, self.space, log_x)
                if self.bounded:
                    dt = -1.0 / np.maximum(1.0 - pred, ERROR_FLOOR)
                else:
                    dt = np.full_like(pred, 1.0 / self.space.y_scale)
                out = dt[:, :, None] * dpred
            return np.where(np.isfinite(out), out, 0.0)

        return jac

    def start_data(self) -> StartData:
        return StartData(self.sizes, self.means, self.space)


def _as_data(points: pd.DataFrame | ScalingData, bounded: bool) -> ScalingData:
    if isinstance(points, ScalingData):
        return points
    return ScalingData.from_points(points, bounded=bounded)


def _check_form(form: LawForm, data: ScalingData) -> None:
    if form.bounded_only and not data.bounded:
        raise ScalingError(f"form {form.name!r} is for bounded metrics in [0, 1]; got bounded=False")
    if data.sizes.size < form.min_sizes:
        raise ScalingError(
            f"form {form.name!r} has {form.n_params} parameters and needs >= {form.min_sizes} distinct "
            f"data sizes; got {data.sizes.size}"
        )


# ---------------------------------------------------------------------- fit one form
@dataclass(frozen=True)
class FitResult:
    """A point fit of one form: natural ``params``, raw ``theta``, robust ``cost``, in-sample
    ``r2`` (metric scale; reported, never used for ranking)."""

    form: LawForm
    params: dict[str, float]
    theta: FloatArray
    cost: float
    r2: float
    n_points: int
    n_sizes: int
    n_max: float
    f_scale: float
    n_starts: int
    data: ScalingData = field(repr=False)
    alternatives: FloatArray = field(repr=False, default_factory=lambda: np.empty((0, 0)))

    def predict(self, n: FloatArray) -> FloatArray:
        return self.form.predict(self.params, n)

    @property
    def asymptote(self) -> float:
        return float(self.form.asymptote(self.params))

    @property
    def increasing(self) -> bool:
        return bool(self.form.increasing(self.params))


def fit_form(
    points: pd.DataFrame | ScalingData,
    form: str | LawForm,
    *,
    bounded: bool = True,
    f_scale: float = DEFAULT_F_SCALE,
    polish: bool = True,
    n_alternatives: int = 2,
) -> FitResult:
    """Fit one form: soft-L1 loss on residuals ``log(1 - pred) - log(1 - obs)`` (bounded) or
    ``(pred - obs) / sd(metric)`` (unbounded), from the form's grid of starts (all solved at
    once by :func:`moa_core.scaling.solver.robust_lm`); the best is polished with
    ``scipy.optimize.least_squares(loss="soft_l1")`` and kept if that lowers the cost. Up to
    ``n_alternatives`` other local optima with visibly different curves are kept as extra
    warm starts for the bootstrap."""
    form = get_form(form)
    data = _as_data(points, bounded)
    _check_form(form, data)
    lo, hi = form.raw_bounds(data.space)
    starts = np.clip(form.starts(data.start_data()), lo, hi)
    resid, jac = data.residual_fn(form), data.jacobian_fn(form)
    res = robust_lm(resid, starts, jacobian=jac, f_scale=f_scale, lower=lo, upper=hi, max_iter=200)
    order = np.argsort(res.cost, kind="stable")
    best = int(order[0])
    theta, cost = res.theta[best].copy(), float(res.cost[best])
    if polish and np.isfinite(cost):
        try:
            sol = least_squares(
                lambda t: resid(t[None, :])[0],
                theta,
                loss="soft_l1",
                f_scale=f_scale,
                jac=(lambda t: jac(t[None, :])[0]) if jac is not None else "2-point",
                bounds=(lo, hi),
                method="trf",
                max_nfev=200 * (form.n_params + 1),
            )
            c_pol = float(robust_cost(resid(sol.x[None, :]), None, f_scale)[0])
            if c_pol < cost:
                theta, cost = sol.x.copy(), c_pol
        except (ValueError, np.linalg.LinAlgError):  # pragma: no cover - keep the LM optimum
            pass
    if not np.isfinite(cost):
        raise ScalingError(f"form {form.name!r}: no starting point gave a finite fit")
    nat = form.to_natural(theta[None, :], data.space)[0]
    params = {name: float(v) for name, v in zip(form.param_names, nat)}
    pred = form.predict(params, data.n)
    ss_tot = float(((data.y - data.y.mean()) ** 2).sum())
    r2 = 1.0 - float(((data.y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    alternatives = _distinct_optima(form, data, theta, res.theta[order[1:]], res.cost[order[1:]], n_alternatives)
    return FitResult(
        form,
        params,
        theta,
        cost,
        r2,
        int(data.n.size),
        int(data.sizes.size),
        float(data.sizes[-1]),
        f_scale,
        int(starts.shape[0]),
        data,
        alternatives,
    )


def _distinct_optima(
    form: LawForm, data: ScalingData, best: FloatArray, others: FloatArray, costs: FloatArray, k: int, tol: float = 1e-3
) -> FloatArray:
    """Up to ``k`` further grid optima (cheapest first) whose curves differ from the best and from
    each other by more than ``tol`` (metric units) at some observed size."""
    if k <= 0 or others.shape[0] == 0:
        return np.empty((0, best.size))
    log_n = np.log(data.sizes)
    with np.errstate(all="ignore"):
        curves = form._predict(form.to_natural(np.vstack([best[None, :], others]), data.space), log_n)
    kept = [0]
    for i in range(1, curves.shape[0]):
        if len(kept) > k or not np.isfinite(costs[i - 1]) or not np.isfinite(curves[i]).all():
            continue
        if all(np.abs(curves[i] - curves[j]).max() > tol for j in kept):
            kept.append(i)
    return others[[i - 1 for i in kept[1:]]].copy()


# ---------------------------------------------------------------------- bootstrap
def bootstrap_weights(
    data: ScalingData, n_boot: int, *, seed: int = 0, resample: Resample = "auto"
) -> tuple[FloatArray, str]:
    """Bootstrap resamples as point weights (n_boot, m) and the mode used.

    ``runs``: draw runs with replacement (every point of a drawn run enters once per draw - a
    cluster bootstrap that keeps whatever a run shares across sizes); ``points``: draw points
    with replacement. ``auto``: runs when there is a ``run`` column with >= 2 runs, else points.
    Resamples with fewer than three distinct sizes are redrawn. With few runs (e.g. 3) the run
    bootstrap has few distinct resamples (10 for 3 runs) and its intervals are coarse.
    """
    if n_boot < 1:
        raise ScalingError(f"n_boot must be >= 1, got {n_boot}")
    if resample == "auto":
        resample = "runs" if data.run_codes is not None and data.n_runs >= 2 else "points"
    if resample == "runs" and (data.run_codes is None or data.n_runs < 2):
        raise ScalingError("resample='runs' needs a 'run' column with at least two runs")
    if resample not in ("runs", "points"):
        raise ScalingError(f"resample must be 'auto', 'runs' or 'points', got {resample!r}")
    rng = np.random.default_rng(seed)
    m = data.n.size
    k = data.sizes.size
    onehot = np.zeros((m, k))
    onehot[np.arange(m), data.size_index] = 1.0

    def draw(b: int) -> FloatArray:
        if resample == "runs":
            r = data.n_runs
            counts = rng.multinomial(r, np.full(r, 1.0 / r), size=b).astype(np.float64)
            return counts[:, data.run_codes]
        return rng.multinomial(m, np.full(m, 1.0 / m), size=b).astype(np.float64)

    w = draw(n_boot)
    for _ in range(100):
        bad = np.flatnonzero(((w > 0) @ onehot > 0).sum(axis=1) < 3)
        if bad.size == 0:
            break
        w[bad] = draw(bad.size)
    return w, resample


@dataclass(frozen=True)
class NoiseModel:
    """The per-point noise a parametric bootstrap redraws: SD ``sd`` (metric units) with ``dof``
    degrees of freedom, estimated from ``source`` ("replicates": pooled within-size SD of the
    runs; "residuals": the fit's own residuals, ``dof = points - parameters``)."""

    sd: float
    dof: int
    source: str


MIN_NOISE_DOF = 2
"""The fewest degrees of freedom a noise estimate needs before it backs an interval."""


def replicate_noise(data: ScalingData) -> NoiseModel | None:
    """Pooled within-size SD of the points (``dof = sum(c_i - 1)``), or None below
    :data:`MIN_NOISE_DOF` (one point per size: no replicate spread)."""
    dof = int((data.counts - 1).sum())
    if dof < MIN_NOISE_DOF:
        return None
    ss = float(((data.y - data.means[data.size_index]) ** 2).sum())
    return NoiseModel(math.sqrt(ss / dof), dof, "replicates")


def residual_noise(fit: FitResult) -> NoiseModel | None:
    """RMS residual of ``fit`` on the metric scale with ``dof = points - parameters``, or None
    below :data:`MIN_NOISE_DOF`."""
    dof = fit.n_points - fit.form.n_params
    if dof < MIN_NOISE_DOF:
        return None
    r = np.asarray(fit.predict(fit.data.n), dtype=np.float64) - fit.data.y
    return NoiseModel(math.sqrt(float((r**2).sum()) / dof), dof, "residuals")


def no_interval_reason(data: ScalingData, form: LawForm) -> str:
    """Why neither noise estimate exists for ``form`` on ``data`` (the table's "no interval")."""
    return (
        f"no interval: {int(data.n.size)} point(s) at {int(data.sizes.size)} sizes give "
        f"{int((data.counts - 1).sum())} replicate and {int(data.n.size) - form.n_params} residual degree(s) of "
        f"freedom for the noise (needs >= {MIN_NOISE_DOF}); run at least two seeds per size"
    )


def bootstrap_offsets(data: ScalingData, noise: NoiseModel, n_boot: int, *, seed: int = 0) -> FloatArray:
    """Parametric-bootstrap observations as offsets (n_boot, m) on the fit's residual scale.

    Resample ``b`` redraws every point as ``mean_i + sigma_b z`` (``mean_i``: the observed mean at
    its size, ``z ~ N(0, 1)``; clipped to [0, 1] when bounded) with
    ``sigma_b^2 = sd^2 dof / chi2_dof`` - the noise's own uncertainty from ``dof`` degrees of
    freedom (the scaled-inverse-chi^2 posterior of a variance), which widens the intervals when
    the noise is estimated from few points. Unlike a run bootstrap (10 distinct resamples of 3
    runs), every resample is distinct, so intervals do not collapse with few runs.
    """
    if n_boot < 1:
        raise ScalingError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    sigma = noise.sd * np.sqrt(noise.dof / rng.chisquare(noise.dof, size=n_boot))
    y = data.means[data.size_index][None, :] + sigma[:, None] * rng.standard_normal((n_boot, data.n.size))
    if data.bounded:
        y = np.clip(y, 0.0, 1.0)
    return data.transform(y) - data.obs_t[None, :]


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap refits of one form: natural ``params`` (B, P), robust ``cost``, ``ok`` (finite
    fits on a valid resample), ``converged``, the resample ``weights`` (B, m) and ``mode``."""

    form: LawForm
    params: FloatArray
    cost: FloatArray
    ok: NDArray[np.bool_]
    converged: NDArray[np.bool_]
    weights: FloatArray = field(repr=False)
    mode: str = "points"
    noise: NoiseModel | None = None

    @property
    def n_boot(self) -> int:
        return int(self.params.shape[0])

    @property
    def good(self) -> FloatArray:
        """Parameters of the usable fits."""
        return self.params[self.ok]

    def param_ci(self, ci: float = 0.95) -> dict[str, tuple[float, float]]:
        """Percentile interval of every parameter."""
        return {name: interval(self.good[:, j], ci) for j, name in enumerate(self.form.param_names)}

    def asymptotes(self) -> FloatArray:
        return np.asarray(self.form.asymptote(self.good), dtype=np.float64)

    def band(self, n: FloatArray, ci: float = 0.95) -> tuple[FloatArray, FloatArray]:
        """Pointwise percentile band ``(low, high)`` of the fitted curve at sizes ``n``."""
        n = np.atleast_1d(np.asarray(n, dtype=np.float64))
        good = self.good
        if good.shape[0] == 0:
            nan = np.full(n.shape, np.nan)
            return nan, nan
        with np.errstate(all="ignore"):
            curves = self.form.predict(good, n)
        a = (1.0 - ci) / 2.0
        lo, hi = np.nanquantile(curves, [a, 1.0 - a], axis=0)
        return lo, hi


def bootstrap_fit(
    fit: FitResult,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    resample: Resample = "auto",
    max_iter: int = 80,
    ftol: float = 1e-9,
) -> BootstrapResult:
    """Refit ``fit``'s form on ``n_boot`` resamples, all at once, each warm-started at the
    full-data optimum - and at the fit's distinct alternative optima, keeping the cheapest - and
    capped at ``max_iter`` LM iterations.

    ``resample``: ``"auto"``/``"noise"`` (default) - the parametric bootstrap of
    :func:`bootstrap_offsets`, its noise from the replicates (:func:`replicate_noise`) or, with one
    point per size, from the fit's residuals (:func:`residual_noise`); raises
    :class:`ScalingError` starting "no interval" when neither has :data:`MIN_NOISE_DOF` degrees of
    freedom. ``"runs"``/``"points"``: the case-resampling bootstraps of :func:`bootstrap_weights`
    (kept for comparison; with 3 runs they have 10 distinct resamples and their 95 % intervals
    hold the truth far less often than 95 %, see ``bench/bench_scaling_calibration.py``).
    """
    data, form = fit.data, fit.form
    noise: NoiseModel | None = None
    offsets = None
    if resample in ("auto", "noise"):
        noise = replicate_noise(data) or residual_noise(fit)
        if noise is None:
            raise ScalingError(no_interval_reason(data, form))
        offsets = bootstrap_offsets(data, noise, n_boot, seed=seed)
        w, mode = np.ones((n_boot, data.n.size)), f"noise-{noise.source}"
    else:
        w, mode = bootstrap_weights(data, n_boot, seed=seed, resample=resample)
    lo, hi = form.raw_bounds(data.space)
    starts = np.vstack([fit.theta[None, :], fit.alternatives.reshape(-1, form.n_params)])
    k = starts.shape[0]
    theta0 = np.repeat(starts, n_boot, axis=0)  # start-major: rows [s * n_boot + b]
    res = robust_lm(
        data.residual_fn(form),
        theta0,
        weights=None if offsets is not None else np.tile(w, (k, 1)),
        offsets=None if offsets is None else np.tile(offsets, (k, 1)),
        jacobian=data.jacobian_fn(form),
        f_scale=fit.f_scale,
        lower=lo,
        upper=hi,
        max_iter=max_iter,
        ftol=ftol,
    )
    pick = np.argmin(res.cost.reshape(k, n_boot), axis=0) * n_boot + np.arange(n_boot)
    theta, cost, converged = res.theta[pick], res.cost[pick], res.converged[pick]
    with np.errstate(all="ignore"):
        nat = form.to_natural(theta, data.space)
    ok = np.isfinite(nat).all(axis=1) & np.isfinite(cost)
    return BootstrapResult(form, nat, cost, ok, converged, w, mode, noise)


def interval(x: FloatArray, ci: float = 0.95) -> tuple[float, float]:
    """Percentile interval ignoring NaN; with infinite values (unreachable targets) it uses
    order statistics (``inverted_cdf``) so ``inf`` is returned rather than interpolated."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    a = (1.0 - ci) / 2.0
    method = "linear" if np.isfinite(x).all() else "inverted_cdf"
    lo, hi = np.quantile(x, [a, 1.0 - a], method=method)
    return float(lo), float(hi)


# ---------------------------------------------------------------------- back-test
@dataclass(frozen=True)
class BacktestResult:
    """Fit on the smaller sizes, predict the withheld largest ``holdout`` sizes.

    ``error`` is the mean absolute error (metric units) between the prediction and the observed
    mean metric at each withheld size; ``fit`` is the fit on the training points only."""

    form: LawForm
    holdout: int
    train_sizes: FloatArray
    test_sizes: FloatArray
    predicted: FloatArray
    observed: FloatArray
    error: float
    fit: FitResult


def backtest(
    points: pd.DataFrame | ScalingData,
    form: str | LawForm,
    *,
    holdout: int = 1,
    bounded: bool = True,
    f_scale: float = DEFAULT_F_SCALE,
) -> BacktestResult:
    """Withhold every point at the ``holdout`` largest sizes, fit on the rest (its own fit frame,
    starts and scales come from the training points only) and score the prediction there."""
    form = get_form(form)
    data = _as_data(points, bounded)
    if holdout < 1:
        raise ScalingError(f"holdout must be >= 1, got {holdout}")
    k = data.sizes.size
    if k - holdout < form.min_sizes:
        raise ScalingError(
            f"back-test of {form.name!r} withholding {holdout} size(s) leaves {k - holdout} training sizes; "
            f"needs >= {form.min_sizes}"
        )
    train_sizes, test_sizes = data.sizes[: k - holdout], data.sizes[k - holdout :]
    train_mask = data.n <= train_sizes[-1]
    train = pd.DataFrame({"n": data.n[train_mask], "metric": data.y[train_mask]})
    if data.run_codes is not None:
        train["run"] = data.run_codes[train_mask]
    fit = fit_form(train, form, bounded=data.bounded, f_scale=f_scale)
    observed = data.means[k - holdout :]
    predicted = np.asarray(form.predict(fit.params, test_sizes), dtype=np.float64)
    error = float(np.mean(np.abs(predicted - observed)))
    return BacktestResult(form, holdout, train_sizes, test_sizes, predicted, observed, error, fit)


# ---------------------------------------------------------------------- trend check
@dataclass(frozen=True)
class TrendCheck:
    """Whether the points rise reliably with ``N``.

    ``rise``: mean metric at the largest minus at the smallest size; ``max_drop``: the largest
    fall of the mean metric from a smaller to a larger size; ``noise_sd``: per-point noise used
    for the standard errors. ``reliable`` is false when the points are flat or non-monotone."""

    reliable: bool
    flat: bool
    non_monotone: bool
    rise: float
    max_drop: float
    noise_sd: float
    reason: str


def check_trend(points: pd.DataFrame | ScalingData, *, z: float = 3.0, bounded: bool = True) -> TrendCheck:
    """Flat / non-monotone check on the per-size means ``m_i`` (``c_i`` points each).

    Noise ``s``: the pooled within-size SD when replicates give >= 2 degrees of freedom, else
    ``sqrt(mean(d2**2) / 6)`` from the second differences ``d2`` of the means (unbiased for iid
    noise; inflated by curvature, which errs towards calling noisy data flat).
    *Flat*: ``m_last - m_first <= z * s * sqrt(1/c_first + 1/c_last)``. *Non-monotone*: some
    ``m_i - m_j > z * s * sqrt(1/c_i + 1/c_j)`` with ``N_i < N_j`` (a significant fall).
    """
    data = _as_data(points, bounded)
    m, c = data.means, data.counts.astype(np.float64)
    dof = int((data.counts - 1).sum())
    if dof >= 2:
        s = math.sqrt(float(((data.y - m[data.size_index]) ** 2).sum()) / dof)
    else:
        d2 = np.diff(m, n=2)
        s = math.sqrt(float((d2**2).mean()) / 6.0)
    s = max(s, 1e-9 * max(1.0, float(np.abs(m).max())))
    rise = float(m[-1] - m[0])
    flat = rise <= z * s * math.sqrt(1.0 / c[0] + 1.0 / c[-1])
    drops = m[:, None] - m[None, :]
    se = s * np.sqrt(1.0 / c[:, None] + 1.0 / c[None, :])
    upper = np.triu(np.ones_like(drops, dtype=bool), k=1)
    tstat = np.where(upper, drops / se, -np.inf)
    i, j = np.unravel_index(int(np.argmax(tstat)), tstat.shape)
    max_drop = float(max(drops[i, j], 0.0))
    non_monotone = bool(tstat[i, j] > z)
    reasons = []
    if flat:
        reasons.append(
            f"points are flat: the mean metric changes by {rise:.3g} from N={data.sizes[0]:g} to "
            f"N={data.sizes[-1]:g}, within {z:g} standard errors ({z * s * math.sqrt(1 / c[0] + 1 / c[-1]):.3g})"
        )
    if non_monotone:
        reasons.append(
            f"points are non-monotone: the mean metric falls by {drops[i, j]:.3g} from N={data.sizes[i]:g} "
            f"to N={data.sizes[j]:g} (> {z:g} standard errors)"
        )
    return TrendCheck(not (flat or non_monotone), bool(flat), non_monotone, rise, max_drop, s, "; ".join(reasons))


# ---------------------------------------------------------------------- extrapolation
@dataclass(frozen=True)
class Extrapolation:
    """``N`` needed for ``target`` (point fit) with its bootstrap interval, ``p_reachable``,
    ``extrapolation_factor = n_needed / n_max_observed``, ``flagged``/``reason``, and
    ``cost = n_needed * cost_per_compound * replicates`` with its interval. When the trend is
    not reliable every number is NaN and ``reason`` starts with "no reliable extrapolation"."""

    target: float
    n_needed: float
    n_needed_low: float
    n_needed_high: float
    p_reachable: float
    extrapolation_factor: float
    n_max_observed: float
    flagged: bool
    reliable: bool
    reason: str
    cost: float
    cost_low: float
    cost_high: float


def extrapolate(
    fit: FitResult,
    target: float,
    *,
    bootstrap: BootstrapResult | None = None,
    trend: TrendCheck | None = None,
    cost_per_compound: float | None = None,
    replicates: int = 1,
    flag_factor: float = 3.0,
    ci: float = 0.95,
) -> Extrapolation:
    """How much data reaches ``target``, with its uncertainty and cost.

    ``p_reachable``: for asymptotic forms, the share of bootstrap fits whose asymptote exceeds
    the target; for ``linear``/``log_linear`` (no asymptote) the share of bootstrap fits that
    increase - a line reaches any level, so this only says the slope is positive - and 0 for a
    bounded target above 1. Flagged when: the trend is unreliable, the target is unreachable
    under the point fit, the upper bound of the interval is infinite, or ``extrapolation_factor
    > flag_factor``. Cost is for the total ``N`` (not the increment over the data).
    """
    if not math.isfinite(target):
        raise ScalingError(f"target must be finite, got {target}")
    if replicates < 1:
        raise ScalingError(f"replicates must be >= 1, got {replicates}")
    if cost_per_compound is not None and not (math.isfinite(cost_per_compound) and cost_per_compound >= 0):
        raise ScalingError(f"cost_per_compound must be finite and >= 0, got {cost_per_compound}")
    form, data = fit.form, fit.data
    trend = trend if trend is not None else check_trend(data)
    n_max = fit.n_max
    nan = float("nan")
    if not trend.reliable:
        return Extrapolation(
            target,
            nan,
            nan,
            nan,
            nan,
            nan,
            n_max,
            True,
            False,
            f"no reliable extrapolation: {trend.reason}",
            nan,
            nan,
            nan,
        )
    reasons: list[str] = []
    over_bound = data.bounded and target > 1.0
    n_hat = math.inf if over_bound else float(form.inverse(fit.params, target))
    if over_bound:
        reasons.append("target above the metric's upper bound 1: unreachable")
    lo = hi = p_reach = nan
    if bootstrap is not None and bootstrap.ok.any():
        good = bootstrap.good
        samples = np.full(good.shape[0], np.inf) if over_bound else np.asarray(form.inverse(good, target))
        lo, hi = interval(samples, ci)
        if over_bound:
            p_reach = 0.0
        elif form.has_asymptote:
            p_reach = float(np.mean(np.asarray(form.asymptote(good)) > target))
        else:
            p_reach = float(np.mean(np.asarray(form.increasing(good))))
        failed = 1.0 - float(bootstrap.ok.mean())
        if failed > 0.05:
            reasons.append(f"{failed:.0%} of bootstrap fits failed")
    if not form.has_asymptote and not over_bound:
        reasons.append(
            f"{form.name} has no asymptote (grows without bound): P(reachable) is only the share of bootstrap "
            "fits with a positive slope" + (", capped at metric <= 1" if data.bounded else "")
        )
    if not fit.increasing:
        reasons.append("the fitted curve does not increase with N")
    elif not math.isfinite(n_hat) and not over_bound:
        reasons.append(f"target {target:g} is at or above the fitted asymptote {fit.asymptote:.4g}: unreachable")
    factor = n_hat / n_max if n_max > 0 else nan
    if math.isfinite(factor) and factor > flag_factor:
        reasons.append(f"extrapolates {factor:.3g}x past the largest observed N (> {flag_factor:g}x)")
    if math.isfinite(n_hat) and not math.isfinite(hi) and not math.isnan(hi):
        reasons.append("upper bound of the N-needed interval is infinite (some bootstrap fits never reach the target)")
    flagged = (
        (not math.isfinite(n_hat))
        or (math.isfinite(factor) and factor > flag_factor)
        or (not math.isnan(hi) and not math.isfinite(hi))
    )
    if cost_per_compound is not None:
        unit = float(cost_per_compound) * int(replicates)
        cost, cost_lo, cost_hi = n_hat * unit, lo * unit, hi * unit
    else:
        cost = cost_lo = cost_hi = nan
    return Extrapolation(
        float(target),
        n_hat,
        lo,
        hi,
        p_reach,
        factor,
        n_max,
        bool(flagged),
        True,
        "; ".join(reasons),
        cost,
        cost_lo,
        cost_hi,
    )
