"""Compose fit / bootstrap / back-test / extrapolation over several forms into one report."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .averaging import AVERAGED, AveragedEstimate, averaged_band, averaged_n_needed, backtest_weights
from .errors import ScalingError
from .fit import (
    DEFAULT_F_SCALE,
    BacktestResult,
    BootstrapResult,
    Extrapolation,
    FitResult,
    Resample,
    ScalingData,
    TrendCheck,
    backtest,
    bootstrap_fit,
    check_trend,
    extrapolate,
    fit_form,
    interval,
)
from .forms import FORMS, FloatArray, LawForm, get_form

SCALING_LAW_COLUMNS: tuple[str, ...] = (
    "form",
    "rank",
    "params",
    "params_low",
    "params_high",
    "backtest_error",
    "backtest_holdout",
    "n_points",
    "n_sizes",
    "n_max_observed",
    "r2",
    "loss",
    "asymptote",
    "asymptote_low",
    "asymptote_high",
    "target",
    "n_needed",
    "n_needed_low",
    "n_needed_high",
    "p_reachable",
    "extrapolation_factor",
    "flagged",
    "reliable",
    "reason",
    "cost",
    "cost_low",
    "cost_high",
    "n_boot",
    "boot_ok",
    "resample",
    "weight",
)
"""Columns of the ``scaling_laws`` table (one row per form, plus the ``averaged`` row).
``params*`` are JSON objects (natural parameters, fixed constants included in ``params``);
``loss`` is the robust cost of the full fit; ``boot_ok`` the share of usable bootstrap fits;
``rank`` 1 = lowest back-test error (null when the form could not be back-tested or fitted, and
for ``averaged``); ``weight`` the form's back-test weight in the averaged law
(:func:`moa_core.scaling.averaging.backtest_weights`; 1 on the ``averaged`` row); ``resample``
the bootstrap used (``noise-replicates``, ``noise-residuals``, ``runs``, ``points``). Where the
data cannot support an interval its bounds are null and ``reason`` starts "no interval"."""


@dataclass(frozen=True)
class FormResult:
    """Everything computed for one form; ``error`` says why a step was impossible."""

    form: LawForm
    fit: FitResult | None = None
    bootstrap: BootstrapResult | None = None
    backtest: BacktestResult | None = None
    extrapolation: Extrapolation | None = None
    error: str = ""
    rank: int | None = None


def _json(d: dict[str, float]) -> str:
    return json.dumps({k: (float(v) if math.isfinite(v) else None) for k, v in d.items()}, sort_keys=False)


@dataclass(frozen=True)
class ScalingReport:
    """Scaling laws fitted to one points table (one task x model family)."""

    points: pd.DataFrame
    results: dict[str, FormResult]
    trend: TrendCheck
    bounded: bool
    target: float | None
    ci: float
    n_boot: int
    seed: int
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def ranking(self) -> list[str]:
        """Form names by back-test error (best first); unranked forms omitted."""
        ranked = [(r.rank, name) for name, r in self.results.items() if r.rank is not None]
        return [name for _, name in sorted(ranked)]

    @property
    def best(self) -> str | None:
        ranking = self.ranking
        return ranking[0] if ranking else None

    @property
    def weights(self) -> dict[str, float]:
        """Back-test weight of every fitted form in the averaged law (summing to 1)."""
        return backtest_weights(self)

    def averaged(self, target: float | None = None, ci: float | None = None) -> AveragedEstimate | None:
        """The averaged law's ``N`` needed for ``target`` (default: the report's), or None without one."""
        target = self.target if target is None else target
        return None if target is None else averaged_n_needed(self, target, ci)

    def _averaged_row(self, weights: dict[str, float]) -> dict[str, object]:
        nan = float("nan")
        fits = [r for r in self.results.values() if r.fit is not None]
        row: dict[str, object] = {c: nan for c in SCALING_LAW_COLUMNS}
        boots = [r.bootstrap for r in fits if r.bootstrap is not None and weights.get(r.form.name, 0) > 0]
        row.update(
            form=AVERAGED,
            rank=None,
            params=_json(weights),
            params_low=None,
            params_high=None,
            n_points=fits[0].fit.n_points,  # type: ignore[union-attr]
            n_sizes=fits[0].fit.n_sizes,  # type: ignore[union-attr]
            n_max_observed=fits[0].fit.n_max,  # type: ignore[union-attr]
            reliable=self.trend.reliable,
            flagged=True,
            target=nan if self.target is None else float(self.target),
            n_boot=self.n_boot,
            resample=",".join(sorted({b.mode for b in boots})) or None,
            boot_ok=float(np.mean([b.ok.mean() for b in boots])) if boots else nan,
            weight=1.0,
        )
        reasons = [f"back-test-weighted average of {len(weights)} form(s)"]
        if not self.trend.reliable:
            row["reason"] = "; ".join(reasons + [f"no reliable extrapolation: {self.trend.reason}"])
            return row
        est = self.averaged()
        if est is None:
            row.update(flagged=False, reason=reasons[0])
            return row
        n_max = float(row["n_max_observed"])  # type: ignore[arg-type]
        factor = est.n_needed / n_max if n_max > 0 else nan
        flag_factor = float(self.settings.get("flag_factor", 3.0))  # type: ignore[arg-type]
        flagged = not math.isfinite(est.n_needed) or (math.isfinite(factor) and factor > flag_factor)
        if not est.has_interval:
            reasons.append("no interval: no form has bootstrap fits (see the forms' rows)")
        elif not math.isfinite(est.high):
            flagged = True
            reasons.append("upper bound of the N-needed interval is infinite (some resamples never reach the target)")
        if math.isfinite(factor) and factor > flag_factor:
            reasons.append(f"extrapolates {factor:.3g}x past the largest observed N (> {flag_factor:g}x)")
        row.update(
            n_needed=est.n_needed,
            n_needed_low=est.low,
            n_needed_high=est.high,
            p_reachable=est.p_reachable,
            extrapolation_factor=factor,
            flagged=bool(flagged),
            reason="; ".join(reasons),
        )
        cpc = self.settings.get("cost_per_compound")
        if cpc is not None:
            unit = float(cpc) * int(self.settings.get("replicates", 1))  # type: ignore[arg-type]
            row.update(cost=est.n_needed * unit, cost_low=est.low * unit, cost_high=est.high * unit)
        return row

    def table(self) -> pd.DataFrame:
        """One row per form with :data:`SCALING_LAW_COLUMNS`, then the ``averaged`` row (tidy, for
        DuckDB ``scaling_laws``)."""
        rows = []
        nan = float("nan")
        weights = self.weights
        for name, r in self.results.items():
            row: dict[str, object] = {c: nan for c in SCALING_LAW_COLUMNS}
            row.update(
                form=name,
                rank=r.rank,
                reason=r.error,
                flagged=True,
                reliable=self.trend.reliable,
                target=nan if self.target is None else float(self.target),
                n_boot=self.n_boot,
                params=None,
                params_low=None,
                params_high=None,
                resample=None,
                weight=weights.get(name, nan),
            )
            if r.fit is not None:
                f = r.fit
                row.update(
                    params=_json({**f.params, **f.form.fixed}),
                    n_points=f.n_points,
                    n_sizes=f.n_sizes,
                    n_max_observed=f.n_max,
                    r2=f.r2,
                    loss=f.cost,
                    flagged=False,
                    asymptote=f.asymptote if f.form.has_asymptote else nan,
                )
            if r.bootstrap is not None:
                b = r.bootstrap
                cis = b.param_ci(self.ci)
                row.update(
                    params_low=_json({k: v[0] for k, v in cis.items()}),
                    params_high=_json({k: v[1] for k, v in cis.items()}),
                    boot_ok=float(b.ok.mean()),
                    resample=b.mode,
                )
                if b.form.has_asymptote:
                    row["asymptote_low"], row["asymptote_high"] = interval(b.asymptotes(), self.ci)
            if r.backtest is not None:
                row.update(backtest_error=r.backtest.error, backtest_holdout=r.backtest.holdout)
            if r.extrapolation is not None:
                e = r.extrapolation
                row.update(
                    n_needed=e.n_needed,
                    n_needed_low=e.n_needed_low,
                    n_needed_high=e.n_needed_high,
                    p_reachable=e.p_reachable,
                    extrapolation_factor=e.extrapolation_factor,
                    flagged=e.flagged,
                    reliable=e.reliable,
                    cost=e.cost,
                    cost_low=e.cost_low,
                    cost_high=e.cost_high,
                )
                row["reason"] = "; ".join(x for x in (r.error, e.reason) if x)
            elif not self.trend.reliable:
                row["reliable"] = False
                row["flagged"] = True
                row["reason"] = "; ".join(x for x in (r.error, f"no reliable extrapolation: {self.trend.reason}") if x)
            rows.append(row)
        if weights:
            rows.append(self._averaged_row(weights))
        out = pd.DataFrame(rows, columns=list(SCALING_LAW_COLUMNS))
        out["rank"] = out["rank"].astype("Int64")
        for col in ("backtest_holdout", "n_points", "n_sizes", "n_boot"):
            out[col] = out[col].astype("Int64")
        out["flagged"] = out["flagged"].astype(bool)
        out["reliable"] = out["reliable"].astype(bool)
        return out.sort_values(["rank", "form"], na_position="last", kind="mergesort").reset_index(drop=True)

    def curves(self, n_grid: FloatArray | Sequence[float] | None = None, ci: float | None = None) -> pd.DataFrame:
        """Fitted curves with pointwise bootstrap bands, the ``averaged`` law's last: columns ``form,
        rank, n, metric, metric_low, metric_high`` (long format, for a plotly line + band chart). Default grid:
        100 log-spaced sizes from the smallest observed ``N`` to 10x the largest."""
        n_obs = self.points["n"].to_numpy(np.float64)
        if n_grid is None:
            n_grid = np.geomspace(n_obs.min(), 10.0 * n_obs.max(), 100)
        grid = np.asarray(n_grid, dtype=np.float64)
        ci = self.ci if ci is None else ci
        frames = []
        for name, r in self.results.items():
            if r.fit is None:
                continue
            metric = np.asarray(r.fit.predict(grid), dtype=np.float64)
            lo, hi = (
                r.bootstrap.band(grid, ci)
                if r.bootstrap is not None
                else (np.full(grid.shape, np.nan), np.full(grid.shape, np.nan))
            )
            frames.append(
                pd.DataFrame(
                    {"form": name, "rank": r.rank, "n": grid, "metric": metric, "metric_low": lo, "metric_high": hi}
                )
            )
        if frames:
            mid, lo, hi = averaged_band(self, grid, ci)
            frames.append(
                pd.DataFrame(
                    {"form": AVERAGED, "rank": None, "n": grid, "metric": mid, "metric_low": lo, "metric_high": hi}
                )
            )
        if not frames:
            return pd.DataFrame(columns=["form", "rank", "n", "metric", "metric_low", "metric_high"])
        out = pd.concat(frames, ignore_index=True)
        out["rank"] = out["rank"].astype("Int64")
        return out


def fit_scaling_laws(
    points: pd.DataFrame,
    *,
    forms: Sequence[str | LawForm] | None = None,
    n_boot: int = 1000,
    target: float | None = None,
    cost_per_compound: float | None = None,
    replicates: int = 1,
    seed: int = 0,
    holdout: int = 1,
    bounded: bool = True,
    ci: float = 0.95,
    flag_factor: float = 3.0,
    resample: Resample = "auto",
    f_scale: float = DEFAULT_F_SCALE,
) -> ScalingReport:
    """Fit, bootstrap (``n_boot`` resamples, the same resamples for every form), back-test
    (withholding the ``holdout`` largest sizes) and - when ``target`` is given - extrapolate every
    form; forms are ranked by back-test error. ``forms`` defaults to the whole registry (without
    ``m4`` when ``bounded=False``). A form that cannot be fitted or back-tested gets a row whose
    ``reason`` says why. Deterministic for a given ``seed``.
    """
    if not 0.0 < ci < 1.0:
        raise ScalingError(f"ci must be in (0, 1), got {ci}")
    data = ScalingData.from_points(points, bounded=bounded)
    if forms is None:
        forms = [f for f in FORMS.values() if bounded or not f.bounded_only]
    chosen = [get_form(f) for f in forms]
    names = [f.name for f in chosen]
    if len(set(names)) != len(names):
        raise ScalingError(f"forms must have distinct names, got {names}")
    trend = check_trend(data)
    results: dict[str, FormResult] = {}
    for form in chosen:
        errors: list[str] = []
        fit = boot = bt = ex = None
        try:
            fit = fit_form(data, form, bounded=bounded, f_scale=f_scale)
        except ScalingError as exc:
            errors.append(f"not fitted: {exc}")
        if fit is not None:
            if n_boot > 0:
                try:
                    boot = bootstrap_fit(fit, n_boot=n_boot, seed=seed, resample=resample)
                except ScalingError as exc:
                    errors.append(str(exc))
            try:
                bt = backtest(data, form, holdout=holdout, bounded=bounded, f_scale=f_scale)
            except ScalingError as exc:
                errors.append(f"not back-tested: {exc}")
            if target is not None:
                ex = extrapolate(
                    fit,
                    target,
                    bootstrap=boot,
                    trend=trend,
                    cost_per_compound=cost_per_compound,
                    replicates=replicates,
                    flag_factor=flag_factor,
                    ci=ci,
                )
        results[form.name] = FormResult(form, fit, boot, bt, ex, "; ".join(errors))
    scored = sorted(
        (r.backtest.error, i, name)
        for i, (name, r) in enumerate(results.items())
        if r.backtest is not None and math.isfinite(r.backtest.error)
    )
    ranks = {name: k + 1 for k, (_, _, name) in enumerate(scored)}
    results = {
        name: FormResult(r.form, r.fit, r.bootstrap, r.backtest, r.extrapolation, r.error, ranks.get(name))
        for name, r in results.items()
    }
    return ScalingReport(
        data.table,
        results,
        trend,
        bounded,
        target,
        ci,
        n_boot,
        seed,
        {
            "holdout": holdout,
            "flag_factor": flag_factor,
            "cost_per_compound": cost_per_compound,
            "replicates": replicates,
            "f_scale": f_scale,
            "resample": resample,
        },
    )
