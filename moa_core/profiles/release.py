"""A JUMP-scale profile release out of core: DuckDB reads the plate files, normalization plate by plate.

An assembled cpg0016 release (~800,000 wells x 4,762 float32 features, ~15 GB) does not fit in
pandas on a 24 GB machine, so nothing here holds more than one plate of features in memory:

1. :func:`check_release_files` reads every plate file's *schema* (parquet footers, no data) and
   refuses a release whose plates disagree: a missing or extra feature column, a feature stored
   as text, a truncated or unreadable file (each named with the file and the column).
2. :func:`load_release` loads the plate files into a staging table, a few plates per DuckDB
   transaction (``INSERT ... SELECT ... FROM read_parquet(?)``: DuckDB reads the files itself, the
   paths are a bound parameter, never SQL text), recording each finished plate in
   ``release_load_progress`` in the same transaction. A killed load resumes after the last
   finished plate; a finished one is not redone. Duplicate (plate, well) keys are refused by
   name. Only when every plate is in is the staging table swapped for the previous release's
   table in one transaction, so a reader sees the old release or the new one, never half.
3. :func:`release_wells` joins JUMP's metadata (``well.csv.gz`` -> JCP2022,
   ``compound.csv.gz`` -> InChIKey, ``crispr.csv.gz`` -> gene, ``perturbation_control.csv`` ->
   negative and positive controls, an annotation table by InChIKey -> MoA and target) in DuckDB
   into one canonical metadata row per well.
4. :func:`normalize_release` is the project's CP-published normalization
   (:func:`moa_core.profiles.published.published_embeddings` =
   :func:`~moa_core.profiles.normalize.clean_features` + per-plate standardization to DMSO),
   computed in two passes over the plates: the first gathers each feature's NaN share and
   range over all wells (the global decisions of ``clean_features``), each plate's medians and
   DMSO mean and SD, and a sample of standardized rows, on which pycytominer's ``feature_select``
   (``variance_threshold``, ``correlation_threshold``) picks the features, as the JUMP profiling
   recipe does before its downstream steps; the second reads only the selected features and
   imputes, standardizes and writes each plate. At the 1 % scale,
   where the whole table fits in memory, the written values equal the in-memory
   ``published_embeddings`` (tested).

5. :func:`read_metadata`, :func:`read_features` and :func:`read_matrix` read a normalized table back for the
   downstream steps without a pandas copy of its features: the metadata as a frame (with each
   row's DuckDB ``rowid``), the features of any chosen rows straight into a float32 array in
   the caller's row order (one scan, a record batch at a time).

Plates without DMSO wells cannot be standardized: they are skipped and named in the report,
never silently dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.errors import NormalizationError, SchemaError
from moa_core.storage import Warehouse, quoted_identifier, transaction

__all__ = [
    "KEYS",
    "RELEASE_METADATA",
    "LoadReport",
    "NormalizeReport",
    "PlateFile",
    "check_release_files",
    "load_release",
    "normalize_release",
    "read_features",
    "read_matrix",
    "read_metadata",
    "release_wells",
    "table_columns",
]

KEYS = ["Metadata_Source", "Metadata_Plate", "Metadata_Well"]
#: Canonical metadata of a release's wells (:data:`moa_core.profiles.published.PUBLISHED_METADATA` plus
#: JUMP's perturbation ID, the knocked-out gene and the control type).
RELEASE_METADATA = [
    "Metadata_Source",
    "Metadata_Batch",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_JCP2022",
    "Metadata_broad_sample",
    "Metadata_pert_iname",
    "Metadata_InChIKey",
    "Metadata_pert_type",
    "Metadata_control_type",
    "Metadata_moa",
    "Metadata_n_moa",
    "Metadata_single_moa",
    "Metadata_target",
    "Metadata_gene",
    "Metadata_dose_uM",
    "Metadata_release",
    "Metadata_etag",
    "Metadata_source_file",
]
Progress = Callable[[int, int, int], None]  # (plates done, plates, rows done)


@dataclass(frozen=True)
class PlateFile:
    """One plate's profile file of a release and where it sits in the release."""

    path: Path
    source: str
    batch: str
    plate: str
    source_file: str = ""  # the s3:// URI or local path it came from
    etag: str = ""


@dataclass
class LoadReport:
    """What :func:`load_release` did."""

    plates: int = 0
    plates_loaded: int = 0
    plates_resumed: int = 0
    rows: int = 0
    features: int = 0
    seconds: float = 0.0

    def as_metadata(self) -> dict:
        return {
            "plates": self.plates,
            "plates_loaded": self.plates_loaded,
            "plates_already_loaded": self.plates_resumed,
            "rows": self.rows,
            "features": self.features,
            "load_seconds": round(self.seconds, 1),
            "rows_per_s": round(self.rows / self.seconds, 1) if self.seconds > 0 else None,
        }


def _feature_type_ok(t) -> bool:
    import pyarrow as pa

    return pa.types.is_floating(t) or pa.types.is_integer(t)


