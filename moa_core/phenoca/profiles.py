"""Any well-level table as a Pheno-CA study input (the schema of :mod:`moa_core.phenoca.synthetic`).

A Pheno-CA study reads well-level profiles with :data:`STUDY_METADATA` columns and float
features. :func:`as_study_table` brings the project's other well tables to it: the
published CellProfiler profiles (canonical schema of :mod:`moa_core.profiles.published`:
JUMP's cpg0016 is the paper's data), and the CP features or MP embeddings of an image
dataset. The mapping:

- molecule: ``Metadata_JCP2022`` if present, else the ``Metadata_InChIKey``, else the
  13-character core of a Broad ID (``BRD-K12345678``: one molecule under several batch/salt
  suffixes, as LINCS lists it), so that the novel-compound split holds out molecules;
- negative controls (``Metadata_moa == "DMSO"``, a ``negcon`` perturbation or control type)
  become ``Metadata_pert_type = "negcon"``; positive controls stay compounds with their MoA; CRISPR rows
  (a ``Metadata_gene`` column with a value)
  ``"crispr"``; every other row ``"compound"``;
- a compound without an MoA is *unannotated* (``Metadata_is_ood``): it takes part in IBP
  pretraining (predict the molecule from its phenotype) but in no task;
- ``Metadata_Source`` / ``Metadata_Batch`` default to one value when the table has none
  (a single-source study then has no source nuisance to remove).

Multi-MOA compounds keep their ``|``-joined label as one class (the paper's Pheno-CA
classes are the annotation strings); filter them beforehand to follow the MOAProfiler
paper's single-MOA rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moa_core.errors import SchemaError
from moa_core.phenoca.synthetic import NEGCON, PROFILE_METADATA

STUDY_METADATA = PROFILE_METADATA


def _blank(s: pd.Series) -> pd.Series:
    return s.isna() | s.astype(str).str.strip().isin(["", "nan", "None", "<NA>"])


def as_study_table(df: pd.DataFrame, *, source: str = "unknown") -> pd.DataFrame:
    """``df``'s wells with :data:`STUDY_METADATA` first, then its float features (``float32``).

    Raises :class:`SchemaError` naming what is missing (plate, well, a compound column, any feature).
    """
    feats = [c for c in df.columns if not c.startswith("Metadata_")]
    if not feats:
        raise SchemaError("profile table has no feature columns (every column starts with Metadata_)")
    out = study_metadata(df, source=source)
    x = df[feats].apply(pd.to_numeric, errors="coerce").astype(np.float32)
    return pd.concat([out, x.reset_index(drop=True)], axis=1)


def study_metadata(df: pd.DataFrame, *, source: str = "unknown") -> pd.DataFrame:
    """:data:`STUDY_METADATA` of ``df``'s wells (index reset): :func:`as_study_table` without the features,
    for a table whose features travel as a separate matrix (``run_study(..., features=...)``)."""
    for col in ("Metadata_Plate", "Metadata_Well"):
        if col not in df.columns:
            raise SchemaError(f"profile table has no {col} column; Pheno-CA needs plate and well of every profile")
    cid = (
        "Metadata_JCP2022"
        if "Metadata_JCP2022" in df.columns
        else ("Metadata_broad_sample" if "Metadata_broad_sample" in df.columns else None)
    )
    if cid is None:
        raise SchemaError("profile table has no compound column (Metadata_JCP2022 or Metadata_broad_sample)")
    if cid == "Metadata_broad_sample":  # one molecule, several batch/salt suffixes (LINCS): its InChIKey or BRD core
        ik = df["Metadata_InChIKey"] if "Metadata_InChIKey" in df.columns else pd.Series("", index=df.index)
        core = df[cid].astype(str).where(~df[cid].astype(str).str.startswith("BRD-"), df[cid].astype(str).str[:13])
        molecule = ik.astype(str).where(~_blank(ik) & df[cid].astype(str).ne(NEGCON), core)
    else:
        molecule = df[cid].astype(str)
    out = pd.DataFrame(index=df.index)
    out["Metadata_Source"] = (
        df["Metadata_Source"].fillna(source).astype(str) if "Metadata_Source" in df.columns else source
    )
    out["Metadata_Batch"] = (
        df["Metadata_Batch"].fillna("batch").astype(str) if "Metadata_Batch" in df.columns else "batch"
    )
    out["Metadata_Plate"] = df["Metadata_Plate"].astype(str)
    out["Metadata_Well"] = df["Metadata_Well"].astype(str)
    blank = _blank(df[cid])
    if blank.any():
        r = df[blank].iloc[0]
        raise SchemaError(
            f"{int(blank.sum())} profile(s) with a blank {cid}, e.g. plate {r['Metadata_Plate']} "
            f"well {r['Metadata_Well']}"
        )
    out["Metadata_JCP2022"] = molecule.astype(str)
    out["Metadata_broad_sample"] = (
        df["Metadata_broad_sample"].astype(str) if "Metadata_broad_sample" in df.columns else out["Metadata_JCP2022"]
    )
    out["Metadata_InChIKey"] = df["Metadata_InChIKey"].astype(str) if "Metadata_InChIKey" in df.columns else ""
    moa = df["Metadata_moa"] if "Metadata_moa" in df.columns else pd.Series(np.nan, index=df.index)
    gene = df["Metadata_gene"] if "Metadata_gene" in df.columns else pd.Series(np.nan, index=df.index)
    ptype = (
        df["Metadata_pert_type"].astype(str).str.lower()
        if "Metadata_pert_type" in df.columns
        else pd.Series("", index=df.index)
    )
    ctype = (
        df["Metadata_control_type"].astype(str).str.lower()
        if "Metadata_control_type" in df.columns
        else pd.Series("", index=df.index)
    )
    # negative controls only: positive controls ("control" perturbations with an MoA) stay compounds
    neg = moa.astype(str).eq(NEGCON) | ptype.eq("negcon") | ctype.eq("negcon") | out["Metadata_broad_sample"].eq(NEGCON)
    crispr = ~_blank(gene) & ~neg
    out["Metadata_pert_type"] = np.where(neg, "negcon", np.where(crispr, "crispr", "compound"))
    out["Metadata_moa"] = np.where(neg, NEGCON, np.where(_blank(moa), None, moa.astype(str)))
    tgt = df["Metadata_target"] if "Metadata_target" in df.columns else pd.Series(np.nan, index=df.index)
    out["Metadata_target"] = np.where(crispr, gene.astype(str), np.where(_blank(tgt) | neg, None, tgt.astype(str)))
    out["Metadata_gene"] = np.where(crispr, gene.astype(str), None)
    out["Metadata_is_ood"] = (~neg & ~crispr & _blank(moa)).to_numpy()
    return out[STUDY_METADATA].reset_index(drop=True)


def write_study_parquet(
    meta: pd.DataFrame, matrix: np.ndarray, feature_names: list[str], path, *, chunk_rows: int = 32_768
):
    """The study table ``meta`` + float32 ``matrix`` as one parquet file, written a row group of
    ``chunk_rows`` wells at a time (no frame of the whole table), via a temporary name then rename.
    Read back by :func:`read_study_parquet` (or ``pandas.read_parquet`` where it fits in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from moa_core.atomic import atomic_path

    if matrix.shape != (len(meta), len(feature_names)):
        raise SchemaError(f"feature matrix has shape {matrix.shape}, expected {(len(meta), len(feature_names))}")
    meta = meta.reset_index(drop=True)
    with atomic_path(path) as tmp:
        writer = None
        try:
            for a in range(0, len(meta), chunk_rows):
                part = pa.Table.from_pandas(meta.iloc[a : a + chunk_rows], preserve_index=False)
                x = np.asarray(matrix[a : a + chunk_rows], dtype=np.float32)
                for j, name in enumerate(feature_names):
                    part = part.append_column(name, pa.array(x[:, j]))
                if writer is None:
                    writer = pq.ParquetWriter(tmp, part.schema)
                writer.write_table(part.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()
    return path


def read_study_parquet(path) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """``(metadata, float32 features, feature names)`` of a study parquet file, a row group at a time."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    meta_cols = [c for c in names if c.startswith("Metadata_")]
    feats = [c for c in names if not c.startswith("Metadata_")]
    X = np.empty((pf.metadata.num_rows, len(feats)), dtype=np.float32)
    metas, at = [], 0
    for batch in pf.iter_batches(batch_size=32_768):
        n = batch.num_rows
        metas.append(batch.select(meta_cols).to_pandas())
        X[at : at + n] = np.column_stack(
            [batch.column(c).to_numpy(zero_copy_only=False).astype(np.float32, copy=False) for c in feats]
        )
        at += n
    return pd.concat(metas, ignore_index=True), X, feats
