"""Straightforward reference implementation of the paper's embedding analyses (benchmark only).

Deliberately naive, written the way the Methods read: one ``np.corrcoef`` call per
well pair, Python loops over pairs for every enrichment threshold, and for every
query and every k a fresh ``Counter`` majority vote over the k nearest neighbours.
It shares the library's documented conventions (unordered / ordered pairs,
``np.percentile`` linear thresholds, strict ``>``; neighbours ranked by PCC
descending then lower index; class ties -> the tied class whose nearest member ranks
first; latent ties -> lowest class name) so outputs can be compared exactly.

Never imported by the library.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.stats import fisher_exact
from sklearn.metrics import precision_recall_fscore_support


def pcc_matrix_pairwise(X: np.ndarray) -> np.ndarray:
    """PCC of every pair via ``np.corrcoef`` on the two rows (upper triangle, mirrored)."""
    n = X.shape[0]
    sim = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            sim[i, j] = sim[j, i] = np.corrcoef(X[i], X[j])[0, 1]
    return sim


def enrichment_reference(sim: np.ndarray, labels, percentiles, ordered: bool = False) -> list[dict]:
    """2x2 tables, odds ratios and one-sided Fisher p per percentile, by looping over pairs."""
    n = len(labels)
    pairs = []
    for i in range(n):
        for j in range(n):
            if i == j or (not ordered and j < i):
                continue
            pairs.append((sim[i, j], labels[i] == labels[j]))
    values = np.array([p[0] for p in pairs])
    out = []
    for p in percentiles:
        thr = np.percentile(values, p)
        a = b = c = d = 0
        for s, same in pairs:
            if s > thr:
                if same:
                    a += 1
                else:
                    b += 1
            elif same:
                c += 1
            else:
                d += 1
        if b * c > 0:
            odds = (a * d) / (b * c)
        else:
            odds = float("inf") if a * d > 0 else float("nan")
        pval = fisher_exact([[a, b], [c, d]], alternative="greater").pvalue
        out.append(
            {"percentile": p, "threshold": thr, "a": a, "b": b, "c": c, "d": d, "odds_ratio": odds, "p_value": pval}
        )
    return out


def intra_inter_reference(sim: np.ndarray, labels) -> tuple[float, float]:
    """Mean PCC over same-MOA and different-MOA unordered pairs (loops)."""
    same, diff = [], []
    n = len(labels)
    for i in range(n):
        for j in range(i + 1, n):
            (same if labels[i] == labels[j] else diff).append(sim[i, j])
    return float(np.mean(same)), float(np.mean(diff))


def knn_reference(sim: np.ndarray, labels) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """Predictions for every k = 1..N-1 (array (N-1, N)) and weighted (precision, recall, F1) per k."""
    n = len(labels)
    preds = np.empty((n - 1, n), dtype=object)
    for i in range(n):
        ranked = sorted((j for j in range(n) if j != i), key=lambda j: (-sim[i, j], j))
        ranked_labels = [labels[j] for j in ranked]
        for k in range(1, n):
            window = ranked_labels[:k]
            counts = Counter(window)
            top = max(counts.values())
            tied = {c for c, v in counts.items() if v == top}
            preds[k - 1, i] = next(lab for lab in window if lab in tied)
    metrics = []
    for k in range(1, n):
        p, r, f, _ = precision_recall_fscore_support(labels, list(preds[k - 1]), average="weighted", zero_division=0)
        metrics.append((p, r, f))
    return preds, metrics


def latent_reference(X: np.ndarray, labels) -> list:
    """Leave-one-out MLE assignment: per query, recompute its class median without it."""
    labels = list(labels)
    classes = sorted(set(labels))
    full = {c: np.median(X[[i for i, lab in enumerate(labels) if lab == c]], axis=0) for c in classes}
    preds = []
    for i, own in enumerate(labels):
        best, best_s = None, -np.inf
        for c in classes:  # sorted -> strict '>' keeps the lowest name on ties
            if c == own:
                idx = [j for j, lab in enumerate(labels) if lab == c and j != i]
                if not idx:
                    continue
                mle = np.median(X[idx], axis=0)
            else:
                mle = full[c]
            s = np.corrcoef(X[i], mle)[0, 1]
            if s > best_s:
                best, best_s = c, s
        preds.append(best)
    return preds


def three_groups_reference(sim: np.ndarray, compounds, labels) -> dict[str, float]:
    """Mean PCC of same-compound / different-compound-same-MOA / different-MOA pairs."""
    g: dict[str, list[float]] = {"same_compound": [], "diff_compound_same_moa": [], "diff_moa": []}
    n = len(labels)
    for i in range(n):
        for j in range(i + 1, n):
            if compounds[i] == compounds[j]:
                g["same_compound"].append(sim[i, j])
            elif labels[i] == labels[j]:
                g["diff_compound_same_moa"].append(sim[i, j])
            else:
                g["diff_moa"].append(sim[i, j])
    return {k: float(np.mean(v)) for k, v in g.items()}
