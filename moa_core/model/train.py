"""Training the MOAProfiler classifier (Wong et al. 2023, Methods).

Paper settings (:meth:`TrainConfig.paper`): SGD, learning rate 0.1, momentum 0.9,
weight decay 1e-4, dropout 0.2, batch 56, 100 epochs, learning rate x0.1 at epochs 50
and 75, class-balanced training set, DMSO as a class, and the checkpoint with the best
validation accuracy kept. The demo scales epochs, batch and input size down for a
2-core CPU and adds a short linear warm-up (noted in the config).

Checkpoint selection: on the validation split's *balanced accuracy at well level with
the negative control excluded* (field probabilities averaged per well) when the wells
and the control class are given: DMSO is ~30 % of validation fields but 1/K of the
balanced training draws, so plain field accuracy rewards an always-"DMSO" model.

Crash safety: after every epoch the full training state (weights, optimizer, the
scheduler's epoch, both random generators, the best weights so far, the history) goes to
``<checkpoint>.resume.pt`` (temporary name, then rename). Training again with the same
config and data resumes after the last finished epoch and ends with the same weights as
an uninterrupted run; a different config or data refuses to mix. Every file is read with
``torch.load(weights_only=True)``: a checkpoint that is not plain tensors and containers
(a pickle carrying code) is refused before anything runs.

Class balance: the paper duplicates minority-class images until every MOA is equally
represented. We draw each epoch's samples with class-balanced probabilities (with
replacement), which gives every class the same expected share without materializing
the duplicated set.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from moa_core.atomic import atomic_path
from moa_core.model.config import NOT_FINGERPRINTED, TrainConfig
from moa_core.model.network import build_model

__all__ = ["TrainConfig", "TrainResult", "train_classifier", "load_checkpoint"]


@dataclass
class TrainResult:
    checkpoint_path: Path
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)
    resumed_from_epoch: int = 0
    sha256: str = ""

    @property
    def warnings(self) -> list[str]:
        """Signs that the model did not learn, for the asset metadata and the dashboard."""
        out = []
        if self.history and self.best_epoch == self.history[-1]["epoch"] and len(self.history) > 1:
            out.append(f"best epoch is the last ({self.best_epoch}): still improving, train longer")
        k = max(1, len(self.classes) - 1)
        if self.best_val_accuracy < 2.0 / k:
            out.append(f"best validation score {self.best_val_accuracy:.3f} is near chance (~{1 / k:.3f})")
        return out


CHECKPOINT_FORMAT = "moa_profiler.efficientnet_b0.v1"
RESUME_FORMAT = "moa_profiler.train_state.v2"


class CheckpointError(ValueError):
    """A checkpoint file is not ours, is corrupt, or does not match its recorded hash."""


def well_balanced_accuracy(
    probs: np.ndarray, y: np.ndarray, groups: np.ndarray, exclude_class: int | None = None
) -> float:
    """Balanced accuracy over wells: field probabilities averaged per well, argmax, mean per-class recall.

    Wells whose true class is ``exclude_class`` (the negative control) are left out, as
    the paper's MOA analyses leave DMSO out. Mirrors ``sklearn.metrics.balanced_accuracy_score``
    on the well-level predictions.
    """
    from sklearn.metrics import balanced_accuracy_score

    df = pd.DataFrame(probs)
    df["_g"], df["_y"] = groups, y
    per_well = df.groupby("_g", sort=False)
    p = per_well[list(range(probs.shape[1]))].mean().to_numpy()
    yw = per_well["_y"].first().to_numpy()
    keep = yw != exclude_class if exclude_class is not None else np.ones(len(yw), bool)
    if not keep.any():
        return float("nan")
    return float(balanced_accuracy_score(yw[keep], p[keep].argmax(1)))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_load(
    path: str | os.PathLike, *, expected_format: str, expected_sha256: str | None = None, map_location: str = "cpu"
) -> dict:
    """``torch.load(weights_only=True)`` of one of our files, after checking its hash (if given) and format."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint missing: {p}")
    if expected_sha256 is not None:
        got = file_sha256(p)
        if got != expected_sha256:
            raise CheckpointError(
                f"checkpoint {p} has SHA-256 {got[:16]}..., its warehouse row records "
                f"{expected_sha256[:16]}...: re-materialize the checkpoint asset"
            )
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError for code-carrying pickles, RuntimeError for corrupt zips
        raise CheckpointError(
            f"{p} is not a MOAProfiler checkpoint (loaded with weights_only=True, nothing was "
            f"executed): {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != expected_format:
        raise CheckpointError(f"{p} is not a {expected_format} file")
    return obj


def save_checkpoint_atomic(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_checkpoint(
    path: str | os.PathLike,
    *,
    state_dict: dict,
    classes: Sequence[str],
    channel_mean,
    channel_sd,
    config: dict,
    best_epoch: int,
    best_val_accuracy: float,
    selection: str,
    history: list,
    in_channels: int,
    **extra,
) -> None:
    """Write a model checkpoint in the project's format (:data:`CHECKPOINT_FORMAT`), atomically: the one
    writer of the format, for trained models and for a user's pretrained weights alike (``extra`` keys,
    e.g. ``world_size``, ``cell_crop``, are kept)."""
    save_checkpoint_atomic(
        {
            "format": CHECKPOINT_FORMAT,
            "state_dict": state_dict,
            "classes": list(classes),
            "channel_mean": channel_mean,
            "channel_sd": channel_sd,
            "config": config,
            "best_epoch": int(best_epoch),
            "best_val_accuracy": float(best_val_accuracy),
            "selection": selection,
            "history": history,
            "in_channels": int(in_channels),
            **extra,
        },
        path,
    )


def resume_path(checkpoint_path: str | os.PathLike) -> Path:
    p = Path(checkpoint_path)
    return p.with_name(p.stem + ".resume.pt")


def _fingerprint(
    config: TrainConfig,
    classes: list[str],
    train_source,
    y: np.ndarray,
    world_size: int,
    val_source=None,
    y_val: np.ndarray | None = None,
    val_groups=None,
    exclude_class=None,
) -> str:
    """What a resumed run must share with the interrupted one: config, classes, the training and validation
    data (selection depends on it), the process count."""
    cfg = {k: v for k, v in config.to_dict().items() if k not in NOT_FINGERPRINTED}
    h = hashlib.sha256(
        json.dumps(
            {
                "config": cfg,
                "classes": list(classes),
                "n": len(train_source),
                "world_size": world_size,
                "exclude_class": exclude_class,
            },
            sort_keys=True,
        ).encode()
    )
    h.update(np.asarray(y, dtype=np.int64).tobytes())
    h.update(train_source.fingerprint().encode())
    if val_source is not None:
        h.update(val_source.fingerprint().encode())
        h.update(np.asarray(y_val, dtype=np.int64).tobytes())
    if val_groups is not None:
        h.update("\0".join(map(str, val_groups)).encode())
    return h.hexdigest()


def _dist() -> tuple[int, int]:
    """(rank, world size) of the initialized process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _cuda_rng(device: torch.device) -> torch.Tensor:
    """This rank's CUDA generator state (dropout on the GPU draws from it); empty on CPU."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0, dtype=torch.uint8)


def _to_device(xb: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor, device: torch.device) -> torch.Tensor:
    """float16 [0, 1] batch -> normalized float32 on ``device``, channels_last.

    channels_last (NHWC) is what oneDNN's CPU convolutions and cuDNN's tensor-core kernels are
    fastest in for this network (on 2 CPU cores a training step of batch 32 at 64 px takes
    ~0.19 s instead of ~0.30 s); the values are the same, only the memory layout differs.
    """
    x = xb.to(device, non_blocking=True).float()
    x = (x - mean.to(device)[None, :, None, None]) / sd.to(device)[None, :, None, None]
    return x.contiguous(memory_format=torch.channels_last)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op context on CPU (2-core CPUs gain nothing from bf16)."""
    import contextlib

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def predict_probabilities(
    model: torch.nn.Module, loader, mean: torch.Tensor, sd: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Softmax probabilities of every field of a sequential loader (inference mode)."""
    model.eval()
    out = []
    with torch.inference_mode(), autocast(device):
        for xb, _ in loader:
            out.append(torch.softmax(model(_to_device(xb, mean, sd, device)).float(), 1).cpu())
    return torch.cat(out)


def _jitter(x: torch.Tensor, j: float, gen: torch.Generator) -> torch.Tensor:
    """Per-channel contrast x (1 + u) and brightness + u, u ~ U[-j, j] (the paper's LINCS jitter)."""
    b, c = x.shape[:2]
    contrast = 1 + (torch.rand((b, c, 1, 1), generator=gen) * 2 - 1) * j
    bright = (torch.rand((b, c, 1, 1), generator=gen) * 2 - 1) * j
    return x * contrast.to(x.device) + bright.to(x.device)


def train_classifier(
    x_train,
    y_train: np.ndarray,
    x_val,
    y_val: np.ndarray,
    classes: list[str],
    config: TrainConfig,
    checkpoint_path: str | os.PathLike,
    *,
    on_epoch: Callable[[dict], None] | None = None,
    val_groups: np.ndarray | None = None,
    exclude_class: int | None = None,
    channel_mean: torch.Tensor | None = None,
    channel_sd: torch.Tensor | None = None,
    extra: dict | None = None,
    init_state: dict | None = None,
) -> TrainResult:
    """Train EfficientNet-B0 on fields; keep the best validation weights; resume after a crash; DDP-aware.

    ``x_*`` are field sources (:class:`~moa_core.model.loader.StoreFields` streaming from
    the image store, or an ``(N, 5, H, W)`` tensor scaled to [0, 1]); ``y_*`` are integer
    class indices into ``classes``. Fields are fed by a DataLoader with
    ``config.num_workers`` workers and the class-balanced
    :class:`~moa_core.model.loader.BalancedDistributedSampler`. With ``val_groups`` (the
    validation fields' well IDs) the checkpoint is selected on :func:`well_balanced_accuracy`
    with ``exclude_class`` (the negative control) left out; otherwise on field accuracy.
    Channel statistics default to the training source's. ``extra`` entries are stored in
    the checkpoint (e.g. the DP recipe's crop size). ``init_state`` (a state dict of the same
    network, e.g. user-supplied pretrained weights) replaces the random initialization.

    Resume is bit-exact on CPU; on CUDA the random streams (CPU and CUDA generators of every
    rank) are restored too, but cuDNN's backward kernels are not deterministic by default.

    Under ``torchrun`` (an initialized process group; see :mod:`moa_core.model.launch`) the
    model is wrapped in ``DistributedDataParallel``, each rank draws its share of every
    epoch (``set_epoch``), ``batch_size`` is the global batch, and only rank 0 validates
    and writes files. channels_last everywhere; on CUDA also bf16 autocast.
    """
    from moa_core.model.loader import BalancedDistributedSampler, FieldDataset, as_source, field_loader

    train_src, val_src = as_source(x_train), as_source(x_val)
    if len(train_src) == 0 or len(val_src) == 0:
        raise ValueError(f"need training and validation fields, got {len(train_src)} and {len(val_src)}")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    rank, world = _dist()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not a multiple of the {world} processes")
    torch.manual_seed(config.seed + rank)
    gen = torch.Generator().manual_seed(config.seed + rank)
    device = config.resolved_device()
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    y_tr = np.asarray(y_train, dtype=np.int64)
    y_va = torch.tensor(np.asarray(y_val), dtype=torch.long)
    if channel_mean is None or channel_sd is None:
        channel_mean, channel_sd = train_src.channel_stats()
    mean, sd = torch.as_tensor(channel_mean).float(), torch.as_tensor(channel_sd).float()

    net = build_model(len(classes), in_channels=train_src.channels, dropout=config.dropout)
    if init_state is not None:
        net.load_state_dict(init_state)
    net = net.to(device).to(memory_format=torch.channels_last)
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(
            net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    elif config.optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}: use 'sgd' or 'adamw'")
    milestones = sorted({max(1, int(round(m * config.epochs))) for m in config.milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=config.gamma)

    n_per_epoch = config.samples_per_epoch or len(y_tr)
    sampler = BalancedDistributedSampler(y_tr, n_per_epoch, seed=config.seed, num_replicas=world, rank=rank)
    per_rank_batch = config.batch_size // world
    cuda = device.type == "cuda"
    train_loader = field_loader(
        FieldDataset(train_src, y_tr, input_size=config.input_size, crop_size=config.crop_size, train=True),
        batch_size=per_rank_batch,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=cuda,
    )
    val_loader = field_loader(
        FieldDataset(val_src, y_va.numpy(), input_size=config.input_size),
        batch_size=max(per_rank_batch, 32),
        num_workers=config.num_workers,
        pin_memory=cuda,
    )
    steps_per_epoch = len(train_loader)
    warmup_steps = config.warmup_epochs * steps_per_epoch
    selection = "well_balanced_accuracy" if val_groups is not None else "field_accuracy"

    best = {"acc": float("-inf"), "epoch": -1, "state": None}
    history: list[dict] = []
    t0 = time.time()
    step = 0
    start_epoch = 1
    fingerprint = _fingerprint(
        config, classes, train_src, y_tr, world, val_src, y_va.numpy(), val_groups, exclude_class
    )
    if init_state is not None:
        h = hashlib.sha256(fingerprint.encode())
        for k in sorted(init_state):
            h.update(init_state[k].detach().cpu().float().sum().numpy().tobytes())
        fingerprint = h.hexdigest()
    rpath = resume_path(checkpoint_path)
    if rpath.is_file():
        state = safe_load(rpath, expected_format=RESUME_FORMAT)
        if state["fingerprint"] != fingerprint:
            raise CheckpointError(
                f"{rpath} was written by a run with another config or other data; refusing to "
                f"mix them: delete it to start afresh"
            )
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.last_epoch = state["epoch"]
        gen.set_state(state["generators"][rank])
        torch.set_rng_state(state["torch_rngs"][rank])
        cuda_rng = state.get("cuda_rngs", [None] * world)[rank]
        if device.type == "cuda" and cuda_rng is not None and len(cuda_rng):
            torch.cuda.set_rng_state(cuda_rng, device)
        best, history, step = state["best"], state["history"], state["step"]
        start_epoch = state["epoch"] + 1
    resumed_from = start_epoch - 1

    for epoch in range(start_epoch, config.epochs + 1):
        model.train()
        sampler.set_epoch(epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        for b, (xb, yb) in enumerate(train_loader):
            if len(yb) < 2:  # BatchNorm needs >1 sample
                continue
            if step < warmup_steps:
                for g in opt.param_groups:
                    g["lr"] = config.lr * (step + 1) / warmup_steps
            x = _to_device(xb, mean, sd, device)
            if config.color_jitter > 0:
                x = _jitter(x, config.color_jitter, gen)
            yb = yb.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with autocast(device):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged at epoch {epoch} step {b} (loss={loss.item()})")
            loss.backward()
            if config.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip_norm)
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
        sched.step()
        if world > 1:  # train loss/accuracy over every rank's share
            import torch.distributed as dist

            t = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device)
            dist.all_reduce(t)
            loss_sum, correct, seen = float(t[0]), int(t[1]), int(t[2])
            gens = [None] * world
            dist.all_gather_object(gens, (gen.get_state(), torch.get_rng_state(), _cuda_rng(device)))
        else:
            gens = [(gen.get_state(), torch.get_rng_state(), _cuda_rng(device))]
        if rank == 0:
            probs = predict_probabilities(net, val_loader, mean, sd, device)
            val_acc = float((probs.argmax(1) == y_va).float().mean())
            rec = {
                "epoch": epoch,
                "train_loss": loss_sum / max(1, seen),
                "train_accuracy": correct / max(1, seen),
                "val_accuracy": val_acc,
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.time() - t0,
            }
            if val_groups is not None:
                rec["val_balanced_accuracy"] = well_balanced_accuracy(
                    probs.numpy(), y_va.numpy(), np.asarray(val_groups), exclude_class
                )
            score = rec.get("val_balanced_accuracy", val_acc)
            if not np.isfinite(score):  # e.g. no non-control validation well: fall back to field accuracy
                score = val_acc
            history.append(rec)
            if score > best["acc"] or best["state"] is None:
                best = {
                    "acc": score,
                    "epoch": epoch,
                    "state": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                }
            save_checkpoint_atomic(
                {
                    "format": RESUME_FORMAT,
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "step": step,
                    "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                    "optimizer": opt.state_dict(),
                    "generators": [g[0] for g in gens],
                    "torch_rngs": [g[1] for g in gens],
                    "cuda_rngs": [g[2] for g in gens],
                    "best": best,
                    "history": history,
                },
                rpath,
            )
            if on_epoch:
                on_epoch(rec)
        _barrier()

    result = TrainResult(
        Path(checkpoint_path), best["epoch"], best["acc"], history, time.time() - t0, list(classes), resumed_from, ""
    )
    if rank == 0:
        write_checkpoint(
            checkpoint_path,
            state_dict=best["state"],
            classes=classes,
            channel_mean=mean,
            channel_sd=sd,
            config=config.to_dict(),
            best_epoch=best["epoch"],
            best_val_accuracy=best["acc"],
            selection=selection,
            history=history,
            in_channels=int(train_src.channels),
            world_size=world,
            **(extra or {}),
        )
        rpath.unlink(missing_ok=True)
        result.sha256 = file_sha256(checkpoint_path)
    _barrier()
    return result


def load_checkpoint(
    path: str | os.PathLike, device: str = "cpu", expected_sha256: str | None = None
) -> tuple[torch.nn.Module, dict]:
    """Rebuild the trained model (eval mode) and return it with the checkpoint dict.

    Loaded with ``torch.load(weights_only=True)`` after checking ``expected_sha256`` (the
    hash recorded in the warehouse row): a file that is not ours, or was swapped, raises
    :class:`CheckpointError` and runs nothing.
    """
    ckpt = safe_load(path, expected_format=CHECKPOINT_FORMAT, expected_sha256=expected_sha256, map_location=device)
    model = build_model(len(ckpt["classes"]), in_channels=ckpt["in_channels"], dropout=ckpt["config"]["dropout"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model.to(device), ckpt


def content_addressed(path: str | os.PathLike, sha256: str) -> Path:
    """Rename a finished checkpoint to ``<stem>-<sha12><suffix>`` and return the new path.

    A warehouse row that records (path, hash) then always names a complete file with
    that hash: a crash between this rename and the row's update leaves the row pointing
    at the previous checkpoint, which is still there (see :func:`prune_checkpoints`).
    """
    p = Path(path)
    final = p.with_name(f"{p.stem}-{sha256[:12]}{p.suffix}")
    os.replace(p, final)
    return final


def prune_checkpoints(keep: str | os.PathLike) -> list[Path]:
    """Remove the other content-addressed checkpoints of the same stem once ``keep`` is recorded."""
    keep = Path(keep)
    stem = keep.stem.rsplit("-", 1)[0]
    gone = [p for p in keep.parent.glob(f"{stem}-*{keep.suffix}") if p != keep]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone
