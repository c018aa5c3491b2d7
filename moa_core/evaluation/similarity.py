"""Pearson correlation (PCC, "centered cosine") between well embeddings.

Definition
----------
For embeddings ``x, y`` of length F, ``PCC(x, y) = <x - mean(x), y - mean(y)> /
(||x - mean(x)|| * ||y - mean(y)||)`` where means are taken *across features of
one well* (row-centering), exactly as ``np.corrcoef`` on two rows. The full matrix is
computed as ONE float64 matrix product ``Z @ Z.T`` with ``Z`` the row-centered,
row-L2-normalized embeddings. The result is made exactly symmetric, its diagonal is
set to exactly 1.0 and all entries are clipped to ``[-1, 1]`` (removes round-off
overshoot like ``1.0000000000000002``).

Validation (all raise ``ValueError`` subclasses from :mod:`moa_core.errors`)
------------------------------------------------------------------------------
* a feature column missing / non-numeric -> names the columns;
* NaN or +-inf anywhere -> names the offending feature columns and how many rows;
* a *constant row* (all features equal, zero variance across features) -> PCC is
  undefined for that well -> names the wells (``plate/well`` when those columns exist);
* fewer than 2 wells -> error.

Constant *feature columns* are fine: a column that is constant across wells shifts
every row's mean by the same amount and is harmless to PCC (it simply contributes
``c - mean(row)`` to each centered row), so it is not rejected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from moa_core.errors import MoaInputError, SchemaError

from ._common import DEFAULT_PLATE_COL, DEFAULT_WELL_COL, LazyRowNames, row_names, summarize_names

__all__ = [
    "feature_matrix",
    "pearson_similarity",
    "pearson_similarity_matrix",
    "pearson_cross",
    "row_center_normalize",
]


def feature_matrix(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
    min_rows: int = 1,
) -> np.ndarray:
    """Extract ``df[features]`` as a validated C-contiguous float64 array.

    Parameters
    ----------
    df : pandas.DataFrame
        Well-level table.
    features : list of str
        Feature columns, passed explicitly (never inferred).
    plate_col, well_col : str
        Used only to name offending wells in error messages.
    min_rows : int
        Minimum number of rows required.

    Returns
    -------
    numpy.ndarray
        ``(n_wells, n_features)`` float64.

    Raises
    ------
    SchemaError
        A feature column is missing or non-numeric, or ``features`` is empty.
    MoaInputError
        NaN/inf values (message names the columns and the number of rows), or fewer
        than ``min_rows`` rows.
    """
    features = list(features)
    if not features:
        raise SchemaError("features: empty feature list")
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise SchemaError(f"missing feature column(s): {summarize_names(missing)}")
    dupes = sorted({c for c in features if features.count(c) > 1})
    if dupes:
        raise SchemaError(f"duplicated feature column(s): {dupes}")
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]
    if non_numeric:
        raise SchemaError(f"non-numeric feature column(s): {summarize_names(non_numeric)}")
    if len(df) < min_rows:
        raise MoaInputError(f"need at least {min_rows} well(s), got {len(df)}")
    X = np.ascontiguousarray(df[features].to_numpy(dtype=np.float64, na_value=np.nan))
    bad = ~np.isfinite(X)
    if bad.any():
        cols = [features[j] for j in np.flatnonzero(bad.any(axis=0))]
        rows = np.flatnonzero(bad.any(axis=1))
        raise MoaInputError(
            f"features contain NaN/inf in {len(cols)} column(s) [{summarize_names(cols)}] "
            f"affecting {len(rows)} row(s) "
            f"[{summarize_names(row_names(df, rows[:10], plate_col=plate_col, well_col=well_col))}]"
        )
    return X


def row_center_normalize(X: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
    """Row-center and row-L2-normalize ``X`` (float64), so that ``Z @ Z.T`` is the PCC matrix.

    Raises
    ------
    MoaInputError
        A row is constant (zero variance across features; its PCC is undefined).
        The message names the rows (``names`` if given, else row positions).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise MoaInputError(f"expected a 2-D embedding array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise MoaInputError("embedding array contains NaN/inf")
    if X.shape[1] < 2:
        raise MoaInputError("PCC needs at least 2 features")
    const = X.max(axis=1) == X.min(axis=1)
    Z = X - X.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", Z, Z))
    const |= norms == 0
    if const.any():
        idx = np.flatnonzero(const)
        who = [names[i] for i in idx] if names is not None else [f"row {i}" for i in idx]
        raise MoaInputError(
            f"{len(idx)} constant embedding row(s) (zero variance across features, PCC undefined): "
            f"{summarize_names(who)}"
        )
    Z /= norms[:, None]
    return Z


def pearson_similarity_matrix(X: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
    """PCC matrix of the rows of ``X`` as one matrix product (see module docstring).

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, F)`` embeddings, n >= 2.
    names : list of str, optional
        Row names for error messages.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` float64, exactly symmetric, unit diagonal, values in ``[-1, 1]``.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise MoaInputError(f"need at least 2 wells to compute similarities, got shape {X.shape}")
    Z = row_center_normalize(X, names)
    sim = Z @ Z.T  # numpy dispatches A @ A.T to BLAS syrk and mirrors -> symmetric
    if not np.array_equal(sim, sim.T):  # pragma: no cover - depends on BLAS path
        n = sim.shape[0]
        step = 1024
        for i0 in range(0, n, step):
            i1 = min(n, i0 + step)
            sim[i0:i1, :i0] = sim[:i0, i0:i1].T
    np.clip(sim, -1.0, 1.0, out=sim)
    np.fill_diagonal(sim, 1.0)
    return sim


def pearson_similarity(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> np.ndarray:
    """Validated PCC matrix between the wells (rows) of ``df``.

    Equivalent to ``np.corrcoef(df[features].to_numpy())`` up to float64 round-off
    (and with an exactly unit diagonal). Row ``i`` / column ``i`` is ``df.iloc[i]``.

    Raises
    ------
    SchemaError, MoaInputError
        See module docstring (missing/non-numeric columns, NaN/inf, constant rows,
        fewer than 2 wells).
    """
    if len(df) < 2:
        raise MoaInputError(f"need at least 2 wells to compute similarities, got {len(df)}")
    X = feature_matrix(df, features, plate_col=plate_col, well_col=well_col, min_rows=2)
    names = LazyRowNames(df, plate_col, well_col)
    return pearson_similarity_matrix(X, names)


def pearson_cross(
    A: np.ndarray,
    B: np.ndarray,
    a_names: Sequence[str] | None = None,
    b_names: Sequence[str] | None = None,
) -> np.ndarray:
    """PCC between every row of ``A`` (n_a, F) and every row of ``B`` (n_b, F) -> (n_a, n_b).

    Used for query-vs-centroid (MLE) similarity. Same validation as
    :func:`pearson_similarity_matrix`; values are clipped to ``[-1, 1]``.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise MoaInputError(f"incompatible shapes for PCC: {A.shape} vs {B.shape}")
    out = row_center_normalize(A, a_names) @ row_center_normalize(B, b_names).T
    np.clip(out, -1.0, 1.0, out=out)
    return out
