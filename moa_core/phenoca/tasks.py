"""The four Pheno-CA tasks as model-agnostic metrics on arrays.

Linsley et al. ("Neural scaling laws for phenotypic drug discovery", Methods): MoA and
target deconvolution are scored by top-10 accuracy, molecule deconvolution by the
categorical cross-entropy, compound discovery by the area under the curve of true hits
found vs compounds tested. The caller passes class scores (any monotone score:
logits, probabilities, similarities) or representations; nothing here trains a model.

Definitions
-----------
*Rank of the true class* of a row of ``scores``: ``1 + #{c : s_c > s_true} + #{c < true
: s_c == s_true}`` — classes sorted by descending score, exact ties broken by class index
(``numpy.argsort(-scores, kind="stable")``). *Top-k hit*: rank <= k; *top-k accuracy*: the
mean of hits.

*Chance of top-k*, two rules: ``chance`` (the "frequent-class" baseline) is the accuracy of
always guessing the ``k`` classes most frequent in the *training* labels (counts
descending, ties by position in ``classes``) on *these test labels* — the right baseline
under class imbalance; ``chance_uniform`` is ``min(1, k / n_classes)``, the expectation of
a random guess.

*Bootstrap CI*: percentile interval of the metric over ``n_boot`` resamples of the test
wells with replacement (:func:`moa_core.evaluation.bootstrap.bootstrap_weights`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

from moa_core.errors import MoaInputError
from moa_core.evaluation.bootstrap import bootstrap_weights, percentile_ci

__all__ = [
    "aggregate_by",
    "brute_force_discovery_ranks",
    "compound_discovery",
    "deconvolution_metrics",
    "frequent_class_chance",
    "molecule_metrics",
    "molecule_metrics_from_ranks",
    "summarize_discovery",
    "topk_accuracy",
    "true_class_rank",
]


# ---------------------------------------------------------------------------------------
# Deconvolution (MoA, target, molecule)
# ---------------------------------------------------------------------------------------


def _scores_and_labels(scores: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y_true)
    if s.ndim != 2:
        raise MoaInputError(f"scores must be 2-D (n_wells, n_classes), got shape {s.shape}")
    if y.shape != (s.shape[0],):
        raise MoaInputError(f"y_true has shape {y.shape}, scores have {s.shape[0]} rows")
    if not np.issubdtype(y.dtype, np.integer):
        raise MoaInputError(
            f"y_true must hold integer class indices (dtype {y.dtype}); map labels with "
            f"deconvolution_metrics(classes=...)"
        )
    if len(y) and (y.min() < 0 or y.max() >= s.shape[1]):
        raise MoaInputError(f"y_true has class indices outside [0, {s.shape[1]})")
    if np.isnan(s).any():
        r = int(np.argwhere(np.isnan(s))[0, 0])
        raise MoaInputError(f"scores contain NaN (first in row {r})")
    return s, y.astype(np.intp)


def true_class_rank(scores: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """1-based rank of each row's true class (descending score, ties by class index)."""
    s, y = _scores_and_labels(scores, y_true)
    st = s[np.arange(len(y)), y][:, None]
    idx = np.arange(s.shape[1])[None, :]
    return 1 + (s > st).sum(axis=1) + ((s == st) & (idx < y[:, None])).sum(axis=1)


