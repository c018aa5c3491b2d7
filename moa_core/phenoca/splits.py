"""Leak-free Pheno-CA splits over wells, and the nested data-scale subsamples.

Every well gets one label: ``"train"`` | ``"val"`` | ``"test"`` | ``"excluded"``.

Perturbation kinds (from the :data:`moa_core.phenoca.synthetic.PROFILE_METADATA` columns):

* **annotated** compound: ``Metadata_pert_type == "compound"``, not ``Metadata_is_ood``,
  with a ``Metadata_moa`` — the Pheno-CA compounds, the only ones ever held out;
* **OOD** compound: any other compound (flagged ``Metadata_is_ood`` or without MoA) —
  training only (the paper's "out-of-distribution" molecules);
* **DMSO** (``"negcon"``): training only (normalization controls; never subsampled);
* **CRISPR**: always ``"excluded"`` — knockouts are the queries of compound discovery
  and never train a model.

Other ``Metadata_pert_type`` values raise :class:`~moa_core.errors.SchemaError`.

Randomness without order effects: every random choice is a function of ``seed`` and the
*identity* of what is chosen (a BLAKE2b hash of ``seed``, a purpose tag and the
compound ID, plus plate and well for a well), not of row order. A compound's wells are
therefore visited in a fixed random order, which makes the data-scale subsamples of
:func:`scale_training` nested (prefixes of fixed orders). Counts use round-half-up,
``R(x) = floor(x + 0.5)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from moa_core.errors import SchemaError
from moa_core.phenoca.config import SCALE_KEYS, parse_scale

__all__ = [
    "LABELS",
    "SCALE_KEYS",
    "SPLIT_COL",
    "PhenoSplit",
    "novel_compound_split",
    "parse_scale",
    "perturbation_kinds",
    "replicate_split",
    "scale_training",
]

SPLIT_COL = "Metadata_split"
LABELS = ("train", "val", "test", "excluded")
COMPOUND_COL = "Metadata_JCP2022"
PLATE_COL = "Metadata_Plate"
WELL_COL = "Metadata_Well"
PERT_TYPE_COL = "Metadata_pert_type"
MOA_COL = "Metadata_moa"
TARGET_COL = "Metadata_target"
OOD_COL = "Metadata_is_ood"
PERT_TYPES = ("compound", "crispr", "negcon")


@dataclass(frozen=True)
class PhenoSplit:
    """A per-well split.

    Attributes
    ----------
    labels : pandas.Series
        ``"train" | "val" | "test" | "excluded"`` per well, indexed like the input table,
        named :data:`SPLIT_COL`.
    kind : str
        ``"replicate"`` or ``"novel_compound"`` (suffixed ``"+scaled"`` after
        :func:`scale_training`).
    summary : dict
        Counts and the classes that could not be tested (see each split function).
    """

    labels: pd.Series
    kind: str
    summary: dict = field(default_factory=dict)

    def mask(self, label: str) -> np.ndarray:
        """Boolean per well: ``labels == label``."""
        if label not in LABELS:
            raise SchemaError(f"unknown split label {label!r}; valid: {LABELS}")
        return (self.labels == label).to_numpy(bool)

    def counts(self) -> dict[str, int]:
        """Wells per label (every label present, possibly 0)."""
        vc = self.labels.value_counts()
        return {lab: int(vc.get(lab, 0)) for lab in LABELS}


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def _round_half_up(x: float | np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5 + 1e-9).astype(np.int64)


def _unit_keys(seed: int, tag: str, *cols: Sequence[object]) -> np.ndarray:
    """A uniform-looking float in [0, 1) per row, a function of (seed, tag, row values) only."""
    n = len(cols[0])
    out = np.empty(n, np.float64)
    prefix = f"{int(seed)}\x1f{tag}"
    for i, vals in enumerate(zip(*cols)):
        s = "\x1f".join([prefix, *map(str, vals)])
        out[i] = int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big") / 2.0**64
    return out


def _check_shares(test_share: float, val_share: float) -> None:
    if not (0.0 <= test_share < 1.0 and 0.0 <= val_share < 1.0 and test_share + val_share < 1.0):
        raise SchemaError(
            f"need 0 <= test_share, val_share and test_share + val_share < 1; "
            f"got test_share={test_share}, val_share={val_share}"
        )


def perturbation_kinds(df: pd.DataFrame) -> np.ndarray:
    """Per well: ``"annotated" | "ood" | "negcon" | "crispr"`` (see the module docstring).

    Raises
    ------
    SchemaError
        A required column is missing (named), or an unknown ``Metadata_pert_type`` value.
    """
    missing = [c for c in (COMPOUND_COL, PERT_TYPE_COL, MOA_COL, PLATE_COL, WELL_COL) if c not in df.columns]
    if missing:
        raise SchemaError(f"profile table lacks column(s) {missing} needed for Pheno-CA splits")
    if df.empty:
        raise SchemaError("profile table is empty (no wells)")
    pt = df[PERT_TYPE_COL].astype(object).to_numpy()
    unknown = sorted({str(v) for v in pd.unique(pt) if v not in PERT_TYPES})
    if unknown:
        raise SchemaError(f"column {PERT_TYPE_COL!r} has unknown value(s) {unknown[:5]}; expected {PERT_TYPES}")
    is_ood = (
        df[OOD_COL].astype(object).fillna(False).astype(bool).to_numpy()
        if OOD_COL in df.columns
        else np.zeros(len(df), bool)
    )
    has_moa = df[MOA_COL].notna().to_numpy()
    cpd = pt == "compound"
    kinds = np.where(pt == "negcon", "negcon", "crispr").astype(object)
    kinds[cpd & ~is_ood & has_moa] = "annotated"
    kinds[cpd & ~(~is_ood & has_moa)] = "ood"
    return kinds


def _ranks_within(codes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """0-based rank of each element within its code group, by ascending key (ties: row order)."""
    order = np.lexsort((np.arange(len(codes)), keys, codes))
    sc = codes[order]
    start = np.r_[0, np.flatnonzero(sc[1:] != sc[:-1]) + 1]
    first = np.repeat(start, np.diff(np.r_[start, len(sc)]))
    ranks = np.empty(len(codes), np.int64)
    ranks[order] = np.arange(len(codes)) - first
    return ranks


def _label_series(df: pd.DataFrame, labels: np.ndarray) -> pd.Series:
    return pd.Series(labels.astype(object), index=df.index, name=SPLIT_COL)


def _per_compound_moa(df: pd.DataFrame, rows: np.ndarray, col: str) -> pd.Series:
    sub = df.iloc[rows]
    nun = sub.groupby(COMPOUND_COL, sort=True)[col].nunique(dropna=True)
    bad = nun.index[nun > 1]
    if len(bad):
        raise SchemaError(f"compound(s) {list(bad[:5])} have more than one {col!r} value across their wells")
    return sub.groupby(COMPOUND_COL, sort=True)[col].first()


# ---------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------


def replicate_split(
    df: pd.DataFrame,
    *,
    test_share: float = 0.2,
    val_share: float = 0.1,
    seed: int = 0,
    min_replicates: int = 3,
    min_train: int = 2,
) -> PhenoSplit:
    """The paper's split: replicate wells of annotated compounds are held out.

    For each annotated compound with ``n >= min_replicates`` wells, its wells in their
    fixed random order go ``n_test`` to test, then ``n_val`` to val, the rest (at least
    ``min_train``) to train::

        n_test = max(1, S(test_share * n))        (0 if test_share == 0)
        n_val  = S(val_share * n)
        n_test = min(n_test, n - min_train);  n_val = min(n_val, n - min_train - n_test)

    ``S`` is stochastic rounding (``floor(x)`` plus 1 with probability ``x - floor(x)``,
    from a per-compound hash), so the held-out shares are about ``test_share`` and
    ``val_share`` of eligible wells (val gets fewer where 3-replicate compounds cannot
    spare a well). Every eligible compound has at least one test well, and every test
    compound (hence its MoA and target) keeps ``>= min_train`` training wells. Annotated
    compounds with fewer wells, OOD compounds and DMSO: train; CRISPR: excluded.

    ``summary``: ``n_annotated_compounds``, ``n_eligible_compounds``,
    ``n_train_only_annotated`` (fewer than ``min_replicates`` wells), ``n_test_compounds``,
    ``n_val_compounds`` and ``wells`` (per label).
    """
    _check_shares(test_share, val_share)
    if min_train < 1 or min_replicates < min_train + 1:
        raise SchemaError(f"need min_train >= 1 and min_replicates > min_train; got {min_train}, {min_replicates}")
    kinds = perturbation_kinds(df)
    labels = np.full(len(df), "train", dtype=object)
    labels[kinds == "crispr"] = "excluded"
    rows = np.flatnonzero(kinds == "annotated")
    cpd = df[COMPOUND_COL].astype(str).to_numpy()[rows]
    codes, uniq = pd.factorize(cpd, sort=True)
    n = np.bincount(codes, minlength=len(uniq))
    eligible = n >= min_replicates
    if len(rows):
        plate = df[PLATE_COL].astype(str).to_numpy()[rows]
        well = df[WELL_COL].astype(str).to_numpy()[rows]
        rank = _ranks_within(codes, _unit_keys(seed, "replicate_well", cpd, plate, well))
        u_test = _unit_keys(seed, "replicate_n_test", uniq)
        u_val = _unit_keys(seed, "replicate_n_val", uniq)

        def stoch(x: np.ndarray, u: np.ndarray) -> np.ndarray:
            f = np.floor(x + 1e-12)
            return (f + (u < x - f)).astype(np.int64)

        n_test = stoch(test_share * n, u_test)
        if test_share > 0:
            n_test = np.maximum(n_test, 1)
        n_val = stoch(val_share * n, u_val)
        n_test = np.clip(np.minimum(n_test, n - min_train), 0, None)
        n_val = np.clip(np.minimum(n_val, n - min_train - n_test), 0, None)
        n_test[~eligible] = 0
        n_val[~eligible] = 0
        lab = np.full(len(rows), "train", dtype=object)
        lab[rank < n_test[codes]] = "test"
        lab[(rank >= n_test[codes]) & (rank < (n_test + n_val)[codes])] = "val"
        labels[rows] = lab
    else:
        n_test = n_val = np.zeros(0, np.int64)
    out = _label_series(df, labels)
    summary = {
        "n_annotated_compounds": int(len(uniq)),
        "n_eligible_compounds": int(eligible.sum()),
        "n_train_only_annotated": int((~eligible).sum()),
        "n_test_compounds": int((n_test > 0).sum()),
        "n_val_compounds": int((n_val > 0).sum()),
    }
    split = PhenoSplit(out, "replicate", summary)
    summary["wells"] = split.counts()
    return split


def novel_compound_split(
    df: pd.DataFrame,
    *,
    test_share: float = 0.2,
    val_share: float = 0.1,
    seed: int = 0,
    min_class_compounds: int = 2,
    class_col: str = MOA_COL,
) -> PhenoSplit:
    """Whole annotated compounds held out; every held-out class keeps a training compound.

    Annotated compounds are grouped by ``class_col`` (MoA). In each class the compound
    with the smallest hash key is its *anchor* and always trains. A class with fewer than
    ``min_class_compounds`` compounds (>= 2) is *untestable*: all its compounds train.
    The other (non-anchor) compounds of testable classes are the candidates; in hash
    order the first ``R(test_share * N)`` go to test and the next ``R(val_share * N)`` to
    val (``N`` = annotated compounds; capped by the number of candidates). Every well of
    a test/val compound goes to test/val, so no test compound has a well in train or
    val. OOD compounds and DMSO: train; CRISPR: excluded.

    ``summary``: ``n_annotated_compounds``, ``n_classes``, ``n_testable_classes``,
    ``n_untestable_classes`` and ``untestable_classes`` (sorted), ``n_test_compounds``,
    ``n_val_compounds``, ``n_test_classes``, ``capped`` (fewer candidates than
    requested), ``wells`` (per label), and — if ``Metadata_target`` exists —
    ``n_test_compounds_target_unseen`` / ``test_targets_unseen``: test compounds whose
    target has no training compound (MoAs need not nest in targets in real data).
    """
    _check_shares(test_share, val_share)
    if min_class_compounds < 2:
        raise SchemaError(
            f"min_class_compounds must be >= 2 (a tested class needs a training compound), got {min_class_compounds}"
        )
    kinds = perturbation_kinds(df)
    if class_col not in df.columns:
        raise SchemaError(f"profile table lacks the class column {class_col!r}")
    labels = np.full(len(df), "train", dtype=object)
    labels[kinds == "crispr"] = "excluded"
    rows = np.flatnonzero(kinds == "annotated")
    cls = _per_compound_moa(df, rows, class_col) if len(rows) else pd.Series(dtype=object)
    if cls.isna().any():
        raise SchemaError(f"annotated compound(s) {list(cls.index[cls.isna()][:5])} have no {class_col!r}")
    comp = cls.index.astype(str).to_numpy()
    key = _unit_keys(seed, "novel_compound", comp)
    tab = pd.DataFrame({"compound": comp, "cls": cls.astype(str).to_numpy(), "key": key})
    tab["rank"] = tab.groupby("cls")["key"].rank(method="first").astype(int) - 1
    size = tab.groupby("cls")["compound"].transform("size")
    testable = size >= min_class_compounds
    cand = tab[testable & (tab["rank"] > 0)].sort_values(["key", "compound"])
    n_ann = len(tab)
    want_test, want_val = int(_round_half_up(test_share * n_ann)), int(_round_half_up(val_share * n_ann))
    n_test = min(want_test, len(cand))
    n_val = min(want_val, len(cand) - n_test)
    test_c = set(cand["compound"].iloc[:n_test])
    val_c = set(cand["compound"].iloc[n_test : n_test + n_val])
    cpd_rows = df[COMPOUND_COL].astype(str).to_numpy()[rows]
    labels[rows[np.isin(cpd_rows, list(test_c))]] = "test"
    labels[rows[np.isin(cpd_rows, list(val_c))]] = "val"
    class_sizes = tab.groupby("cls").size()
    untestable = sorted(class_sizes.index[class_sizes < min_class_compounds])
    summary: dict = {
        "n_annotated_compounds": int(n_ann),
        "n_classes": int(len(class_sizes)),
        "n_testable_classes": int((class_sizes >= min_class_compounds).sum()),
        "n_untestable_classes": len(untestable),
        "untestable_classes": untestable,
        "n_test_compounds": len(test_c),
        "n_val_compounds": len(val_c),
        "n_test_classes": int(tab.loc[tab["compound"].isin(test_c), "cls"].nunique()),
        "capped": bool(n_test < want_test or n_val < want_val),
    }
    if TARGET_COL in df.columns and len(rows):
        tgt = _per_compound_moa(df, rows, TARGET_COL)
        tgt.index = tgt.index.astype(str)
        train_t = set(tgt[~tgt.index.isin(test_c | val_c)].dropna().astype(str))
        unseen = sorted({str(t) for c, t in tgt.items() if c in test_c and pd.notna(t) and str(t) not in train_t})
        summary["test_targets_unseen"] = unseen
        summary["n_test_compounds_target_unseen"] = int(
            sum(1 for c, t in tgt.items() if c in test_c and pd.notna(t) and str(t) not in train_t)
        )
    split = PhenoSplit(_label_series(df, labels), "novel_compound", summary)
    summary["wells"] = split.counts()
    return split


# ---------------------------------------------------------------------------------------
# Data scale
# ---------------------------------------------------------------------------------------


def scale_training(
    df: pd.DataFrame,
    split: PhenoSplit | pd.Series,
    *,
    ood_share: float = 1.0,
    replicate_share: float = 1.0,
    seed: int = 0,
) -> PhenoSplit | pd.Series:
    """Nested subsample of the training wells (the paper's data-scale axes).

    * **OOD molecules**: of the ``N`` OOD compounds with training wells, the first
      ``R(ood_share * N)`` in a fixed hash order are kept; the others' wells become
      ``"excluded"``. A smaller share keeps a prefix of the same order, hence a subset.
    * **Replicates**: each remaining training compound (annotated or OOD) with ``m``
      training wells keeps the first ``max(1, R(replicate_share * m))`` of them in a fixed
      per-compound hash order (nested the same way); the rest become ``"excluded"``.

    DMSO wells are kept (they are the plates' controls); val/test/excluded wells are
    untouched. Returns the same type as ``split`` (a :class:`PhenoSplit` gets
    ``kind + "+scaled"`` and ``summary["scale"]``).
    """
    if not 0.0 <= ood_share <= 1.0:
        raise SchemaError(f"ood_share must be in [0, 1], got {ood_share}")
    if not 0.0 < replicate_share <= 1.0:
        raise SchemaError(f"replicate_share must be in (0, 1], got {replicate_share}")
    series = split.labels if isinstance(split, PhenoSplit) else split
    if not isinstance(series, pd.Series) or len(series) != len(df) or not series.index.equals(df.index):
        raise SchemaError("split labels must be a Series indexed like the profile table")
    bad = sorted({str(v) for v in pd.unique(series) if v not in LABELS})
    if bad:
        raise SchemaError(f"split labels have unknown value(s) {bad[:5]}; valid: {LABELS}")
    kinds = perturbation_kinds(df)
    labels = series.to_numpy(dtype=object).copy()
    cpd_all = df[COMPOUND_COL].astype(str).to_numpy()
    train = labels == "train"

    ood_rows = train & (kinds == "ood")
    ood_c = np.unique(cpd_all[ood_rows])
    k_ood = int(_round_half_up(ood_share * len(ood_c)))
    order = np.lexsort((ood_c, _unit_keys(seed, "scale_ood", ood_c)))
    keep_ood = set(ood_c[order[:k_ood]])
    drop = ood_rows & ~np.isin(cpd_all, list(keep_ood))
    labels[drop] = "excluded"

    rows = np.flatnonzero((labels == "train") & np.isin(kinds, ["annotated", "ood"]))
    n_rep_dropped = 0
    if len(rows):
        cpd = cpd_all[rows]
        codes, _ = pd.factorize(cpd, sort=True)
        m = np.bincount(codes)
        keep_n = np.maximum(1, _round_half_up(replicate_share * m))
        plate = df[PLATE_COL].astype(str).to_numpy()[rows]
        well = df[WELL_COL].astype(str).to_numpy()[rows]
        rank = _ranks_within(codes, _unit_keys(seed, "scale_replicate", cpd, plate, well))
        gone = rows[rank >= keep_n[codes]]
        labels[gone] = "excluded"
        n_rep_dropped = len(gone)
    out = pd.Series(labels, index=df.index, name=series.name or SPLIT_COL)
    if not isinstance(split, PhenoSplit):
        return out
    summary = dict(split.summary)
    res = PhenoSplit(out, split.kind + "+scaled", summary)
    summary["scale"] = {
        "ood_share": ood_share,
        "replicate_share": replicate_share,
        "seed": seed,
        "n_ood_compounds_kept": len(keep_ood),
        "n_ood_compounds": int(len(ood_c)),
        "n_ood_wells_dropped": int(drop.sum()),
        "n_replicate_wells_dropped": int(n_rep_dropped),
    }
    summary["wells"] = res.counts()
    return res
