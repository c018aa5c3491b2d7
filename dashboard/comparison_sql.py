"""The *Method comparison* page's reads of the published snapshot: one literal SQL statement per
question with bound parameters only, each a DataFrame (empty, with its columns where a page needs them,
when the table is absent). Nothing here shapes or labels (:mod:`dashboard.comparison_tables`) and nothing
writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dashboard import queries

#: ``evaluation_results``' columns: partition keys + :data:`moa_core.evaluation.results.RESULT_COLUMNS`, spelled
#: out because importing moa_core.evaluation (scikit-learn, scipy) would cost the page's first render seconds.
EVALUATION_COLUMNS = [
    "dataset",
    "fraction",
    "method",
    "analysis",
    "metric",
    "parameter",
    "value",
    "ci_low",
    "ci_high",
    "p_value",
    "n",
]


def partitions(path: Path | None = None) -> pd.DataFrame:
    """(dataset, fraction) pairs with evaluation results."""
    return queries.evaluated_partitions(path)


def dataset_results(dataset: str, path: Path | None = None) -> pd.DataFrame:
    """Every ``evaluation_results`` row of one dataset (all fractions: one read serves the partition's
    tables and the replicate-fraction curves)."""
    if not queries.has_table("evaluation_results", path):
        return pd.DataFrame(columns=EVALUATION_COLUMNS)
    return queries.query(
        "SELECT * FROM evaluation_results WHERE dataset = ? ORDER BY fraction, method, analysis, metric, parameter",
        [dataset],
        path,
    )


def per_moa(dataset: str, fraction: str, path: Path | None = None) -> pd.DataFrame:
    """``evaluation_per_moa`` rows of one partition (empty when missing)."""
    if not queries.has_table("evaluation_per_moa", path):
        return pd.DataFrame()
    return queries.query(
        "SELECT method, analysis, moa, n, precision, recall, f1 FROM evaluation_per_moa "
        "WHERE dataset = ? AND fraction = ? ORDER BY method, analysis, moa",
        [dataset, fraction],
        path,
    )


def confusion(dataset: str, fraction: str, path: Path | None = None) -> pd.DataFrame:
    """``evaluation_confusion`` rows of one partition (empty when missing)."""
    if not queries.has_table("evaluation_confusion", path):
        return pd.DataFrame()
    return queries.query(
        "SELECT method, analysis, true_moa, predicted_moa, count FROM evaluation_confusion "
        "WHERE dataset = ? AND fraction = ? ORDER BY method, analysis, true_moa, predicted_moa",
        [dataset, fraction],
        path,
    )


def embedding_maps(dataset: str, fraction: str, path: Path | None = None) -> pd.DataFrame:
    """``embedding_maps`` rows of one partition (empty when missing)."""
    if not queries.has_table("embedding_maps", path):
        return pd.DataFrame()
    return queries.query(
        "SELECT * EXCLUDE (dataset, fraction) FROM embedding_maps "
        "WHERE dataset = ? AND fraction = ? ORDER BY method, Metadata_Plate, Metadata_Well",
        [dataset, fraction],
        path,
    )


def chance_rows(dataset: str, fraction: str, path: Path | None = None) -> pd.DataFrame:
    """``evaluation_chance`` rows of one partition (empty when missing, e.g. an older snapshot)."""
    if not queries.has_table("evaluation_chance", path):
        return pd.DataFrame(columns=["metric", "value", "n_moas"])
    return queries.query(
        "SELECT metric, value, n_moas FROM evaluation_chance WHERE dataset = ? AND fraction = ? ORDER BY metric",
        [dataset, fraction],
        path,
    )


def cp_ablation_rows(dataset: str, path: Path | None = None) -> pd.DataFrame:
    """``cp_ablation`` rows of one dataset, in step order (empty when not materialized)."""
    if not queries.has_table("cp_ablation", path):
        return pd.DataFrame()
    return queries.query(
        "SELECT recipe, step_index, step, features, label, analysis, metric, parameter, value FROM cp_ablation "
        "WHERE dataset = ? ORDER BY step_index",
        [dataset],
        path,
    )
