"""Per-MOA breakdown, confusion matrices and a 2-D embedding map of the evaluated test wells.

Definitions
-----------
Wells
    The wells the embedding suite scores (:func:`~moa_core.evaluation.suite.evaluate_embeddings`):
    :func:`~moa_core.evaluation.filtering.filter_test_wells` with the suite's defaults (DMSO
    dropped, wells without MOA dropped, MOAs with fewer than 2 distinct compounds dropped),
    in input row order.
k-NN vote
    :func:`~moa_core.evaluation.knn.knn_from_similarity` on the suite's PCC matrix
    (:func:`~moa_core.evaluation.similarity.pearson_similarity_matrix`): leave-one-out over
    the wells, neighbours ranked by PCC (ties: lower row first), plurality vote with the
    nearest-member class tie rule. ``k`` is the one given or, by default, the smallest k
    maximizing the weighted F1 (``KNNResult.best["f1"]``, the suite's ``best_f1`` k).
Class latent assignment
    :func:`~moa_core.evaluation.latent.latent_from_array`: leave-one-out MOA medians, the
    prediction is the MOA whose median has the highest PCC with the well.
Per-MOA metrics (:func:`per_moa_metrics`)
    For MOA ``c`` with ``n_c`` wells whose true MOA is ``c`` (support), ``p_c`` wells
    predicted as ``c`` and ``tp_c`` wells both: precision = tp_c / p_c, recall =
    tp_c / n_c, F1 = 2 tp_c / (p_c + n_c); a ratio with a zero denominator is 0
    (scikit-learn's ``zero_division=0``). Their support-weighted mean is the suite's
    weighted F1 (:func:`~moa_core.evaluation._common.weighted_prf`).
Confusion (:func:`confusion_counts`)
    ``count`` = number of wells with true MOA ``true_moa`` predicted as ``predicted_moa``;
    pairs that never occur (count 0) are not listed; the diagonal holds the correct votes.
Embedding map (:func:`embedding_map`)
    Each well's embedding is first row-centred and scaled to unit L2 norm
    (:func:`~moa_core.evaluation.similarity.row_center_normalize`: the representation whose
    dot products are the PCCs every analysis uses, so a per-well offset or scale that PCC
    ignores does not dominate the map; ``pcc_rows=False`` maps the raw features). Then PCA
    (scikit-learn, 2 components, column-centred, not scaled; ARPACK solver with a fixed
    ``random_state`` for the top two components, full SVD when a side has <= 2 elements) is
    fitted on one method's wells only; ``pc1``/``pc2`` are the well scores and ``explained_1``/
    ``explained_2`` the explained-variance ratios of the two components (the same on every
    row). Component signs follow scikit-learn's deterministic SVD sign convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

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
    require_min_classes,
)
from .filtering import filter_test_wells
from .knn import knn_from_similarity
from .latent import latent_from_array
from .similarity import feature_matrix, pearson_similarity_matrix, row_center_normalize

__all__ = [
    "ANALYSES",
    "CONFUSION_COLUMNS",
    "MAP_COLUMNS",
    "PER_MOA_COLUMNS",
    "MoaPredictions",
    "confusion_counts",
    "embedding_map",
    "moa_predictions",
    "per_moa_breakdown",
    "per_moa_metrics",
]

#: Analyses whose per-well predictions are broken down.
ANALYSES = ("knn", "latent")
PER_MOA_COLUMNS = ["moa", "n", "precision", "recall", "f1"]
CONFUSION_COLUMNS = ["true_moa", "predicted_moa", "count"]
#: Metadata kept on every map row (a missing column becomes a missing value).
MAP_METADATA = ["Metadata_Plate", "Metadata_Well", "Metadata_pert_iname", "Metadata_moa"]
MAP_COLUMNS = [*MAP_METADATA, "pc1", "pc2", "explained_1", "explained_2"]


def _labels(values: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    return np.asarray(pd.Series(values, dtype=object).astype(str), dtype=object)


def per_moa_metrics(
    y_true: Sequence | np.ndarray | pd.Series,
    y_pred: Sequence | np.ndarray | pd.Series,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One-vs-rest precision, recall and F1 per MOA (see module docstring).

    Parameters
    ----------
    y_true, y_pred
        True and predicted MOA of every well (same length; compared as strings).
    classes
        MOAs to report, in this order (default: the sorted union of both label sets; an
        MOA that is only predicted has ``n = 0`` and recall 0).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PER_MOA_COLUMNS`: ``moa`` (str), ``n`` (int64, wells whose true MOA
        it is), ``precision``, ``recall``, ``f1`` (float64).
    """
    t, p = _labels(y_true), _labels(y_pred)
    if len(t) != len(p):
        raise MoaInputError(f"per-MOA metrics: {len(t)} true labels but {len(p)} predictions")
    names = sorted(set(t) | set(p)) if classes is None else [str(c) for c in classes]
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted((set(t) | set(p)) - set(index))
    if unknown:
        raise MoaInputError(f"per-MOA metrics: labels {unknown} are not in classes")
    ti = np.fromiter((index[v] for v in t), dtype=np.intp, count=len(t))
    pi = np.fromiter((index[v] for v in p), dtype=np.intp, count=len(p))
    c = len(names)
    support = np.bincount(ti, minlength=c).astype(np.int64)
    predicted = np.bincount(pi, minlength=c).astype(np.int64)
    tp = np.bincount(ti[ti == pi], minlength=c).astype(np.float64)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros(c), where=den > 0)

    return pd.DataFrame(
        {
            "moa": pd.Series(names, dtype=object),
            "n": support,
            "precision": ratio(tp, predicted.astype(np.float64)),
            "recall": ratio(tp, support.astype(np.float64)),
            "f1": ratio(2.0 * tp, (predicted + support).astype(np.float64)),
        }
    )


