"""The real CPJUMP1 compound-plate design (cpg0000-jump-pilot).

Reads the public JUMP pilot metadata (``cpjump1_metadata.csv``) and the compound
annotations (``JUMP-Target-1_compound_metadata_additional_annotations.tsv``) and
returns one row per well of every *compound* plate, with the MOA attached.

MOA convention (Wong et al. 2023): ``moa_list`` is ``|``-separated; the paper keeps
compounds with exactly one known MOA. We keep every compound and mark
``Metadata_single_moa`` so the filter is applied downstream, where it belongs.
DMSO wells get ``Metadata_moa == "DMSO"``; compounds without annotation get NaN.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.data.plates import is_edge_well, well_row_col  # noqa: F401 (re-exported)
from moa_core.errors import SchemaError

NEGCON = "DMSO"

DESIGN_COLUMNS = [
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_broad_sample",
    "Metadata_pert_iname",
    "Metadata_pert_type",
    "Metadata_control_type",
    "Metadata_cell_line",
    "Metadata_timepoint",
    "Metadata_moa",
    "Metadata_n_moa",
    "Metadata_single_moa",
    "Metadata_target",
]


def is_multi_moa(moa: pd.Series, sep: str = "|") -> pd.Series:
    """Boolean Series: True where the MOA annotation lists several MOAs (contains ``sep``)."""
    return moa.astype("string").str.contains(sep, regex=False).fillna(False).astype(bool)


def default_shared_dir() -> Path:
    """``$MOA_SHARED_DIR`` or ``../shared`` beside the repository root."""
    env = os.environ.get("MOA_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared"


def _require(df: pd.DataFrame, cols: list[str], source: Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SchemaError(f"{source}: missing required column(s) {missing}")


def load_cpjump1_design(shared_dir: Path | str | None = None) -> pd.DataFrame:
    """One row per well of the 16 CPJUMP1 compound plates, annotated with MOA.

    Parameters
    ----------
    shared_dir
        Folder holding ``data/cpjump1/``; defaults to :func:`default_shared_dir`.

    Returns
    -------
    DataFrame with :data:`DESIGN_COLUMNS`. ``Metadata_moa`` is the single MOA, the
    ``|``-joined list for multi-MOA compounds (``Metadata_single_moa`` False), "DMSO"
    for negative controls and NaN for unannotated compounds.
    """
    root = Path(shared_dir) if shared_dir is not None else default_shared_dir()
    meta_path = root / "data" / "cpjump1" / "cpjump1_metadata.csv"
    ann_path = root / "data" / "cpjump1" / "JUMP-Target-1_compound_metadata_additional_annotations.tsv"
    for p in (meta_path, ann_path):
        if not p.is_file():
            raise FileNotFoundError(f"CPJUMP1 design file not found: {p} (set MOA_SHARED_DIR)")
    meta = pd.read_csv(meta_path, low_memory=False)
    _require(
        meta,
        [
            "Metadata_Plate",
            "Metadata_Well",
            "Metadata_broad_sample",
            "Metadata_pert_type",
            "Metadata_control_type",
            "Metadata_cell_line",
            "Metadata_timepoint",
            "Metadata_experiment_type",
            "Metadata_pert_iname",
            "Metadata_target",
        ],
        meta_path,
    )
    ann = pd.read_csv(ann_path, sep="\t")
    _require(ann, ["broad_sample", "moa_list"], ann_path)

    cmp = meta[meta["Metadata_experiment_type"] == "Compound"].copy()
    moa_by_sample = ann.dropna(subset=["broad_sample"]).set_index("broad_sample")["moa_list"]
    moa = cmp["Metadata_broad_sample"].map(moa_by_sample)
    is_dmso = cmp["Metadata_broad_sample"].eq(NEGCON) | cmp["Metadata_pert_iname"].eq(NEGCON)
    moa = moa.where(~is_dmso, NEGCON)
    moa = moa.where(moa.astype("string").str.strip().ne(""), np.nan)
    n_moa = moa.astype("string").str.count(r"\|").add(1).fillna(0).astype(int)
    cmp["Metadata_broad_sample"] = cmp["Metadata_broad_sample"].where(~is_dmso, NEGCON)
    cmp["Metadata_pert_iname"] = cmp["Metadata_pert_iname"].where(~is_dmso, NEGCON)
    cmp["Metadata_moa"] = moa
    cmp["Metadata_n_moa"] = n_moa
    cmp["Metadata_single_moa"] = n_moa.eq(1)
    cmp["Metadata_timepoint"] = cmp["Metadata_timepoint"].astype(int)
    out = cmp[DESIGN_COLUMNS].sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    return out


def select_plates(design: pd.DataFrame, n_plates: int) -> list[str]:
    """Pick ``n_plates`` plates round-robin over (cell line, timepoint) conditions.

    With 4 plates the demo sees each of A549/U2OS x 24/48 h once; with 8, twice.
    Deterministic: plates sorted by barcode inside each condition.
    """
    groups = (
        design.drop_duplicates("Metadata_Plate")
        .sort_values(["Metadata_cell_line", "Metadata_timepoint", "Metadata_Plate"])
        .groupby(["Metadata_cell_line", "Metadata_timepoint"])["Metadata_Plate"]
        .apply(list)
    )
    order: list[str] = []
    depth = max(len(v) for v in groups)
    for i in range(depth):
        for plates in groups:
            if i < len(plates):
                order.append(plates[i])
    if n_plates < 1 or n_plates > len(order):
        raise ValueError(f"n_plates must be in 1..{len(order)}, got {n_plates}")
    return order[:n_plates]


def select_moas(design: pd.DataFrame, max_moas: int | None) -> list[str]:
    """MOAs ranked by number of distinct single-MOA compounds (desc), then name.

    ``None`` keeps every annotated MOA. DMSO is never counted here.
    """
    single = design[design["Metadata_single_moa"] & design["Metadata_moa"].ne(NEGCON)]
    counts = single.groupby("Metadata_moa")["Metadata_broad_sample"].nunique()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    names = [k for k, _ in ranked]
    return names if max_moas is None else names[:max_moas]


def subset_design(
    design: pd.DataFrame,
    plates: list[str],
    moas: list[str],
    include_multi_moa: bool = True,
) -> pd.DataFrame:
    """Wells of ``plates`` whose compound has one of ``moas`` (plus DMSO wells).

    With ``include_multi_moa`` the multi-MOA compounds that list one of ``moas`` are
    kept too (the single-MOA filter then has something to do).
    """
    d = design[design["Metadata_Plate"].isin(plates)]
    moa_set = set(moas)
    lists = d["Metadata_moa"].astype("string").fillna("").str.split("|")
    hit = lists.map(lambda xs: bool(moa_set.intersection(xs)))
    keep = d["Metadata_moa"].eq(NEGCON) | (hit & (d["Metadata_single_moa"] | include_multi_moa))
    return d[keep].reset_index(drop=True)


def cpjump1_identifiers(shared_dir: Path | str | None = None) -> pd.DataFrame:
    """Broad sample ID -> InChIKey of the CPJUMP1 compound annotations (``Metadata_broad_sample``,
    ``Metadata_InChIKey``), for searching the design's compounds by InChIKey."""
    root = Path(shared_dir) if shared_dir is not None else default_shared_dir()
    ann_path = root / "data" / "cpjump1" / "JUMP-Target-1_compound_metadata_additional_annotations.tsv"
    if not ann_path.is_file():
        raise FileNotFoundError(f"CPJUMP1 annotation file not found: {ann_path} (set MOA_SHARED_DIR)")
    ann = pd.read_csv(ann_path, sep="\t")
    _require(ann, ["broad_sample", "InChIKey"], ann_path)
    return (
        ann[["broad_sample", "InChIKey"]]
        .dropna()
        .drop_duplicates("broad_sample")
        .rename(columns={"broad_sample": "Metadata_broad_sample", "InChIKey": "Metadata_InChIKey"})
        .reset_index(drop=True)
    )