def check_release_files(files: Sequence[PlateFile]) -> list[str]:
    """The feature columns every plate file shares (in the first file's order); a clear error otherwise.

    Reads only the parquet footers. Raises :class:`SchemaError` naming the file for: an unreadable
    or truncated file, a missing key column, a feature column missing or extra relative to the
    first file, or a feature column that is not numeric.
    """
    import pyarrow.parquet as pq

    if not files:
        raise SchemaError("the release has no plate files")
    ref: list[str] | None = None
    ref_file = ""
    for f in files:
        if not Path(f.path).is_file():
            raise FileNotFoundError(f"plate {f.plate}: profile file missing: {f.path}")
        try:
            schema = pq.read_schema(f.path)
        except Exception as exc:  # ArrowInvalid for truncated files, OSError...
            raise SchemaError(
                f"plate {f.plate}: cannot read {f.path} (truncated or not parquet): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            ) from None
        names = list(schema.names)
        for k in ("Metadata_Plate", "Metadata_Well"):
            if k not in names:
                raise SchemaError(f"{f.path}: missing key column {k!r}")
        feats = [n for n in names if not n.startswith("Metadata_")]
        bad = [n for n in feats if not _feature_type_ok(schema.field(n).type)]
        if bad:
            raise SchemaError(
                f"{f.path}: feature column {bad[0]!r} is stored as {schema.field(bad[0]).type}, not "
                f"a number ({len(bad)} such column(s))"
            )
        if ref is None:
            ref, ref_file = feats, str(f.path)
            ref_set = set(ref)
            continue
        if feats != ref:
            missing = [c for c in ref if c not in set(feats)]
            extra = [c for c in feats if c not in ref_set]
            if missing or extra:
                raise SchemaError(
                    f"schema drift: {f.path} "
                    + (f"lacks feature column(s) {missing[:5]}" if missing else "")
                    + (" and " if missing and extra else "")
                    + (f"has extra column(s) {extra[:5]}" if extra else "")
                    + f" compared with {ref_file}"
                )
    if not ref:
        raise SchemaError(f"{ref_file}: no feature column (every column starts with Metadata_)")
    return ref


def _q(name: str) -> str:
    """A column name quoted for DuckDB (column names come from the files' schema, so they are checked)."""
    if '"' in name or "\x00" in name:
        raise SchemaError(f"unsupported column name {name!r}")
    return f'"{name}"'


def load_release(
    wh: Warehouse,
    files: Sequence[PlateFile],
    table: str,
    *,
    features: Sequence[str] | None = None,
    progress: Progress | None = None,
    plates_per_transaction: int = 32,
) -> LoadReport:
    """Load every plate file into ``table`` (keys, ``Metadata_Batch`` and float32 features), resumably.

    The staging table ``<table>__staging`` receives ``plates_per_transaction`` plates per transaction
    (one statement over their files), together with
    their rows in ``release_load_progress`` (table, plate, file, size, mtime, rows); a plate
    whose file is unchanged since it was loaded is skipped, so a killed load resumes. When
    every plate is in, duplicate (plate, well) keys are refused naming them, and the staging
    table replaces ``table`` in one transaction (the previous release stays readable until then).
    """
    t0 = time.time()
    feats = list(features) if features is not None else check_release_files(files)
    quoted_identifier(table)  # validates the table name
    stage = f"{table}__staging"
    cols = ", ".join(f"CAST({_q(c)} AS FLOAT) AS {_q(c)}" for c in feats)
    rep = LoadReport(plates=len(files), features=len(feats))
    plates = [f.plate for f in files]
    if len(set(plates)) != len(plates):
        dup = sorted({p for p in plates if plates.count(p) > 1})
        raise SchemaError(f"the release lists plate(s) {dup[:5]} in more than one file")
    with wh.connect() as con:
        con.execute(
            "CREATE TABLE IF NOT EXISTS release_load_progress (table_name VARCHAR, plate VARCHAR, file VARCHAR, "
            "size BIGINT, mtime DOUBLE, n_rows BIGINT, loaded_at TIMESTAMP)"
        )
        have_stage = (
            con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [stage]).fetchone()[0]
            > 0
        )
        done = {}
        if have_stage:
            done = {
                r[0]: (r[1], r[2], r[3], r[4])
                for r in con.execute(
                    "SELECT plate, file, size, mtime, n_rows FROM release_load_progress WHERE table_name = ?", [stage]
                ).fetchall()
            }
            stage_cols = [r[0] for r in con.execute(f"DESCRIBE {quoted_identifier(stage)}").fetchall()]
            if stage_cols[4:] != feats:  # another feature set: start afresh
                con.execute(f"DROP TABLE {quoted_identifier(stage)}")
                con.execute("DELETE FROM release_load_progress WHERE table_name = ?", [stage])
                have_stage, done = False, {}
        if not have_stage:
            con.execute("DELETE FROM release_load_progress WHERE table_name = ?", [stage])
            con.execute(
                f"CREATE TABLE {quoted_identifier(stage)} AS SELECT CAST(NULL AS VARCHAR) AS Metadata_Source, "
                f"CAST(NULL AS VARCHAR) AS Metadata_Batch, CAST(NULL AS VARCHAR) AS Metadata_Plate, "
                f"CAST(NULL AS VARCHAR) AS Metadata_Well, {', '.join(f'CAST(NULL AS FLOAT) AS {_q(c)}' for c in feats)}"
                f" LIMIT 0"
            )
        # a plate whose staged rows were recorded but whose file changed since is reloaded
        pending: list[tuple[PlateFile, object, tuple | None]] = []
        for f in files:
            st = Path(f.path).stat()
            prev = done.get(f.plate)
            if prev is not None and prev[0] == str(f.path) and prev[1] == st.st_size and prev[2] == st.st_mtime:
                rep.plates_resumed += 1
                rep.rows += int(prev[3])
            else:
                pending.append((f, st, prev))
        n_done = rep.plates_resumed
        if progress and n_done:
            progress(n_done, len(files), rep.rows)
        for i in range(0, len(pending), max(1, plates_per_transaction)):
            chunk = pending[i : i + max(1, plates_per_transaction)]
            try:
                counts = _insert_plates(con, stage, cols, chunk)
            except SchemaError:
                if len(chunk) == 1:
                    raise
                counts = {}
                for one in chunk:  # the plates before the failing file are kept (the resume point)
                    counts.update(_insert_plates(con, stage, cols, [one]))
            rep.plates_loaded += len(chunk)
            rep.rows += sum(counts.values())
            n_done += len(chunk)
            if progress:
                progress(n_done, len(files), rep.rows)
        dup = con.execute(
            f"SELECT Metadata_Plate, Metadata_Well, count(*) FROM {quoted_identifier(stage)} "
            f"GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2 LIMIT 5"
        ).fetchall()
        if dup:
            raise SchemaError(
                "duplicate wells in the release: " + ", ".join(f"plate {p} well {w} ({n} rows)" for p, w, n in dup)
            )
        with transaction(con):
            con.execute(f"DROP TABLE IF EXISTS {quoted_identifier(table)}")
            con.execute(f"ALTER TABLE {quoted_identifier(stage)} RENAME TO {quoted_identifier(table)}")
            con.execute("DELETE FROM release_load_progress WHERE table_name = ?", [stage])
    rep.seconds = time.time() - t0
    return rep


