"""MOAProfiler's published checkpoints ("MP (paper weights)"): obtain, verify, load, and feed them as upstream did.

Wong et al. (2023) published their trained models in ``pfizer-opensource/moa-profiler`` as Git LFS
objects ``save_dir/<study>/multiclass_classification/<run>/models/model_best.dat``, each
``torch.save(model.state_dict())`` of efficientnet_pytorch's 5-channel EfficientNet-B0
(:mod:`moa_core.model.upstream` builds the network that computes the same thing). The known files, with
their SHA-256 and size, are the ``[paper_weights.<name>]`` tables of ``moa_core/catalogue.toml``.

**Obtaining a file.** :func:`download_checkpoint` streams a URL (the catalogue's GitHub LFS media URL
by default) to a temporary file beside the destination, checks size and SHA-256, then renames it; a
partial or wrong download leaves nothing behind. A file the user already has goes through
:func:`verify_checkpoint` (a Git LFS *pointer* — what a clone without ``git lfs`` holds — is named as
such). Files are read with ``torch.load(weights_only=True)``: never unpickled.

**Upstream's input** (``classification.py``'s ``JUMPMOADataset``/``LINCSClassificationDataset`` and
``classification_runner.py``), stated as facts, with how the project's own MP recipe differs:

- full 1080² fields (no resizing; the project's MP trains on fields area-downsampled to ``input_size``);
- each channel of each field scaled on its own: ``(x - min(x)) / (max(x) + 1e-6)`` (note: divided by the
  maximum, not the range); the project scales by the uint16 range for every field alike, so intensity
  differences between wells survive;
- then ``transforms.Normalize(mean, std)`` with the *dataset's* channel statistics, computed by
  ``dataset_generation.getChannelStats`` as the mean over fields of each field's mean and SD — of the
  fields scaled a second time by the same formula (the dataset had already scaled them);
  :func:`upstream_channel_stats` computes exactly that. Upstream's own values are pickles in Git LFS
  (``pickles/JUMP1/channel_stats_compounds_raw.pkl``, ``pickles/lincs/compressed_channel_stats_raw_corrected.pkl``),
  which the project does not unpickle: give their values in the catalogue entry, or let the asset compute
  them over the dataset's own fields by upstream's definition;
- channels in the order of the study's file numbers: JUMP1 (cpg0000) ch1..ch5 = Mito, AGP, RNA, ER, DNA;
  LINCS (cpg0004) = DNA, ER, RNA, AGP, Mito (the project's arrays are always DNA, ER, RNA, AGP, Mito);
- evaluation without augmentation; embeddings = the pooled 1280-d layer, aggregated per well and
  standardized per plate to DMSO (the project does the same for every method; upstream aggregated by
  the median, as the project does).
"""

from __future__ import annotations

import hashlib
import os
import tomllib
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moa_core.atomic import atomic_path
from moa_core.data.channels import CHANNELS
from moa_core.errors import MoaInputError, SchemaError
from moa_core.model.config import PaperWeightsConfig

METHOD = "MP (paper weights)"
#: The catalogue holding the known checkpoints (the same file as the dataset catalogue).
CATALOGUE = Path(__file__).resolve().parent.parent / "catalogue.toml"
#: Upstream's per-channel scaling adds this to the maximum.
SCALE_EPS = 1e-6
#: Channel order each study's checkpoints expect (upstream reads ch1..ch5 in file-number order).
STUDY_CHANNEL_ORDER: dict[str, tuple[str, ...]] = {
    "JUMP1": ("Mito", "AGP", "RNA", "ER", "DNA"),
    "lincs": ("DNA", "ER", "RNA", "AGP", "Mito"),
}
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


class CheckpointError(MoaInputError):
    """A checkpoint file is missing, a Git LFS pointer, truncated, or not the file its SHA-256 names."""


@dataclass(frozen=True)
class PaperCheckpoint:
    """One published checkpoint (a ``[paper_weights.<name>]`` table of the catalogue)."""

    name: str
    study: str
    run: str
    label_type: str
    sha256: str
    size: int
    url: str
    description: str = ""

    @property
    def channel_order(self) -> tuple[str, ...]:
        return STUDY_CHANNEL_ORDER[self.study]


