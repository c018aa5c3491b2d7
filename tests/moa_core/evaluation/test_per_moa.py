"""Per-MOA breakdown, confusion counts and the PCA map: known answers on hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import f1_score, precision_recall_fscore_support

from moa_core.errors import MoaInputError
from moa_core.evaluation import (
    common_test_wells,
    compare_per_moa,
    confusion_counts,
    embedding_map,
    evaluate_embeddings,
    filter_test_wells,
    moa_predictions,
    per_moa_breakdown,
    per_moa_metrics,
)
from moa_core.splits import well_holdout_split

MOAS = ("moa_a", "moa_b", "moa_c")


def _clusters(noise: float = 0.01, n_features: int = 32, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """3 MOAs x 2 compounds x 3 wells, each MOA a tight cluster around its own random centre."""
    rng = np.random.default_rng(seed)
    feats = [f"f{i:02d}" for i in range(n_features)]
    centres = rng.normal(size=(len(MOAS), n_features))
    rows, X = [], []
    for m, moa in enumerate(MOAS):
        for c in range(2):
            for r in range(3):
                rows.append(
                    {
                        "Metadata_Plate": f"P{r % 2}",
                        "Metadata_Well": f"{'ABC'[m]}{c * 3 + r + 1:02d}",
                        "Metadata_broad_sample": f"{moa}_cpd{c}",
                        "Metadata_pert_iname": f"{moa} {c}",
                        "Metadata_moa": moa,
                    }
                )
                X.append(centres[m] + noise * rng.normal(size=n_features))
    df = pd.DataFrame(rows)
    df[feats] = np.asarray(X)
    return df, feats


# ---- per_moa_metrics / confusion_counts on label vectors -------------------------------
def test_per_moa_metrics_known_answer_and_sklearn():
    t = ["a", "a", "b", "b", "c", "c", "c"]
    p = ["a", "b", "b", "b", "c", "a", "c"]
    out = per_moa_metrics(t, p).set_index("moa")
    # a: tp 1, predicted 2, n 2; b: tp 2, predicted 3, n 2; c: tp 2, predicted 2, n 3
    assert out.loc["a"].tolist() == pytest.approx([2, 0.5, 0.5, 0.5])
    assert out.loc["b"].tolist() == pytest.approx([2, 2 / 3, 1.0, 0.8])
    assert out.loc["c"].tolist() == pytest.approx([3, 1.0, 2 / 3, 0.8])
    assert out["n"].dtype == np.int64
    prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=["a", "b", "c"], zero_division=0)
    np.testing.assert_allclose(out[["precision", "recall", "f1"]].to_numpy().T, [prec, rec, f1])
    np.testing.assert_array_equal(out["n"], sup)
    # the support-weighted mean is the weighted F1 the suite reports
    assert (out["f1"] * out["n"]).sum() / out["n"].sum() == pytest.approx(f1_score(t, p, average="weighted"))


def test_per_moa_metrics_predicted_only_class_and_order():
    out = per_moa_metrics(["a", "a"], ["a", "z"], classes=["z", "a"])
    assert out["moa"].tolist() == ["z", "a"]
    z = out.iloc[0]
    assert z["n"] == 0 and z["precision"] == 0.0 and z["recall"] == 0.0 and z["f1"] == 0.0
    with pytest.raises(MoaInputError, match="not in classes"):
        per_moa_metrics(["a"], ["q"], classes=["a"])
    with pytest.raises(MoaInputError, match="2 true labels but 1"):
        per_moa_metrics(["a", "b"], ["a"])


def test_confusion_counts_lists_each_pair_once():
    t = ["a", "a", "b", "b", "b"]
    p = ["a", "b", "b", "b", "a"]
    out = confusion_counts(t, p)
    assert list(out.columns) == ["true_moa", "predicted_moa", "count"]
    got = {(r.true_moa, r.predicted_moa): r.count for r in out.itertuples()}
    assert got == {("a", "a"): 1, ("a", "b"): 1, ("b", "a"): 1, ("b", "b"): 2}
    assert out["count"].sum() == len(t)


# ---- breakdown of the k-NN vote and the class latent assignment ------------------------
def test_perfect_embedding_gives_diagonal_confusion_and_f1_one():
    df, feats = _clusters()
    per, conf = per_moa_breakdown(df, feats, k=3)
    assert set(per["analysis"]) == {"knn", "latent"}
    assert (per["f1"] == 1.0).all() and (per["precision"] == 1.0).all() and (per["n"] == 6).all()
    assert (conf["true_moa"] == conf["predicted_moa"]).all()
    assert conf.groupby("analysis")["count"].sum().tolist() == [18, 18]


def test_swapped_label_shows_off_diagonal():
    df, feats = _clusters()
    df.loc[0, "Metadata_moa"] = "moa_b"  # an moa_a-cluster well labelled moa_b
    per, conf = per_moa_breakdown(df, feats, k=3)
    for analysis in ("knn", "latent"):
        off = conf[(conf["analysis"] == analysis) & (conf["true_moa"] != conf["predicted_moa"])]
        assert off[["true_moa", "predicted_moa", "count"]].values.tolist() == [["moa_b", "moa_a", 1]]
        p = per[per["analysis"] == analysis].set_index("moa")
        assert p.loc["moa_b", "n"] == 7 and p.loc["moa_b", "recall"] == pytest.approx(6 / 7)
        assert p.loc["moa_a", "n"] == 5 and p.loc["moa_a", "precision"] == pytest.approx(5 / 6)
        assert p.loc["moa_c", "f1"] == 1.0


def test_default_k_and_f1_match_the_suite():
    df, feats = _clusters(noise=1.5, seed=3)
    ctrl = df.iloc[:2].copy()
    ctrl["Metadata_broad_sample"], ctrl["Metadata_moa"], ctrl["Metadata_Well"] = "DMSO", None, ["Z01", "Z02"]
    single = df.iloc[:1].copy()
    single["Metadata_broad_sample"], single["Metadata_moa"], single["Metadata_Well"] = "lonely", "moa_z", "Z03"
    wells = pd.concat([df, ctrl, single], ignore_index=True)
    suite = evaluate_embeddings(wells, feats, "X", run_map=False, n_boot=0)
    pr = moa_predictions(wells, feats)
    assert len(pr.wells) == 18 and "moa_z" not in set(pr.classes)  # DMSO and single-compound MOA filtered
    assert pr.k == suite.knn.best["f1"][1]
    np.testing.assert_array_equal(pr.predicted["knn"], suite.knn.predictions(pr.k))
    np.testing.assert_array_equal(pr.predicted["latent"], suite.latent.predictions())
    per, _ = per_moa_breakdown(wells, feats, predictions=pr)
    for analysis, expected in (("knn", suite.knn.best["f1"][0]), ("latent", suite.latent.f1)):
        g = per[per["analysis"] == analysis]
        assert (g["f1"] * g["n"]).sum() / g["n"].sum() == pytest.approx(expected)
    assert per_moa_breakdown(wells, feats, k=1)[1]["count"].sum() == 2 * 18
    with pytest.raises(MoaInputError, match="k must be in"):
        moa_predictions(wells, feats, k=18)


# ---- embedding map ----------------------------------------------------------------------
def test_embedding_map_is_pca_of_the_rows():
    df, feats = _clusters(noise=0.3)
    raw = embedding_map(df, feats, pcc_rows=False)
    ref = PCA(n_components=2, svd_solver="full").fit(df[feats].to_numpy())
    scores = ref.transform(df[feats].to_numpy())
    for i in range(2):
        col = raw[f"pc{i + 1}"].to_numpy()
        assert min(np.abs(col - scores[:, i]).max(), np.abs(col + scores[:, i]).max()) < 1e-8  # up to sign
        assert raw[f"explained_{i + 1}"].iloc[0] == pytest.approx(ref.explained_variance_ratio_[i])
    assert raw["Metadata_moa"].tolist() == df["Metadata_moa"].tolist()
    assert list(raw.columns) == [
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_pert_iname",
        "Metadata_moa",
        "pc1",
        "pc2",
        "explained_1",
        "explained_2",
    ]
    # MOA clusters are separated on the first two components
    assert raw.groupby("Metadata_moa")["pc1"].std().max() < raw["pc1"].std() / 2


def test_embedding_map_ignores_what_pcc_ignores():
    df, feats = _clusters(noise=0.3)
    shifted = df.copy()
    shifted[feats] = df[feats].to_numpy() * np.linspace(1, 5, len(df))[:, None] + np.arange(len(df))[:, None]
    a, b = embedding_map(df, feats), embedding_map(shifted, feats)
    np.testing.assert_allclose(a[["pc1", "pc2"]].abs(), b[["pc1", "pc2"]].abs(), atol=1e-9)
    raw_a, raw_b = embedding_map(df, feats, pcc_rows=False), embedding_map(shifted, feats, pcc_rows=False)
    assert not np.allclose(raw_a[["pc1", "pc2"]].abs(), raw_b[["pc1", "pc2"]].abs())


def test_embedding_map_missing_metadata_and_errors():
    df, feats = _clusters()
    out = embedding_map(df.drop(columns=["Metadata_pert_iname"]), feats)
    assert out["Metadata_pert_iname"].isna().all() and str(out["Metadata_pert_iname"].dtype) == "string"
    with pytest.raises(MoaInputError, match="2 features"):
        embedding_map(df, feats[:1])
    with pytest.raises(MoaInputError, match="X has shape"):
        embedding_map(df, feats, X=np.zeros((3, 3)))


def test_compare_per_moa_uses_the_common_test_wells():
    df, feats = _clusters(noise=0.5)
    big = pd.concat([df.assign(Metadata_Plate=df["Metadata_Plate"] + s) for s in ("x", "y", "z")], ignore_index=True)
    sp, _ = well_holdout_split(big.drop(columns=feats).assign(Metadata_single_moa=True), seed=0)
    test = sp[sp["Metadata_split"].eq("test") & sp["Metadata_eval_eligible"]]
    drop = test.iloc[0]
    other = big[~((big["Metadata_Plate"] == drop["Metadata_Plate"]) & (big["Metadata_Well"] == drop["Metadata_Well"]))]
    out = compare_per_moa({"A": big, "B": other.assign(**{f: other[f] * 2 for f in feats})}, sp, k={"A": 1, "B": 2})
    assert list(out.per_moa.columns) == ["method", "analysis", "moa", "n", "precision", "recall", "f1"]
    assert list(out.confusion.columns) == ["method", "analysis", "true_moa", "predicted_moa", "count"]
    assert list(out.maps.columns[:1]) == ["method"]
    common = common_test_wells(sp, {"A": big, "B": other})
    assert len(common) == len(test) - 1
    expected, _ = filter_test_wells(other.merge(common, on=["Metadata_Plate", "Metadata_Well"]))
    assert 0 < len(expected) < len(common)  # the suite's filter applies on top of the common wells
    n = out.per_moa.groupby(["method", "analysis"])["n"].sum()
    assert (n == len(expected)).all()
    assert out.maps.groupby("method").size().tolist() == [len(expected)] * 2
    for method in ("A", "B"):
        got = out.maps[out.maps["method"] == method][["Metadata_Plate", "Metadata_Well"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            got.astype(object), expected[["Metadata_Plate", "Metadata_Well"]].reset_index(drop=True).astype(object)
        )
