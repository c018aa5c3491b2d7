"""The forecast ledger: every stored fit's predictions above its data, scored when larger scales arrive.

A back-test withholds data the fit already had; the ledger keeps the fit's word on data nobody
had yet. Each time the scaling laws of a dataset are fitted, every law of every curve records
what it predicts beyond the data; when a later materialization brings a larger scale (a new JUMP
release, a bigger OOD share, a larger replicate fraction), the old forecasts are scored against
the new points. Extrapolation reviewers ask for exactly this record (Linsley et al.'s reviewers
asked how far their line could be trusted; the ledger answers with the laws' own track record).

Definitions
-----------
*Curve*: one (dataset, study, task, family) of ``scaling_points``, reduced to its fitted points by
:func:`moa_core.scaling.studies.curve_points`. *Fit id*: the first 16 hex digits of the SHA-256 of
the curve's key and fitted points (sizes, metrics, runs, rounded to 12 significant digits): the
same data gives the same id, so refitting unchanged data replaces its forecasts instead of
adding copies.

*Forecast* (:func:`forecasts`): for every fitted form and the averaged law (:data:`AVERAGED`), the
predicted metric at the sizes above the largest observed ``n_max``: the grid
``n_max * 10**(k / PER_DECADE)``, ``k = 1 .. DECADES * PER_DECADE`` (to 100x), plus the sizes of
the scales the catalogue can still materialize (``scale``: their partition key). ``decades`` =
``log10(n / n_max)``. The interval is the ``ci`` *predictive* interval of the next measured
point, not of the mean curve: each bootstrap curve plus one draw of the point's noise (the
bootstrap's noise model, SD over ``sqrt(runs per size)``, its SD itself drawn from its degrees of
freedom as in :func:`moa_core.scaling.fit.bootstrap_offsets`), mixed over the forms with the
back-test weights for the averaged law; for a bounded metric, point and interval are clipped to
[0, 1] (a line's prediction can pass 1, a measurement cannot). A form without bootstrap fits forecasts without an
interval, and ``reason`` says why. A curve whose trend is not reliable (flat, non-monotone: no
N needed is read off it) still forecasts - what its laws say the next scale will measure is worth
checking too - with ``reliable`` false, so that the record can be read with or without them.

*Score* (:func:`score_forecasts`): a forecast is scored at every size of the current curve above
its ``n_max`` and within its largest forecast size: the prediction there (exact when a forecast
size matches within 0.1 %, else interpolated linearly in ``log10 n`` between the two nearest
forecast sizes), ``error = predicted - observed`` (the observed mean over runs at that size),
``inside = low <= observed <= high`` (null without an interval).

*Record* (:func:`ledger_record`): per law form, the forecasts scored, their mean absolute error,
the share inside the interval and the distances in decades.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from .averaging import AVERAGED, averaged_band, backtest_weights, weighted_quantile
from .errors import ScalingError
from .report import ScalingReport

DECADES = 2
PER_DECADE = 8
MATCH_RTOL = 1e-3

KEY_COLUMNS = ["dataset", "study", "task", "family"]
FORECAST_COLUMNS = [
    *KEY_COLUMNS,
    "fit_id",
    "made_at",
    "code_version",
    "form",
    "n_max_observed",
    "n_sizes",
    "reliable",
    "n",
    "scale",
    "decades",
    "metric",
    "metric_low",
    "metric_high",
    "reason",
]
"""Columns of the ``scaling_forecasts`` table (one row per fit, form and forecast size)."""
LEDGER_COLUMNS = [
    *KEY_COLUMNS,
    "form",
    "fit_id",
    "made_at",
    "reliable",
    "n_max_observed",
    "n",
    "scale",
    "decades",
    "predicted",
    "low",
    "high",
    "observed",
    "error",
    "abs_error",
    "inside",
]
"""Columns of the ``scaling_ledger`` table (one row per scored forecast)."""
RECORD_COLUMNS = ["form", "fits", "scored", "mae", "coverage", "with_interval", "median_decades", "max_decades"]


def fit_id(key: Mapping[str, object], points: pd.DataFrame) -> str:
    """The id of a fit: SHA-256 (16 hex digits) of the curve key and its fitted points."""
    pts = points.sort_values([c for c in ("n", "run", "metric") if c in points.columns])
    rows = [
        [float(f"{n:.12g}"), float(f"{m:.12g}"), str(r)]
        for n, m, r in zip(
            pts["n"], pts["metric"], pts["run"] if "run" in pts.columns else [""] * len(pts), strict=True
        )
    ]
    blob = json.dumps({"key": {k: str(key[k]) for k in KEY_COLUMNS}, "points": rows}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def forecast_sizes(n_max: float, next_scales: Mapping[str, float] | None = None) -> pd.DataFrame:
    """The forecast sizes above ``n_max``: the log grid to ``10**DECADES`` x and the catalogue's next
    scales (``scale`` their key, '' on the grid), sorted by ``n``."""
    if not (n_max > 0 and math.isfinite(n_max)):
        raise ScalingError(f"forecast sizes need a positive largest observed size, got {n_max}")
    k = np.arange(1, DECADES * PER_DECADE + 1)
    grid = pd.DataFrame({"n": n_max * 10.0 ** (k / PER_DECADE), "scale": ""})
    extra = pd.DataFrame(
        [{"n": float(v), "scale": str(s)} for s, v in (next_scales or {}).items() if float(v) > n_max * (1 + 1e-9)],
        columns=["n", "scale"],
    )
    out = pd.concat([grid, extra], ignore_index=True) if not extra.empty else grid
    return out.sort_values("n", kind="mergesort").reset_index(drop=True)


def _noisy(curves: np.ndarray, noise, runs: float, bounded: bool, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap curves (B, k) plus one draw of a new point's noise each (see the module docstring)."""
    if noise is None:  # a case-resampling bootstrap: its curves are all there is
        return curves
    sigma = noise.sd * np.sqrt(noise.dof / rng.chisquare(noise.dof, size=curves.shape[0]))
    out = curves + (sigma / math.sqrt(max(runs, 1.0)))[:, None] * rng.standard_normal(curves.shape)
    return np.clip(out, 0.0, 1.0) if bounded else out


