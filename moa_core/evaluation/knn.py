"""k-nearest-neighbour MOA classification for every k (paper Fig. 3d/5d).

Definitions
-----------
Queries
    Every well is a held-out query; its neighbours are all *other* wells (never itself).
Neighbour ranking (tie rule 1)
    Neighbours are ranked by PCC descending; wells with exactly equal PCC are ranked by
    ascending row position (lower row index first). Equivalent to Python
    ``sorted(others, key=lambda j: (-sim[i, j], j))``.
Prediction at k
    The majority (plurality) MOA among the k highest-ranked neighbours.
Class tie rule (tie rule 2)
    When several MOAs share the maximal count among the k neighbours, the prediction is
    the tied MOA whose *nearest member* ranks first (i.e. whose first occurrence in the
    neighbour ranking is earliest). Hence k=1 predicts the nearest neighbour's MOA.
k range
    k = 1, ..., N - 1 (all possible values; ``max_k`` may cap it).
Metrics
    For each k: support-weighted precision, recall and F1 with sklearn semantics
    (``precision_recall_fscore_support(y, pred_k, average="weighted", zero_division=0)``)
    plus accuracy (= weighted recall). Computed with vectorized confusion counts.
Best k
    For each metric the maximal value and the smallest k reaching it.

Algorithm
---------
O(N^2 log N) time: each query's similarity row is argsorted once (stable), then the
neighbour labels are swept over k with running per-(query, class) counts and
first-occurrence ranks, maintaining the current winner incrementally (only the class
that just gained a vote can overtake it). Queries are processed in chunks so the
transient memory is bounded by ``chunk_elements`` matrix entries (a few arrays of that
size), independent of the number of classes; the count state is ``chunk x C`` int32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._common import (
    DEFAULT_MOA_COL,
    DEFAULT_PLATE_COL,
    DEFAULT_WELL_COL,
    _prf_from_counts,
    check_sim,
    encode_labels,
    require_columns,
    require_min_classes,
)
from .results import result_row, results_frame
from .similarity import pearson_similarity

__all__ = ["KNNResult", "knn_curves", "knn_from_similarity", "neighbor_order"]

_METRICS = ("f1", "precision", "recall", "accuracy")


@dataclass(frozen=True)
class KNNResult:
    """Per-k k-NN curves and (optionally) per-query predictions.

    Attributes
    ----------
    k : (K,) int array
        1..K.
    f1, precision, recall, accuracy : (K,) float arrays
        Weighted metrics per k.
    classes : (C,) object array
        Sorted class names; codes index into it.
    y_codes : (N,) int array
        True class code per query (row order of the input).
    pred_codes : (K, N) int array or None
        ``pred_codes[k-1, i]`` = predicted class code of query ``i`` at k.
    best : dict
        metric -> ``(best value, smallest k achieving it)``.
    """

    k: np.ndarray
    f1: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    accuracy: np.ndarray
    classes: np.ndarray
    y_codes: np.ndarray
    pred_codes: np.ndarray | None = None
    best: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def n_queries(self) -> int:
        return int(len(self.y_codes))

    def predictions(self, k: int) -> np.ndarray:
        """Predicted MOA names of all queries at ``k`` (requires ``store_predictions``)."""
        if self.pred_codes is None:
            raise ValueError("predictions were not stored (store_predictions=False)")
        if not 1 <= k <= len(self.k):
            raise ValueError(f"k must be in [1, {len(self.k)}], got {k}")
        return self.classes[self.pred_codes[k - 1]]

    def curves(self) -> pd.DataFrame:
        """DataFrame ``k, f1, precision, recall, accuracy``."""
        return pd.DataFrame(
            {"k": self.k, "f1": self.f1, "precision": self.precision, "recall": self.recall, "accuracy": self.accuracy}
        )

    def to_results(self, method: str, analysis: str = "knn", include_curves: bool = True) -> pd.DataFrame:
        """Tidy rows: ``best_<metric>`` (parameter = best k) and, optionally, every k of every curve."""
        rows = []
        n = self.n_queries
        for m in _METRICS:
            v, kb = self.best[m]
            rows.append(result_row(method, analysis, f"best_{m}", v, parameter=kb, n=n))
        if include_curves:
            for m in _METRICS:
                vals = getattr(self, m)
                rows.extend(
                    result_row(method, analysis, m, float(v), parameter=int(k), n=n) for k, v in zip(self.k, vals)
                )
        return results_frame(rows)


def neighbor_order(sim_rows: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    """Neighbour ranking of several queries (tie rule 1), self excluded.

    Parameters
    ----------
    sim_rows : (b, N) array
        Similarity rows of the queries.
    row_ids : (b,) int array
        Row position of each query (its own column is excluded).

    Returns
    -------
    (b, N-1) intp array of neighbour row positions, best first.
    """
    S = np.negative(sim_rows)  # copy; stable sort of -sim == descending sim, lower index first on ties
    S[np.arange(len(row_ids)), row_ids] = np.inf  # self goes last
    order = np.argsort(S, axis=1, kind="stable")
    return order[:, : sim_rows.shape[1] - 1]


def knn_from_similarity(
    sim: np.ndarray,
    y_codes: np.ndarray,
    *,
    classes: Sequence | np.ndarray | None = None,
    max_k: int | None = None,
    store_predictions: bool = True,
    chunk_elements: int = 1 << 23,
) -> KNNResult:
    """k-NN curves for k = 1..``max_k`` (default N-1) from a PCC matrix (see module docstring).

    Parameters
    ----------
    sim : (N, N) array
        Similarity matrix.
    y_codes : (N,) int array
        Class codes in ``[0, C)``.
    classes : sequence, optional
        Class names (default: the codes themselves).
    max_k : int, optional
        Largest k (default and maximum N - 1).
    store_predictions : bool
        Keep the ``(K, N)`` prediction matrix (int16 when C < 32768).
    chunk_elements : int
        Approximate number of similarity entries processed per query chunk.
    """
    y = np.asarray(y_codes, dtype=np.intp)
    n = len(y)
    check_sim(sim, n)
    if n < 2:
        raise ValueError(f"k-NN needs at least 2 wells, got {n}")
    n_classes = int(y.max()) + 1 if classes is None else len(classes)
    if classes is None:
        classes = np.arange(n_classes)
    classes = np.asarray(classes, dtype=object)
    K = n - 1 if max_k is None else int(max_k)
    if not 1 <= K <= n - 1:
        raise ValueError(f"max_k must be in [1, {n - 1}], got {max_k}")
    pred_dtype = np.int16 if n_classes < np.iinfo(np.int16).max else np.int32
    pred_all = np.empty((K, n), dtype=pred_dtype) if store_predictions else None
    tp = np.zeros((K, n_classes), dtype=np.int64)
    npred = np.zeros((K, n_classes), dtype=np.int64)
    support = np.bincount(y, minlength=n_classes)
    chunk = max(1, int(chunk_elements) // n)
    karange = np.arange(K, dtype=np.int64)[:, None] * n_classes
    for q0 in range(0, n, chunk):
        q1 = min(n, q0 + chunk)
        b = q1 - q0
        order = neighbor_order(sim[q0:q1], np.arange(q0, q1))[:, :K]
        labels_t = np.ascontiguousarray(y[order].T.astype(np.int32))  # (K, b)
        del order
        pred = _sweep(labels_t, n_classes)  # (K, b) int32
        if pred_all is not None:
            pred_all[:, q0:q1] = pred
        yq = y[q0:q1]
        flat = (pred + karange).ravel()
        npred += np.bincount(flat, minlength=K * n_classes).reshape(K, n_classes)
        hit = pred == yq[None, :]
        tflat = (np.broadcast_to(yq[None, :], (K, b)) + karange)[hit]
        tp += np.bincount(tflat, minlength=K * n_classes).reshape(K, n_classes)
        del pred, flat, hit, tflat, labels_t
    m = _prf_from_counts(tp.astype(np.float64), npred.astype(np.float64), support.astype(np.float64)[None, :])
    ks = np.arange(1, K + 1)
    best = {}
    for name in _METRICS:
        arr = m[name]
        i = int(np.argmax(arr))  # first maximum -> smallest k
        best[name] = (float(arr[i]), int(ks[i]))
    return KNNResult(
        k=ks,
        f1=m["f1"],
        precision=m["precision"],
        recall=m["recall"],
        accuracy=m["accuracy"],
        classes=classes,
        y_codes=y,
        pred_codes=pred_all,
        best=best,
    )


def _sweep(labels_t: np.ndarray, n_classes: int) -> np.ndarray:
    """Incremental plurality vote with the nearest-member tie rule.

    ``labels_t[k, r]`` is the class of the (k+1)-th neighbour of query r. Returns
    ``pred[k, r]`` = winner among the first k+1 neighbours. Invariant: ``best`` is the
    argmax of the key ``(count, -first_rank)`` over classes; adding one neighbour of class
    ``c`` only changes c's key, so the new winner is ``best`` or ``c``.
    """
    K, b = labels_t.shape
    counts = np.zeros(b * n_classes, dtype=np.int32)
    first = np.full(b * n_classes, K, dtype=np.int32)
    base = np.arange(b, dtype=np.int64) * n_classes
    pred = np.empty((K, b), dtype=np.int32)
    best = labels_t[0].copy()
    best_cnt = np.ones(b, dtype=np.int32)
    best_first = np.zeros(b, dtype=np.int32)
    idx0 = base + best
    counts[idx0] = 1
    first[idx0] = 0
    pred[0] = best
    for k in range(1, K):
        c = labels_t[k]
        idx = base + c
        cnt = counts[idx]
        cnt += 1
        counts[idx] = cnt
        f = first[idx]
        np.minimum(f, k, out=f)
        first[idx] = f
        better = cnt > best_cnt
        better |= (cnt == best_cnt) & (f < best_first)
        np.copyto(best, c, where=better)
        np.copyto(best_cnt, cnt, where=better)
        np.copyto(best_first, f, where=better)
        pred[k] = best
    return pred


def knn_curves(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    moa_col: str = DEFAULT_MOA_COL,
    max_k: int | None = None,
    store_predictions: bool = True,
    sim: np.ndarray | None = None,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> KNNResult:
    """k-NN MOA prediction for every k with weighted F1/precision/recall curves.

    Each well of ``df`` is a query against all other wells (see module docstring for
    the ranking and class tie rules). ``sim`` may be a precomputed PCC matrix aligned
    with ``df`` rows.

    Raises
    ------
    ValueError
        Missing MOA labels, fewer than 2 MOAs, fewer than 2 wells, invalid features.
    """
    require_columns(df, [moa_col])
    codes, classes = encode_labels(df[moa_col], name=moa_col)
    require_min_classes(codes, 2, "k-NN")
    if sim is None:
        sim = pearson_similarity(df, features, plate_col=plate_col, well_col=well_col)
    check_sim(sim, len(df))
    return knn_from_similarity(sim, codes, classes=classes, max_k=max_k, store_predictions=store_predictions)
