"""Feature hygiene and per-plate standardization to negative controls.

DMSO standardization (Wong et al. 2023, "CellProfiler and DeepProfiler extraction"):
for each feature f on plate p, subtract the mean of plate p's DMSO wells and divide by
their standard deviation. We use the population SD (``ddof=0``), as pycytominer's
``normalize(method="standardize")`` does, so the two agree exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from moa_core.errors import NormalizationError, SchemaError


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Every column not prefixed ``Metadata_`` (pycytominer's convention)."""
    return [c for c in df.columns if not str(c).startswith("Metadata_")]


def _check_finite(df: pd.DataFrame, features: list[str], plate_col: str, well_col: str) -> None:
    x = df[features].to_numpy(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        row = df.iloc[r]
        raise SchemaError(
            f"non-finite value in column {features[c]!r} for plate {row.get(plate_col)} well {row.get(well_col)} "
            f"({int(bad.sum())} non-finite values in total); clean features first (clean_features)"
        )


def standardize_to_controls(
    df: pd.DataFrame,
    features: list[str],
    *,
    control_mask: pd.Series | np.ndarray,
    plate_col: str = "Metadata_Plate",
    well_col: str = "Metadata_Well",
    zero_sd: str = "drop",
) -> tuple[pd.DataFrame, list[str]]:
    """Per-plate z-score of ``features`` against the plate's control wells.

    Parameters
    ----------
    control_mask
        Boolean per row: True for negative-control (DMSO) wells.
    zero_sd
        A feature whose control SD is 0 on some plate cannot be standardized there.
        ``"drop"`` (default) removes it from the output and lists it in the second
        return value; ``"raise"`` raises :class:`NormalizationError`.

    Returns
    -------
    (standardized frame, dropped feature names)

    Raises
    ------
    NormalizationError
        A plate has fewer than 2 control wells (its SD is undefined) — the message
        names the plate.
    SchemaError
        A feature value is NaN/inf — the message names column, plate and well.
    """
    missing = [c for c in [plate_col, *features] if c not in df.columns]
    if missing:
        raise SchemaError(f"missing column(s) {missing[:5]}")
    if df.empty:
        raise NormalizationError("no wells to standardize (empty table)")
    _check_finite(df, features, plate_col, well_col)
    ctrl = np.asarray(control_mask, dtype=bool)
    out = df.copy()
    x = df[features].to_numpy(np.float64)
    res = np.empty_like(x)
    zero_any = np.zeros(len(features), bool)
    plates = df[plate_col].to_numpy()
    for plate in pd.unique(plates):
        rows = plates == plate
        c = rows & ctrl
        if c.sum() < 2:
            from moa_core.data.controls import control_summary

            raise NormalizationError(
                f"plate {plate} has {int(c.sum())} negative-control (DMSO) well(s); per-plate standardization "
                f"needs at least 2. Found by rule on this plate's {int(rows.sum())} wells: "
                f"{control_summary(df[rows])}; set the dataset's `controls` if its tables mark them otherwise"
            )
        mu = x[c].mean(axis=0)
        sd = x[c].std(axis=0, ddof=0)
        zero = ~(sd > 0)
        if zero.any() and zero_sd == "raise":
            raise NormalizationError(
                f"plate {plate}: control SD is 0 for column {features[int(np.argmax(zero))]!r} "
                f"({int(zero.sum())} columns)"
            )
        zero_any |= zero
        res[rows] = (x[rows] - mu) / np.where(zero, 1.0, sd)
    keep = ~zero_any
    kept = [f for f, k in zip(features, keep) if k]
    dropped = [f for f, k in zip(features, keep) if not k]
    std = pd.DataFrame(res[:, keep].astype(np.float32), columns=kept, index=df.index)
    meta = out.drop(columns=features)
    return pd.concat([meta, std], axis=1), dropped


@dataclass
class CleaningReport:
    """What :func:`clean_features` dropped or imputed, named."""

    n_input: int
    inf_to_nan: int = 0
    dropped_na: list[tuple[str, float]] = field(default_factory=list)
    dropped_constant: list[str] = field(default_factory=list)
    imputed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["column", "plate", "well"]))

    @property
    def n_kept(self) -> int:
        return self.n_input - len(self.dropped_na) - len(self.dropped_constant)

    def as_metadata(self) -> dict:
        imp = self.imputed
        return {
            "features_in": self.n_input,
            "features_kept": self.n_kept,
            "inf_set_to_nan": self.inf_to_nan,
            "dropped_na_columns": len(self.dropped_na),
            "dropped_na_names": ", ".join(f"{c} ({s:.0%})" for c, s in self.dropped_na[:20]),
            "dropped_constant": len(self.dropped_constant),
            "imputed_values": len(imp),
            "imputed_wells": int(imp[["plate", "well"]].drop_duplicates().shape[0]) if len(imp) else 0,
            "imputed_examples": ", ".join(f"{r.column}@{r.plate}/{r.well}" for r in imp.head(20).itertuples()),
        }


