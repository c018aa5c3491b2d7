"""k-NN: hand-built tie cases, brute-force equality (random ties and real LINCS data), sklearn metrics."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from moa_core.evaluation import knn_curves, knn_from_similarity, pearson_similarity


def _brute_predict(sim: np.ndarray, y, i: int, k: int):
    """Reference: python sort (PCC desc, then lower index) + Counter; tie -> class of the nearest member."""
    others = sorted((j for j in range(len(y)) if j != i), key=lambda j: (-sim[i, j], j))
    labels = [y[j] for j in others[:k]]
    counts = Counter(labels)
    top = max(counts.values())
    tied = {c for c, v in counts.items() if v == top}
    return next(lab for lab in labels if lab in tied)


def _toy():
    # 0:A 1:B 2:A 3:A 4:B
    s = {
        (0, 1): 0.9,
        (0, 3): 0.8,
        (0, 2): 0.7,
        (0, 4): 0.1,
        (2, 1): 0.75,
        (2, 3): 0.75,
        (2, 4): 0.3,
        (1, 3): 0.2,
        (1, 4): 0.4,
        (3, 4): 0.0,
    }
    sim = np.eye(5)
    for (i, j), v in s.items():
        sim[i, j] = sim[j, i] = v
    return sim, np.array([0, 1, 0, 0, 1]), np.array(["A", "B"], dtype=object)


def test_toy_class_tie_rule():
    sim, y, classes = _toy()
    r = knn_from_similarity(sim, y, classes=classes)
    # query 0 ranking: 1(B) 3(A) 2(A) 4(B)
    assert [r.predictions(k)[0] for k in range(1, 5)] == ["B", "B", "A", "B"]


def test_toy_similarity_tie_lower_index_first():
    sim, y, classes = _toy()
    r = knn_from_similarity(sim, y, classes=classes)
    # query 2: wells 1(B) and 3(A) tie at 0.75 -> well 1 ranks first; then 0(A), 4(B)
    assert [r.predictions(k)[2] for k in range(1, 5)] == ["B", "B", "A", "B"]


def test_toy_metrics_match_sklearn():
    sim, y, classes = _toy()
    r = knn_from_similarity(sim, y, classes=classes)
    assert list(r.k) == [1, 2, 3, 4]
    for k in r.k:
        pred = r.pred_codes[k - 1]
        assert r.f1[k - 1] == pytest.approx(f1_score(y, pred, average="weighted", zero_division=0))
        assert r.precision[k - 1] == pytest.approx(precision_score(y, pred, average="weighted", zero_division=0))
        assert r.recall[k - 1] == pytest.approx(recall_score(y, pred, average="weighted", zero_division=0))
    best_val, best_k = r.best["f1"]
    assert best_val == pytest.approx(r.f1.max()) and best_k == int(np.argmax(r.f1)) + 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_tie_heavy_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, n_cls = 40, 4
    X = rng.integers(-2, 3, size=(n, 4)).astype(float)
    X[:, 0] += np.arange(n) % 3 + 0.5  # no constant rows; many exactly equal PCCs remain
    y = rng.integers(0, n_cls, n)
    sim = np.corrcoef(X)
    np.fill_diagonal(sim, 1.0)
    r = knn_from_similarity(sim, y, chunk_elements=n * 7)  # several query chunks
    for k in range(1, n):
        ref = [_brute_predict(sim, y, i, k) for i in range(n)]
        assert np.array_equal(r.pred_codes[k - 1], ref), k


def test_max_k_and_no_predictions():
    sim, y, classes = _toy()
    r = knn_from_similarity(sim, y, classes=classes, max_k=2, store_predictions=False)
    assert list(r.k) == [1, 2] and r.pred_codes is None
    with pytest.raises(ValueError):
        r.predictions(1)
    with pytest.raises(ValueError):
        knn_from_similarity(sim, y, max_k=5)


def test_curves_and_tidy(lincs_trt, lincs_features):
    r = knn_curves(lincs_trt, lincs_features, max_k=10)
    c = r.curves()
    assert list(c.columns) == ["k", "f1", "precision", "recall", "accuracy"] and len(c) == 10
    t = r.to_results("CP")
    assert set(t["metric"]) >= {"best_f1", "f1", "precision", "recall"}
    assert (t["n"] == len(lincs_trt)).all()


def test_lincs_matches_brute_force_and_sklearn(lincs_trt, lincs_features):
    df = lincs_trt
    n = len(df)
    res = knn_curves(df, lincs_features)
    assert len(res.k) == n - 1
    sim = pearson_similarity(df, lincs_features)
    moa = df["Metadata_moa"].astype(str).to_numpy()
    for k in (1, 2, 5, 17, n - 1):
        ref = np.array([_brute_predict(sim, moa, i, k) for i in range(n)], dtype=object)
        got = res.predictions(k)
        assert np.array_equal(got, ref), k
        assert res.f1[k - 1] == pytest.approx(f1_score(moa, ref, average="weighted", zero_division=0), abs=1e-12)
        assert res.precision[k - 1] == pytest.approx(
            precision_score(moa, ref, average="weighted", zero_division=0), abs=1e-12
        )
        assert res.recall[k - 1] == pytest.approx(
            recall_score(moa, ref, average="weighted", zero_division=0), abs=1e-12
        )
    # neighbour ranking on np.corrcoef similarities gives the same k=1 predictions
    ref_sim = np.corrcoef(df[lincs_features].to_numpy(dtype=float))
    ref1 = np.array([_brute_predict(ref_sim, moa, i, 1) for i in range(n)], dtype=object)
    assert np.array_equal(res.predictions(1), ref1)
