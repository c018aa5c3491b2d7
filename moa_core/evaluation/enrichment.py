"""Enrichment factor: odds ratio of a one-sided Fisher's exact test (paper Fig. 3b/5b).

Definitions
-----------
Pairs
    ``convention="paper"`` (default): all *unordered* well pairs ``i < j`` (no
    self-pairs), each counted once, ``M = n(n-1)/2``.
    ``convention="cytominer-eval"``: all *ordered* pairs ``(i, j), i != j`` (the full
    similarity matrix minus its diagonal), so every unordered pair is counted twice,
    ``M = n(n-1)``.
Threshold
    For percentile ``p`` (default 98.0, 98.2, ..., 99.8), the threshold is
    ``np.percentile(pair_similarities, p)`` with numpy's default *linear*
    interpolation over the pair multiset of the chosen convention (virtual index
    ``(M - 1) p / 100``, linear interpolation between the two neighbouring order
    statistics). The ordered convention therefore interpolates over the doubled
    multiset and can give a (slightly) different threshold.
Strong / weak (tie rule)
    A pair is *strongly correlated* iff ``similarity > threshold`` (strictly). Pairs
    lying exactly on the threshold are *weak*.
2x2 table
    ``a`` = same-MOA & strong, ``b`` = different-MOA & strong,
    ``c`` = same-MOA & weak, ``d`` = different-MOA & weak (``a+b+c+d = M``).
Odds ratio
    ``(a/b)/(c/d) = (a d)/(b c)``; if ``b c == 0``: ``inf`` when ``a d > 0`` and ``NaN``
    when ``a d == 0`` (never raises, never divides by zero).
p-value
    One-sided Fisher exact test, ``scipy.stats.fisher_exact([[a, b], [c, d]],
    alternative="greater").pvalue`` (= P(X >= a) for the hypergeometric X with the
    table margins; 1.0 when a margin is empty).

Complexity: one sort of the M unordered pair similarities plus one of the same-MOA
pairs; every threshold is then answered with ``searchsorted`` (no per-threshold loops
over pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact

from ._common import (
    DEFAULT_MOA_COL,
    DEFAULT_PLATE_COL,
    DEFAULT_WELL_COL,
    check_sim,
    encode_labels,
    linear_quantile_sorted,
    require_columns,
    require_min_classes,
)
from ._pairs import upper_pairs_by_category
from .results import result_row, results_frame
from .similarity import pearson_similarity

__all__ = [
    "DEFAULT_PERCENTILES",
    "EnrichmentResult",
    "enrichment",
    "enrichment_from_similarity",
    "odds_ratio",
]

Convention = Literal["paper", "cytominer-eval"]

#: 98.0, 98.2, ..., 99.8 (exact decimal literals rounded to one digit).
DEFAULT_PERCENTILES: tuple[float, ...] = tuple(round(980 + 2 * i) / 10 for i in range(10))


def odds_ratio(a: float, b: float, c: float, d: float) -> float:
    """``(a d) / (b c)`` with zero handling: ``inf`` if ``b c == 0 < a d``, ``NaN`` if both are 0."""
    num = float(a) * float(d)
    den = float(b) * float(c)
    if den > 0:
        return num / den
    return float("inf") if num > 0 else float("nan")


@dataclass(frozen=True)
class EnrichmentResult:
    """Enrichment table for several percentiles.

    Attributes
    ----------
    table : pandas.DataFrame
        Columns ``percentile, threshold, a, b, c, d, odds_ratio, p_value, n_pairs``
        (one row per percentile; counts are int64).
    convention : str
        ``"paper"`` or ``"cytominer-eval"``.
    n_wells : int
    n_pairs : int
        Pairs counted (``n(n-1)/2`` or ``n(n-1)``).
    """

    table: pd.DataFrame
    convention: str
    n_wells: int
    n_pairs: int

    def to_results(self, method: str, analysis: str = "enrichment") -> pd.DataFrame:
        """Tidy rows: ``odds_ratio`` (p_value = Fisher) and ``threshold`` per percentile."""
        rows = []
        suffix = "" if self.convention == "paper" else "_cytominer_eval"
        for r in self.table.itertuples(index=False):
            rows.append(
                result_row(
                    method,
                    analysis,
                    "odds_ratio" + suffix,
                    r.odds_ratio,
                    parameter=r.percentile,
                    p_value=r.p_value,
                    n=r.n_pairs,
                )
            )
            rows.append(
                result_row(method, analysis, "threshold" + suffix, r.threshold, parameter=r.percentile, n=r.n_pairs)
            )
        return results_frame(rows)


def enrichment_from_similarity(
    sim: np.ndarray,
    moa_codes: np.ndarray,
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    convention: Convention = "paper",
) -> EnrichmentResult:
    """Enrichment table from a precomputed similarity matrix (see module docstring).

    Parameters
    ----------
    sim : (n, n) array
        Symmetric PCC matrix (:func:`~moa_core.evaluation.similarity.pearson_similarity`).
    moa_codes : (n,) int array
        MOA label codes aligned with ``sim``.
    percentiles : sequence of float
        Percentiles in [0, 100].
    convention : {"paper", "cytominer-eval"}
        Pair convention.
    """
    if convention not in ("paper", "cytominer-eval"):
        raise ValueError(f"convention must be 'paper' or 'cytominer-eval', got {convention!r}")
    moa_codes = np.asarray(moa_codes)
    n = sim.shape[0]
    if n < 2:
        raise ValueError(f"enrichment needs at least 2 wells, got {n}")
    parts = upper_pairs_by_category(sim, [moa_codes])
    same = parts.pop((True,))
    allp = np.concatenate([same, parts.pop((False,))])
    same.sort()
    allp.sort()
    return _enrichment_from_sorted(allp, same, n, percentiles, convention)


def _enrichment_from_sorted(
    allp: np.ndarray,
    same: np.ndarray,
    n_wells: int,
    percentiles: Sequence[float],
    convention: str,
) -> EnrichmentResult:
    pct = np.asarray(list(percentiles), dtype=np.float64)
    if pct.size == 0 or np.any((pct < 0) | (pct > 100)):
        raise ValueError(f"percentiles must be in [0, 100], got {list(percentiles)}")
    rep = 1 if convention == "paper" else 2
    thr = linear_quantile_sorted(allp, pct, repeat=rep)
    m, m_same = len(allp), len(same)
    n_strong = m - np.searchsorted(allp, thr, side="right")
    a = m_same - np.searchsorted(same, thr, side="right")
    table = _table_from_counts(pct, thr, a, n_strong, m, m_same, rep)
    return EnrichmentResult(table=table, convention=convention, n_wells=n_wells, n_pairs=rep * m)


def _table_from_counts(
    pct: np.ndarray, thr: np.ndarray, a: np.ndarray, n_strong: np.ndarray, m: int, m_same: int, rep: int
) -> pd.DataFrame:
    """The enrichment table from the thresholds, same-MOA strong pairs ``a`` and strong pairs (unordered counts)."""
    b = n_strong - a
    c = m_same - a
    d = (m - m_same) - b
    a, b, c, d = (rep * x.astype(np.int64) for x in (a, b, c, d))
    ors = [odds_ratio(*t) for t in zip(a, b, c, d)]
    ps = [
        float(fisher_exact([[int(x[0]), int(x[1])], [int(x[2]), int(x[3])]], alternative="greater").pvalue)
        for x in zip(a, b, c, d)
    ]
    table = pd.DataFrame(
        {
            "percentile": pct,
            "threshold": thr,
            "a": a,
            "b": b,
            "c": c,
            "d": d,
            "odds_ratio": np.asarray(ors, dtype=np.float64),
            "p_value": np.asarray(ps, dtype=np.float64),
            "n_pairs": np.full(len(pct), rep * m, dtype=np.int64),
        }
    )
    return table


def enrichment(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    moa_col: str = DEFAULT_MOA_COL,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    convention: Convention = "paper",
    sim: np.ndarray | None = None,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> EnrichmentResult:
    """Enrichment (odds ratio + one-sided Fisher p) of same-MOA pairs among strongly correlated pairs.

    Same-MOA = equal ``df[moa_col]`` (string equality). ``df`` should already exclude
    DMSO (see :func:`~moa_core.evaluation.filtering.filter_test_wells`). ``sim`` may be
    passed to reuse a PCC matrix aligned with ``df`` rows. See the module docstring for
    the pair convention, threshold definition, tie rule and zero-cell handling.

    Raises
    ------
    ValueError
        Missing labels, fewer than 2 MOAs, fewer than 2 wells, invalid features.
    """
    require_columns(df, [moa_col])
    codes, _ = encode_labels(df[moa_col], name=moa_col)
    require_min_classes(codes, 2, "enrichment")
    if sim is None:
        sim = pearson_similarity(df, features, plate_col=plate_col, well_col=well_col)
    check_sim(sim, len(df))
    return enrichment_from_similarity(sim, codes, percentiles=percentiles, convention=convention)
