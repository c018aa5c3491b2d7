"""A user's own plates on disk: a folder of TIFFs named by load_data files in the real convention.

Minimal layout (any file names; paths in ``PathName_Orig*`` absolute or relative to the
folder)::

    my_plates/
      load_data.csv            # or one file per plate: load_data/<plate>.parquet, ...
      images/P1/r01c01f01p01-ch1sk1fk1fl1.tiff ...
      wells.csv                # optional annotations: Metadata_Plate, Metadata_Well,
                               # Metadata_broad_sample, Metadata_moa (DMSO for controls)

The load_data table needs ``Metadata_Plate, Metadata_Well, Metadata_Site`` and
``FileName_Orig<Stain>``/``PathName_Orig<Stain>`` for DNA, ER, RNA, AGP and Mito;
``FileName_Illum<Stain>``/``PathName_Illum<Stain>`` (``.npy``) when illumination
correction applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from moa_core.data.load_data import check_channel_map, read_table_file
from moa_core.data.locator import ImageLocator
from moa_core.data.sources.base import canonical_load_data, subset_fields
from moa_core.errors import SchemaError

if TYPE_CHECKING:
    from moa_core.datasets import DatasetEntry

_PATTERNS = (
    "load_data*.csv",
    "load_data*.csv.gz",
    "load_data*.parquet",
    "load_data/*.csv",
    "load_data/*.csv.gz",
    "load_data/*.parquet",
)


@dataclass
class LocalSource:
    """Fields of a local folder (``entry.path``), listed by its load_data file(s)."""

    entry: DatasetEntry
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict, init=False, repr=False)

    @property
    def root(self) -> Path:
        return Path(str(self.entry.path))

    def load_data_files(self) -> list[Path]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset {self.entry.name}: folder not found: {self.root}")
        if self.entry.load_data:
            files = [self.root / f for f in self.entry.load_data]
            for f in files:
                if not f.is_file():
                    raise FileNotFoundError(f"dataset {self.entry.name}: load_data file missing: {f}")
            return files
        files = sorted({p for pat in _PATTERNS for p in self.root.glob(pat)})
        if not files:
            raise FileNotFoundError(f"dataset {self.entry.name}: no load_data csv/csv.gz/parquet in {self.root}")
        return files

    def _load(self) -> dict[str, pd.DataFrame]:
        if self._tables:
            return self._tables
        for f in self.load_data_files():
            df = read_table_file(f)
            check_channel_map(df, self.entry.stain_of_channel(), source=str(f))
            df = canonical_load_data(df, str(f))
            for plate, part in df.groupby("Metadata_Plate", sort=True):
                if plate in self._tables:
                    raise SchemaError(
                        f"plate {plate} appears in two load_data files "
                        f"({self._tables[plate]['Metadata_load_data_file'].iloc[0]} and {f})"
                    )
                self._tables[str(plate)] = part.reset_index(drop=True)
        return self._tables

    def list_plates(self) -> list[str]:
        found = sorted(self._load())
        if self.entry.plates:
            missing = sorted(set(self.entry.plates) - set(found))
            if missing:
                raise SchemaError(f"dataset {self.entry.name}: plate(s) {missing} not in its load_data ({found})")
            return list(self.entry.plates)
        return found

    def read_load_data(self, plate: str) -> pd.DataFrame:
        tables = self._load()
        if plate not in tables:
            raise SchemaError(f"dataset {self.entry.name}: no plate {plate} in its load_data")
        return subset_fields(tables[plate], self.entry.wells, self.entry.sites, source=f"{self.entry.name} {plate}")

    def locator(self) -> ImageLocator:
        return ImageLocator(root=str(self.root))
