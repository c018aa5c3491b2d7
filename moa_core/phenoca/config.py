"""Settings of a Pheno-CA study (the model zoo of one (dataset, data-scale) partition).

Defaults are sized for a 2-core CPU; the paper's zoo (Linsley et al.: depths 1, 3, 6, 9, 12 x
widths 128, 256, 512, 1512, AdamW 1e-4, batch 6000, mixed precision) is
:meth:`StudyConfig.paper`. Every value can be set in a dataset entry's ``phenoca`` table
or from the Dagster launchpad.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from moa_core.errors import SchemaError


@dataclass(frozen=True)
class StudyConfig:
    depths: tuple[int, ...] = (1, 3)
    widths: tuple[int, ...] = (128, 256)
    epochs: int = 30
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.1
    patience: int = 5
    probe_epochs: int = 60
    probe_hidden: int = 256
    task_supervised: bool = True  # also train task-supervised models of the same architectures
    invariance_weight: float = 0.0  # > 0 adds nuisance-invariant IBP models (source/batch/well pushed to uniform)
    splits: tuple[str, ...] = ("replicate", "novel")
    preprocess: str = "robust"  # "robust": per-plate (x - median) / (IQR + 0.01); "dmso": DMSO standardization
    clip: float = 5.0
    pca_components: float | int | None = 0.99  # PCA whitening keeping this share of variance (or this many PCs)
    knn_k: int = 10
    n_boot: int = 200
    seed: int = 0
    num_threads: int | None = None
    device: str = "auto"
    max_minutes: float | None = None  # per model
    #: IBP's molecule head: None = the paper's full softmax over every training molecule; an int = a sampled
    #: softmax over the batch's molecules and this many others drawn uniformly (for ~100,000 molecules on a CPU)
    ibp_sampled_classes: int | None = None
    #: IBP's early stopping on at most this many validation wells (seeded subset; None = all of them)
    ibp_val_limit: int | None = None

    @classmethod
    def paper(cls) -> StudyConfig:
        return cls(depths=(1, 3, 6, 9, 12), widths=(128, 256, 512, 1512), lr=1e-4, batch_size=6000, epochs=100)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Zoo:
    """The architectures of a study: every (depth, width) pair."""

    depths: tuple[int, ...] = (1, 3)
    widths: tuple[int, ...] = (128, 256)
    archs: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def of(cls, cfg: StudyConfig) -> Zoo:
        return cls(cfg.depths, cfg.widths, [(d, w) for d in cfg.depths for w in cfg.widths])


# ---- data scales: the keys of the pipeline's ``fraction`` partition dimension ----------------------------
#: Valid partition keys of :func:`parse_scale`, in order: replicate shares, then OOD shares.
SCALE_KEYS: tuple[str, ...] = (
    "100",
    "75",
    "50",
    "25",
    "10",
    "ood0",
    "ood1",
    "ood3",
    "ood10",
    "ood25",
    "ood30",
    "ood50",
)
_REPLICATE_KEYS = {"100": 1.0, "75": 0.75, "50": 0.5, "25": 0.25, "10": 0.1}
_OOD_KEYS = {
    "ood0": 0.0,
    "ood1": 0.01,
    "ood3": 0.03,
    "ood10": 0.1,
    "ood25": 0.25,
    "ood30": 0.3,
    "ood50": 0.5,
    "ood100": 1.0,
}


def parse_scale(key: str) -> tuple[float, float]:
    """``(ood_share, replicate_share)`` of a data-scale partition key.

    ``"100"`` -> (1, 1); ``"75" | "50" | "25" | "10"`` -> (1, share) (replicates of each
    training compound); ``"ood0" | "ood1" | "ood3" | "ood10" | "ood25" | "ood30" | "ood50"`` ->
    (share, 1) (OOD compounds; the finer shares span the JUMP-scale release's two decades);
    ``"ood100"`` is accepted as an alias of ``"100"`` (not in :data:`SCALE_KEYS`, to keep one
    partition per scale).

    Raises
    ------
    SchemaError
        Any other key; the message lists :data:`SCALE_KEYS`.
    """
    if isinstance(key, str):
        k = key.strip()
        if k in _REPLICATE_KEYS:
            return 1.0, _REPLICATE_KEYS[k]
        if k in _OOD_KEYS:
            return _OOD_KEYS[k], 1.0
    raise SchemaError(
        f"unknown data-scale key {key!r}; valid keys: {', '.join(SCALE_KEYS)} "
        f"(replicate shares in %, or 'ood<share %>')"
    )


# ---- the embedded JUMP-like profile generator's knobs (moa_core.phenoca.synthetic) ---------------------
#: Rows x columns of the plate formats the generator lays wells out on.
PLATE_SHAPES = {96: (8, 12), 384: (16, 24), 1536: (32, 48)}


@dataclass(frozen=True)
class SyntheticProfileSpec:
    """Knobs of :func:`generate_profiles` (see the module docstring for the model).

    Sizes default to the Pheno-CA's (2,919 annotated compounds, 1,282 MoAs, 942 targets)
    with 20,000 OOD compounds, ~4 replicates each, 454 features (as many as the
    feature-selected LINCS plate) and ~260 plates of 384 wells with 24 DMSO wells each.
    The effect and noise defaults are calibrated against LINCS SQ00015054 (see
    ``bench/phenoca_calibration.py``).

    Attributes
    ----------
    n_annotated_compounds, n_ood_compounds : int
        Compounds with MoA and target / unannotated ("OOD") compounds.
    n_moas, n_targets : int
        Annotated MoA and target classes (``n_targets <= n_moas <= n_annotated_compounds``).
    n_crispr_genes : int
        CRISPR knockouts; each gene is a distinct target of annotated compounds.
    n_novel_moas, ood_novel_fraction : int, float
        Hidden classes only OOD compounds have, and the share of OOD compounds in them.
    replicates_min, replicates_max : int
        Replicate wells per perturbation, uniform in ``[min, max]``, on distinct plates.
    n_features, latent_dim, hidden_dim, mixing_rank, spectrum_decay
        Feature count, latent dimension, network width, rank of the feature mixing
        and the decay exponent of its singular values (``k^-spectrum_decay``).
    n_sources, batches_per_source, plates_per_batch, wells_per_plate, dmso_per_plate
        Layout; ``plates_per_batch=None`` uses as few plates as hold every replicate.
    moa_zipf, target_zipf : float
        Zipf exponents of compounds over MoAs and of MoAs over targets.
    inactive_fraction, ood_inactive_fraction, inactive_scale : float
        Share of inactive annotated / OOD compounds (None: same as annotated) and the
        factor on their potency.
    moa_effect, target_effect, compound_effect, knockout_deviation : float
        SDs (per latent dimension) of the MoA, target, compound and knockout effects.
    potency_median, potency_sigma : float
        Log-normal potency of active compounds and knockouts.
    well_latent_noise, feature_noise : float
        Replicate noise in latent space / independent per feature (feature units: the
        unit root-mean-square of ``y`` for ``z ~ N(0, I)``).
    position_effect, source_effect, batch_effect, plate_effect, gain_sigma : float
        Well-position effect; source/batch/plate offsets; SD of log gains.
    seed : int
        Seed of every random stream.
    """

    n_annotated_compounds: int = 2919
    n_ood_compounds: int = 20_000
    n_moas: int = 1282
    n_targets: int = 942
    n_crispr_genes: int = 300
    n_novel_moas: int = 1282
    ood_novel_fraction: float = 0.5
    replicates_min: int = 3
    replicates_max: int = 5
    n_features: int = 454
    latent_dim: int = 24
    hidden_dim: int = 96
    mixing_rank: int = 24
    spectrum_decay: float = 0.6
    n_sources: int = 5
    batches_per_source: int = 4
    plates_per_batch: int | None = None
    wells_per_plate: int = 384
    dmso_per_plate: int = 24
    moa_zipf: float = 0.8
    target_zipf: float = 0.8
    inactive_fraction: float = 0.35
    ood_inactive_fraction: float | None = 0.5
    inactive_scale: float = 0.05
    moa_effect: float = 0.8
    target_effect: float = 0.6
    compound_effect: float = 0.5
    knockout_deviation: float = 0.5
    potency_median: float = 1.0
    potency_sigma: float = 0.5
    well_latent_noise: float = 0.35
    feature_noise: float = 0.2
    position_effect: float = 0.3
    source_effect: float = 2.0
    batch_effect: float = 1.0
    plate_effect: float = 0.5
    gain_sigma: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"SyntheticProfileSpec: {msg}")

        need(self.n_moas >= 1 and self.n_targets >= 1, "n_moas and n_targets must be >= 1")
        need(
            self.n_annotated_compounds >= self.n_moas,
            "n_annotated_compounds must be >= n_moas (every MoA has at least one compound)",
        )
        need(self.n_moas >= self.n_targets, "n_moas must be >= n_targets (MoAs are nested in targets)")
        need(0 <= self.n_crispr_genes <= self.n_targets, "n_crispr_genes must be in [0, n_targets]")
        need(self.n_ood_compounds >= 0, "n_ood_compounds must be >= 0")
        need(self.n_novel_moas >= 1 or self.ood_novel_fraction == 0, "n_novel_moas must be >= 1")
        need(1 <= self.replicates_min <= self.replicates_max, "need 1 <= replicates_min <= replicates_max")
        need(
            self.n_features >= 2 and self.latent_dim >= 1 and self.hidden_dim >= 1 and self.mixing_rank >= 1,
            "n_features >= 2, latent_dim, hidden_dim, mixing_rank >= 1",
        )
        need(self.mixing_rank <= self.n_features, "mixing_rank must be <= n_features")
        need(self.wells_per_plate in PLATE_SHAPES, f"wells_per_plate must be one of {sorted(PLATE_SHAPES)}")
        need(2 <= self.dmso_per_plate < self.wells_per_plate, "need 2 <= dmso_per_plate < wells_per_plate")
        need(self.n_sources >= 1 and self.batches_per_source >= 1, "n_sources, batches_per_source >= 1")
        need(self.plates_per_batch is None or self.plates_per_batch >= 1, "plates_per_batch must be >= 1 or None")
        for name in ("inactive_fraction", "ood_novel_fraction"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1]")
        need(
            self.ood_inactive_fraction is None or 0.0 <= self.ood_inactive_fraction <= 1.0,
            "ood_inactive_fraction must be in [0, 1] or None",
        )
        for name in (
            "moa_effect",
            "target_effect",
            "compound_effect",
            "knockout_deviation",
            "potency_sigma",
            "well_latent_noise",
            "feature_noise",
            "position_effect",
            "source_effect",
            "batch_effect",
            "plate_effect",
            "gain_sigma",
            "inactive_scale",
            "spectrum_decay",
        ):
            need(getattr(self, name) >= 0.0, f"{name} must be >= 0")
        need(self.potency_median > 0, "potency_median must be > 0")

    @property
    def n_compounds(self) -> int:
        """Annotated + OOD compounds."""
        return self.n_annotated_compounds + self.n_ood_compounds


# ---- the JUMP-shaped synthetic release's knobs (moa_core.phenoca.jump_release) -------------------------
JUMP_COMPOUNDS = 116_000
JUMP_CRISPR_GENES = 7_975


@dataclass(frozen=True)
class JumpReleaseSpec:
    """Knobs of :func:`generate_release`; sizes are JUMP's at ``scale = 1`` and scale linearly.

    ``n_annotated``, ``n_moas``, ``n_targets`` and ``n_target_genes`` have floors
    (``min_*``) so that the 1 % release still has MoAs with several compounds. The latent
    model's effect and noise sizes are :class:`~moa_core.phenoca.config.SyntheticProfileSpec`'s
    defaults (the LINCS calibration) unless ``model`` overrides them.
    """

    scale: float = 1.0
    seed: int = 0
    n_compounds: int = JUMP_COMPOUNDS
    n_annotated: int = 2_500
    min_annotated: int = 240
    n_moas: int = 600
    min_moas: int = 40
    n_targets: int = 450
    min_targets: int = 30
    n_crispr_genes: int = JUMP_CRISPR_GENES
    n_target_genes: int = 300
    min_target_genes: int = 20
    replicates_min: int = 4
    replicates_max: int = 7
    crispr_replicates_min: int = 4
    crispr_replicates_max: int = 6
    negcon_per_plate: int = 24
    poscon_wells: int = 2
    n_features: int = 4_762
    #: features the phenotype map draws (the rest are noisy affine copies of them: CellProfiler's 4,762
    #: features are highly redundant, and JUMP's recipe keeps a few hundred after correlation filtering)
    n_base_features: int = 800
    copy_noise: float = 0.3  # SD of a copy's own noise, in units of the base features' well noise
    n_processed_features: int = 700
    n_nan_features: int = 12
    nan_feature_share: float = 0.3
    n_constant_features: int = 4
    nan_rate: float = 1e-5
    model: dict = field(default_factory=dict)  # SyntheticProfileSpec overrides (effects, noise)

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise ValueError(f"JumpReleaseSpec: scale must be in (0, 1], got {self.scale}")
        if not 2 <= self.n_base_features <= self.n_features:
            raise ValueError("JumpReleaseSpec: n_base_features must be in [2, n_features]")
        if self.n_processed_features > self.n_features - self.n_nan_features - self.n_constant_features:
            raise ValueError("JumpReleaseSpec: n_processed_features exceeds the clean features")

    def scaled(self, n: int, floor: int = 1) -> int:
        return max(floor, int(round(n * self.scale)))

    @property
    def sizes(self) -> dict[str, int]:
        """The scaled counts of this release."""
        ann = min(self.scaled(self.n_annotated, self.min_annotated), self.scaled(self.n_compounds))
        moas = min(self.scaled(self.n_moas, self.min_moas), ann)
        targets = min(self.scaled(self.n_targets, self.min_targets), moas)
        genes = self.scaled(self.n_crispr_genes, self.min_target_genes)
        tgenes = min(self.scaled(self.n_target_genes, self.min_target_genes), targets, genes)
        return {
            "compounds": self.scaled(self.n_compounds),
            "annotated": ann,
            "moas": moas,
            "targets": targets,
            "crispr_genes": genes,
            "target_genes": tgenes,
        }

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]