def _insert_plates(con, stage: str, cols: str, chunk: list) -> dict[str, int]:
    """Insert a few plates' files into ``stage`` and record them in ``release_load_progress``, in one
    transaction. One ``INSERT ... SELECT ... FROM read_parquet(?)`` over the chunk's files (DuckDB reads
    them itself; the file list is a bound parameter): a 4,762-column statement costs ~0.4 s to bind
    whatever its size, so one per file would dominate the load. DuckDB keeps the files' order and their
    rows' order (``preserve_insertion_order``), so each plate's rows stay contiguous (:func:`iter_plates`
    checks). Source and batch are then set per plate on the new rows (a narrow update). A file holding
    another plate's rows, or one DuckDB cannot read, rolls the transaction back and raises
    :class:`SchemaError`."""
    import duckdb

    paths = [str(f.path) for f, _st, _prev in chunk]
    by_path = {str(f.path): f for f, _st, _prev in chunk}
    t = quoted_identifier(stage)
    try:
        with transaction(con):
            for f, _st, prev in chunk:
                if prev is not None:
                    con.execute(f"DELETE FROM {t} WHERE Metadata_Plate = ?", [f.plate])
                    con.execute(
                        "DELETE FROM release_load_progress WHERE table_name = ? AND plate = ?", [stage, f.plate]
                    )
            rows = con.execute(
                "SELECT filename, CAST(Metadata_Plate AS VARCHAR), count(*) FROM read_parquet(?, filename = true) "
                "GROUP BY 1, 2",
                [paths],
            ).fetchall()
            counts: dict[str, int] = {f.plate: 0 for f, _st, _prev in chunk}
            for fname, plate, n in rows:
                f = by_path.get(fname)
                if f is None:  # pragma: no cover - DuckDB reports the path as given
                    raise SchemaError(f"DuckDB read an unexpected file {fname!r}")
                if plate != f.plate:
                    raise SchemaError(f"{fname}: holds rows of plate {plate!r} ({n} rows), not only {f.plate}")
                counts[f.plate] += int(n)
            con.execute(
                f"INSERT INTO {t} SELECT NULL, NULL, CAST(Metadata_Plate AS VARCHAR), CAST(Metadata_Well AS VARCHAR), "
                f"{cols} FROM read_parquet(?)",
                [paths],
            )
            for f, st, _prev in chunk:
                con.execute(
                    f"UPDATE {t} SET Metadata_Source = ?, Metadata_Batch = ? WHERE Metadata_Plate = ? "
                    f"AND Metadata_Source IS NULL",
                    [f.source, f.batch, f.plate],
                )
                con.execute(
                    "INSERT INTO release_load_progress VALUES (?, ?, ?, ?, ?, ?, now())",
                    [stage, f.plate, str(f.path), st.st_size, st.st_mtime, counts[f.plate]],
                )
    except duckdb.Error as exc:
        what = f"plate {chunk[0][0].plate}" if len(chunk) == 1 else f"{len(chunk)} plates from {chunk[0][0].plate}"
        raise SchemaError(
            f"{what}: cannot load {paths[0] if len(chunk) == 1 else paths}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from None
    return counts


# ---- metadata --------------------------------------------------------------------------------------------
def release_wells(
    wh: Warehouse,
    table: str,
    metadata_dir: str | Path,
    *,
    annotations: str | Path | None = None,
    release: str = "",
    etag: str = "",
) -> pd.DataFrame:
    """One canonical metadata row per well of the loaded release ``table`` (:data:`RELEASE_METADATA`).

    ``metadata_dir`` holds JUMP's ``well.csv.gz``, ``compound.csv.gz``, ``crispr.csv.gz`` (optional)
    and ``perturbation_control.csv``; ``annotations`` a table keyed by ``InChIKey`` with ``moa_list``
    (or ``moa``) and ``target_list`` (or ``target``), ``|``-separated. DuckDB reads every file
    (bound paths) and joins them to the loaded wells; only the metadata columns come back to pandas.
    Negative controls become ``Metadata_moa = "DMSO"`` and ``Metadata_pert_type = "control"``
    (the project's convention), positive controls ``Metadata_control_type = "poscon"``; a well the
    well table does not know is an error naming it.
    """
    meta = Path(metadata_dir)
    for name in ("well.csv.gz", "compound.csv.gz", "perturbation_control.csv"):
        if not (meta / name).is_file():
            raise FileNotFoundError(f"release metadata missing: {meta / name}")
    crispr = meta / "crispr.csv.gz"
    t = quoted_identifier(table)
    ann_sql, ann_params = "SELECT NULL::VARCHAR AS InChIKey, NULL::VARCHAR AS moa, NULL::VARCHAR AS target LIMIT 0", []
    if annotations is not None:
        cols = [r[0] for r in _describe_csv(wh, annotations)]
        moa = "moa_list" if "moa_list" in cols else "moa"
        tgt = "target_list" if "target_list" in cols else ("target" if "target" in cols else None)
        if "InChIKey" not in cols or moa not in cols:
            raise SchemaError(f"{annotations}: an annotation table needs InChIKey and moa_list (or moa); has {cols}")
        ann_sql = (
            f"SELECT InChIKey, CAST({_q(moa)} AS VARCHAR) AS moa, "
            f"{f'CAST({_q(tgt)} AS VARCHAR)' if tgt else 'NULL::VARCHAR'} AS target "
            f"FROM read_csv(?, header=true) WHERE InChIKey IS NOT NULL"
        )
        ann_params = [str(annotations)]
    crispr_sql = (
        (
            "SELECT CAST(Metadata_JCP2022 AS VARCHAR) AS Metadata_JCP2022, "
            "CAST(Metadata_Symbol AS VARCHAR) AS gene FROM read_csv(?, header=true)"
        )
        if crispr.is_file()
        else "SELECT NULL::VARCHAR AS Metadata_JCP2022, NULL::VARCHAR AS gene LIMIT 0"
    )
    crispr_params = [str(crispr)] if crispr.is_file() else []
    sql = f"""
    WITH w AS (SELECT CAST(Metadata_Plate AS VARCHAR) AS Metadata_Plate,
                      CAST(Metadata_Well AS VARCHAR) AS Metadata_Well,
                      CAST(Metadata_JCP2022 AS VARCHAR) AS Metadata_JCP2022 FROM read_csv(?, header=true)),
         c AS (SELECT DISTINCT ON (Metadata_JCP2022) CAST(Metadata_JCP2022 AS VARCHAR) AS Metadata_JCP2022,
                      CAST(Metadata_InChIKey AS VARCHAR) AS Metadata_InChIKey FROM read_csv(?, header=true)),
         k AS (SELECT CAST(Metadata_JCP2022 AS VARCHAR) AS Metadata_JCP2022, CAST(Metadata_pert_type AS VARCHAR) AS ctl,
                      CAST(Metadata_Name AS VARCHAR) AS name FROM read_csv(?, header=true)),
         g AS ({crispr_sql}),
         a AS (SELECT DISTINCT ON (InChIKey) * FROM ({ann_sql}))
    SELECT r.Metadata_Source, r.Metadata_Batch, r.Metadata_Plate, r.Metadata_Well, w.Metadata_JCP2022,
           c.Metadata_InChIKey, k.ctl, k.name, g.gene, a.moa, a.target
    FROM (SELECT Metadata_Source, Metadata_Batch, Metadata_Plate, Metadata_Well FROM {t}) r
    LEFT JOIN w USING (Metadata_Plate, Metadata_Well)
    LEFT JOIN c USING (Metadata_JCP2022)
    LEFT JOIN k USING (Metadata_JCP2022)
    LEFT JOIN g USING (Metadata_JCP2022)
    LEFT JOIN a ON a.InChIKey = c.Metadata_InChIKey
    ORDER BY r.Metadata_Plate, r.Metadata_Well
    """
    params = [
        str(meta / "well.csv.gz"),
        str(meta / "compound.csv.gz"),
        str(meta / "perturbation_control.csv"),
        *crispr_params,
        *ann_params,
    ]
    df = wh.read(sql, params)
    unknown = df["Metadata_JCP2022"].isna()
    if unknown.any():
        r = df[unknown].iloc[0]
        raise SchemaError(
            f"{meta / 'well.csv.gz'}: no perturbation for plate {r['Metadata_Plate']} well "
            f"{r['Metadata_Well']} ({int(unknown.sum())} wells)"
        )
    neg = df["ctl"].eq("negcon").fillna(False).to_numpy(bool)
    pos = df["ctl"].eq("poscon").fillna(False).to_numpy(bool)
    out = pd.DataFrame(
        {
            c: df[c]
            for c in (
                "Metadata_Source",
                "Metadata_Batch",
                "Metadata_Plate",
                "Metadata_Well",
                "Metadata_JCP2022",
                "Metadata_InChIKey",
            )
        }
    )
    out["Metadata_broad_sample"] = np.where(neg, "DMSO", df["Metadata_JCP2022"].to_numpy(object))
    out["Metadata_pert_iname"] = df["name"].where(df["name"].notna(), df["Metadata_JCP2022"])
    gene = df["gene"].where(~df["gene"].isin(["no-guide", "non-targeting"]))
    out["Metadata_pert_type"] = np.where(neg | pos, "control", "trt")
    out["Metadata_control_type"] = np.where(neg, "negcon", np.where(pos, "poscon", None))
    moa = df["moa"].where(~neg, "DMSO").where(~pos, None)
    out["Metadata_moa"] = moa
    out["Metadata_n_moa"] = moa.astype("string").str.count(r"\|").add(1).fillna(0).astype(int).to_numpy()
    out["Metadata_single_moa"] = out["Metadata_n_moa"].eq(1)
    out["Metadata_target"] = df["target"].where(df["gene"].isna(), gene)
    out["Metadata_gene"] = gene
    out["Metadata_dose_uM"] = np.nan
    out["Metadata_release"] = release
    out["Metadata_etag"] = etag
    out["Metadata_source_file"] = ""
    for c in RELEASE_METADATA:
        if c not in out.columns:
            out[c] = None
    return out[RELEASE_METADATA]


def _describe_csv(wh: Warehouse, path: str | Path) -> list[tuple]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"annotation table missing: {path}")
    with wh.connect() as con:
        return con.execute("DESCRIBE SELECT * FROM read_csv(?, header=true)", [str(path)]).fetchall()


