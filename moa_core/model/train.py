"""Training the MOAProfiler classifier (Wong et al. 2023, Methods).

Paper settings (:meth:`TrainConfig.paper`): SGD, learning rate 0.1, momentum 0.9,
weight decay 1e-4, dropout 0.2, batch 56, 100 epochs, learning rate x0.1 at epochs 50
and 75, class-balanced training set, DMSO as a class, and the checkpoint with the best
validation accuracy kept. The demo scales epochs, batch and input size down for a
2-core CPU and adds a short linear warm-up (noted in the config).

Class balance: the paper duplicates minority-class images until every MOA is equally
represented. We draw each epoch's samples with class-balanced probabilities (with
replacement), which gives every class the same expected share without materializing
the duplicated set.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from moa_core.model.fields import augment, channel_stats, normalize
from moa_core.model.network import build_model


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 56
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    dropout: float = 0.2
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of ``epochs``
    gamma: float = 0.1
    warmup_epochs: int = 0
    grad_clip_norm: float | None = None
    input_size: int = 1080
    color_jitter: float = 0.0
    samples_per_epoch: int | None = None  # default: size of the training set
    seed: int = 0
    num_threads: int | None = None
    device: str = "auto"

    @classmethod
    def paper(cls) -> TrainConfig:
        return cls()

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d


@dataclass
class TrainResult:
    checkpoint_path: Path
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor,
              device: torch.device, batch: int = 128) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = normalize(x[i:i + batch], mean, sd).to(device)
            correct += int((model(xb).argmax(1).cpu() == y[i:i + batch]).sum())
    return correct / max(1, len(x))


def save_checkpoint_atomic(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def train_classifier(
    x_train: torch.Tensor,
    y_train: np.ndarray,
    x_val: torch.Tensor,
    y_val: np.ndarray,
    classes: list[str],
    config: TrainConfig,
    checkpoint_path: str | os.PathLike,
    *,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train EfficientNet-B0 on field tensors; keep the best-validation-accuracy weights.

    ``x_*`` are ``(N, 5, H, W)`` tensors scaled to [0, 1] (see
    :func:`~moa_core.model.fields.load_field_tensors`); ``y_*`` are integer class
    indices into ``classes``. The checkpoint holds the weights, ``classes``, the
    training-set channel statistics, the config and the per-epoch history.
    """
    if len(x_train) == 0 or len(x_val) == 0:
        raise ValueError(f"need training and validation fields, got {len(x_train)} and {len(x_val)}")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = config.resolved_device()
    y_tr = torch.tensor(np.asarray(y_train), dtype=torch.long)
    y_va = torch.tensor(np.asarray(y_val), dtype=torch.long)
    mean, sd = channel_stats(x_train)

    model = build_model(len(classes), in_channels=x_train.shape[1], dropout=config.dropout).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    milestones = sorted({max(1, int(round(m * config.epochs))) for m in config.milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=config.gamma)

    counts = torch.bincount(y_tr, minlength=len(classes)).float()
    weights = (1.0 / counts.clamp_min(1))[y_tr]
    n_per_epoch = config.samples_per_epoch or len(y_tr)
    steps_per_epoch = max(1, int(np.ceil(n_per_epoch / config.batch_size)))
    warmup_steps = config.warmup_epochs * steps_per_epoch

    best = {"acc": -1.0, "epoch": -1, "state": None}
    history: list[dict] = []
    t0 = time.time()
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        idx = torch.multinomial(weights, n_per_epoch, replacement=True, generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(steps_per_epoch):
            bi = idx[b * config.batch_size:(b + 1) * config.batch_size]
            if len(bi) < 2:  # BatchNorm needs >1 sample
                continue
            if step < warmup_steps:
                for g in opt.param_groups:
                    g["lr"] = config.lr * (step + 1) / warmup_steps
            xb = augment(normalize(x_train[bi], mean, sd), gen, config.color_jitter).to(device)
            yb = y_tr[bi].to(device)
            opt.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged at epoch {epoch} step {b} (loss={loss.item()})")
            loss.backward()
            if config.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(bi)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(bi)
        sched.step()
        val_acc = _accuracy(model, x_val, y_va, mean, sd, device)
        rec = {
            "epoch": epoch,
            "train_loss": loss_sum / max(1, seen),
            "train_accuracy": correct / max(1, seen),
            "val_accuracy": val_acc,
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.time() - t0,
        }
        history.append(rec)
        if val_acc > best["acc"]:
            best = {"acc": val_acc, "epoch": epoch,
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        if on_epoch:
            on_epoch(rec)

    ckpt = {
        "state_dict": best["state"],
        "classes": list(classes),
        "channel_mean": mean,
        "channel_sd": sd,
        "config": config.to_dict(),
        "best_epoch": best["epoch"],
        "best_val_accuracy": best["acc"],
        "history": history,
        "in_channels": int(x_train.shape[1]),
    }
    save_checkpoint_atomic(ckpt, checkpoint_path)
    return TrainResult(Path(checkpoint_path), best["epoch"], best["acc"], history, time.time() - t0, list(classes))


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the trained model (eval mode) and return it with the checkpoint dict."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint missing: {p}")
    ckpt = torch.load(p, map_location=device, weights_only=False)
    model = build_model(len(ckpt["classes"]), in_channels=ckpt["in_channels"], dropout=ckpt["config"]["dropout"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model.to(device), ckpt
