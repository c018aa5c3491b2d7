import numpy as np
import pandas as pd
import pytest
import torch

from moa_core.model.embed import embed_fields, embedding_columns, median_per_well
from moa_core.model.fields import channel_stats, load_field_tensors
from moa_core.model.loader import BalancedDistributedSampler, FieldDataset
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


def test_training_draws_are_rotation_flip_only_and_replay_from_their_seed():
    x = torch.arange(2 * 5 * 4 * 4, dtype=torch.float32).reshape(2, 5, 4, 4) / 200
    ds = FieldDataset(x, np.array([0, 1]), train=True)
    y, _ = ds[(1, 123)]
    assert torch.allclose(torch.sort(y.float().flatten())[0], torch.sort(x[1].half().float().flatten())[0])
    assert torch.equal(ds[(1, 123)][0], y)  # the draw's seed fixes its augmentation


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


def _task(n, seed=0, classes=3):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.rand((n, 5, 32, 32), generator=g) * 0.2
    x[:, 0] += y[:, None, None].float() * 0.3
    return x.half(), y.numpy()


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """A run killed after epoch 2 (its per-epoch state saved), trained again, ends equal to an uninterrupted run."""
    from moa_core.model.train import resume_path

    x_tr, y_tr = _task(48)
    x_va, y_va = _task(24, seed=1)
    cfg = TrainConfig(epochs=4, batch_size=12, lr=0.05, input_size=32, num_threads=2, milestones=(0.5,))
    ref = train_classifier(x_tr, y_tr, x_va, y_va, ["a", "b", "c"], cfg, tmp_path / "ref.pt")

    class Killed(Exception):
        pass

    def kill_after_2(rec):
        if rec["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        train_classifier(x_tr, y_tr, x_va, y_va, ["a", "b", "c"], cfg, tmp_path / "run.pt", on_epoch=kill_after_2)
    assert resume_path(tmp_path / "run.pt").is_file() and not (tmp_path / "run.pt").exists()
    res = train_classifier(x_tr, y_tr, x_va, y_va, ["a", "b", "c"], cfg, tmp_path / "run.pt")
    assert res.resumed_from_epoch == 2 and not resume_path(tmp_path / "run.pt").exists()
    a, b = load_checkpoint(ref.checkpoint_path)[1], load_checkpoint(res.checkpoint_path)[1]
    assert a["best_epoch"] == b["best_epoch"]
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_resume_with_another_config_refuses_to_mix(tmp_path):
    from moa_core.model.train import CheckpointError

    x_tr, y_tr = _task(24)
    cfg = TrainConfig(epochs=3, batch_size=12, lr=0.05, input_size=32, num_threads=2)

    def stop(rec):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(x_tr, y_tr, x_tr, y_tr, ["a", "b", "c"], cfg, tmp_path / "c.pt", on_epoch=stop)
    with pytest.raises(CheckpointError, match="another config or other data"):
        train_classifier(
            x_tr, y_tr, x_tr, y_tr, ["a", "b", "c"], TrainConfig(**{**cfg.__dict__, "lr": 0.01}), tmp_path / "c.pt"
        )


def test_checkpoints_load_weights_only_and_refuse_code_or_a_wrong_hash(tmp_path):
    import pickle

    from moa_core.model.train import CheckpointError

    x_tr, y_tr = _task(24)
    cfg = TrainConfig(epochs=1, batch_size=12, lr=0.05, input_size=32, num_threads=2)
    res = train_classifier(x_tr, y_tr, x_tr, y_tr, ["a", "b", "c"], cfg, tmp_path / "c.pt")
    load_checkpoint(res.checkpoint_path, expected_sha256=res.sha256)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "moa_profiler.efficientnet_b0.v1", "x": Payload()}, evil)
    with pytest.raises(CheckpointError, match="weights_only=True, nothing was executed"):
        load_checkpoint(evil)
    assert not marker.exists()
    evil.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="not a MOAProfiler checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not a moa_profiler.efficientnet_b0.v1 file"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="warehouse row records"):
        load_checkpoint(res.checkpoint_path, expected_sha256="0" * 64)


