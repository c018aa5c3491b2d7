"""Settings of the synthetic image dataset, importable without numpy or scipy."""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: Real-data reference: ~94 nuclei per 1080x1080 field (CPJUMP1 DMSO well D14),
#: median nuclear area ~950 px (radius ~17 px).
REAL_FIELD_SIZE = 1080
REAL_NUCLEI_PER_FIELD = 94.0


@dataclass(frozen=True)
class SyntheticSpec:
    """Knobs of the synthetic CPJUMP1 dataset.

    ``cells_per_field=None`` scales the real density (~94 nuclei per 1080² field)
    to ``image_size``.
    """

    n_plates: int = 4
    max_moas: int | None = 16
    dmso_wells_per_plate: int | None = 24
    fields_per_well: int = 3
    image_size: int = 256
    cells_per_field: float | None = None
    include_multi_moa: bool = True
    seed: int = 0
    moa_effect: float = 0.55
    compound_deviation: float = 0.45
    replicate_noise: float = 0.12
    cell_noise: float = 0.18
    plate_gain_sd: float = 0.08

    @property
    def mean_cells(self) -> float:
        if self.cells_per_field is not None:
            return float(self.cells_per_field)
        return max(1.0, REAL_NUCLEI_PER_FIELD * (self.image_size / REAL_FIELD_SIZE) ** 2)

    def to_dict(self) -> dict:
        return asdict(self)
