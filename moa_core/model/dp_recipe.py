"""The DeepProfiler recipe, trained here ("DP recipe (trained here)"; not DeepProfiler's own weights).

DeepProfiler (Moshkov et al. 2024, "Learning representations for image-based profiling
of perturbations"; the MOAProfiler paper's comparison) learns single-cell features:

1. **single-cell crops** centred on each nucleus, from the segmentation behind the CP
   profiles (``Metadata_Nuclei_Location_Center_X/Y`` of the single-cell parquet), cut
   from the preprocessed image store at native resolution;
2. an **EfficientNet-B0 trained weakly supervised on compound identity** (every
   compound, DMSO included, is a class; the label of a cell is its well's compound);
3. **per-cell features** (the pooled 1280-d layer) **averaged per well**, then the same
   per-plate DMSO standardization as MP and CP.

Where this deliberately differs from DeepProfiler: its crops are padded with zeros past
the image border, ours are shifted inside the field (no synthetic black border to learn);
DeepProfiler's released Cell Painting CNN was trained on the JUMP-CP/LINCS collections
and is loaded from Keras weights, which cannot be downloaded here: a user-supplied
PyTorch state dict of the same 5-channel EfficientNet-B0 can be loaded instead
(:func:`load_pretrained_weights`, read with ``weights_only=True``), to embed without
training or to start training from.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from moa_core.errors import SchemaError

METHOD = "DP recipe (trained here)"
CENTRE_X, CENTRE_Y = "Metadata_Nuclei_Location_Center_X", "Metadata_Nuclei_Location_Center_Y"
KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def crop_window(cy: float, cx: float, size: int, height: int, width: int) -> tuple[int, int]:
    """Top-left corner of a ``size`` window centred on (cy, cx), shifted to lie inside the field."""
    y0 = int(round(cy - size / 2))
    x0 = int(round(cx - size / 2))
    return min(max(y0, 0), max(height - size, 0)), min(max(x0, 0), max(width - size, 0))


class CellCrops:
    """Single-cell crops as a field source (``len``, ``read``, ``fingerprint``, ``channel_stats``).

    ``cells``: one row per cell with ``Metadata_Plate/Well/Site`` and the nucleus centre.
    Each DataLoader worker opens the store itself and keeps its last few fields decoded
    (cells of one field are usually read together).
    """

    def __init__(self, store_path: str | os.PathLike, cells: pd.DataFrame, crop_size: int, cache_fields: int = 16):
        from moa_core.store import ImageStore

        missing = [c for c in KEYS + [CENTRE_X, CENTRE_Y] if c not in cells.columns]
        if missing:
            raise SchemaError(
                f"single-cell table lacks {missing}: re-materialize cp_profiles (it records nucleus "
                f"centres) before the DP recipe"
            )
        bad = ~np.isfinite(cells[[CENTRE_X, CENTRE_Y]].to_numpy(np.float64)).all(1)
        if bad.any():
            r = cells[bad].iloc[0]
            raise SchemaError(
                f"{int(bad.sum())} cell(s) without a finite nucleus centre, e.g. plate "
                f"{r['Metadata_Plate']} well {r['Metadata_Well']} site {r['Metadata_Site']}"
            )
        self.path = Path(store_path)
        store = ImageStore(self.path)
        located = store.locate(cells[KEYS])
        self.plates = located["Metadata_Plate"].astype(str).to_numpy()
        self.rows = located["store_row"].to_numpy()
        # nucleus centres are in the native pixels the CP segmentation saw; the store may be resampled
        scale = np.array([store.resolution / store.native_side(p) for p in self.plates], dtype=np.float64)
        self.cy = cells[CENTRE_Y].to_numpy(np.float64) * scale
        self.cx = cells[CENTRE_X].to_numpy(np.float64) * scale
        self.crop_size = int(crop_size)
        self.resolution = store.resolution
        self._channels = len(store.channels)
        self._cache_n = cache_fields
        self._store = None
        self._cache: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def channels(self) -> int:
        return self._channels

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_store": None, "_cache": OrderedDict()}

    def _field(self, plate: str, row: int) -> np.ndarray:
        from moa_core.store import ImageStore

        key = (plate, int(row))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self._store is None:
            self._store = ImageStore(self.path)
        arr = self._store.read(plate, row)
        self._cache[key] = arr
        if len(self._cache) > self._cache_n:
            self._cache.popitem(last=False)
        return arr

    def read(self, i: int) -> torch.Tensor:
        s, side = self.crop_size, self.resolution
        y0, x0 = crop_window(self.cy[i], self.cx[i], s, side, side)
        if side > 512:  # large fields: decode only the tiles under the crop
            from moa_core.store import ImageStore

            if self._store is None:
                self._store = ImageStore(self.path)
            crop = self._store.read(self.plates[i], self.rows[i], window=(y0, x0, min(s, side)))
        else:  # small fields: one chunk; neighbouring cells of the field hit the cache
            crop = self._field(self.plates[i], self.rows[i])[:, y0 : y0 + s, x0 : x0 + s]
        return torch.from_numpy(crop.astype(np.float32) / 65535.0)

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"cells:{self.crop_size}:{len(self)}".encode())
        h.update("\0".join(self.plates.tolist()).encode())
        h.update(self.rows.astype(np.int64).tobytes())
        h.update(np.round(self.cy, 2).tobytes() + np.round(self.cx, 2).tobytes())
        return h.hexdigest()

    def channel_stats(self, max_cells: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.arange(len(self))
        if len(idx) > max_cells:
            idx = np.sort(np.random.default_rng(0).choice(len(idx), max_cells, replace=False))
        x = torch.stack([self.read(int(i)) for i in idx])
        return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-6)


def cells_for_wells(single_cells: pd.DataFrame, wells: pd.DataFrame, *, min_cells_per_well: int = 1) -> pd.DataFrame:
    """The cells of ``wells`` (plate, well + their metadata), in field order; wells without cells are named."""
    cols = KEYS + [CENTRE_X, CENTRE_Y]
    cells = single_cells[cols].merge(wells, on=["Metadata_Plate", "Metadata_Well"], how="inner")
    return cells.sort_values(KEYS + [CENTRE_Y, CENTRE_X]).reset_index(drop=True)


def aggregate_cells(
    cells: pd.DataFrame, feats: np.ndarray, keys: tuple[str, ...] = ("Metadata_Plate", "Metadata_Well")
) -> pd.DataFrame:
    """Mean of single-cell features per well (DeepProfiler's aggregation), with ``Metadata_n_cells``."""
    from moa_core.model.embed import embedding_columns

    if len(cells) != len(feats):
        raise ValueError(f"{len(cells)} cells but {len(feats)} feature rows")
    cols = [c.replace("MP_", "DP_") for c in embedding_columns(feats.shape[1])]
    df = pd.DataFrame(feats, columns=cols)
    for k in keys:
        df[k] = cells[k].to_numpy()
    well = df.groupby(list(keys), sort=True)[cols].mean().reset_index()
    well.insert(len(keys), "Metadata_n_cells", cells.groupby(list(keys), sort=True).size().to_numpy())
    return well


def default_config():
    """The DP recipe's training defaults (:func:`moa_core.model.config.dp_recipe_config`)."""
    from moa_core.model.config import dp_recipe_config

    return dp_recipe_config()


def embed_cells_by_well(
    model: torch.nn.Module,
    store_path: str | os.PathLike,
    cells: pd.DataFrame,
    crop_size: int,
    mean: torch.Tensor,
    sd: torch.Tensor,
    *,
    input_size: int | None = None,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    chunk_cells: int = 20_000,
) -> pd.DataFrame:
    """Per-cell features averaged per well, embedded in chunks of whole wells (memory bounded by ``chunk_cells``)."""
    from moa_core.model.embed import embed_fields

    wells = cells[["Metadata_Plate", "Metadata_Well"]].astype(str).agg("/".join, axis=1).to_numpy()
    starts = np.flatnonzero(np.r_[True, wells[1:] != wells[:-1]])
    if len(np.unique(wells)) != len(starts):
        raise ValueError("cells must be grouped by well (sorted by plate, well)")
    bounds = list(starts) + [len(cells)]
    out, lo = [], 0
    while lo < len(cells):
        hi = next((b for b in bounds if b > lo and b - lo >= chunk_cells), len(cells))
        part = cells.iloc[lo:hi].reset_index(drop=True)
        feats, _ = embed_fields(
            model,
            CellCrops(store_path, part, crop_size),
            mean,
            sd,
            input_size=input_size,
            device=device,
            num_workers=num_workers,
        )
        out.append(aggregate_cells(part, feats))
        lo = hi
    return pd.concat(out, ignore_index=True)


def load_pretrained_weights(path: str | os.PathLike, num_classes: int | None = None, in_channels: int = 5):
    """A 5-channel EfficientNet-B0 initialized from a user's PyTorch state dict (``weights_only=True``).

    The file holds a ``state_dict`` of :func:`moa_core.model.network.build_model`'s network
    (or a dict with a ``state_dict`` key). The classifier head is kept only when its shape
    matches ``num_classes``; every other tensor must match exactly, or the error names the
    first mismatched key. Nothing in the file can execute code.
    """
    from moa_core.model.network import build_model
    from moa_core.model.train import CheckpointError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pretrained weights missing: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{p} is not a PyTorch state dict (loaded with weights_only=True, nothing was "
            f"executed): {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        ) from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
    head = "classifier.1.weight"
    n_out = num_classes or (int(state[head].shape[0]) if head in state else 1)
    with torch.random.fork_rng():  # a new head is initialized the same way every time (resume fingerprints)
        torch.manual_seed(0)
        model = build_model(n_out, in_channels=in_channels)
    own = model.state_dict()
    for k, v in own.items():
        if k.startswith("classifier.") and (k not in state or state[k].shape != v.shape):
            state[k] = v  # a new head for this task
        elif k not in state:
            raise CheckpointError(f"{p} lacks {k}: not a 5-channel EfficientNet-B0 of this project")
        elif state[k].shape != v.shape:
            raise CheckpointError(f"{p}: {k} has shape {tuple(state[k].shape)}, the network wants {tuple(v.shape)}")
    model.load_state_dict({k: state[k] for k in own})
    return model.eval()
