"""Bootstrap CIs (exactness of the weighted-pair scheme) and the full suite."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import f1_score

from moa_core.evaluation import (
    RESULT_COLUMNS,
    bootstrap_enrichment_odds_ratio,
    bootstrap_intra_inter_delta,
    bootstrap_query_metric,
    bootstrap_weights,
    evaluate_embeddings,
    intra_inter_from_similarity,
    odds_ratio,
    run_embedding_suite,
)


def _sim(n=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    y = np.arange(n) % 3
    X += 1.5 * np.eye(3, 8)[y]
    s = np.corrcoef(X)
    s = (s + s.T) / 2  # exactly symmetric, like the library's PCC matrix
    np.fill_diagonal(s, 1.0)
    return s, y


def _expanded_pairs(w):
    """Pairs of the materialized resample, excluding copies of the same well."""
    idx = np.repeat(np.arange(len(w)), w.astype(int))
    out = []
    for a in range(len(idx)):
        for b in range(a + 1, len(idx)):
            if idx[a] != idx[b]:
                out.append((idx[a], idx[b]))
    return out


def test_bootstrap_weights():
    W = bootstrap_weights(5, 10, seed=3)
    assert W.shape == (5, 10) and (W.sum(1) == 10).all()
    assert np.array_equal(W, bootstrap_weights(5, 10, seed=3))
    groups = np.array([0, 0, 1, 1, 1, 2])
    Wg = bootstrap_weights(4, 6, seed=1, groups=groups)
    assert (Wg[:, 0] == Wg[:, 1]).all() and (Wg[:, 2] == Wg[:, 4]).all()
    assert (Wg[:, [0, 2, 5]].sum(1) == 3).all()


def test_intra_inter_bootstrap_equals_materialized_resample():
    sim, y = _sim()
    ci = bootstrap_intra_inter_delta(sim, y, n_boot=4, seed=7)
    assert ci.estimate == pytest.approx(intra_inter_from_similarity(sim, y).delta)
    W = bootstrap_weights(4, len(y), seed=7)
    for b, w in enumerate(W):
        pairs = _expanded_pairs(w)
        same = [sim[i, j] for i, j in pairs if y[i] == y[j]]
        diff = [sim[i, j] for i, j in pairs if y[i] != y[j]]
        assert ci.samples[b] == pytest.approx(np.mean(same) - np.mean(diff), abs=1e-12)
    assert ci.ci_low <= ci.ci_high


@pytest.mark.parametrize("convention", ["paper", "cytominer-eval"])
def test_enrichment_bootstrap_equals_materialized_resample(convention):
    sim, y = _sim(n=10)
    ci = bootstrap_enrichment_odds_ratio(sim, y, percentile=80.0, convention=convention, n_boot=3, seed=5)
    W = bootstrap_weights(3, len(y), seed=5)
    for b, w in enumerate(W):
        pairs = _expanded_pairs(w)
        if convention == "cytominer-eval":
            pairs = pairs + [(j, i) for i, j in pairs]
        vals = np.array([sim[i, j] for i, j in pairs])
        same = np.array([y[i] == y[j] for i, j in pairs])
        thr = np.percentile(vals, 80.0)
        strong = vals > thr
        a, b_, c, d = (strong & same).sum(), (strong & ~same).sum(), (~strong & same).sum(), (~strong & ~same).sum()
        ref = odds_ratio(a, b_, c, d)
        if np.isfinite(ref):
            assert ci.samples[b] == pytest.approx(ref, rel=1e-12)
        else:
            assert not np.isfinite(ci.samples[b])


def test_query_metric_bootstrap_matches_sklearn_weights():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 30)
    p = np.where(rng.random(30) < 0.6, y, rng.integers(0, 4, 30))
    ci = bootstrap_query_metric(y, p, 4, n_boot=5, seed=2)
    W = bootstrap_weights(5, 30, seed=2)
    for b, w in enumerate(W):
        assert ci.samples[b] == pytest.approx(f1_score(y, p, average="weighted", zero_division=0, sample_weight=w))
    assert ci.estimate == pytest.approx(f1_score(y, p, average="weighted", zero_division=0))


def test_suite_on_lincs(lincs_raw, lincs_features, tmp_path):
    t0 = time.perf_counter()
    with pytest.warns(UserWarning, match="skipped batch"):
        res = evaluate_embeddings(
            lincs_raw,
            lincs_features,
            "CP",
            min_compounds_per_moa=1,
            map_null_size=100,
            map_cache_dir=tmp_path,
            n_boot=50,
            n_boot_enrichment=20,
        )
    elapsed = time.perf_counter() - t0
    df = res.results
    assert list(df.columns) == RESULT_COLUMNS
    assert {
        "filtering",
        "enrichment",
        "intra_inter",
        "knn",
        "latent",
        "groups",
        "map_activity",
        "map_consistency",
    } <= set(df["analysis"])
    assert "batch" in res.skipped and "logistic" in res.skipped  # single plate, no train_df
    n = res.filter_report["n_output"]
    assert n == 342
    knn = df[(df["analysis"] == "knn") & (df["metric"] == "f1")]
    assert len(knn) == n - 1 and knn["parameter"].tolist() == list(range(1, n))
    for an, metric in [("intra_inter", "delta"), ("knn", "best_f1"), ("latent", "f1")]:
        row = df[(df["analysis"] == an) & (df["metric"] == metric)].iloc[0]
        assert row.ci_low <= row.value <= row.ci_high, (an, metric)
    orow = df[(df["metric"] == "odds_ratio") & np.isclose(df["parameter"], 99.0)].iloc[0]
    assert np.isfinite(orow.ci_low) and orow.p_value < 1e-10
    assert res.knn.pred_codes.shape == (n - 1, n)
    assert elapsed < 30


def test_suite_synthetic_everything(synthetic_factory, tmp_path):
    df, feats = synthetic_factory(n_moa=4, cpd_per_moa=3, wells_per_cpd=4, n_plates=2, n_dmso=8, seed=4)
    test = df.sample(frac=0.5, random_state=0)
    train = df.drop(test.index)
    held_cpds = ["cpd_0_2", "cpd_1_2", "cpd_2_2", "cpd_3_2"]
    held = test[test["Metadata_broad_sample"].isin(held_cpds)]
    res = evaluate_embeddings(
        test,
        feats,
        "MP",
        train_df=train[~train["Metadata_broad_sample"].isin(held_cpds)],
        heldout_df=held,
        map_null_size=50,
        map_cache_dir=tmp_path,
        n_boot=20,
        n_boot_enrichment=10,
        bootstrap_unit="compound",
        run_map=True,
    )
    assert res.skipped == {}
    analyses = set(res.results["analysis"])
    assert {"logistic", "batch", "groups", "holdout_individual", "holdout_aggregated"} <= analyses
    assert res.results["method"].eq("MP").all()
    assert res.bootstrap["latent_f1"].unit == "cluster"
    tidy = run_embedding_suite(test, feats, "MP", run_map=False, n_boot=0)
    assert tidy["ci_low"].isna().all()
    assert list(tidy.columns) == RESULT_COLUMNS


def test_enrichment_bootstrap_candidate_set_is_exact():
    sim, y = _sim(n=30, seed=3)
    full = bootstrap_enrichment_odds_ratio(sim, y, percentile=95.0, n_boot=20, seed=1, candidate_fraction=1.0)
    for frac in (None, 0.06, 0.01):  # 0.01 forces the all-pairs fallback in most replicates
        ci = bootstrap_enrichment_odds_ratio(sim, y, percentile=95.0, n_boot=20, seed=1, candidate_fraction=frac)
        np.testing.assert_array_equal(ci.samples, full.samples)
        assert ci.estimate == full.estimate
