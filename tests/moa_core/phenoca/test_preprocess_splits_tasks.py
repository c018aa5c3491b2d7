"""Pheno-CA preprocessing (training wells only), leak-free splits and data scale, task metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from moa_core.errors import MoaInputError, NormalizationError, SchemaError
from moa_core.phenoca.preprocess import fit_preprocessor, validate_profiles
from moa_core.phenoca.splits import (
    LABELS,
    SCALE_KEYS,
    PhenoSplit,
    novel_compound_split,
    parse_scale,
    perturbation_kinds,
    replicate_split,
    scale_training,
)
from moa_core.phenoca.synthetic import SyntheticProfileSpec, generate_profiles
from moa_core.phenoca.tasks import (
    aggregate_by,
    brute_force_discovery_ranks,
    compound_discovery,
    deconvolution_metrics,
    frequent_class_chance,
    molecule_metrics,
    summarize_discovery,
    topk_accuracy,
)
from moa_core.profiles.normalize import standardize_to_controls

SPEC = SyntheticProfileSpec(
    n_annotated_compounds=150,
    n_ood_compounds=100,
    n_moas=45,
    n_targets=30,
    n_crispr_genes=10,
    n_novel_moas=10,
    n_features=30,
    replicates_min=2,
    replicates_max=5,
    n_sources=1,
    batches_per_source=2,
    wells_per_plate=96,
    dmso_per_plate=8,
    seed=11,
)


@pytest.fixture(scope="module")
def ds():
    return generate_profiles(SPEC)


@pytest.fixture(scope="module")
def prof(ds):
    return ds.profiles


def _by_compound(df: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    return pd.crosstab(df["Metadata_JCP2022"], labels)


# ---------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------


def test_replicate_split_is_leak_free(prof):
    sp = replicate_split(prof, seed=1)
    lab = sp.labels
    assert isinstance(sp, PhenoSplit) and lab.index.equals(prof.index)
    assert set(lab.unique()) <= set(LABELS)
    kinds = perturbation_kinds(prof)
    assert (lab[kinds == "crispr"] == "excluded").all()
    assert (lab[np.isin(kinds, ["ood", "negcon"])] == "train").all()
    assert (lab[kinds != "crispr"] != "excluded").all()
    ann = prof[kinds == "annotated"]
    tab = _by_compound(ann, lab[kinds == "annotated"]).reindex(columns=list(LABELS), fill_value=0)
    n = tab.sum(axis=1)
    held = tab["test"] + tab["val"]
    assert (held[n < 3] == 0).all() and (n < 3).any()  # 2-replicate compounds train only
    assert (tab.loc[n >= 3, "test"] >= 1).all()  # every eligible compound is tested
    assert (tab.loc[held > 0, "train"] >= 2).all()  # and keeps >= 2 training replicates
    share = tab.loc[n >= 3, "test"].sum() / n[n >= 3].sum()
    assert 0.15 < share < 0.4
    # deterministic, and a function of well identity, not of row order
    again = replicate_split(prof.sample(frac=1.0, random_state=3), seed=1).labels
    assert again.reindex(prof.index).equals(lab)
    assert not replicate_split(prof, seed=2).labels.equals(lab)


@pytest.mark.parametrize("shares", [(0.2, 0.1, 0), (0.5, 0.3, 1), (0.5, 0.3, 2)])
def test_novel_compound_split_is_leak_free(prof, shares):
    test_share, val_share, seed = shares
    sp = novel_compound_split(prof, test_share=test_share, val_share=val_share, seed=seed)
    lab = sp.labels
    kinds = perturbation_kinds(prof)
    assert (lab[kinds == "crispr"] == "excluded").all()
    assert (lab[np.isin(kinds, ["ood", "negcon"])] == "train").all()
    tab = _by_compound(prof, lab).reindex(columns=list(LABELS), fill_value=0)
    test_c = tab.index[tab["test"] > 0]
    val_c = tab.index[tab["val"] > 0]
    assert len(test_c) == sp.summary["n_test_compounds"] > 0 and len(val_c) > 0
    # no test compound has any well in train or val; same for val compounds
    assert (tab.loc[test_c, ["train", "val", "excluded"]].to_numpy() == 0).all()
    assert (tab.loc[val_c, ["train", "test", "excluded"]].to_numpy() == 0).all()
    # every tested MoA keeps >= 1 training compound; single-compound MoAs are never tested
    ann = prof[kinds == "annotated"]
    moa = ann.groupby("Metadata_JCP2022")["Metadata_moa"].first()
    train_c = set(tab.index[tab["train"] > 0])
    train_moas = {moa[c] for c in moa.index if c in train_c}
    assert {moa[c] for c in test_c} <= train_moas
    assert {moa[c] for c in val_c} <= train_moas
    sizes = moa.value_counts()
    singles = set(sizes.index[sizes == 1])
    assert sp.summary["n_untestable_classes"] == len(singles) > 0
    assert set(sp.summary["untestable_classes"]) == singles
    assert not ({moa[c] for c in test_c} & singles)
    assert sp.summary["n_test_compounds"] == min(round(test_share * len(moa)), int((sizes - 1)[sizes >= 2].sum()))
    # min_class_compounds=3: classes with < 3 compounds are untestable too
    sp3 = novel_compound_split(prof, seed=0, min_class_compounds=3)
    t3 = _by_compound(prof, sp3.labels).reindex(columns=list(LABELS), fill_value=0)
    assert (sizes[[moa[c] for c in t3.index[t3["test"] > 0]]] >= 3).all()
    assert sp3.summary["n_untestable_classes"] == int((sizes < 3).sum())


@pytest.mark.parametrize("which", ["replicate", "novel"])
def test_scale_training_is_nested_and_never_touches_held_out(prof, which):
    base = replicate_split(prof, seed=0) if which == "replicate" else novel_compound_split(prof, seed=0)
    kinds = perturbation_kinds(prof)
    held = base.labels.isin(["val", "test"])
    prev = None
    for rep in (1.0, 0.75, 0.5, 0.25, 0.1):
        sc = scale_training(prof, base, replicate_share=rep, seed=4)
        lab = sc.labels
        assert lab[held].equals(base.labels[held])  # val/test untouched
        assert not (lab[~held].isin(["val", "test"])).any()  # nothing becomes held out
        assert (lab[kinds == "crispr"] == "excluded").all()
        assert (lab[kinds == "negcon"] == "train").all()  # DMSO kept
        train = set(np.flatnonzero(lab == "train"))
        assert train <= set(np.flatnonzero(base.labels == "train"))
        if prev is not None:
            assert train <= prev  # nested
        prev = train
        # every training compound keeps >= 1 training well, about rep of them
        cmp_rows = np.isin(kinds, ["annotated", "ood"]) & (base.labels == "train").to_numpy()
        before = prof.loc[cmp_rows].groupby("Metadata_JCP2022").size()
        after = prof.loc[cmp_rows & (lab == "train").to_numpy()].groupby("Metadata_JCP2022").size()
        after = after.reindex(before.index, fill_value=0)
        assert (after >= 1).all()
        assert (after == np.maximum(1, np.floor(rep * before + 0.5 + 1e-9))).all()
    ood_c = np.unique(prof.loc[kinds == "ood", "Metadata_JCP2022"])
    prev_c = None
    for share in (1.0, 0.5, 0.25, 0.1, 0.0):
        lab = scale_training(prof, base.labels, ood_share=share, seed=4)
        assert isinstance(lab, pd.Series)
        kept = set(prof.loc[(kinds == "ood") & (lab == "train").to_numpy(), "Metadata_JCP2022"])
        assert len(kept) == math.floor(share * len(ood_c) + 0.5)
        if prev_c is not None:
            assert kept <= prev_c
        prev_c = kept
        assert lab[held].equals(base.labels[held])
    assert prev_c == set()


def test_parse_scale():
    assert SCALE_KEYS == ("100", "75", "50", "25", "10", "ood0", "ood1", "ood3", "ood10", "ood25", "ood30", "ood50")
    assert parse_scale("ood1") == (0.01, 1.0) and parse_scale("ood30") == (0.3, 1.0)  # the release's two decades
    assert parse_scale("100") == (1.0, 1.0) == parse_scale("ood100")
    assert parse_scale("25") == (1.0, 0.25) and parse_scale("10") == (1.0, 0.1)
    assert parse_scale("ood0") == (0.0, 1.0) and parse_scale("ood25") == (0.25, 1.0)
    for bad in ("ood7x", "", "rep", "101", "ood", None):
        with pytest.raises(SchemaError, match="valid keys: 100, 75, 50, 25, 10, ood0"):
            parse_scale(bad)


def test_split_input_errors(prof):
    with pytest.raises(SchemaError, match="Metadata_pert_type"):
        replicate_split(prof.drop(columns=["Metadata_pert_type"]))
    bad = prof.copy()
    bad.loc[bad.index[0], "Metadata_pert_type"] = "orf"
    with pytest.raises(SchemaError, match="orf"):
        novel_compound_split(bad)
    with pytest.raises(SchemaError, match="test_share"):
        replicate_split(prof, test_share=0.7, val_share=0.4)


# ---------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------


def test_validate_profiles_errors_name_the_column(ds):
    df = ds.profiles
    assert validate_profiles(df) == ds.feature_cols
    for col in ("Metadata_JCP2022", "Metadata_Plate"):
        with pytest.raises(SchemaError, match=col):
            validate_profiles(df.drop(columns=[col]))
    with pytest.raises(SchemaError, match="no feature column"):
        validate_profiles(df[[c for c in df.columns if c.startswith("Metadata_")]])
    feat = ds.feature_cols[3]
    for val in (np.nan, np.inf):
        bad = df.copy()
        bad.loc[bad.index[17], feat] = val
        plate, well = bad.loc[bad.index[17], ["Metadata_Plate", "Metadata_Well"]]
        with pytest.raises(SchemaError, match=rf"{feat}.*{plate}.*{well}"):
            validate_profiles(bad)


@pytest.mark.parametrize("method", ["robust", "dmso"])
def test_preprocessor_uses_training_wells_only(ds, method):
    df = ds.profiles
    feats = ds.feature_cols
    train = replicate_split(df, seed=0).mask("train")
    pre = fit_preprocessor(df, feats, train, method=method, pca_components=10)
    out = pre.transform(df)
    assert out.dtype == np.float32 and out.shape == (len(df), 10)
    assert pre.pca.n_samples_ == int(train.sum()) == pre.n_fit_wells
    # perturb held-out wells (one per plate, wildly): the transform of every other well is unchanged
    rng = np.random.default_rng(0)
    held = np.flatnonzero(~train)
    per_plate = pd.Series(held).groupby(df["Metadata_Plate"].to_numpy()[held]).first().to_numpy()
    bad = df.copy()
    noise = rng.normal(1e4, 1e3, (len(per_plate), len(feats))).astype(np.float32)
    bad.iloc[per_plate, [bad.columns.get_loc(f) for f in feats]] = noise
    pre2 = fit_preprocessor(bad, feats, train, method=method, pca_components=10)
    out2 = pre2.transform(bad)
    others = np.setdiff1d(np.arange(len(df)), per_plate)
    np.testing.assert_array_equal(out2[others], out[others])
    assert not np.allclose(out2[per_plate], out[per_plate])
    # ...whereas perturbing a *training* well does change the others (the test can fail)
    tr = np.flatnonzero(train)[:3]
    bad2 = df.copy()
    bad2.iloc[tr, [bad2.columns.get_loc(f) for f in feats]] = 1e4
    out3 = fit_preprocessor(bad2, feats, train, method=method, pca_components=10).transform(bad2)
    assert not np.array_equal(out3[others[~np.isin(others, tr)]], out[others[~np.isin(others, tr)]])


def test_robust_scaling_definition_and_whitening(ds):
    df, feats = ds.profiles, ds.feature_cols
    train = novel_compound_split(df, seed=0).mask("train")
    pre = fit_preprocessor(df, feats, train, method="robust", clip=5.0, eps=0.01)
    z = pre.scale_plates(df)
    exp = np.empty_like(z)
    x = df[feats].astype(np.float64)
    for _plate, idx in df.groupby("Metadata_Plate").indices.items():
        t = x.iloc[idx[train[idx]]]
        med, iqr = t.median(), t.quantile(0.75) - t.quantile(0.25)
        exp[idx] = ((x.iloc[idx] - med) / (iqr + 0.01)).to_numpy()
    np.testing.assert_allclose(z, np.clip(exp, -5, 5), rtol=1e-9, atol=1e-9)
    assert np.abs(z).max() == pytest.approx(5.0)
    w = pre.transform(df)[train].astype(np.float64)
    assert pre.pca.n_components_ == len(feats)
    np.testing.assert_allclose(np.cov(w, rowvar=False), np.eye(len(feats)), atol=1e-3)
    # unseen plate: 'robust' refuses and names it
    last = df["Metadata_Plate"].iloc[-1]
    only_train_elsewhere = train & (df["Metadata_Plate"] != last).to_numpy()
    with pytest.raises(NormalizationError, match=str(last)):
        fit_preprocessor(df, feats, only_train_elsewhere)
    pre_sub = fit_preprocessor(
        df[df["Metadata_Plate"] != last], feats, train[(df["Metadata_Plate"] != last).to_numpy()]
    )
    with pytest.raises(NormalizationError, match=str(last)):
        pre_sub.transform(df)
    with pytest.raises(SchemaError, match="boolean"):
        fit_preprocessor(df, feats, np.where(train, "train", "test"))


def test_dmso_method_matches_project_standardization(ds):
    df, feats = ds.profiles, ds.feature_cols
    train = replicate_split(df, seed=0).mask("train")
    dmso = (df["Metadata_pert_type"] == "negcon").to_numpy()
    pre = fit_preprocessor(df, feats, train, method="dmso", clip=None, whiten=False)
    ref, dropped = standardize_to_controls(df, feats, control_mask=dmso & train)
    assert dropped == []
    np.testing.assert_allclose(pre.transform(df), ref[feats].to_numpy(), rtol=1e-5, atol=1e-5)
    # an unseen plate is standardized to its own DMSO wells
    last = df["Metadata_Plate"].iloc[-1]
    keep = (df["Metadata_Plate"] != last).to_numpy()
    pre_sub = fit_preprocessor(df[keep], feats, train[keep], method="dmso", clip=None, whiten=False)
    out = pre_sub.transform(df)
    assert pre_sub.last_unseen_plates == [last]
    np.testing.assert_allclose(out[~keep], ref[feats].to_numpy()[~keep], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------


def _brute_topk(scores: np.ndarray, y: np.ndarray, k: int) -> float:
    hits = 0
    for i in range(len(y)):
        order = sorted(range(scores.shape[1]), key=lambda c: (-scores[i, c], c))
        hits += int(y[i] in order[:k])
    return hits / len(y)


def test_topk_accuracy_matches_brute_force():
    rng = np.random.default_rng(0)
    for scores in (rng.normal(size=(200, 15)), rng.integers(0, 4, size=(200, 15)).astype(float)):  # with ties
        y = rng.integers(0, 15, 200)
        for k in (1, 2, 5, 10, 15):
            assert topk_accuracy(scores, y, k) == pytest.approx(_brute_topk(scores, y, k), abs=1e-12)
    with pytest.raises(MoaInputError):
        topk_accuracy(scores, y.astype(float), 1)


def test_chance_rule_on_imbalanced_toy_case():
    # column order differs from frequency order, so a positional guess would be wrong
    classes = ["c", "e", "a", "d", "b"]
    train = ["a"] * 10 + ["b"] * 5 + ["d"] * 2 + ["c"] * 2 + ["e"]
    test = ["c", "c", "c", "d", "a"]
    assert frequent_class_chance(test, train, classes, 1) == pytest.approx(1 / 5)  # guesses {a}
    assert frequent_class_chance(test, train, classes, 2) == pytest.approx(1 / 5)  # {a, b}
    assert frequent_class_chance(test, train, classes, 3) == pytest.approx(4 / 5)  # {a, b, c}: c before d (tie)
    assert frequent_class_chance(test, train, classes, 4) == pytest.approx(1.0)
    scores = np.zeros((5, 5))
    scores[np.arange(5), [classes.index(c) for c in ["c", "a", "c", "d", "b"]]] = 1.0  # right on wells 0, 2, 3
    res = deconvolution_metrics(scores, test, classes, train, ks=(1, 3), n_boot=300, seed=1)
    top = res[res.metric == "top_k_accuracy"].set_index("k")
    assert top.loc[1, "value"] == pytest.approx(3 / 5) and top.loc[1, "chance"] == pytest.approx(1 / 5)
    assert top.loc[3, "chance"] == pytest.approx(4 / 5)
    assert top.loc[1, "ci_low"] <= top.loc[1, "value"] <= top.loc[1, "ci_high"]
    assert 0.0 <= top.loc[1, "ci_low"] < top.loc[1, "ci_high"] <= 1.0
    uni = res[res.metric == "chance_uniform"].set_index("k")
    assert uni.loc[1, "value"] == pytest.approx(1 / 5) and uni.loc[3, "value"] == pytest.approx(3 / 5)
    freq = res[res.metric == "chance_frequent"].set_index("k")
    assert freq.loc[3, "value"] == pytest.approx(4 / 5)
    with pytest.raises(MoaInputError, match="zzz"):
        deconvolution_metrics(scores, ["zzz"] * 5, classes, train)


def test_molecule_metrics_cross_entropy_equals_sklearn():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=2.0, size=(300, 40))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = rng.integers(0, 40, 300)
    res = molecule_metrics(p, y, ks=(1, 5, 10))
    ce = res[res.metric == "cross_entropy"].iloc[0]
    assert ce["value"] == pytest.approx(log_loss(y, p, labels=np.arange(40)), rel=1e-9)
    assert ce["chance"] == pytest.approx(math.log(40))
    top = res[res.metric == "top_k_accuracy"].set_index("k")
    for k in (1, 5, 10):
        assert top.loc[k, "value"] == pytest.approx(topk_accuracy(p, y, k))
        assert top.loc[k, "chance"] == pytest.approx(k / 40)
    with pytest.raises(MoaInputError, match="softmax"):
        molecule_metrics(logits, y)


def _random_discovery_case(rng, n_cpd=40, n_genes=9, d=6, dup=True):
    genes = [f"G{i}" for i in range(n_genes)]
    comp = rng.normal(size=(n_cpd, d))
    if dup:
        comp[5] = comp[4]  # exact ties
        comp[12] = comp[4]
    targets: list = []
    for _j in range(n_cpd):
        r = rng.random()
        if r < 0.2:
            targets.append(None)
        elif r < 0.35:
            targets.append(tuple(rng.choice(genes[:-1], 2, replace=False)))
        else:
            targets.append(str(rng.choice(genes[:-1])))  # genes[-1] has no compound: skipped
    query = rng.normal(size=(n_genes, d))
    return query, genes, comp, targets


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_compound_discovery_equals_brute_force(metric):
    rng = np.random.default_rng(5)
    for rep in range(3):
        q, genes, c, t = _random_discovery_case(rng)
        per, curves = compound_discovery(q, genes, c, t, metric=metric, seed=rep)
        ref = brute_force_discovery_ranks(q, genes, c, t, metric=metric, seed=rep)
        assert list(per["gene"]) == list(ref["gene"]) == genes[:-1]
        assert per.attrs["skipped_genes"] == [genes[-1]]
        np.testing.assert_array_equal(per["n_hits"], ref["n_hits"])
        np.testing.assert_array_equal(per["first_hit"], ref["first_hit"])
        np.testing.assert_allclose(per["auc"], ref["auc"], rtol=1e-12)
        for g, ranks in zip(ref["gene"], ref["hit_ranks"]):
            cg = curves[curves.gene == g]
            assert len(cg) == len(c)
            pos = np.flatnonzero(np.diff(np.r_[0, cg["hits_found"].to_numpy()])) + 1
            assert tuple(pos) == ranks


def test_discovery_perfect_representation_and_random_baseline():
    rng = np.random.default_rng(7)
    n_genes, d = 6, 12
    genes = [f"G{i}" for i in range(n_genes)]
    eye = np.eye(d)
    targets = [genes[i % n_genes] for i in range(30)] + [None] * 20
    off_target = np.abs(rng.normal(size=(20, d))) * eye[n_genes:].sum(0)  # orthogonal to every query
    comp = np.vstack([eye[i % n_genes] for i in range(30)] + [off_target])
    per, _ = compound_discovery(eye[:n_genes], genes, comp, targets)
    assert (per["auc"] == 1.0).all() and (per["first_hit"] == 1).all()
    assert (per["random_first_hit"] == (50 + 1) / (5 + 1)).all()
    # reversed (worst) representation: AUC 0
    per_w, _ = compound_discovery(-eye[:n_genes], genes, comp, targets)
    assert (per_w["auc"] < 0.5).all()
    # random representations: AUC averages 0.5 and the first-hit baseline matches simulation
    q, genes_r, c, t = _random_discovery_case(rng, n_cpd=60, n_genes=30, d=8, dup=False)
    aucs, firsts, base = [], [], []
    for s in range(15):
        c_rand = rng.normal(size=c.shape)
        per_r, _ = compound_discovery(q, genes_r, c_rand, t, seed=s)
        aucs += list(per_r["auc"])
        firsts += list(per_r["first_hit"])
        base += list(per_r["random_first_hit"])
    assert abs(np.mean(aucs) - 0.5) < 0.04
    assert np.mean(firsts) == pytest.approx(np.mean(base), rel=0.15)
    summ = summarize_discovery(per_r, n_boot=200).set_index("metric")
    assert summ.loc["auc", "value"] == pytest.approx(per_r["auc"].mean())
    assert summ.loc["auc", "ci_low"] <= summ.loc["auc", "value"] <= summ.loc["auc", "ci_high"]
    assert summ.loc["first_hit", "random"] == pytest.approx(per_r["random_first_hit"].mean())


def test_aggregate_by_and_discovery_input_errors():
    rng = np.random.default_rng(1)
    ids = rng.choice(["x", "y", "z"], 50)
    reps = rng.normal(size=(50, 4))
    uniq, means = aggregate_by(ids, reps)
    ref = pd.DataFrame(reps).groupby(ids).mean()
    assert list(uniq) == list(ref.index)
    np.testing.assert_allclose(means, ref.to_numpy())
    with pytest.raises(MoaInputError, match="G1"):
        compound_discovery(reps[:2], ["G1", "G1"], reps, ["G1"] * 50)


@pytest.mark.parametrize("method", ["robust", "dmso"])
@pytest.mark.parametrize("components", [None, 7, 0.9])
def test_out_of_core_preprocessing_equals_the_frame(ds, method, components, monkeypatch):
    """A separate float32 matrix, chunked transform and the PCA from the streamed Gram matrix (forced here
    by a tiny threshold) give what the frame and scikit-learn's covariance_eigh PCA give."""
    from sklearn.decomposition import PCA

    from moa_core.phenoca import preprocess as pp

    df, feats = ds.profiles, ds.feature_cols
    train = replicate_split(df, seed=0).mask("train")
    ref = fit_preprocessor(df, feats, train, method=method, pca_components=components)
    assert isinstance(ref.pca, PCA) and ref.pca._fit_svd_solver == "covariance_eigh"  # what the stream mirrors
    meta = df[[c for c in df.columns if c.startswith("Metadata_")]]
    X = df[feats].to_numpy(np.float32)
    monkeypatch.setattr(pp, "STREAMED_PCA_ELEMENTS", 10)
    monkeypatch.setattr(pp, "CHUNK_ROWS", 97)
    ours = pp.fit_preprocessor(meta, feats, train, method=method, pca_components=components, matrix=X)
    assert ours.n_components == ref.n_components
    assert ours.explained_variance == pytest.approx(ref.explained_variance, rel=1e-9)
    np.testing.assert_allclose(ours.pca.components_, ref.pca.components_, atol=1e-7)
    np.testing.assert_allclose(ours.transform(meta, X, chunk_rows=50), ref.transform(df), atol=1e-4)
    with pytest.raises(SchemaError, match="shape"):
        ours.transform(meta, X[:, :-1])


def test_validate_matrix_names_the_bad_value(ds):
    from moa_core.phenoca.preprocess import validate_matrix

    df, feats = ds.profiles, ds.feature_cols
    meta = df[[c for c in df.columns if c.startswith("Metadata_")]]
    X = df[feats].to_numpy(np.float32).copy()
    assert validate_matrix(meta, X, feats) == feats
    X[5, 2] = np.nan
    with pytest.raises(SchemaError, match=rf"{feats[2]}.*{df['Metadata_Plate'].iloc[5]}"):
        validate_matrix(meta, X, feats)
    with pytest.raises(SchemaError, match="shape"):
        validate_matrix(meta, X[:10], feats)
    with pytest.raises(SchemaError, match="float"):
        validate_matrix(meta, X.astype(np.int32), feats)
