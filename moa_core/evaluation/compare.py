"""Compare methods (MP, CP, DP, a user's own) on exactly the same wells.

:func:`compare_methods` runs the embedding suite for every method on the test wells
present in *all* methods' tables (so no method is scored on an easier subset), and
scores image-field predictions where a method has them. :func:`compare_holdout` does the
same for the compound-holdout analysis.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from moa_core.splits import ELIGIBLE_COL, SPLIT_COL

from .classification import classification_metrics
from .holdout import compound_holdout_eval
from .results import concat_results
from .suite import run_embedding_suite

KEYS = ["Metadata_Plate", "Metadata_Well"]


def _features(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if not str(c).startswith("Metadata_")]


def common_test_wells(splits: pd.DataFrame, tables: Mapping[str, pd.DataFrame], negcon: str = "DMSO") -> pd.DataFrame:
    """(plate, well) of the test split present in every table: evaluable wells plus DMSO.

    DMSO test wells are kept because phenotypic-activity mAP needs same-plate negative
    controls; the suite drops them (and single-compound MOAs) from the embedding analyses.
    """
    test = splits[splits[SPLIT_COL].eq("test") & (splits[ELIGIBLE_COL] | splits["Metadata_moa"].eq(negcon))][KEYS]
    for df in tables.values():
        test = test.merge(df[KEYS], on=KEYS, how="inner")
    return test


def require_evaluable_test_wells(splits: pd.DataFrame, tables: Mapping[str, pd.DataFrame], *,
                                 where: str = "", negcon: str = "DMSO", minimum: int = 2) -> int:
    """Number of evaluable non-control test wells common to ``tables``; an error naming ``where`` below ``minimum``.

    The paper's analyses need MOAs with at least two compounds in the test split; a single
    plate (e.g. one LINCS plate at 10 uM) often has too few.
    """
    from moa_core.errors import MoaInputError

    test = common_test_wells(splits, tables, negcon).merge(splits, on=KEYS)
    n = int((test[ELIGIBLE_COL] & test["Metadata_moa"].ne(negcon)).sum())
    if n < minimum:
        moas = splits[splits[ELIGIBLE_COL]]["Metadata_moa"].nunique()
        raise MoaInputError(f"{where}: {n} evaluable test well(s) ({moas} MOAs have >= 2 compounds after the "
                            f"paper's filters); add plates to the dataset (or relax its dose filter) to evaluate it")
    return n


def compare_methods(
    tables: Mapping[str, pd.DataFrame],
    splits: pd.DataFrame,
    *,
    field_predictions: Mapping[str, pd.DataFrame] | None = None,
    seed: int = 0,
    **suite_kwargs,
) -> pd.DataFrame:
    """Tidy results of every analysis for every method, on the same test wells.

    Parameters
    ----------
    tables
        ``{method: well-level table}`` (``Metadata_*`` columns + features, standardized).
    splits
        The well split (``Metadata_split``, ``Metadata_eval_eligible``, ``Metadata_moa``...).
    field_predictions
        ``{method: field table}`` with ``Metadata_Plate/Well/Site`` and ``Prob_<class>``
        columns, for the image-level classification analysis (methods with a classifier).
    """
    test = common_test_wells(splits, tables)
    train = splits[splits[SPLIT_COL].eq("train")][KEYS]
    frames = []
    for method, df in tables.items():
        frames.append(run_embedding_suite(df.merge(test, on=KEYS, how="inner"), _features(df), method,
                                          train_df=df.merge(train, on=KEYS, how="inner"), seed=seed, **suite_kwargs))
    meta_cols = KEYS + [c for c in ("Metadata_moa", "Metadata_cell_line", "Metadata_timepoint") if c in splits.columns]
    for method, fp in (field_predictions or {}).items():
        fp = fp.merge(splits[meta_cols], on=KEYS).merge(test, on=KEYS, how="inner")
        fp = fp[fp["Metadata_moa"].ne("DMSO")]
        prob_cols = [c for c in fp.columns if c.startswith("Prob_")]
        res = classification_metrics(fp["Metadata_moa"], fp[prob_cols].to_numpy(), [c[5:] for c in prob_cols], fp)
        frames.append(res.to_results(method))
    return concat_results(frames)


def compare_holdout(tables: Mapping[str, pd.DataFrame], holdout_splits: pd.DataFrame) -> pd.DataFrame:
    """Held-out-compound MOA prediction for every method.

    MOA medians come from every non-held-out well (train + val: all training compounds);
    the held-out compounds are the ``test`` split of :func:`moa_core.splits.compound_holdout_split`.
    """
    frames = []
    for method, df in tables.items():
        df = df.drop(columns=[c for c in (SPLIT_COL, ELIGIBLE_COL) if c in df.columns])
        df = df.merge(holdout_splits[KEYS + [SPLIT_COL]], on=KEYS, how="inner")
        res = compound_holdout_eval(df[df[SPLIT_COL].ne("test")], df[df[SPLIT_COL].eq("test")], _features(df))
        frames.append(res.to_results(method))
    return concat_results(frames)
