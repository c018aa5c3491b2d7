"""Reading and writing Cell Painting image fields.

One reader for synthetic and real data: a field is the five fluorescence channels of
one site, named in a load_data table by ``FileName_Orig<Channel>`` and
``PathName_Orig<Channel>``. Real JUMP TIFFs are LZW-compressed 16-bit; tifffile reads
them through ``imagecodecs``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import tifffile

from moa_core.atomic import atomic_path
from moa_core.data.channels import CHANNEL_MAPS, CHANNELS  # noqa: F401  (re-exported)
from moa_core.errors import ImageReadError


def field_filename(row: int, col: int, site: int, channel: int) -> str:
    """Phenix/Harmony name of one channel image, e.g. ``r04c14f05p01-ch5sk1fk1fl1.tiff``."""
    return f"r{row:02d}c{col:02d}f{site:02d}p01-ch{channel}sk1fk1fl1.tiff"


def _validate_plane(arr: np.ndarray, name: str, where: str, expected_shape: tuple[int, int] | None) -> np.ndarray:
    if arr.ndim != 2:
        raise ImageReadError(f"image {name}{where} has shape {arr.shape}; expected one 2-D channel")
    if arr.dtype != np.uint16:
        raise ImageReadError(f"image {name}{where} has dtype {arr.dtype}; expected uint16")
    if expected_shape is not None and tuple(arr.shape) != tuple(expected_shape):
        raise ImageReadError(f"image {name}{where} has shape {arr.shape}; expected {tuple(expected_shape)}")
    return arr


def decode_tiff(
    data: bytes, name: str, *, expected_shape: tuple[int, int] | None = None, context: str = ""
) -> np.ndarray:
    """Decode one single-channel 16-bit TIFF held in memory (e.g. read straight from S3)."""
    where = f" ({context})" if context else ""
    try:
        arr = tifffile.imread(io.BytesIO(data))
    except Exception as exc:  # tifffile raises many types for corrupt/truncated data
        raise ImageReadError(f"cannot read image {name}{where}: {type(exc).__name__}: {exc}") from exc
    return _validate_plane(arr, name, where, expected_shape)


def read_channel(
    path: str | os.PathLike,
    *,
    expected_shape: tuple[int, int] | None = None,
    context: str = "",
) -> np.ndarray:
    """Read one single-channel 16-bit TIFF from a local file, validating it.

    Raises :class:`ImageReadError` naming the file (and ``context``, e.g. plate/well/site)
    when the file is missing, truncated/corrupt, not 2-D, not uint16, or of an
    unexpected shape. ``s3://`` URIs are read by :class:`moa_core.data.locator.ImageLocator`.
    """
    p = Path(path)
    where = f" ({context})" if context else ""
    if not p.is_file():
        raise ImageReadError(f"image file missing: {p}{where}")
    try:
        arr = tifffile.imread(p)
    except Exception as exc:  # tifffile raises many types for corrupt/truncated data
        raise ImageReadError(f"cannot read image {p}{where}: {type(exc).__name__}: {exc}") from exc
    return _validate_plane(arr, str(p), where, expected_shape)


def read_field(
    paths: Mapping[str, str | os.PathLike],
    *,
    channels: Sequence[str] = CHANNELS,
    expected_shape: tuple[int, int] | None = None,
    context: str = "",
    reader: Callable[..., np.ndarray] = read_channel,
) -> np.ndarray:
    """Read a field's channels into a ``(C, H, W)`` uint16 array in ``channels`` order.

    ``reader(path, expected_shape=..., context=...)`` reads one channel (local files by
    default; an :class:`~moa_core.data.locator.ImageLocator`'s ``read_channel`` for S3).
    """
    planes = []
    shape = expected_shape
    for ch in channels:
        if ch not in paths:
            raise ImageReadError(f"no path for channel {ch}{' (' + context + ')' if context else ''}")
        plane = reader(paths[ch], expected_shape=shape, context=f"{context} channel {ch}".strip())
        shape = plane.shape
        planes.append(plane)
    return np.stack(planes)


def apply_illumination(
    plane: np.ndarray, illum: np.ndarray, *, name: str = "illumination function", context: str = ""
) -> np.ndarray:
    """CellProfiler ``CorrectIlluminationApply`` (divide): ``plane / illum``, back to uint16.

    The JUMP illumination functions (``<Plate>_Illum<Stain>.npy``) are smooth float
    arrays with robust minimum ~1, so the quotient stays in the 16-bit range; it is
    rounded and clipped to [0, 65535] (CellProfiler keeps floats; we keep the one
    uint16 representation every reader of this project uses).
    """
    where = f" ({context})" if context else ""
    if illum.shape != plane.shape:
        raise ImageReadError(f"{name}{where} has shape {illum.shape}; the image has {plane.shape}")
    if not np.isfinite(illum).all() or (illum <= 0).any():
        raise ImageReadError(f"{name}{where} has non-finite or non-positive values")
    out = np.rint(plane.astype(np.float32) / illum.astype(np.float32))
    return np.clip(out, 0, 65535).astype(np.uint16)


def decode_npy(data: bytes, name: str) -> np.ndarray:
    """A CellProfiler ``.npy`` illumination function, without unpickling (``allow_pickle=False``)."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise ImageReadError(f"cannot read illumination function {name}: {type(exc).__name__}: {exc}") from exc
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise ImageReadError(f"illumination function {name} must be a 2-D float array, got {arr.shape} {arr.dtype}")
    return arr


def write_tiff_atomic(path: str | os.PathLike, image: np.ndarray, *, compression: str | None = "zlib") -> None:
    """Write a 2-D uint16 TIFF via a temporary file in the same folder, then rename."""
    p = Path(path)
    if image.ndim != 2 or image.dtype != np.uint16:
        raise ValueError(f"refusing to write {p}: need a 2-D uint16 array, got {image.shape} {image.dtype}")
    with atomic_path(p) as tmp:
        tifffile.imwrite(tmp, image, compression=compression)
