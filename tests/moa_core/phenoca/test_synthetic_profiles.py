"""``synthetic_jump_profiles``: determinism, schema, class structure, no giveaway, calibration to LINCS."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from moa_core.phenoca.synthetic import (
    CALIBRATION_ABS_TOLERANCE,
    CALIBRATION_FACTORS,
    NEGCON,
    PROFILE_METADATA,
    SyntheticProfileSpec,
    calibration_agreement,
    calibration_figures,
    feature_names,
    generate_profiles,
    lincs_calibration_figures,
    plate_sized_subsample,
    robust_normalize,
    synthetic_calibration_figures,
)

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("MOA_SHARED_DIR", str(REPO.parent / "shared")))
LINCS_PLATE = SHARED / "data" / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"

SMALL = SyntheticProfileSpec(
    n_annotated_compounds=300,
    n_ood_compounds=600,
    n_moas=120,
    n_targets=80,
    n_crispr_genes=20,
    n_novel_moas=50,
    n_sources=2,
    batches_per_source=2,
    seed=3,
)
#: few, large MoA classes, for the classification checks
FEW_CLASSES = SyntheticProfileSpec(
    n_annotated_compounds=400,
    n_ood_compounds=0,
    n_moas=8,
    n_targets=8,
    n_crispr_genes=0,
    n_features=120,
    n_sources=2,
    batches_per_source=2,
    seed=5,
)
FEATURE_RE = re.compile(
    r"^(Cells|Cytoplasm|Nuclei)_(AreaShape|Intensity|Texture|Granularity|RadialDistribution|"
    r"Correlation|Neighbors)_[A-Za-z0-9_]+$"
)


@pytest.fixture(scope="module")
def small():
    return generate_profiles(SMALL)


@pytest.fixture(scope="module")
def small_norm(small):
    return robust_normalize(small.profiles, small.feature_cols)


@pytest.fixture(scope="module")
def default_ds():
    t0 = time.perf_counter()
    ds = generate_profiles()
    return ds, time.perf_counter() - t0


@pytest.fixture(scope="module")
def lincs_figures():
    if not LINCS_PLATE.is_file():
        pytest.skip(f"real LINCS data not found at {LINCS_PLATE} (../shared missing)")
    return lincs_calibration_figures(pd.read_csv(LINCS_PLATE, low_memory=False))


def _kind(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    return df[df["Metadata_pert_type"] == kind]


def _annotated(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["Metadata_pert_type"] == "compound") & ~df["Metadata_is_ood"].astype(bool)]


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_identical_different_seed_different(small):
    again = generate_profiles(SMALL)
    pd.testing.assert_frame_equal(small.profiles, again.profiles)
    pd.testing.assert_frame_equal(small.perturbations, again.perturbations)
    np.testing.assert_array_equal(small.latent, again.latent)
    other = generate_profiles(dataclasses.replace(SMALL, seed=4))
    assert other.feature_cols == small.feature_cols  # names do not depend on the seed
    assert other.profiles.shape[1] == small.profiles.shape[1]
    a = small.profiles[small.feature_cols].to_numpy()
    b = other.profiles[other.feature_cols].to_numpy()
    n = min(len(a), len(b))
    assert not np.allclose(a[:n], b[:n])
    assert set(small.perturbations["Metadata_JCP2022"]) != set(other.perturbations["Metadata_JCP2022"])
    assert not small.perturbations["Metadata_moa"].equals(other.perturbations["Metadata_moa"])


# --- sizes and schema ----------------------------------------------------------------------


def test_schema_and_sizes(small):
    p, spec = small.profiles, SMALL
    assert list(p.columns) == PROFILE_METADATA + small.feature_cols
    assert len(small.feature_cols) == spec.n_features == len(set(small.feature_cols))
    assert all(FEATURE_RE.match(f) for f in small.feature_cols), small.feature_cols[:5]
    assert all(p[f].dtype == np.float32 for f in small.feature_cols)
    assert np.isfinite(p[small.feature_cols].to_numpy()).all()
    assert p["Metadata_is_ood"].dtype == bool
    assert set(p["Metadata_pert_type"]) == {"compound", "crispr", "negcon"}
    assert not p.duplicated(["Metadata_Plate", "Metadata_Well"]).any()
    per = small.perturbations
    assert len(_annotated(per)) == spec.n_annotated_compounds
    assert int(per["Metadata_is_ood"].sum()) == spec.n_ood_compounds
    assert len(_kind(per, "crispr")) == spec.n_crispr_genes
    assert small.latent.shape == (len(per), spec.latent_dim) and small.latent.dtype == np.float32
    assert per["Metadata_JCP2022"].str.fullmatch(r"JCP2022_\d{6}").all() and per["Metadata_JCP2022"].is_unique
    ik = _kind(per, "compound")["Metadata_InChIKey"]
    assert ik.str.fullmatch(r"[A-Z]{14}-[A-Z]{10}-N").all() and ik.is_unique
    trt = p[p["Metadata_pert_type"] != "negcon"]
    per_pert = trt.groupby("Metadata_JCP2022")["Metadata_Plate"].agg(["size", "nunique"])
    assert per_pert["size"].between(spec.replicates_min, spec.replicates_max).all()
    assert (per_pert["size"] == per_pert["nunique"]).all()  # replicates on distinct plates
    assert len(per_pert) == len(per) - 1
    # wells of a plate: one source, one batch; plates spread over all sources and batches
    assert (p.groupby("Metadata_Plate")[["Metadata_Source", "Metadata_Batch"]].nunique() == 1).all().all()
    assert p["Metadata_Source"].nunique() == spec.n_sources
    assert p["Metadata_Batch"].nunique() == spec.n_sources * spec.batches_per_source
    assert p.groupby("Metadata_Plate").size().max() <= spec.wells_per_plate


def test_default_spec_size_and_speed(default_ds):
    ds, seconds = default_ds
    spec = ds.spec
    assert 2000 <= spec.n_annotated_compounds <= 3000 and 15_000 <= spec.n_ood_compounds <= 25_000
    assert 300 <= spec.n_features <= 500
    p = ds.profiles
    assert p.shape == (len(p), len(PROFILE_METADATA) + spec.n_features)
    assert 80_000 < len(p) < 120_000
    assert seconds < 20.0, f"default spec took {seconds:.1f} s"
    per = ds.perturbations
    moa = _annotated(per)["Metadata_moa"].value_counts()
    tgt = _annotated(per)["Metadata_target"].value_counts()
    assert len(moa) == spec.n_moas and len(tgt) == spec.n_targets
    for sizes in (moa, tgt):  # long-tailed: many singletons, a head far above the median
        assert (sizes == 1).sum() >= 0.2 * len(sizes)
        assert sizes.max() >= 20 * sizes.median()


def test_spec_validation():
    with pytest.raises(ValueError, match="n_moas"):
        SyntheticProfileSpec(n_annotated_compounds=10, n_moas=20, n_targets=5)
    with pytest.raises(ValueError, match="nested"):
        SyntheticProfileSpec(n_moas=10, n_targets=20, n_annotated_compounds=50, n_crispr_genes=0)
    with pytest.raises(ValueError, match="plates_per_batch"):
        generate_profiles(dataclasses.replace(SMALL, plates_per_batch=1))


def test_feature_names_fixed_and_cellprofiler_like():
    assert feature_names(454) == feature_names(454)
    big = feature_names(6000)
    assert len(set(big)) == 6000


# --- classes and annotations ---------------------------------------------------------------


def test_long_tailed_classes(small):
    ann = _annotated(small.perturbations)
    for col, n in (("Metadata_moa", SMALL.n_moas), ("Metadata_target", SMALL.n_targets)):
        sizes = ann[col].value_counts()
        assert len(sizes) == n  # every class has at least one compound
        assert (sizes == 1).any()
        assert sizes.max() >= 5 * sizes.median()
    # MoAs are nested in targets
    assert (ann.groupby("Metadata_moa")["Metadata_target"].nunique() == 1).all()


def test_ood_unannotated_and_controls(small):
    p = small.profiles
    ood = p[p["Metadata_is_ood"]]
    assert len(ood) and (ood["Metadata_pert_type"] == "compound").all()
    assert ood[["Metadata_moa", "Metadata_target", "Metadata_gene"]].isna().all().all()
    ann = _annotated(p)
    assert ann[["Metadata_moa", "Metadata_target"]].notna().all().all() and ann["Metadata_gene"].isna().all()
    neg = _kind(p, "negcon")
    assert (neg["Metadata_broad_sample"] == NEGCON).all() and (neg["Metadata_moa"] == NEGCON).all()
    assert neg["Metadata_target"].isna().all() and not neg["Metadata_is_ood"].any()
    assert (
        p.loc[p["Metadata_pert_type"] != "negcon", "Metadata_broad_sample"]
        == p.loc[p["Metadata_pert_type"] != "negcon", "Metadata_JCP2022"]
    ).all()
    # the hidden classes of OOD compounds stay in the perturbation table only
    per_ood = small.perturbations[small.perturbations["Metadata_is_ood"]]
    assert per_ood["hidden_moa"].notna().all()
    assert (
        per_ood["hidden_moa"].str.startswith("novel_").any() and (~per_ood["hidden_moa"].str.startswith("novel_")).any()
    )


def test_every_plate_has_dmso_on_a_fixed_plate_map(small):
    p = small.profiles
    neg = _kind(p, "negcon")
    counts = neg.groupby("Metadata_Plate").size().reindex(p["Metadata_Plate"].unique(), fill_value=0)
    assert (counts == SMALL.dmso_per_plate).all()
    layouts = neg.groupby(["Metadata_Source", "Metadata_Plate"])["Metadata_Well"].apply(frozenset)
    assert (layouts.groupby(level=0).nunique() == 1).all()


# --- phenotype ---------------------------------------------------------------------------


def _consensus(norm: pd.DataFrame, feats: list[str]) -> pd.DataFrame:
    cons = norm.groupby("Metadata_JCP2022")[feats].mean()
    x = cons.to_numpy(np.float64)
    return pd.DataFrame(x / np.linalg.norm(x, axis=1, keepdims=True), index=cons.index)


def test_crispr_knockout_resembles_its_targets_compounds(small, small_norm):
    per = small.perturbations.set_index("Metadata_JCP2022")
    ann = _annotated(per)
    ko = _kind(per, "crispr")
    assert ko["Metadata_gene"].isin(set(ann["Metadata_target"])).all()
    assert (ko["Metadata_gene"] == ko["Metadata_target"]).all()
    u = _consensus(small_norm, small.feature_cols)
    same, rand = [], []
    for jcp, row in ko.iterrows():
        q = u.loc[jcp].to_numpy()
        same.append((u.loc[ann.index[ann["Metadata_target"] == row["Metadata_gene"]]].to_numpy() @ q).mean())
        rand.append((u.loc[ann.index].to_numpy() @ q).mean())
    same, rand = np.array(same), np.array(rand)
    assert same.mean() > rand.mean() + 0.2, (same.mean(), rand.mean())
    assert (same > rand).mean() >= 0.75


def test_inactive_compounds_near_dmso(small, small_norm):
    active = small_norm["Metadata_JCP2022"].map(small.perturbations.set_index("Metadata_JCP2022")["is_active"])
    norm = np.linalg.norm(small_norm[small.feature_cols].to_numpy(np.float64), axis=1)
    kind = small_norm["Metadata_pert_type"].to_numpy()
    dmso = np.median(norm[kind == "negcon"])
    inactive = np.median(norm[(kind == "compound") & ~active.to_numpy(bool)])
    act = np.median(norm[(kind == "compound") & active.to_numpy(bool)])
    assert inactive < 1.2 * dmso, (inactive, dmso)
    assert act > 1.5 * dmso, (act, dmso)


def test_robust_normalize_to_dmso(small, small_norm):
    feats = small.feature_cols
    neg = _kind(small_norm, "negcon")
    med = neg.groupby("Metadata_Plate")[feats].median().to_numpy()
    assert np.abs(med).max() < 1e-5
    mad = neg.groupby("Metadata_Plate")[feats].agg(lambda s: 1.4826 * np.median(np.abs(s - s.median())))
    np.testing.assert_allclose(mad.to_numpy(), 1.0, atol=1e-4)
    # raw DMSO levels differ between sources (plate/batch/source effects); normalized ones do not
    raw_src = _kind(small.profiles, "negcon").groupby("Metadata_Source")[feats].median()
    norm_src = neg.groupby("Metadata_Source")[feats].median()
    raw_scale = _kind(small.profiles, "negcon")[feats].std().to_numpy()
    assert (raw_src.diff().abs().iloc[1].to_numpy() / raw_scale).mean() > 0.5
    assert norm_src.diff().abs().iloc[1].to_numpy().mean() < 0.2
    with pytest.raises(ValueError, match="control"):
        robust_normalize(small.profiles, feats, control_mask=np.zeros(len(small.profiles), bool))


# --- no giveaway -------------------------------------------------------------------------


def _moa_accuracies(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[float, np.ndarray]:
    """Compound-held-out balanced accuracy: 5-NN (cosine) on the full profile; per-feature Gaussian NB."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold
    from sklearn.neighbors import KNeighborsClassifier

    n_cls = int(y.max()) + 1
    full = np.empty_like(y)
    single = np.empty((len(y), x.shape[1]), np.intp)
    for tr, te in GroupKFold(5).split(x, y, groups):
        full[te] = KNeighborsClassifier(5, metric="cosine").fit(x[tr], y[tr]).predict(x[te])
        mu = np.stack([x[tr][y[tr] == c].mean(0) for c in range(n_cls)])
        var = np.stack([x[tr][y[tr] == c].var(0) for c in range(n_cls)]) + 1e-9
        ll = -0.5 * np.log(var)[None] - (x[te][:, None, :] - mu[None]) ** 2 / (2 * var[None])
        single[te] = ll.argmax(1)
    return (
        balanced_accuracy_score(y, full),
        np.array([balanced_accuracy_score(y, single[:, f]) for f in range(x.shape[1])]),
    )