# ---- normalization ---------------------------------------------------------------------------------------
@dataclass
class NormalizeReport:
    """What :func:`normalize_release` dropped, imputed, skipped and selected."""

    features_in: int = 0
    dropped_na: list[tuple[str, float]] = field(default_factory=list)
    dropped_constant: list[str] = field(default_factory=list)
    dropped_zero_dmso_sd: list[str] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    plates_without_dmso: list[str] = field(default_factory=list)
    imputed_values: int = 0
    wells_out: int = 0
    sample_wells: int = 0
    seconds: float = 0.0

    def as_metadata(self) -> dict:
        return {
            "features_in": self.features_in,
            "dropped_na_columns": len(self.dropped_na),
            "dropped_na_names": ", ".join(f"{c} ({s:.0%})" for c, s in self.dropped_na[:20]),
            "dropped_constant": len(self.dropped_constant),
            "dropped_zero_dmso_sd": len(self.dropped_zero_dmso_sd),
            "features_selected": len(self.selected),
            "selection_sample_wells": self.sample_wells,
            "imputed_values": self.imputed_values,
            "plates_without_dmso": len(self.plates_without_dmso),
            "plates_without_dmso_names": ", ".join(self.plates_without_dmso[:20]),
            "wells_out": self.wells_out,
            "normalize_seconds": round(self.seconds, 1),
        }