def topk_accuracy(scores: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Share of rows whose true class (integer index) is among the ``k`` highest scores.

    Ties: see the module docstring (by class index). ``k >= n_classes`` gives 1.
    """
    if int(k) < 1:
        raise MoaInputError(f"k must be >= 1, got {k}")
    r = true_class_rank(scores, y_true)
    if not len(r):
        raise MoaInputError("no test rows")
    return float(np.mean(r <= k))


def _frequent_guess(train_labels: Sequence, classes: Sequence, k: int) -> np.ndarray:
    """Boolean per class: among the ``k`` most frequent training classes (ties by position)."""
    vc = pd.Series(list(train_labels), dtype=object).value_counts()
    counts = np.array([int(vc.get(c, 0)) for c in classes], np.int64)
    guess = np.zeros(len(classes), bool)
    guess[np.lexsort((np.arange(len(classes)), -counts))[:k]] = True
    return guess


def frequent_class_chance(y_true: Sequence, train_labels: Sequence, classes: Sequence, k: int) -> float:
    """Accuracy of always guessing the ``k`` most frequent training classes on ``y_true``.

    ``y_true`` and ``train_labels`` are labels (elements of ``classes``). Classes are
    ranked by training count (descending), ties by position in ``classes``; classes
    absent from training come last (count 0).
    """
    classes = list(classes)
    y = _label_indices(list(y_true), classes)
    return float(_frequent_guess(train_labels, classes, k)[y].mean()) if len(y) else float("nan")


def _label_indices(y_true: Sequence, classes: Sequence) -> np.ndarray:
    pos = {c: i for i, c in enumerate(classes)}
    if len(pos) != len(classes):
        raise MoaInputError("classes has duplicate entries")
    missing = sorted({str(y) for y in y_true if y not in pos})
    if missing:
        raise MoaInputError(
            f"test label(s) {missing[:5]} are not among the score columns (classes); a model cannot predict them"
        )
    return np.array([pos[y] for y in y_true], dtype=np.intp)


def _boot_mean(hits: np.ndarray, n_boot: int, seed: int, confidence: float = 0.95) -> tuple[float, float]:
    if n_boot < 1 or len(hits) == 0:
        return float("nan"), float("nan")
    w = bootstrap_weights(n_boot, len(hits), seed)
    lo, hi, _ = percentile_ci(w @ hits / len(hits), confidence)
    return lo, hi


def deconvolution_metrics(
    scores: np.ndarray,
    y_true: Sequence,
    classes: Sequence,
    train_labels: Sequence,
    *,
    ks: Iterable[int] = (1, 10),
    n_boot: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """MoA/target deconvolution: top-k accuracy with bootstrap CI and both chance rules.

    Parameters
    ----------
    scores
        ``(n_test_wells, n_classes)``; column ``j`` scores ``classes[j]``.
    y_true
        True label per test well (elements of ``classes``).
    classes
        Label of each score column.
    train_labels
        Labels of the training wells (for the frequent-class chance).

    Returns
    -------
    pandas.DataFrame
        Columns ``metric, k, value, ci_low, ci_high, chance, n``; per ``k``:
        ``top_k_accuracy`` (value, bootstrap CI, ``chance`` = the frequent-class chance),
        ``chance_frequent`` (the frequent-class chance as a value, with its bootstrap CI over
        the same resamples) and ``chance_uniform`` (``min(1, k / n_classes)``, no CI).

    Raises
    ------
    MoaInputError
        Shape mismatches; test labels not in ``classes``; NaN scores.
    """
    classes = list(classes)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != len(classes):
        raise MoaInputError(f"scores have shape {s.shape}, expected (n_wells, {len(classes)}) for the classes")
    yl = list(y_true)
    y = _label_indices(yl, classes)
    rank = true_class_rank(s, y)
    rows = []
    for k in ks:
        k = int(k)
        if k < 1:
            raise MoaInputError(f"k must be >= 1, got {k}")
        hits = (rank <= k).astype(np.float64)
        fh = _frequent_guess(train_labels, classes, k)[y].astype(np.float64)  # frequent-class hits
        chance = float(fh.mean())
        lo, hi = _boot_mean(hits, n_boot, seed, confidence)
        rows.append(("top_k_accuracy", k, float(hits.mean()), lo, hi, chance, len(y)))
        flo, fhi = _boot_mean(fh, n_boot, seed, confidence)
        rows.append(("chance_frequent", k, chance, flo, fhi, chance, len(y)))
        u = min(1.0, k / len(classes))
        rows.append(("chance_uniform", k, u, float("nan"), float("nan"), u, len(y)))
    return pd.DataFrame(rows, columns=["metric", "k", "value", "ci_low", "ci_high", "chance", "n"])


def molecule_metrics(
    probs: np.ndarray,
    y_true: np.ndarray,
    ks: Iterable[int] = (1, 5, 10),
    *,
    eps: float = 1e-15,
    atol: float = 1e-3,
) -> pd.DataFrame:
    """Molecule deconvolution: categorical cross-entropy and top-k accuracy.

    ``CE = mean_i -log(clip(p_i,true, eps, 1))`` (natural log; equals
    ``sklearn.metrics.log_loss(y_true, probs, labels=range(n_classes))`` for rows that sum
    to 1 and probabilities above ``eps``). Chance: ``log(n_classes)`` for CE (the uniform
    prediction), ``min(1, k / n_classes)`` for top-k.

    Parameters
    ----------
    probs
        ``(n_wells, n_classes)`` probabilities (rows must sum to 1 within ``atol``: apply a
        softmax to logits first).
    y_true
        Integer class index per row.

    Returns
    -------
    DataFrame ``metric, k, value, chance``: ``cross_entropy`` (k = <NA>), then
    ``top_k_accuracy`` per k.
    """
    p, y = _scores_and_labels(probs, y_true)
    if not len(y):
        raise MoaInputError("no test rows")
    if (p < 0).any() or not np.isfinite(p).all():
        raise MoaInputError("probs must be finite and non-negative probabilities; apply a softmax to logits first")
    bad = np.abs(p.sum(axis=1) - 1.0) > atol
    if bad.any():
        raise MoaInputError(
            f"probs row {int(np.argmax(bad))} sums to {p[int(np.argmax(bad))].sum():.4g}, not 1 "
            f"({int(bad.sum())} rows); apply a softmax first"
        )
    return molecule_metrics_from_ranks(p[np.arange(len(y)), y], true_class_rank(p, y), p.shape[1], ks, eps=eps)


def molecule_metrics_from_ranks(
    p_true: np.ndarray, rank: np.ndarray, n_classes: int, ks: Iterable[int] = (1, 5, 10), *, eps: float = 1e-15
) -> pd.DataFrame:
    """:func:`molecule_metrics` from each row's true-class probability and rank (computed block-wise when the
    ``(n_wells, n_classes)`` matrix is too large, e.g. ~100,000 molecules)."""
    if not len(rank):
        raise MoaInputError("no test rows")
    pt = np.clip(np.asarray(p_true, dtype=np.float64), eps, 1.0)
    rows = [("cross_entropy", pd.NA, float(np.mean(-np.log(pt))), float(np.log(n_classes)))]
    rank = np.asarray(rank)
    for k in ks:
        rows.append(("top_k_accuracy", int(k), float(np.mean(rank <= int(k))), min(1.0, int(k) / n_classes)))
    out = pd.DataFrame(rows, columns=["metric", "k", "value", "chance"])
    out["k"] = out["k"].astype("Int64")
    return out


# ---------------------------------------------------------------------------------------
# Compound discovery
# ---------------------------------------------------------------------------------------


def aggregate_by(ids: Sequence, reps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean representation per id: ``(sorted unique ids, (n_ids, d) float64 means)``."""
    x = np.asarray(reps, dtype=np.float64)
    ids = np.asarray(ids)
    if x.ndim != 2 or len(ids) != len(x):
        raise MoaInputError(f"reps must be 2-D with one row per id; got {x.shape} for {len(ids)} ids")
    codes, uniq = pd.factorize(pd.Series(ids), sort=True)
    if (codes < 0).any():
        raise MoaInputError("ids contain missing values")
    sums = np.zeros((len(uniq), x.shape[1]))
    np.add.at(sums, codes, x)
    return np.asarray(uniq), sums / np.bincount(codes)[:, None]


