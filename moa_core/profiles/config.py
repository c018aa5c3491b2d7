"""Which CellProfiler features to measure, importable without the image stack (scikit-image, cp_measure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from moa_core.data.channels import CHANNELS

#: The three compartments measured, in this order; object ``i`` is the same cell in each.
OBJECTS = ("Nuclei", "Cells", "Cytoplasm")


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
