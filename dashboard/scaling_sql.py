"""The *Scaling laws* page's reads of the published snapshot: SQL with bound parameters only, one
function per question, each a DataFrame (empty when its table is absent). Nothing here computes or
labels (:mod:`dashboard.scaling_fits`, :mod:`dashboard.scaling_labels`) and nothing writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dashboard import queries
from moa_core.scaling import AVERAGED, ledger

SCALING_TABLES = ("scaling_points", "scaling_laws", "phenoca_results", "scaling_ledger")


def tables_present(path: Path | None = None) -> dict[str, bool]:
    return {t: queries.has_table(t, path) for t in SCALING_TABLES}


def datasets(path: Path | None = None) -> list[str]:
    """Datasets with scaling points or Pheno-CA results (union, sorted)."""
    found: set[str] = set()
    for table, sql in (
        ("scaling_points", "SELECT DISTINCT dataset FROM scaling_points"),
        ("phenoca_results", "SELECT DISTINCT dataset FROM phenoca_results"),
    ):
        if queries.has_table(table, path):
            found |= set(queries.query(sql, path=path)["dataset"].dropna().astype(str))
    return sorted(found)


def scaling_index(dataset: str, path: Path | None = None) -> pd.DataFrame:
    """(study, task, family) of one dataset with their number of distinct sizes and points."""
    if not queries.has_table("scaling_points", path):
        return pd.DataFrame(columns=["study", "task", "family", "n_sizes", "n_points"])
    return queries.query(
        "SELECT study, task, family, count(DISTINCT n) AS n_sizes, count(*) AS n_points FROM scaling_points "
        "WHERE dataset = ? GROUP BY study, task, family ORDER BY study, task, family",
        [dataset],
        path,
    )


def points(dataset: str, study: str, task: str, path: Path | None = None) -> pd.DataFrame:
    """The scaling points of one (dataset, study, task), every family."""
    return queries.query(
        "SELECT family, n, metric, run, model_size FROM scaling_points WHERE dataset = ? AND study = ? AND task = ? "
        "ORDER BY family, n, run",
        [dataset, study, task],
        path,
    )


def stored_laws(dataset: str, study: str, task: str, path: Path | None = None) -> pd.DataFrame:
    """The pipeline's stored fits (``scaling_laws``) of one (dataset, study, task); empty if absent."""
    if not queries.has_table("scaling_laws", path):
        return pd.DataFrame()
    return queries.query(
        "SELECT * FROM scaling_laws WHERE dataset = ? AND study = ? AND task = ? "
        "ORDER BY family, rank NULLS LAST, form",
        [dataset, study, task],
        path,
    )


def ledger_rows(dataset: str, study: str, task: str, path: Path | None = None) -> pd.DataFrame:
    """The scored forecasts (``scaling_ledger``) of one (dataset, study, task); empty if absent."""
    if not queries.has_table("scaling_ledger", path):
        return pd.DataFrame(columns=ledger.LEDGER_COLUMNS)
    return queries.query(
        "SELECT * FROM scaling_ledger WHERE dataset = ? AND study = ? AND task = ? ORDER BY family, form, made_at, n",
        [dataset, study, task],
        path,
    )


def phenoca_results(dataset: str, path: Path | None = None) -> pd.DataFrame:
    if not queries.has_table("phenoca_results", path):
        return pd.DataFrame()
    return queries.query(
        "SELECT * FROM phenoca_results WHERE dataset = ? ORDER BY supervision, model, probe", [dataset], path
    )


def view_candidates(path: Path | None = None) -> pd.DataFrame:
    """Per stored (dataset, study, task): ``good``, its families whose averaged law is reliable with a finite
    interval of N needed, and ``fitted``, those reliable at all (the page's default view ranks them)."""
    if not queries.has_table("scaling_laws", path):
        return pd.DataFrame(columns=["dataset", "study", "task", "good", "fitted"])
    return queries.query(
        "SELECT dataset, study, task, "
        "count(*) FILTER (WHERE form = ? AND reliable AND n_needed_low IS NOT NULL AND isfinite(n_needed)) AS good, "
        "count(*) FILTER (WHERE form = ? AND reliable) AS fitted "
        "FROM scaling_laws GROUP BY dataset, study, task",
        [AVERAGED, AVERAGED],
        path,
    )
