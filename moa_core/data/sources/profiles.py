"""Published well-level CellProfiler profiles of a catalogue entry: which files, fetched how, annotated how.

Per layout (keys in :mod:`.gallery`): cpg0000 and cpg0004 per-plate ``.csv.gz`` files
whose suffix is the processing level (``entry.profile_suffix``); cpg0016 per-plate
``.parquet`` files, or one assembled release parquet (``entry.release``, as listed in the
release manifest ``profile_index.json``). The reading, canonical schema, annotation and
the paper's filters are :mod:`moa_core.profiles.published`'s; this module only decides
what to read and which annotation applies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from moa_core.data.load_data import read_table_file
from moa_core.data.sources.gallery import profile_key, profiles_prefix
from moa_core.data.sources.s3 import S3Transfer, SourceError, TransferStats, parse_s3_uri
from moa_core.errors import SchemaError

if TYPE_CHECKING:
    from moa_core.datasets import DatasetEntry


@dataclass(frozen=True)
class ProfileFile:
    """One downloaded (or local) profile file and where it came from."""

    path: Path
    source_file: str  # s3://bucket/key or the local path
    etag: str


def profile_objects(entry: DatasetEntry, transfer: S3Transfer) -> list[tuple[str, str]]:
    """(bucket, key) of every published profile file of a gallery entry."""
    if entry.release:
        return [parse_s3_uri(entry.release)]
    plates = list(entry.plates)
    if not plates:
        prefix = profiles_prefix(entry)
        plates = [p.rstrip("/").rsplit("/", 1)[-1] for p in transfer.list_prefixes(entry.bucket, prefix)]
        if not plates:
            raise SourceError(f"s3://{entry.bucket}/{prefix}: no plate folders")
    return [(entry.bucket, profile_key(entry, p)) for p in plates]


def fetch_profiles(
    entry: DatasetEntry, transfer: S3Transfer, cache_dir: Path, progress=None
) -> tuple[list[ProfileFile], TransferStats]:
    """Download (cached by ETag) every profile file of a gallery entry."""
    objs = profile_objects(entry, transfer)
    infos = [transfer.head(b, k) for b, k in objs]
    dests = [Path(cache_dir) / b / k for b, k in objs]
    stats = transfer.download_many([(b, k, d) for (b, k), d in zip(objs, dests)], progress=progress)
    files = [ProfileFile(d, f"s3://{b}/{k}", i.etag) for (b, k), d, i in zip(objs, dests, infos)]
    return files, stats


def local_profiles(entry: DatasetEntry) -> list[ProfileFile]:
    """Profile files of a local entry: ``entry.load_data`` names them, else every csv/csv.gz/parquet in ``path``."""
    root = Path(str(entry.path))
    files = (
        [root / f for f in entry.load_data]
        if entry.load_data
        else sorted(p for pat in ("*.csv", "*.csv.gz", "*.parquet") for p in root.glob(pat))
    )
    if not files:
        raise FileNotFoundError(f"dataset {entry.name}: no profile files in {root}")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"dataset {entry.name}: profile file missing: {f}")
    return [ProfileFile(f, str(f), "") for f in files]


def _annotate(entry: DatasetEntry, df: pd.DataFrame, shared_dir: Path) -> tuple[pd.DataFrame, str]:
    from moa_core.profiles import published as pub

    data = Path(shared_dir) / "data"
    if entry.annotations == "cpjump1" or (entry.annotations is None and entry.layout == "cpg0000"):
        tsv = data / "cpjump1" / "JUMP-Target-1_compound_metadata_additional_annotations.tsv"
        return pub.annotate_cpjump1(df, tsv), "JUMP-Target-1 moa_list"
    if entry.annotations == "lincs" or (entry.annotations is None and entry.layout == "cpg0004"):
        return pub.annotate_lincs(
            df, data / "lincs" / "repurposing_info_external_moa_map_resolved.tsv"
        ), "LINCS repurposing map"
    if entry.annotations == "cpg0016" or (entry.annotations is None and entry.layout == "cpg0016"):
        meta = os.environ.get("MOA_JUMP_METADATA", "")
        if not meta:
            return df, "none (set MOA_JUMP_METADATA to JUMP's metadata folder with well.csv.gz and compound.csv.gz)"
        wells = read_table_file(Path(meta) / "well.csv.gz")
        compounds = read_table_file(Path(meta) / "compound.csv.gz")
        ann = pd.read_csv(data / "cpjump1" / "JUMP-Target-1_compound_metadata_additional_annotations.tsv", sep="\t")
        controls = pd.read_csv(data / "cpg0016" / "perturbation_control.csv")
        return pub.annotate_by_inchikey(df, wells, compounds, ann, controls=controls), "InChIKey -> JUMP-Target-1"
    if entry.annotations:
        ann = read_table_file(entry.annotations)
        keys = ["Metadata_Plate", "Metadata_Well"]
        miss = [c for c in keys + ["Metadata_moa"] if c not in ann.columns]
        if miss:
            raise SchemaError(f"{entry.annotations}: missing column(s) {miss}")
        drop = [c for c in ann.columns if c in df.columns and c not in keys]
        return df.drop(columns=drop).merge(ann, on=keys, how="left"), str(entry.annotations)
    return df, "the files' own Metadata_moa"


def build_published_table(entry: DatasetEntry, files: list[ProfileFile], shared_dir: Path):
    """Canonical, annotated, filtered profiles of ``files``; returns (table, FilterReport, annotation source)."""
    from moa_core.profiles import published as pub

    parts = []
    release = entry.release or f"{entry.layout}/{entry.batch or entry.name}" + (
        f"/{entry.profile_suffix}" if entry.profile_suffix else ""
    )
    for f in files:
        df = pub.read_profile_file(f.path)
        df, how = _annotate(entry, df, shared_dir)
        parts.append(
            pub.to_canonical(
                df,
                release=release,
                etag=entry.etag or f.etag,
                source_file=f.source_file,
                source=entry.source_name,
                batch=entry.batch,
            )
        )
    table = pd.concat(parts, ignore_index=True)
    table, report = pub.apply_paper_filters(table, single_moa=True, dose_uM=entry.dose_uM)
    return table, report, how


def release_plate_files(root: str | os.PathLike) -> list:
    """Every per-plate profile file of a cpg0016 release under ``root``, in JUMP's key layout.

    ``<root>/<source>/workspace/profiles/<batch>/<plate>/<plate>.parquet`` -> one
    :class:`moa_core.profiles.release.PlateFile` each (source, batch, plate from the path), sorted by
    source, batch, plate. A folder without such files is an error naming it.
    """
    from moa_core.profiles.release import PlateFile

    root = Path(root)
    out = []
    for p in sorted(root.glob("*/workspace/profiles/*/*/*.parquet")):
        plate, batch, source = p.parent.name, p.parent.parent.name, p.parents[4].name
        if p.name != f"{plate}.parquet":
            continue
        out.append(PlateFile(path=p, source=source, batch=batch, plate=plate, source_file=str(p)))
    if not out:
        raise FileNotFoundError(
            f"no cpg0016 plate files (<source>/workspace/profiles/<batch>/<plate>/<plate>.parquet) under {root}"
        )
    return out


def gallery_plate_files(files: list[ProfileFile]) -> list:
    """The downloaded per-plate files of a gallery cpg0016 entry as :class:`moa_core.profiles.release.PlateFile`."""
    from moa_core.profiles.release import PlateFile

    out = []
    for f in files:
        parts = f.source_file.split("/")  # s3://bucket/<project>/<source>/workspace/profiles/<batch>/<plate>/<file>
        try:
            i = parts.index("workspace")
        except ValueError:
            raise SchemaError(f"{f.source_file}: not a per-plate cpg0016 profile key") from None
        out.append(
            PlateFile(
                path=f.path,
                source=parts[i - 1],
                batch=parts[i + 2],
                plate=parts[i + 3],
                source_file=f.source_file,
                etag=f.etag,
            )
        )
    return out