def test_no_single_feature_predicts_moa():
    ds = generate_profiles(FEW_CLASSES)
    norm = _annotated(robust_normalize(ds.profiles, ds.feature_cols))
    x = norm[ds.feature_cols].to_numpy(np.float64)
    y = pd.factorize(norm["Metadata_moa"], sort=True)[0]
    g = pd.factorize(norm["Metadata_JCP2022"])[0]
    chance = 1.0 / (y.max() + 1)
    full, single = _moa_accuracies(x, y, g)
    assert full > 3 * chance, full  # the phenotype carries the MoA...
    assert single.max() < 0.6 * full, (single.max(), full)  # ...but no single feature does
    # the check itself can fail: a feature that encodes the MoA is caught
    leak = np.column_stack([x[:, :5], y + 0.1 * np.random.default_rng(0).standard_normal(len(y))])
    _, single_leak = _moa_accuracies(leak, y, g)
    assert single_leak.max() > 0.9


def test_layout_and_ids_independent_of_classes(small):
    p = small.profiles
    trt = p[p["Metadata_pert_type"] == "compound"].copy()
    row = trt["Metadata_Well"].str[0].map(ord) - ord("A")
    col = trt["Metadata_Well"].str[1:].astype(int) - 1
    trt["edge"] = (row == 0) | (row == 15) | (col == 0) | (col == 23)
    trt["half"] = row >= 8
    ann = _annotated(trt)
    top = ann["Metadata_moa"].value_counts().index[:5]
    big = ann[ann["Metadata_moa"].isin(top)]
    for a, b, d in [
        ("Metadata_moa", "Metadata_Source", big),
        ("Metadata_moa", "edge", big),
        ("Metadata_moa", "half", big),
        ("Metadata_is_ood", "edge", trt),
        ("Metadata_is_ood", "Metadata_Source", trt),
        ("Metadata_is_ood", "Metadata_Batch", trt),
    ]:
        pval = stats.chi2_contingency(pd.crosstab(d[a], d[b]))[1]
        assert pval > 1e-3, (a, b, pval)
    per = _kind(small.perturbations, "compound")
    num = per["Metadata_JCP2022"].str[8:].astype(int)
    assert stats.mannwhitneyu(num[per["Metadata_is_ood"]], num[~per["Metadata_is_ood"]]).pvalue > 1e-3
    ann_per = _annotated(small.perturbations)
    groups = [num[ann_per.index[ann_per["Metadata_moa"] == m]] for m in top]
    assert stats.kruskal(*groups).pvalue > 1e-3