def predictive_band(
    report: ScalingReport, n: Sequence[float] | np.ndarray, ci: float | None = None, *, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """Per fitted form and for :data:`AVERAGED`: ``(point, low, high, reason)`` of the next measured
    point at sizes ``n`` (NaN bounds and a reason where there is no interval)."""
    ci = report.ci if ci is None else ci
    n = np.atleast_1d(np.asarray(n, dtype=np.float64))
    a = (1.0 - ci) / 2.0
    counts = report.points.groupby("n").size()
    runs = float(np.median(counts)) if len(counts) else 1.0
    rng = np.random.default_rng(seed)
    nan = np.full(n.shape, np.nan)
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, str]] = {}
    draws: dict[str, np.ndarray] = {}
    for name, r in report.results.items():
        if r.fit is None:
            continue
        with np.errstate(all="ignore"):
            point = np.asarray(r.fit.predict(n), dtype=np.float64)
        if report.bounded:  # a bounded metric is never measured above 1 (a line's prediction can be)
            point = np.clip(point, 0.0, 1.0)
        b = r.bootstrap
        if b is None or not b.ok.any():
            reason = next(
                (p.strip() for p in r.error.split(";") if p.strip().startswith("no interval")),
                "no interval: no bootstrap fits",
            )
            out[name] = (point, nan, nan, reason)
            continue
        with np.errstate(all="ignore"):
            curves = np.asarray(b.form.predict(b.good, n), dtype=np.float64)
        sims = _noisy(curves, b.noise, runs, report.bounded, rng)
        draws[name] = sims
        lo, hi = np.nanquantile(sims, [a, 1.0 - a], axis=0)
        out[name] = (point, lo, hi, "")
    weights = backtest_weights(report)
    if weights:
        mid, _, _ = averaged_band(report, n, ci)
        mid = np.clip(mid, 0.0, 1.0) if report.bounded else mid
        have = {k: w for k, w in weights.items() if w > 0 and k in draws}
        total = sum(have.values())
        if total > 0:
            vals = np.vstack([draws[k] for k in have])
            wts = np.concatenate([np.full(draws[k].shape[0], w / total / draws[k].shape[0]) for k, w in have.items()])
            lo, hi = weighted_quantile(vals, wts, np.array([a, 1.0 - a]))
            out[AVERAGED] = (mid, lo, hi, "")
        else:
            out[AVERAGED] = (mid, nan, nan, "no interval: no form has bootstrap fits")
    return out


