"""Seeded bootstrap confidence intervals for headline numbers.

Resampling scheme
-----------------
A bootstrap replicate draws ``n`` units with replacement (``numpy.random.default_rng(seed)``,
multinomial counts). Units are wells (``groups=None``) or clusters such as compounds
(``groups`` = cluster code per well: every well of a drawn cluster enters with the
cluster's multiplicity). A replicate is represented by per-well integer weights ``w``
(the multiplicities) instead of materialized copies, which makes the pair statistics
exact and cheap:

* pair statistics (intra/inter PCC, enrichment) use every pair of *distinct original
  wells* ``i < j`` with weight ``w_i * w_j`` - exactly the pairs of the expanded
  resample, except that copies of the same well are never paired with each other
  (they would be spurious PCC = 1 "replicates");
* query statistics (k-NN F1 at a fixed k, latent F1) keep each query's prediction
  (computed on the full data) and re-weight queries by ``w`` (sample-weighted
  precision/recall/F1, sklearn semantics). For k-NN the k is the best k on the full
  data (the selection of k is not redone inside replicates, so the interval is
  conditional on k).

CI: percentile interval ``[q_(1-c)/2, q_(1+c)/2]`` of the finite replicate values
(``np.percentile``, linear); replicates yielding NaN (e.g. an empty class of pairs) are
ignored and counted in ``n_invalid``. Cost: intra/inter is one ``(B, n) @ (n, n)``
product; enrichment is O(B * n^2) after one sort of the pairs (use fewer replicates,
e.g. 50-100, at n in the thousands); query metrics are O(B * n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import linear_quantile_sorted, weighted_prf
from ._pairs import upper_values
from .enrichment import odds_ratio

__all__ = [
    "BootstrapCI",
    "bootstrap_enrichment_odds_ratio",
    "bootstrap_intra_inter_delta",
    "bootstrap_query_metric",
    "bootstrap_weights",
    "percentile_ci",
]


@dataclass(frozen=True)
class BootstrapCI:
    """Point estimate with a percentile bootstrap interval."""

    estimate: float
    ci_low: float
    ci_high: float
    n_boot: int
    n_invalid: int
    confidence: float
    unit: str
    samples: np.ndarray


def bootstrap_weights(n_boot: int, n: int, seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """``(n_boot, n)`` float64 multiplicities of wells in each bootstrap replicate.

    ``groups=None``: ``n`` wells drawn with replacement. Otherwise ``groups`` holds a
    cluster code per well; ``G`` clusters are drawn with replacement and each well gets
    its cluster's multiplicity.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    codes, inv = np.unique(np.asarray(groups), return_inverse=True)
    g = len(codes)
    counts = rng.multinomial(g, np.full(g, 1.0 / g), size=n_boot).astype(np.float64)
    return counts[:, inv.reshape(-1)]