def _plate_arrays(parts: list, n_feats: int) -> tuple[np.ndarray, np.ndarray]:
    """(well names, float64 features) of one plate's record batches, rows sorted by well."""
    import pyarrow as pa

    t = pa.Table.from_batches(parts)
    wells = np.asarray(t.column(1).to_pylist(), dtype=object)
    if n_feats:
        x = np.column_stack([t.column(j).to_numpy().astype(np.float64, copy=False) for j in range(2, t.num_columns)])
    else:
        x = np.empty((len(wells), 0))
    order = np.argsort(wells, kind="stable")
    return wells[order], x[order]


def _plate_median(x: np.ndarray, col_nan: np.ndarray) -> np.ndarray:
    """Per-column median ignoring NaN (``np.nanmedian``'s values), with the plain median where a column has
    no NaN (most columns; ``np.nanmedian`` takes a slow masked path on short columns)."""
    import warnings

    m = np.median(x, axis=0)
    has = np.flatnonzero(col_nan)
    if len(has):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: NaN
            m[has] = np.nanmedian(x[:, has], axis=0)
    return m


def iter_plates(wh: Warehouse, table: str, feats: Sequence[str], batch_rows: int = 8192):
    """``(plate, wells, x)`` for every plate of ``table`` in its stored order, streamed: one sequential scan
    (DuckDB record batches), a plate's rows gathered until the next plate starts, rows sorted by well.
    ``x`` is float64 ``(wells, features)``. Memory: one batch and one plate. A plate's rows must be
    contiguous (:func:`load_release` inserts plate by plate); the caller checks."""
    import pyarrow.compute as pc

    cols = ["Metadata_Plate", "Metadata_Well", *feats]
    with wh.connect() as con:
        reader = con.sql(f"SELECT {', '.join(_q(c) for c in cols)} FROM {quoted_identifier(table)}").to_arrow_reader(
            batch_rows
        )
        cur, parts = None, []
        for batch in reader:
            while batch.num_rows:
                first = batch.column(0)[0].as_py()
                if cur is not None and first != cur:
                    yield (cur, *_plate_arrays(parts, len(feats)))
                    parts = []
                cur = first
                differ = pc.not_equal(batch.column(0), first)
                n_head = int(pc.index(differ, True).as_py())  # -1: the whole batch is this plate
                n_head = batch.num_rows if n_head < 0 else n_head
                parts.append(batch.slice(0, n_head))
                batch = batch.slice(n_head)
        if cur is not None and parts:
            yield (cur, *_plate_arrays(parts, len(feats)))


