"""Pairwise PCC of three groups of embedding pairs, with two-sided z-tests (paper Fig. 3f/5f).

Definitions
-----------
Pairs are all unordered well pairs ``i < j`` (unique, never a well with itself), split into

1. ``same_compound``: same compound (hence same MOA);
2. ``diff_compound_same_moa``: different compound, same MOA;
3. ``diff_moa``: different MOA (hence different compound).

(A same-compound pair is group 1 whatever its MOA annotation.) For each group: mean PCC,
sample SD (``ddof=1``) and number of pairs ``n``.

Statistical test (paper "Statistical tests"): two-sided z-test for a difference of
means, ``z = (m1 - m2) / sqrt(s1^2/n1 + s2^2/n2)``, ``p = 2 * norm.sf(|z|)``. It is
NaN when a group has fewer than 2 pairs. If the standard error is 0, ``z`` is
``+-inf`` (p = 0) when the means differ and NaN when they are equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import norm

from ._common import (
    DEFAULT_COMPOUND_COL,
    DEFAULT_MOA_COL,
    DEFAULT_PLATE_COL,
    DEFAULT_WELL_COL,
    check_sim,
    encode_labels,
    require_columns,
)
from ._pairs import upper_pairs_by_category
from .intra_inter import pair_summary
from .results import result_row, results_frame
from .similarity import pearson_similarity

__all__ = ["GROUP_NAMES", "ThreeGroupResult", "three_group_pcc", "three_groups_from_similarity", "z_test"]

GROUP_NAMES: tuple[str, str, str] = ("same_compound", "diff_compound_same_moa", "diff_moa")


def z_test(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int) -> tuple[float, float]:
    """Two-sided z-test for a difference of means (see module docstring). Returns ``(z, p)``."""
    if n1 < 2 or n2 < 2 or not all(map(math.isfinite, (m1, s1, m2, s2))):
        return float("nan"), float("nan")
    se = math.sqrt(s1 * s1 / n1 + s2 * s2 / n2)
    diff = m1 - m2
    if se == 0:
        if diff == 0:
            return float("nan"), float("nan")
        return math.copysign(math.inf, diff), 0.0
    z = diff / se
    return float(z), float(2.0 * norm.sf(abs(z)))


@dataclass(frozen=True)
class ThreeGroupResult:
    """Group summaries and pairwise z-tests.

    Attributes
    ----------
    summary : pandas.DataFrame
        ``group, mean, sd, n`` (one row per group, in :data:`GROUP_NAMES` order).
    tests : pandas.DataFrame
        ``group_1, group_2, mean_diff, z, p_value`` for each pair of groups.
    """

    summary: pd.DataFrame
    tests: pd.DataFrame

    def to_results(self, method: str, analysis: str = "groups") -> pd.DataFrame:
        rows = []
        for r in self.summary.itertuples(index=False):
            rows.append(result_row(method, analysis, f"{r.group}_mean", r.mean, n=r.n))
            rows.append(result_row(method, analysis, f"{r.group}_sd", r.sd, n=r.n))
        n_of = dict(zip(self.summary["group"], self.summary["n"]))
        for t in self.tests.itertuples(index=False):
            n = n_of[t.group_1] + n_of[t.group_2]
            rows.append(
                result_row(
                    method, analysis, f"mean_diff_{t.group_1}_vs_{t.group_2}", t.mean_diff, p_value=t.p_value, n=n
                )
            )
            rows.append(result_row(method, analysis, f"z_{t.group_1}_vs_{t.group_2}", t.z, p_value=t.p_value, n=n))
        return results_frame(rows)


def three_groups_from_similarity(
    sim: np.ndarray, compound_codes: np.ndarray, moa_codes: np.ndarray
) -> ThreeGroupResult:
    """Three-group PCC summary from a similarity matrix and aligned compound / MOA codes."""
    parts = upper_pairs_by_category(sim, [np.asarray(compound_codes), np.asarray(moa_codes)])
    values = {
        GROUP_NAMES[0]: np.concatenate([parts[(True, True)], parts[(True, False)]]),
        GROUP_NAMES[1]: parts[(False, True)],
        GROUP_NAMES[2]: parts[(False, False)],
    }
    return three_groups_from_summaries([pair_summary(values[g]) for g in GROUP_NAMES])


def three_groups_from_summaries(summaries: list[tuple[float, float, int]]) -> ThreeGroupResult:
    """The three-group result from ``(mean, SD, n)`` of each group, in :data:`GROUP_NAMES` order."""
    stats = dict(zip(GROUP_NAMES, summaries))
    summary = pd.DataFrame(
        {
            "group": list(GROUP_NAMES),
            "mean": [stats[g][0] for g in GROUP_NAMES],
            "sd": [stats[g][1] for g in GROUP_NAMES],
            "n": np.array([stats[g][2] for g in GROUP_NAMES], dtype=np.int64),
        }
    )
    rows = []
    for g1, g2 in combinations(GROUP_NAMES, 2):
        (m1, s1, n1), (m2, s2, n2) = stats[g1], stats[g2]
        z, p = z_test(m1, s1, n1, m2, s2, n2)
        rows.append({"group_1": g1, "group_2": g2, "mean_diff": m1 - m2, "z": z, "p_value": p})
    return ThreeGroupResult(summary=summary, tests=pd.DataFrame(rows))


def three_group_pcc(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    compound_col: str = DEFAULT_COMPOUND_COL,
    moa_col: str = DEFAULT_MOA_COL,
    sim: np.ndarray | None = None,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> ThreeGroupResult:
    """Mean/SD/n of PCC for same-compound, different-compound-same-MOA and different-MOA pairs.

    See the module docstring for group definitions and the z-test.
    """
    require_columns(df, [compound_col, moa_col])
    cpd, _ = encode_labels(df[compound_col], name=compound_col)
    moa, _ = encode_labels(df[moa_col], name=moa_col)
    if sim is None:
        sim = pearson_similarity(df, features, plate_col=plate_col, well_col=well_col)
    check_sim(sim, len(df))
    return three_groups_from_similarity(sim, cpd, moa)
