"""Run every applicable embedding analysis and flatten the outcome to tidy rows.

Order of work (one PCC matrix shared by all pair-based analyses):

1. filtering (:func:`~moa_core.evaluation.filtering.filter_test_wells`) unless
   ``filter_wells=False``;
2. PCC matrix of the filtered wells;
3. enrichment (each requested convention);
4. intra- vs inter-MOA PCC;
5. k-NN curves for k = 1..N-1;
6. class latent assignment (leave-one-out MLEs);
7. logistic regression, if ``train_df`` is given and ``run_logistic``;
8. three-group PCC with z-tests, if the compound column exists;
9. compound holdout, if ``heldout_df`` is given (MLEs from ``train_df``);
11. plate effect, if the plate column has >= 2 plates;
12. mAP activity (needs control wells in ``df``) and consistency, if ``run_map``;
13. bootstrap CIs (``n_boot`` > 0) written into ``ci_low``/``ci_high`` of the headline
    rows: enrichment ``odds_ratio`` at the 99th percentile (paper convention; uses
    ``n_boot_enrichment`` replicates), intra/inter ``delta``, k-NN ``best_f1`` (F1 at
    the best k) and latent ``f1``.

Analysis 10 (image-field classification) needs field-level scores, not well
embeddings; call :func:`~moa_core.evaluation.classification.classification_metrics`
directly.

Optional analyses that cannot run (e.g. a single plate, no control wells, copairs
finding no pairs) are *skipped with a recorded reason* (``SuiteResult.skipped`` and a
``UserWarning``), never silently; invalid inputs to the core analyses raise.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from moa_core.errors import MoaInputError

from ._common import (
    DEFAULT_COMPOUND_COL,
    DEFAULT_MOA_COL,
    DEFAULT_NEGCON,
    DEFAULT_PLATE_COL,
    DEFAULT_WELL_COL,
    LazyRowNames,
    encode_labels,
    require_columns,
    require_min_classes,
)
from .batch import BatchEffectResult, batch_effect_from_similarity
from .bootstrap import (
    BootstrapCI,
    bootstrap_enrichment_odds_ratio,
    bootstrap_intra_inter_delta,
    bootstrap_query_metric,
)
from .enrichment import DEFAULT_PERCENTILES, EnrichmentResult, enrichment_from_similarity
from .filtering import filter_test_wells
from .groups import ThreeGroupResult, three_groups_from_similarity
from .holdout import HoldoutResult, compound_holdout_eval
from .intra_inter import IntraInterResult, intra_inter_from_similarity
from .knn import KNNResult, knn_from_similarity
from .latent import LatentResult, latent_from_array
from .logistic import LogisticResult, logistic_regression_eval
from .map import MapResult, phenotypic_activity, phenotypic_consistency
from .results import concat_results, result_row, results_frame
from .similarity import feature_matrix, pearson_similarity_matrix

__all__ = ["SuiteResult", "evaluate_embeddings", "run_embedding_suite"]

_HEADLINE_PERCENTILE = 99.0
#: Above this many filtered wells the pair-based analyses run block-wise (the all-pairs PCC matrix alone
#: would be 8 N² bytes: 0.5 GB at 8,000 wells).
BLOCKWISE_MIN_WELLS = 6_000
#: Every k of the k-NN curves up to this many wells (their predictions are a (N-1) x N matrix); above, k
#: goes up to KNN_MAX_K (the paper's best k is small: 1-10 on its data).
KNN_EVERY_K_MAX_WELLS = 10_000
KNN_MAX_K = 500


@dataclass
class SuiteResult:
    """Everything :func:`evaluate_embeddings` computed.

    ``results`` is the tidy frame (:data:`~moa_core.evaluation.results.RESULT_COLUMNS`);
    the other attributes hold the per-analysis dataclasses (per-k curves, per-query
    predictions, tables) or ``None`` when an analysis did not run.
    """

    results: pd.DataFrame
    filter_report: dict[str, Any] | None = None
    enrichment: dict[str, EnrichmentResult] = field(default_factory=dict)
    intra_inter: IntraInterResult | None = None
    knn: KNNResult | None = None
    latent: LatentResult | None = None
    logistic: LogisticResult | None = None
    groups: ThreeGroupResult | None = None
    holdout: HoldoutResult | None = None
    batch: BatchEffectResult | None = None
    map_activity: MapResult | None = None
    map_consistency: MapResult | None = None
    bootstrap: dict[str, BootstrapCI] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _filter_rows(method: str, report: dict[str, Any]) -> pd.DataFrame:
    rows = [
        result_row(method, "filtering", "n_wells_input", report["n_input"]),
        result_row(method, "filtering", "n_wells_output", report["n_output"]),
        result_row(method, "filtering", "n_moas_output", report["n_moas_output"]),
        result_row(method, "filtering", "n_compounds_output", report["n_compounds_output"]),
    ]
    rows += [result_row(method, "filtering", f"n_dropped_{k}", v) for k, v in report["n_wells_dropped"].items()]
    return results_frame(rows)


def evaluate_embeddings(
    df: pd.DataFrame,
    features: Sequence[str],
    method: str,
    *,
    train_df: pd.DataFrame | None = None,
    heldout_df: pd.DataFrame | None = None,
    moa_col: str = DEFAULT_MOA_COL,
    compound_col: str = DEFAULT_COMPOUND_COL,
    plate_col: str = DEFAULT_PLATE_COL,
    well_col: str = DEFAULT_WELL_COL,
    negcon: str = DEFAULT_NEGCON,
    filter_wells: bool = True,
    min_compounds_per_moa: int = 2,
    single_moa_only: bool = False,
    split_col: str | None = None,
    split_value: str = "test",
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    enrichment_conventions: Sequence[str] = ("paper", "cytominer-eval"),
    include_knn_curves: bool = True,
    store_knn_predictions: bool = True,
    run_logistic: bool = True,
    logistic_max_iter: int = 10_000,
    logistic_n_jobs: int | None = None,
    run_map: bool = True,
    map_null_size: int = 1000,
    map_threshold: float = 0.05,
    map_cache_dir: str | Path | None = None,
    n_boot: int = 200,
    n_boot_enrichment: int = 50,
    bootstrap_unit: Literal["well", "compound"] = "well",
    confidence: float = 0.95,
    seed: int = 0,
    blockwise: bool | None = None,
    knn_max_k: int | None = None,
) -> SuiteResult:
    """Run all applicable analyses on well-level embeddings of one method.

    Parameters
    ----------
    df : pandas.DataFrame
        Test-split wells (controls may be included; they are filtered out of the
        embedding analyses and used as negatives by mAP activity).
    features : list of str
        Embedding / feature columns.
    method : str
        Label written in the ``method`` column.
    train_df : pandas.DataFrame, optional
        Training-split wells: logistic regression training set and, with ``heldout_df``,
        the MLE source of the compound-holdout analysis.
    heldout_df : pandas.DataFrame, optional
        Wells of held-out compounds (compound-split scheme).
    moa_col, compound_col, plate_col, well_col, negcon
        Metadata column names and the control value of ``compound_col``.
    filter_wells, min_compounds_per_moa, single_moa_only, split_col, split_value
        Passed to :func:`~moa_core.evaluation.filtering.filter_test_wells`
        (``filter_wells=False``: ``df`` is used as is and must hold no control wells).
    percentiles, enrichment_conventions
        Enrichment percentiles and pair conventions (``"paper"``, ``"cytominer-eval"``).
    include_knn_curves, store_knn_predictions
        Emit one tidy row per k and metric; keep the (N-1, N) k-NN prediction matrix
        (needed for the k-NN bootstrap CI).
    run_logistic, logistic_max_iter, logistic_n_jobs
        Logistic-regression switches (runs only when ``train_df`` is given).
    run_map, map_null_size, map_threshold, map_cache_dir
        copairs mAP settings (``map_cache_dir=None`` lets copairs cache nulls in ``~/.copairs``).
    n_boot, n_boot_enrichment, bootstrap_unit, confidence
        Bootstrap settings (``n_boot=0`` disables all CIs; ``bootstrap_unit="compound"``
        resamples compounds).
    seed : int
        Seed for bootstrap and mAP nulls.
    blockwise : bool, optional
        Compute the pair-based analyses a block of rows at a time (:mod:`.blockwise`: memory O(N)
        instead of the O(N²) PCC matrix; the same numbers up to float64 round-off). Default: when
        the filtered wells exceed :data:`BLOCKWISE_MIN_WELLS`.
    knn_max_k : int, optional
        Largest k of the k-NN curves (default: every k, N - 1, up to :data:`KNN_EVERY_K_MAX_WELLS`
        wells; above, :data:`KNN_MAX_K`, recorded as ``knn/max_k`` in the results: storing every k's
        predictions is itself O(N²)).

    Returns
    -------
    SuiteResult
    """
    timings: dict[str, float] = {}
    skipped: dict[str, str] = {}
    out = SuiteResult(results=results_frame([]), timings=timings, skipped=skipped)
    frames: list[pd.DataFrame] = []

    def skip(name: str, reason: str) -> None:
        skipped[name] = reason
        warnings.warn(f"evaluation suite ({method}): skipped {name}: {reason}", UserWarning, stacklevel=3)

    t = time.perf_counter()
    if split_col is not None:
        require_columns(df, [split_col])
        df_split = df[(df[split_col].astype("string") == str(split_value)).fillna(False).to_numpy(bool)]
    else:
        df_split = df
    if filter_wells:
        test, report = filter_test_wells(
            df_split,
            moa_col=moa_col,
            compound_col=compound_col,
            negcon=negcon,
            min_compounds_per_moa=min_compounds_per_moa,
            single_moa_only=single_moa_only,
        )
        out.filter_report = report
        frames.append(_filter_rows(method, report))
    else:
        test = df_split
    require_columns(test, [moa_col])
    moa_codes, moa_classes = encode_labels(test[moa_col], name=moa_col)
    require_min_classes(moa_codes, 2, "evaluation suite")
    timings["filtering"] = time.perf_counter() - t

    t = time.perf_counter()
    X = feature_matrix(test, features, plate_col=plate_col, well_col=well_col, min_rows=2)
    n_wells = len(X)
    if blockwise is None:
        blockwise = n_wells > BLOCKWISE_MIN_WELLS
    if knn_max_k is None and n_wells > KNN_EVERY_K_MAX_WELLS:
        knn_max_k = KNN_MAX_K
    if blockwise:
        from . import blockwise as bw

        sim = bw.BlockSimilarity(X, LazyRowNames(test, plate_col, well_col))
    else:
        sim = pearson_similarity_matrix(X, LazyRowNames(test, plate_col, well_col))
    timings["similarity"] = time.perf_counter() - t

    t = time.perf_counter()
    for conv in enrichment_conventions:
        if blockwise:
            res = bw.enrichment_blockwise(sim, moa_codes, percentiles=percentiles, convention=conv)
        else:
            res = enrichment_from_similarity(
                sim,
                moa_codes,
                percentiles=percentiles,
                convention=conv,  # type: ignore[arg-type]
            )
        out.enrichment[conv] = res
        frames.append(res.to_results(method))
    timings["enrichment"] = time.perf_counter() - t

    t = time.perf_counter()
    out.intra_inter = (bw.intra_inter_blockwise if blockwise else intra_inter_from_similarity)(sim, moa_codes)
    frames.append(out.intra_inter.to_results(method))
    timings["intra_inter"] = time.perf_counter() - t

    t = time.perf_counter()
    kmax = None if knn_max_k is None else min(int(knn_max_k), n_wells - 1)
    out.knn = knn_from_similarity(
        sim, moa_codes, classes=moa_classes, store_predictions=store_knn_predictions, max_k=kmax
    )
    if kmax is not None:
        frames.append(results_frame([result_row(method, "knn", "max_k", float(kmax), n=n_wells)]))
    frames.append(out.knn.to_results(method, include_curves=include_knn_curves))
    timings["knn"] = time.perf_counter() - t

    t = time.perf_counter()
    out.latent = latent_from_array(X, moa_codes, moa_classes, LazyRowNames(test, plate_col, well_col))
    frames.append(out.latent.to_results(method))
    timings["latent"] = time.perf_counter() - t

    if train_df is not None and run_logistic:
        t = time.perf_counter()
        out.logistic = logistic_regression_eval(
            train_df,
            test,
            features,
            moa_col=moa_col,
            compound_col=compound_col,
            negcon=negcon,
            max_iter=logistic_max_iter,
            n_jobs=logistic_n_jobs,
            plate_col=plate_col,
            well_col=well_col,
        )
        frames.append(out.logistic.to_results(method))
        if not out.logistic.converged:
            skipped["logistic_convergence"] = "lbfgs did not converge for some one-vs-rest models"
        timings["logistic"] = time.perf_counter() - t
    elif run_logistic:
        skipped["logistic"] = "no train_df"

    cpd_codes = None
    if compound_col in test.columns:
        t = time.perf_counter()
        cpd_codes, _ = encode_labels(test[compound_col], name=compound_col)
        out.groups = (bw.three_groups_blockwise if blockwise else three_groups_from_similarity)(
            sim, cpd_codes, moa_codes
        )
        frames.append(out.groups.to_results(method))
        timings["groups"] = time.perf_counter() - t
    else:
        skip("groups", f"no {compound_col} column")

    if heldout_df is not None:
        if train_df is None:
            skip("holdout", "heldout_df given without train_df (MLE source)")
        else:
            t = time.perf_counter()
            out.holdout = compound_holdout_eval(
                train_df,
                heldout_df,
                features,
                moa_col=moa_col,
                compound_col=compound_col,
                negcon=negcon,
                plate_col=plate_col,
                well_col=well_col,
            )
            frames.append(out.holdout.to_results(method))
            timings["holdout"] = time.perf_counter() - t

    if plate_col in test.columns and test[plate_col].nunique() >= 2:
        t = time.perf_counter()
        plate_codes, _ = encode_labels(test[plate_col], name=plate_col)
        out.batch = (bw.batch_effect_blockwise if blockwise else batch_effect_from_similarity)(
            sim, moa_codes, plate_codes
        )
        frames.append(out.batch.to_results(method))
        timings["batch"] = time.perf_counter() - t
    else:
        skip("batch", f"fewer than 2 plates in {plate_col!r}")

    if run_map:
        t = time.perf_counter()
        kw = dict(null_size=map_null_size, threshold=map_threshold, seed=seed, cache_dir=map_cache_dir)
        try:
            out.map_activity = phenotypic_activity(
                df_split,
                features,
                compound_col=compound_col,
                plate_col=plate_col,
                negcon=negcon,
                well_col=well_col,
                **kw,
            )
            frames.append(out.map_activity.to_results(method))
        except MoaInputError as exc:
            skip("map_activity", str(exc))
        try:
            if blockwise:
                ok = ~(test[compound_col].astype("string") == str(negcon)).fillna(False).to_numpy(bool)
                ok &= test[moa_col].notna().to_numpy()
                out.map_consistency = bw.consistency_map_blockwise(
                    X[ok],
                    test[moa_col].to_numpy()[ok],
                    test[compound_col].to_numpy()[ok],
                    null_size=map_null_size,
                    threshold=map_threshold,
                    seed=seed,
                    cache_dir=map_cache_dir,
                )
            else:
                out.map_consistency = phenotypic_consistency(
                    test,
                    features,
                    moa_col=moa_col,
                    compound_col=compound_col,
                    negcon=negcon,
                    plate_col=plate_col,
                    well_col=well_col,
                    **kw,
                )
            frames.append(out.map_consistency.to_results(method))
        except MoaInputError as exc:
            skip("map_consistency", str(exc))
        timings["map"] = time.perf_counter() - t

    results = concat_results(frames)

    if n_boot > 0:
        t = time.perf_counter()
        groups = None
        if bootstrap_unit == "compound":
            if cpd_codes is None:
                raise MoaInputError(f"bootstrap_unit='compound' needs column {compound_col}")
            groups = cpd_codes
        elif bootstrap_unit != "well":
            raise ValueError(f"bootstrap_unit must be 'well' or 'compound', got {bootstrap_unit!r}")
        bs = out.bootstrap
        if "paper" in out.enrichment and n_boot_enrichment > 0:
            boot_or = bw.bootstrap_enrichment_blockwise if blockwise else bootstrap_enrichment_odds_ratio
            bs["enrichment_odds_ratio_99"] = boot_or(
                sim,
                moa_codes,
                percentile=_HEADLINE_PERCENTILE,
                n_boot=n_boot_enrichment,
                seed=seed,
                groups=groups,
                confidence=confidence,
            )
            sel = (
                (results["analysis"] == "enrichment")
                & (results["metric"] == "odds_ratio")
                & np.isclose(results["parameter"], _HEADLINE_PERCENTILE)
            )
            results.loc[sel, "ci_low"] = bs["enrichment_odds_ratio_99"].ci_low
            results.loc[sel, "ci_high"] = bs["enrichment_odds_ratio_99"].ci_high
        boot_delta = bw.bootstrap_intra_inter_delta_blockwise if blockwise else bootstrap_intra_inter_delta
        bs["intra_inter_delta"] = boot_delta(
            sim, moa_codes, n_boot=n_boot, seed=seed, groups=groups, confidence=confidence
        )
        k_best = out.knn.best["f1"][1]
        if out.knn.pred_codes is not None:
            bs["knn_best_f1"] = bootstrap_query_metric(
                moa_codes,
                out.knn.pred_codes[k_best - 1],
                len(moa_classes),
                metric="f1",
                n_boot=n_boot,
                seed=seed,
                groups=groups,
                confidence=confidence,
            )
        else:
            skipped["knn_bootstrap"] = "store_knn_predictions=False (no per-query predictions to resample)"
        bs["latent_f1"] = bootstrap_query_metric(
            moa_codes,
            out.latent.pred_codes,
            len(moa_classes),
            metric="f1",
            n_boot=n_boot,
            seed=seed,
            groups=groups,
            confidence=confidence,
        )
        for key, an, metric in (
            ("intra_inter_delta", "intra_inter", "delta"),
            ("knn_best_f1", "knn", "best_f1"),
            ("latent_f1", "latent", "f1"),
        ):
            if key in bs:
                sel = (results["analysis"] == an) & (results["metric"] == metric)
                results.loc[sel, "ci_low"] = bs[key].ci_low
                results.loc[sel, "ci_high"] = bs[key].ci_high
        timings["bootstrap"] = time.perf_counter() - t

    out.results = results
    return out


def run_embedding_suite(
    df: pd.DataFrame,
    features: Sequence[str],
    method: str,
    *,
    train_df: pd.DataFrame | None = None,
    seed: int = 0,
    n_boot: int = 200,
    **kwargs: Any,
) -> pd.DataFrame:
    """Tidy results of :func:`evaluate_embeddings` (same parameters).

    Returns
    -------
    pandas.DataFrame
        Columns exactly ``method, analysis, metric, parameter, value, ci_low, ci_high,
        p_value, n``.
    """
    return evaluate_embeddings(df, features, method, train_df=train_df, seed=seed, n_boot=n_boot, **kwargs).results