# --- calibration -------------------------------------------------------------------------


def _check_plausible(fig: dict[str, float]) -> None:
    assert all(np.isfinite(v) for v in fig.values()), fig
    assert 0 < fig["pc_var_top1"] < fig["pc_var_top5"] < fig["pc_var_top10"] < fig["pc_var_top20"] <= 1
    assert 1 < fig["effective_rank"] < fig["n_features"]
    assert -1 <= fig["nonreplicate_corr_median"] < fig["replicate_corr_median"] <= 1
    assert 0 <= fig["activity_fraction"] <= 1 and 0 <= fig["activity_mean_map"] <= 1


def test_calibration_figures_on_lincs(lincs_figures):
    pooled, matched = lincs_figures["doses_pooled"], lincs_figures["dose_matched"]
    for fig in (pooled, matched):
        _check_plausible(fig)
        assert fig["n_wells"] == 384 and fig["n_features"] == 454
    assert pooled["n_replicate_sets"] == 58 and matched["n_replicate_sets"] == 2
    # known values of SQ00015054 (normalized_feature_select)
    assert 0.15 < pooled["pc_var_top1"] < 0.35 and 0.85 < pooled["pc_var_top20"] < 0.97
    assert 0.3 < pooled["replicate_corr_median"] < 0.6 < matched["replicate_corr_median"]
    assert abs(pooled["nonreplicate_corr_median"]) < 0.1
    assert 0.3 < pooled["activity_fraction"] < 0.8


