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


@dataclass(frozen=True)
class ControlSpec:
    """Which wells are negative controls (a catalogue entry's ``controls`` table).

    A well is a negative control when any of ``value_columns`` equals one of ``values`` (case-insensitive,
    stripped) or any of ``type_columns`` equals one of ``type_values``: the conventions of the field's
    tables (CPJUMP1 and LINCS: ``Metadata_broad_sample``/``Metadata_pert_iname`` = DMSO; JUMP's
    ``Metadata_pert_type``/``Metadata_control_type`` = negcon). Such wells become the ``DMSO`` class of
    the wells table (``Metadata_moa``) every method standardizes to, whatever their MOA column said
    (blank, as JUMP's tables leave it). Columns a table lacks are ignored.
    """

    value_columns: tuple[str, ...] = ("Metadata_moa", "Metadata_broad_sample", "Metadata_pert_iname")
    values: tuple[str, ...] = ("DMSO",)
    type_columns: tuple[str, ...] = ("Metadata_pert_type", "Metadata_control_type")
    type_values: tuple[str, ...] = ("negcon",)
    min_per_plate: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FieldQCConfig:
    """Per-channel field QC (a catalogue entry's ``field_qc`` table); see :mod:`moa_core.data.field_qc`.

    A channel is *blank* when its contrast (99.9th percentile / median) is below ``min_contrast`` (a stained
    CPJUMP1 channel has 5 to 80, camera background alone about 1.1 to 1.5), or, on a plate of at least
    ``min_fields_for_plate_stats`` fields, when its robust range (99.9th - 0.1th percentile) is below
    ``min_range_ratio`` x the plate's median range of that channel; *saturated* when more than
    ``max_saturated`` of its pixels sit at ``saturation_value`` (65535: the 16-bit top); *out of focus* when
    its focus score (log of fine- over coarse-scale Laplacian energy) is more than ``focus_mad``
    robust SDs below the plate's median of that channel (plates of at least ``min_fields_for_plate_stats``
    fields; the robust SD, 1.4826 x MAD, is at least ``focus_min_sd``: real fields differ by about 0.1 to
    0.4 in this score, so a plate of near-identical fields does not make every small difference an outlier).
    ``skip = true`` leaves flagged fields out of every method's profiles (CP's well medians and the image
    models' training and embeddings); otherwise they are listed in ``field_qc`` and kept.
    """

    min_contrast: float = 2.0
    min_range_ratio: float = 0.1
    max_saturated: float = 0.01
    saturation_value: int = 65535
    focus_mad: float = 4.0
    focus_min_sd: float = 0.25
    min_fields_for_plate_stats: int = 8
    skip: bool = False

    def to_dict(self) -> dict:
        return asdict(self)
