"""Train/validation/test splits of Wong et al. (2023).

Well holdout (Methods, "Data preprocessing and model training"): wells are shuffled
and partitioned 60/10/30 *independently for each MOA*, so every MOA is present in every
split; a well and all its fields go to exactly one split. DMSO is a class of its own.
Only single-MOA compounds are kept. MOAs with a single compound stay in training but
are excluded from test analyses (``Metadata_eval_eligible``).

Compound holdout ("Analysis for held-out compounds"): one randomly chosen compound per
MOA that has at least two compounds is held out; the remaining wells are split 70/30
into training and validation at random.

Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from moa_core.data.design import NEGCON, is_multi_moa
from moa_core.errors import SchemaError

SPLIT_COL = "Metadata_split"
ELIGIBLE_COL = "Metadata_eval_eligible"


@dataclass
class SplitReport:
    wells_in: int
    dropped_multi_moa: int
    dropped_unannotated: int
    train_only_moas: list[str]

    def as_metadata(self) -> dict:
        return {
            "wells_in": self.wells_in,
            "dropped_multi_moa_wells": self.dropped_multi_moa,
            "dropped_unannotated_wells": self.dropped_unannotated,
            "train_only_moas": len(self.train_only_moas),
        }


def _rng(seed: int, *parts: object) -> np.random.Generator:
    key = zlib.crc32("|".join(map(str, parts)).encode())
    return np.random.default_rng(np.random.SeedSequence([seed, key]))


def _check(wells: pd.DataFrame, cols: list[str]) -> None:
    missing = [c for c in cols if c not in wells.columns]
    if missing:
        raise SchemaError(f"well table lacks column(s) {missing}")
    if wells.empty:
        raise SchemaError("well table is empty (empty partition?)")


def single_moa_wells(
    wells: pd.DataFrame, moa_col: str = "Metadata_moa", single_col: str = "Metadata_single_moa"
) -> tuple[pd.DataFrame, int, int]:
    """Keep DMSO and single-MOA compounds; return (kept, n multi-MOA dropped, n unannotated dropped)."""
    unannotated = wells[moa_col].isna()
    if single_col in wells.columns:
        multi = ~unannotated & ~wells[single_col].astype(bool) & wells[moa_col].ne(NEGCON)
    else:
        multi = ~unannotated & is_multi_moa(wells[moa_col])
    keep = ~(unannotated | multi)
    return wells[keep].copy(), int(multi.sum()), int(unannotated.sum())


def eligible_for_evaluation(
    wells: pd.DataFrame, moa_col: str = "Metadata_moa", compound_col: str = "Metadata_broad_sample"
) -> pd.Series:
    """True for non-DMSO wells whose MOA has at least two distinct compounds."""
    n_cpd = wells.groupby(moa_col)[compound_col].transform("nunique")
    return wells[moa_col].ne(NEGCON) & (n_cpd >= 2)


def well_holdout_split(
    wells: pd.DataFrame,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.1, 0.3),
    moa_col: str = "Metadata_moa",
    compound_col: str = "Metadata_broad_sample",
) -> tuple[pd.DataFrame, SplitReport]:
    """The paper's 60/10/30 well split, per MOA (DMSO included as a class).

    Per MOA with ``n >= 3`` wells: ``n_test = max(1, round(0.3 n))``,
    ``n_val = max(1, round(0.1 n))``, the rest train. MOAs with fewer than 3 wells
    cannot appear in every split; they go to training only and are reported.

    Returns the kept wells with :data:`SPLIT_COL` and :data:`ELIGIBLE_COL` added.
    """
    _check(wells, ["Metadata_Plate", "Metadata_Well", moa_col, compound_col])
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    n_in = len(wells)
    kept, n_multi, n_unann = single_moa_wells(wells, moa_col)
    if kept.empty:
        raise SchemaError("no single-MOA or DMSO wells left after filtering")
    kept = kept.sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    split = np.empty(len(kept), dtype=object)
    train_only = []
    for moa, idx in kept.groupby(moa_col, sort=True).indices.items():
        idx = np.asarray(idx)
        order = idx[_rng(seed, "well-split", moa).permutation(len(idx))]
        n = len(order)
        if n < 3:
            split[order] = "train"
            train_only.append(moa)
            continue
        n_test = max(1, round(fractions[2] * n))
        n_val = max(1, round(fractions[1] * n))
        split[order[:n_test]] = "test"
        split[order[n_test : n_test + n_val]] = "val"
        split[order[n_test + n_val :]] = "train"
    kept[SPLIT_COL] = split
    kept[ELIGIBLE_COL] = eligible_for_evaluation(kept, moa_col, compound_col)
    return kept, SplitReport(n_in, n_multi, n_unann, train_only)


def subsample_training(
    splits: pd.DataFrame,
    fraction: float,
    *,
    seed: int = 0,
    moa_col: str = "Metadata_moa",
    compound_col: str = "Metadata_broad_sample",
) -> pd.DataFrame:
    """Keep a ``fraction`` of each compound's training replicate wells (at least one); val/test untouched.

    The replicate-fraction study of Wong et al. (2023, ESI Fig. 10): every compound keeps
    the same share of its replicate wells (DMSO counts as one compound). Nested by
    construction: the wells kept at a smaller fraction are a subset of those kept at a
    larger one (the same per-compound permutation), so data-scaling curves compare like
    with like.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    _check(splits, [SPLIT_COL, moa_col, compound_col])
    out = splits.copy()
    drop = np.zeros(len(out), bool)
    train = out[SPLIT_COL].eq("train").to_numpy()
    groups = out[train].groupby([moa_col, compound_col], sort=True).indices
    for (moa, compound), idx in groups.items():
        rows = np.flatnonzero(train)[idx]
        order = rows[_rng(seed, "fraction", moa, compound).permutation(len(rows))]
        n_keep = max(1, math.ceil(fraction * len(order)))
        drop[order[n_keep:]] = True
    return out[~drop].reset_index(drop=True)