def _target_sets(compound_targets: Sequence) -> list[frozenset]:
    out = []
    for t in compound_targets:
        if t is None or (isinstance(t, float) and np.isnan(t)) or t is pd.NA:
            out.append(frozenset())
        elif isinstance(t, str):
            out.append(frozenset([t]))
        else:
            out.append(frozenset(str(v) for v in t))
    return out


def _tie_keys(n: int, seed: int) -> np.ndarray:
    """Random tie-break key per compound (a permutation of 0..n-1 from ``seed``)."""
    return np.random.default_rng(seed).permutation(n)


def _check_discovery_inputs(query_reps, query_genes, compound_reps, compound_targets, metric):
    q = np.asarray(query_reps, dtype=np.float64)
    c = np.asarray(compound_reps, dtype=np.float64)
    genes = [str(g) for g in query_genes]
    if metric not in ("cosine", "euclidean"):
        raise MoaInputError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    if q.ndim != 2 or c.ndim != 2 or q.shape[1] != c.shape[1]:
        raise MoaInputError(f"query_reps {q.shape} and compound_reps {c.shape} must be 2-D with the same width")
    if len(genes) != len(q):
        raise MoaInputError(f"{len(genes)} query genes for {len(q)} query rows")
    dup = pd.Series(genes)[pd.Series(genes).duplicated()].unique()
    if len(dup):
        raise MoaInputError(
            f"query gene(s) {list(dup[:5])} occur more than once; pass one row per knockout "
            f"(aggregate wells with aggregate_by)"
        )
    targets = _target_sets(compound_targets)
    if len(targets) != len(c):
        raise MoaInputError(f"{len(targets)} compound targets for {len(c)} compound rows")
    if not (np.isfinite(q).all() and np.isfinite(c).all()):
        raise MoaInputError("representations contain NaN/inf")
    return q, c, genes, targets


