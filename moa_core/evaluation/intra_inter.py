"""Intra-MOA vs inter-MOA average pairwise PCC (paper Fig. 3c/5c).

Definitions
-----------
Over all unordered well pairs ``i < j`` (no self-pairs, each pair once):

* intra = mean PCC over pairs with the same MOA; inter = mean PCC over pairs with
  different MOAs;
* SDs are sample standard deviations (``ddof=1``) of those pair PCCs (the paper's
  error bars span one SD);
* ``delta = intra - inter``.

An MOA group with a single well contributes no intra pair. If there is no intra pair
at all the intra mean is NaN (documented, not an error); fewer than 2 MOAs raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import (
    DEFAULT_MOA_COL,
    DEFAULT_PLATE_COL,
    DEFAULT_WELL_COL,
    check_sim,
    encode_labels,
    require_columns,
    require_min_classes,
)
from ._pairs import upper_pairs_by_category
from .results import result_row, results_frame
from .similarity import pearson_similarity

__all__ = ["IntraInterResult", "intra_inter_moa", "intra_inter_from_similarity", "pair_summary"]


def pair_summary(values: np.ndarray) -> tuple[float, float, int]:
    """``(mean, sample SD (ddof=1), n)`` of pair values; NaN mean if empty, NaN SD if n < 2."""
    n = int(len(values))
    mean = float(np.mean(values)) if n else float("nan")
    sd = float(np.std(values, ddof=1)) if n > 1 else float("nan")
    return mean, sd, n


@dataclass(frozen=True)
class IntraInterResult:
    """Intra/inter-MOA PCC summary."""

    intra_mean: float
    intra_sd: float
    n_intra: int
    inter_mean: float
    inter_sd: float
    n_inter: int

    @property
    def delta(self) -> float:
        """``intra_mean - inter_mean``."""
        return self.intra_mean - self.inter_mean

    def to_results(self, method: str, analysis: str = "intra_inter") -> pd.DataFrame:
        """Tidy rows: intra_mean/sd, inter_mean/sd, delta (n = pairs)."""
        return results_frame(
            [
                result_row(method, analysis, "intra_mean", self.intra_mean, n=self.n_intra),
                result_row(method, analysis, "intra_sd", self.intra_sd, n=self.n_intra),
                result_row(method, analysis, "inter_mean", self.inter_mean, n=self.n_inter),
                result_row(method, analysis, "inter_sd", self.inter_sd, n=self.n_inter),
                result_row(method, analysis, "delta", self.delta, n=self.n_intra + self.n_inter),
            ]
        )


def intra_inter_from_similarity(sim: np.ndarray, moa_codes: np.ndarray) -> IntraInterResult:
    """Intra/inter summary from a PCC matrix and aligned MOA codes (see module docstring)."""
    parts = upper_pairs_by_category(sim, [np.asarray(moa_codes)])
    im, isd, ni = pair_summary(parts[(True,)])
    em, esd, ne = pair_summary(parts[(False,)])
    return IntraInterResult(im, isd, ni, em, esd, ne)


def intra_inter_moa(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    moa_col: str = DEFAULT_MOA_COL,
    sim: np.ndarray | None = None,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
) -> IntraInterResult:
    """Mean/SD of PCC over same-MOA and different-MOA unordered well pairs, and their delta.

    Raises
    ------
    ValueError
        Missing MOA labels, fewer than 2 MOAs, invalid features / fewer than 2 wells.
    """
    require_columns(df, [moa_col])
    codes, _ = encode_labels(df[moa_col], name=moa_col)
    require_min_classes(codes, 2, "intra/inter-MOA PCC")
    if sim is None:
        sim = pearson_similarity(df, features, plate_col=plate_col, well_col=well_col)
    check_sim(sim, len(df))
    return intra_inter_from_similarity(sim, codes)
