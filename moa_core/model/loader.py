"""Fields for the CNN through ``torch.utils.data``: sources, the dataset, the balanced sampler.

Two field sources with one interface (``len``, ``read(i)`` -> ``(C, H, W)`` float in
[0, 1], ``fingerprint()``):

- :class:`StoreFields`: fields in the preprocessed image store (:mod:`moa_core.store`),
  opened lazily in each DataLoader worker, so memory does not depend on the dataset's
  size and no TIFF is decoded during training;
- :class:`TensorFields`: an in-memory ``(N, C, H, W)`` tensor (notebooks, tests).

:class:`FieldDataset` turns a source into samples: the field resized to ``input_size``
(area) when its side differs, then, for training, a random ``crop_size`` window and one
of the 8 rotations/flips (the paper's augmentations). Every random choice of a draw
comes from the draw's own seed, which the sampler hands out with the index: the batches
are the same whatever the number of workers or processes, and a resumed run replays
exactly.

:class:`BalancedDistributedSampler` mirrors ``torch.utils.data.DistributedSampler``
(``num_replicas``, ``rank``, ``set_epoch``: every epoch reshuffles, every rank gets an
equal, disjoint share of one global draw) but draws the global epoch with class-balanced
probabilities and replacement, as the paper balances MOAs by duplicating minority
classes' images.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler


class TensorFields:
    """In-memory fields: ``(N, C, H, W)`` float tensor scaled to [0, 1]."""

    def __init__(self, x: torch.Tensor):
        if x.ndim != 4:
            raise ValueError(f"need an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    @property
    def channels(self) -> int:
        return int(self.x.shape[1])

    def read(self, i: int) -> torch.Tensor:
        return self.x[int(i)].float()

    def fingerprint(self) -> str:
        step = max(1, len(self.x) // 64)
        h = hashlib.sha256(str(tuple(self.x.shape)).encode())
        h.update(self.x[::step].float().sum(dim=(1, 2, 3)).numpy().round(3).tobytes())
        return h.hexdigest()

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        from moa_core.model.fields import channel_stats

        return channel_stats(self.x)


class StoreFields:
    """Fields of the image store: ``fields`` rows (plate, well, site) located in the store at ``path``."""

    def __init__(self, path: str | os.PathLike, fields: pd.DataFrame):
        from moa_core.store import ImageStore

        self.path = Path(path)
        store = ImageStore(self.path)
        located = store.locate(fields[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]])
        self.plates = located["Metadata_Plate"].astype(str).to_numpy()
        self.rows = located["store_row"].to_numpy()
        self.resolution = store.resolution
        self._channels = len(store.channels)
        self._plate_fps = {p: store.plate_attrs(p).get("fingerprint", "") for p in sorted(set(self.plates))}
        self._store = None  # opened lazily in each worker process

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def channels(self) -> int:
        return self._channels

    def __getstate__(self) -> dict:  # DataLoader workers re-open the store themselves
        return {**self.__dict__, "_store": None}

    def read(self, i: int) -> torch.Tensor:
        from moa_core.store import ImageStore

        if self._store is None:
            self._store = ImageStore(self.path)
        arr = self._store.read(self.plates[i], self.rows[i])
        return torch.from_numpy(arr.astype(np.float32) / 65535.0)

    def fingerprint(self) -> str:
        h = hashlib.sha256(repr(sorted(self._plate_fps.items())).encode())
        h.update("\0".join(self.plates.astype(str).tolist()).encode())
        h.update(self.rows.astype(np.int64).tobytes())
        return h.hexdigest()

    def channel_stats(self, max_fields: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        from moa_core.store import ImageStore, channel_statistics

        fields = pd.DataFrame({"Metadata_Plate": self.plates, "store_row": self.rows})
        store = ImageStore(self.path)
        idx = store.index().merge(fields, on=["Metadata_Plate", "store_row"])
        mean, sd = channel_statistics(store, idx, max_fields=max_fields)
        return torch.from_numpy(mean), torch.from_numpy(sd)


def as_source(x) -> TensorFields | StoreFields:
    return TensorFields(x) if isinstance(x, torch.Tensor) else x


def dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Rotation by ``k`` x 90° then (optionally) a horizontal flip of a ``(C, H, W)`` field."""
    r = torch.rot90(x, k, dims=(1, 2))
    return torch.flip(r, dims=(2,)) if flip else r


#: Default budget of :class:`FieldDataset`'s in-memory field cache (per process).
DEFAULT_CACHE_BYTES = 1 << 30


