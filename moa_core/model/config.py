"""Training settings of the image models, importable without torch.

The dataset catalogue, the Dagster launchpad's config schema and the CLI read these; only
:meth:`TrainConfig.resolved_device` touches torch, and imports it when called.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class TrainConfig:
    """One training run of the 5-channel EfficientNet-B0 (MOAProfiler, its holdout model, the DP recipe).

    The defaults are the paper's (Wong et al. 2023, Methods; :meth:`paper`): SGD, learning
    rate 0.1, momentum 0.9, weight decay 1e-4, dropout 0.2, batch 56, 100 epochs, x0.1 at
    50 % and 75 % of the epochs, full 1080 px fields. A dataset entry's ``train`` table
    overrides any of them (the CPU demo's recipe is in ``moa_core/catalogue.toml``).
    """

    epochs: int = 100
    batch_size: int = 56
    lr: float = 0.1
    optimizer: str = "sgd"  # the paper's SGD with momentum; "adamw" for short from-scratch CPU runs
    momentum: float = 0.9
    weight_decay: float = 1e-4
    dropout: float = 0.2
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of ``epochs``
    gamma: float = 0.1
    warmup_epochs: int = 0
    grad_clip_norm: float | None = None
    input_size: int = 1080
    crop_size: int | None = (
        None  # train on random native-resolution crops of this size (fields stay whole for val/embedding)
    )
    color_jitter: float = 0.0
    samples_per_epoch: int | None = None  # default: size of the training set
    seed: int = 0
    num_threads: int | None = None
    num_workers: int = 0  # DataLoader worker processes (streaming from the image store)
    device: str = "auto"

    @classmethod
    def paper(cls) -> TrainConfig:
        return cls()

    def resolved_device(self) -> torch.device:
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The inverse of :meth:`to_dict` (lists back to tuples)."""
        d = dict(d)
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)


#: Settings that change speed, not results (DataLoader workers, CPU threads): a resumed run may change them.
NOT_FINGERPRINTED = frozenset({"num_workers", "num_threads"})


def dp_recipe_config() -> TrainConfig:
    """The DP recipe's training defaults where a dataset entry sets no ``dp_train`` (real data, GPU).

    AdamW 1e-3 (weight decay 0.05), batch 128, 30 epochs of 100,000 class-balanced draws, one
    warm-up epoch, x0.1 at 75 %, crops fed at their own size (``input_size`` is capped at the
    crop size: a crop is never upsampled).
    """
    return TrainConfig(
        epochs=30,
        batch_size=128,
        lr=1e-3,
        optimizer="adamw",
        weight_decay=0.05,
        input_size=96,
        samples_per_epoch=100_000,
        warmup_epochs=1,
        milestones=(0.75,),
    )


@dataclass(frozen=True)
class PaperWeightsConfig:
    """A dataset's "MP (paper weights)" settings (its catalogue entry's ``paper_weights`` table).

    ``checkpoint`` names a known published checkpoint (``[paper_weights.<name>]`` of the catalogue:
    its SHA-256, size, study and URL); ``path`` is the user's downloaded file. For a file that is not
    in the catalogue, give ``sha256`` and ``study`` ("JUMP1" or "lincs": the channel order) yourself.
    ``download = true`` fetches the catalogue's URL into ``path`` when the file is missing (verified,
    atomic). ``channel_mean``/``channel_std`` are the dataset statistics upstream normalized with, in the
    checkpoint's channel order; left empty they are computed over at most ``max_stat_fields`` of the
    dataset's own fields by upstream's definition (:func:`moa_core.model.pretrained.upstream_channel_stats`).
    ``dtype`` is the inference precision ("float32", or "bfloat16" on a GPU).
    """

    checkpoint: str = ""
    path: str = ""
    sha256: str = ""
    size: int | None = None
    study: str = ""
    url: str = ""
    download: bool = False
    channel_mean: tuple[float, ...] = ()
    channel_std: tuple[float, ...] = ()
    max_stat_fields: int = 512
    batch_size: int = 8
    dtype: str = "float32"
    device: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)
