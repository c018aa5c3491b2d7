"""Select the wells the paper's embedding analyses run on.

Paper (Methods, "Embedding extraction and analysis"): analyses use the held-out
*test* wells; negative-control DMSO wells are excluded from all embedding analyses;
MOAs represented by a single compound are removed ("a single-compound MOA cannot be
disentangled from its compound"); the datasets keep only compounds with at most one
known MOA.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from moa_core.data.design import is_multi_moa
from moa_core.errors import MoaInputError

from ._common import (
    DEFAULT_COMPOUND_COL,
    DEFAULT_MOA_COL,
    DEFAULT_NEGCON,
    require_columns,
)

__all__ = ["filter_test_wells", "is_multi_moa"]


def filter_test_wells(
    df: pd.DataFrame,
    *,
    moa_col: str = DEFAULT_MOA_COL,
    compound_col: str = DEFAULT_COMPOUND_COL,
    negcon: str = DEFAULT_NEGCON,
    min_compounds_per_moa: int = 2,
    single_moa_only: bool = False,
    multi_moa_sep: str = "|",
    split_col: str | None = None,
    split_value: str = "test",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Filter a well table to the paper's evaluation set and report what was dropped.

    Steps, applied in this order (each well is attributed to the first rule that drops it):

    1. ``split`` — if ``split_col`` is given, keep wells with ``df[split_col] == split_value``.
    2. ``negcon`` — drop wells with ``df[compound_col] == negcon`` (DMSO).
    3. ``missing_moa`` — drop wells whose MOA is missing (NaN/None/empty string).
    4. ``multi_moa`` — if ``single_moa_only``, drop wells whose MOA contains
       ``multi_moa_sep`` (e.g. ``"a|b"``).
    5. ``few_compounds`` — drop MOAs with fewer than ``min_compounds_per_moa`` *distinct*
       compounds among the remaining wells (default 2: single-compound MOAs).

    Parameters
    ----------
    df : pandas.DataFrame
        Well-level table with metadata columns.
    moa_col, compound_col : str
        MOA and compound columns.
    negcon : str
        Control value in ``compound_col``.
    min_compounds_per_moa : int
        Minimum distinct compounds per MOA (use 1 to keep every MOA).
    single_moa_only : bool
        Drop multi-MOA annotations.
    multi_moa_sep : str
        Separator of multi-MOA annotations.
    split_col, split_value : str, optional
        Restrict to one split (e.g. ``"Metadata_split" == "test"``).

    Returns
    -------
    (pandas.DataFrame, dict)
        The filtered table (original index preserved, original row order) and a report
        with ``n_input``, ``n_output``, ``n_wells_dropped`` (dict rule -> count),
        ``n_moas_input``, ``n_moas_output``, ``moas_dropped_few_compounds`` (sorted list),
        ``n_compounds_output``.

    Raises
    ------
    SchemaError
        Missing metadata columns.
    MoaInputError
        Nothing is left after filtering.
    """
    cols = [moa_col, compound_col] + ([split_col] if split_col else [])
    require_columns(df, cols)
    keep = pd.Series(True, index=df.index)
    dropped: dict[str, int] = {}

    def apply(rule: str, mask: pd.Series) -> None:
        nonlocal keep
        mask = mask.fillna(False).astype(bool)
        dropped[rule] = int((keep & mask).sum())
        keep = keep & ~mask

    moa = df[moa_col]
    n_moas_input = int(moa[moa.notna()].astype(str).nunique())
    if split_col:
        apply("split", df[split_col].astype("string") != str(split_value))
    apply("negcon", df[compound_col].astype("string") == str(negcon))
    missing = moa.isna() | (moa.astype("string").str.strip() == "")
    apply("missing_moa", missing)
    if single_moa_only:
        apply("multi_moa", is_multi_moa(moa, multi_moa_sep))

    kept = df[keep.to_numpy()]
    n_cpd = kept.groupby(kept[moa_col].astype(str), sort=True)[compound_col].nunique()
    few = sorted(n_cpd.index[n_cpd < min_compounds_per_moa].tolist())
    apply("few_compounds", df[moa_col].astype(str).isin(few) & keep)

    out = df[keep.to_numpy()]
    if len(out) == 0:
        raise MoaInputError(f"no wells left after filtering (dropped: {dropped})")
    report: dict[str, Any] = {
        "n_input": int(len(df)),
        "n_output": int(len(out)),
        "n_wells_dropped": dropped,
        "n_moas_input": n_moas_input,
        "n_moas_output": int(out[moa_col].astype(str).nunique()),
        "moas_dropped_few_compounds": few,
        "n_compounds_output": int(out[compound_col].nunique()),
    }
    assert report["n_input"] - report["n_output"] == int(np.sum(list(dropped.values())))
    return out, report
