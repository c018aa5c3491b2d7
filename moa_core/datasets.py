"""Registered datasets: the partitions of the pipeline's ``dataset`` dimension.

``synthetic_cpjump1`` is the embedded default (runs everywhere, no network);
``synthetic_cpjump1_mini`` is a seconds-scale version for smoke tests. Real gallery
datasets register here too, with a loader instead of a renderer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moa_core.data.synthetic import SyntheticSpec
from moa_core.model.train import TrainConfig
from moa_core.profiles.features import FeatureConfig


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    synthetic: SyntheticSpec | None
    train: TrainConfig
    features: FeatureConfig = field(default_factory=FeatureConfig)
    split_seed: int = 0


DATASETS: dict[str, DatasetSpec] = {
    "synthetic_cpjump1": DatasetSpec(
        name="synthetic_cpjump1",
        description=(
            "Synthetic CPJUMP1: real CPJUMP1 compound-plate design (4 plates: A549/U2OS x 24/48 h, "
            "top-16 MOAs by compound count + multi-MOA compounds, 24 DMSO wells per plate), "
            "3 rendered 256x256 fields per well at the real pixel scale"
        ),
        synthetic=SyntheticSpec(),
        train=TrainConfig(epochs=24, batch_size=32, lr=0.1, input_size=64, warmup_epochs=1, num_threads=2),
    ),
    "synthetic_cpjump1_mini": DatasetSpec(
        name="synthetic_cpjump1_mini",
        description="Smoke-test size: 2 plates, 4 MOAs, 6 DMSO wells per plate, 2 fields of 128x128 per well",
        synthetic=SyntheticSpec(n_plates=2, max_moas=4, dmso_wells_per_plate=6, fields_per_well=2,
                                image_size=128, cells_per_field=4),
        train=TrainConfig(epochs=2, batch_size=16, lr=0.05, input_size=64, warmup_epochs=0, num_threads=2),
        features=FeatureConfig(texture=False),
    ),
}

FRACTIONS: dict[str, float] = {"100": 1.0, "50": 0.5, "25": 0.25, "10": 0.1}
DEFAULT_DATASET = "synthetic_cpjump1"
DEFAULT_FRACTION = "100"


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; registered: {sorted(DATASETS)}") from None
