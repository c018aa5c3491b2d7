"""Class latent assignment, logistic regression and compound holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_recall_fscore_support

from moa_core.evaluation import (
    class_latent_assignment,
    compound_holdout_eval,
    latent_from_array,
    leave_one_out_medians,
    logistic_regression_eval,
)
from moa_core.splits import choose_holdout_compounds


def _pcc(a, b):
    return float(np.corrcoef(a, b)[0, 1])


# --------------------------------------------------------------------------- latent


def test_loo_medians_match_np_median():
    rng = np.random.default_rng(0)
    for n in (2, 3, 4, 7, 10):
        X = rng.normal(size=(n, 6)).round(1)  # with ties
        ref = np.array([np.median(np.delete(X, i, axis=0), axis=0) for i in range(n)])
        assert np.array_equal(leave_one_out_medians(X), ref)


def test_latent_two_well_class_hand_computed():
    # class a: 2 wells -> each query's own LOO MLE is the *other* a-well
    a1 = np.array([1.0, 2.0, 3.0, 4.0])
    a2 = np.array([1.0, 2.0, 3.0, 5.0])
    b = np.array([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 1.0, 1.0], [3.0, 3.0, 2.0, 0.0]])
    X = np.vstack([a1, a2, b])
    y = np.array([0, 0, 1, 1, 1])
    r = latent_from_array(X, y, np.array(["a", "b"], dtype=object))
    mle_b = np.median(b, axis=0)
    assert _pcc(a1, a2) > _pcc(a1, mle_b)
    assert r.predictions()[0] == "a" and r.predictions()[1] == "a"
    # b-queries use the median of the two other b wells
    for i in (2, 3, 4):
        loo = np.median(np.delete(b, i - 2, axis=0), axis=0)
        mle_a = np.median(X[:2], axis=0)
        expected = "b" if _pcc(X[i], loo) > _pcc(X[i], mle_a) else "a"
        assert r.predictions()[i] == expected
    assert r.n_singleton_queries == 0


def test_latent_tie_goes_to_lowest_class_name():
    # classes "a" and "b" have identical wells -> identical MLEs -> exact PCC tie for other queries
    w1 = np.array([0.0, 1.0, 0.0, 2.0, 1.0])
    w2 = np.array([0.5, 1.0, 0.0, 2.0, 1.0])
    m = np.median(np.vstack([w1, w2]), axis=0)
    q1 = m + np.array([0.0, 0.0, 0.1, 0.0, 0.0])  # class "c", close to the a/b MLE
    q2 = np.array([2.0, 0.0, 1.0, 0.0, 0.5])  # class "c", far from q1
    X = np.vstack([w1, w2, w1, w2, q1, q2])
    y = np.array([1, 1, 0, 0, 2, 2])  # rows 0-1 "b", rows 2-3 "a", rows 4-5 "c"
    r = latent_from_array(X, y, np.array(["a", "b", "c"], dtype=object))
    assert _pcc(q1, m) > _pcc(q1, q2)  # own (leave-one-out) class loses
    assert r.predictions()[4] == "a"  # exact tie between "a" and "b" -> lowest name


def test_latent_singleton_class_counted():
    X = np.array([[1.0, 2, 3, 4], [1, 2, 3, 5], [4, 3, 2, 1]])
    r = latent_from_array(X, np.array([0, 0, 1]), np.array(["a", "b"], dtype=object))
    assert r.n_singleton_queries == 1
    assert r.predictions()[2] == "a"  # own class has no LOO MLE


def test_latent_lincs_matches_brute_force_and_sklearn(lincs_trt, lincs_features):
    df = lincs_trt
    r = class_latent_assignment(df, lincs_features)
    X = df[lincs_features].to_numpy(dtype=float)
    moa = df["Metadata_moa"].astype(str).to_numpy()
    classes = np.unique(moa)
    full = {c: np.median(X[moa == c], axis=0) for c in classes}
    rng = np.random.default_rng(0)
    for i in rng.choice(len(df), size=25, replace=False):
        scores = []
        for c in classes:
            if c == moa[i]:
                idx = [j for j in np.flatnonzero(moa == c) if j != i]
                if not idx:
                    scores.append(-np.inf)
                    continue
                m = np.median(X[idx], axis=0)
            else:
                m = full[c]
            scores.append(_pcc(X[i], m))
        assert r.predictions()[i] == classes[int(np.argmax(scores))]
    p, rc, f, _ = precision_recall_fscore_support(moa, r.predictions(), average="weighted", zero_division=0)
    assert (r.f1, r.precision, r.recall) == pytest.approx((f, p, rc), abs=1e-12)


# --------------------------------------------------------------------------- logistic


def test_logistic_regression_on_synthetic(synthetic_factory):
    df, feats = synthetic_factory(seed=1, wells_per_cpd=6, n_dmso=9)
    is_test = np.arange(len(df)) % 3 == 0
    train, test = df[~is_test], df[is_test]
    r = logistic_regression_eval(train, test, feats)
    assert r.n_test == (test["Metadata_broad_sample"] != "DMSO").sum()
    assert "DMSO" in set(r.classes)
    p, rc, f, _ = precision_recall_fscore_support(r.y_true, r.y_pred, average="weighted", zero_division=0)
    assert (r.f1, r.precision, r.recall) == pytest.approx((f, p, rc))
    assert r.accuracy > 0.5  # strong synthetic signal
    r2 = logistic_regression_eval(train, test, feats, train_include_negcon=False)
    assert "DMSO" not in set(r2.classes)
    assert list(r.to_results("M")["metric"]) == ["f1", "precision", "recall", "accuracy"]


def test_logistic_missing_test_moa_raises(synthetic_factory):
    train, feats = synthetic_factory(seed=1)
    test = train.copy()
    test.loc[0, "Metadata_moa"] = None
    with pytest.raises(ValueError, match="missing label"):
        logistic_regression_eval(train, test, feats)


# --------------------------------------------------------------------------- holdout


def test_holdout_split_deterministic(synthetic_factory):
    df, _ = synthetic_factory(n_moa=5, cpd_per_moa=3)
    df.loc[df["Metadata_moa"] == "moa_4", "Metadata_broad_sample"] = "single"
    s1 = choose_holdout_compounds(df, seed=3)
    assert s1 == choose_holdout_compounds(df, seed=3)
    assert sorted(s1) == ["moa_0", "moa_1", "moa_2", "moa_3"]  # moa_4 has one compound
    for m, c in s1.items():
        assert c.startswith(m.replace("moa", "cpd"))
    splits = {tuple(choose_holdout_compounds(df, seed=s).values()) for s in range(10)}
    assert len(splits) > 1


def _holdout_data():
    # 3 MOAs with clear directions in 6-D; training compounds near them
    base = {
        "A": np.array([5.0, 0, 0, 1, 0, 0]),
        "B": np.array([0, 5.0, 0, 0, 1, 0]),
        "C": np.array([0, 0, 5.0, 0, 0, 1]),
    }
    rng = np.random.default_rng(0)
    rows = []
    for m, v in base.items():
        for c in range(2):
            for _ in range(3):
                x = v + rng.normal(0, 0.3, 6)
                rows.append({"Metadata_moa": m, "Metadata_broad_sample": f"tr_{m}{c}", **dict(enumerate(x))})
    train = pd.DataFrame(rows)
    held = pd.DataFrame(
        [
            # compound hA (true A): one clear A well, one well slightly closer to B -> 1-1 vote tie, mean PCC favours A
            {"Metadata_moa": "A", "Metadata_broad_sample": "hA", **dict(enumerate(base["A"] + 0.1))},
            {
                "Metadata_moa": "A",
                "Metadata_broad_sample": "hA",
                **dict(enumerate(0.45 * base["A"] + 0.55 * base["B"])),
            },
            # compound hB (true B): wells clearly C -> wrong at top-1
            {"Metadata_moa": "B", "Metadata_broad_sample": "hB", **dict(enumerate(base["C"] + 0.2))},
            {"Metadata_moa": "B", "Metadata_broad_sample": "hB", **dict(enumerate(base["C"] - 0.1))},
            {"Metadata_moa": "B", "Metadata_broad_sample": "DMSO", **dict(enumerate(np.arange(6.0)))},
        ]
    )
    feats = list(range(6))
    train.columns = [str(c) for c in train.columns]
    held.columns = [str(c) for c in held.columns]
    return train, held, [str(f) for f in feats]


def test_compound_holdout_votes_and_topk():
    train, held, feats = _holdout_data()
    r = compound_holdout_eval(train, held, feats, max_k=3)
    assert r.n_classes == 3 and r.n_true_moa_without_mle == 0
    p = r.predictions.set_index(["scheme", "compound"])
    assert p.loc[("individual", "hA"), "predicted_moa"] == "A"
    assert p.loc[("aggregated", "hA"), "predicted_moa"] == "A"
    assert p.loc[("individual", "hB"), "predicted_moa"] == "C"
    assert p.loc[("aggregated", "hB"), "predicted_moa"] == "C"
    tk = r.top_k.set_index(["scheme", "k"])
    assert tk.loc[("individual", 1), "accuracy"] == 0.5
    assert tk.loc[("individual", 3), "accuracy"] == 1.0
    assert tk.loc[("aggregated", 2), "random_baseline"] == pytest.approx(2 / 3)
    s = r.scores.set_index("scheme")
    assert s.loc["individual", "accuracy"] == 0.5
    tidy = r.to_results("MP")
    assert set(tidy["analysis"]) == {"holdout_individual", "holdout_aggregated"}


def test_compound_holdout_vote_tie_broken_by_mean_pcc():
    train, held, feats = _holdout_data()
    X_tr = train[feats].to_numpy()
    mle = {m: np.median(X_tr[train["Metadata_moa"] == m], axis=0) for m in "ABC"}
    wells = held[held["Metadata_broad_sample"] == "hA"][feats].to_numpy()
    votes = [max("ABC", key=lambda m: _pcc(w, mle[m])) for w in wells]
    assert sorted(votes) == ["A", "B"]  # a genuine 1-1 tie
    mean_a = np.mean([_pcc(w, mle["A"]) for w in wells])
    mean_b = np.mean([_pcc(w, mle["B"]) for w in wells])
    assert mean_a > mean_b


def test_compound_holdout_overlap_raises():
    train, held, feats = _holdout_data()
    held.loc[0, "Metadata_broad_sample"] = "tr_A0"
    with pytest.raises(ValueError, match="both in training and held out"):
        compound_holdout_eval(train, held, feats)
