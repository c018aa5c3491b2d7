"""PCC matrix, result schema, filtering and bad-input handling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_core.errors import MoaInputError, SchemaError
from moa_core.evaluation import (
    RESULT_COLUMNS,
    class_latent_assignment,
    enrichment,
    filter_test_wells,
    intra_inter_moa,
    knn_curves,
    pearson_cross,
    pearson_similarity,
    result_row,
    results_frame,
    run_embedding_suite,
    three_group_pcc,
)
from moa_core.evaluation._common import linear_quantile_sorted, weighted_prf


def _toy(n=6, f=5, seed=0):
    rng = np.random.default_rng(seed)
    feats = [f"x{i}" for i in range(f)]
    df = pd.DataFrame(rng.normal(size=(n, f)), columns=feats)
    df["Metadata_moa"] = ["a", "a", "b", "b", "c", "c"][:n]
    df["Metadata_broad_sample"] = ["c1", "c2", "c3", "c4", "c5", "c6"][:n]
    df["Metadata_Plate"] = "P1"
    df["Metadata_Well"] = [f"B{i + 2:02d}" for i in range(n)]
    return df, feats


# --------------------------------------------------------------------------- similarity


def test_pcc_matches_corrcoef_and_is_exactly_symmetric():
    df, feats = _toy(n=6, f=50)
    sim = pearson_similarity(df, feats)
    ref = np.corrcoef(df[feats].to_numpy())
    np.testing.assert_allclose(sim, ref, atol=1e-12)
    assert sim.dtype == np.float64
    assert np.array_equal(sim, sim.T)
    assert np.all(np.diag(sim) == 1.0)
    assert sim.max() <= 1.0 and sim.min() >= -1.0


def test_pcc_hand_computed():
    X = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 2.0, 4.0]])
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    sim = pearson_similarity(df, ["a", "b", "c"])
    assert sim[0, 1] == pytest.approx(-1.0)
    # x=(1,2,3) centered (-1,0,1); y=(1,2,4) centered (-4/3,-1/3,5/3): r = 3 / (sqrt2*sqrt(42/9))
    assert sim[0, 2] == pytest.approx(3 / (np.sqrt(2) * np.sqrt(42 / 9)))


def test_pcc_cross_matches_corrcoef():
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(3, 7)), rng.normal(size=(4, 7))
    ref = np.corrcoef(np.vstack([A, B]))[:3, 3:]
    np.testing.assert_allclose(pearson_cross(A, B), ref, atol=1e-12)


def test_constant_feature_column_is_fine():
    df, feats = _toy(n=6, f=5)
    df["x0"] = 3.0
    sim = pearson_similarity(df, feats)
    np.testing.assert_allclose(sim, np.corrcoef(df[feats].to_numpy()), atol=1e-12)


# --------------------------------------------------------------------------- bad inputs


def test_nan_and_inf_features_name_columns():
    df, feats = _toy()
    df.loc[2, "x3"] = np.nan
    df.loc[4, "x1"] = np.inf
    with pytest.raises(ValueError, match=r"x1.*x3|x3.*x1") as exc:
        pearson_similarity(df, feats)
    assert "2 row(s)" in str(exc.value)
    assert isinstance(exc.value, MoaInputError)


def test_constant_row_names_well():
    df, feats = _toy()
    df.loc[3, feats] = 7.0
    with pytest.raises(ValueError, match="P1/B05"):
        pearson_similarity(df, feats)


def test_fewer_than_two_wells():
    df, feats = _toy()
    with pytest.raises(ValueError, match="at least 2"):
        pearson_similarity(df.iloc[:1], feats)
    with pytest.raises(ValueError):
        knn_curves(df.iloc[:1], feats)


def test_missing_and_non_numeric_feature_columns():
    df, feats = _toy()
    with pytest.raises(SchemaError, match="nope"):
        pearson_similarity(df, feats + ["nope"])
    df["txt"] = "a"
    with pytest.raises(SchemaError, match="txt"):
        pearson_similarity(df, feats + ["txt"])
    with pytest.raises(SchemaError):
        pearson_similarity(df, [])


@pytest.mark.parametrize("fn", [enrichment, intra_inter_moa, knn_curves, class_latent_assignment])
def test_single_moa_raises(fn):
    df, feats = _toy()
    df["Metadata_moa"] = "only"
    with pytest.raises(ValueError, match="at least 2 distinct MOAs"):
        fn(df, feats)


def test_missing_moa_label_raises_naming_rows():
    df, feats = _toy()
    df.loc[1, "Metadata_moa"] = None
    with pytest.raises(ValueError, match="missing label"):
        knn_curves(df, feats)


def test_suite_single_moa_raises():
    df, feats = _toy()
    df["Metadata_moa"] = "only"
    with pytest.raises(ValueError):
        run_embedding_suite(df, feats, "X", filter_wells=False, run_map=False, n_boot=0)


def test_similarity_shape_mismatch():
    df, feats = _toy()
    with pytest.raises(ValueError, match="does not match"):
        three_group_pcc(df, feats, sim=np.eye(3))


# --------------------------------------------------------------------------- results schema


def test_result_schema():
    f = results_frame([result_row("MP", "knn", "f1", 0.5, parameter=3, n=10)])
    assert list(f.columns) == RESULT_COLUMNS
    assert f.loc[0, "parameter"] == 3.0 and np.isnan(f.loc[0, "ci_low"])
    assert list(results_frame([]).columns) == RESULT_COLUMNS
    with pytest.raises(ValueError):
        results_frame([{"methd": "x"}])


# --------------------------------------------------------------------------- filtering


def test_filter_test_wells_report():
    df = pd.DataFrame(
        {
            "Metadata_broad_sample": ["DMSO", "DMSO", "c1", "c1", "c2", "c3", "c4", "c5", "c6"],
            "Metadata_moa": [None, None, "a", "a", "a", "b", None, "x|y", "x|y"],
            "Metadata_split": ["test"] * 8 + ["train"],
        }
    )
    out, rep = filter_test_wells(df, single_moa_only=True, split_col="Metadata_split")
    assert out["Metadata_broad_sample"].tolist() == ["c1", "c1", "c2"]
    assert rep["n_wells_dropped"] == {"split": 1, "negcon": 2, "missing_moa": 1, "multi_moa": 1, "few_compounds": 1}
    assert rep["moas_dropped_few_compounds"] == ["b"]
    assert rep["n_output"] == 3 and rep["n_moas_output"] == 1
    out2, rep2 = filter_test_wells(df, min_compounds_per_moa=1)
    assert set(out2["Metadata_moa"]) == {"a", "b", "x|y"}
    assert rep2["n_wells_dropped"]["few_compounds"] == 0


def test_filter_on_lincs(lincs_raw):
    out, rep = filter_test_wells(lincs_raw)
    assert rep["n_wells_dropped"]["negcon"] == 24
    assert rep["n_wells_dropped"]["missing_moa"] == 18
    g = out.groupby("Metadata_moa")["Metadata_broad_sample"].nunique()
    assert (g >= 2).all() and rep["n_moas_output"] == len(g)


# --------------------------------------------------------------------------- helpers


def test_linear_quantile_sorted_matches_numpy():
    rng = np.random.default_rng(3)
    pct = [0, 0.3, 25, 50, 98.0, 98.2, 99.0, 99.8, 100]
    for n in (1, 2, 3, 10, 1001):
        v = np.sort(rng.normal(size=n).round(1))
        assert np.array_equal(linear_quantile_sorted(v, pct), np.percentile(v, pct))
        assert np.array_equal(linear_quantile_sorted(v, pct, repeat=2), np.percentile(np.repeat(v, 2), pct))
        w = rng.integers(0, 4, size=n)
        if w.sum() == 0:
            continue
        assert np.array_equal(
            linear_quantile_sorted(v, pct, cum_weights=np.cumsum(w)), np.percentile(np.repeat(v, w), pct)
        )


def test_weighted_prf_matches_sklearn():
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 60)
    p = rng.integers(0, 6, 60)
    w = rng.integers(0, 3, 60).astype(float)
    m = weighted_prf(y, p, 6, sample_weight=w)
    pr, rc, f1, _ = precision_recall_fscore_support(y, p, average="weighted", zero_division=0, sample_weight=w)
    assert m["precision"] == pytest.approx(pr) and m["recall"] == pytest.approx(rc) and m["f1"] == pytest.approx(f1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p, sample_weight=w))
