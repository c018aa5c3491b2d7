"""Where a field's files are and how to read them: local paths and ``s3://`` URIs alike.

An :class:`ImageLocator` is a small picklable value, so the process-pool workers that
segment and measure fields (and later DataLoader workers) receive it and open their
own S3 client on first use. ``s3://`` objects are either read straight into memory (no
local copy) or, with ``cache_dir``, downloaded once into a cache keyed by bucket/key and
validated by size + ETag (a rerun downloads nothing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from moa_core.data.image_io import decode_npy, decode_tiff, read_channel
from moa_core.errors import ImageReadError


@lru_cache(maxsize=8)
def _transfer(endpoint_url: str | None, unsigned: bool):
    from moa_core.data.sources.s3 import S3Transfer, make_s3_client

    return S3Transfer(make_s3_client(endpoint_url, unsigned=unsigned))


@dataclass(frozen=True)
class ImageLocator:
    """Resolve and read the files a load_data table names.

    Parameters
    ----------
    root
        Folder that relative ``PathName_*`` values are resolved against (local data).
    endpoint_url
        S3 endpoint (``None``: AWS; a loopback moto server in tests).
    unsigned
        Anonymous requests (the Cell Painting Gallery is public).
    cache_dir
        If set, ``s3://`` objects are downloaded into ``cache_dir/<bucket>/<key>`` once
        and read from there; otherwise they are read straight from S3 into memory.
    """

    root: str | None = None
    endpoint_url: str | None = None
    unsigned: bool = True
    cache_dir: str | None = None

    def resolve(self, folder: str, name: str) -> str:
        """Full path or URI of file ``name`` in ``folder`` (a load_data ``PathName_*``)."""
        folder = str(folder)
        if folder.startswith("s3://"):
            return folder.rstrip("/") + "/" + name
        base = Path(folder)
        if self.root is not None and not base.is_absolute():
            base = Path(self.root) / base
        return str(base / name)

    def read_bytes(self, uri: str) -> bytes:
        """Bytes of a local file or an ``s3://`` object (cached when ``cache_dir`` is set)."""
        if not uri.startswith("s3://"):
            return Path(uri).read_bytes()
        from moa_core.data.sources.s3 import parse_s3_uri

        bucket, key = parse_s3_uri(uri)
        tr = _transfer(self.endpoint_url, self.unsigned)
        if self.cache_dir is None:
            return tr.read_bytes(bucket, key)
        dest = Path(self.cache_dir) / bucket / key
        tr.download(bucket, key, dest)
        return dest.read_bytes()

    def read_channel(
        self, uri: str | os.PathLike, *, expected_shape: tuple[int, int] | None = None, context: str = ""
    ) -> np.ndarray:
        """One 16-bit channel image (see :func:`moa_core.data.image_io.read_channel`)."""
        uri = str(uri)
        if not uri.startswith("s3://"):
            return read_channel(uri, expected_shape=expected_shape, context=context)
        return decode_tiff(self.read_bytes(uri), uri, expected_shape=expected_shape, context=context)

    def read_illumination(self, uri: str, *, context: str = "") -> np.ndarray:
        """A CellProfiler illumination function (``.npy``), cached per process."""
        return _illum_cached(self, uri, context)


@lru_cache(maxsize=32)
def _illum_cached(locator: ImageLocator, uri: str, context: str) -> np.ndarray:
    try:
        data = locator.read_bytes(uri)
    except FileNotFoundError:
        raise ImageReadError(f"illumination function missing: {uri} ({context})") from None
    return decode_npy(data, uri)


def as_locator(root: str | os.PathLike | ImageLocator | None) -> ImageLocator:
    """An :class:`ImageLocator` from a locator, a local root folder, or ``None``."""
    if isinstance(root, ImageLocator):
        return root
    return ImageLocator(root=None if root is None else str(root))


LOCATOR_FILE = "locator.json"


def save_locator(folder: str | os.PathLike, locator: ImageLocator) -> Path:
    """Record how a dataset's files are read (``folder/locator.json``, temporary name then rename)."""
    import dataclasses

    from moa_core.storage import write_json_atomic

    d = Path(folder)
    write_json_atomic(dataclasses.asdict(locator), d / LOCATOR_FILE)
    return d / LOCATOR_FILE


def load_locator(folder: str | os.PathLike) -> ImageLocator:
    """The locator :func:`save_locator` recorded for a dataset folder (plain JSON, no code)."""
    import json

    p = Path(folder) / LOCATOR_FILE
    if not p.is_file():
        raise FileNotFoundError(f"{p} missing: materialize raw_images for this dataset first")
    raw = json.loads(p.read_text())
    allowed = {"root", "endpoint_url", "unsigned", "cache_dir"}
    if not isinstance(raw, dict) or set(raw) - allowed:
        raise ValueError(f"{p}: unexpected content {sorted(raw) if isinstance(raw, dict) else type(raw).__name__}")
    return ImageLocator(**raw)
