"""A retrieval index over well profiles: build, save, load.

Definitions
-----------
Well vector
    A well's profile (embedding or CellProfiler features), row-centred and scaled to unit
    length: the dot product of two well vectors is their Pearson correlation (PCC), the
    similarity of Wong et al.'s analyses (jump_rr ranks by cosine; on row-centred
    profiles the two coincide).
Perturbation ("compound")
    Wells sharing the index's compound key (``Metadata_JCP2022``, else
    ``Metadata_broad_sample``, else ``Metadata_pert_iname``). CRISPR/ORF perturbations of a
    JUMP table are perturbations too (``pert_type`` says which); the negative control
    (DMSO) is one, flagged ``is_control``: it never appears among neighbours or votes but
    its wells are kept for same-plate control images and the activity mAP.
Query consensus
    The element-wise median of the query perturbation's well vectors, row-centred and
    unit-scaled again (the paper's well -> compound median).
Compound similarity
    The mean PCC between the query consensus and the compound's wells
    (= consensus . mean of the compound's unit well vectors, which the index stores as
    ``compound_vectors``).

Layout on disk (a folder, written to a temporary name and renamed; no pickles):
``vectors.npy`` float32 (N, d), wells sorted by compound; ``compound_vectors.npy``
float32 (C, d); ``wells.parquet``; ``compounds.parquet``; ``manifest.json`` (method,
dataset, fraction, sizes, build id, SHA-256 of both arrays).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.errors import MoaInputError, SchemaError
from moa_core.storage import atomic_directory

__all__ = [
    "RetrievalIndex",
    "build_index",
    "load_index",
    "save_index",
    "unit_rows",
    "compound_key",
    "INDEX_FORMAT",
    "IndexError_",
    "is_control",
]

INDEX_FORMAT = "moa-retrieval-index/1"
NEGCON = "DMSO"
_ID_COLUMNS = ("Metadata_JCP2022", "Metadata_broad_sample", "Metadata_pert_iname")
#: Well metadata kept in the index (when present).
WELL_COLUMNS = (
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Source",
    "Metadata_Batch",
    "Metadata_cell_line",
    "Metadata_timepoint",
    "Metadata_split",
)
#: Perturbation annotations kept per compound (first non-missing value of its wells).
COMPOUND_COLUMNS = (
    "Metadata_pert_iname",
    "Metadata_broad_sample",
    "Metadata_JCP2022",
    "Metadata_InChIKey",
    "Metadata_moa",
    "Metadata_target",
    "Metadata_gene",
    "Metadata_pert_type",
    "Metadata_synonyms",
    "Metadata_single_moa",
    "Metadata_is_ood",
)


class IndexError_(MoaInputError):
    """A retrieval index is missing, incomplete or inconsistent."""


def compound_key(df: pd.DataFrame) -> str:
    """The column that identifies a perturbation in ``df`` (see module docstring)."""
    for c in _ID_COLUMNS:
        if c in df.columns and df[c].notna().any():
            return c
    raise SchemaError(f"no perturbation identifier column ({', '.join(_ID_COLUMNS)}) in the profile table")


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Row-centre and scale each row to unit length (float32); a constant row stays all zeros."""
    X = np.asarray(X, dtype=np.float32)
    X = X - X.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norm, out=np.zeros_like(X), where=norm > 0)


def unit_rows_inplace(X: np.ndarray, chunk_rows: int = 16_384) -> np.ndarray:
    """:func:`unit_rows` of the float32 array ``X`` written into ``X`` itself, a chunk of rows at a time
    (the same values: every operation is per row; memory: one chunk instead of two copies of ``X``)."""
    if X.dtype != np.float32 or not X.flags.c_contiguous or not X.flags.writeable:
        raise ValueError("unit_rows_inplace needs a writeable C-contiguous float32 array")
    for a in range(0, len(X), chunk_rows):
        X[a : a + chunk_rows] = unit_rows(X[a : a + chunk_rows])
    return X


