"""MOA prediction for held-out compounds (paper Fig. 4, "Analysis for held-out compounds").

Definitions
-----------
Split (:func:`moa_core.splits.choose_holdout_compounds`)
    For every MOA represented by at least two distinct (non-control) compounds, one
    compound is held out, chosen uniformly at random with ``numpy.random.default_rng(seed)``
    (MOAs visited in sorted order, candidate compounds sorted, so the choice is
    reproducible).
MLE
    For each MOA of the *training* wells (negative controls and wells without an MOA
    excluded), the feature-wise median of its well embeddings.
Individual vote
    Each held-out well is assigned the MOA of its most similar MLE (PCC; exact ties ->
    lowest MOA name). A compound's MOAs are ranked by (1) number of its wells voting
    for the MOA, descending, (2) mean PCC of its wells to that MLE, descending,
    (3) MOA name ascending. The prediction is the first-ranked MOA - i.e. the majority
    vote, with vote ties broken by the higher mean PCC.
Aggregated vote
    The compound latent embedding (CLE) is the feature-wise median of the compound's
    held-out wells; MOAs are ranked by PCC(CLE, MLE) descending (ties -> name ascending).
Top-k accuracy
    Fraction of held-out compounds whose true MOA is among the first k ranked MOAs,
    k = 1..``max_k``; random baseline ``min(1, k / n_classes)`` with ``n_classes`` the
    number of MLEs. A held-out compound whose MOA has no MLE can never be correct
    (counted in ``n_true_moa_without_mle``).
Scores
    Compound-level (top-1) support-weighted precision / recall / F1 (sklearn
    semantics, ``zero_division=0``) and accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

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
from .similarity import feature_matrix, pearson_cross

__all__ = ["HoldoutResult", "compound_holdout_eval"]

SCHEMES = ("individual", "aggregated")


def _treatment_mask(df: pd.DataFrame, moa_col: str, compound_col: str, negcon: str) -> np.ndarray:
    ctl = (df[compound_col].astype("string") == str(negcon)).fillna(False).to_numpy(bool)
    return ~ctl & df[moa_col].notna().to_numpy() & df[compound_col].notna().to_numpy()


@dataclass(frozen=True)
class HoldoutResult:
    """Held-out compound predictions.

    Attributes
    ----------
    predictions : pandas.DataFrame
        One row per (scheme, compound): ``scheme, compound, true_moa, predicted_moa,
        n_wells, true_rank`` (1-based rank of the true MOA, NaN if it has no MLE).
    top_k : pandas.DataFrame
        ``scheme, k, accuracy, random_baseline``.
    scores : pandas.DataFrame
        ``scheme, f1, precision, recall, accuracy`` (top-1, compound level).
    n_classes : int
        Number of MLEs (training MOAs).
    n_true_moa_without_mle : int
        Held-out compounds whose MOA is absent from training.
    """

    predictions: pd.DataFrame
    top_k: pd.DataFrame
    scores: pd.DataFrame
    n_classes: int
    n_true_moa_without_mle: int

    def to_results(self, method: str, analysis_prefix: str = "holdout") -> pd.DataFrame:
        rows = []
        for scheme in SCHEMES:
            an = f"{analysis_prefix}_{scheme}"
            n = int((self.predictions["scheme"] == scheme).sum())
            for r in self.top_k[self.top_k["scheme"] == scheme].itertuples(index=False):
                rows.append(result_row(method, an, "top_k_accuracy", r.accuracy, parameter=r.k, n=n))
                rows.append(result_row(method, an, "random_baseline", r.random_baseline, parameter=r.k, n=n))
            s = self.scores[self.scores["scheme"] == scheme].iloc[0]
            for m in ("f1", "precision", "recall", "accuracy"):
                rows.append(result_row(method, an, m, s[m], n=n))
        return results_frame(rows)


def compound_holdout_eval(
    train_df: pd.DataFrame,
    heldout_df: pd.DataFrame,
    features: Sequence[str],
    *,
    moa_col: str = DEFAULT_MOA_COL,
    compound_col: str = DEFAULT_COMPOUND_COL,
    negcon: str = DEFAULT_NEGCON,
    max_k: int = 10,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> HoldoutResult:
    """Predict held-out compounds' MOAs from training MLEs by individual and aggregated vote.

    See the module docstring for all definitions and tie rules.

    Raises
    ------
    ValueError
        Missing columns, NaN/inf/constant embeddings, fewer than 2 training MOAs, no
        held-out treatment wells, or overlapping train/held-out compounds.
    """
    for d in (train_df, heldout_df):
        require_columns(d, [moa_col, compound_col])
    tr = train_df[_treatment_mask(train_df, moa_col, compound_col, negcon)]
    ho = heldout_df[_treatment_mask(heldout_df, moa_col, compound_col, negcon)]
    if len(ho) == 0:
        raise MoaInputError("compound holdout: no held-out treatment wells")
    overlap = sorted(set(tr[compound_col].astype(str)) & set(ho[compound_col].astype(str)))
    if overlap:
        raise MoaInputError(f"compound holdout: compounds both in training and held out: {overlap[:10]}")
    y_tr, classes = encode_labels(tr[moa_col], name=moa_col)
    n_classes = len(classes)
    if n_classes < 2:
        raise MoaInputError("compound holdout: training set needs at least 2 MOAs")
    X_tr = feature_matrix(tr, features, plate_col=plate_col, well_col=well_col)
    X_ho = feature_matrix(ho, features, plate_col=plate_col, well_col=well_col)
    mle = np.stack([np.median(X_tr[y_tr == c], axis=0) for c in range(n_classes)])
    well_sims = pearson_cross(X_ho, mle, LazyRowNames(ho, plate_col, well_col), [f"MLE of {c}" for c in classes])
    class_index = {str(c): i for i, c in enumerate(classes)}
    tie = np.arange(n_classes)

    cpd_codes, cpds = encode_labels(ho[compound_col], name=compound_col)
    ho_moa = ho[moa_col].astype(str).to_numpy(dtype=object)
    records = []
    for ci, cpd in enumerate(cpds):
        rows = np.flatnonzero(cpd_codes == ci)
        moas = sorted(set(ho_moa[rows]))
        if len(moas) != 1:
            raise MoaInputError(f"compound holdout: compound {cpd} has several MOAs {moas}")
        true = moas[0]
        s = well_sims[rows]
        votes = np.bincount(np.argmax(s, axis=1), minlength=n_classes)
        order_ind = np.lexsort((tie, -s.mean(axis=0), -votes))
        cle = np.median(X_ho[rows], axis=0, keepdims=True)
        s_agg = pearson_cross(cle, mle, [f"CLE of {cpd}"])[0]
        order_agg = np.lexsort((tie, -s_agg))
        t = class_index.get(true)
        for scheme, order in (("individual", order_ind), ("aggregated", order_agg)):
            rank = float(np.flatnonzero(order == t)[0] + 1) if t is not None else np.nan
            records.append(
                {
                    "scheme": scheme,
                    "compound": str(cpd),
                    "true_moa": true,
                    "predicted_moa": str(classes[order[0]]),
                    "n_wells": int(len(rows)),
                    "true_rank": rank,
                }
            )
    pred = pd.DataFrame(records)
    ks = np.arange(1, max_k + 1)
    topk_rows, score_rows = [], []
    for scheme in SCHEMES:
        p = pred[pred["scheme"] == scheme]
        r = p["true_rank"].to_numpy(dtype=float)
        for k in ks:
            topk_rows.append(
                {
                    "scheme": scheme,
                    "k": int(k),
                    "accuracy": float(np.mean(r <= k)),
                    "random_baseline": min(1.0, k / n_classes),
                }
            )
        yt, yp = p["true_moa"].to_numpy(dtype=object), p["predicted_moa"].to_numpy(dtype=object)
        pr, rc, f1, _ = precision_recall_fscore_support(yt, yp, average="weighted", zero_division=0)
        score_rows.append(
            {
                "scheme": scheme,
                "f1": float(f1),
                "precision": float(pr),
                "recall": float(rc),
                "accuracy": float(np.mean(yt == yp)),
            }
        )
    n_missing = int(pred.loc[pred["scheme"] == "individual", "true_rank"].isna().sum())
    return HoldoutResult(pred, pd.DataFrame(topk_rows), pd.DataFrame(score_rows), n_classes, n_missing)
