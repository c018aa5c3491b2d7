"""What every image source gives the pipeline: plates, one load_data table per plate, a locator.

The assets do not care where fields come from: the embedded synthetic renderer, the
Cell Painting Gallery on S3, or a user's folder. Each source implements
:class:`ImageSource`; :func:`canonical_load_data` gives every source's load_data the
same table schema (the warehouse's ``load_data`` table), and :func:`to_wells_table`
gives every source's per-well annotations the schema of
:data:`moa_core.data.design.DESIGN_COLUMNS`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from moa_core.data.config import ControlSpec
from moa_core.data.controls import mark_negative_controls
from moa_core.data.design import DESIGN_COLUMNS, NEGCON
from moa_core.data.image_io import CHANNELS
from moa_core.data.load_data import (
    KEY_COLUMNS,
    filename_col,
    illum_filename_col,
    illum_pathname_col,
    pathname_col,
    validate_load_data,
)
from moa_core.data.locator import ImageLocator
from moa_core.errors import SchemaError

#: The warehouse ``load_data`` schema, identical for every source.
LOAD_DATA_COLUMNS: list[str] = [
    *KEY_COLUMNS,
    *[c for ch in CHANNELS for c in (filename_col(ch), pathname_col(ch))],
    *[c for ch in CHANNELS for c in (illum_filename_col(ch), illum_pathname_col(ch))],
    "Metadata_load_data_file",
    "Metadata_load_data_etag",
]


class ImageSource(Protocol):
    """A dataset's fields: its plates, one validated load_data table per plate, and a locator."""

    def list_plates(self) -> list[str]: ...

    def read_load_data(self, plate: str) -> pd.DataFrame: ...

    def locator(self) -> ImageLocator: ...


def subset_fields(
    df: pd.DataFrame, wells: tuple[str, ...] = (), sites: tuple[int, ...] = (), source: str = "load_data"
) -> pd.DataFrame:
    """Keep the listed wells and sites (empty = all); an empty result is an error naming the subset."""
    out = df
    if wells:
        out = out[out["Metadata_Well"].astype(str).isin(wells)]
    if sites:
        out = out[out["Metadata_Site"].astype(int).isin([int(s) for s in sites])]
    if out.empty:
        raise SchemaError(f"{source}: no field matches wells={list(wells) or 'all'} sites={list(sites) or 'all'}")
    return out.reset_index(drop=True)


def canonical_load_data(df: pd.DataFrame, source_file: str, etag: str = "") -> pd.DataFrame:
    """``df`` validated and reduced to :data:`LOAD_DATA_COLUMNS` (absent ``_Illum`` columns are None).

    Every row records the load_data file it came from and that file's ETag (gallery) so a
    table says which release it was built from.
    """
    validate_load_data(df, source=source_file)
    out = df.copy()
    for c in LOAD_DATA_COLUMNS:
        if c not in out.columns:
            out[c] = None
    out["Metadata_load_data_file"] = source_file
    out["Metadata_load_data_etag"] = etag
    out["Metadata_Plate"] = out["Metadata_Plate"].astype(str)
    out["Metadata_Well"] = out["Metadata_Well"].astype(str)
    out["Metadata_Site"] = pd.to_numeric(out["Metadata_Site"]).astype(int)
    for c in LOAD_DATA_COLUMNS[3:]:
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out[LOAD_DATA_COLUMNS].reset_index(drop=True)


def to_wells_table(df: pd.DataFrame, source: str, controls: ControlSpec = ControlSpec()) -> pd.DataFrame:
    """Per-well annotations in the schema of :data:`DESIGN_COLUMNS`.

    Needs ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_broad_sample`` and
    ``Metadata_moa`` (``|``-joined when several). Negative controls are recognised by ``controls``
    (:func:`moa_core.data.controls.mark_negative_controls`: ``DMSO`` in the MOA, compound or
    perturbation-name column, or a ``negcon`` perturbation/control type) and become the ``"DMSO"`` class;
    other design columns are filled with NaN when absent, ``Metadata_n_moa`` /
    ``Metadata_single_moa`` are derived from ``Metadata_moa``. A duplicated or blank
    (plate, well) is an error naming it.
    """
    need = ["Metadata_Plate", "Metadata_Well", "Metadata_broad_sample", "Metadata_moa"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise SchemaError(f"{source}: per-well annotations lack column(s) {missing}")
    out = df.copy()
    for c in ("Metadata_Plate", "Metadata_Well"):
        blank = out[c].isna() | out[c].astype(str).str.strip().eq("")
        if blank.any():
            raise SchemaError(f"{source}: blank {c} in {int(blank.sum())} annotation row(s)")
        out[c] = out[c].astype(str)
    dup = out.duplicated(["Metadata_Plate", "Metadata_Well"])
    if dup.any():
        r = out[dup].iloc[0]
        raise SchemaError(f"{source}: plate {r['Metadata_Plate']} well {r['Metadata_Well']} is annotated twice")
    out = mark_negative_controls(out, controls, source)
    moa = out["Metadata_moa"].where(out["Metadata_moa"].astype("string").str.strip().ne(""), np.nan)
    out["Metadata_moa"] = moa
    out["Metadata_n_moa"] = moa.astype("string").str.count(r"\|").add(1).fillna(0).astype(int)
    out["Metadata_single_moa"] = out["Metadata_n_moa"].eq(1)
    for c in DESIGN_COLUMNS:
        if c not in out.columns:
            out[c] = np.nan
    if "Metadata_pert_type" in df.columns:
        out["Metadata_pert_type"] = out["Metadata_pert_type"].where(out["Metadata_moa"].ne(NEGCON), "control")
    out["Metadata_timepoint"] = pd.to_numeric(out["Metadata_timepoint"], errors="coerce")
    return out[DESIGN_COLUMNS].sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
