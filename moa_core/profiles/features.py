"""CellProfiler-style single-cell features with cp_measure, aggregated per well.

For every field named in a load_data table: read the five channels (the same reader
the CNN uses), segment nuclei/cells/cytoplasm (:mod:`.segmentation`), measure each
compartment with cp_measure, and name columns the CellProfiler way
(``Cells_Intensity_MeanIntensity_ER``; cp_measure's ``__`` channel separator becomes ``_``). Single cells
are then aggregated to wells with
pycytominer's ``aggregate`` (median, the field's default), plus
``Metadata_Count_Cells``.

Location features (centers, bounding-box corners, orientation) describe where a cell
sits in the field, not its phenotype, and are dropped; the nucleus centre is kept as
metadata (``Metadata_Nuclei_Location_Center_X/Y``, pixels) for single-cell crops.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.data.config import FieldQCConfig
from moa_core.data.field_qc import KEYS as FIELD_KEYS
from moa_core.data.field_qc import QC_COLUMNS, channel_metrics, flag_fields, metrics_frame
from moa_core.data.image_io import CHANNELS
from moa_core.data.load_data import read_field_from_row
from moa_core.profiles.config import OBJECTS, FeatureConfig
from moa_core.profiles.segmentation import SegmentationParams, segment_field

__all__ = [
    "FeatureConfig",
    "measure_field",
    "measure_field_with_qc",
    "profile_plate",
    "well_profiles",
]

_LOCATION = re.compile(r"(Center_|Location_|BoundingBoxMinimum|BoundingBoxMaximum|Orientation)")


def measure_field_with_qc(
    field: np.ndarray, config: FeatureConfig = FeatureConfig(), seg_params: SegmentationParams = SegmentationParams()
) -> tuple[pd.DataFrame, str | None]:
    """:func:`measure_field` plus the segmentation's flag (why a field has no cells, else None)."""
    from cp_measure.featurizer import featurize

    seg = segment_field(field, seg_params)
    if seg.n_objects == 0:
        return pd.DataFrame(), seg.flag or "no cells segmented"
    img = field.astype(np.float32)[None] / 65535.0
    masks = dict(zip(OBJECTS, seg.stack()))
    runs = [(OBJECTS, False)]
    if config.correlation_pearson and config.correlation_objects:
        runs.append((tuple(config.correlation_objects), True))
    parts = []
    for objects, corr in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cp_measure warns on 1-pixel objects etc.; NaNs are handled downstream
            data, cols, rows = featurize(
                img, np.stack([masks[o] for o in objects])[None], config.cp_measure_config(objects, correlation=corr)
            )
        keep = [i for i, c in enumerate(cols) if not _LOCATION.search(c)]
        cols = [cols[i] for i in keep]
        data = data[:, keep].astype(np.float32)
        obj = np.array([r[1] for r in rows])
        lab = np.array([int(r[2]) for r in rows])
        for name in objects:
            sel = obj == name.lower()
            part = pd.DataFrame(data[sel], columns=[f"{name}_{c.replace('__', '_')}" for c in cols])
            part.insert(0, "Metadata_ObjectNumber", lab[sel])
            parts.append(part.set_index("Metadata_ObjectNumber"))
    out = parts[0].join(parts[1:], how="outer").reset_index()  # cytoplasm may be empty for a cell
    # where each nucleus is (metadata, not a feature): the DP recipe's single-cell crops are centred on it
    from scipy import ndimage

    nuc = masks["Nuclei"]
    centres = np.asarray(ndimage.center_of_mass(np.ones_like(nuc), nuc, out["Metadata_ObjectNumber"].to_numpy()))
    centres = centres.reshape(-1, 2)
    out.insert(1, "Metadata_Nuclei_Location_Center_Y", centres[:, 0].astype(np.float32))
    out.insert(1, "Metadata_Nuclei_Location_Center_X", centres[:, 1].astype(np.float32))
    return out, None


def measure_field(
    field: np.ndarray, config: FeatureConfig = FeatureConfig(), seg_params: SegmentationParams = SegmentationParams()
) -> pd.DataFrame:
    """Single-cell features of one ``(5, H, W)`` uint16 field.

    Returns one row per segmented cell (``Metadata_ObjectNumber``) with
    ``<Compartment>_<Feature>`` columns; an empty frame when no nucleus is found.
    Intensities are measured on images scaled to [0, 1] (CellProfiler's convention).
    """
    return measure_field_with_qc(field, config, seg_params)[0]


def _field_qc_worker(args: tuple) -> tuple[pd.DataFrame, str | None, dict]:
    """One field: (its cells, the segmentation's flag, its per-channel QC metrics)."""
    row, root, config, shape = args[:4]
    qc: FieldQCConfig = args[4] if len(args) > 4 else FieldQCConfig()
    field = read_field_from_row(row, CHANNELS, root, expected_shape=shape)
    metrics = channel_metrics(field, CHANNELS, qc.saturation_value)
    cells, flag = measure_field_with_qc(field, config)
    if not cells.empty:
        for k in ("Metadata_Site", "Metadata_Well", "Metadata_Plate"):
            cells.insert(0, k, row[k])
    return cells, flag, metrics


