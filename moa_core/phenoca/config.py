"""Settings of a Pheno-CA study (the model zoo of one (dataset, data-scale) partition).

Defaults are sized for a 2-core CPU; the paper's zoo (Linsley et al.: depths 1, 3, 6, 9, 12 x
widths 128, 256, 512, 1512, AdamW 1e-4, batch 6000, mixed precision) is
:meth:`StudyConfig.paper`. Every value can be set in a dataset entry's ``phenoca`` table
or from the Dagster launchpad.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
