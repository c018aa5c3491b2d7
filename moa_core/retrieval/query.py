"""Query a retrieval index: nearest and anti-correlated perturbations, predicted MOA, MOA enrichment.

Definitions
-----------
Scan
    A compound's similarity is the mean PCC of its wells with the query consensus ``q``:
    ``mean_i(v_i . q) = q . m_c`` with ``m_c`` the mean of its unit well vectors, which the
    index stores (``compound_vectors``), so one pass over C compound vectors answers exactly
    what a pass over every well would (``scan_wells=True`` does that pass, for checks and
    per-well scores). A listed compound's *best well* is its well with the highest PCC
    (shown as the match's example image).
Candidates
    Perturbations other than the query and the negative control (DMSO).
k-NN vote
    Among the ``k`` most similar candidates that have an MOA, the most frequent MOA
    (ties: the higher summed similarity). *Vote share* = votes / k. Mirrors the paper's
    k-NN rule (majority of the nearest neighbours) at compound level.
Class latent assignment
    MOA centroid = element-wise median of the (unit-scaled) mean well vectors of the MOA's
    annotated compounds, the query left out of its own MOA (as in
    ``moa_core.evaluation.latent``'s leave-one-out medians);
    predicted MOA = the centroid with the highest PCC. *Margin* = best minus second PCC.
Confidence
    Empirical precision: among the index's annotated compounds queried leave-one-out
    (:func:`calibrate`), the share whose prediction was right when their vote share
    (or margin) was at least the query's; with its count and a Wilson 95 % interval.
MOA enrichment of the neighbour list
    For each MOA among the top ``k`` annotated candidates: hypergeometric tail
    ``P(X >= x)`` with population = annotated candidates, successes = those of the MOA,
    draws = ``k``; Benjamini-Hochberg q over the MOAs listed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import hypergeom

from moa_core.retrieval.index import RetrievalIndex, unit_rows

__all__ = [
    "Neighbours",
    "Prediction",
    "best_well",
    "scan",
    "neighbours",
    "knn_vote",
    "latent_assignment",
    "moa_enrichment",
    "calibrate",
    "confidence",
    "wilson",
]

_SHOW = ["compound", "name", "Metadata_moa", "Metadata_target", "Metadata_pert_type", "n_wells"]


@dataclass
class Neighbours:
    """The result of one query."""

    query: int  # row of the query in ``index.compounds``
    similarity: np.ndarray  # (C,) mean PCC of each compound's wells with the query consensus
    best_well: np.ndarray  # (C,) row in ``index.wells`` of each listed compound's most similar well (-1: not listed)
    well_similarity: np.ndarray | None  # (N,) PCC of every well with the query consensus (``scan_wells=True``)
    candidates: np.ndarray  # (C,) bool
    consensus: np.ndarray  # (d,) the query consensus vector
    nearest: pd.DataFrame
    anticorrelated: pd.DataFrame


@dataclass
class Prediction:
    moa: str | None
    score: float  # vote share (k-NN) or margin (latent)
    table: pd.DataFrame  # per MOA: votes / similarity


def _moa(index: RetrievalIndex) -> np.ndarray:
    """Each compound's MOA (None when missing), cached on the index."""
    cached = index.__dict__.get("_moa")
    if cached is not None:
        return cached
    if "Metadata_moa" not in index.compounds.columns:
        out = np.full(len(index.compounds), None, dtype=object)
    else:
        m = index.compounds["Metadata_moa"].astype(object)
        out = m.where(m.notna() & m.astype(str).str.strip().ne(""), None).to_numpy()
    index.__dict__["_moa"] = out
    index.__dict__["_has_moa"] = np.array([v is not None for v in out], dtype=bool)
    return out


def _has_moa(index: RetrievalIndex) -> np.ndarray:
    _moa(index)
    return index.__dict__["_has_moa"]