def test_well_balanced_accuracy_excludes_controls_and_averages_fields():
    from sklearn.metrics import balanced_accuracy_score

    from moa_core.model.train import well_balanced_accuracy

    # 3 classes, class 0 = DMSO; wells w1..w5 with 2 fields each
    probs = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.8, 0.1, 0.1],  # w1 DMSO, right
            [0.1, 0.8, 0.1],
            [0.1, 0.3, 0.6],  # w2 class 1: mean -> class 1
            [0.1, 0.2, 0.7],
            [0.2, 0.2, 0.6],  # w3 class 2, right
            [0.7, 0.2, 0.1],
            [0.6, 0.3, 0.1],  # w4 class 1, predicted DMSO
            [0.1, 0.1, 0.8],
            [0.1, 0.2, 0.7],
        ]
    )  # w5 class 2, right
    y = np.array([0, 0, 1, 1, 2, 2, 1, 1, 2, 2])
    g = np.array(["w1", "w1", "w2", "w2", "w3", "w3", "w4", "w4", "w5", "w5"])
    got = well_balanced_accuracy(probs, y, g, exclude_class=0)
    assert got == pytest.approx(balanced_accuracy_score([1, 2, 1, 2], [1, 2, 0, 2]))  # (0.5 + 1) / 2
    assert well_balanced_accuracy(probs, y, g) == pytest.approx(
        balanced_accuracy_score([0, 1, 2, 1, 2], [0, 1, 2, 0, 2])
    )


def test_random_crop_takes_native_pixels_and_training_accepts_crops_and_adamw(tmp_path):
    x = torch.arange(2 * 5 * 16 * 16, dtype=torch.float32).reshape(2, 5, 16, 16) / 4096
    ds = FieldDataset(x, np.array([0, 1]), crop_size=6, train=True)
    d4 = lambda t: [
        torch.flip(torch.rot90(t, k, dims=(1, 2)), dims=(2,)) if f else torch.rot90(t, k, dims=(1, 2))
        for k in range(4)
        for f in (False, True)
    ]
    for i in range(2):
        for seed in range(20):  # each crop is a contiguous window of its own sample (up to a dihedral view)
            c, _ = ds[(i, seed)]
            assert c.shape == (5, 6, 6)
            windows = [x[i, :, y0 : y0 + 6, x0 : x0 + 6].half() for y0 in range(11) for x0 in range(11)]
            assert any(torch.equal(v, w) for v in d4(c) for w in windows)
    assert FieldDataset(x, np.array([0, 1]), crop_size=16, train=True)[(0, 1)][0].shape == (5, 16, 16)
    assert FieldDataset(x, input_size=8)[0][0].shape == (5, 8, 8)  # area-resized for validation/embedding
    x_tr, y_tr = _task(24)
    cfg = TrainConfig(epochs=1, batch_size=12, lr=1e-3, optimizer="adamw", crop_size=16, input_size=32, num_threads=2)
    res = train_classifier(x_tr, y_tr, x_tr, y_tr, ["a", "b", "c"], cfg, tmp_path / "c.pt")
    assert res.checkpoint_path.is_file()
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        train_classifier(
            x_tr, y_tr, x_tr, y_tr, ["a", "b", "c"], TrainConfig(epochs=1, optimizer="lbfgs"), tmp_path / "d.pt"
        )


def test_training_draws_reach_all_8_dihedral_transforms():
    x = (torch.arange(2 * 2, dtype=torch.float32).reshape(1, 1, 2, 2).repeat(1, 5, 1, 1)) / 8
    ds = FieldDataset(x, np.array([0]), train=True)
    sampler = BalancedDistributedSampler(np.zeros(400, int), 400, seed=0)
    seen = {tuple(ds[(0, s)][0][0].float().flatten().tolist()) for _, s in sampler}
    d4 = set()
    for k in range(4):
        r = torch.rot90(x[0, 0].half().float(), k, dims=(0, 1))
        d4 |= {tuple(r.flatten().tolist()), tuple(torch.flip(r, dims=(1,)).flatten().tolist())}
    assert len(d4) == 8 and seen == d4


