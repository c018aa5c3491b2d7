"""Pheno-CA residual MLPs, IBP / task training, probes, invariance heads, k-NN baseline."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from moa_core.errors import MoaInputError
from moa_core.phenoca.models import Classifier, MLPHead, NuisanceHeads, ResidualBlock, ResidualMLP, param_count
from moa_core.phenoca.train import FitConfig, embed, fit_probe, knn_scores, train_encoder


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _molecules(n_mol: int = 40, reps: int = 8, d: int = 24, noise: float = 0.5, seed: int = 0):
    """Toy IBP data: each molecule a centroid, each well centroid + noise; replicates 0..5 train, 6..7 val."""
    rng = np.random.default_rng(seed)
    cent = rng.normal(size=(n_mol, d)).astype(np.float32)
    y = np.repeat(np.arange(n_mol), reps)
    X = (cent[y] + noise * rng.normal(size=(len(y), d))).astype(np.float32)
    r = np.tile(np.arange(reps), n_mol)
    tr, va = r < reps - 2, r >= reps - 2
    return X[tr], y[tr], X[va], y[va]


def _cfg(**kw) -> FitConfig:
    return FitConfig(**{"epochs": 25, "batch_size": 64, "patience": 25, "num_threads": 1, "device": "cpu", **kw})


# --------------------------------------------------------------------------- architecture


def test_residual_block_is_linear_bn_gelu_with_skip():
    torch.manual_seed(0)
    enc = ResidualMLP(10, 16, 3, dropout=0.3)
    assert isinstance(enc.input, nn.Linear) and (enc.input.in_features, enc.input.out_features) == (10, 16)
    assert len(enc.blocks) == 3
    for block in enc.blocks:
        assert isinstance(block, ResidualBlock)
        assert [type(m) for m in block.branch] == [nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Dropout]
    block = enc.blocks[1]
    # give BatchNorm non-trivial running stats and affine parameters
    with torch.no_grad():
        block.branch[1].running_mean.normal_()
        block.branch[1].running_var.uniform_(0.5, 2.0)
        block.branch[1].weight.normal_()
        block.branch[1].bias.normal_()
    block.eval()
    x = torch.randn(7, 16)
    lin, bn = block.branch[0], block.branch[1]
    h = x @ lin.weight.T + lin.bias
    h = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    expected = x + F.gelu(h)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    # the whole encoder is projection then the blocks in order
    enc.eval()
    z = torch.randn(5, 10)
    ref = enc.input(z)
    for b in enc.blocks:
        ref = ref + b.branch(ref)
    torch.testing.assert_close(enc(z), ref)
    assert enc(z).shape == (5, 16)


def test_param_counts_and_heads():
    enc = ResidualMLP(454, 256, 3)
    expected = (454 * 256 + 256) + 3 * (256 * 256 + 256 + 2 * 256)
    assert enc.param_count() == param_count(enc) == expected
    head = MLPHead(256, 7, hidden=32, layers=3)
    assert [type(m) for m in head.net] == [nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Dropout] * 2 + [nn.Linear]
    assert head.param_count() == (256 * 32 + 32 + 64) + (32 * 32 + 32 + 64) + (32 * 7 + 7)
    assert [type(m) for m in MLPHead(8, 3, layers=1).net] == [nn.Linear]
    clf = Classifier(enc, head)
    rep, logits = clf.eval().forward_features(torch.randn(4, 454))
    assert rep.shape == (4, 256) and logits.shape == (4, 7)
    nh = NuisanceHeads(256, {"source": 3, "batch": 5})
    out = nh(rep)
    assert {k: v.shape[1] for k, v in out.items()} == {"source": 3, "batch": 5}
    # detached-parameter path: same values, no gradient to the head weights
    r = rep.detach().requires_grad_(True)
    adv = nh(r, detach_params=True)
    torch.testing.assert_close(adv["batch"], nh(r)["batch"])
    adv["batch"].sum().backward()
    assert r.grad is not None and nh.heads["batch"].weight.grad is None


# --------------------------------------------------------------------------- training


def test_ibp_training_recovers_molecule_identity():
    Xtr, ytr, Xva, yva = _molecules()
    m = train_encoder(Xtr, ytr, Xva, yva, width=64, depth=2, config=_cfg())
    chance = 1 / 40
    assert m.best_val_accuracy > 0.8 > 10 * chance
    assert m.n_classes == 40 and m.encoder.width == 64
    assert len(m.history) == 25 and m.history[0]["val_loss"] > m.best_val_loss
    assert {"epoch", "train_loss", "val_loss", "val_accuracy", "steps", "seconds"} <= set(m.history[0])
    assert m.seconds > 0 and m.train_seconds > 0 and m.wells_per_second > 0
    assert m.param_count == param_count(m.model) and m.encoder_param_count == m.encoder.param_count()
    p = m.predict_proba(Xva)
    assert p.shape == (len(Xva), 40)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    assert (p.argmax(1) == yva).mean() == pytest.approx(m.best_val_accuracy)
    reps = embed(m, Xva)
    assert reps.shape == (len(Xva), 64) and reps.dtype == np.float32
    # an MLP head (the paper's 3-layer readout) trains too
    m3 = train_encoder(Xtr, ytr, Xva, yva, width=32, depth=1, config=_cfg(epochs=5), head_layers=3, head_hidden=32)
    assert isinstance(m3.model.head, MLPHead) and m3.model.head.layers == 3


def test_early_stopping_restores_best_validation_epoch_and_has_no_test_argument():
    for fn in (train_encoder, fit_probe):
        assert not [p for p in inspect.signature(fn).parameters if "test" in p.lower()]
    # weak signal, half the training labels shuffled, a big model: val loss falls then rises
    rng = np.random.default_rng(3)
    Xtr, ytr, Xva, yva = _molecules(n_mol=10, reps=12, d=16, noise=1.0, seed=3)
    ytr = ytr.copy()
    flip = rng.random(len(ytr)) < 0.5
    ytr[flip] = rng.integers(0, 10, flip.sum())
    cfg = _cfg(epochs=200, patience=6, lr=1e-3, batch_size=32)
    m = train_encoder(Xtr, ytr, Xva, yva, width=128, depth=2, config=cfg, dropout=0.0)
    losses = [h["val_loss"] for h in m.history]
    assert m.stopped == "patience"
    assert m.best_epoch == int(np.argmin(losses)) and 0 < m.best_epoch < len(losses) - 1
    assert len(losses) == m.best_epoch + cfg.patience + 1
    assert m.best_val_loss == pytest.approx(min(losses))
    # the returned weights are those of the best epoch, not the last one
    p = m.predict_proba(Xva)
    assert -np.log(p[np.arange(len(yva)), yva]).mean() == pytest.approx(m.best_val_loss, rel=1e-4)
    assert losses[-1] > m.best_val_loss
    # selection on validation accuracy
    ma = train_encoder(
        Xtr,
        ytr,
        Xva,
        yva,
        width=128,
        depth=2,
        config=_cfg(epochs=200, patience=6, lr=1e-3, batch_size=32, select="val_accuracy"),
    )
    accs = [h["val_accuracy"] for h in ma.history]
    assert ma.best_epoch == int(np.argmax(accs)) and ma.best_val_accuracy == max(accs)


def test_max_steps_budget():
    Xtr, ytr, Xva, yva = _molecules()
    m = train_encoder(Xtr, ytr, Xva, yva, width=16, depth=1, config=_cfg(max_steps=7))
    assert m.stopped == "max_steps" and sum(h["steps"] for h in m.history) == 7
    assert len(m.history) == 3  # 240 wells / 64 = 3 steps per epoch -> 3 + 3 + 1


def test_deterministic_per_seed():
    Xtr, ytr, Xva, yva = _molecules()

    def run(seed):
        return train_encoder(Xtr, ytr, Xva, yva, width=32, depth=2, config=_cfg(epochs=4, seed=seed))

    a, b, c = run(0), run(0), run(1)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    np.testing.assert_array_equal(embed(a, Xva), embed(b, Xva))


def test_probe_leaves_frozen_encoder_bit_for_bit_unchanged():
    Xtr, ytr, Xva, yva = _molecules()
    m = train_encoder(Xtr, ytr, Xva, yva, width=32, depth=2, config=_cfg(epochs=5))
    enc = m.encoder
    enc.train()  # a probe that embedded in train mode would move the BatchNorm running stats
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    assert any("running_mean" in k for k in before) and any("num_batches_tracked" in k for k in before)
    # probe a coarser task (molecule id mod 4) on the frozen representations
    probe = fit_probe(m, Xtr, ytr % 4, Xva, yva % 4, _cfg(epochs=30), hidden=32)
    after = enc.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(not p.requires_grad for p in enc.parameters()) and not enc.training
    assert probe.encoder is enc and probe.head.layers == 3 and probe.param_count == probe.head.param_count()
    assert probe.best_val_accuracy > 0.5  # chance 0.25
    proba = probe.predict_proba(Xva)
    assert proba.shape == (len(Xva), 4)
    assert (proba.argmax(1) == yva % 4).mean() == pytest.approx(probe.best_val_accuracy)
    assert len(probe.history) >= 1 and probe.wells_per_second > 0
    # raw-profile baseline: encoder=None
    raw = fit_probe(None, Xtr, ytr, Xva, yva, _cfg(epochs=10), hidden=64)
    assert raw.encoder is None and raw.best_val_accuracy > 0.5
    assert raw.predict_proba(Xva).shape == (len(Xva), 40)
    np.testing.assert_array_equal(embed(None, Xva), Xva)


def test_invariance_loss_reduces_nuisance_predictability():
    """A 4-level 'source' adds a large offset to every feature: with invariance_weight=0 the
    representation encodes it linearly; the uniform-target adversarial loss removes most of it
    (measured by the concurrently trained heads and by a fresh linear probe on held-out wells)."""
    rng = np.random.default_rng(1)
    k, s_levels, d, n = 10, 4, 32, 2000
    cent = rng.normal(size=(k, d)).astype(np.float32)
    off = 1.5 * rng.normal(size=(s_levels, d)).astype(np.float32)
    y, s = rng.integers(0, k, n), rng.integers(0, s_levels, n)
    X = (cent[y] + off[s] + 0.7 * rng.normal(size=(n, d))).astype(np.float32)
    tr, va, te = slice(0, 1200), slice(1200, 1600), slice(1600, 2000)
    cfg = _cfg(epochs=40, batch_size=128, patience=40)
    results = {}
    for w in (0.0, 1.0):
        m = train_encoder(
            X[tr],
            y[tr],
            X[va],
            y[va],
            width=64,
            depth=2,
            config=cfg,
            nuisances={"source": s[tr]},
            val_nuisances={"source": s[va]},
            invariance_weight=w,
        )
        fresh = fit_probe(m, X[va], s[va], X[te], s[te], _cfg(epochs=60, batch_size=128, patience=60), layers=1)
        results[w] = (m, m.history[-1]["val_nuisance_accuracy"]["source"], fresh.best_val_accuracy)
    (m0, head0, fresh0), (m1, head1, fresh1) = results[0.0], results[1.0]
    assert m0.best_val_accuracy > 0.9 and m1.best_val_accuracy > 0.9  # the task survives
    assert head0 > 0.9 and head1 < 0.6
    assert fresh0 > 0.9 and fresh1 < fresh0 - 0.1
    assert "train_invariance_loss" in m1.history[-1] and "train_invariance_loss" not in m0.history[-1]
    assert m1.nuisance_classes == {"source": 4}


def test_zero_invariance_weight_leaves_encoder_training_unchanged():
    Xtr, ytr, Xva, yva = _molecules()
    nuis = {"batch": np.arange(len(Xtr)) % 3}
    a = train_encoder(Xtr, ytr, Xva, yva, width=32, depth=2, config=_cfg(epochs=3))
    b = train_encoder(Xtr, ytr, Xva, yva, width=32, depth=2, config=_cfg(epochs=3), nuisances=nuis)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.nuisance_heads is not None and "train_nuisance_loss" in b.history[0]


def test_input_validation():
    Xtr, ytr, Xva, yva = _molecules()
    with pytest.raises(MoaInputError):
        train_encoder(Xtr[:, :5], ytr, Xva, yva, width=8, depth=1, config=_cfg(epochs=1))
    with pytest.raises(MoaInputError):
        train_encoder(Xtr, ytr[:-1], Xva, yva, width=8, depth=1, config=_cfg(epochs=1))
    bad = Xtr.copy()
    bad[3, 2] = np.nan
    with pytest.raises(MoaInputError):
        train_encoder(bad, ytr, Xva, yva, width=8, depth=1, config=_cfg(epochs=1))
    with pytest.raises(ValueError):
        train_encoder(Xtr, ytr, Xva, yva, width=8, depth=1, config=_cfg(epochs=1), invariance_weight=1.0)
    with pytest.raises(ValueError):
        FitConfig(select="test_accuracy")


# --------------------------------------------------------------------------- k-NN


def test_knn_scores_match_brute_force():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(120, 12)).astype(np.float32)
    lab = rng.choice(np.array([7, 2, 9, 4]), size=120)
    B = rng.normal(size=(30, 12)).astype(np.float32)
    classes = np.array([9, 2, 7, 4, 11])  # unsorted, with a class absent from training
    for k, weighted in ((1, False), (5, False), (7, True), (500, False)):
        got = knn_scores(A, lab, B, k=k, classes=classes, weighted=weighted, batch_size=8)
        kk = min(k, len(A))
        want = np.zeros((len(B), len(classes)))
        for i, b in enumerate(B):
            sims = [float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)) for a in A]
            for j in sorted(range(len(A)), key=lambda j: -sims[j])[:kk]:
                want[i, list(classes).index(lab[j])] += sims[j] if weighted else 1.0
        np.testing.assert_allclose(got, want / kk, rtol=1e-5, atol=1e-6)
    default = knn_scores(A, lab, B, k=5)
    assert default.shape == (30, 4)  # columns = sorted unique training labels
    np.testing.assert_allclose(default.sum(1), 1)
    with pytest.raises(MoaInputError):
        knn_scores(A, lab, B, k=3, classes=[2, 7])
