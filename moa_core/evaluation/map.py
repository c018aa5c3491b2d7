"""Mean average precision (mAP) retrieval metrics via ``copairs`` (beyond the paper).

Definitions
-----------
Average precision (AP) of a query profile: rank all its positive and negative partner
profiles by similarity (``distance="correlation"`` = PCC by default; copairs breaks
similarity ties by partner index), AP = mean over positives of precision at that
positive's rank. mAP of a group = mean AP over its query profiles. Significance:
copairs' permutation null (``null_size`` random rankings with the same numbers of
positives and total partners), ``p = (#{null mAP > observed} + 1) / (null_size + 1)``
as implemented by ``copairs.map.mean_average_precision``; Benjamini-Hochberg FDR over
groups (``corrected_p_value``); a group is *retrieved* when ``corrected_p_value <
threshold`` (default q < 0.05). ``fraction_retrieved`` = retrieved groups / groups.

Phenotypic activity (:func:`phenotypic_activity`)
    Query = each treatment well; positives = other wells of the same compound (and same
    ``extra_sameby`` values, e.g. dose); negatives = negative-control (DMSO) wells on the
    same plate. Groups = compounds (x ``extra_sameby``). Control wells never act as queries;
    rows with a missing compound / plate / ``extra_sameby`` value are ignored.
Replicate consistency (:func:`replicate_consistency`)
    Query = each treatment well; positives = other wells of the same compound (any plate);
    negatives = wells of *other treatments* on the query's plate (controls excluded; the
    same-plate rule of activity keeps it tractable at JUMP scale). Groups = compounds. High when a
    compound's replicates resemble each other more than they resemble other compounds
    (activity asks the same against DMSO).
Phenotypic consistency (:func:`phenotypic_consistency`)
    Profiles = treatment wells (``level="well"``) or per-compound median profiles
    (``level="compound"``); controls and rows without an MOA are excluded. Positives =
    same MOA, different compound; negatives = different MOA. Groups = MOAs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from copairs.map import average_precision, mean_average_precision
from copairs.matching import UnpairedException, assign_reference_index

from moa_core.errors import MoaInputError

from ._common import (
    DEFAULT_COMPOUND_COL,
    DEFAULT_MOA_COL,
    DEFAULT_NEGCON,
    DEFAULT_PLATE_COL,
    DEFAULT_WELL_COL,
    require_columns,
)
from .results import result_row, results_frame
from .similarity import feature_matrix

__all__ = ["MapResult", "phenotypic_activity", "phenotypic_consistency", "replicate_consistency"]

_REF_COL = "Metadata_copairs_reference_index"
logging.getLogger("copairs").setLevel(logging.WARNING)


@dataclass(frozen=True)
class MapResult:
    """copairs AP / mAP tables.

    Attributes
    ----------
    ap : pandas.DataFrame
        Per-query AP (copairs ``average_precision`` output).
    map : pandas.DataFrame
        Per-group mAP (copairs ``mean_average_precision`` output: group columns,
        ``mean_average_precision``, ``p_value``, ``corrected_p_value``, ``below_p``,
        ``below_corrected_p``, ...).
    kind : str
        ``"activity"`` or ``"consistency"``.
    threshold : float
        FDR level.
    """

    ap: pd.DataFrame
    map: pd.DataFrame
    kind: str
    threshold: float

    @property
    def fraction_retrieved(self) -> float:
        return float(self.map["below_corrected_p"].mean()) if len(self.map) else float("nan")

    @property
    def mean_map(self) -> float:
        return float(self.map["mean_average_precision"].mean()) if len(self.map) else float("nan")

    def to_results(self, method: str, analysis: str | None = None) -> pd.DataFrame:
        an = analysis or f"map_{self.kind}"
        n = len(self.map)
        n_q = int(self.ap["average_precision"].notna().sum())
        return results_frame(
            [
                result_row(method, an, "mean_map", self.mean_map, n=n),
                result_row(method, an, "fraction_retrieved", self.fraction_retrieved, parameter=self.threshold, n=n),
                result_row(method, an, "mean_ap", float(self.ap["average_precision"].mean()), n=n_q),
            ]
        )


def _run(
    meta: pd.DataFrame,
    feats: np.ndarray,
    pos_sameby: list[str],
    pos_diffby: list[str],
    neg_sameby: list[str],
    neg_diffby: list[str],
    group_by: list[str],
    *,
    kind: str,
    null_size: int,
    threshold: float,
    seed: int,
    distance: str,
    batch_size: int,
    cache_dir: str | Path | None,
) -> MapResult:
    try:
        ap = average_precision(
            meta,
            feats,
            pos_sameby=pos_sameby,
            pos_diffby=pos_diffby,
            neg_sameby=neg_sameby,
            neg_diffby=neg_diffby,
            batch_size=batch_size,
            distance=distance,
            progress_bar=False,
        )
    except UnpairedException as exc:
        raise MoaInputError(f"mAP ({kind}): {exc}") from exc
    valid = ap["average_precision"].notna() & (ap["n_pos_pairs"] > 0)
    if not valid.any():
        raise MoaInputError(f"mAP ({kind}): no query has both positive and negative partners")
    maps = mean_average_precision(
        ap,
        sameby=group_by,
        null_size=null_size,
        threshold=threshold,
        seed=seed,
        progress_bar=False,
        cache_dir=cache_dir,
    )
    return MapResult(ap=ap, map=maps, kind=kind, threshold=threshold)


def phenotypic_activity(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    compound_col: str = DEFAULT_COMPOUND_COL,
    plate_col: str = DEFAULT_PLATE_COL,
    negcon: str = DEFAULT_NEGCON,
    extra_sameby: Sequence[str] = (),
    null_size: int = 10_000,
    threshold: float = 0.05,
    seed: int = 0,
    distance: str = "correlation",
    batch_size: int = 20_000,
    cache_dir: str | Path | None = None,
    well_col: str = DEFAULT_WELL_COL,
) -> MapResult:
    """Replicate retrieval against same-plate controls (see module docstring).

    ``df`` must contain the control wells. ``cache_dir`` is passed to copairs (its
    default caches null distributions under ``~/.copairs``).
    """
    cols = [compound_col, plate_col, *extra_sameby]
    require_columns(df, cols)
    df = df[df[cols].notna().all(axis=1).to_numpy()]
    feats = feature_matrix(df, features, plate_col=plate_col, well_col=well_col, min_rows=2)
    meta = df[cols].reset_index(drop=True).astype(str)
    ctl = pd.Index(np.flatnonzero(meta[compound_col].to_numpy() == str(negcon)))
    if len(ctl) == 0:
        raise MoaInputError(f"mAP (activity): no control wells ({compound_col} == {negcon!r})")
    meta = assign_reference_index(meta, ctl, reference_col=_REF_COL, default_value=-1)
    return _run(
        meta,
        feats,
        pos_sameby=[compound_col, *extra_sameby, _REF_COL],
        pos_diffby=[],
        neg_sameby=[plate_col],
        neg_diffby=[compound_col, _REF_COL],
        group_by=[compound_col, *extra_sameby],
        kind="activity",
        null_size=null_size,
        threshold=threshold,
        seed=seed,
        distance=distance,
        batch_size=batch_size,
        cache_dir=cache_dir,
    )


def phenotypic_consistency(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    moa_col: str = DEFAULT_MOA_COL,
    compound_col: str = DEFAULT_COMPOUND_COL,
    negcon: str = DEFAULT_NEGCON,
    level: Literal["well", "compound"] = "well",
    null_size: int = 10_000,
    threshold: float = 0.05,
    seed: int = 0,
    distance: str = "correlation",
    batch_size: int = 20_000,
    cache_dir: str | Path | None = None,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> MapResult:
    """MOA retrieval: same-MOA different-compound positives vs different-MOA negatives."""
    if level not in ("well", "compound"):
        raise ValueError(f"level must be 'well' or 'compound', got {level!r}")
    require_columns(df, [moa_col, compound_col])
    ctl = (df[compound_col].astype("string") == str(negcon)).fillna(False).to_numpy(bool)
    d = df[~ctl & df[moa_col].notna().to_numpy()]
    feats = feature_matrix(d, features, plate_col=plate_col, well_col=well_col, min_rows=2)
    meta = d[[moa_col, compound_col]].reset_index(drop=True).astype(str)
    if level == "compound":
        if meta.groupby(compound_col)[moa_col].nunique().max() > 1:
            raise MoaInputError("mAP (consistency): a compound has several MOAs; cannot aggregate")
        codes, uniq = pd.factorize(meta[compound_col], sort=True)
        feats = np.stack([np.median(feats[codes == i], axis=0) for i in range(len(uniq))])
        meta = meta.drop_duplicates(compound_col).set_index(compound_col).loc[list(uniq)].reset_index()
    if meta[moa_col].nunique() < 2:
        raise MoaInputError("mAP (consistency): needs at least 2 MOAs")
    return _run(
        meta,
        feats,
        pos_sameby=[moa_col],
        pos_diffby=[compound_col],
        neg_sameby=[],
        neg_diffby=[moa_col],
        group_by=[moa_col],
        kind="consistency",
        null_size=null_size,
        threshold=threshold,
        seed=seed,
        distance=distance,
        batch_size=batch_size,
        cache_dir=cache_dir,
    )


def replicate_consistency(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    compound_col: str = DEFAULT_COMPOUND_COL,
    negcon: str = DEFAULT_NEGCON,
    null_size: int = 10_000,
    threshold: float = 0.05,
    seed: int = 0,
    distance: str = "correlation",
    batch_size: int = 20_000,
    cache_dir: str | Path | None = None,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> MapResult:
    """Replicate retrieval against other treatments (see module docstring)."""
    require_columns(df, [compound_col])
    ctl = (df[compound_col].astype("string") == str(negcon)).fillna(False).to_numpy(bool)
    d = df[~ctl & df[compound_col].notna().to_numpy()]
    feats = feature_matrix(d, features, plate_col=plate_col, well_col=well_col, min_rows=2)
    require_columns(d, [plate_col])
    meta = d[[compound_col, plate_col]].reset_index(drop=True).astype(str)
    if meta[compound_col].nunique() < 2:
        raise MoaInputError("mAP (replicate consistency): needs at least 2 treatments")
    return _run(
        meta,
        feats,
        pos_sameby=[compound_col],
        pos_diffby=[],
        neg_sameby=[plate_col],
        neg_diffby=[compound_col],
        group_by=[compound_col],
        kind="replicate",
        null_size=null_size,
        threshold=threshold,
        seed=seed,
        distance=distance,
        batch_size=batch_size,
        cache_dir=cache_dir,
    )