def _field_worker(args: tuple[dict, object, FeatureConfig, tuple[int, int] | None]) -> pd.DataFrame:
    return _field_qc_worker(args)[0]


def single_cell_profiles(
    load_data: pd.DataFrame,
    root: str | Path | None,
    config: FeatureConfig = FeatureConfig(),
    *,
    n_workers: int = 1,
    expected_shape: tuple[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Single-cell features for every field of ``load_data`` (images resolved against ``root``)."""
    rows = load_data.to_dict("records")
    args = [(r, root, config, expected_shape) for r in rows]
    out: list[pd.DataFrame] = []
    if n_workers > 1:
        with field_pool(n_workers) as pool:
            for i, df in enumerate(pool.map(_field_worker, args, chunksize=4), 1):
                out.append(df)
                if progress and (i % 50 == 0 or i == len(args)):
                    progress(i, len(args))
    else:
        for i, a in enumerate(args, 1):
            out.append(_field_worker(a))
            if progress and (i % 50 == 0 or i == len(args)):
                progress(i, len(args))
    out = [o for o in out if not o.empty]
    if not out:
        raise ValueError("no cells were segmented in any field")
    sc = pd.concat(out, ignore_index=True)
    sc["Metadata_Site"] = sc["Metadata_Site"].astype(int)
    return sc


def aggregate_wells(
    single_cells: pd.DataFrame, strata: tuple[str, ...] = ("Metadata_Plate", "Metadata_Well")
) -> pd.DataFrame:
    """Median per well with pycytominer's ``aggregate`` plus ``Metadata_Count_Cells``."""
    from pycytominer import aggregate

    feats = [c for c in single_cells.columns if not c.startswith("Metadata_")]
    prof = aggregate(single_cells, strata=list(strata), features=feats, operation="median", output_type=None)
    counts = single_cells.groupby(list(strata)).size().rename("Metadata_Count_Cells").reset_index()
    prof = prof.merge(counts, on=list(strata), how="left")
    meta = [c for c in prof.columns if c.startswith("Metadata_")]
    return prof[meta + [c for c in prof.columns if c not in meta]]


@dataclass
class PlateProfileReport:
    """What :func:`profile_plate` did for one plate."""

    plate: str
    fields: int
    cells: int
    flagged_fields: pd.DataFrame
    seconds: float
    parquet_path: Path
    field_metrics: pd.DataFrame | None = None

    def as_metadata(self) -> dict:
        return {
            "plate": self.plate,
            "fields": self.fields,
            "cells": self.cells,
            "flagged_fields": len(self.flagged_fields),
            "seconds": round(self.seconds, 1),
        }


def _one_thread_per_worker() -> None:
    """Pool initializer: one BLAS/OpenMP thread per worker process.

    The field workers already use every core between them; each one's numpy/scipy calls
    (small covariance and texture matrices) spawning threads of their own oversubscribes the
    CPU (measured on 2 cores: 0.20 s per field with the default threads, 0.14 s with one).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def field_pool(n_workers: int) -> ProcessPoolExecutor | None:
    """The worker pool of :func:`profile_plate` (None for ``n_workers <= 1``: fields run in this process).

    cp_measure is imported here first, so forked workers inherit it instead of each importing it. In a
    daemonic process (a Celery prefork pool process), which may not start children, fields run in this
    process (:func:`moa_core.processes.usable_processes`).
    """
    from moa_core.processes import usable_processes

    if usable_processes(n_workers) <= 1:
        return None
    import cp_measure.featurizer  # noqa: F401  (inherited by the forked workers)

    return ProcessPoolExecutor(n_workers, initializer=_one_thread_per_worker)


def _iter_fields(
    args: list, pool: ProcessPoolExecutor | None, window: int
) -> Iterator[tuple[pd.DataFrame, str | None, dict]]:
    """Results of ``args`` in order, at most ``window`` fields in flight (no barrier between chunks)."""
    if pool is None:
        for a in args:
            yield _field_qc_worker(a)
        return
    from collections import deque

    pending: deque = deque()
    it = iter(args)
    for a in it:
        pending.append(pool.submit(_field_qc_worker, a))
        if len(pending) >= window:
            break
    while pending:
        res = pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(_field_qc_worker, nxt))
        yield res


def profile_plate(
    load_data_plate: pd.DataFrame,
    out_path: str | Path,
    root: object = None,
    config: FeatureConfig = FeatureConfig(),
    *,
    n_workers: int = 1,
    expected_shape: tuple[int, int] | None = None,
    chunk_fields: int = 32,
    progress: Callable[[int, int], None] | None = None,
    qc: FieldQCConfig = FieldQCConfig(),
) -> PlateProfileReport:
    """One plate's single cells, streamed chunk by chunk into one parquet file.

    Fields are measured by ``n_workers`` processes (one BLAS thread each) with a few fields in
    flight, so a slow field never holds the others back. Memory is bounded by ``chunk_fields``
    fields of cells, whatever the plate or dataset size: each chunk is appended to the file with
    ``pyarrow.parquet.ParquetWriter``
    (schema fixed by the first non-empty chunk; later chunks reindexed to it; float32
    features). The file is written under a temporary name and renamed at the end; an
    error leaves neither, and a process killed mid-plate leaves a temporary file that the next attempt
    at the plate removes. ``root`` (a folder, or an image locator that reads ``s3://``) is
    passed to the readers as is. Fields without cells are listed with the reason, and every field's
    channels are checked (:mod:`moa_core.data.field_qc`, thresholds ``qc``): the report's
    ``flagged_fields`` has one row per flagged (field, channel) in :data:`~moa_core.data.field_qc.QC_COLUMNS`
    (``channel`` empty for a segmentation flag) and ``field_metrics`` every field's channel metrics.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.time()
    plates = load_data_plate["Metadata_Plate"].astype(str).unique()
    if len(plates) != 1:
        raise ValueError(f"profile_plate needs the fields of exactly one plate, got {list(plates)[:5]}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.*.tmp"):  # a killed earlier attempt's (one writer per plate)
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    rows = load_data_plate.to_dict("records")
    writer = None
    columns: list[str] | None = None
    n_cells = 0
    flagged: list[dict] = []
    pool = field_pool(n_workers)
    metrics: list[tuple[dict, dict]] = []
    fields = _iter_fields([(r, root, config, expected_shape, qc) for r in rows], pool, window=2 * max(1, n_workers))
    try:
        for start in range(0, len(rows), chunk_fields):
            chunk = rows[start : start + chunk_fields]
            cells = []
            for r, (df, flag, m) in zip(chunk, fields):
                keys = {
                    "Metadata_Plate": str(r["Metadata_Plate"]),
                    "Metadata_Well": str(r["Metadata_Well"]),
                    "Metadata_Site": int(r["Metadata_Site"]),
                }
                metrics.append((keys, m))
                if df.empty:
                    flagged.append({**keys, "channel": None, "reason": flag or "no cells segmented", "skipped": False})
                else:
                    cells.append(df)
            if cells:
                part = pd.concat(cells, ignore_index=True)
                if columns is None:
                    columns = list(part.columns)
                part = part.reindex(columns=columns)
                part["Metadata_Site"] = part["Metadata_Site"].astype(int)
                for c in ("Metadata_Plate", "Metadata_Well"):
                    part[c] = part[c].astype(str)
                feats = [c for c in columns if not c.startswith("Metadata_")]
                part[feats] = part[feats].astype(np.float32)
                table = pa.Table.from_pandas(part, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
                n_cells += len(part)
            if progress:
                progress(min(start + chunk_fields, len(rows)), len(rows))
        if writer is None:
            raise ValueError(f"plate {plates[0]}: no cells were segmented in any of its {len(rows)} fields")
        writer.close()
        writer = None
        os.replace(tmp, out)
    except BaseException:
        if writer is not None:
            writer.close()
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    field_metrics = metrics_frame(metrics)
    flagged_df = pd.concat(
        [pd.DataFrame(flagged, columns=QC_COLUMNS), flag_fields(field_metrics, qc)], ignore_index=True
    ).astype({"Metadata_Site": "int64", "skipped": bool})
    return PlateProfileReport(
        str(plates[0]), len(rows), n_cells, flagged_df, time.time() - t0, out, field_metrics=field_metrics
    )


def aggregate_plate(parquet_path: str | Path) -> pd.DataFrame:
    """Well medians of one plate's single-cell parquet (as :func:`aggregate_wells`; NaN cells are skipped)."""
    return aggregate_wells(pd.read_parquet(parquet_path))


def well_profiles(
    plate_files: list[str | Path],
    wells: pd.DataFrame,
    keys: tuple[str, ...] = ("Metadata_Plate", "Metadata_Well"),
    *,
    exclude_fields: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Well medians of every plate's single-cell file, joined to the wells' ``Metadata_`` annotations.

    Only annotated wells are kept (inner join); none at all is an error, as it means the
    wells table and the load_data name different plates or wells. The cells of the fields in
    ``exclude_fields`` (plate, well, site rows: fields QC skips) are left out before the medians.
    """
    parts = []
    for p in plate_files:
        sc = pd.read_parquet(p)
        if exclude_fields is not None and len(exclude_fields):
            drop = pd.MultiIndex.from_frame(exclude_fields[FIELD_KEYS].astype({"Metadata_Site": "int64"}))
            sc = sc[~pd.MultiIndex.from_frame(sc[FIELD_KEYS].astype({"Metadata_Site": "int64"})).isin(drop)]
        if not sc.empty:
            parts.append(aggregate_wells(sc))
    if not parts:
        raise ValueError(f"no cells left in {len(plate_files)} plate file(s) after field QC")
    prof = pd.concat(parts, ignore_index=True)
    meta = [c for c in wells.columns if c.startswith("Metadata_")]
    out = wells[meta].merge(prof, on=list(keys), how="inner")
    if out.empty:
        raise ValueError(f"none of the {len(prof)} profiled wells has an annotation in the wells table")
    return out
