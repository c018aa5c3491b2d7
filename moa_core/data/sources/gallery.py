"""The Cell Painting Gallery (``s3://cellpainting-gallery``, anonymous read) as an image and profile source.

Key layout (the gallery's own; see ``shared/README.md``)::

    <project>/<source>/images/<batch>/images/<plate>__<timestamp>-Measurement1/Images/rRRcCCfFFp01-chNsk1fk1fl1.tiff
    <project>/<source>/images/<batch>/illum/<plate>/<plate>_Illum<Stain>.npy
    <project>/<source>/workspace/load_data_csv/<batch>/<plate>/load_data(_with_illum).{csv,csv.gz,parquet}
    <project>/<source>/workspace/profiles/<batch>/<plate>/<plate>[_<suffix>].csv.gz     (cpg0000, cpg0004)
    <project>/<source>/workspace/profiles/<batch>/<plate>/<plate>.parquet                (cpg0016)

Plates and fields are listed from the gallery's own load_data files (one per plate);
images are read through an :class:`~moa_core.data.locator.ImageLocator` straight from
S3 or from a local download cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from moa_core.data.load_data import check_channel_map, read_table_file
from moa_core.data.locator import ImageLocator
from moa_core.data.sources.base import canonical_load_data, subset_fields
from moa_core.data.sources.s3 import S3Transfer, SourceError

if TYPE_CHECKING:  # the catalogue sits above the data layer; sources only read its fields
    from moa_core.datasets import DatasetEntry

#: load_data file names in order of preference (``_with_illum`` first when correcting).
LOAD_DATA_NAMES: tuple[str, ...] = (
    "load_data_with_illum.parquet",
    "load_data_with_illum.csv.gz",
    "load_data_with_illum.csv",
    "load_data.parquet",
    "load_data.csv.gz",
    "load_data.csv",
)


def load_data_prefix(entry: DatasetEntry) -> str:
    return f"{entry.gallery_prefix}/workspace/load_data_csv/{entry.batch}/"


def profiles_prefix(entry: DatasetEntry) -> str:
    return f"{entry.gallery_prefix}/workspace/profiles/{entry.batch}/"


def profile_key(entry: DatasetEntry, plate: str) -> str:
    """Key of a plate's published well-level profile file."""
    if entry.layout == "cpg0016":
        return f"{profiles_prefix(entry)}{plate}/{plate}.parquet"
    suffix = f"_{entry.profile_suffix}" if entry.profile_suffix else ""
    return f"{profiles_prefix(entry)}{plate}/{plate}{suffix}.csv.gz"


def choose_load_data(keys: list[str], plate: str, *, illum: bool = True) -> str:
    """The plate's load_data key among ``keys`` (``_with_illum`` preferred when ``illum``)."""
    names = {k.rsplit("/", 1)[-1]: k for k in keys}
    order = LOAD_DATA_NAMES if illum else LOAD_DATA_NAMES[3:] + LOAD_DATA_NAMES[:3]
    for n in order:
        if n in names:
            return names[n]
    raise SourceError(f"no load_data file for plate {plate} among {sorted(names) or 'no objects'}")


@dataclass
class GallerySource:
    """A gallery dataset's plates and fields (see the module docstring for the layout).

    ``cache_dir`` holds downloaded load_data files (and, when ``image_cache`` is True,
    images); ``endpoint_url`` points at S3 or a compatible server.
    """

    entry: DatasetEntry
    transfer: S3Transfer
    cache_dir: Path
    endpoint_url: str | None = None
    image_cache: bool = False
    illum: bool = True

    @property
    def bucket(self) -> str:
        return self.entry.bucket

    def list_plates(self) -> list[str]:
        """Plates with a load_data folder in the batch, restricted to the entry's subset."""
        prefix = load_data_prefix(self.entry)
        found = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.transfer.list_prefixes(self.bucket, prefix)]
        if not found:
            raise SourceError(f"s3://{self.bucket}/{prefix}: no plate folders (wrong project/source/batch?)")
        if self.entry.plates:
            missing = sorted(set(self.entry.plates) - set(found))
            if missing:
                raise SourceError(
                    f"s3://{self.bucket}/{prefix}: plate(s) {missing} not found; the batch has "
                    f"{len(found)} plates, e.g. {found[:5]}"
                )
            return list(self.entry.plates)
        return sorted(found)

    def load_data_key(self, plate: str) -> str:
        prefix = f"{load_data_prefix(self.entry)}{plate}/"
        infos = self.transfer.list_objects(self.bucket, prefix)
        return choose_load_data([i.key for i in infos], plate, illum=self.illum)

    def read_load_data(self, plate: str) -> pd.DataFrame:
        """The plate's load_data (downloaded once, cached by ETag), validated, subset, canonical."""
        key = self.load_data_key(plate)
        dest = self.cache_dir / "load_data" / key
        info = self.transfer.head(self.bucket, key)
        self.transfer.download(self.bucket, key, dest, info=info)
        uri = f"s3://{self.bucket}/{key}"
        df = read_table_file(dest)
        check_channel_map(df, self.entry.stain_of_channel(), source=uri)
        if "Metadata_Plate" in df.columns and not df["Metadata_Plate"].isna().any():
            other = sorted(set(df["Metadata_Plate"].astype(str)) - {plate})
            if other:
                raise SourceError(f"{uri}: names plate(s) {other} in the folder of plate {plate}")
        df = canonical_load_data(df, uri, etag=info.etag)
        return subset_fields(df, self.entry.wells, self.entry.sites, source=uri)

    def locator(self) -> ImageLocator:
        cache = str(self.cache_dir / "objects") if self.image_cache else None
        return ImageLocator(endpoint_url=self.endpoint_url, unsigned=True, cache_dir=cache)

    def image_objects(self, load_data: pd.DataFrame) -> list[tuple[str, str]]:
        """(bucket, key) of every image and illumination file ``load_data`` names."""
        from moa_core.data.load_data import channel_paths, illum_paths
        from moa_core.data.sources.s3 import parse_s3_uri

        uris: set[str] = set()
        for row in load_data.to_dict("records"):
            uris.update(channel_paths(row).values())
            uris.update(illum_paths(row).values())
        return sorted(parse_s3_uri(u) for u in uris if u.startswith("s3://"))

    def download_profile(self, plate: str) -> tuple[Path, str, str]:
        """Download a plate's published profile; returns (local path, key, ETag)."""
        key = profile_key(self.entry, plate)
        info = self.transfer.head(self.bucket, key)
        dest = self.cache_dir / "profiles" / key
        self.transfer.download(self.bucket, key, dest, info=info)
        return dest, key, info.etag