def forecasts(
    fitted: Sequence[tuple[Mapping[str, object], pd.DataFrame, ScalingReport | None]],
    *,
    next_scales: Mapping[tuple[str, str], Mapping[str, float]] | None = None,
    made_at: str | None = None,
    code_version: str = "",
    seed: int = 0,
) -> pd.DataFrame:
    """The ``scaling_forecasts`` rows of fitted curves: ``(key, fitted points, report or None)``
    triples (as :func:`moa_core.scaling.studies.fit_curve_reports` returns). ``next_scales`` maps
    (study, task) to {scale key: its size} for the scales not yet materialized."""
    made_at = made_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    frames = []
    for key, pts, rep in fitted:
        if rep is None:
            continue
        n_max = float(pts["n"].max())
        sizes = forecast_sizes(n_max, (next_scales or {}).get((str(key["study"]), str(key["task"]))))
        fid = fit_id(key, pts)
        for form, (point, lo, hi, reason) in predictive_band(rep, sizes["n"].to_numpy(), seed=seed).items():
            f = pd.DataFrame(
                {
                    "fit_id": fid,
                    "made_at": made_at,
                    "code_version": code_version,
                    "form": form,
                    "n_max_observed": n_max,
                    "n_sizes": int(pts["n"].nunique()),
                    "reliable": bool(rep.trend.reliable),
                    "n": sizes["n"].to_numpy(),
                    "scale": sizes["scale"].to_numpy(),
                    "decades": np.log10(sizes["n"].to_numpy() / n_max),
                    "metric": point,
                    "metric_low": lo,
                    "metric_high": hi,
                    "reason": reason,
                }
            )
            for k in reversed(KEY_COLUMNS):
                f.insert(0, k, str(key[k]))
            frames.append(f)
    if not frames:
        return typed_forecasts(pd.DataFrame(columns=FORECAST_COLUMNS))
    return typed_forecasts(pd.concat(frames, ignore_index=True)[FORECAST_COLUMNS])


