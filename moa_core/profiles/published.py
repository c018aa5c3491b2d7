"""Published well-level CellProfiler profiles ("CP published") in one documented schema.

The consortia publish CellProfiler features aggregated per well: cpg0000 (JUMP pilot)
and cpg0004 (LINCS) as per-plate ``<plate>[_<level>].csv.gz`` files whose suffix names
the processing level (``normalized``, ``normalized_feature_select_negcon_batch``...),
cpg0016 (JUMP) as per-plate ``<plate>.parquet`` files and assembled releases. This module
reads any of them (:func:`read_profile_file`), annotates compounds with MOAs
(:func:`annotate_cpjump1`, :func:`annotate_lincs`, :func:`annotate_by_inchikey`), maps
them onto the canonical schema (:func:`to_canonical`), applies the paper's filters
(:func:`apply_paper_filters`) and loads them into DuckDB (:func:`load_published_profiles`).
Column conventions are pycytominer's (``Metadata_`` prefix; everything else a feature).

Canonical schema (:data:`PUBLISHED_METADATA`, then float32 features in file order):

==========================  ==============================================================
``Metadata_Source``         JUMP source (``source_4``), the LINCS/pilot source otherwise
``Metadata_Batch``          batch folder of the gallery
``Metadata_Plate``          plate barcode
``Metadata_Well``           well (``A01``)
``Metadata_broad_sample``   compound ID (Broad sample ID; JCP2022 ID for cpg0016); ``DMSO``
``Metadata_pert_iname``     compound name
``Metadata_InChIKey``       InChIKey (or its 14-character first block for LINCS)
``Metadata_pert_type``      ``trt`` or ``control``
``Metadata_moa``            MOA; ``DMSO`` for negative controls; ``|``-joined when several
``Metadata_n_moa``          number of MOAs listed (0 when unannotated)
``Metadata_single_moa``     exactly one MOA (the paper keeps only these)
``Metadata_target``         target(s), ``|``-joined
``Metadata_dose_uM``        dose in µM (LINCS ``Metadata_mmoles_per_liter``); NaN if unknown
``Metadata_release``        the release or processing level the rows came from
``Metadata_etag``           ETag of the source object ("" for local files)
``Metadata_source_file``    s3:// URI or path of the source file
==========================  ==============================================================
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.data.design import NEGCON
from moa_core.errors import SchemaError
from moa_core.storage import Warehouse

PUBLISHED_METADATA: list[str] = [
    "Metadata_Source",
    "Metadata_Batch",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_broad_sample",
    "Metadata_pert_iname",
    "Metadata_InChIKey",
    "Metadata_pert_type",
    "Metadata_moa",
    "Metadata_n_moa",
    "Metadata_single_moa",
    "Metadata_target",
    "Metadata_dose_uM",
    "Metadata_release",
    "Metadata_etag",
    "Metadata_source_file",
]
_SUFFIX = re.compile(
    r"^(?P<plate>[^_]+(?:_[^_]+)*?)(?:_(?P<level>(?:augmented|normalized|spherized|"
    r"consensus)[A-Za-z0-9_]*))?\.(?:csv\.gz|csv|parquet)$"
)


def _suggest(missing: str, columns: Sequence[str]) -> str:
    close = difflib.get_close_matches(missing, list(columns), n=1, cutoff=0.6)
    if not close:
        close = [c for c in columns if c.lower() == missing.lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


def profile_suffix(path: str | Path) -> str:
    """Processing level in a cpg0000/cpg0004 profile file name: ``SQ1_normalized.csv.gz`` -> ``normalized``."""
    m = _SUFFIX.match(Path(str(path)).name)
    return (m.group("level") or "") if m else ""


def read_profile_file(
    path: str | Path, *, required: Sequence[str] = ("Metadata_Plate", "Metadata_Well")
) -> pd.DataFrame:
    """A published well-level profile file (csv, csv.gz, parquet), validated; features as float32.

    Raises :class:`SchemaError` naming the file for: missing/renamed key columns (with the
    nearest existing name), blank or duplicated (plate, well), no feature column,
    non-numeric feature columns.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"profile file missing: {p}")
    try:
        df = pd.read_parquet(p) if p.name.endswith(".parquet") else pd.read_csv(p, low_memory=False)
    except Exception as exc:
        raise SchemaError(f"cannot read profile file {p}: {type(exc).__name__}: {exc}") from exc
    for col in required:
        if col not in df.columns:
            raise SchemaError(f"{p}: missing column {col!r}{_suggest(col, df.columns)}")
    for col in required:
        blank = df[col].isna() | df[col].astype(str).str.strip().eq("")
        if blank.any():
            raise SchemaError(
                f"{p}: blank {col} in row {int(np.flatnonzero(blank.to_numpy())[0])} ({int(blank.sum())} rows)"
            )
        df[col] = df[col].astype(str)
    dup = df.duplicated(list(required))
    if dup.any():
        r = df[dup].iloc[0]
        raise SchemaError(f"{p}: duplicated " + " ".join(f"{c} {r[c]}" for c in required))
    feats = [c for c in df.columns if not str(c).startswith("Metadata_")]
    if not feats:
        raise SchemaError(f"{p}: no feature column (every column starts with Metadata_)")
    bad = [c for c in feats if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise SchemaError(f"{p}: non-numeric feature column(s) {bad[:5]} (metadata must be prefixed Metadata_)")
    if not all(df[c].dtype == np.float32 for c in feats):  # one block conversion, not 4,762 column writes
        meta = df[[c for c in df.columns if str(c).startswith("Metadata_")]]
        df = pd.concat([meta, pd.DataFrame(df[feats].to_numpy(np.float32), columns=feats, index=df.index)], axis=1)
    return df


def _negcon_mask(df: pd.DataFrame) -> pd.Series:
    m = pd.Series(False, index=df.index)
    for col in ("Metadata_broad_sample", "Metadata_pert_iname"):
        if col in df.columns:
            m |= df[col].astype("string").str.upper().eq(NEGCON).fillna(False)
    if "Metadata_control_type" in df.columns:
        m |= df["Metadata_control_type"].astype("string").eq("negcon").fillna(False)
    return m.astype(bool)


def _annotation_table(path: Path, key: str, columns: Sequence[str], sep: str = "\t") -> pd.DataFrame:
    if not Path(path).is_file():
        raise FileNotFoundError(f"annotation file missing: {path}")
    ann = pd.read_csv(path, sep=sep)
    missing = [c for c in [key, *columns] if c not in ann.columns]
    if missing:
        raise SchemaError(f"{path}: annotation file lacks column(s) {missing}{_suggest(missing[0], ann.columns)}")
    return ann.dropna(subset=[key]).drop_duplicates(key)


def annotate_cpjump1(df: pd.DataFrame, annotations_tsv: str | Path) -> pd.DataFrame:
    """JUMP-Target-1 annotations by ``broad_sample``: ``moa_list``/``target_list`` -> ``Metadata_moa``/``_target``."""
    ann = _annotation_table(Path(annotations_tsv), "broad_sample", ["moa_list"]).set_index("broad_sample")
    if "Metadata_broad_sample" not in df.columns:
        raise SchemaError("profiles lack Metadata_broad_sample: cannot join JUMP-Target-1 annotations")
    out = df.copy()
    s = out["Metadata_broad_sample"]
    out["Metadata_moa"] = s.map(ann["moa_list"])
    if "target_list" in ann.columns:
        out["Metadata_target"] = s.map(ann["target_list"])
    if "InChIKey" in ann.columns:
        out["Metadata_InChIKey"] = s.map(ann["InChIKey"])
    if "pert_iname" in ann.columns and "Metadata_pert_iname" not in out.columns:
        out["Metadata_pert_iname"] = s.map(ann["pert_iname"])
    neg = _negcon_mask(out)
    out.loc[neg, "Metadata_moa"] = NEGCON
    out.loc[neg, "Metadata_broad_sample"] = NEGCON
    return out


def annotate_lincs(df: pd.DataFrame, repurposing_tsv: str | Path) -> pd.DataFrame:
    """LINCS repurposing map by ``broad_sample``, falling back to the 13-character Broad ID.

    Where the map lacks a compound, the file's own ``Metadata_moa`` (if any) is kept: the
    LINCS profiles were annotated from an earlier version of the same map.
    """
    ann = _annotation_table(Path(repurposing_tsv), "broad_sample", ["moa"])
    if "Metadata_broad_sample" not in df.columns:
        raise SchemaError("profiles lack Metadata_broad_sample: cannot join the LINCS repurposing map")
    by_sample = ann.set_index("broad_sample")
    by_id = ann.assign(_id=ann["broad_sample"].str[:13]).drop_duplicates("_id").set_index("_id")
    out = df.copy()
    s = out["Metadata_broad_sample"].astype("string")

    def look(col: str) -> pd.Series:
        if col not in ann.columns:
            return pd.Series(np.nan, index=out.index)
        return s.map(by_sample[col]).fillna(s.str[:13].map(by_id[col]))

    moa = look("moa")
    if "Metadata_moa" in out.columns:
        moa = moa.fillna(out["Metadata_moa"])
    out["Metadata_moa"] = moa
    tgt = look("target")
    out["Metadata_target"] = tgt.fillna(out["Metadata_target"]) if "Metadata_target" in out.columns else tgt
    ik = look("InChIKey14")
    out["Metadata_InChIKey"] = ik.fillna(out["Metadata_InChIKey14"]) if "Metadata_InChIKey14" in out.columns else ik
    if "pert_iname" in ann.columns:
        name = look("pert_iname")
        out["Metadata_pert_iname"] = name.fillna(out["Metadata_pert_iname"]) if "Metadata_pert_iname" in out else name
    if "Metadata_mmoles_per_liter" in out.columns:
        out["Metadata_dose_uM"] = pd.to_numeric(out["Metadata_mmoles_per_liter"], errors="coerce")
    neg = _negcon_mask(out)
    out.loc[neg, "Metadata_moa"] = NEGCON
    return out


def annotate_by_inchikey(
    df: pd.DataFrame,
    wells: pd.DataFrame,
    compounds: pd.DataFrame,
    annotations: pd.DataFrame,
    controls: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """cpg0016: well -> JCP2022 (``well.csv.gz``) -> InChIKey (``compound.csv.gz``) -> MOA by InChIKey.

    ``annotations`` has ``InChIKey`` (or LINCS's 14-character ``InChIKey14``) and ``moa_list``
    or ``moa`` (and ``target_list``/``target``). ``controls`` is JUMP's
    ``perturbation_control.csv`` (``Metadata_JCP2022, Metadata_pert_type``): its ``negcon``
    wells become ``DMSO``.
    """
    for name, t, cols in [
        ("well table", wells, ["Metadata_Plate", "Metadata_Well", "Metadata_JCP2022"]),
        ("compound table", compounds, ["Metadata_JCP2022", "Metadata_InChIKey"]),
    ]:
        missing = [c for c in cols if c not in t.columns]
        if missing:
            raise SchemaError(f"{name} lacks column(s) {missing}")
    moa_col = "moa_list" if "moa_list" in annotations.columns else "moa"
    key = "InChIKey" if "InChIKey" in annotations.columns else "InChIKey14"
    if moa_col not in annotations.columns or key not in annotations.columns:
        raise SchemaError(
            f"annotation table needs InChIKey/InChIKey14 and moa_list/moa; has {list(annotations.columns)}"
        )
    tgt_col = "target_list" if "target_list" in annotations.columns else "target"
    out = df.drop(columns=[c for c in ("Metadata_JCP2022", "Metadata_InChIKey") if c in df.columns])
    w = wells[["Metadata_Plate", "Metadata_Well", "Metadata_JCP2022"]].astype(str)
    out = out.merge(w, on=["Metadata_Plate", "Metadata_Well"], how="left")
    out = out.merge(
        compounds[["Metadata_JCP2022", "Metadata_InChIKey"]].drop_duplicates("Metadata_JCP2022"),
        on="Metadata_JCP2022",
        how="left",
    )
    ann = annotations.dropna(subset=[key]).drop_duplicates(key).set_index(key)
    ik = out["Metadata_InChIKey"].astype("string")
    probe = ik if key == "InChIKey" else ik.str[:14]
    out["Metadata_moa"] = probe.map(ann[moa_col])
    if tgt_col in ann.columns:
        out["Metadata_target"] = probe.map(ann[tgt_col])
    out["Metadata_broad_sample"] = out["Metadata_JCP2022"]
    if controls is not None:
        neg = set(controls.loc[controls["Metadata_pert_type"].eq("negcon"), "Metadata_JCP2022"])
        is_neg = out["Metadata_JCP2022"].isin(neg)
        out.loc[is_neg, "Metadata_moa"] = NEGCON
        out.loc[is_neg, "Metadata_broad_sample"] = NEGCON
        out.loc[is_neg, "Metadata_pert_type"] = "control"
    return out


def to_canonical(
    df: pd.DataFrame,
    *,
    release: str,
    etag: str = "",
    source_file: str = "",
    source: str | None = None,
    batch: str | None = None,
) -> pd.DataFrame:
    """Canonical metadata (:data:`PUBLISHED_METADATA`, in order) + features; other ``Metadata_`` columns dropped."""
    out = pd.DataFrame(index=df.index)
    feats = [c for c in df.columns if not str(c).startswith("Metadata_")]
    get = lambda c, default=np.nan: df[c] if c in df.columns else pd.Series(default, index=df.index)  # noqa: E731
    out["Metadata_Source"] = get("Metadata_Source", source).astype("string")
    out["Metadata_Batch"] = get("Metadata_Batch", batch).astype("string")
    out["Metadata_Plate"] = df["Metadata_Plate"].astype(str)
    out["Metadata_Well"] = df["Metadata_Well"].astype(str)
    for c in ("Metadata_broad_sample", "Metadata_pert_iname", "Metadata_InChIKey", "Metadata_target"):
        out[c] = get(c).astype("string")
    moa = get("Metadata_moa").astype("string")
    moa = moa.where(moa.str.strip().ne(""), pd.NA)
    neg = _negcon_mask(df)
    moa = moa.mask(neg, NEGCON)
    out["Metadata_pert_type"] = get("Metadata_pert_type", "trt").astype("string").mask(neg, "control")
    out["Metadata_moa"] = moa
    out["Metadata_n_moa"] = moa.str.count(r"\|").add(1).fillna(0).astype(int)
    out["Metadata_single_moa"] = out["Metadata_n_moa"].eq(1)
    out["Metadata_dose_uM"] = pd.to_numeric(get("Metadata_dose_uM"), errors="coerce").astype(float)
    out["Metadata_release"] = release
    out["Metadata_etag"] = etag
    out["Metadata_source_file"] = source_file
    out = out[PUBLISHED_METADATA]
    x = df[feats]
    if not all(x[c].dtype == np.float32 for c in feats):
        x = pd.DataFrame(x.to_numpy(np.float32), columns=feats, index=df.index)
    return pd.concat([out, x], axis=1).reset_index(drop=True)


@dataclass
class FilterReport:
    wells_in: int
    dropped_multi_moa: int = 0
    dropped_unannotated: int = 0
    dropped_other_dose: int = 0
    wells_out: int = 0
    plates_without_dmso: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict:
        return {
            "wells_in": self.wells_in,
            "dropped_multi_moa": self.dropped_multi_moa,
            "dropped_unannotated": self.dropped_unannotated,
            "dropped_other_dose": self.dropped_other_dose,
            "wells_out": self.wells_out,
            "plates_without_dmso": len(self.plates_without_dmso),
            "plates_without_dmso_names": ", ".join(self.plates_without_dmso[:20]),
        }


def apply_paper_filters(
    df: pd.DataFrame, *, single_moa: bool = True, dose_uM: float | None = None, dose_tol: float = 0.05
) -> tuple[pd.DataFrame, FilterReport]:
    """Wong et al. 2023: single-MOA compounds (and DMSO); LINCS: the 10 µM dose only.

    Unannotated wells are kept when no well of the table is annotated (a release loaded
    before its annotations): the filter reports, it does not empty the table. Plates left
    without DMSO wells are named in the report.
    """
    rep = FilterReport(wells_in=len(df))
    neg = df["Metadata_moa"].eq(NEGCON).fillna(False).astype(bool)
    keep = pd.Series(True, index=df.index)
    if dose_uM is not None:
        dose = pd.to_numeric(df["Metadata_dose_uM"], errors="coerce")
        ok = (dose - dose_uM).abs() <= dose_tol * dose_uM
        rep.dropped_other_dose = int((~ok & ~neg & keep).sum())
        keep &= ok | neg
    if single_moa and df["Metadata_moa"].notna().any():
        unann = df["Metadata_moa"].isna()
        rep.dropped_unannotated = int((unann & keep).sum())
        keep &= ~unann
        multi = df["Metadata_n_moa"].gt(1)
        rep.dropped_multi_moa = int((multi & keep).sum())
        keep &= ~multi
    out = df[keep].reset_index(drop=True)
    rep.wells_out = len(out)
    with_dmso = set(out.loc[out["Metadata_moa"].eq(NEGCON).fillna(False), "Metadata_Plate"])
    rep.plates_without_dmso = sorted(set(out["Metadata_Plate"]) - with_dmso)
    return out, rep


def load_published_profiles(warehouse: Warehouse, table: str, df: pd.DataFrame, *, partition: dict) -> dict:
    """Validate the canonical schema and write ``table`` in one transaction; returns load metadata.

    The metadata reports ``rows, plates, features, release, etag, seconds, rows_per_s`` and the
    finite check: ``non_finite_values`` (NaN or ±inf cells), ``columns_with_non_finite`` and
    ``worst_column`` (most non-finite cells; "" when all finite). Non-finite values are
    reported, not removed: feature hygiene (``moa_core.profiles.normalize``) decides.
    """
    missing = [c for c in PUBLISHED_METADATA if c not in df.columns]
    if missing:
        raise SchemaError(f"{table}: not in the canonical schema, missing {missing}")
    if df.empty:
        raise SchemaError(f"{table}: no rows to load")
    feats = [c for c in df.columns if c not in PUBLISHED_METADATA]
    bad_cols = [c for c in feats if not pd.api.types.is_numeric_dtype(df[c])]
    if not feats or bad_cols:
        raise SchemaError(f"{table}: features must be numeric and at least one; offending {bad_cols[:5]}")
    bad = ~np.isfinite(df[feats].to_numpy(np.float32))
    per_col = bad.sum(axis=0)
    t0 = time.perf_counter()
    warehouse.replace_table(table, df, partition=partition)
    sec = time.perf_counter() - t0
    worst = feats[int(per_col.argmax())] if per_col.any() else ""
    return {
        "rows": len(df),
        "plates": int(df["Metadata_Plate"].nunique()),
        "features": len(feats),
        "non_finite_values": int(bad.sum()),
        "columns_with_non_finite": int((per_col > 0).sum()),
        "worst_column": worst,
        "release": str(df["Metadata_release"].iloc[0]) if len(df) else "",
        "etag": str(df["Metadata_etag"].iloc[0]) if len(df) else "",
        "seconds": round(sec, 3),
        "rows_per_s": round(len(df) / sec, 1) if sec > 0 else float("inf"),
    }


def published_embeddings(table: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """ "CP published" well embeddings: :func:`~moa_core.profiles.normalize.clean_features`, then each plate
    standardized to its DMSO wells, as the project's own CP profiles.

    Published profiles are usually normalized already (to the plate or its DMSO wells);
    standardizing them again to DMSO makes every method's features comparable in the same
    analyses. Plates with fewer than 2 DMSO wells cannot be standardized: they are left
    out and named in the report; if no plate has them, :class:`NormalizationError`.
    """
    from moa_core.errors import NormalizationError
    from moa_core.profiles.normalize import clean_features, standardize_to_controls

    feats = [c for c in table.columns if c not in PUBLISHED_METADATA and not str(c).startswith("Metadata_")]
    clean, kept, report = clean_features(table, feats)
    n_dmso = clean[clean["Metadata_moa"].eq(NEGCON).fillna(False)].groupby("Metadata_Plate").size()
    ok = set(n_dmso[n_dmso >= 2].index)
    no_dmso = sorted(set(clean["Metadata_Plate"]) - ok)
    if not ok:
        raise NormalizationError(
            f"no plate has 2 or more DMSO wells (plates: {no_dmso[:10]}); per-plate "
            f"standardization to DMSO is impossible"
        )
    clean = clean[clean["Metadata_Plate"].isin(ok)]
    std, zero_sd = standardize_to_controls(clean, kept, control_mask=clean["Metadata_moa"].eq(NEGCON).fillna(False))
    return std, {**report.as_metadata(), "plates_without_dmso": no_dmso, "dropped_zero_dmso_sd": len(zero_sd)}