def paper_checkpoints(path: str | os.PathLike = CATALOGUE) -> dict[str, PaperCheckpoint]:
    """The known published checkpoints, by name."""
    raw = tomllib.loads(Path(path).read_text()).get("paper_weights", {})
    out = {}
    for name, t in raw.items():
        try:
            ck = PaperCheckpoint(name=name, **t)
        except TypeError as exc:
            raise SchemaError(f"{path}: [paper_weights.{name}]: {exc}") from None
        if ck.study not in STUDY_CHANNEL_ORDER:
            raise SchemaError(f"{path}: [paper_weights.{name}]: study must be one of {sorted(STUDY_CHANNEL_ORDER)}")
        out[name] = ck
    return out


def paper_checkpoint(name: str) -> PaperCheckpoint:
    known = paper_checkpoints()
    if name not in known:
        raise SchemaError(f"unknown paper checkpoint {name!r}; known: {sorted(known)}")
    return known[name]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_checkpoint(path: str | os.PathLike, sha256: str, size: int | None = None) -> Path:
    """``path`` if it is the file ``sha256`` names, else a :class:`CheckpointError` saying what it is instead."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    with open(p, "rb") as f:
        head = f.read(len(_LFS_POINTER))
    if head == _LFS_POINTER:
        raise CheckpointError(
            f"checkpoint {p} is a Git LFS pointer ({p.stat().st_size} bytes), not the weights: run `git lfs pull` "
            f"in the clone, or download the file itself (python -m moa_core.model.pretrained download)"
        )
    if size is not None and p.stat().st_size != size:
        raise CheckpointError(f"checkpoint {p} has {p.stat().st_size:,} bytes, expected {size:,} (truncated?)")
    got = sha256_file(p)
    if got != sha256.lower():
        raise CheckpointError(f"checkpoint {p} has SHA-256 {got}, expected {sha256.lower()}: not that checkpoint")
    return p


def download_checkpoint(
    url: str, dest: str | os.PathLike, sha256: str, size: int | None = None, *, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` (temporary name, then rename), verified by size and SHA-256.

    An existing ``dest`` that verifies is kept without downloading. A failed, short or wrong download raises
    :class:`CheckpointError` and leaves ``dest`` as it was.
    """
    dest = Path(dest).expanduser()
    if dest.is_file():
        try:
            return verify_checkpoint(dest, sha256, size)
        except CheckpointError:
            pass  # replace it (atomically) with a verified download
    h, n = hashlib.sha256(), 0
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                while block := resp.read(1 << 20):
                    h.update(block)
                    n += len(block)
                    out.write(block)
        except OSError as exc:  # URLError, timeouts, connection resets, a short read
            raise CheckpointError(f"download of {url} failed after {n:,} bytes: {exc}") from None
        if size is not None and n != size:
            raise CheckpointError(f"download of {url} gave {n:,} bytes, expected {size:,}")
        if h.hexdigest() != sha256.lower():
            raise CheckpointError(f"download of {url} has SHA-256 {h.hexdigest()}, expected {sha256.lower()}")
    return dest


def load_paper_model(path: str | os.PathLike, sha256: str, size: int | None = None) -> nn.Module:
    """The verified checkpoint at ``path`` in :func:`moa_core.model.upstream.build_upstream_model`, eval mode."""
    from moa_core.model.upstream import load_upstream_state_dict

    p = verify_checkpoint(path, sha256, size)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a corrupt zip/pickle
        raise CheckpointError(f"checkpoint {p} cannot be read as a state dict: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {p} holds a {type(state).__name__}, not a state dict")
    return load_upstream_state_dict(state, source=str(p))


# ---- upstream's input ------------------------------------------------------------------------


def reorder_channels(x: np.ndarray | torch.Tensor, order: Sequence[str], from_order: Sequence[str] = CHANNELS):
    """``(..., C, H, W)`` fields from ``from_order`` (the project's) into ``order`` (a checkpoint's)."""
    if sorted(order) != sorted(from_order):
        raise SchemaError(f"channel order {list(order)} is not a permutation of {list(from_order)}")
    idx = [list(from_order).index(c) for c in order]
    return x[..., idx, :, :]