class FieldDataset(Dataset):
    """Samples ``(field, label)`` of a source; training draws are keyed ``(index, draw_seed)``.

    Items are float16 ``(C, S, S)`` tensors in [0, 1] (half the bytes of float32 through
    the worker queues; normalization happens on the device). ``S`` is ``crop_size`` for
    training draws with a crop, else ``input_size`` (or the source's side).

    Fields of a source that reads from disk (the image store, cell crops) are kept after their
    first read and resize, as float16, when all of them fit in ``cache_bytes`` (per process:
    each DataLoader worker holds its own); every later epoch then augments them from memory.
    The items are the same as without the cache (crops, rotations and flips are exact on
    float16), so only the time per epoch changes. ``cache_bytes=0`` turns it off.
    """

    def __init__(
        self,
        source,
        labels: np.ndarray | None = None,
        *,
        input_size: int | None = None,
        crop_size: int | None = None,
        train: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        self.source = as_source(source)
        self.labels = None if labels is None else torch.tensor(np.asarray(labels), dtype=torch.long)
        if self.labels is not None and len(self.labels) != len(self.source):
            raise ValueError(f"{len(self.source)} fields but {len(self.labels)} labels")
        self.input_size = input_size
        self.crop_size = crop_size
        self.train = train
        self.cache_bytes = 0 if isinstance(self.source, TensorFields) else int(cache_bytes)
        self._cache: dict[int, torch.Tensor] | None = None  # decided at the first read

    def __len__(self) -> int:
        return len(self.source)

    def _read(self, i: int) -> torch.Tensor:
        x = self.source.read(i)
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(x[None], size=(self.input_size, self.input_size), mode="area")[0]
        return x

    def _field(self, i: int) -> torch.Tensor:
        if self._cache is not None:
            hit = self._cache.get(i)
            if hit is not None:
                return hit
        x = self._read(i)
        if self._cache is None and self.cache_bytes > 0:  # the first read: does every field fit?
            self._cache = {} if x.numel() * 2 * len(self) <= self.cache_bytes else None
            if self._cache is None:
                self.cache_bytes = 0
        if self._cache is not None:
            x = x.to(torch.float16)
            self._cache[i] = x
        return x

    def __getstate__(self) -> dict:  # a worker process starts with an empty cache of its own
        return {**self.__dict__, "_cache": None}

    def __getitem__(self, key):
        if isinstance(key, (tuple, list)):
            i, draw_seed = int(key[0]), int(key[1])
        else:
            i, draw_seed = int(key), None
        x = self._field(i)
        if self.train and draw_seed is not None:
            rng = np.random.default_rng(draw_seed)
            k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
            c = self.crop_size
            if c and (c < x.shape[-1] or c < x.shape[-2]):
                y0 = int(rng.integers(0, x.shape[-2] - c + 1))
                x0 = int(rng.integers(0, x.shape[-1] - c + 1))
                x = x[:, y0 : y0 + c, x0 : x0 + c]
            x = dihedral(x, k, flip)
        y = int(self.labels[i]) if self.labels is not None else -1
        return x.contiguous().to(torch.float16), y


class BalancedDistributedSampler(Sampler):
    """Class-balanced draws with replacement, sharded over ranks; yields ``(index, draw_seed)``.

    Per epoch (:meth:`set_epoch`), ``num_samples`` indices are drawn with probability
    ``1 / count(class)`` from a generator seeded by ``(seed, epoch)``: every class gets the
    same expected share. Rank ``r`` of ``num_replicas`` takes draws ``r, r + R, ...`` of
    the global draw (padded by wrapping to a multiple of ``R``, as DistributedSampler
    pads). Each draw carries a seed for its augmentations.
    """

    def __init__(
        self, labels: np.ndarray, num_samples: int | None = None, *, seed: int = 0, num_replicas: int = 1, rank: int = 0
    ):
        self.labels = np.asarray(labels)
        counts = np.bincount(self.labels)
        w = 1.0 / np.maximum(counts, 1)
        p = w[self.labels]
        self.p = p / p.sum()
        self.num_samples = int(num_samples or len(self.labels))
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.epoch = 0
        self.total = int(np.ceil(self.num_samples / num_replicas)) * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_draw(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        idx = rng.choice(len(self.labels), size=self.num_samples, replace=True, p=self.p)
        seeds = rng.integers(0, 2**62, size=self.num_samples, dtype=np.int64)
        pad = self.total - self.num_samples
        if pad:
            idx, seeds = np.concatenate([idx, idx[:pad]]), np.concatenate([seeds, seeds[:pad]])
        return idx, seeds

    def __iter__(self):
        idx, seeds = self.global_draw()
        sl = slice(self.rank, self.total, self.num_replicas)
        return iter(zip(idx[sl].tolist(), seeds[sl].tolist()))

    def __len__(self) -> int:
        return self.total // self.num_replicas


def field_loader(
    dataset: FieldDataset,
    *,
    batch_size: int,
    sampler: Sampler | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader over ``dataset`` (sequential without a sampler); workers persist across epochs.

    The loader gets its own generator: creating its iterators never consumes the global
    torch RNG (dropout's), so a resumed run replays the uninterrupted one exactly. In a daemonic process
    (a Celery prefork pool process), which may not start children, batches load in this process.
    """
    from moa_core.processes import usable_processes

    num_workers = usable_processes(num_workers, serial=0)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        drop_last=False,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(0),
    )