def test_class_balanced_sampler_gives_every_class_the_same_share():
    """Every class gets 1/K of an epoch's draws whatever the class sizes; ranks split one draw disjointly."""
    y = np.array([0] * 60 + [1] * 12 + [2] * 4)  # 15:3:1 imbalance
    s = BalancedDistributedSampler(y, 3000, seed=0)
    s.set_epoch(1)
    idx = np.array([i for i, _ in s])
    share = np.bincount(y[idx], minlength=3) / 3000
    assert np.allclose(share, 1 / 3, atol=0.03)  # ~3.5 binomial SDs
    s.set_epoch(2)
    assert not np.array_equal(idx, np.array([i for i, _ in s]))  # set_epoch reshuffles
    ranks = [BalancedDistributedSampler(y, 3001, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(1)
    a, b = (list(r) for r in ranks)
    assert len(a) == len(b) == 1501  # padded to a multiple of the world size, as DistributedSampler
    merged = [v for pair in zip(a, b) for v in pair]
    assert merged == list(zip(*(arr.tolist() for arr in ranks[0].global_draw())))


def test_dihedral_embedding_averages_the_8_views():
    from moa_core.model.embed import dihedral_views

    x = torch.arange(2 * 5 * 4 * 4, dtype=torch.float32).reshape(2, 5, 4, 4)
    views = dihedral_views(x)
    assert len({tuple(v[0, 0].flatten().tolist()) for v in views}) == 8  # 8 distinct transforms
    m = build_model(3).eval()
    xr = torch.rand((3, 5, 32, 32))
    mean, sd = torch.zeros(5), torch.ones(5)
    f, p = embed_fields(m, xr, mean, sd, dihedral=True)
    per_view = [embed_fields(m, v, mean, sd) for v in dihedral_views(xr)]
    np.testing.assert_allclose(f, np.mean([a for a, _ in per_view], axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p, np.mean([b for _, b in per_view], axis=0), rtol=1e-5, atol=1e-7)


class _CountingSource:
    """A disk-like field source (not TensorFields, so FieldDataset may cache it) that counts its reads."""

    def __init__(self, n: int, side: int = 16):
        g = torch.Generator().manual_seed(1)
        self.x = torch.rand(n, 5, side, side, generator=g)
        self.reads = 0

    def __len__(self) -> int:
        return len(self.x)

    channels = 5

    def read(self, i: int) -> torch.Tensor:
        self.reads += 1
        return self.x[int(i)].clone()


def test_field_cache_serves_the_same_items_and_reads_each_field_once():
    from moa_core.model.loader import BalancedDistributedSampler, FieldDataset

    labels = np.arange(12) % 3
    sampler = BalancedDistributedSampler(labels, 40, seed=2)
    cached_src, plain_src = _CountingSource(12), _CountingSource(12)
    cached = FieldDataset(cached_src, labels, input_size=8, crop_size=6, train=True)
    plain = FieldDataset(plain_src, labels, input_size=8, crop_size=6, train=True, cache_bytes=0)
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        for key in sampler:
            a, ya = cached[key]
            b, yb = plain[key]
            assert ya == yb and a.dtype == b.dtype == torch.float16 and torch.equal(a, b)
    assert cached_src.reads == len({k for e in (1, 2) for k in _draws(sampler, e)}) <= 12
    assert plain_src.reads == 80
    # a budget smaller than the fields: no cache, every draw reads
    small = _CountingSource(12)
    over = FieldDataset(small, labels, input_size=8, cache_bytes=100)
    for i in (0, 0, 1):
        over[i]
    assert small.reads == 3


def _draws(sampler, epoch: int) -> set[int]:
    sampler.set_epoch(epoch)
    return {i for i, _ in sampler}