def upstream_scale(x: torch.Tensor) -> torch.Tensor:
    """Upstream's per-field, per-channel scaling ``(x - min) / (max + 1e-6)`` of ``(..., C, H, W)`` raw intensities."""
    x = x.float()
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    return (x - lo) / (hi + SCALE_EPS)


def upstream_input(
    raw: torch.Tensor, order: Sequence[str], mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """``(B, C, H, W)`` raw fields in the project's channel order -> the network's input as upstream builds it."""
    x = upstream_scale(reorder_channels(raw, order))
    m = torch.as_tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def upstream_channel_stats(fields: Iterable[torch.Tensor], order: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and SD by upstream's ``getChannelStats``: the mean over fields of each field's mean and SD.

    ``fields``: ``(C, H, W)`` raw fields in the project's channel order. As upstream, each field is scaled by
    :func:`upstream_scale` (its dataset's scaling) and then once more by the same formula before its
    statistics are taken; fields with a NaN statistic are skipped (upstream printed "invalid value").
    """
    means, sds = [], []
    for f in fields:
        y = upstream_scale(upstream_scale(reorder_channels(f, order))).double()
        m, s = y.mean(dim=(-2, -1)), y.std(dim=(-2, -1), unbiased=False)
        if torch.isfinite(m).all() and torch.isfinite(s).all():
            means.append(m.numpy())
            sds.append(s.numpy())
    if not means:
        raise MoaInputError("no field with finite channel statistics")
    return np.mean(means, axis=0), np.mean(sds, axis=0)


# ---- a dataset's checkpoint and its embeddings ------------------------------------------------------


@dataclass(frozen=True)
class ResolvedWeights:
    """What a :class:`~moa_core.model.config.PaperWeightsConfig` names: the file, its hash, its study."""

    path: Path
    sha256: str
    size: int | None
    study: str
    url: str
    name: str

    @property
    def channel_order(self) -> tuple[str, ...]:
        return STUDY_CHANNEL_ORDER[self.study]


def resolve_weights(cfg: PaperWeightsConfig, default_dir: str | os.PathLike | None = None) -> ResolvedWeights:
    """The file, SHA-256, size, study and URL of ``cfg``: a known checkpoint's from the catalogue unless
    ``cfg`` gives its own; the file defaults to ``<default_dir>/<checkpoint>.dat``."""
    known = paper_checkpoint(cfg.checkpoint) if cfg.checkpoint else None
    sha = (cfg.sha256 or (known.sha256 if known else "")).lower()
    study = cfg.study or (known.study if known else "")
    if study not in STUDY_CHANNEL_ORDER:
        raise SchemaError(f"paper weights: study must be one of {sorted(STUDY_CHANNEL_ORDER)}, got {study!r}")
    if known and cfg.sha256 and cfg.sha256.lower() != known.sha256:
        raise CheckpointError(
            f"paper weights: sha256 {cfg.sha256} differs from the published {known.name} checkpoint's {known.sha256}"
        )
    if cfg.path:
        path = Path(cfg.path).expanduser()
    elif default_dir is not None:
        path = Path(default_dir) / f"{cfg.checkpoint or sha[:16]}.dat"
    else:
        raise SchemaError("paper weights: no `path` for the checkpoint file")
    return ResolvedWeights(
        path=path,
        sha256=sha,
        size=cfg.size if cfg.size is not None else (known.size if known and not cfg.sha256 else None),
        study=study,
        url=cfg.url or (known.url if known else ""),
        name=cfg.checkpoint or path.name,
    )


def obtain_weights(w: ResolvedWeights, *, download: bool) -> Path:
    """The verified checkpoint file of ``w``: the file if it is there, else (``download``) fetched from its URL."""
    if w.path.is_file() or not download:
        if not w.path.is_file():
            how = (
                f"python -m moa_core.model.pretrained download {w.name} {w.path}"
                if w.name in paper_checkpoints()
                else f"download {w.url or 'the file'} to {w.path}"
            )
            raise CheckpointError(
                f"checkpoint {w.path} does not exist: {how}, or set the entry's paper_weights.download = true"
            )
        return verify_checkpoint(w.path, w.sha256, w.size)
    if not w.url:
        raise CheckpointError(f"checkpoint {w.path} does not exist and paper_weights has no url to download it from")
    return download_checkpoint(w.url, w.path, w.sha256, w.size)


def _raw_batches(source, rows: Sequence[int], batch_size: int) -> Iterable[torch.Tensor]:
    """``(B, C, H, W)`` raw 16-bit intensities (float32) of ``source``'s fields ``rows``, batch by batch.

    ``source.read(i)`` gives a field scaled to [0, 1] by 65535 (the image store's and TensorFields'
    convention): multiplied back, it is the raw uint16 field exactly (float32 holds every uint16).
    """
    for start in range(0, len(rows), batch_size):
        yield torch.stack([source.read(int(i)) for i in rows[start : start + batch_size]]) * 65535.0


def source_channel_stats(
    source, order: Sequence[str], *, max_fields: int = 512, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`upstream_channel_stats` over at most ``max_fields`` fields of ``source`` (a seeded sample);
    returns (mean, std, fields used)."""
    n = len(source)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_fields), replace=False))
    fields = (f for batch in _raw_batches(source, rows, 16) for f in batch)
    mean, std = upstream_channel_stats(fields, order)
    return mean, std, len(rows)


