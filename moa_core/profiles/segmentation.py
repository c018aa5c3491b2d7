"""Nuclei / cells / cytoplasm segmentation with scikit-image (CellProfiler-style).

Nuclei: Gaussian-smoothed DNA, Otsu threshold, holes filled, small objects removed,
touching nuclei split by a distance-transform watershed. Cells: watershed from the
nuclei seeds on the smoothed cytoplasmic stains (AGP + ER + RNA), limited to a
foreground mask (Otsu on the same image, relaxed). Cytoplasm: cell minus nucleus.
Object ``i`` is the same cell in all three label images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import feature, filters, measure, morphology, segmentation

from moa_core.data.image_io import CHANNELS


@dataclass(frozen=True)
class SegmentationParams:
    """Sizes are in pixels at the real JUMP pixel scale (nuclear diameter ~35 px)."""

    nucleus_diameter: float = 35.0
    smoothing_sigma: float = 2.0
    min_nucleus_fraction: float = 0.15  # of the expected nuclear area
    cell_threshold_factor: float = 0.6  # x Otsu threshold of the cytoplasm image
    #: Absolute floor on the DNA channel's contrast, in raw 16-bit counts: the 99.9th
    #: percentile minus the median. Real JUMP fields have backgrounds of a few hundred
    #: counts and nuclei above 5,000; an empty well, a failed stain or camera noise
    #: (SD ~20 counts) stays far below 200. The percentile normalization that follows
    #: would otherwise stretch noise to [0, 1] and Otsu would find "nuclei" in it.
    min_dna_contrast: float = 200.0


@dataclass
class Segmentation:
    nuclei: np.ndarray
    cells: np.ndarray
    cytoplasm: np.ndarray
    flag: str | None = None  # why the field has no objects (empty field, failed stain), if it was refused

    @property
    def n_objects(self) -> int:
        return int(self.nuclei.max())

    def stack(self) -> np.ndarray:
        return np.stack([self.nuclei, self.cells, self.cytoplasm]).astype(np.int32)


def _norm(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32)
    lo, hi = np.percentile(img, [0.5, 99.8])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)


def segment_nuclei(dna: np.ndarray, p: SegmentationParams = SegmentationParams()) -> np.ndarray:
    """Label image of nuclei from the DNA channel (0 = background, 1..N contiguous)."""
    sm = filters.gaussian(_norm(dna), p.smoothing_sigma)
    if float(sm.max() - sm.min()) < 1e-6:
        return np.zeros(dna.shape, np.int32)
    fg = sm > filters.threshold_otsu(sm)
    fg = ndimage.binary_fill_holes(fg)
    exp_area = np.pi * (p.nucleus_diameter / 2) ** 2
    fg = morphology.remove_small_objects(fg, max_size=int(p.min_nucleus_fraction * exp_area))
    if not fg.any():
        return np.zeros(dna.shape, np.int32)
    dist = ndimage.distance_transform_edt(fg)
    peaks = feature.peak_local_max(
        dist, min_distance=max(3, int(p.nucleus_diameter * 0.4)), labels=measure.label(fg), exclude_border=False
    )
    markers = np.zeros(dna.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    lab = segmentation.watershed(-dist, markers, mask=fg)
    areas = np.bincount(lab.ravel())
    small = areas <= int(p.min_nucleus_fraction * exp_area)
    small[0] = False
    lab[small[lab]] = 0
    return segmentation.relabel_sequential(lab)[0].astype(np.int32)


def dna_contrast(dna: np.ndarray) -> float:
    """99.9th percentile minus median of the raw DNA channel (counts)."""
    lo, hi = np.percentile(dna, [50, 99.9])
    return float(hi - lo)


def segment_field(
    field: np.ndarray, p: SegmentationParams = SegmentationParams(), channels: tuple[str, ...] = CHANNELS
) -> Segmentation:
    """Segment a ``(C, H, W)`` field (channels in ``channels`` order).

    A field whose DNA contrast is below ``p.min_dna_contrast`` gets no objects and a
    ``flag`` saying why (empty field or failed DNA stain).
    """
    ch = {c: i for i, c in enumerate(channels)}
    contrast = dna_contrast(field[ch["DNA"]])
    if contrast < p.min_dna_contrast:
        z = np.zeros(field.shape[1:], np.int32)
        return Segmentation(
            z,
            z.copy(),
            z.copy(),
            flag=f"empty field or failed DNA stain: contrast {contrast:.0f} counts < floor {p.min_dna_contrast:.0f}",
        )
    nuclei = segment_nuclei(field[ch["DNA"]], p)
    cyto_img = filters.gaussian(
        _norm(field[ch["AGP"]]) + _norm(field[ch["ER"]]) + 0.5 * _norm(field[ch["RNA"]]), p.smoothing_sigma
    )
    if nuclei.max() == 0:
        z = np.zeros_like(nuclei)
        return Segmentation(nuclei, z, z.copy(), flag="no nucleus found")
    mask = cyto_img > p.cell_threshold_factor * filters.threshold_otsu(cyto_img)
    mask |= nuclei > 0
    cells = segmentation.watershed(-cyto_img, nuclei, mask=mask).astype(np.int32)
    cytoplasm = np.where(nuclei > 0, 0, cells).astype(np.int32)
    return Segmentation(nuclei, cells, cytoplasm)