def is_control(meta: pd.DataFrame) -> np.ndarray:
    """True for negative-control (DMSO) wells: ``DMSO`` as compound/name/MOA, or ``negcon`` as pert/control type."""
    out = np.zeros(len(meta), dtype=bool)
    for c in ("Metadata_broad_sample", "Metadata_pert_iname", "Metadata_moa"):
        if c in meta.columns:
            out |= meta[c].astype("string").eq(NEGCON).fillna(False).to_numpy(bool)
    for c, v in (("Metadata_pert_type", "negcon"), ("Metadata_control_type", "negcon")):
        if c in meta.columns:
            out |= meta[c].astype("string").eq(v).fillna(False).to_numpy(bool)
    return out


@dataclass
class RetrievalIndex:
    """Well vectors of one (dataset, fraction, method), grouped by perturbation.

    ``vectors[starts[c]:starts[c] + n_wells[c]]`` are the wells of compound ``c``
    (row ``c`` of ``compounds``); ``wells`` has one row per vector.
    """

    vectors: np.ndarray
    compound_vectors: np.ndarray
    wells: pd.DataFrame
    compounds: pd.DataFrame
    manifest: dict = field(default_factory=dict)

    def __setattr__(self, name: str, value) -> None:
        # lookups and centroids that queries cache on the index derive from these: replacing one drops them
        if name in ("vectors", "compound_vectors", "wells", "compounds"):
            for cached in [k for k in self.__dict__ if k.startswith("_")]:
                del self.__dict__[cached]
        super().__setattr__(name, value)

    @property
    def n_wells(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def starts(self) -> np.ndarray:
        return self.compounds["start"].to_numpy(np.int64)

    @property
    def counts(self) -> np.ndarray:
        return self.compounds["n_wells"].to_numpy(np.int64)

    def compound_row(self, compound: str) -> int:
        """Row of ``compound`` (its key value) in ``compounds``; :class:`KeyError` if unknown."""
        pos = self._positions().get(str(compound))
        if pos is None:
            raise KeyError(compound)
        return pos

    def _positions(self) -> dict[str, int]:
        pos = self.__dict__.get("_pos")
        if pos is None:
            pos = {k: i for i, k in enumerate(self.compounds["compound"].astype(str))}
            self.__dict__["_pos"] = pos
        return pos

    def well_vectors(self, row: int) -> np.ndarray:
        s, n = int(self.starts[row]), int(self.counts[row])
        return np.asarray(self.vectors[s : s + n])

    def consensus(self, row: int) -> np.ndarray:
        """The query consensus of compound ``row`` (median of its well vectors, re-unit-scaled)."""
        return unit_rows(np.median(self.well_vectors(row), axis=0, keepdims=True))[0]


def build_index(
    profiles: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    method: str,
    dataset: str,
    fraction: str = "",
    identifiers: pd.DataFrame | None = None,
    extra: dict | None = None,
    matrix: np.ndarray | None = None,
) -> RetrievalIndex:
    """Index the well profiles ``profiles`` (``Metadata_*`` columns + ``features``).

    ``identifiers`` optionally adds per-compound IDs (e.g. InChIKey from an annotation
    table): a frame keyed by the index's compound key column whose other columns fill
    missing :data:`COMPOUND_COLUMNS`. Wells with a missing compound key, plate or well,
    or with a non-finite feature, are refused with their names (nothing is dropped
    silently).

    Out of core (a JUMP-sized release): ``profiles`` holds the metadata only and ``matrix`` the
    float32 features of its rows (``features`` names its columns). The matrix *becomes* the index's
    vectors, row-centred and unit-scaled in place; pass its rows already sorted by compound key
    (stable, e.g. :func:`moa_core.profiles.release.read_features` in that order) and no copy of it
    is made. The index is the same as from the equivalent frame.
    """
    if profiles.empty:
        raise SchemaError(f"{method} profiles of {dataset}: no wells to index")
    if matrix is not None:
        feats = list(features) if features is not None else []
        if matrix.shape != (len(profiles), len(feats)):
            raise SchemaError(
                f"{method} profiles of {dataset}: feature matrix has shape {matrix.shape}, expected "
                f"{(len(profiles), len(feats))} (one row per well, one column per feature name)"
            )
    else:
        feats = (
            list(features) if features is not None else [c for c in profiles.columns if not c.startswith("Metadata_")]
        )
    if not feats:
        raise SchemaError(f"{method} profiles of {dataset}: no feature columns")
    for c in ("Metadata_Plate", "Metadata_Well"):
        if c not in profiles.columns:
            raise SchemaError(f"{method} profiles of {dataset}: column {c} missing")
    key = compound_key(profiles)
    df = profiles.reset_index(drop=True)
    blank = df[key].isna() | df[key].astype("string").str.strip().eq("").fillna(True)
    blank |= df["Metadata_Plate"].isna() | df["Metadata_Well"].isna()
    if blank.any():
        bad = df.loc[blank, ["Metadata_Plate", "Metadata_Well"]].head(5).to_dict("records")
        raise SchemaError(
            f"{method} profiles of {dataset}: {int(blank.sum())} well(s) without {key}, plate or well, e.g. {bad}"
        )
    X = matrix if matrix is not None else df[feats].to_numpy(dtype=np.float32)
    finite = np.concatenate([np.isfinite(X[a : a + 65_536]).all(axis=1) for a in range(0, len(X), 65_536)])
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        col = feats[int(np.flatnonzero(~np.isfinite(X[i]))[0])]
        raise SchemaError(
            f"{method} profiles of {dataset}: {int((~finite).sum())} well(s) with NaN/inf features, "
            f"e.g. plate {df.at[i, 'Metadata_Plate']} well {df.at[i, 'Metadata_Well']} column {col}"
        )
    keys = df[key].astype(str).to_numpy()
    order = np.argsort(keys, kind="stable")
    if not np.array_equal(order, np.arange(len(order))):
        df, X, keys = df.iloc[order].reset_index(drop=True), X[order], keys[order]
    if matrix is not None:
        V = unit_rows_inplace(np.ascontiguousarray(X, dtype=np.float32))
    else:
        V = unit_rows(X)
    uniq, starts, counts = np.unique(keys, return_index=True, return_counts=True)
    M = (np.add.reduceat(V, starts, axis=0) / counts[:, None]).astype(np.float32)
    ctrl = is_control(df)
    comp = pd.DataFrame({"compound": uniq, "start": starts.astype(np.int64), "n_wells": counts.astype(np.int64)})
    grouped = df.groupby(keys, sort=True)
    for c in COMPOUND_COLUMNS:
        if c in df.columns:
            comp[c] = grouped[c].first().reindex(uniq).to_numpy()
    comp["is_control"] = np.logical_or.reduceat(ctrl, starts)
    comp["n_plates"] = grouped["Metadata_Plate"].nunique().reindex(uniq).to_numpy()
    if identifiers is not None and key in identifiers.columns:
        ids = identifiers.drop_duplicates(key).set_index(key)
        for c in ids.columns:
            if c in COMPOUND_COLUMNS:
                add = comp["compound"].map(ids[c])
                comp[c] = comp[c].where(comp[c].notna(), add) if c in comp.columns else add
    if "Metadata_pert_iname" not in comp.columns:
        comp["Metadata_pert_iname"] = comp["compound"]
    comp["name"] = comp["Metadata_pert_iname"].where(comp["Metadata_pert_iname"].notna(), comp["compound"])
    if "Metadata_gene" in comp.columns:  # CRISPR/ORF rows are named by their gene
        gene = comp["Metadata_gene"].notna() & comp.get("Metadata_pert_type", pd.Series("", index=comp.index)).isin(
            ["crispr", "orf"]
        )
        comp.loc[gene, "name"] = comp.loc[gene, "Metadata_gene"]
    wells = df[[c for c in WELL_COLUMNS if c in df.columns]].copy()
    wells.insert(0, "compound", keys)
    wells["is_control"] = ctrl
    manifest = {
        "format": INDEX_FORMAT,
        "method": method,
        "dataset": dataset,
        "fraction": str(fraction),
        "compound_key": key,
        "n_wells": int(V.shape[0]),
        "n_compounds": int(len(uniq)),
        "dim": int(V.shape[1]),
        "similarity": "pearson (row-centred, unit-scaled profiles)",
        "build_id": f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}",
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    return RetrievalIndex(V, M, wells, comp, manifest)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def save_index(index: RetrievalIndex, folder: str | Path, *, tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write ``index`` to ``folder`` (temporary folder, then rename; an existing index is replaced whole).

    ``tables`` adds parquet files to the same folder in the same rename (e.g. ``calibration.parquet``)."""
    folder = Path(folder)
    with atomic_directory(folder) as tmp:
        for name, table in (tables or {}).items():
            if not name.endswith(".parquet") or "/" in name:
                raise ValueError(f"extra index table names are plain '<name>.parquet', got {name!r}")
            table.to_parquet(tmp / name, index=False)
        np.save(tmp / "vectors.npy", np.ascontiguousarray(index.vectors, dtype=np.float32), allow_pickle=False)
        np.save(
            tmp / "compound_vectors.npy",
            np.ascontiguousarray(index.compound_vectors, dtype=np.float32),
            allow_pickle=False,
        )
        index.wells.to_parquet(tmp / "wells.parquet", index=False)
        index.compounds.to_parquet(tmp / "compounds.parquet", index=False)
        manifest = {**index.manifest, "sha256": {n: _sha256(tmp / n) for n in ("vectors.npy", "compound_vectors.npy")}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    index.manifest = manifest
    return folder


def load_index(folder: str | Path, *, verify: bool = False, mmap: bool = True) -> RetrievalIndex:
    """Open an index written by :func:`save_index` (arrays memory-mapped; ``verify`` re-hashes them)."""
    folder = Path(folder)
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        raise IndexError_(f"no retrieval index at {folder} (manifest.json missing): materialize retrieval_index")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise IndexError_(f"{mpath} is not valid JSON ({exc}): rematerialize retrieval_index") from None
    if manifest.get("format") != INDEX_FORMAT:
        raise IndexError_(f"{folder}: not a {INDEX_FORMAT} index (format {manifest.get('format')!r})")
    arrays = {}
    for name in ("vectors.npy", "compound_vectors.npy"):
        p = folder / name
        if not p.is_file():
            raise IndexError_(f"retrieval index {folder}: {name} missing: rematerialize retrieval_index")
        if verify and _sha256(p) != manifest.get("sha256", {}).get(name):
            raise IndexError_(f"retrieval index {folder}: {name} does not match its manifest hash")
        try:
            arrays[name] = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        except ValueError as exc:
            raise IndexError_(f"retrieval index {folder}: {name} unreadable ({exc})") from None
    for name in ("wells.parquet", "compounds.parquet"):
        if not (folder / name).is_file():
            raise IndexError_(f"retrieval index {folder}: {name} missing: rematerialize retrieval_index")
    wells = pd.read_parquet(folder / "wells.parquet")
    comp = pd.read_parquet(folder / "compounds.parquet")
    V, M = arrays["vectors.npy"], arrays["compound_vectors.npy"]
    if (
        V.shape != (manifest["n_wells"], manifest["dim"])
        or M.shape != (manifest["n_compounds"], manifest["dim"])
        or len(wells) != V.shape[0]
        or len(comp) != M.shape[0]
    ):
        raise IndexError_(
            f"retrieval index {folder}: array shapes {V.shape}/{M.shape} do not match the manifest "
            f"({manifest['n_wells']} wells, {manifest['n_compounds']} compounds, {manifest['dim']} d)"
        )
    return RetrievalIndex(V, M, wells, comp, manifest)