def confusion_counts(
    y_true: Sequence | np.ndarray | pd.Series,
    y_pred: Sequence | np.ndarray | pd.Series,
) -> pd.DataFrame:
    """Tidy confusion matrix: ``true_moa, predicted_moa, count`` for every pair that occurs.

    Rows are sorted by (true_moa, predicted_moa); ``count`` is int64 and sums to the number
    of wells.
    """
    t, p = _labels(y_true), _labels(y_pred)
    if len(t) != len(p):
        raise MoaInputError(f"confusion: {len(t)} true labels but {len(p)} predictions")
    df = pd.DataFrame({"true_moa": t, "predicted_moa": p})
    out = df.groupby(["true_moa", "predicted_moa"], sort=True).size().rename("count").reset_index()
    out["count"] = out["count"].astype(np.int64)
    return out[CONFUSION_COLUMNS]


@dataclass(frozen=True)
class MoaPredictions:
    """Per-well predictions of the k-NN vote and the class latent assignment.

    Attributes
    ----------
    wells : pandas.DataFrame
        The evaluated wells (metadata and features, suite filtering applied, input order).
    y_true : (N,) object array
        True MOA per well.
    predicted : dict
        analysis (``"knn"``, ``"latent"``) -> (N,) predicted MOA per well.
    k : int
        The k of the k-NN vote.
    classes : (C,) object array
        Sorted MOAs of the evaluated wells.
    X : (N, F) float64 array
        The validated feature matrix of ``wells`` (reused by :func:`embedding_map`).
    """

    wells: pd.DataFrame
    y_true: np.ndarray
    predicted: dict[str, np.ndarray]
    k: int
    classes: np.ndarray
    X: np.ndarray


def _evaluated_wells(
    df: pd.DataFrame, moa_col: str, compound_col: str, negcon: str, filter_wells: bool, min_compounds_per_moa: int
) -> pd.DataFrame:
    if not filter_wells:
        return df
    test, _ = filter_test_wells(
        df, moa_col=moa_col, compound_col=compound_col, negcon=negcon, min_compounds_per_moa=min_compounds_per_moa
    )
    return test


def moa_predictions(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    k: int | None = None,
    moa_col: str = DEFAULT_MOA_COL,
    compound_col: str = DEFAULT_COMPOUND_COL,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
    negcon: str = DEFAULT_NEGCON,
    filter_wells: bool = True,
    min_compounds_per_moa: int = 2,
) -> MoaPredictions:
    """Leave-one-out k-NN and class-latent predictions of every evaluated well (module docstring).

    Parameters
    ----------
    df
        Test wells of one method (controls may be included: they are filtered as by the suite).
    features
        Embedding columns.
    k
        Neighbours of the k-NN vote (default: the suite's best-F1 k); at most N - 1.
    filter_wells, min_compounds_per_moa
        As in :func:`~moa_core.evaluation.suite.evaluate_embeddings`.

    Raises
    ------
    MoaInputError
        Fewer than 2 MOAs or wells after filtering, ``k`` out of range, invalid features.
    """
    test = _evaluated_wells(df, moa_col, compound_col, negcon, filter_wells, min_compounds_per_moa)
    require_columns(test, [moa_col])
    codes, classes = encode_labels(test[moa_col], name=moa_col)
    require_min_classes(codes, 2, "per-MOA breakdown")
    names = LazyRowNames(test, plate_col, well_col)
    X = feature_matrix(test, features, plate_col=plate_col, well_col=well_col, min_rows=2)
    n = len(test)
    if k is not None and not 1 <= int(k) <= n - 1:
        raise MoaInputError(f"per-MOA breakdown: k must be in [1, {n - 1}] for {n} wells, got {k}")
    sim = pearson_similarity_matrix(X, names)
    knn = knn_from_similarity(sim, codes, classes=classes, max_k=None if k is None else int(k))
    k_used = int(knn.best["f1"][1]) if k is None else int(k)
    latent = latent_from_array(X, codes, classes, names)
    return MoaPredictions(
        wells=test,
        y_true=classes[codes],
        predicted={"knn": knn.predictions(k_used), "latent": latent.predictions()},
        k=k_used,
        classes=classes,
        X=X,
    )


