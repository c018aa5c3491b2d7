"""MP embeddings: field features -> well median -> per-plate DMSO standardization.

Wong et al. (2023), "Embedding extraction and analysis": every field goes through the
trained EfficientNet; the last convolutional block's output is average-pooled and
flattened (1280-d). Field embeddings of a well are aggregated by their median, and the
well embeddings are standardized per plate to the plate's DMSO wells (the same
standardization CP profiles get, :func:`moa_core.profiles.normalize.standardize_to_controls`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from moa_core.model.network import EMBEDDING_DIM, embed_and_logits

FEATURE_PREFIX = "MP_"


def embedding_columns(dim: int = EMBEDDING_DIM) -> list[str]:
    return [f"{FEATURE_PREFIX}{i:04d}" for i in range(dim)]


def dihedral_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations/flips of a ``(B, C, H, W)`` batch (the paper's training augmentations)."""
    views = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(2, 3))
        views += [r, torch.flip(r, dims=(3,))]
    return views


def embed_fields(
    model: torch.nn.Module,
    x,
    mean: torch.Tensor,
    sd: torch.Tensor,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    input_size: int | None = None,
    num_workers: int = 0,
    dihedral: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 1280)`` pooled features and ``(N, n_classes)`` softmax probabilities per field.

    ``x`` is a field source (:class:`~moa_core.model.loader.StoreFields` streaming from the
    image store with ``num_workers`` DataLoader workers, or an ``(N, C, H, W)`` tensor in
    [0, 1]); fields are resized to ``input_size`` when given. Batched, in inference mode;
    channels_last; bf16 autocast on CUDA. With ``dihedral`` both outputs are averaged
    over the 8 rotations/flips of each field (8x the compute), which makes them invariant
    to the field's orientation, as the training augmentations intend.
    """
    from moa_core.model.loader import FieldDataset, field_loader
    from moa_core.model.train import _to_device, autocast

    device = torch.device(device)
    model.eval()
    model = model.to(memory_format=torch.channels_last)
    loader = field_loader(
        FieldDataset(x, input_size=input_size),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    feats, probs = [], []
    with torch.inference_mode(), autocast(device):
        for xb, _ in loader:
            xb = _to_device(xb, mean, sd, device)
            views = dihedral_views(xb) if dihedral else [xb]
            fs, ps = zip(
                *[(f.float(), torch.softmax(lg.float(), 1)) for f, lg in (embed_and_logits(model, v) for v in views)]
            )
            feats.append(torch.stack(fs).mean(0).cpu().numpy())
            probs.append(torch.stack(ps).mean(0).cpu().numpy())
    return np.concatenate(feats), np.concatenate(probs)


def median_per_well(
    fields: pd.DataFrame, feats: np.ndarray, keys: tuple[str, ...] = ("Metadata_Plate", "Metadata_Well")
) -> pd.DataFrame:
    """Median of field embeddings per well; one row per well with :func:`embedding_columns`."""
    if len(fields) != len(feats):
        raise ValueError(f"{len(fields)} field rows but {len(feats)} embeddings")
    cols = embedding_columns(feats.shape[1])
    df = pd.DataFrame(feats, columns=cols)
    for k in keys:
        df[k] = fields[k].to_numpy()
    well = df.groupby(list(keys), sort=True)[cols].median().reset_index()
    n = fields.groupby(list(keys), sort=True).size().to_numpy()
    well.insert(len(keys), "Metadata_n_fields", n)
    return well