def normalize_release(
    wh: Warehouse,
    table: str,
    wells: pd.DataFrame,
    out_table: str,
    *,
    na_cutoff: float = 0.05,
    select: Sequence[str] = ("variance_threshold", "correlation_threshold"),
    sample_wells: int = 20_000,
    seed: int = 0,
    progress: Progress | None = None,
    partition: dict | None = None,
) -> NormalizeReport:
    """Clean, standardize to each plate's DMSO wells, select features, and write ``out_table``, plate by plate.

    Definitions are those of :func:`moa_core.profiles.published.published_embeddings` on the whole
    table: a feature is dropped when its NaN (or inf) share over all wells exceeds ``na_cutoff`` or
    when it is constant over all wells; remaining NaNs are imputed with the plate median of the
    feature over the plate's other wells; each plate is then standardized to its DMSO wells
    (``Metadata_moa == "DMSO"``, mean and population SD); a feature with a zero DMSO SD on any plate
    is dropped (so is one NaN in every well of a plate: imputed by any constant, its SD there is 0).
    Then pycytominer's ``feature_select`` with ``select`` picks features on a seeded sample of
    ``sample_wells`` standardized wells (all wells when there are fewer). Memory: one plate of every
    feature, the per-plate medians, DMSO means and SDs (3 x plates x features float64: 230 MB for
    2,000 plates x 4,762 features) and the sample. ``wells`` is :func:`release_wells`' metadata; the
    written table holds it for every well of a plate with at least 2 DMSO wells, then the selected
    float32 features.
    """
    t0 = time.time()
    rep = NormalizeReport()
    with wh.connect() as con:
        cols = [r[0] for r in con.execute(f"DESCRIBE {quoted_identifier(table)}").fetchall()]
    feats = [c for c in cols if not c.startswith("Metadata_")]
    rep.features_in = len(feats)
    wells = wells.sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    plate_of = wells.groupby("Metadata_Plate", sort=True).indices
    plates = sorted(plate_of)
    dmso = wells["Metadata_moa"].eq("DMSO").fillna(False).to_numpy(bool)
    n_dmso = {p: int(dmso[idx].sum()) for p, idx in plate_of.items()}
    ok_plates = [p for p in plates if n_dmso[p] >= 2]
    rep.plates_without_dmso = [p for p in plates if n_dmso[p] < 2]
    if not ok_plates:
        raise NormalizationError(
            f"no plate of {table} has 2 or more DMSO wells (plates: {plates[:10]}); per-plate "
            f"standardization to DMSO is impossible"
        )
    F = len(feats)
    ok_set = set(ok_plates)
    # pass 1, every feature: the global NaN share and range (clean_features' decisions are over the whole
    # table), and per usable plate its medians (imputation), its DMSO mean and SD after imputation, and a
    # seeded sample of standardized rows (feature selection); per-feature operations, so the later global
    # decisions do not change them
    nan_count = np.zeros(F, np.int64)
    nan_ok = np.zeros(F, np.int64)  # NaNs on usable plates: the values pass 2 imputes
    lo = np.full(F, np.inf)
    hi = np.full(F, -np.inf)
    med: dict[str, np.ndarray] = {}
    mu: dict[str, np.ndarray] = {}
    sd: dict[str, np.ndarray] = {}
    zero_any = np.zeros(F, bool)
    rng = np.random.default_rng(seed)
    n_ok = int(sum(len(plate_of[p]) for p in ok_plates))
    take_p = min(1.0, sample_wells / max(n_ok, 1))
    sample_rows: list[np.ndarray] = []
    n_total = 0
    seen: set[str] = set()

    for i, (p, well_names, x) in enumerate(iter_plates(wh, table, feats)):
        if p in seen:
            raise SchemaError(f"{table}: the rows of plate {p} are not contiguous (load it plate by plate)")
        seen.add(p)
        x[np.isinf(x)] = np.nan
        nan = np.isnan(x)
        col_nan = nan.sum(axis=0)
        nan_count += col_nan
        with np.errstate(all="ignore"):
            lo = np.minimum(lo, np.where(nan, np.inf, x).min(axis=0, initial=np.inf))
            hi = np.maximum(hi, np.where(nan, -np.inf, x).max(axis=0, initial=-np.inf))
        n_total += len(x)
        if p in ok_set:
            idx = plate_of[p]
            if list(map(str, well_names)) != list(wells.loc[idx, "Metadata_Well"].astype(str)):
                raise SchemaError(f"plate {p}: the wells of {table} and of its metadata differ")
            nan_ok += col_nan
            m = _plate_median(x, col_nan)
            if nan.any():
                r, c = np.nonzero(nan)
                x[r, c] = m[c]  # a feature NaN in every well stays NaN: its DMSO SD is not > 0, it is dropped
            d = dmso[idx]
            mu_p, sd_p = x[d].mean(axis=0), x[d].std(axis=0, ddof=0)
            zero = ~(sd_p > 0)
            zero_any |= zero
            med[p], mu[p], sd[p] = m, mu_p, np.where(zero, 1.0, sd_p)
            take = rng.random(len(x)) < take_p
            if take.any():
                sample_rows.append(((x[take] - mu_p) / sd[p]).astype(np.float32))
        if progress:
            progress(i + 1, 2 * len(plates), n_total)
    share = nan_count / max(n_total, 1)
    drop_na = share > na_cutoff
    constant = ~drop_na & ~(hi > lo)
    keep = ~drop_na & ~constant
    rep.dropped_na = [(f, float(s)) for f, s, d in zip(feats, share, drop_na) if d]
    rep.dropped_constant = [f for f, c in zip(feats, constant) if c]
    rep.dropped_zero_dmso_sd = [f for f, k, z in zip(feats, keep, zero_any) if k and z]
    usable = keep & ~zero_any
    usable_names = [f for f, u in zip(feats, usable) if u]
    sample = np.concatenate(sample_rows) if sample_rows else np.empty((0, F), np.float32)
    rep.sample_wells = len(sample)
    rep.selected = _select_features(pd.DataFrame(sample[:, usable], columns=usable_names), usable_names, select)
    del sample, sample_rows
    rep.imputed_values = int(nan_ok[keep].sum())
    col = {f: j for j, f in enumerate(feats)}
    sel_idx = np.array([col[f] for f in rep.selected], dtype=np.int64)
    # pass 2, the selected features only: impute, standardize, stage plate by plate
    stage = f"{out_table}__staging"
    written = 0

    first = True
    buf: list[tuple[str, np.ndarray, np.ndarray]] = []
    buf_rows = 0
    write_rows = max(1, _WRITE_VALUES // max(1, len(rep.selected)))  # plates per insert: ~64M values
    with wh.connect() as con:
        con.execute(f"DROP TABLE IF EXISTS {quoted_identifier(stage)}")
    for done, (p, well_names, x) in enumerate(iter_plates(wh, table, rep.selected), start=1):
        if p not in ok_set:
            continue
        x[np.isinf(x)] = np.nan
        nan = np.isnan(x)
        if nan.any():
            r, c = np.nonzero(nan)
            x[r, c] = med[p][sel_idx][c]
        z = np.asfortranarray(((x - mu[p][sel_idx]) / sd[p][sel_idx]).astype(np.float32))
        buf.append((p, well_names, z))
        buf_rows += len(z)
        written += len(z)
        if buf_rows >= write_rows:
            first = _stage_plates(wh, stage, rep.selected, buf, first)
            buf, buf_rows = [], 0
        if progress:
            progress(len(plates) + done, 2 * len(plates), written)
    if buf:
        first = _stage_plates(wh, stage, rep.selected, buf, first)
    rep.wells_out = written
    # the final table: metadata + selected features, swapped in for the previous one in one transaction
    meta = wells[wells["Metadata_Plate"].isin(ok_set)].reset_index(drop=True)
    with wh.connect() as con:
        con.register("_meta", meta)
        sel = ", ".join(f"s.{_q(c)}" for c in rep.selected)
        with transaction(con):
            con.execute(f"DROP TABLE IF EXISTS {quoted_identifier(out_table)}")
            con.execute(
                f"CREATE TABLE {quoted_identifier(out_table)} AS SELECT m.*, {sel} FROM _meta m JOIN "
                f"{quoted_identifier(stage)} s USING (Metadata_Plate, Metadata_Well) "
                f"ORDER BY m.Metadata_Plate, m.Metadata_Well"
            )
            con.execute(f"DROP TABLE {quoted_identifier(stage)}")
            wh.register_write(con, out_table, partition or {}, written, len(meta.columns) + len(rep.selected))
        con.unregister("_meta")
    rep.seconds = time.time() - t0
    return rep


_WRITE_VALUES = 1 << 26


def _stage_plates(wh: Warehouse, stage: str, features: list[str], buf: list, first: bool) -> bool:
    """Append a few standardized plates to the staging table in one insert (a wide insert costs mostly per
    statement); ``first`` creates it. Returns False (the table exists now)."""
    import pyarrow as pa

    z = np.concatenate([b[2] for b in buf]) if len(buf) > 1 else buf[0][2]
    z = np.asfortranarray(z)
    part = pa.table(
        {
            "Metadata_Plate": pa.array([p for p, w, _ in buf for _ in range(len(w))]),
            "Metadata_Well": pa.array([str(x) for _, w, _ in buf for x in w]),
            **{f: z[:, j] for j, f in enumerate(features)},
        }
    )
    with wh.connect() as con:
        con.register("_plates", part)
        if first:
            con.execute(f"CREATE TABLE {quoted_identifier(stage)} AS SELECT * FROM _plates")
        else:
            con.execute(f"INSERT INTO {quoted_identifier(stage)} SELECT * FROM _plates")
        con.unregister("_plates")
    return False


def _select_features(sample: pd.DataFrame, features: list[str], operations: Sequence[str]) -> list[str]:
    """pycytominer's ``feature_select`` on the sample; the features it keeps, in their order."""
    if not operations or sample.empty:
        return list(features)
    from pycytominer import feature_select

    out = feature_select(sample, features=list(features), operation=list(operations))
    kept = set(out.columns)
    return [f for f in features if f in kept]


# ---- reading a normalized table back, out of core -----------------------------------------------------------
def table_columns(wh: Warehouse, table: str) -> tuple[list[str], list[str]]:
    """``(metadata columns, feature columns)`` of ``table``, in stored order (features: not ``Metadata_``)."""
    with wh.connect() as con:
        cols = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table],
            ).fetchall()
        ]
    if not cols:
        raise SchemaError(f"table {table} not found in {wh.path}; materialize its asset first")
    return [c for c in cols if c.startswith("Metadata_")], [c for c in cols if not c.startswith("Metadata_")]


