"""Scaling laws: how a metric grows with data size ``N``, fitted with uncertainty.

Used for Pheno-CA model zoos (MoA accuracy vs. number of training compounds) and for
MOAProfiler's replicate-fraction curve. Linsley et al. ("Neural scaling laws for phenotypic drug
discovery") fit an ordinary least-squares line through ~5 best-of-zoo points, report no
uncertainty, and extrapolate ~30x past the data ("3.25M more compounds for 100% MoA accuracy,
$325M at $100/compound"). This package fits several forms, says how uncertain each is, ranks
them by how well they predict data they did not see, and refuses to extrapolate flat or
non-monotone points.

Definitions
-----------
*Points*: a table with ``n`` (data size, > 0), ``metric`` (higher is better; in [0, 1] when
``bounded``), optional ``run`` (replicate/seed id) and ``model_size`` (one value per fit).

*Forms* (:data:`FORMS`; each documents its formula, parameters, ``predict`` and ``inverse``):
``linear`` ``a + b N`` (the Pheno-CA law); ``log_linear`` ``a + b log10 N``; ``power_floor``
``a_inf - A N^-alpha``; ``m4`` (Alabdulmohsin et al. 2022) ``(e - e_inf)/(e0 - e)^gamma =
beta N^-c`` on the error ``e = 1 - metric``, with fixed ``e0``; ``broken_power`` (Caballero et
al. 2022) ``a_inf - A N^-alpha0 (1 + (N/d1)^(1/f1))^(-alpha1 f1)``, with fixed ``f1``.

*Fit* (:func:`fit_form`): soft-L1 robust loss (scipy's ``soft_l1``, ``f_scale`` 0.05) on
residuals ``log(1 - pred) - log(1 - obs)`` for a bounded metric (relative error of the error;
linearly continued below an error of 1e-4), or ``(pred - obs) / sd(metric)`` for an unbounded
one; every point counts once. Solved from a data-driven grid of starts, all at once by a batched
Levenberg-Marquardt with analytic Jacobians and geodesic acceleration (:mod:`.solver`), the best
polished by ``scipy.optimize.least_squares``.
Deliberate differences from the papers: all forms, the line included, are fitted with this one
objective (so losses and back-tests compare like with like; Linsley et al. use OLS on the metric);
M4's ``e0`` and BNSL's ``f1`` are fixed constants (not identifiable from 5-8 sizes).

*Bootstrap* (:func:`bootstrap_fit`): a parametric bootstrap - every resample redraws each point
as its size's observed mean plus Gaussian noise whose SD is itself drawn from its uncertainty
(:func:`bootstrap_offsets`; the noise from the replicates' pooled within-size SD, or with one
point per size from the fit's residuals; fewer than 2 degrees of freedom: "no interval") - each
refitted (the same objective) warm-started at the full-data optimum and at up to two distinct
other grid optima, keeping the cheapest, iterations capped; percentile intervals of parameters,
curves (:meth:`BootstrapResult.band`) and ``N`` needed. The case-resampling run bootstrap it
replaced (``resample="runs"``: 10 distinct resamples of 3 runs) covered the truth far less often
than it claimed (``bench/bench_scaling_calibration.py``, :mod:`.calibration`).

*Averaged law* (:mod:`.averaging`): the forms' bootstrap distributions mixed with pseudo-BMA
weights from the back-test, so the interval includes the uncertainty about the form - the
largest source of extrapolation error; the ``averaged`` row of the table.

*Back-test* (:func:`backtest`): withhold every point at the ``holdout`` largest sizes, fit on the
rest, error = mean absolute error (metric units) of the predicted vs observed mean metric at the
withheld sizes. Forms are ranked by it, not by in-sample R^2 (which is reported only).

*Extrapolation* (:func:`extrapolate`): ``n_needed = inverse(params, target)`` and its bootstrap
interval; ``p_reachable`` = share of bootstrap fits whose asymptote exceeds the target (for the
asymptote-free ``linear``/``log_linear``: share with positive slope, 0 for a bounded target > 1,
and the reason says so); ``extrapolation_factor = n_needed / largest observed N``, flagged when
``> flag_factor`` (3); ``cost = n_needed * cost_per_compound * replicates`` (total, not
incremental ``N``) with its interval. Flat or non-monotone points (:func:`check_trend`) give
``reliable = False``, NaN numbers and a reason starting "no reliable extrapolation".

*Report* (:func:`fit_scaling_laws`): all of the above per form; ``.table()`` is the tidy
``scaling_laws`` table (:data:`SCALING_LAW_COLUMNS`), ``.curves(n_grid)`` the curves with bands.
"""

from .averaging import AVERAGED, AveragedEstimate, averaged_band, averaged_n_needed, backtest_weights, prediction_sd
from .errors import ScalingError
from .fit import (
    DEFAULT_F_SCALE,
    ERROR_FLOOR,
    MIN_NOISE_DOF,
    BacktestResult,
    BootstrapResult,
    Extrapolation,
    FitResult,
    NoiseModel,
    ScalingData,
    TrendCheck,
    backtest,
    best_of_zoo,
    bootstrap_fit,
    bootstrap_offsets,
    bootstrap_weights,
    check_trend,
    extrapolate,
    fit_form,
    interval,
    no_interval_reason,
    replicate_noise,
    residual_noise,
    safe_log_error,
    validate_points,
)
from .forms import (
    FORMS,
    BrokenPowerLaw,
    FitSpace,
    LawForm,
    LinearLaw,
    LogLinearLaw,
    M4Law,
    PowerFloorLaw,
    broken_power_form,
    get_form,
    m4_error,
    m4_form,
)
from .report import SCALING_LAW_COLUMNS, FormResult, ScalingReport, fit_scaling_laws
from .solver import LMResult, robust_cost, robust_lm

__all__ = [
    "AVERAGED",
    "DEFAULT_F_SCALE",
    "ERROR_FLOOR",
    "FORMS",
    "MIN_NOISE_DOF",
    "SCALING_LAW_COLUMNS",
    "AveragedEstimate",
    "BacktestResult",
    "BootstrapResult",
    "BrokenPowerLaw",
    "Extrapolation",
    "FitResult",
    "FitSpace",
    "FormResult",
    "LMResult",
    "LawForm",
    "LinearLaw",
    "LogLinearLaw",
    "M4Law",
    "NoiseModel",
    "PowerFloorLaw",
    "ScalingData",
    "ScalingError",
    "ScalingReport",
    "TrendCheck",
    "averaged_band",
    "averaged_n_needed",
    "backtest",
    "backtest_weights",
    "best_of_zoo",
    "bootstrap_fit",
    "bootstrap_offsets",
    "bootstrap_weights",
    "broken_power_form",
    "check_trend",
    "extrapolate",
    "fit_form",
    "fit_scaling_laws",
    "get_form",
    "interval",
    "m4_error",
    "m4_form",
    "no_interval_reason",
    "prediction_sd",
    "replicate_noise",
    "residual_noise",
    "robust_cost",
    "robust_lm",
    "safe_log_error",
    "validate_points",
]