def clean_features(
    df: pd.DataFrame,
    features: list[str],
    *,
    na_cutoff: float = 0.05,
    plate_col: str = "Metadata_Plate",
    well_col: str = "Metadata_Well",
) -> tuple[pd.DataFrame, list[str], CleaningReport]:
    """Feature hygiene for real plates: a bad well must not remove a feature from every well.

    1. ``inf``/``-inf`` (e.g. a form factor of a degenerate object) become NaN (counted).
    2. A feature whose NaN share over wells is greater than ``na_cutoff`` is dropped, as
       pycytominer's ``feature_select(operation="drop_na_columns", na_cutoff=0.05)`` does
       (same rule, same default; mirrored here so the share of every dropped column can be
       reported by name).
    3. A feature constant over wells is dropped (pycytominer's ``variance_threshold`` at
       its extreme: no variance, no information).
    4. The remaining NaNs (at most ``na_cutoff`` of a feature's wells) are imputed with the
       median of that feature over the other wells of the same plate (the whole table's
       median if the plate has none); every imputed value is named (column, plate, well).

    Returns ``(cleaned frame, kept features, report)``: metadata columns, then kept features,
    same rows in the same order.
    """
    x = df[features].to_numpy(np.float64, copy=True)
    inf = np.isinf(x)
    x[inf] = np.nan
    nan = np.isnan(x)
    share = nan.mean(axis=0) if len(x) else np.zeros(len(features))
    drop_na = share > na_cutoff
    with np.errstate(all="ignore"):
        lo, hi = np.nanmin(np.where(nan, np.inf, x), axis=0), np.nanmax(np.where(nan, -np.inf, x), axis=0)
    constant = ~drop_na & ~(hi > lo)
    keep = ~drop_na & ~constant
    kept = [f for f, k in zip(features, keep) if k]
    xk = x[:, keep]
    imputed_rows = []
    plates = df[plate_col].to_numpy() if plate_col in df.columns else np.zeros(len(df))
    wells = df[well_col].to_numpy() if well_col in df.columns else np.arange(len(df))
    if np.isnan(xk).any():
        overall = np.nanmedian(xk, axis=0)
        for plate in pd.unique(plates):
            rows = plates == plate
            block = xk[rows]
            if not np.isnan(block).any():
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(block, axis=0)
            med = np.where(np.isnan(med), overall, med)
            r, c = np.nonzero(np.isnan(block))
            idx = np.flatnonzero(rows)[r]
            block[r, c] = med[c]
            xk[rows] = block
            imputed_rows += [(kept[j], plates[i], wells[i]) for i, j in zip(idx, c)]
    report = CleaningReport(
        n_input=len(features),
        inf_to_nan=int(inf.sum()),
        dropped_na=[(f, float(s)) for f, s, d in zip(features, share, drop_na) if d],
        dropped_constant=[f for f, c in zip(features, constant) if c],
        imputed=pd.DataFrame(imputed_rows, columns=["column", "plate", "well"]),
    )
    meta = [c for c in df.columns if c not in set(features)]
    out = pd.concat([df[meta].reset_index(drop=True), pd.DataFrame(xk.astype(np.float32), columns=kept)], axis=1)
    out.index = df.index
    return out, kept, report
