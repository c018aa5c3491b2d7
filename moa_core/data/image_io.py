"""Reading and writing Cell Painting image fields.

One reader for synthetic and real data: a field is the five fluorescence channels of
one site, named in a load_data table by ``FileName_Orig<Channel>`` and
``PathName_Orig<Channel>``. Real JUMP TIFFs are LZW-compressed 16-bit; tifffile reads
them through ``imagecodecs``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tifffile

from moa_core.errors import ImageReadError

#: The five Cell Painting channels, in the order every array in this project uses.
CHANNELS: tuple[str, ...] = ("DNA", "ER", "RNA", "AGP", "Mito")

#: Channel number -> stain, per dataset (cpg0000 / source_4 Phenix exports vs. LINCS).
CHANNEL_MAPS: dict[str, dict[int, str]] = {
    "cpg0000": {1: "Mito", 2: "AGP", 3: "RNA", 4: "ER", 5: "DNA"},
    "cpg0004": {1: "DNA", 2: "ER", 3: "RNA", 4: "AGP", 5: "Mito"},
}


def field_filename(row: int, col: int, site: int, channel: int) -> str:
    """Phenix/Harmony name of one channel image, e.g. ``r04c14f05p01-ch5sk1fk1fl1.tiff``."""
    return f"r{row:02d}c{col:02d}f{site:02d}p01-ch{channel}sk1fk1fl1.tiff"


def read_channel(
    path: str | os.PathLike,
    *,
    expected_shape: tuple[int, int] | None = None,
    context: str = "",
) -> np.ndarray:
    """Read one single-channel 16-bit TIFF, validating it.

    Raises :class:`ImageReadError` naming the file (and ``context``, e.g. plate/well/site)
    when the file is missing, truncated/corrupt, not 2-D, not uint16, or of an
    unexpected shape.
    """
    p = Path(path)
    where = f" ({context})" if context else ""
    if not p.is_file():
        raise ImageReadError(f"image file missing: {p}{where}")
    try:
        arr = tifffile.imread(p)
    except Exception as exc:  # tifffile raises many types for corrupt/truncated data
        raise ImageReadError(f"cannot read image {p}{where}: {type(exc).__name__}: {exc}") from exc
    if arr.ndim != 2:
        raise ImageReadError(f"image {p}{where} has shape {arr.shape}; expected one 2-D channel")
    if arr.dtype != np.uint16:
        raise ImageReadError(f"image {p}{where} has dtype {arr.dtype}; expected uint16")
    if expected_shape is not None and tuple(arr.shape) != tuple(expected_shape):
        raise ImageReadError(f"image {p}{where} has shape {arr.shape}; expected {tuple(expected_shape)}")
    return arr


def read_field(
    paths: Mapping[str, str | os.PathLike],
    *,
    channels: Sequence[str] = CHANNELS,
    expected_shape: tuple[int, int] | None = None,
    context: str = "",
) -> np.ndarray:
    """Read a field's channels into a ``(C, H, W)`` uint16 array in ``channels`` order."""
    planes = []
    shape = expected_shape
    for ch in channels:
        if ch not in paths:
            raise ImageReadError(f"no path for channel {ch}{' (' + context + ')' if context else ''}")
        plane = read_channel(paths[ch], expected_shape=shape, context=f"{context} channel {ch}".strip())
        shape = plane.shape
        planes.append(plane)
    return np.stack(planes)


def write_tiff_atomic(path: str | os.PathLike, image: np.ndarray, *, compression: str | None = "zlib") -> None:
    """Write a 2-D uint16 TIFF via a temporary file in the same folder, then rename."""
    p = Path(path)
    if image.ndim != 2 or image.dtype != np.uint16:
        raise ValueError(f"refusing to write {p}: need a 2-D uint16 array, got {image.shape} {image.dtype}")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        tifffile.imwrite(tmp, image, compression=compression)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