def embed_upstream(
    model: nn.Module,
    source,
    order: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 1280)`` pooled features and ``(N, classes)`` softmax probabilities of every field of ``source``,
    fed as upstream fed them (:func:`upstream_input`: per-field per-channel scaling, the checkpoint's
    channel ``order``, ``mean``/``std``), at the fields' own resolution (1080² from a native image store).

    ``source`` is a field source of :mod:`moa_core.model.loader` (fields in [0, 1] of the uint16 range).
    ``dtype="bfloat16"`` runs the network under bf16 autocast (CUDA); features are pooled in float32.
    """
    from moa_core.model.network import embed_and_logits

    device = torch.device(device)
    if dtype not in ("float32", "bfloat16"):
        raise SchemaError(f"paper weights: dtype must be float32 or bfloat16, got {dtype!r}")
    model = model.to(device).eval()
    feats, probs = [], []
    ctx = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if dtype == "bfloat16"
        else torch.autocast(device.type, enabled=False)
    )
    done = 0
    with torch.inference_mode(), ctx:
        for raw in _raw_batches(source, range(len(source)), batch_size):
            x = upstream_input(raw, order, mean, std).to(device)
            f, logits = embed_and_logits(model, x)
            feats.append(f.float().cpu().numpy())
            probs.append(torch.softmax(logits.float(), 1).cpu().numpy())
            done += len(raw)
            if progress:
                progress(done, len(source))
    if not feats:
        raise MoaInputError("no fields to embed")
    return np.concatenate(feats), np.concatenate(probs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m moa_core.model.pretrained list | download NAME DEST | verify NAME FILE``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m moa_core.model.pretrained", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the known published checkpoints")
    d = sub.add_parser("download", help="download a known checkpoint and verify it")
    d.add_argument("name")
    d.add_argument("dest")
    d.add_argument("--url", help="another URL for the same file (a mirror)")
    v = sub.add_parser("verify", help="check a file against a known checkpoint's SHA-256")
    v.add_argument("name")
    v.add_argument("file")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for ck in paper_checkpoints().values():
            print(f"{ck.name}\t{ck.study}\t{ck.label_type}\t{ck.size:,} bytes\tsha256 {ck.sha256}\n\t{ck.url}")
        return 0
    ck = paper_checkpoint(args.name)
    if args.cmd == "download":
        print(download_checkpoint(args.url or ck.url, args.dest, ck.sha256, ck.size))
    else:
        print(f"{verify_checkpoint(args.file, ck.sha256, ck.size)}: {ck.name} (sha256 {ck.sha256})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
