"""Shared private helpers: column checks, label encoding, row names, weighted P/R/F1.

Nothing here is part of the public API; the public modules re-document every
convention they rely on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from moa_core.errors import MoaInputError, SchemaError

DEFAULT_MOA_COL = "Metadata_moa"
DEFAULT_COMPOUND_COL = "Metadata_broad_sample"
DEFAULT_PLATE_COL = "Metadata_Plate"
DEFAULT_WELL_COL = "Metadata_Well"
DEFAULT_NEGCON = "DMSO"

_MAX_NAMED = 10


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str = "metadata") -> None:
    """Raise :class:`SchemaError` naming every column of ``columns`` missing from ``df``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"missing {what} column(s): {missing}")


def row_names(
    df: pd.DataFrame,
    positions: Sequence[int] | np.ndarray | None = None,
    *,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> list[str]:
    """Human-readable names for rows (``plate/well`` when available, else the index label)."""
    if positions is None:
        positions = np.arange(len(df))
    positions = np.asarray(positions, dtype=np.intp)
    has_well = well_col in df.columns
    has_plate = plate_col in df.columns
    names = []
    for p in positions:
        parts = []
        if has_plate:
            parts.append(str(df[plate_col].iat[p]))
        if has_well:
            parts.append(str(df[well_col].iat[p]))
        if not parts:
            parts.append(f"index={df.index[p]!r}")
        names.append("/".join(parts))
    return names


def summarize_names(names: Sequence[str], limit: int = _MAX_NAMED) -> str:
    """``"a, b, c"`` or ``"a, b, ... (+n more)"``."""
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... (+{len(names) - limit} more)"


def encode_labels(
    values: pd.Series | np.ndarray | Sequence,
    *,
    name: str = "label",
    row_label: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Factorize labels into integer codes with classes sorted ascending (as strings).

    Returns ``(codes, classes)`` with ``classes[codes] == values``. Class order is
    ``sorted(set(str(v)))`` so every "lowest class name" tie rule in this package is
    simply "lowest code". Missing labels (None/NaN/pd.NA) raise
    :class:`MoaInputError` naming the offending rows.
    """
    ser = pd.Series(values, copy=False) if not isinstance(values, pd.Series) else values
    missing = ser.isna().to_numpy()
    if missing.any():
        idx = np.flatnonzero(missing)
        who = [row_label[i] for i in idx] if row_label is not None else [str(i) for i in idx]
        raise MoaInputError(
            f"{name}: {missing.sum()} row(s) have a missing label ({summarize_names(who)}); "
            "drop them first (see moa_core.evaluation.filter_test_wells)"
        )
    as_str = ser.astype(str).to_numpy(dtype=object)
    classes, codes = np.unique(as_str, return_inverse=True)
    return codes.astype(np.intp).reshape(-1), classes.astype(object)


def require_min_classes(codes: np.ndarray, minimum: int, what: str) -> None:
    """Raise :class:`MoaInputError` when fewer than ``minimum`` distinct labels are present."""
    n = len(np.unique(codes))
    if n < minimum:
        raise MoaInputError(f"{what}: needs at least {minimum} distinct MOAs, got {n}")


def weighted_prf(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    sample_weight: np.ndarray | None = None,
) -> dict[str, float]:
    """Support-weighted precision/recall/F1 and accuracy from integer codes.

    Equal to ``sklearn.metrics.precision_recall_fscore_support(y_true, y_pred,
    average="weighted", zero_division=0, sample_weight=sample_weight)`` and
    ``accuracy_score``: per class ``c`` with ``tp_c`` true positives, ``p_c``
    predicted and ``s_c`` true instances, precision = tp/p (0 when p == 0),
    recall = tp/s, F1 = 2 tp/(p + s) (0 when p + s == 0); the average is weighted
    by ``s_c`` (classes that are only predicted get weight 0).
    """
    y_true = np.asarray(y_true, dtype=np.intp)
    y_pred = np.asarray(y_pred, dtype=np.intp)
    w = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, float)
    support = np.bincount(y_true, weights=w, minlength=n_classes)
    predicted = np.bincount(y_pred, weights=w, minlength=n_classes)
    correct = y_true == y_pred
    tp = np.bincount(y_true[correct], weights=w[correct], minlength=n_classes)
    return _prf_from_counts(tp, predicted, support)


def _prf_from_counts(tp: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> dict[str, float]:
    """Weighted P/R/F1 + accuracy from per-class counts along the last axis (any leading shape)."""
    total = support.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec_c = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0)
        rec_c = np.where(support > 0, tp / np.where(support > 0, support, 1), 0.0)
        denom = predicted + support
        f1_c = np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1), 0.0)
        precision = (prec_c * support).sum(axis=-1) / total
        recall = (rec_c * support).sum(axis=-1) / total
        f1 = (f1_c * support).sum(axis=-1) / total
        accuracy = tp.sum(axis=-1) / total
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def linear_quantile_sorted(
    sorted_values: np.ndarray,
    percentiles: np.ndarray,
    *,
    repeat: int = 1,
    cum_weights: np.ndarray | None = None,
) -> np.ndarray:
    """``np.percentile(expanded, percentiles)`` (method="linear") from a sorted array.

    ``expanded`` is ``sorted_values`` with every element repeated ``repeat`` times, or
    element ``t`` repeated ``w_t`` times when integer ``cum_weights = cumsum(w)`` is
    given. Reproduces numpy's arithmetic exactly: ``q = p / 100``, virtual index
    ``v = (n - 1) q``, ``lo = floor(v)``, ``g = v - lo`` and the two-sided lerp
    ``a + (b - a) g`` (``b - (b - a)(1 - g)`` when ``g >= 0.5``), so the result is
    bit-identical to calling ``np.percentile`` on the materialized array.
    """
    q = np.true_divide(np.asarray(percentiles, dtype=np.float64), 100)
    if cum_weights is None:
        n = len(sorted_values) * repeat

        def at(pos: np.ndarray) -> np.ndarray:
            return sorted_values[pos // repeat]
    else:
        n = int(cum_weights[-1])

        def at(pos: np.ndarray) -> np.ndarray:
            return sorted_values[np.searchsorted(cum_weights, pos, side="right")]

    if n < 1:
        raise MoaInputError("cannot take a percentile of an empty set of pairs")
    v = (n - 1) * q
    lo = np.floor(v)
    hi = lo + 1
    above = v >= n - 1
    lo_i = np.where(above, n - 1, lo).astype(np.int64)
    hi_i = np.where(above, n - 1, hi).astype(np.int64)
    g = v - lo
    a = at(lo_i)
    b = at(hi_i)
    diff = b - a
    out = a + diff * g
    upper = g >= 0.5
    out[upper] = (b - diff * (1 - g))[upper]
    return out


def check_sim(sim: np.ndarray, n: int) -> None:
    """Raise ``ValueError`` unless ``sim`` is an ``(n, n)`` array aligned with the ``n`` wells."""
    from .blockwise import BlockSimilarity

    if not isinstance(sim, (np.ndarray, BlockSimilarity)) or sim.shape != (n, n):
        shape = getattr(sim, "shape", None)
        raise MoaInputError(f"similarity matrix shape {shape} does not match {n} wells")


class LazyRowNames:
    """Sequence of ``plate/well`` row names computed only when an error message needs them."""

    def __init__(self, df: pd.DataFrame, plate_col: str = DEFAULT_PLATE_COL, well_col: str = DEFAULT_WELL_COL) -> None:
        self._df, self._p, self._w = df, plate_col, well_col

    def __getitem__(self, i: int) -> str:
        return row_names(self._df, [int(i)], plate_col=self._p, well_col=self._w)[0]

    def __len__(self) -> int:
        return len(self._df)