def _top(values: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` entries of ``idx`` with the largest ``values[idx]``, best first (ties: lower index first)."""
    if k < len(idx):
        idx = idx[np.argpartition(-values[idx], k - 1)[:k]]
    return idx[np.lexsort((idx, -values[idx]))]


def scan(index: RetrievalIndex, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(well PCC, compound mean PCC, best well per compound) for the unit query vector ``q``."""
    s = np.asarray(index.vectors @ np.asarray(q, dtype=np.float32), dtype=np.float32)
    starts, counts = index.starts, index.counts
    comp = np.add.reduceat(s, starts) / counts
    seg_max = np.maximum.reduceat(s, starts)
    seg = index.__dict__.get("_segments")
    if seg is None:
        seg = index.__dict__.setdefault("_segments", np.repeat(np.arange(len(starts)), counts))
    hit = np.flatnonzero(s >= seg_max[seg])
    first = np.unique(seg[hit], return_index=True)[1]
    return s, comp.astype(np.float32), hit[first]


def best_well(index: RetrievalIndex, row: int, q: np.ndarray) -> int:
    """Row in ``index.wells`` of compound ``row``'s well most similar to ``q``."""
    return int(index.starts[row]) + int(np.argmax(index.well_vectors(row) @ np.asarray(q, dtype=np.float32)))


def _table(index: RetrievalIndex, rows: np.ndarray, sim: np.ndarray, best: np.ndarray) -> pd.DataFrame:
    comp = index.compounds
    cols = [c for c in _SHOW if c in comp.columns]
    t = comp.iloc[rows][cols].reset_index(drop=True)
    t.insert(0, "rank", np.arange(1, len(rows) + 1))
    t.insert(3, "similarity", sim[rows].astype(float))
    bw = index.wells.iloc[best[rows]]
    t["best_plate"] = bw["Metadata_Plate"].to_numpy()
    t["best_well"] = bw["Metadata_Well"].to_numpy()
    return t


def neighbours(
    index: RetrievalIndex, query: int | str, *, k: int = 10, include_unannotated: bool = True, scan_wells: bool = False
) -> Neighbours:
    """The ``k`` most similar and ``k`` most anti-correlated candidates of ``query`` (row or compound key)."""
    row = index.compound_row(query) if isinstance(query, str) else int(query)
    q = index.consensus(row)
    if scan_wells:
        s, sim, best = scan(index, q)
    else:
        s = None
        sim = np.asarray(index.compound_vectors @ q, dtype=np.float32)
        best = np.full(len(sim), -1, dtype=np.int64)
    cand = ~index.compounds["is_control"].to_numpy(bool)
    cand[row] = False
    if not include_unannotated:
        cand &= _has_moa(index)
    idx = np.flatnonzero(cand)
    k = max(0, min(k, len(idx)))
    if k == 0:
        best[row] = best_well(index, row, q)
        empty = _table(index, np.array([], dtype=np.int64), sim, best)
        return Neighbours(row, sim, best, s, cand, q, empty, empty)
    top = _top(sim, idx, k)
    bot = _top(-sim, idx, k)
    if not scan_wells:
        for r in np.concatenate([top, bot, [row]]):
            best[r] = best_well(index, int(r), q)
    return Neighbours(row, sim, best, s, cand, q, _table(index, top, sim, best), _table(index, bot, sim, best))


def _annotated_candidates(index: RetrievalIndex, nb: Neighbours) -> tuple[np.ndarray, np.ndarray]:
    moa = _moa(index)
    return nb.candidates & _has_moa(index), moa


def _moa_counts(index: RetrievalIndex, moa: np.ndarray, idx: np.ndarray, query: int) -> pd.Series:
    """Annotated candidates per MOA: the index's counts (cached) minus the query's own."""
    counts = index.__dict__.get("_moa_counts")
    if counts is None:
        ctrl = index.compounds["is_control"].to_numpy(bool)
        counts = pd.Series(moa[_has_moa(index) & ~ctrl]).value_counts()
        index.__dict__["_moa_counts"] = counts
    own = moa[query]
    if own is not None and not bool(index.compounds["is_control"].iat[query]) and own in counts.index:
        counts = counts.copy()
        counts[own] -= 1
    return counts[counts > 0]


def knn_vote(index: RetrievalIndex, nb: Neighbours, k: int = 5) -> Prediction:
    """k-NN MOA vote over the ``k`` most similar annotated candidates (see module docstring)."""
    ann, moa = _annotated_candidates(index, nb)
    idx = np.flatnonzero(ann)
    if len(idx) == 0:
        return Prediction(None, float("nan"), pd.DataFrame(columns=["moa", "votes", "summed_similarity"]))
    k = min(k, len(idx))
    top = _top(nb.similarity, idx, k)
    t = pd.DataFrame({"moa": moa[top], "sim": nb.similarity[top].astype(float)})
    votes = t.groupby("moa").agg(votes=("sim", "size"), summed_similarity=("sim", "sum")).reset_index()
    votes = votes.sort_values(["votes", "summed_similarity"], ascending=False).reset_index(drop=True)
    votes["share"] = votes["votes"] / k
    return Prediction(str(votes.at[0, "moa"]), float(votes.at[0, "share"]), votes)


def _centroids(index: RetrievalIndex) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(unit compound profiles, MOA names, centroid matrix, MOA code per compound; -1 = none), cached."""
    cached = index.__dict__.get("_centroids")
    if cached is not None:
        return cached
    moa = _moa(index)
    ann = ~index.compounds["is_control"].to_numpy(bool) & _has_moa(index)
    names = sorted({m for m, a in zip(moa, ann) if a})
    code = np.full(len(moa), -1, dtype=np.int64)
    pos = {m: i for i, m in enumerate(names)}
    for i in np.flatnonzero(ann):
        code[i] = pos[moa[i]]
    P = unit_rows(np.asarray(index.compound_vectors))
    cen = np.zeros((len(names), P.shape[1]), dtype=np.float32)
    for j in range(len(names)):
        cen[j] = unit_rows(np.median(P[code == j], axis=0, keepdims=True))[0]
    index.__dict__["_centroids"] = (P, names, cen, code)
    return index.__dict__["_centroids"]


def latent_assignment(index: RetrievalIndex, nb: Neighbours) -> Prediction:
    """Class latent assignment of the query to MOA centroids (see module docstring; the query is left out
    of its own MOA's centroid, and an MOA whose only compound is the query has no centroid)."""
    P, names, cen, code = _centroids(index)
    if not names:
        return Prediction(None, float("nan"), pd.DataFrame(columns=["moa", "similarity", "compounds"]))
    q = nb.consensus
    sims = cen @ q
    sizes = np.bincount(code[code >= 0], minlength=len(names)).astype(np.int64)
    own = int(code[nb.query])
    if own >= 0:
        others = code == own
        others[nb.query] = False
        sizes[own] -= 1
        if others.any():
            sims[own] = float(unit_rows(np.median(P[others], axis=0, keepdims=True))[0] @ q)
    keep = sizes > 0
    t = (
        pd.DataFrame(
            {
                "moa": np.array(names, dtype=object)[keep],
                "similarity": sims[keep].astype(float),
                "compounds": sizes[keep],
            }
        )
        .sort_values("similarity", ascending=False)
        .reset_index(drop=True)
    )
    if t.empty:
        return Prediction(None, float("nan"), t)
    margin = float(t.at[0, "similarity"] - t.at[1, "similarity"]) if len(t) > 1 else float("nan")
    return Prediction(str(t.at[0, "moa"]), margin, t)


def _bh(p: np.ndarray) -> np.ndarray:
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def moa_enrichment(index: RetrievalIndex, nb: Neighbours, k: int = 10) -> pd.DataFrame:
    """Hypergeometric enrichment of each MOA among the top ``k`` annotated candidates (see module docstring)."""
    ann, moa = _annotated_candidates(index, nb)
    idx = np.flatnonzero(ann)
    cols = ["moa", "in_top_k", "k", "moa_compounds", "annotated_compounds", "expected", "p", "q"]
    if len(idx) == 0:
        return pd.DataFrame(columns=cols)
    k = min(k, len(idx))
    top = _top(nb.similarity, idx, k)
    pop = _moa_counts(index, moa, idx, nb.query)
    hits = pd.Series(moa[top]).value_counts()
    n_pop = len(idx)
    rows = [
        (m, int(x), k, int(pop[m]), n_pop, k * pop[m] / n_pop, float(hypergeom.sf(x - 1, n_pop, pop[m], k)))
        for m, x in hits.items()
    ]
    t = pd.DataFrame(rows, columns=cols[:-1])
    t["q"] = _bh(t["p"].to_numpy(float))
    return t.sort_values(["p", "in_top_k"], ascending=[True, False]).reset_index(drop=True)


def calibrate(index: RetrievalIndex, *, k: int = 5, max_compounds: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Leave-one-compound-out predictions for (up to ``max_compounds``, seeded sample of) the annotated
    perturbations whose MOA has another compound: true MOA, k-NN prediction + vote share, latent
    prediction + margin, and whether each was right. The same rules as :func:`knn_vote` and
    :func:`latent_assignment`, batched; :func:`confidence` turns the table into the empirical precision
    of a new query's prediction."""
    moa = _moa(index)
    cols = ["compound", "moa", "knn_moa", "knn_share", "knn_correct", "latent_moa", "latent_margin", "latent_correct"]
    P, names, cen, code = _centroids(index)
    sizes = np.bincount(code[code >= 0], minlength=len(names))
    ann = np.flatnonzero((code >= 0) & (sizes[np.maximum(code, 0)] >= 2))
    if len(ann) == 0:
        return pd.DataFrame(columns=cols)
    if len(ann) > max_compounds:
        ann = np.sort(np.random.default_rng(seed).choice(ann, max_compounds, replace=False))
    M = np.asarray(index.compound_vectors)
    voters = np.flatnonzero(code >= 0)
    rows = []
    for b0 in range(0, len(ann), 256):
        batch = ann[b0 : b0 + 256]
        Q = np.stack([index.consensus(int(r)) for r in batch])
        S = Q @ M[voters].T  # mean PCC with every annotated candidate
        S[voters[None, :] == batch[:, None]] = -np.inf  # leave the query out
        kk = min(k, len(voters) - 1)
        top = np.argsort(-S, axis=1, kind="stable")[:, :kk]
        L = Q @ cen.T
        for j, r in enumerate(batch):
            codes = code[voters[top[j]]]
            votes = np.bincount(codes, minlength=len(names))
            summed = np.bincount(codes, weights=S[j, top[j]].astype(np.float64), minlength=len(names))
            win = int(np.lexsort((-summed, -votes))[0])  # most votes, then the higher summed similarity
            knn_moa, share = names[win], float(votes[win] / kk)
            sims, own = L[j].copy(), int(code[r])
            others = code == own
            others[r] = False
            sims[own] = float(unit_rows(np.median(P[others], axis=0, keepdims=True))[0] @ Q[j])
            order = np.argsort(-sims, kind="stable")
            lat = names[int(order[0])]
            margin = float(sims[order[0]] - sims[order[1]]) if len(order) > 1 else float("nan")
            rows.append(
                (
                    index.compounds.at[int(r), "compound"],
                    moa[r],
                    knn_moa,
                    share,
                    knn_moa == moa[r],
                    lat,
                    margin,
                    lat == moa[r],
                )
            )
    return pd.DataFrame(rows, columns=cols)


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return float(c - h), float(c + h)


def confidence(calibration: pd.DataFrame, kind: str, score: float) -> dict:
    """Empirical precision of a ``kind`` ('knn' or 'latent') prediction with this score (see module docstring)."""
    col, ok = ("knn_share", "knn_correct") if kind == "knn" else ("latent_margin", "latent_correct")
    out = {
        "precision": float("nan"),
        "low": float("nan"),
        "high": float("nan"),
        "n": 0,
        "overall": float("nan"),
        "n_calibration": int(len(calibration)),
    }
    if calibration.empty or not np.isfinite(score):
        return out
    overall = calibration[ok].astype(bool)
    out["overall"] = float(overall.mean())
    sel = calibration[calibration[col].astype(float) >= score - 1e-9]
    if sel.empty:  # more confident than any calibration compound: use the most confident decile
        sel = calibration.nlargest(max(1, len(calibration) // 10), col)
    right = int(sel[ok].astype(bool).sum())
    lo, hi = wilson(right, len(sel))
    out.update(precision=right / len(sel), low=lo, high=hi, n=int(len(sel)))
    return out