def read_metadata(wh: Warehouse, table: str) -> pd.DataFrame:
    """Every ``Metadata_`` column of ``table`` plus ``_row`` (the row's DuckDB ``rowid``), in rowid order."""
    meta, _ = table_columns(wh, table)
    sql = f"SELECT rowid AS _row, {', '.join(_q(c) for c in meta)} FROM {quoted_identifier(table)} ORDER BY rowid"
    with wh.connect() as con:
        return con.execute(sql).df()


def read_features(
    wh: Warehouse,
    table: str,
    rows: np.ndarray,
    features: Sequence[str],
    *,
    batch_rows: int = 8192,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """float32 ``(len(rows), len(features))``: row ``i`` holds table row ``rowid == rows[i]``.

    One scan of ``table`` restricted to the wanted rowids (a registered array, never SQL text),
    each record batch written into its rows of the preallocated result, so memory is the result
    plus one batch. ``progress(done, total)`` after each batch. A rowid that is not in the table
    raises.
    """
    rows = np.asarray(rows, dtype=np.int64)
    sorter = np.argsort(rows, kind="stable")
    ordered = rows[sorter]
    if len(ordered) and (np.diff(ordered) == 0).any():
        raise SchemaError(
            f"read_features: rowids of {table} repeat (e.g. {int(ordered[np.argmax(np.diff(ordered) == 0)])})"
        )
    out = np.empty((len(rows), len(features)), dtype=np.float32)
    if not len(rows):
        return out
    import pyarrow as pa

    cols = ", ".join(_q(c) for c in features)
    sql = f"SELECT rowid AS _row, {cols} FROM {quoted_identifier(table)} WHERE rowid IN (SELECT r FROM _wanted)"
    done = 0
    with wh.connect() as con:
        con.register("_wanted", pa.table({"r": ordered}))
        for batch in con.sql(sql).to_arrow_reader(batch_rows):
            rid = batch.column(0).to_numpy()
            pos = sorter[np.searchsorted(ordered, rid)]
            out[pos] = np.column_stack(
                [
                    batch.column(j).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
                    for j in range(1, batch.num_columns)
                ]
            )
            done += batch.num_rows
            if progress is not None:
                progress(done, len(rows))
        con.unregister("_wanted")
    if done != len(rows):
        raise SchemaError(f"read_features: {len(rows) - done} of the {len(rows)} wanted rows are not in {table}")
    return out


def read_matrix(
    wh: Warehouse,
    table: str,
    *,
    order: Sequence[str] = ("Metadata_Plate", "Metadata_Well"),
    select: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """``(metadata, float32 features, feature names)`` of ``table`` without a pandas copy of its features.

    Rows sorted (stable) by the metadata columns ``order``; ``select(meta)`` keeps a subset of rows
    (a frame of rows of ``meta``) before any feature is read; only those rows' features are read
    (:func:`read_features`). Memory: the metadata plus the float32 result.
    """
    meta = read_metadata(wh, table)
    meta = meta.sort_values(list(order), kind="stable").reset_index(drop=True)
    if select is not None:
        meta = select(meta).reset_index(drop=True)
    _, feats = table_columns(wh, table)
    X = read_features(wh, table, meta["_row"].to_numpy(), feats, progress=progress)
    return meta.drop(columns="_row"), X, feats
