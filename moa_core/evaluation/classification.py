"""Image-field (raw image) MOA classification metrics (paper Fig. 3a/5a, ESI Fig. 1).

Definitions
-----------
Inputs
    One row per image field: true MOA label, a probability (score) vector over
    ``classes`` (the model's output columns, which may include the control class), and
    optional per-field metadata (well, cell line, timepoint).
Control exclusion
    Fields whose true label is ``negcon`` (DMSO) are dropped, and the ``negcon`` score
    column (if any) is dropped for the precision-recall analysis (the paper excluded
    DMSO because of its over-representation). Remaining scores are NOT renormalized.
Micro AUPRC
    Labels binarized over the non-control classes with ``sklearn.preprocessing.label_binarize``
    (a 2-class problem is expanded to two one-hot columns), then
    ``sklearn.metrics.average_precision_score(Y, scores, average="micro")``.
    Baseline = positive prevalence of the binarized labels = ``1 / n_classes`` (one
    positive per field).
Accuracy
    ``argmax`` over *all* score columns (a field predicted as ``negcon`` is wrong)
    compared to the true label; random baseline ``1 / n_classes`` (non-control classes).
Subsets
    The same metrics per edge vs non-edge well (:func:`is_edge_well`), per cell line and
    per timepoint when the columns are given. A subset with no field is skipped; a
    subset's AUPRC is NaN when it has no positive at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import label_binarize

from moa_core.data.plates import is_edge_well, plate_dimensions
from moa_core.errors import MoaInputError

from ._common import DEFAULT_NEGCON, DEFAULT_WELL_COL
from .results import result_row, results_frame

__all__ = ["ClassificationResult", "classification_metrics", "is_edge_well", "plate_dimensions"]


@dataclass(frozen=True)
class ClassificationResult:
    """Per-subset classification metrics.

    ``table`` columns: ``subset`` (e.g. ``"all"``, ``"edge"``, ``"non_edge"``,
    ``"cell_line=A549"``, ``"timepoint=24"``), ``auprc_micro``, ``auprc_baseline``,
    ``accuracy``, ``accuracy_baseline``, ``n_fields``.
    """

    table: pd.DataFrame
    classes: np.ndarray

    def to_results(self, method: str, analysis: str = "classification") -> pd.DataFrame:
        rows = []
        for r in self.table.itertuples(index=False):
            suffix = "" if r.subset == "all" else f"[{r.subset}]"
            for m in ("auprc_micro", "auprc_baseline", "accuracy", "accuracy_baseline"):
                rows.append(result_row(method, analysis, m + suffix, getattr(r, m), n=r.n_fields))
        return results_frame(rows)


def _binarize(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    if len(classes) == 2:
        pos = (y == classes[1]).astype(int)
        return np.column_stack([1 - pos, pos])
    return label_binarize(y, classes=list(classes))


def classification_metrics(
    y_true: Sequence | np.ndarray,
    proba: np.ndarray,
    classes: Sequence | np.ndarray,
    meta: pd.DataFrame | None = None,
    *,
    negcon: str = DEFAULT_NEGCON,
    well_col: str | None = DEFAULT_WELL_COL,
    cell_line_col: str | None = "Metadata_cell_line",
    timepoint_col: str | None = "Metadata_timepoint",
    plate_format: int = 384,
) -> ClassificationResult:
    """Micro-AUPRC and accuracy of field-level MOA predictions, overall and by subset.

    Parameters
    ----------
    y_true : (n_fields,) labels
    proba : (n_fields, n_classes) scores, column j for ``classes[j]``
    classes : (n_classes,) class names of the score columns (may include ``negcon``)
    meta : pandas.DataFrame, optional
        Per-field metadata aligned with ``y_true``; subset columns that are ``None`` or
        absent from ``meta`` are skipped.

    Raises
    ------
    ValueError
        Shape mismatch, NaN/inf scores, true labels not in ``classes``, fewer than 2
        non-control classes, or no non-control field.
    """
    y = np.asarray(pd.Series(y_true).astype(str), dtype=object)
    P = np.asarray(proba, dtype=np.float64)
    cls = np.asarray([str(c) for c in classes], dtype=object)
    if P.ndim != 2 or P.shape != (len(y), len(cls)):
        raise MoaInputError(f"proba shape {P.shape} does not match ({len(y)} fields, {len(cls)} classes)")
    if len(set(cls)) != len(cls):
        raise MoaInputError("classes contain duplicates")
    if not np.isfinite(P).all():
        raise MoaInputError(f"proba contains NaN/inf in {int((~np.isfinite(P)).any(axis=1).sum())} field(s)")
    unknown = sorted(set(y) - set(cls))
    if unknown:
        raise MoaInputError(f"true labels not among classes: {unknown[:10]}")
    if meta is not None and len(meta) != len(y):
        raise MoaInputError(f"meta has {len(meta)} rows, expected {len(y)}")
    keep = y != str(negcon)
    if not keep.any():
        raise MoaInputError("no non-control fields to score")
    col_keep = cls != str(negcon)
    eval_cls = cls[col_keep]
    if len(eval_cls) < 2:
        raise MoaInputError("need at least 2 non-control classes")
    pred_all = cls[np.argmax(P, axis=1)]
    subsets: list[tuple[str, np.ndarray]] = [("all", keep)]
    if meta is not None:
        if well_col and well_col in meta.columns:
            edge = np.array([is_edge_well(w, plate_format) for w in meta[well_col].astype(str)])
            subsets += [("edge", keep & edge), ("non_edge", keep & ~edge)]
        for col, label in ((cell_line_col, "cell_line"), (timepoint_col, "timepoint")):
            if col and col in meta.columns:
                vals = meta[col].astype(str).to_numpy(dtype=object)
                for v in sorted(set(vals[keep])):
                    subsets.append((f"{label}={v}", keep & (vals == v)))
    rows = []
    for name, mask in subsets:
        n = int(mask.sum())
        if n == 0:
            continue
        Y = _binarize(y[mask], eval_cls)
        S = P[mask][:, col_keep]
        auprc = float(average_precision_score(Y, S, average="micro")) if Y.sum() > 0 else float("nan")
        rows.append(
            {
                "subset": name,
                "auprc_micro": auprc,
                "auprc_baseline": float(Y.mean()),
                "accuracy": float(np.mean(pred_all[mask] == y[mask])),
                "accuracy_baseline": 1.0 / len(eval_cls),
                "n_fields": n,
            }
        )
    return ClassificationResult(pd.DataFrame(rows), eval_cls)