def test_synthetic_within_stated_factor_of_lincs(default_ds, lincs_figures):
    ds, _ = default_ds
    syn = synthetic_calibration_figures(ds, n_subsamples=2, full=False)["subsample"]
    _check_plausible(syn)
    ok = calibration_agreement(lincs_figures["doses_pooled"], syn)
    assert set(ok) == set(CALIBRATION_FACTORS) | set(CALIBRATION_ABS_TOLERANCE)
    assert all(ok.values()), {k: (syn[k], lincs_figures["doses_pooled"][k]) for k, v in ok.items() if not v}
    assert max(CALIBRATION_FACTORS.values()) <= 1.5


def test_calibration_agreement_can_fail(small, small_norm, lincs_figures):
    # noise-only profiles (features shuffled across wells) are far from LINCS
    rng = np.random.default_rng(0)
    sub = plate_sized_subsample(small_norm[small_norm["Metadata_pert_type"] != "crispr"], seed=0)
    x = sub[small.feature_cols].to_numpy()
    shuffled = sub.copy()
    shuffled[small.feature_cols] = np.stack([rng.permutation(x[:, j]) for j in range(x.shape[1])], axis=1)
    fig = calibration_figures(shuffled, small.feature_cols, pool_plates=True, null_size=2000)
    ok = calibration_agreement(lincs_figures["doses_pooled"], fig)
    assert not ok["effective_rank"] and not ok["replicate_corr_median"]
