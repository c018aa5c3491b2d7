"""Queries of the Compound / MOA explorer: which indexes the snapshot names, loading them, field images.

Read-only: the snapshot's ``retrieval_indexes`` rows name index folders under the data
directory (built by the ``retrieval_index`` asset; arrays are memory-mapped, never
unpickled); ``image_fields__<dataset>`` names each field's image files and image-store row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import queries
from moa_core.methods import METHODS
from moa_core.retrieval import IndexError_, RetrievalIndex, load_index, search_terms
from moa_core.storage import partition_table, quoted_identifier

CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
#: How to get each method's embeddings into a (dataset, fraction), for "not available" messages.
HOW_TO_GET = {m.name: m.how_to_get for m in METHODS.values()}


def indexes() -> pd.DataFrame:
    """The snapshot's retrieval indexes (empty frame when none were built)."""
    if not queries.has_table("retrieval_indexes"):
        return pd.DataFrame(columns=["dataset", "fraction", "method", "path", "build_id"])
    return queries.query("SELECT * FROM retrieval_indexes ORDER BY dataset, fraction, method")


def resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else queries.data_dir() / p


@st.cache_resource(max_entries=16, show_spinner="Opening the retrieval index\u2026")
def _open(folder: str, build_id: str) -> RetrievalIndex:
    idx = load_index(folder)
    if idx.manifest.get("build_id") != build_id:
        raise IndexError_(
            f"the index at {folder} is build {idx.manifest.get('build_id')}, the snapshot names "
            f"{build_id}: republish the snapshot (publish_job)"
        )
    return idx


def open_index(row: pd.Series) -> RetrievalIndex:
    """The index of one ``retrieval_indexes`` row (cached per folder and build)."""
    return _open(str(resolve(row["path"])), str(row["build_id"]))


@st.cache_data(max_entries=16, show_spinner=False)
def calibration(folder: str, build_id: str) -> pd.DataFrame:
    p = Path(folder) / "calibration.parquet"
    return pd.read_parquet(p) if p.is_file() else pd.DataFrame()


@st.cache_resource(max_entries=16, show_spinner=False)
def terms(folder: str, build_id: str) -> pd.DataFrame:
    return search_terms(_open(folder, build_id))


@st.cache_resource(max_entries=16, show_spinner=False)
def option_labels(folder: str, build_id: str) -> dict[str, str]:
    """Perturbation key -> "name \u00b7 ID \u00b7 MOA" for the search box (treatments only)."""
    comp = _open(folder, build_id).compounds
    comp = comp[~comp["is_control"].to_numpy(bool)]
    name, key = comp["name"].astype(str), comp["compound"].astype(str)
    label = name.where(name == key, name + " \u00b7 " + key)
    if "Metadata_moa" in comp.columns:
        moa = comp["Metadata_moa"].astype("string").str.strip()
        has = moa.notna() & moa.ne("") & moa.ne("DMSO")
        label = label.where(~has.fillna(False).to_numpy(bool), label + " \u00b7 " + moa.fillna(""))
    return dict(zip(key, label))


def field_rows(dataset: str, plate: str, well: str) -> pd.DataFrame:
    """The fields (sites) of one well with their image paths and store row; empty when none are recorded."""
    table = partition_table("image_fields", dataset)
    if not queries.has_table(table):
        return pd.DataFrame()
    return queries.query(
        f"SELECT * FROM {quoted_identifier(table)} WHERE Metadata_Plate = ? AND Metadata_Well = ? "
        "ORDER BY Metadata_Site",
        [plate, well],
    )


@dataclass
class FieldImage:
    field: np.ndarray | None  # (C, H, W) uint16, or None when unreadable
    source: str  # where it was read from, or why not
    ok: bool


@st.cache_data(max_entries=64, show_spinner=False)
def read_field(paths: tuple[str, ...], store_path: str | None, plate: str, store_row: int | None) -> FieldImage:
    """One field: the recorded image files first (native resolution), else the image store; never raises."""
    from moa_core.data.image_io import read_channel

    missing = []
    try:
        planes = []
        for p in paths:
            full = resolve(p) if not p.startswith("s3://") else None
            if full is None or not full.is_file():
                missing.append(p)
                break
            planes.append(read_channel(str(full)))
        if not missing:
            return FieldImage(np.stack(planes), f"files: {Path(paths[0]).parent}", True)
    except Exception as exc:  # a corrupt file: fall back to the store, and say which file
        missing.append(f"{p} ({exc})")
    if store_path and store_row is not None:
        try:
            from moa_core.store import ImageStore

            field = ImageStore(resolve(store_path)).read(plate, int(store_row))
            return FieldImage(field, f"image store {store_path} (file missing: {missing[0]})", True)
        except Exception as exc:  # noqa: BLE001 - shown to the user with the path
            missing.append(f"image store {store_path}: {exc}")
    return FieldImage(None, "; ".join(missing) or "no image recorded", False)


def well_field(dataset: str, plate: str, well: str, site_index: int = 0) -> tuple[FieldImage, pd.Series | None]:
    rows = field_rows(dataset, plate, well)
    if rows.empty:
        return FieldImage(
            None,
            f"no image recorded for plate {plate} well {well} (dataset {dataset} has no "
            "image_fields table: it may be a profiles-only dataset)",
            False,
        ), None
    r = rows.iloc[min(site_index, len(rows) - 1)]
    paths = tuple(str(r[f"path_{c}"]) for c in CHANNELS)
    store_row = None if pd.isna(r.get("store_row")) else int(r["store_row"])
    sp = r.get("store_path")
    return read_field(paths, None if sp is None or pd.isna(sp) else str(sp), plate, store_row), r
