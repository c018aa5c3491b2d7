"""The block-wise analyses equal the all-pairs ones (float64 round-off; discrete results identical)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_core.evaluation import blockwise as bw
from moa_core.evaluation.bootstrap import bootstrap_enrichment_odds_ratio, bootstrap_intra_inter_delta
from moa_core.evaluation.enrichment import enrichment_from_similarity
from moa_core.evaluation.groups import three_groups_from_similarity
from moa_core.evaluation.intra_inter import intra_inter_from_similarity
from moa_core.evaluation.knn import knn_from_similarity
from moa_core.evaluation.similarity import pearson_similarity_matrix
from moa_core.evaluation.suite import evaluate_embeddings


@pytest.fixture(scope="module")
def table():
    from tests.moa_core.evaluation.conftest import make_synthetic

    return make_synthetic(n_moa=7, cpd_per_moa=3, wells_per_cpd=5, n_features=24, n_plates=4, n_dmso=12, signal=0.8)


def _codes(df, col):
    return pd.factorize(df[col].astype(str))[0]


@pytest.fixture(scope="module")
def pairs(table):
    df, feats = table
    d = df[df["Metadata_broad_sample"] != "DMSO"].reset_index(drop=True)
    X = d[feats].to_numpy()
    full = pearson_similarity_matrix(X)
    blocks = bw.BlockSimilarity(X, block_elements=7 * len(X))  # 7 rows per block: many blocks
    return d, full, blocks


def test_blocks_are_the_rows_of_the_full_matrix(pairs):
    _, full, blocks = pairs
    assert blocks.step == 7 and blocks.shape == full.shape
    stacked = np.vstack([s for _, _, s in blocks.blocks()])
    np.testing.assert_allclose(stacked, full, rtol=0, atol=1e-13)
    assert np.array_equal(np.diag(stacked), np.ones(len(full)))


def test_enrichment_intra_inter_groups_batch(pairs):
    d, full, blocks = pairs
    moa, cpd, plate = _codes(d, "Metadata_moa"), _codes(d, "Metadata_broad_sample"), _codes(d, "Metadata_Plate")
    for conv in ("paper", "cytominer-eval"):
        a = enrichment_from_similarity(full, moa, convention=conv).table
        b = bw.enrichment_blockwise(blocks, moa, convention=conv).table
        for c in ("a", "b", "c", "d", "n_pairs"):
            assert a[c].tolist() == b[c].tolist(), (conv, c)
        np.testing.assert_allclose(b["threshold"], a["threshold"], rtol=1e-12)
        np.testing.assert_allclose(b["odds_ratio"], a["odds_ratio"], rtol=1e-12)
    x, y = intra_inter_from_similarity(full, moa), bw.intra_inter_blockwise(blocks, moa)
    np.testing.assert_allclose(
        [y.intra_mean, y.intra_sd, y.inter_mean, y.inter_sd],
        [x.intra_mean, x.intra_sd, x.inter_mean, x.inter_sd],
        rtol=1e-10,
    )
    assert (x.n_intra, x.n_inter) == (y.n_intra, y.n_inter)
    g1, g2 = three_groups_from_similarity(full, cpd, moa), bw.three_groups_blockwise(blocks, cpd, moa)
    np.testing.assert_allclose(g2.summary[["mean", "sd"]], g1.summary[["mean", "sd"]], rtol=1e-10)
    assert g1.summary["n"].tolist() == g2.summary["n"].tolist()
    from moa_core.evaluation.batch import batch_effect_from_similarity

    b1, b2 = batch_effect_from_similarity(full, moa, plate), bw.batch_effect_blockwise(blocks, moa, plate)
    np.testing.assert_allclose(
        [b2.within_mean, b2.across_mean, b2.z], [b1.within_mean, b1.across_mean, b1.z], rtol=1e-9
    )


def test_knn_from_blocks_gives_the_same_predictions(pairs):
    d, full, blocks = pairs
    moa = _codes(d, "Metadata_moa")
    a = knn_from_similarity(full, moa)
    b = knn_from_similarity(blocks, moa)
    assert np.array_equal(a.pred_codes, b.pred_codes)
    assert a.best == b.best
    capped = knn_from_similarity(blocks, moa, max_k=9)
    assert np.array_equal(capped.pred_codes, a.pred_codes[:9])


def test_bootstraps(pairs):
    d, full, blocks = pairs
    moa = _codes(d, "Metadata_moa")
    a = bootstrap_intra_inter_delta(full, moa, n_boot=30, seed=3)
    b = bw.bootstrap_intra_inter_delta_blockwise(blocks, moa, n_boot=30, seed=3)
    np.testing.assert_allclose([b.estimate, b.ci_low, b.ci_high], [a.estimate, a.ci_low, a.ci_high], rtol=1e-9)
    a = bootstrap_enrichment_odds_ratio(full, moa, n_boot=20, seed=2)
    b = bw.bootstrap_enrichment_blockwise(blocks, moa, n_boot=20, seed=2)
    np.testing.assert_allclose([b.estimate, b.ci_low, b.ci_high], [a.estimate, a.ci_low, a.ci_high], rtol=1e-9)


def test_suite_blockwise_equals_all_pairs(table):
    df, feats = table
    kw = dict(n_boot=20, n_boot_enrichment=10, map_null_size=200, seed=0, run_logistic=False)
    a = evaluate_embeddings(df, feats, "m", blockwise=False, **kw).results
    b = evaluate_embeddings(df, feats, "m", blockwise=True, **kw).results
    key = ["analysis", "metric", "parameter"]
    m = a.merge(b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    assert (m["_merge"] == "both").all(), m[m["_merge"] != "both"][key]
    for c in ("value", "ci_low", "ci_high", "p_value"):
        x, y = m[f"{c}_a"].to_numpy(float), m[f"{c}_b"].to_numpy(float)
        ok = np.isclose(x, y, rtol=1e-8, atol=1e-12, equal_nan=True)
        # the consistency mAP's p-values are permutation nulls drawn per group: equal in distribution only
        ok |= (m["analysis"].eq("map_consistency") & (c in ("p_value",))).to_numpy()
        assert ok.all(), m.loc[~ok, key + [f"{c}_a", f"{c}_b"]]


def test_capped_knn_is_recorded(table):
    df, feats = table
    res = evaluate_embeddings(df, feats, "m", n_boot=0, run_map=False, run_logistic=False, knn_max_k=5)
    row = res.results[(res.results["analysis"] == "knn") & (res.results["metric"] == "max_k")]
    assert row["value"].tolist() == [5.0]
    assert res.knn.k.max() == 5
