"""The pair-based analyses without the all-pairs matrix: block-wise kernels whose memory is O(N), not O(N²).

The suite's analyses (:mod:`.enrichment`, :mod:`.intra_inter`, :mod:`.knn`, :mod:`.groups`,
:mod:`.batch`, :mod:`.bootstrap`, :mod:`.map`) read an ``(N, N)`` PCC matrix: 1.6 GB at 8,000 wells,
beyond a 24 GB machine at ~30,000. Here :class:`BlockSimilarity` computes the same matrix a block of
rows at a time (``Z[i0:i1] @ Z.T`` on the row-centred, unit-scaled float64 rows of
:func:`~moa_core.evaluation.similarity.row_center_normalize`, clipped to [-1, 1], unit diagonal), and
every analysis consumes the blocks as they come:

- **pair summaries** (intra/inter MOA, three groups, batch effect): count, sum and sum of squares of
  the pairs ``i < j`` of each label category, then ``mean`` and sample SD (``ddof=1``) as
  :func:`~moa_core.evaluation.intra_inter.pair_summary` computes them;
- **enrichment**: the percentiles over all pairs need only the upper tail of the pair values (the
  98th percentile and above): a first pass histograms every pair, a second keeps the pairs above the
  bin that holds the lowest needed order statistic (with their same-MOA flag), whose sorted values give
  the exact linear-interpolated thresholds and 2x2 counts of
  :func:`~moa_core.evaluation.enrichment.enrichment_from_similarity`;
- **k-NN**: :func:`~moa_core.evaluation.knn.knn_from_similarity` already walks query rows in chunks;
  :class:`BlockSimilarity` serves them. Storing every k's predictions is O(N²) too: at scale the suite
  caps k (``knn_max_k``, say so in its results) — the paper's "every k" is affordable to ~10,000 wells;
- **bootstrap** of the intra − inter delta (the weighted pair sums ``w S w``) and of the enrichment
  odds ratio (the top ``candidate_fraction`` of pairs with their positions, as
  :func:`~moa_core.evaluation.bootstrap.bootstrap_enrichment_odds_ratio` keeps them);
- **mAP of MOA consistency**: the average precision of each query's same-MOA wells among all other
  test wells, by ranks within the query's row (copairs' definition, as
  :func:`moa_core.retrieval.activity.average_precisions` computes activity), and copairs' null for p.

The results equal the all-pairs implementation up to float64 round-off (the block products and the
full ``Z @ Z.T`` may differ in the last bit; discrete results — k-NN predictions, enrichment counts —
are identical in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .similarity import row_center_normalize

__all__ = ["BlockSimilarity", "pair_moments", "tail_pairs"]

_BLOCK_ELEMENTS = 1 << 22  # ~4M similarities (32 MB) per block


class BlockSimilarity:
    """The ``(N, N)`` PCC matrix of the rows of ``X``, served a block of rows at a time.

    ``sim[i0:i1]`` (a row slice) returns those rows as float64, as
    :func:`~moa_core.evaluation.similarity.pearson_similarity_matrix` would hold them;
    :meth:`blocks` walks all rows. Memory: ``X`` (N x F float64) plus one block.
    """

    ndim = 2
    dtype = np.dtype(np.float64)

    def __init__(self, X: np.ndarray, names: Sequence[str] | None = None, block_elements: int = _BLOCK_ELEMENTS):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 2:
            from moa_core.errors import MoaInputError

            raise MoaInputError(f"need at least 2 wells to compute similarities, got shape {X.shape}")
        self.Z = row_center_normalize(X, names)
        self.n = self.Z.shape[0]
        self.step = max(1, int(block_elements) // self.n)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    def __len__(self) -> int:
        return self.n

    def rows(self, i0: int, i1: int) -> np.ndarray:
        s = self.Z[i0:i1] @ self.Z.T
        np.clip(s, -1.0, 1.0, out=s)
        idx = np.arange(i0, i1)
        s[idx - i0, idx] = 1.0
        return s

    def __getitem__(self, key):
        if isinstance(key, slice):
            i0, i1, st = key.indices(self.n)
            if st != 1:
                raise IndexError("BlockSimilarity serves contiguous row slices")
            return self.rows(i0, i1)
        if isinstance(key, (int, np.integer)):
            return self.rows(int(key), int(key) + 1)[0]
        raise IndexError("BlockSimilarity serves row slices (sim[i0:i1]) and single rows")

    def blocks(self):
        """``(i0, i1, rows)`` for consecutive row blocks."""
        for i0 in range(0, self.n, self.step):
            i1 = min(self.n, i0 + self.step)
            yield i0, i1, self.rows(i0, i1)

    def submatrix(self, idx: np.ndarray) -> np.ndarray:
        """``sim[np.ix_(idx, idx)]`` for a small index set (a class's wells)."""
        s = self.Z[idx] @ self.Z[idx].T
        np.clip(s, -1.0, 1.0, out=s)
        np.fill_diagonal(s, 1.0)
        return s


def _category(i0: int, i1: int, codes: list[np.ndarray], n: int) -> np.ndarray:
    """Category of every (row, column) of a block: bit b = same label under criterion b; -1 off the upper
    triangle."""
    cat = np.zeros((i1 - i0, n), dtype=np.int8)
    for b, c in enumerate(codes):
        cat |= (c[i0:i1, None] == c[None, :]).astype(np.int8) << b
    upper = np.arange(n)[None, :] > np.arange(i0, i1)[:, None]
    cat[~upper] = -1
    return cat


def pair_moments(sim: BlockSimilarity, codes: list[np.ndarray]) -> dict[tuple[bool, ...], tuple[int, float, float]]:
    """Per label-agreement category (as :func:`~moa_core.evaluation._pairs.upper_pairs_by_category` keys):
    ``(n, sum, sum of squares)`` of the pairs ``i < j``."""
    k = len(codes)
    keys = [tuple(bool((m >> b) & 1) for b in range(k)) for m in range(1 << k)]
    acc = {key: [0, 0.0, 0.0] for key in keys}
    for i0, i1, S in sim.blocks():
        cat = _category(i0, i1, codes, sim.n)
        for m, key in enumerate(keys):
            v = S[cat == m]
            a = acc[key]
            a[0] += v.size
            a[1] += float(v.sum())
            a[2] += float(np.dot(v, v))
    return {key: (int(a[0]), a[1], a[2]) for key, a in acc.items()}


def summary_from_moments(n: int, s: float, ss: float) -> tuple[float, float, int]:
    """``(mean, sample SD, n)`` from pair moments (NaN mean if empty, NaN SD if n < 2)."""
    mean = s / n if n else float("nan")
    sd = float(np.sqrt(max(ss - s * s / n, 0.0) / (n - 1))) if n > 1 else float("nan")
    return float(mean), sd, int(n)


def tail_pairs(
    sim: BlockSimilarity, moa_codes: np.ndarray, k: int, *, bins: int = 1 << 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The (at least) ``k`` largest pair values ``i < j``, sorted ascending with ties by row-major position,
    their same-MOA flags and flat row-major positions, and the number of pairs ``m``.

    Two passes: a histogram of every pair (``bins`` bins on [-1, 1]) finds the value below which fewer
    than ``m - k`` pairs lie; the second keeps every pair at or above that bin edge. Memory: the tail.
    """
    n = sim.n
    m = n * (n - 1) // 2
    k = int(min(max(k, 1), m))
    edges = np.linspace(-1.0, 1.0, bins + 1)
    hist = np.zeros(bins, np.int64)
    upper_cache = None
    for i0, i1, S in sim.blocks():
        upper = np.arange(n)[None, :] > np.arange(i0, i1)[:, None]
        hist += np.histogram(S[upper], bins=edges)[0]
        upper_cache = upper
    del upper_cache
    above = np.cumsum(hist[::-1])[::-1]  # pairs in bin b or higher
    b = int(np.flatnonzero(above >= k)[-1])  # the highest bin edge that still keeps >= k pairs
    lo = edges[b]
    vals, same, flat = [], [], []
    y = np.asarray(moa_codes)
    for i0, i1, S in sim.blocks():
        rows = np.arange(i0, i1)
        upper = np.arange(n)[None, :] > rows[:, None]
        keep = upper & (S >= lo)
        r, c = np.nonzero(keep)
        gi = rows[r]
        vals.append(S[r, c])
        same.append(y[gi] == y[c])
        flat.append(gi.astype(np.int64) * n - gi * (gi + 1) // 2 + (c - gi - 1))
    v, s, f = np.concatenate(vals), np.concatenate(same), np.concatenate(flat)
    order = np.lexsort((f, v))  # by value, ties by position (a stable sort of the row-major values)
    return v[order], s[order], f[order], m


# ---- the analyses ------------------------------------------------------------------------------------------
def enrichment_blockwise(sim: BlockSimilarity, moa_codes: np.ndarray, *, percentiles=None, convention: str = "paper"):
    """:func:`~moa_core.evaluation.enrichment.enrichment_from_similarity` from the tail of the pair values."""
    from ._common import linear_quantile_sorted
    from .enrichment import DEFAULT_PERCENTILES, EnrichmentResult, _table_from_counts

    if convention not in ("paper", "cytominer-eval"):
        raise ValueError(f"convention must be 'paper' or 'cytominer-eval', got {convention!r}")
    pct = np.asarray(list(percentiles if percentiles is not None else DEFAULT_PERCENTILES), dtype=np.float64)
    if pct.size == 0 or np.any((pct < 0) | (pct > 100)):
        raise ValueError(f"percentiles must be in [0, 100], got {list(pct)}")
    y = np.asarray(moa_codes)
    rep = 1 if convention == "paper" else 2
    n = sim.n
    m = n * (n - 1) // 2
    lowest = int(np.floor((rep * m - 1) * pct.min() / 100.0)) // rep  # the lowest order statistic needed
    vals, same, _, _ = tail_pairs(sim, y, m - lowest + 1)
    offset = rep * (m - len(vals))
    cum = offset + rep * np.arange(1, len(vals) + 1, dtype=np.int64)
    thr = linear_quantile_sorted(vals, pct, cum_weights=cum)
    counts = np.bincount(y, minlength=int(y.max()) + 1).astype(np.int64)
    m_same = int((counts * (counts - 1) // 2).sum())
    sv = np.sort(vals[same])
    n_strong = len(vals) - np.searchsorted(vals, thr, side="right")
    a = len(sv) - np.searchsorted(sv, thr, side="right")
    table = _table_from_counts(pct, thr, a, n_strong, m, m_same, rep)
    return EnrichmentResult(table=table, convention=convention, n_wells=n, n_pairs=rep * m)


def _summaries(sim: BlockSimilarity, codes: list[np.ndarray]) -> dict[tuple[bool, ...], tuple[float, float, int]]:
    return {k: summary_from_moments(*v) for k, v in pair_moments(sim, codes).items()}


def intra_inter_blockwise(sim: BlockSimilarity, moa_codes: np.ndarray):
    from .intra_inter import IntraInterResult

    s = _summaries(sim, [np.asarray(moa_codes)])
    return IntraInterResult(*s[(True,)], *s[(False,)])


def three_groups_blockwise(sim: BlockSimilarity, compound_codes: np.ndarray, moa_codes: np.ndarray):
    from .groups import three_groups_from_summaries

    mom = pair_moments(sim, [np.asarray(compound_codes), np.asarray(moa_codes)])
    tt, tf = mom[(True, True)], mom[(True, False)]
    same_cpd = (tt[0] + tf[0], tt[1] + tf[1], tt[2] + tf[2])
    return three_groups_from_summaries(
        [
            summary_from_moments(*same_cpd),
            summary_from_moments(*mom[(False, True)]),
            summary_from_moments(*mom[(False, False)]),
        ]
    )


def batch_effect_blockwise(sim: BlockSimilarity, moa_codes: np.ndarray, plate_codes: np.ndarray):
    from .batch import BatchEffectResult
    from .groups import z_test

    s = _summaries(sim, [np.asarray(moa_codes), np.asarray(plate_codes)])
    (wm, ws, wn), (am, as_, an) = s[(True, True)], s[(True, False)]
    z, p = z_test(wm, ws, wn, am, as_, an)
    return BatchEffectResult(wm, ws, wn, am, as_, an, z, p)


def bootstrap_intra_inter_delta_blockwise(
    sim: BlockSimilarity,
    moa_codes: np.ndarray,
    *,
    n_boot: int = 200,
    seed: int = 0,
    groups=None,
    confidence: float = 0.95,
):
    """:func:`~moa_core.evaluation.bootstrap.bootstrap_intra_inter_delta` with ``W @ sim`` accumulated block-wise."""
    from .bootstrap import _finish, bootstrap_weights

    y = np.asarray(moa_codes)
    n = len(y)
    W = np.vstack([np.ones((1, n)), bootstrap_weights(n_boot, n, seed, groups)])
    WS = np.zeros((len(W), n))
    for i0, i1, S in sim.blocks():  # W @ sim = sum over row blocks of W[:, rows] @ sim[rows]
        WS += W[:, i0:i1] @ S
    s_all = (np.einsum("bi,bi->b", WS, W) - (W * W).sum(1)) / 2  # unit diagonal
    c_all = (W.sum(1) ** 2 - (W * W).sum(1)) / 2
    s_same = np.zeros(len(W))
    c_same = np.zeros(len(W))
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        Wc = W[:, idx]
        block = sim.submatrix(idx)
        s_same += (np.einsum("bi,bi->b", Wc @ block, Wc) - (Wc * Wc).sum(1)) / 2
        c_same += (Wc.sum(1) ** 2 - (Wc * Wc).sum(1)) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = s_same / c_same - (s_all - s_same) / (c_all - c_same)
    return _finish(float(stats[0]), stats[1:], confidence, groups)


def bootstrap_enrichment_blockwise(
    sim: BlockSimilarity,
    moa_codes: np.ndarray,
    *,
    percentile: float = 99.0,
    convention: str = "paper",
    n_boot: int = 100,
    seed: int = 0,
    groups=None,
    confidence: float = 0.95,
):
    """:func:`~moa_core.evaluation.bootstrap.bootstrap_enrichment_odds_ratio` on the top pairs kept block-wise.

    The all-pairs version falls back to every pair when a replicate's threshold falls below its
    candidate set; here the candidate set is widened until no replicate needs that (each widening is
    one more pass over the blocks)."""
    from .bootstrap import enrichment_or_from_candidates

    y = np.asarray(moa_codes)
    n = len(y)
    m = n * (n - 1) // 2
    q = float(percentile) / 100.0
    frac = min(1.0, 4.0 * (1.0 - q) + 0.01)
    while True:
        k = int(min(m, max(1, np.ceil(frac * m))))
        vals, same, flat, _ = tail_pairs(sim, y, k)
        # the all-pairs version sorts exactly the top k; keep the same k (ties at the cut by position)
        vals, same, flat = vals[-k:], same[-k:], flat[-k:]
        res = enrichment_or_from_candidates(
            vals,
            flat,
            y,
            n,
            percentile=percentile,
            convention=convention,
            n_boot=n_boot,
            seed=seed,
            groups=groups,
            confidence=confidence,
        )
        if res is not None or k >= m:
            if res is None:
                raise AssertionError("unreachable: the candidate set holds every pair")  # pragma: no cover
            return res
        frac = min(1.0, 2 * frac)


def consistency_map_blockwise(
    X: np.ndarray,
    moa: np.ndarray,
    compounds: np.ndarray,
    *,
    null_size: int = 10_000,
    threshold: float = 0.05,
    seed: int = 0,
    cache_dir=None,
    block_rows: int = 512,
):
    """mAP of MOA consistency (:func:`~moa_core.evaluation.map.phenotypic_consistency`, ``level="well"``)
    by ranks within each query's row: positives = same MOA, other compound; negatives = other MOA."""
    import pandas as pd
    from copairs.map import mean_average_precision

    from moa_core.errors import MoaInputError

    from .map import MapResult

    Z = row_center_normalize(np.asarray(X, dtype=np.float64))
    moa = pd.Series(moa).astype(str).to_numpy()
    cpd = pd.Series(compounds).astype(str).to_numpy()
    n = len(Z)
    m_codes, _ = pd.factorize(moa)
    c_codes, _ = pd.factorize(cpd)
    ap = np.full(n, np.nan)
    n_pos = np.zeros(n, np.int64)
    n_tot = np.zeros(n, np.int64)
    for i0 in range(0, n, block_rows):
        i1 = min(n, i0 + block_rows)
        S = Z[i0:i1] @ Z.T
        for r in range(i1 - i0):
            i = i0 + r
            same_moa = m_codes == m_codes[i]
            pos = same_moa & (c_codes != c_codes[i])
            neg = ~same_moa
            n_pos[i], n_tot[i] = int(pos.sum()), int(pos.sum() + neg.sum())
            if not pos.any() or not neg.any():
                continue
            sp = np.sort(S[r, pos])[::-1]
            sn = np.sort(S[r, neg])
            greater = len(sn) - np.searchsorted(sn, sp, side="left")  # negatives >= a positive rank above it
            ranks = np.arange(1, len(sp) + 1)
            ap[i] = float(np.mean(ranks / (ranks + greater)))
    frame = pd.DataFrame(
        {
            "Metadata_moa": moa,
            "Metadata_compound": cpd,
            "average_precision": ap,
            "n_pos_pairs": n_pos,
            "n_total_pairs": n_tot,
        }
    )
    valid = frame["average_precision"].notna() & (frame["n_pos_pairs"] > 0)
    if not valid.any():
        raise MoaInputError("mAP (consistency): no query has both positive and negative partners")
    from copairs.map.average_precision import normalize_ap

    frame["normalized_average_precision"] = np.nan
    v = valid.to_numpy()
    frame.loc[v, "normalized_average_precision"] = normalize_ap(
        frame.loc[v, "average_precision"].to_numpy(), n_pos[v], n_tot[v] - n_pos[v]
    )
    maps = mean_average_precision(
        frame[valid].reset_index(drop=True),
        sameby=["Metadata_moa"],
        null_size=null_size,
        threshold=threshold,
        seed=seed,
        progress_bar=False,
        cache_dir=cache_dir,
    )
    return MapResult(ap=frame, map=maps, kind="consistency", threshold=threshold)
