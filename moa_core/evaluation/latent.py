"""Class latent assignment with leave-one-out MOA latent embeddings (paper Fig. 3e/5e).

Definitions
-----------
MLE
    The MOA latent embedding of a class is the feature-wise median (``np.median``,
    average of the two middle values for an even count) of its wells' embeddings.
Queries (leave-one-out)
    Every well is a query. The query's *own* class MLE is recomputed without the query
    (median of the other ``n_c - 1`` wells); every *other* class uses the MLE of all its
    wells. A class with a single well has no leave-one-out MLE: for that query its own
    class is not a candidate (so the query is necessarily misclassified); such queries
    are counted in ``n_singleton_queries`` (after the paper's filtering this cannot
    happen, since every MOA has >= 2 compounds).
Prediction
    The class whose MLE has the highest PCC with the query embedding. Exact ties go to
    the lowest class name (classes sorted as strings).
Metrics
    Support-weighted precision / recall / F1 (sklearn semantics, ``zero_division=0``,
    one-vs-rest per class then weighted by support) and accuracy over all queries.

Efficiency: the leave-one-out medians of a class are obtained from ONE per-feature sort
of that class: removing the element of rank ``r`` shifts order statistics at positions
``>= r`` by one, so all ``n_c`` LOO medians are gathered with ``take_along_axis``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import (
    DEFAULT_MOA_COL,
    DEFAULT_PLATE_COL,
    DEFAULT_WELL_COL,
    LazyRowNames,
    encode_labels,
    require_columns,
    require_min_classes,
    weighted_prf,
)
from .results import result_row, results_frame
from .similarity import feature_matrix, pearson_cross, row_center_normalize

__all__ = ["LatentResult", "class_latent_assignment", "latent_from_array", "leave_one_out_medians"]


def leave_one_out_medians(Xc: np.ndarray) -> np.ndarray:
    """Row ``i`` = ``np.median(np.delete(Xc, i, axis=0), axis=0)``, for all i at once.

    Parameters
    ----------
    Xc : (n, F) array with n >= 2.
    """
    Xc = np.asarray(Xc, dtype=np.float64)
    n = Xc.shape[0]
    if n < 2:
        raise ValueError("leave-one-out medians need at least 2 rows")
    order = np.argsort(Xc, axis=0, kind="stable")
    S = np.take_along_axis(Xc, order, axis=0)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n)[:, None], axis=0)
    m = n - 1

    def stat(p: int) -> np.ndarray:
        # p-th order statistic of the column without row i: S[p] if p < rank_i else S[p+1]
        return np.take_along_axis(S, p + (p >= rank), axis=0)

    if m % 2 == 1:
        return stat((m - 1) // 2)
    lo, hi = stat(m // 2 - 1), stat(m // 2)
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class LatentResult:
    """Class latent assignment outcome."""

    f1: float
    precision: float
    recall: float
    accuracy: float
    classes: np.ndarray
    y_codes: np.ndarray
    pred_codes: np.ndarray
    n_singleton_queries: int

    @property
    def n_queries(self) -> int:
        return int(len(self.y_codes))

    def predictions(self) -> np.ndarray:
        """Predicted MOA name per query (input row order)."""
        return self.classes[self.pred_codes]

    def to_results(self, method: str, analysis: str = "latent") -> pd.DataFrame:
        n = self.n_queries
        return results_frame(
            [result_row(method, analysis, m, getattr(self, m), n=n) for m in ("f1", "precision", "recall", "accuracy")]
        )


def latent_from_array(
    X: np.ndarray,
    y_codes: np.ndarray,
    classes: Sequence | np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> LatentResult:
    """Leave-one-out class latent assignment on an embedding array (see module docstring)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y_codes, dtype=np.intp)
    n_classes = int(y.max()) + 1 if classes is None else len(classes)
    classes = np.asarray(np.arange(n_classes) if classes is None else classes, dtype=object)
    members = [np.flatnonzero(y == c) for c in range(n_classes)]
    present = np.array([len(mm) > 0 for mm in members])
    medians = np.zeros((n_classes, X.shape[1]))
    for c, mm in enumerate(members):
        if len(mm):
            medians[c] = np.median(X[mm], axis=0)
    sims = np.full((len(y), n_classes), -np.inf)
    sims[:, present] = pearson_cross(
        X, medians[present], names, [f"MLE of {classes[c]}" for c in np.flatnonzero(present)]
    )
    n_single = 0
    for c, mm in enumerate(members):
        if len(mm) == 0:
            continue
        if len(mm) == 1:
            sims[mm[0], c] = -np.inf
            n_single += 1
            continue
        loo = leave_one_out_medians(X[mm])
        zq = row_center_normalize(X[mm])  # rows already validated by pearson_cross above
        zl = row_center_normalize(loo, [f"leave-one-out MLE of {classes[c]} without row {i}" for i in mm])
        sims[mm, c] = np.clip(np.einsum("ij,ij->i", zq, zl), -1.0, 1.0)
    pred = np.argmax(sims, axis=1)  # first maximum -> lowest class name
    m = weighted_prf(y, pred, n_classes)
    return LatentResult(
        f1=float(m["f1"]),
        precision=float(m["precision"]),
        recall=float(m["recall"]),
        accuracy=float(m["accuracy"]),
        classes=classes,
        y_codes=y,
        pred_codes=pred,
        n_singleton_queries=n_single,
    )


def class_latent_assignment(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    moa_col: str = DEFAULT_MOA_COL,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> LatentResult:
    """Leave-one-out MLE assignment of every well of ``df`` (see module docstring).

    Raises
    ------
    ValueError
        Missing MOA labels, fewer than 2 MOAs or 2 wells, NaN/inf features, constant rows
        or constant medians (named).
    """
    require_columns(df, [moa_col])
    codes, classes = encode_labels(df[moa_col], name=moa_col)
    require_min_classes(codes, 2, "class latent assignment")
    X = feature_matrix(df, features, plate_col=plate_col, well_col=well_col, min_rows=2)
    names = LazyRowNames(df, plate_col, well_col)
    return latent_from_array(X, codes, classes, names)
