"""Compare methods (MP, CP, DP, a user's own) on exactly the same wells.

:func:`compare_methods` runs the embedding suite for every method on the test wells
present in *all* methods' tables (so no method is scored on an easier subset), and
scores image-field predictions where a method has them. :func:`compare_holdout` does the
same for the compound-holdout analysis. :func:`compare_per_moa` breaks the k-NN vote
and the class latent assignment down per MOA (with confusion counts) and maps every
method's wells in 2-D, on the same common test wells.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import pandas as pd

from moa_core.splits import ELIGIBLE_COL, SPLIT_COL

from .classification import classification_metrics
from .holdout import compound_holdout_eval
from .per_moa import embedding_map, moa_predictions, per_moa_breakdown
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


def require_evaluable_test_wells(
    splits: pd.DataFrame, tables: Mapping[str, pd.DataFrame], *, where: str = "", negcon: str = "DMSO", minimum: int = 2
) -> int:
    """Number of evaluable non-control test wells common to ``tables``; an error naming ``where`` below ``minimum``.

    The paper's analyses need MOAs with at least two compounds in the test split; a single
    plate (e.g. one LINCS plate at 10 uM) often has too few.
    """
    from moa_core.errors import MoaInputError

    test = common_test_wells(splits, tables, negcon).merge(splits, on=KEYS)
    n = int((test[ELIGIBLE_COL] & test["Metadata_moa"].ne(negcon)).sum())
    if n < minimum:
        moas = splits[splits[ELIGIBLE_COL]]["Metadata_moa"].nunique()
        raise MoaInputError(
            f"{where}: {n} evaluable test well(s) ({moas} MOAs have >= 2 compounds after the "
            f"paper's filters); add plates to the dataset (or relax its dose filter) to evaluate it"
        )
    return n


#: Columns of :func:`chance_baselines` (the warehouse table ``evaluation_chance``).
CHANCE_COLUMNS = ["metric", "value", "n_moas", "n_wells", "definition"]


def prevalence_f1(counts) -> float:
    """``sum_c p_c^2`` with ``p_c = n_c / sum n``: the expected weighted F1 (and weighted precision and
    recall) of a random guess that draws each MOA with its prevalence."""
    import math

    import numpy as np

    n = np.asarray(counts, dtype=float)
    n = n[n > 0]
    if n.size == 0:
        return math.nan
    p = n / n.sum()
    return float((p**2).sum())


def chance_baselines(splits: pd.DataFrame, tables: Mapping[str, pd.DataFrame], negcon: str = "DMSO") -> pd.DataFrame:
    """Chance levels of the headline analyses on exactly the wells :func:`compare_methods` scores (the common
    test wells, through the suite's own :func:`~moa_core.evaluation.filtering.filter_test_wells`):
    ``weighted_f1`` (:func:`prevalence_f1` of their MOA counts; k-NN, class latent and logistic F1),
    ``odds_ratio`` (1: no enrichment) and ``intra_inter_delta`` (0). Columns :data:`CHANCE_COLUMNS`."""
    from .filtering import filter_test_wells

    test = common_test_wells(splits, tables, negcon).merge(splits, on=KEYS)
    kept, _ = filter_test_wells(test, negcon=negcon)
    counts = kept["Metadata_moa"].value_counts()
    n_moas, n_wells = int((counts > 0).sum()), int(counts.sum())
    rows = [
        ("weighted_f1", prevalence_f1(counts), n_moas, n_wells, "sum of squared MOA prevalences of the scored wells"),
        ("odds_ratio", 1.0, n_moas, n_wells, "no enrichment"),
        ("intra_inter_delta", 0.0, n_moas, n_wells, "no MOA structure"),
    ]
    return pd.DataFrame(rows, columns=CHANCE_COLUMNS)


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
        frames.append(
            run_embedding_suite(
                df.merge(test, on=KEYS, how="inner"),
                _features(df),
                method,
                train_df=df.merge(train, on=KEYS, how="inner"),
                seed=seed,
                **suite_kwargs,
            )
        )
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


class PerMoaComparison(NamedTuple):
    """Tidy outputs of :func:`compare_per_moa`, each with a leading ``method`` column."""

    per_moa: pd.DataFrame
    confusion: pd.DataFrame
    maps: pd.DataFrame


def compare_per_moa(
    tables: Mapping[str, pd.DataFrame],
    splits: pd.DataFrame,
    *,
    k: int | Mapping[str, int] | None = None,
) -> PerMoaComparison:
    """Per-MOA metrics, confusion counts and PCA maps of every method on the common test wells.

    The wells are those :func:`compare_methods` scores (:func:`common_test_wells`, then the
    suite's filtering); see :mod:`moa_core.evaluation.per_moa` for the definitions.

    Parameters
    ----------
    tables, splits
        As in :func:`compare_methods`.
    k
        k of the k-NN vote: one for all methods, ``{method: k}`` (e.g. the ``best_f1`` k of
        :func:`compare_methods`' results), or ``None`` for each method's best-F1 k.
    """
    test = common_test_wells(splits, tables)
    per, conf, maps = [], [], []
    for method, df in tables.items():
        k_m = k.get(method) if isinstance(k, Mapping) else k
        pred = moa_predictions(df.merge(test, on=KEYS, how="inner"), _features(df), k=k_m)
        p, c = per_moa_breakdown(pred.wells, _features(df), predictions=pred)
        per.append(p.assign(method=method))
        conf.append(c.assign(method=method))
        maps.append(embedding_map(pred.wells, _features(df), X=pred.X).assign(method=method))

    def tidy(frames: list[pd.DataFrame]) -> pd.DataFrame:
        out = pd.concat(frames, ignore_index=True)
        return out[["method", *[c for c in out.columns if c != "method"]]]

    return PerMoaComparison(tidy(per), tidy(conf), tidy(maps))