def _distances(q: np.ndarray, c: np.ndarray, metric: str) -> np.ndarray:
    if metric == "euclidean":
        return cdist(q, c, "euclidean")
    nq, nc = np.linalg.norm(q, axis=1), np.linalg.norm(c, axis=1)
    qn = q / np.where(nq > 0, nq, 1.0)[:, None]
    cn = c / np.where(nc > 0, nc, 1.0)[:, None]
    return 1.0 - qn @ cn.T


def _auc_from_ranks(ranks: np.ndarray, n: int) -> float:
    h = len(ranks)
    if h == 0 or h == n:
        return float("nan")
    # Mann-Whitney: share of (hit, non-hit) pairs with the hit tested first
    before = (n - h) * h - (np.sum(ranks) - h * (h + 1) / 2)
    return float(before / (h * (n - h)))


def compound_discovery(
    query_reps: np.ndarray,
    query_genes: Sequence,
    compound_reps: np.ndarray,
    compound_targets: Sequence,
    *,
    metric: str = "cosine",
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Zero-shot compound discovery from CRISPR knockouts (Pheno-CA challenge 4).

    Inputs are *aggregated*: one row of ``query_reps`` per knockout gene and one row of
    ``compound_reps`` per compound (e.g. the mean of their wells, :func:`aggregate_by`).
    ``compound_targets[j]`` is compound ``j``'s target — a label, a collection of labels
    (multi-target compounds), or None/NaN (no target, e.g. OOD).

    For every query gene ``g`` that is the target of ``h >= 1`` of the ``N`` compounds,
    compounds are tested in order of increasing distance to ``g``'s representation
    (``metric="cosine"``: ``1 - cos``, a zero vector having similarity 0 to everything;
    ``"euclidean"``). **Ties** (equal float64 distances) are broken by a random
    permutation of the compounds drawn from ``seed`` (the same for every gene), so a tie
    costs on average what random testing costs. With ``r_1 < ... < r_h`` the 1-based
    test positions of the hits:

    * curve ``found(t) = #{i : r_i <= t}``, ``t = 1..N``;
    * ``auc`` = normalized area under it, ``(A - A_min) / (A_max - A_min)`` with
      ``A = sum_t found(t)``: 1 when all hits come first, 0 when last; it equals the
      Mann-Whitney share of (hit, non-hit) pairs with the hit first, so its expectation
      under random order is exactly 0.5 (NaN when every compound is a hit);
    * ``first_hit = r_1``; random baseline ``random_first_hit = (N + 1) / (h + 1)``
      (expected minimum of ``h`` positions drawn without replacement), ``random_auc = 0.5``.

    Query genes with no target compound are skipped (listed in ``per_gene.attrs["skipped_genes"]``).

    Returns
    -------
    per_gene : DataFrame
        ``gene, n_compounds, n_hits, first_hit, auc, random_first_hit, random_auc``.
    curves : DataFrame
        Long format ``gene, n_tested, hits_found, random_expected`` (``= n_tested * h / N``).
    """
    q, c, genes, targets = _check_discovery_inputs(query_reps, query_genes, compound_reps, compound_targets, metric)
    n = len(c)
    all_targets = frozenset().union(*targets)
    keep = [i for i, g in enumerate(genes) if g in all_targets]
    skipped = [g for g in genes if g not in all_targets]
    cols = ["gene", "n_compounds", "n_hits", "first_hit", "auc", "random_first_hit", "random_auc"]
    if not keep:
        per = pd.DataFrame(columns=cols)
        per.attrs["skipped_genes"] = skipped
        return per, pd.DataFrame(columns=["gene", "n_tested", "hits_found", "random_expected"])
    d = _distances(q[keep], c, metric)
    tie = _tie_keys(n, seed)
    perm = np.argsort(tie)  # compounds in tie-key order
    order = perm[np.argsort(d[:, perm], axis=1, kind="stable")]  # (g, N) compounds in test order
    kg = [genes[i] for i in keep]
    hit = np.array([[g in t for t in targets] for g in kg], dtype=bool)  # (g, N)
    hit_sorted = np.take_along_axis(hit, order, axis=1)
    found = np.cumsum(hit_sorted, axis=1)
    h = hit.sum(axis=1)
    rows = []
    for gi, g in enumerate(kg):
        ranks = np.flatnonzero(hit_sorted[gi]) + 1
        rows.append((g, n, int(h[gi]), int(ranks[0]), _auc_from_ranks(ranks, n), (n + 1) / (h[gi] + 1), 0.5))
    per = pd.DataFrame(rows, columns=cols)
    per.attrs["skipped_genes"] = skipped
    t = np.arange(1, n + 1)
    curves = pd.DataFrame(
        {
            "gene": np.repeat(kg, n),
            "n_tested": np.tile(t, len(kg)),
            "hits_found": found.ravel(),
            "random_expected": (t[None, :] * (h[:, None] / n)).ravel(),
        }
    )
    return per, curves


def summarize_discovery(
    per_gene: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> pd.DataFrame:
    """Mean over genes of :func:`compound_discovery`'s ``auc`` and ``first_hit``, bootstrap CI over genes.

    Returns ``metric, value, ci_low, ci_high, random, n_genes``: ``auc`` (random 0.5),
    ``first_hit`` (random = mean of ``random_first_hit``) and ``first_hit_enrichment`` =
    mean of ``random_first_hit / first_hit`` (random: about 1; > 1 is better than random).
    Genes with NaN ``auc`` (every compound a hit) are left out of the ``auc`` row.
    """
    rows = []
    cols = {
        "auc": (per_gene["auc"].to_numpy(float), 0.5),
        "first_hit": (per_gene["first_hit"].to_numpy(float), float(per_gene["random_first_hit"].mean())),
        "first_hit_enrichment": ((per_gene["random_first_hit"] / per_gene["first_hit"]).to_numpy(float), 1.0),
    }
    for name, (v, rnd) in cols.items():
        v = v[np.isfinite(v)]
        if not len(v):
            rows.append((name, float("nan"), float("nan"), float("nan"), rnd, 0))
            continue
        lo, hi = _boot_mean(v, n_boot, seed, confidence)
        rows.append((name, float(v.mean()), lo, hi, rnd, len(v)))
    return pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high", "random", "n_genes"])


def brute_force_discovery_ranks(
    query_reps: np.ndarray,
    query_genes: Sequence,
    compound_reps: np.ndarray,
    compound_targets: Sequence,
    *,
    metric: str = "cosine",
    seed: int = 0,
) -> pd.DataFrame:
    """Slow reference for :func:`compound_discovery` (plain Python loops, same tie rule).

    Returns ``gene, n_compounds, n_hits, hit_ranks (tuple, 1-based), first_hit, auc``;
    ``auc`` counted pair by pair (hit tested before non-hit).
    """
    q, c, genes, targets = _check_discovery_inputs(query_reps, query_genes, compound_reps, compound_targets, metric)
    tie = _tie_keys(len(c), seed)
    out = []
    for gi, g in enumerate(genes):
        if not any(g in t for t in targets):
            continue
        qa = [float(v) for v in q[gi]]
        keyed = []
        for j in range(len(c)):
            ca = [float(v) for v in c[j]]
            if metric == "cosine":
                dot = sum(a * b for a, b in zip(qa, ca))
                nq = sum(a * a for a in qa) ** 0.5
                nc = sum(b * b for b in ca) ** 0.5
                dist = 1.0 - (dot / (nq * nc) if nq > 0 and nc > 0 else 0.0)
            else:
                dist = sum((a - b) ** 2 for a, b in zip(qa, ca)) ** 0.5
            keyed.append((dist, int(tie[j]), j))
        keyed.sort()
        ranks = tuple(pos + 1 for pos, (_, _, j) in enumerate(keyed) if g in targets[j])
        is_hit = [g in targets[j] for _, _, j in keyed]
        pairs = good = 0
        for a in range(len(is_hit)):
            for b in range(len(is_hit)):
                if is_hit[a] and not is_hit[b]:
                    pairs += 1
                    good += a < b
        out.append((g, len(c), len(ranks), ranks, ranks[0], good / pairs if pairs else float("nan")))
    return pd.DataFrame(out, columns=["gene", "n_compounds", "n_hits", "hit_ranks", "first_hit", "auc"])
