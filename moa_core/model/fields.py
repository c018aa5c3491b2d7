"""Field tensors in memory: read from load_data, scale, resize (notebooks, tests, the decode bench).

Preprocessing (Wong et al. 2023, "Data preprocessing and model training"): each image
is scaled to [0, 1] (divided by the uint16 range) and standardized to mean 0 / SD 1 per
channel. We standardize with the *training set's* per-channel mean and SD so that
absolute intensity differences between wells (a real phenotype) survive; per-image
standardization would erase them. Fields are area-downsampled to ``input_size``
(a CPU-budget knob; the paper fed 1080² fields to four A100s). Training and
embedding stream fields from the preprocessed image store instead
(:mod:`moa_core.store`, :mod:`moa_core.model.loader`, where the augmentations live).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from moa_core.data.image_io import CHANNELS
from moa_core.data.load_data import read_field_from_row


def load_field_tensors(
    load_data: pd.DataFrame,
    root: str | Path | None,
    input_size: int,
    *,
    expected_shape: tuple[int, int] | None = None,
    n_threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """``(N, 5, input_size, input_size)`` float16 tensor of fields scaled to [0, 1]."""
    rows = load_data.to_dict("records")
    out = torch.empty((len(rows), len(CHANNELS), input_size, input_size), dtype=torch.float16)

    def one(i: int) -> int:
        arr = read_field_from_row(rows[i], CHANNELS, root, expected_shape=expected_shape)
        t = torch.from_numpy(arr.astype(np.float32) / 65535.0)[None]
        if t.shape[-1] != input_size or t.shape[-2] != input_size:
            t = F.interpolate(t, size=(input_size, input_size), mode="area")
        out[i] = t[0].to(torch.float16)
        return i

    with ThreadPoolExecutor(n_threads) as pool:
        for k, _ in enumerate(pool.map(one, range(len(rows))), 1):
            if progress and (k % 200 == 0 or k == len(rows)):
                progress(k, len(rows))
    return out


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and SD over a field tensor (the training set's)."""
    xf = x.float()
    mean = xf.mean(dim=(0, 2, 3))
    sd = xf.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return mean, sd