def per_moa_breakdown(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    k: int | None = None,
    predictions: MoaPredictions | None = None,
    **kwargs: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-MOA metrics and confusion counts of the k-NN vote and the class latent assignment.

    Parameters
    ----------
    df, features, k, kwargs
        Passed to :func:`moa_predictions` (ignored when ``predictions`` is given).
    predictions
        Precomputed :func:`moa_predictions` output.

    Returns
    -------
    (per_moa, confusion)
        ``analysis`` + :data:`PER_MOA_COLUMNS` (every MOA of the evaluated wells, per
        analysis) and ``analysis`` + :data:`CONFUSION_COLUMNS`; ``analysis`` is ``"knn"``
        or ``"latent"``.
    """
    pr = predictions if predictions is not None else moa_predictions(df, features, k=k, **kwargs)
    per, conf = [], []
    for analysis in ANALYSES:
        pred = pr.predicted[analysis]
        per.append(per_moa_metrics(pr.y_true, pred, classes=list(pr.classes)).assign(analysis=analysis))
        conf.append(confusion_counts(pr.y_true, pred).assign(analysis=analysis))
    per_moa = pd.concat(per, ignore_index=True)[["analysis", *PER_MOA_COLUMNS]]
    confusion = pd.concat(conf, ignore_index=True)[["analysis", *CONFUSION_COLUMNS]]
    return per_moa, confusion


def embedding_map(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
    metadata: Sequence[str] = MAP_METADATA,
    pcc_rows: bool = True,
    X: np.ndarray | None = None,
) -> pd.DataFrame:
    """2-D PCA map of the wells of ``df`` (fitted on exactly these wells; see module docstring).

    Parameters
    ----------
    df
        Wells of one method (e.g. :attr:`MoaPredictions.wells`).
    features
        Embedding columns (validated: finite, no constant rows).
    metadata
        Columns copied to the output (string dtype; missing columns become missing values).
    pcc_rows
        Row-centre and L2-normalize every well before the PCA (default; see module docstring).
    X
        The validated feature matrix of ``df`` (e.g. :attr:`MoaPredictions.X`); computed from
        ``df[features]`` when omitted.

    Returns
    -------
    pandas.DataFrame
        ``metadata`` + ``pc1, pc2, explained_1, explained_2``, one row per well (input order).

    Raises
    ------
    MoaInputError
        Fewer than 2 wells or 2 features, invalid features.
    """
    from sklearn.decomposition import PCA

    if len(features) < 2:
        raise MoaInputError(f"embedding map: needs at least 2 features, got {len(features)}")
    if X is None:
        X = feature_matrix(df, features, plate_col=plate_col, well_col=well_col, min_rows=2)
    elif X.shape != (len(df), len(features)):
        raise MoaInputError(f"embedding map: X has shape {X.shape}, expected {(len(df), len(features))}")
    if pcc_rows:
        X = row_center_normalize(X, LazyRowNames(df, plate_col, well_col))
    small = min(X.shape) <= 2
    pca = PCA(n_components=2, svd_solver="full" if small else "arpack", random_state=None if small else 0)
    scores = pca.fit_transform(X)
    ratio = np.zeros(2)
    ratio[: len(pca.explained_variance_ratio_)] = np.nan_to_num(pca.explained_variance_ratio_)
    out = pd.DataFrame(index=range(len(df)))
    for col in metadata:
        values = df[col].to_numpy(dtype=object) if col in df.columns else [pd.NA] * len(df)
        out[col] = pd.array(values, dtype="string")
    out["pc1"] = scores[:, 0].astype(np.float64)
    out["pc2"] = scores[:, 1].astype(np.float64)
    out["explained_1"] = float(ratio[0])
    out["explained_2"] = float(ratio[1])
    return out
