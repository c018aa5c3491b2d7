"""Image and profile sources behind one interface (see :mod:`.base`).

- :mod:`.gallery` — the Cell Painting Gallery on S3 (cpg0000, cpg0004, cpg0016 layouts)
- :mod:`.local` — a user's folder of TIFFs with load_data files
- :mod:`.s3` — robust S3 transfers (concurrent, retried, resumable, cached)
- :mod:`.annotations` — per-well compound/MOA annotations for each layout

The synthetic renderer (:mod:`moa_core.data.synthetic`) writes a local folder that the
local source reads like any user's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from moa_core.data.sources.base import LOAD_DATA_COLUMNS, ImageSource, canonical_load_data, to_wells_table

if TYPE_CHECKING:
    from moa_core.data.sources.s3 import S3Transfer
    from moa_core.datasets import DatasetEntry

__all__ = ["LOAD_DATA_COLUMNS", "ImageSource", "canonical_load_data", "open_image_source", "to_wells_table"]


def open_image_source(
    entry: DatasetEntry,
    *,
    cache_dir: Path,
    transfer: S3Transfer | None = None,
    endpoint_url: str | None = None,
    image_cache: bool = False,
    root: Path | None = None,
) -> ImageSource:
    """The :class:`ImageSource` of a catalogue entry.

    ``root`` is the rendered folder of a synthetic dataset; ``transfer`` (an
    :class:`~moa_core.data.sources.s3.S3Transfer`) is needed for gallery datasets.
    """
    import dataclasses

    from moa_core.data.sources.gallery import GallerySource
    from moa_core.data.sources.local import LocalSource

    if entry.kind == "synthetic":
        if root is None:
            raise ValueError(f"dataset {entry.name}: a synthetic dataset is read from its rendered folder (root)")
        return LocalSource(dataclasses.replace(entry, path=str(root), load_data=("load_data.csv",)))
    if entry.kind != "images":
        raise ValueError(f"dataset {entry.name} is a {entry.kind!r} dataset: it has no images")
    if entry.source == "local":
        return LocalSource(entry)
    if transfer is None:
        raise ValueError(f"dataset {entry.name}: a gallery source needs an S3 transfer")
    return GallerySource(
        entry, transfer, Path(cache_dir) / "gallery", endpoint_url=endpoint_url, image_cache=image_cache
    )