def percentile_ci(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float, int]:
    """``(low, high, n_invalid)`` percentile interval over the finite samples."""
    s = np.asarray(samples, dtype=np.float64)
    ok = np.isfinite(s)
    if not ok.any():
        return float("nan"), float("nan"), int((~ok).sum())
    alpha = (1 - confidence) / 2
    lo, hi = np.percentile(s[ok], [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi), int((~ok).sum())


def _finish(estimate: float, samples: np.ndarray, confidence: float, groups) -> BootstrapCI:
    lo, hi, bad = percentile_ci(samples, confidence)
    return BootstrapCI(
        float(estimate), lo, hi, len(samples), bad, confidence, "well" if groups is None else "cluster", samples
    )


def bootstrap_intra_inter_delta(
    sim: np.ndarray,
    moa_codes: np.ndarray,
    *,
    n_boot: int = 200,
    seed: int = 0,
    groups: np.ndarray | None = None,
    confidence: float = 0.95,
) -> BootstrapCI:
    """CI of ``delta = mean intra-MOA PCC - mean inter-MOA PCC`` (weighted-pair bootstrap)."""
    y = np.asarray(moa_codes)
    n = len(y)
    W = bootstrap_weights(n_boot, n, seed, groups)
    W_full = np.ones((1, n))
    diag = np.diagonal(sim)
    members = [np.flatnonzero(y == c) for c in np.unique(y)]

    def stats(Wm: np.ndarray) -> np.ndarray:
        s_all = (np.einsum("bi,bi->b", Wm @ sim, Wm) - (Wm * Wm) @ diag) / 2
        c_all = (Wm.sum(1) ** 2 - (Wm * Wm).sum(1)) / 2
        s_same = np.zeros(len(Wm))
        c_same = np.zeros(len(Wm))
        for idx in members:
            Wc = Wm[:, idx]
            block = sim[np.ix_(idx, idx)]
            s_same += (np.einsum("bi,bi->b", Wc @ block, Wc) - (Wc * Wc) @ np.diagonal(block)) / 2
            c_same += (Wc.sum(1) ** 2 - (Wc * Wc).sum(1)) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            return s_same / c_same - (s_all - s_same) / (c_all - c_same)

    est = float(stats(W_full)[0])
    return _finish(est, stats(W), confidence, groups)


def _pairs_from_flat(flat: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) of row-major upper-triangle positions ``flat`` (pairs i < j of an n x n matrix)."""
    rows = np.arange(n, dtype=np.int64)
    row_start = rows * n - rows * (rows + 1) // 2
    i = np.searchsorted(row_start, flat, side="right") - 1
    j = flat - row_start[i] + i + 1
    return i.astype(np.int32), j.astype(np.int32)


def bootstrap_enrichment_odds_ratio(
    sim: np.ndarray,
    moa_codes: np.ndarray,
    *,
    percentile: float = 99.0,
    convention: str = "paper",
    n_boot: int = 100,
    seed: int = 0,
    groups: np.ndarray | None = None,
    confidence: float = 0.95,
    candidate_fraction: float | None = None,
) -> BootstrapCI:
    """CI of the enrichment odds ratio at one percentile.

    In each replicate the threshold is the linear-interpolated percentile of the
    *weighted* pair multiset (pair ``(i, j)`` present ``w_i w_j`` times; doubled for the
    ``"cytominer-eval"`` convention), strong = ``> threshold``, and the 2x2 counts are
    weighted pair counts; odds ratio / zero-cell rules as in
    :mod:`moa_core.evaluation.enrichment`.

    Speed: only the top ``candidate_fraction`` of pairs (default ``4 * (1 - p/100) + 1%``)
    is sorted and re-weighted per replicate; weighted totals of all pairs and of
    same-MOA pairs come from O(n) class sums. When a replicate's threshold would fall
    below the candidate set, every replicate is recomputed over all pairs, so the result
    is always exact.
    """
    y = np.asarray(moa_codes)
    n = len(y)
    q = float(percentile) / 100.0
    vals_all = upper_values(sim)  # row-major i < j
    m = len(vals_all)
    frac = min(1.0, 4.0 * (1.0 - q) + 0.01) if candidate_fraction is None else float(candidate_fraction)
    k = int(min(m, max(1, np.ceil(frac * m))))
    kw = dict(
        percentile=percentile, convention=convention, n_boot=n_boot, seed=seed, groups=groups, confidence=confidence
    )
    if k < m:
        cutoff = np.partition(vals_all, m - k)[m - k]
        flat = np.flatnonzero(vals_all >= cutoff)
        flat = flat[np.argsort(vals_all[flat], kind="stable")]
        res = enrichment_or_from_candidates(vals_all[flat], flat, y, n, **kw)
        if res is not None:
            return res
    flat = np.argsort(vals_all, kind="stable")
    res = enrichment_or_from_candidates(vals_all[flat], flat, y, n, **kw)
    assert res is not None  # every pair is a candidate
    return res


def enrichment_or_from_candidates(
    vals: np.ndarray,
    flat: np.ndarray,
    y: np.ndarray,
    n: int,
    *,
    percentile: float,
    convention: str,
    n_boot: int,
    seed: int,
    groups: np.ndarray | None,
    confidence: float,
) -> BootstrapCI | None:
    """The odds-ratio bootstrap from the candidate pairs (``vals`` ascending, ``flat`` their row-major upper
    positions; the top of all pairs); None when some replicate's threshold falls below the candidates
    (the caller then widens them)."""
    n_cls = int(y.max()) + 1
    q = float(percentile) / 100.0
    rep = 1 if convention == "paper" else 2
    ci, cj = _pairs_from_flat(np.asarray(flat), n)
    same = y[ci] == y[cj]

    def one(w: np.ndarray) -> float | None:
        sw, sw2 = w.sum(), (w * w).sum()
        total = (sw * sw - sw2) / 2
        cs, cs2 = np.bincount(y, weights=w, minlength=n_cls), np.bincount(y, weights=w * w, minlength=n_cls)
        tot_same = ((cs * cs - cs2) / 2).sum()
        if total == 0:
            return float("nan")
        n_e = rep * total
        lo = np.floor((n_e - 1) * q)
        pw = w[ci] * w[cj]
        offset = n_e - rep * pw.sum()  # expanded positions below the candidate set
        if lo < offset:
            return None
        cw = offset + np.cumsum(pw * rep)
        thr = linear_quantile_sorted(vals, [percentile], cum_weights=cw)[0]
        cut = np.searchsorted(vals, thr, side="right")
        a = (pw[cut:] * same[cut:]).sum()
        strong = pw[cut:].sum()
        b = strong - a
        return odds_ratio(a, b, tot_same - a, total - tot_same - b)

    est = one(np.ones(n))
    if est is None:
        return None
    samples = []
    for w in bootstrap_weights(n_boot, n, seed, groups):
        v = one(w)
        if v is None:
            return None
        samples.append(v)
    return _finish(est, np.array(samples), confidence, groups)


def bootstrap_query_metric(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    *,
    metric: str = "f1",
    n_boot: int = 200,
    seed: int = 0,
    groups: np.ndarray | None = None,
    confidence: float = 0.95,
) -> BootstrapCI:
    """CI of a weighted precision/recall/F1/accuracy of fixed per-query predictions."""
    if metric not in ("f1", "precision", "recall", "accuracy"):
        raise ValueError(f"unknown metric {metric!r}")
    y_true = np.asarray(y_true, dtype=np.intp)
    y_pred = np.asarray(y_pred, dtype=np.intp)
    W = bootstrap_weights(n_boot, len(y_true), seed, groups)
    est = float(weighted_prf(y_true, y_pred, n_classes)[metric])
    samples = np.array([weighted_prf(y_true, y_pred, n_classes, sample_weight=w)[metric] for w in W])
    return _finish(est, samples, confidence, groups)
