"""Cell Painting fields for people: contrast stretch, single channels, 5-channel composites.

Definitions
-----------
Contrast stretch
    Per channel, intensities are mapped linearly from [p_low, p_high] percentiles of that
    channel (default 0.5 and 99.5) to [0, 1] and clipped: scikit-image's
    ``exposure.rescale_intensity(img, in_range=(p_low, p_high), out_range=(0, 1))``, which
    this mirrors (percentiles computed here so each field is stretched on its own).
Composite
    Additive colour blend of the stretched channels, each tinted with its stain's colour,
    clipped to [0, 1]: DNA blue, ER green, RNA cyan, AGP orange, Mito magenta (the common
    Cell Painting palette; RNA/ER overlap shows cyan-green, mitochondria pink).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from skimage import exposure

__all__ = ["STAIN_COLORS", "stretch", "composite", "to_uint8", "placeholder"]

STAIN_COLORS: dict[str, tuple[float, float, float]] = {
    "DNA": (0.0, 0.35, 1.0),
    "ER": (0.0, 1.0, 0.0),
    "RNA": (0.0, 0.85, 0.85),
    "AGP": (1.0, 0.55, 0.0),
    "Mito": (1.0, 0.0, 1.0),
}


def stretch(channel: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """The channel contrast-stretched to [0, 1] float32 between its ``low`` and ``high`` percentiles."""
    img = np.asarray(channel, dtype=np.float32)
    lo, hi = np.percentile(img, [low, high])
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros_like(img, dtype=np.float32)
    return exposure.rescale_intensity(img, in_range=(float(lo), float(hi)), out_range=(0.0, 1.0)).astype(np.float32)


def composite(
    field: np.ndarray,
    channels: Sequence[str],
    *,
    colors: Mapping[str, tuple[float, float, float]] | None = None,
    low: float = 0.5,
    high: float = 99.5,
) -> np.ndarray:
    """A ``(H, W, 3)`` float32 RGB composite of a ``(C, H, W)`` field whose channels are ``channels``."""
    field = np.asarray(field)
    if field.ndim != 3 or field.shape[0] != len(channels):
        raise ValueError(f"field of shape {field.shape} does not have the {len(channels)} channels {list(channels)}")
    pal = dict(STAIN_COLORS, **(colors or {}))
    rgb = np.zeros((*field.shape[1:], 3), dtype=np.float32)
    for plane, name in zip(field, channels):
        rgb += stretch(plane, low, high)[..., None] * np.asarray(pal.get(name, (1.0, 1.0, 1.0)), dtype=np.float32)
    return np.clip(rgb, 0.0, 1.0)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float image -> uint8 (for PNG or ``st.image``)."""
    return (np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def placeholder(size: int = 128) -> np.ndarray:
    """A grey image with a diagonal cross: shown where a field's image could not be read."""
    img = np.full((size, size, 3), 60, dtype=np.uint8)
    idx = np.arange(size)
    img[idx, idx] = img[idx, size - 1 - idx] = 160
    return img