def merge_forecasts(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The ledger's forecasts after a fit: ``old`` (kept, the record) without the fits ``new``
    re-records (same data, same id), then ``new``."""
    if old is None or old.empty:
        return typed_forecasts(new)
    missing = [c for c in FORECAST_COLUMNS if c not in old.columns]
    if missing:
        raise ScalingError(f"scaling_forecasts: schema drift, the stored table lacks columns {missing}")
    kept = old[~old["fit_id"].isin(set(new["fit_id"]))][FORECAST_COLUMNS]
    return typed_forecasts(pd.concat([kept, new[FORECAST_COLUMNS]], ignore_index=True))


def _interp(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> float:
    ok = np.isfinite(ys)
    if ok.sum() == 0:
        return float("nan")
    return float(np.interp(x, xs[ok], ys[ok]))


def score_forecasts(forecast_rows: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Score every stored forecast against the current fitted points ``curves`` (``KEY_COLUMNS`` +
    ``n, metric``): the ``scaling_ledger`` rows (see the module docstring)."""
    if forecast_rows.empty or curves.empty:
        return typed_ledger(pd.DataFrame(columns=LEDGER_COLUMNS))
    observed = curves.groupby([*KEY_COLUMNS, "n"], as_index=False, sort=True)["metric"].mean()
    by_curve = {tuple(str(v) for v in k): g for k, g in observed.groupby(KEY_COLUMNS, sort=False)}
    rows = []
    for k, fid, form, f in _groups(forecast_rows):
        obs = by_curve.get(k)
        if obs is None:
            continue
        f = f.sort_values("n", kind="mergesort")
        n_max = float(f["n_max_observed"].iloc[0])
        fn = f["n"].to_numpy(np.float64)
        later = obs[(obs["n"] > n_max * (1 + 1e-9)) & (obs["n"] <= fn.max() * (1 + MATCH_RTOL))]
        if later.empty:
            continue
        logn = np.log10(fn)
        for n_obs, y in zip(later["n"].to_numpy(np.float64), later["metric"].to_numpy(np.float64), strict=True):
            close = np.abs(fn / n_obs - 1.0) <= MATCH_RTOL
            if close.any():
                i = int(np.argmax(close))
                pred, lo, hi = (float(f[c].iloc[i]) for c in ("metric", "metric_low", "metric_high"))
                scale = str(f["scale"].iloc[i] or "")
            else:
                x = math.log10(n_obs)
                pred, lo, hi = (
                    _interp(x, logn, f[c].to_numpy(np.float64)) for c in ("metric", "metric_low", "metric_high")
                )
                scale = ""
            has_interval = math.isfinite(lo) and math.isfinite(hi)
            rows.append(
                dict(zip(KEY_COLUMNS, k, strict=True))
                | {
                    "form": form,
                    "fit_id": fid,
                    "made_at": str(f["made_at"].iloc[0]),
                    "reliable": bool(f["reliable"].iloc[0]),
                    "n_max_observed": n_max,
                    "n": n_obs,
                    "scale": scale,
                    "decades": math.log10(n_obs / n_max),
                    "predicted": pred,
                    "low": lo if has_interval else float("nan"),
                    "high": hi if has_interval else float("nan"),
                    "observed": float(y),
                    "error": pred - float(y),
                    "abs_error": abs(pred - float(y)),
                    "inside": (lo <= y <= hi) if has_interval else None,
                }
            )
    return typed_ledger(pd.DataFrame(rows, columns=LEDGER_COLUMNS))


def _groups(forecast_rows: pd.DataFrame):
    for keys, f in forecast_rows.groupby([*KEY_COLUMNS, "fit_id", "form"], sort=True):
        yield tuple(str(v) for v in keys[: len(KEY_COLUMNS)]), str(keys[-2]), str(keys[-1]), f


def ledger_record(ledger: pd.DataFrame) -> pd.DataFrame:
    """Per law form: fits with a scored forecast, forecasts scored, mean absolute error, the share
    inside the interval (of those with one) and the distances in decades (``RECORD_COLUMNS``)."""
    if ledger.empty:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    rows = []
    for form, g in ledger.groupby("form", sort=True):
        inside = g["inside"].dropna().astype(bool)
        rows.append(
            {
                "form": form,
                "fits": int(g["fit_id"].nunique()),
                "scored": len(g),
                "mae": float(g["abs_error"].mean()),
                "coverage": float(inside.mean()) if len(inside) else float("nan"),
                "with_interval": len(inside),
                "median_decades": float(g["decades"].median()),
                "max_decades": float(g["decades"].max()),
            }
        )
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def typed_forecasts(df: pd.DataFrame) -> pd.DataFrame:
    """``scaling_forecasts`` with fixed column types (DuckDB must not see NULL-typed columns)."""
    out = df.reindex(columns=FORECAST_COLUMNS).copy()
    for c in FORECAST_COLUMNS:
        if c in (*KEY_COLUMNS, "fit_id", "made_at", "code_version", "form", "scale", "reason"):
            out[c] = out[c].astype("string")
        elif c == "n_sizes":
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("Int64")
        elif c == "reliable":
            out[c] = out[c].astype("boolean")
        else:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    return out


def typed_ledger(df: pd.DataFrame) -> pd.DataFrame:
    """``scaling_ledger`` with fixed column types."""
    out = df.reindex(columns=LEDGER_COLUMNS).copy()
    for c in LEDGER_COLUMNS:
        if c in (*KEY_COLUMNS, "form", "fit_id", "made_at", "scale"):
            out[c] = out[c].astype("string")
        elif c in ("inside", "reliable"):
            out[c] = out[c].astype("boolean")
        else:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    return out
