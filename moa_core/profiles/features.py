"""CellProfiler-style single-cell features with cp_measure, aggregated per well.

For every field named in a load_data table: read the five channels (the same reader
the CNN uses), segment nuclei/cells/cytoplasm (:mod:`.segmentation`), measure each
compartment with cp_measure, and name columns the CellProfiler way
(``Cells_Intensity_MeanIntensity_ER``; cp_measure's ``__`` channel separator becomes ``_``). Single cells are then aggregated to wells with
pycytominer's ``aggregate`` (median, the field's default), plus
``Metadata_Count_Cells``.

Location features (centers, bounding-box corners, orientation) describe where a cell
sits in the field, not its phenotype, and are dropped.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.data.image_io import CHANNELS
from moa_core.data.load_data import read_field_from_row
from moa_core.profiles.segmentation import SegmentationParams, segment_field

OBJECTS = ("Nuclei", "Cells", "Cytoplasm")
_LOCATION = re.compile(r"(Center_|Location_|BoundingBoxMinimum|BoundingBoxMaximum|Orientation)")


@dataclass(frozen=True)
class FeatureConfig:
    """Which cp_measure feature groups to compute (all three compartments).

    The default is the fast CellProfiler core: intensity, size/shape and Haralick
    texture of all three compartments, plus Pearson colocalization of every channel
    pair measured on whole cells (``correlation_objects``; per compartment it triples
    the cost for largely redundant columns). Radial distribution and granularity cost
    ~2-5x more per field and are off by default.
    """

    intensity: bool = True
    sizeshape: bool = True
    texture: bool = True
    correlation_pearson: bool = True
    radial_distribution: bool = False
    granularity: bool = False
    texture_scale: int = 3
    correlation_objects: tuple[str, ...] = ("Cells",)

    def cp_measure_config(self, objects: tuple[str, ...] = OBJECTS, correlation: bool = False) -> dict:
        """cp_measure config for ``objects``: the per-object groups, or (``correlation``) colocalization only."""
        from cp_measure.featurizer import make_featurizer_config

        per_object = not correlation
        return make_featurizer_config(
            list(CHANNELS),
            objects=[o.lower() for o in objects],
            intensity=self.intensity and per_object,
            sizeshape=self.sizeshape and per_object,
            texture=self.texture and per_object,
            texture_params={"scale": self.texture_scale},
            correlation_pearson=self.correlation_pearson and correlation,
            radial_distribution=self.radial_distribution and per_object,
            granularity=self.granularity and per_object,
            radial_zernikes=False,
            zernike=False,
            feret=False,
            correlation_costes=False,
            correlation_manders_fold=False,
            correlation_rwc=False,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def measure_field(field: np.ndarray, config: FeatureConfig = FeatureConfig(),
                  seg_params: SegmentationParams = SegmentationParams()) -> pd.DataFrame:
    """Single-cell features of one ``(5, H, W)`` uint16 field.

    Returns one row per segmented cell (``Metadata_ObjectNumber``) with
    ``<Compartment>_<Feature>`` columns; an empty frame when no nucleus is found.
    Intensities are measured on images scaled to [0, 1] (CellProfiler's convention).
    """
    from cp_measure.featurizer import featurize

    seg = segment_field(field)
    if seg.n_objects == 0:
        return pd.DataFrame()
    img = field.astype(np.float32)[None] / 65535.0
    masks = dict(zip(OBJECTS, seg.stack()))
    runs = [(OBJECTS, False)]
    if config.correlation_pearson and config.correlation_objects:
        runs.append((tuple(config.correlation_objects), True))
    parts = []
    for objects, corr in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cp_measure warns on 1-pixel objects etc.; NaNs are handled downstream
            data, cols, rows = featurize(img, np.stack([masks[o] for o in objects])[None],
                                         config.cp_measure_config(objects, correlation=corr))
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
    out = parts[0].join(parts[1:], how="outer")  # cytoplasm may be empty for a cell
    return out.reset_index()


def _field_worker(args: tuple[dict, str | None, FeatureConfig, tuple[int, int] | None]) -> pd.DataFrame:
    row, root, config, shape = args
    field = read_field_from_row(row, CHANNELS, Path(root) if root else None, expected_shape=shape)
    cells = measure_field(field, config)
    if not cells.empty:
        for k in ("Metadata_Site", "Metadata_Well", "Metadata_Plate"):
            cells.insert(0, k, row[k])
    return cells


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
    args = [(r, str(root) if root else None, config, expected_shape) for r in rows]
    out: list[pd.DataFrame] = []
    if n_workers > 1:
        with ProcessPoolExecutor(n_workers) as pool:
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


def aggregate_wells(single_cells: pd.DataFrame, strata: tuple[str, ...] = ("Metadata_Plate", "Metadata_Well")) -> pd.DataFrame:
    """Median per well with pycytominer's ``aggregate`` plus ``Metadata_Count_Cells``."""
    from pycytominer import aggregate

    feats = [c for c in single_cells.columns if not c.startswith("Metadata_")]
    prof = aggregate(single_cells, strata=list(strata), features=feats, operation="median", output_type=None)
    counts = single_cells.groupby(list(strata)).size().rename("Metadata_Count_Cells").reset_index()
    prof = prof.merge(counts, on=list(strata), how="left")
    meta = [c for c in prof.columns if c.startswith("Metadata_")]
    return prof[meta + [c for c in prof.columns if c not in meta]]
