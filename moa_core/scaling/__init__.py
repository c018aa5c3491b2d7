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

*Bootstrap* (:func:`bootstrap_fit`): resample runs with replacement (or points when there is no
run column), refit every resample (the same objective, integer weights) warm-started at the
full-data optimum and at up to two distinct other grid optima, keeping the cheapest, iterations
capped; percentile intervals of parameters, curves (:meth:`BootstrapResult.band`) and ``N``
needed. With 3 runs there are only 10 distinct run resamples, so intervals are coarse.

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

from .errors import ScalingError
from .fit import (
    DEFAULT_F_SCALE,
    ERROR_FLOOR,
    BacktestResult,
    BootstrapResult,
    Extrapolation,
    FitResult,
    ScalingData,
    TrendCheck,
    backtest,
    best_of_zoo,
    bootstrap_fit,
    bootstrap_weights,
    check_trend,
    extrapolate,
    fit_form,
    interval,
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
    "DEFAULT_F_SCALE",
    "ERROR_FLOOR",
    "FORMS",
    "SCALING_LAW_COLUMNS",
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
    "PowerFloorLaw",
    "ScalingData",
    "ScalingError",
    "ScalingReport",
    "TrendCheck",
    "backtest",
    "best_of_zoo",
    "bootstrap_fit",
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
    "robust_cost",
    "robust_lm",
    "safe_log_error",
    "validate_points",
]
