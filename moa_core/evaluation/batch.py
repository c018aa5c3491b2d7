"""Plate (batch) effect on same-MOA similarity (paper ESI Fig. 7).

Definitions
-----------
Over unordered same-MOA well pairs ``i < j``:

* ``within_plate``: both wells on the same plate; ``across_plates``: different plates;
* mean PCC, sample SD (``ddof=1``) and number of pairs of each;
* ``delta = within_plate_mean - across_plates_mean`` (the paper reports 0.01 for
  JUMP1 and 0.10 for LINCS), with the two-sided z-test of
  :func:`moa_core.evaluation.groups.z_test` as ``p_value``.

``exclude_same_compound=True`` restricts to pairs of *different* compounds (otherwise
replicate pairs of the same compound are included, as same-MOA pairs).
A single plate gives NaN for ``across_plates`` (documented, not an error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

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
from .groups import z_test
from .intra_inter import pair_summary
from .results import result_row, results_frame
from .similarity import pearson_similarity

__all__ = ["BatchEffectResult", "batch_effect", "batch_effect_from_similarity"]


@dataclass(frozen=True)
class BatchEffectResult:
    """Same-MOA PCC within vs across plates."""

    within_mean: float
    within_sd: float
    n_within: int
    across_mean: float
    across_sd: float
    n_across: int
    z: float
    p_value: float

    @property
    def delta(self) -> float:
        return self.within_mean - self.across_mean

    def to_results(self, method: str, analysis: str = "batch") -> pd.DataFrame:
        return results_frame(
            [
                result_row(method, analysis, "within_plate_mean", self.within_mean, n=self.n_within),
                result_row(method, analysis, "within_plate_sd", self.within_sd, n=self.n_within),
                result_row(method, analysis, "across_plates_mean", self.across_mean, n=self.n_across),
                result_row(method, analysis, "across_plates_sd", self.across_sd, n=self.n_across),
                result_row(
                    method, analysis, "delta", self.delta, p_value=self.p_value, n=self.n_within + self.n_across
                ),
            ]
        )


def batch_effect_from_similarity(
    sim: np.ndarray,
    moa_codes: np.ndarray,
    plate_codes: np.ndarray,
    compound_codes: np.ndarray | None = None,
) -> BatchEffectResult:
    """Within- vs across-plate same-MOA PCC from a similarity matrix (see module docstring)."""
    crit = [np.asarray(moa_codes), np.asarray(plate_codes)]
    if compound_codes is not None:
        crit.append(np.asarray(compound_codes))
        parts = upper_pairs_by_category(sim, crit)
        within, across = parts[(True, True, False)], parts[(True, False, False)]
    else:
        parts = upper_pairs_by_category(sim, crit)
        within, across = parts[(True, True)], parts[(True, False)]
    wm, ws, wn = pair_summary(within)
    am, as_, an = pair_summary(across)
    z, p = z_test(wm, ws, wn, am, as_, an)
    return BatchEffectResult(wm, ws, wn, am, as_, an, z, p)


def batch_effect(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    moa_col: str = DEFAULT_MOA_COL,
    plate_col: str = DEFAULT_PLATE_COL,
    compound_col: str = DEFAULT_COMPOUND_COL,
    exclude_same_compound: bool = False,
    sim: np.ndarray | None = None,
    well_col: str = DEFAULT_WELL_COL,
) -> BatchEffectResult:
    """Mean same-MOA PCC within a plate vs across plates (see module docstring)."""
    cols = [moa_col, plate_col] + ([compound_col] if exclude_same_compound else [])
    require_columns(df, cols)
    moa, _ = encode_labels(df[moa_col], name=moa_col)
    plate, _ = encode_labels(df[plate_col], name=plate_col)
    cpd = encode_labels(df[compound_col], name=compound_col)[0] if exclude_same_compound else None
    if sim is None:
        sim = pearson_similarity(df, features, plate_col=plate_col, well_col=well_col)
    check_sim(sim, len(df))
    return batch_effect_from_similarity(sim, moa, plate, cpd)
