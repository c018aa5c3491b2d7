"""Ablation of a profiling recipe: each step's effect on the paper's analyses and on mAP.

:func:`ablation_table` scores every intermediate table of one or more
:class:`~moa_core.profiles.baselines.Recipe` (plus optional reference tables, e.g. the project's "CP", DMSO
standardization only) with :func:`~moa_core.evaluation.compare.compare_methods` on the *same* test wells (those
present in every table), so a step's row differs from the previous one only by what the step did.
:data:`ABLATION_METRICS` are the rows kept: the paper's k-NN and class-latent F1, intra − inter MOA PCC,
enrichment odds ratio at the 99th percentile, and copairs' phenotypic-activity and MOA-consistency mAP. The
paper's logistic regression is left out: it is ~60 % of the suite's time, and ``evaluation_results`` carries it
(with CIs) for every finished method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .compare import compare_methods, require_evaluable_test_wells

#: (analysis, metric, parameter or None, label) of the ablation rows.
ABLATION_METRICS: list[tuple[str, str, float | None, str]] = [
    ("knn", "best_f1", None, "k-NN best weighted F1"),
    ("latent", "f1", None, "class latent assignment F1"),
    ("intra_inter", "delta", None, "intra − inter MOA PCC"),
    ("enrichment", "odds_ratio", 99.0, "enrichment odds ratio @ 99th pct"),
    ("map_activity", "mean_map", None, "phenotypic-activity mAP"),
    ("map_activity", "fraction_retrieved", None, "fraction of compounds active (q < 0.05)"),
    ("map_consistency", "mean_map", None, "MOA-consistency mAP"),
]
ABLATION_COLUMNS = ["recipe", "step_index", "step", "features", "label", "analysis", "metric", "parameter", "value"]


def ablation_table(
    recipes: Sequence,
    splits: pd.DataFrame,
    *,
    references: Mapping[str, pd.DataFrame] | None = None,
    where: str = "ablation",
    seed: int = 0,
    n_boot: int = 0,
    **suite_kwargs,
) -> pd.DataFrame:
    """Long table (:data:`ABLATION_COLUMNS`): one row per (recipe, step, metric of :data:`ABLATION_METRICS`).

    ``references`` (``{name: table}``) are scored on the same wells as recipe ``"reference"``, step index 0.
    Raises :class:`~moa_core.errors.MoaInputError` (naming ``where``) when the common test wells are too few
    for the paper's analyses.
    """
    tables: dict[str, pd.DataFrame] = {}
    rows: list[tuple[str, int, str, str]] = []  # (recipe, index, step, key)
    for name, df in (references or {}).items():
        key = f"reference: {name}"
        tables[key] = df
        rows.append(("reference", 0, name, key))
    for rec in recipes:
        for i, (step, df) in enumerate(rec.steps.items(), start=1):
            key = f"{rec.name}: {step}"
            tables[key] = df
            rows.append((rec.name, i, step, key))
    require_evaluable_test_wells(splits, tables, where=where)
    res = compare_methods(tables, splits, seed=seed, n_boot=n_boot, **suite_kwargs)
    out = []
    for recipe, i, step, key in rows:
        mine = res[res["method"] == key]
        n_feat = sum(not str(c).startswith("Metadata_") for c in tables[key].columns)
        for analysis, metric, param, label in ABLATION_METRICS:
            sel = mine[(mine["analysis"] == analysis) & (mine["metric"] == metric)]
            if param is not None:
                sel = sel[np.isclose(sel["parameter"].astype(float), param)]
            value = float(sel["value"].iloc[0]) if len(sel) else float("nan")
            out.append((recipe, i, step, n_feat, label, analysis, metric, param, value))
    return pd.DataFrame(out, columns=ABLATION_COLUMNS).astype({"parameter": float, "value": float})


def ablation_wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (recipe, step) in order, one column per metric label (plus ``features``)."""
    wide = table.pivot_table(
        index=["recipe", "step_index", "step", "features"], columns="label", values="value", sort=False
    )
    labels = [m[3] for m in ABLATION_METRICS if m[3] in wide.columns]
    order = {r: i for i, r in enumerate(dict.fromkeys(table["recipe"]))}
    wide = wide[labels].reset_index()
    wide = wide.sort_values(["recipe", "step_index"], key=lambda s: s.map(order) if s.name == "recipe" else s)
    return wide.reset_index(drop=True)
