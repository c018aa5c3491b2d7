import numpy as np
import pandas as pd
import pytest
import torch

from moa_core.model.embed import embed_fields, embedding_columns, median_per_well
from moa_core.model.fields import augment, channel_stats, load_field_tensors
from moa_core.model.network import EMBEDDING_DIM, build_model, embed_and_logits
from moa_core.model.train import TrainConfig, load_checkpoint, train_classifier


def test_five_channel_efficientnet_b0_gives_1280d_embeddings():
    m = build_model(7).eval()
    assert m.features[0][0].in_channels == 5
    with torch.no_grad():
        f, logits = embed_and_logits(m, torch.randn(2, 5, 64, 64))
    assert f.shape == (2, EMBEDDING_DIM) and logits.shape == (2, 7)
    n_params = sum(p.numel() for p in m.parameters())
    assert 3.9e6 < n_params < 4.2e6  # EfficientNet-B0 is ~4.0M parameters with a small head


def test_augment_is_rotation_flip_only_without_jitter():
    x = torch.arange(2 * 5 * 4 * 4, dtype=torch.float32).reshape(2, 5, 4, 4)
    y = augment(x, torch.Generator().manual_seed(0))
    assert torch.allclose(torch.sort(y.flatten(1))[0], torch.sort(x.flatten(1))[0])


def test_paper_config():
    c = TrainConfig.paper()
    assert (c.lr, c.momentum, c.weight_decay, c.dropout, c.batch_size, c.epochs) == (0.1, 0.9, 1e-4, 0.2, 56, 100)
    assert [int(m * c.epochs) for m in c.milestones] == [50, 75]


def test_training_learns_a_separable_task_and_checkpoints(tmp_path):
    """Two classes differing in DNA brightness: the classifier must beat chance on validation."""
    g = torch.Generator().manual_seed(0)
    def make(n):
        y = torch.arange(n) % 2
        x = torch.rand((n, 5, 32, 32), generator=g) * 0.2
        x[:, 0] += y[:, None, None].float() * 0.5
        return x.half(), y.numpy()
    x_tr, y_tr = make(64)
    x_va, y_va = make(32)
    cfg = TrainConfig(epochs=6, batch_size=16, lr=0.05, input_size=32, num_threads=2, samples_per_epoch=256)
    res = train_classifier(x_tr, y_tr, x_va, y_va, ["a", "b"], cfg, tmp_path / "c.pt")
    assert res.best_val_accuracy >= 0.75
    assert len(res.history) == 6 and res.checkpoint_path.is_file()
    model, ckpt = load_checkpoint(res.checkpoint_path)
    assert ckpt["classes"] == ["a", "b"] and ckpt["best_epoch"] == res.best_epoch
    feats, probs = embed_fields(model, x_va, ckpt["channel_mean"], ckpt["channel_sd"])
    assert feats.shape == (32, 1280) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert ((probs.argmax(1) == y_va).mean()) == pytest.approx(res.best_val_accuracy)


def test_median_per_well():
    fields = pd.DataFrame({"Metadata_Plate": ["P"] * 3 + ["Q"], "Metadata_Well": ["A01"] * 3 + ["A01"]})
    feats = np.array([[1.0, 5.0], [2.0, 6.0], [10.0, 7.0], [3.0, 3.0]])
    w = median_per_well(fields, feats)
    assert w[embedding_columns(2)].to_numpy().tolist() == [[2.0, 6.0], [3.0, 3.0]]
    assert w["Metadata_n_fields"].tolist() == [3, 1]


def test_field_tensors_from_load_data(mini_dataset):
    root, ld, _, spec = mini_dataset
    x = load_field_tensors(ld.head(4), root, 32)
    assert x.shape == (4, 5, 32, 32) and x.dtype == torch.float16
    assert float(x.max()) <= 1.0 and float(x.min()) >= 0.0
    mean, sd = channel_stats(x)
    assert mean.shape == (5,) and (sd > 0).all()