def fraction_split(splits: pd.DataFrame, fraction_key: str, *, seed: int = 0) -> pd.DataFrame:
    """The well split an image model of fraction ``fraction_key`` (``"100"``, ``"50"``, ...) trains and is
    scored with: :func:`subsample_training` at the key's replicate share
    (:func:`moa_core.datasets.replicate_fraction`; an OOD-molecule key is an error). A seed replicate
    (``"50s1"``, :data:`moa_core.datasets.SEED_REPLICATES`) draws its wells with ``seed`` plus its offset:
    the same number of wells per compound, another draw of which. The one rule that training, evaluation and
    the replicate-fraction scaling curve all use."""
    from moa_core.datasets import replicate_fraction, training_seed

    return subsample_training(splits, replicate_fraction(fraction_key), seed=seed + training_seed(fraction_key))


def choose_holdout_compounds(
    wells: pd.DataFrame,
    seed: int = 0,
    *,
    moa_col: str = "Metadata_moa",
    compound_col: str = "Metadata_broad_sample",
    negcon: str = NEGCON,
) -> dict[str, str]:
    """One compound per MOA with >= 2 distinct compounds, chosen at random: ``{moa: compound}``.

    MOAs are visited in sorted order and their compounds sorted, drawing from
    ``numpy.random.default_rng(seed)``, so the choice is reproducible. Controls and rows
    without an MOA are ignored.
    """
    _check(wells, [moa_col, compound_col])
    d = wells[
        wells[compound_col].astype("string").ne(negcon).fillna(False)
        & wells[moa_col].notna()
        & wells[compound_col].notna()
    ]
    pairs = d[[moa_col, compound_col]].astype(str).drop_duplicates()
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for moa, grp in pairs.groupby(moa_col, sort=True):
        cpds = sorted(grp[compound_col].unique().tolist())
        if len(cpds) >= 2:
            out[str(moa)] = cpds[int(rng.integers(len(cpds)))]
    return out


def compound_holdout_split(
    wells: pd.DataFrame,
    *,
    seed: int = 0,
    val_fraction: float = 0.3,
    moa_col: str = "Metadata_moa",
    compound_col: str = "Metadata_broad_sample",
) -> tuple[pd.DataFrame, SplitReport]:
    """Hold out one random compound per MOA with >= 2 compounds; split the rest 70/30 train/val."""
    _check(wells, ["Metadata_Plate", "Metadata_Well", moa_col, compound_col])
    n_in = len(wells)
    kept, n_multi, n_unann = single_moa_wells(wells, moa_col)
    kept = kept.sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    split = np.full(len(kept), "", dtype=object)
    held = set(choose_holdout_compounds(kept, seed, moa_col=moa_col, compound_col=compound_col).values())
    is_held = kept[compound_col].isin(held).to_numpy()
    split[is_held] = "test"
    rest = np.flatnonzero(~is_held)
    perm = rest[_rng(seed, "holdout-trainval").permutation(len(rest))]
    n_val = round(val_fraction * len(perm))
    split[perm[:n_val]] = "val"
    split[perm[n_val:]] = "train"
    kept[SPLIT_COL] = split
    kept[ELIGIBLE_COL] = is_held
    return kept, SplitReport(n_in, n_multi, n_unann, [])
