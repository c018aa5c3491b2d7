"""Logistic-regression MOA classifier on embeddings (paper ESI Fig. 2).

Definitions
-----------
Model
    ``OneVsRestClassifier(LogisticRegression(C=1.0, l1_ratio=0.0, solver="lbfgs",
    max_iter=10000))``: one-vs-rest, L2 penalty (``l1_ratio=0`` is pure L2; sklearn >= 1.8
    deprecates ``penalty=``/``multi_class=``), L-BFGS, 10 000 iterations - the paper's
    settings (sklearn defaults except max_iter).
Features
    Used as given. The paper fed DMSO-standardized embeddings; this function adds NO
    extra scaling (standardize upstream, e.g. in :mod:`moa_core.profiles`).
Training set
    ``train_df`` wells. Label = MOA, except negative-control wells (``compound_col ==
    negcon``) which get the label ``negcon`` and are kept as a class when
    ``train_include_negcon`` (the paper trained with DMSO as a class but never scored
    it). Non-control training wells without an MOA are dropped and counted
    (``n_train_dropped``).
Scoring
    ``test_df`` wells excluding negative controls; a test well predicted as ``negcon``
    counts as an error. Support-weighted precision / recall / F1
    (``sklearn.metrics.precision_recall_fscore_support(average="weighted",
    zero_division=0)``, labels = union of true and predicted) and accuracy.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.multiclass import OneVsRestClassifier
from threadpoolctl import threadpool_limits

from moa_core.errors import MoaInputError

from ._common import (
    DEFAULT_COMPOUND_COL,
    DEFAULT_MOA_COL,
    DEFAULT_NEGCON,
    DEFAULT_PLATE_COL,
    DEFAULT_WELL_COL,
    LazyRowNames,
    encode_labels,
    require_columns,
)
from .results import result_row, results_frame
from .similarity import feature_matrix

__all__ = ["LogisticResult", "logistic_regression_eval"]


@dataclass(frozen=True)
class LogisticResult:
    """Test-set scores of the one-vs-rest logistic regression."""

    f1: float
    precision: float
    recall: float
    accuracy: float
    y_true: np.ndarray
    y_pred: np.ndarray
    classes: np.ndarray
    n_train: int
    n_train_dropped: int
    converged: bool

    @property
    def n_test(self) -> int:
        return int(len(self.y_true))

    def to_results(self, method: str, analysis: str = "logistic") -> pd.DataFrame:
        n = self.n_test
        return results_frame(
            [result_row(method, analysis, m, getattr(self, m), n=n) for m in ("f1", "precision", "recall", "accuracy")]
        )


def logistic_regression_eval(
    train_df: pd.DataFrame,
    test_df: pd.DataFrame,
    features: Sequence[str],
    *,
    moa_col: str = DEFAULT_MOA_COL,
    compound_col: str = DEFAULT_COMPOUND_COL,
    negcon: str = DEFAULT_NEGCON,
    train_include_negcon: bool = True,
    C: float = 1.0,
    max_iter: int = 10_000,
    n_jobs: int | None = None,
    blas_threads: int | None = 1,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> LogisticResult:
    """Train on ``train_df`` embeddings, score MOA predictions on ``test_df`` (see module docstring).

    ``n_jobs`` is passed to ``OneVsRestClassifier``. ``blas_threads`` caps BLAS threads
    during fit/predict (``threadpoolctl``): L-BFGS is a long sequence of small
    matrix-vector products for which multi-threaded OpenBLAS can be dramatically slower
    than one thread (~30x on a 2-core machine); ``None`` leaves BLAS threading alone.
    The model and its optimum are unchanged.

    Raises
    ------
    ValueError
        Missing columns, NaN/inf features, test wells without an MOA, fewer than 2
        training classes, or no scorable test wells.
    """
    require_columns(train_df, [moa_col, compound_col])
    require_columns(test_df, [moa_col, compound_col])
    is_ctl = (train_df[compound_col].astype("string") == str(negcon)).fillna(False).to_numpy(bool)
    has_moa = train_df[moa_col].notna().to_numpy()
    keep = (is_ctl & train_include_negcon) | (~is_ctl & has_moa)
    n_dropped = int((~is_ctl & ~has_moa).sum())
    tr = train_df[keep]
    y_train = np.where(is_ctl[keep], str(negcon), tr[moa_col].astype(str).to_numpy(dtype=object))
    if len(np.unique(y_train)) < 2:
        raise MoaInputError("logistic regression: training set needs at least 2 classes")
    X_train = feature_matrix(tr, features, plate_col=plate_col, well_col=well_col, min_rows=2)

    te_ctl = (test_df[compound_col].astype("string") == str(negcon)).fillna(False).to_numpy(bool)
    te = test_df[~te_ctl]
    if len(te) == 0:
        raise MoaInputError("logistic regression: no non-control test wells to score")
    y_codes, y_classes = encode_labels(te[moa_col], name=moa_col, row_label=LazyRowNames(te, plate_col, well_col))
    y_test = y_classes[y_codes]
    X_test = feature_matrix(te, features, plate_col=plate_col, well_col=well_col)

    model = OneVsRestClassifier(LogisticRegression(C=C, l1_ratio=0.0, solver="lbfgs", max_iter=max_iter), n_jobs=n_jobs)
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X_train, y_train)
        y_pred = np.asarray(model.predict(X_test), dtype=object)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    p, r, f, _ = precision_recall_fscore_support(y_test, y_pred, average="weighted", zero_division=0)
    return LogisticResult(
        f1=float(f),
        precision=float(p),
        recall=float(r),
        accuracy=float(accuracy_score(y_test, y_pred)),
        y_true=np.asarray(y_test, dtype=object),
        y_pred=y_pred,
        classes=np.asarray(model.classes_, dtype=object),
        n_train=int(len(tr)),
        n_train_dropped=n_dropped,
        converged=converged,
    )
