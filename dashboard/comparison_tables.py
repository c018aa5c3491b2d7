"""Table builders and labels of the *Method comparison* page, on the frames :mod:`dashboard.comparison_sql`
reads from the published snapshot (this module runs no SQL and never writes). Nothing here imports
:mod:`moa_core.evaluation` (its scikit-learn/scipy imports alone would cost seconds of the
page's first render); the few formulas used (chance baselines) are stated where they live.

Chance baselines (the ``chance`` column of :func:`headline_table`)
-----------------------------------------------------------------
Weighted F1 (k-NN, class latent assignment, logistic regression)
    The expected support-weighted F1 of a *prevalence-matched random guess*: each well gets
    MOA ``c`` with probability ``p_c`` (the share of evaluated test wells whose MOA is ``c``),
    independently of its embedding. Then the expected precision and recall of MOA ``c`` are
    both ``p_c``, so its F1 is ``p_c`` and the weighted F1 is ``sum_c p_c^2`` (``1/C`` for
    ``C`` equally frequent MOAs). The prevalences come from the ``n`` column of
    ``evaluation_per_moa`` (exactly the wells the suite scored); in an older snapshot, from
    the ``splits__<dataset>`` table (test wells, evaluation-eligible, no DMSO, MOAs with at
    least two test compounds; methods' common wells not intersected), else ``1/C`` with ``C``
    the suite's ``n_moas_output``. :class:`Chance` says which source was used.
Enrichment odds ratio
    1 (same-MOA pairs no more frequent among the strongest pairs than among all pairs).
Intra - inter-MOA PCC delta
    0 (same-MOA pairs no more similar than different-MOA pairs).
Held-out top-k accuracy
    The ``random_baseline`` rows of ``holdout_results`` (``k / #MOAs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard import comparison_sql, queries
from dashboard.style import EMPTY, label, sig3, sort_methods, with_ci

NEW_TABLES = ("evaluation_per_moa", "evaluation_confusion", "embedding_maps")
REMATERIALIZE = "evaluation_results"
NEGCON = "DMSO"

# ---------------------------------------------------------------------- labels
ANALYSIS_LABELS = {
    "knn": "k-NN vote",
    "latent": "class latent assignment",
    "logistic": "logistic regression",
    "enrichment": "enrichment",
    "intra_inter": "intra vs inter-MOA PCC",
    "groups": "pair groups (PCC)",
    "batch": "plate effect (PCC)",
    "map_activity": "mAP: phenotypic activity",
    "map_consistency": "mAP: MOA consistency",
    "classification": "image-field classification",
    "filtering": "test-well filtering",
    "holdout_individual": "held-out compounds, individual vote",
    "holdout_aggregated": "held-out compounds, aggregated vote",
}
METRIC_LABELS = {
    "odds_ratio": "odds ratio",
    "odds_ratio_cytominer_eval": "odds ratio (cytominer-eval pairs)",
    "threshold": "PCC threshold",
    "threshold_cytominer_eval": "PCC threshold (cytominer-eval pairs)",
    "delta": "difference",
    "intra_mean": "intra-MOA mean PCC",
    "inter_mean": "inter-MOA mean PCC",
    "intra_sd": "intra-MOA PCC SD",
    "inter_sd": "inter-MOA PCC SD",
    "same_compound_mean": "same compound (replicates)",
    "diff_compound_same_moa_mean": "different compound, same MOA",
    "diff_moa_mean": "different MOA",
    "same_compound_sd": "same compound, SD",
    "diff_compound_same_moa_sd": "different compound, same MOA, SD",
    "diff_moa_sd": "different MOA, SD",
    "within_plate_mean": "same MOA, same plate",
    "across_plates_mean": "same MOA, different plates",
    "within_plate_sd": "same MOA, same plate, SD",
    "across_plates_sd": "same MOA, different plates, SD",
    "mean_map": "mean mAP",
    "mean_ap": "mean AP",
    "fraction_retrieved": "fraction retrieved (q < 0.05)",
    "f1": "weighted F1",
    "precision": "weighted precision",
    "recall": "weighted recall",
    "accuracy": "accuracy",
    "best_f1": "best weighted F1",
    "best_precision": "best weighted precision",
    "best_recall": "best weighted recall",
    "best_accuracy": "best accuracy",
    "top_k_accuracy": "top-k accuracy",
    "random_baseline": "random baseline",
    "n_wells_input": "wells in",
    "n_wells_output": "wells evaluated",
    "n_moas_output": "MOAs evaluated",
    "n_compounds_output": "compounds evaluated",
    "n_dropped_negcon": "wells dropped: DMSO",
    "n_dropped_missing_moa": "wells dropped: no MOA",
    "n_dropped_few_compounds": "wells dropped: single-compound MOA",
}
_GROUP_PAIRS = {
    "same_compound": "same compound",
    "diff_compound_same_moa": "different compound, same MOA",
    "diff_moa": "different MOA",
}


def metric_label(metric: str) -> str:
    """A human label for an ``evaluation_results`` metric name (pair-group tests spelled out)."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    for prefix, what in (("z_", "z"), ("mean_diff_", "mean difference")):
        if metric.startswith(prefix) and "_vs_" in metric:
            a, b = metric[len(prefix) :].split("_vs_", 1)
            return f"{what}: {_GROUP_PAIRS.get(a, label(a))} vs {_GROUP_PAIRS.get(b, label(b))}"
    return label(metric)


def analysis_label(analysis: str) -> str:
    return ANALYSIS_LABELS.get(analysis, label(analysis))


def rematerialize_hint(dataset: str, fraction: str) -> str:
    """What to run so that the snapshot gets the per-MOA tables of one partition."""
    return (
        f"rematerialize `{REMATERIALIZE}` for partition dataset={dataset}, fraction={fraction} (Dagster UI, or "
        f"`uv run dagster asset materialize -m orchestration.definitions --select {REMATERIALIZE} "
        f"--partition '{dataset}|{fraction}'`), then republish the snapshot (`publish_job`)"
    )


# ---------------------------------------------------------------------- partitions and results
def fraction_order(fractions: list[str]) -> list[str]:
    """Fractions largest first, each followed by its seed replicates (:func:`dashboard.queries.fraction_sort_key`)."""

    return sorted(set(fractions), key=queries.fraction_sort_key)


def results(
    dataset: str,
    fraction: str,
    methods: tuple[str, ...] | None = None,
    path: Path | None = None,
    *,
    all_fractions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The partition's ``evaluation_results`` rows (optionally only some methods)."""
    res = comparison_sql.dataset_results(dataset, path) if all_fractions is None else all_fractions
    res = res[res["fraction"] == fraction]
    if methods is not None:
        res = res[res["method"].isin(methods)]
    return res.reset_index(drop=True)


def confusion_matrix(conf: pd.DataFrame, method: str, analysis: str, moas: list[str] | None = None) -> pd.DataFrame:
    """Square count matrix (rows: true MOA, columns: predicted MOA, zeros filled) of one method/analysis."""
    sel = conf[(conf["method"] == method) & (conf["analysis"] == analysis)]
    labels = sorted(set(moas or []) | set(sel["true_moa"]) | set(sel["predicted_moa"]))
    mat = sel.pivot_table(index="true_moa", columns="predicted_moa", values="count", aggfunc="sum", fill_value=0)
    return mat.reindex(index=labels, columns=labels, fill_value=0).astype(int)


# ---------------------------------------------------------------------- chance baselines
@dataclass(frozen=True)
class Chance:
    """Chance weighted F1 (``sum p_c^2``; see the module docstring) and where the prevalences came from."""

    f1: float
    n_moas: int
    source: str


def chance(rows: pd.DataFrame, res: pd.DataFrame) -> Chance:
    """Chance weighted F1 of one partition from its ``evaluation_chance`` rows
    (:func:`dashboard.comparison_sql.chance_rows`, written by the evaluation from the wells it scored:
    :func:`moa_core.evaluation.compare.chance_baselines`); for a snapshot older than that table, 1 / #MOAs of
    the suite's filtering rows of ``res`` (the partition's results)."""
    if not rows.empty and (rows["metric"] == "weighted_f1").any():
        r = rows[rows["metric"] == "weighted_f1"].iloc[0]
        return Chance(float(r["value"]), int(r["n_moas"]), "MOA prevalences of the evaluated test wells")
    moas = res[(res["analysis"] == "filtering") & (res["metric"] == "n_moas_output")]["value"]
    if not moas.empty and moas.iloc[0] >= 1:
        c = int(moas.iloc[0])
        return Chance(1.0 / c, c, "1 / #MOAs (equal MOA sizes assumed; prevalences not in this snapshot)")
    return Chance(math.nan, 0, "not available in this snapshot")


# ---------------------------------------------------------------------- headline
#: (analysis, metric, parameter or None, label, chance kind)
HEADLINE = [
    ("knn", "best_f1", None, "k-NN best weighted F1", "f1"),
    ("latent", "f1", None, "Class latent assignment F1", "f1"),
    ("logistic", "f1", None, "Logistic regression F1", "f1"),
    ("enrichment", "odds_ratio", 99.0, "Enrichment OR @ 99th pct", "one"),
    ("intra_inter", "delta", None, "Intra \u2212 inter-MOA PCC delta", "zero"),
    ("intra_inter", "intra_mean", None, "Intra-MOA mean PCC", None),
    ("intra_inter", "inter_mean", None, "Inter-MOA mean PCC", None),
    ("map_consistency", "mean_map", None, "MOA-consistency mAP", None),
    ("map_consistency", "fraction_retrieved", None, "Fraction of MOAs retrieved (q < 0.05)", None),
    ("map_activity", "fraction_retrieved", None, "Fraction of compounds active (q < 0.05)", None),
]
CHANCE_COLUMN = "chance"


def headline_table(res: pd.DataFrame, ch: Chance, methods: list[str] | None = None) -> pd.DataFrame:
    """One row per headline metric: ``metric``, one column per method (``style.sort_methods`` order),
    each ``value [95% CI low, high]`` (3 significant figures; ``(k=...)`` for the best-k row), and
    the chance baseline. Missing cells are an en dash."""
    cols = sort_methods(methods if methods is not None else res["method"].unique())
    rows = []
    for analysis, metric, param, text, kind in HEADLINE:
        sel = res[(res["analysis"] == analysis) & (res["metric"] == metric)]
        if param is not None:
            sel = sel[np.isclose(sel["parameter"].astype(float), param)]
        if sel.empty:
            continue
        row = {"metric": text}
        for m in cols:
            r = sel[sel["method"] == m]
            if r.empty:
                row[m] = EMPTY
                continue
            r = r.iloc[0]
            cell = with_ci(r["value"], r["ci_low"], r["ci_high"])
            if metric.startswith("best_") and not pd.isna(r["parameter"]):
                cell += f" (k={int(r['parameter'])})"
            row[m] = cell
        row[CHANCE_COLUMN] = {"f1": sig3(ch.f1), "one": "1", "zero": "0"}.get(kind or "", EMPTY)
        rows.append(row)
    return pd.DataFrame(rows, columns=["metric", *cols, CHANCE_COLUMN])


# ---------------------------------------------------------------------- curves and bars
def curve(res: pd.DataFrame, analysis: str, metric: str) -> pd.DataFrame:
    """One analysis/metric over its parameter (k, percentile), sorted, for plotting."""
    return queries.curve(res, analysis, metric).reset_index(drop=True)


def ci_coverage(df: pd.DataFrame) -> str:
    """``"all"``, ``"some"`` or ``"none"``: how many points of a curve carry a 95% CI."""
    if df.empty or "ci_low" not in df.columns:
        return "none"
    has = df["ci_low"].notna() & df["ci_high"].notna()
    return "all" if has.all() else ("some" if has.any() else "none")


GROUP_ORDER = [
    ("groups", "same_compound_mean"),
    ("groups", "diff_compound_same_moa_mean"),
    ("groups", "diff_moa_mean"),
    ("intra_inter", "intra_mean"),
    ("intra_inter", "inter_mean"),
    ("batch", "within_plate_mean"),
    ("batch", "across_plates_mean"),
]


def group_means(res: pd.DataFrame) -> pd.DataFrame:
    """Mean pairwise PCC per pair group (human ``group`` label, fixed order), with CI columns."""
    rows = []
    for i, (analysis, metric) in enumerate(GROUP_ORDER):
        sel = res[(res["analysis"] == analysis) & (res["metric"] == metric)]
        for r in sel.itertuples():
            rows.append(
                {
                    "order": i,
                    "group": metric_label(metric),
                    "method": r.method,
                    "value": r.value,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "n": r.n,
                }
            )
    out = pd.DataFrame(rows, columns=["order", "group", "method", "value", "ci_low", "ci_high", "n"])
    return out.sort_values(["order", "method"]).drop(columns="order").reset_index(drop=True)


def holdout_topk(
    dataset: str, methods: tuple[str, ...] | None = None, path: Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held-out top-k accuracy per (method, vote) and the random baseline (one curve over k)."""
    ho = queries.holdout(dataset, path)
    if ho.empty:
        return pd.DataFrame(), pd.DataFrame()
    if methods is not None:
        ho = ho[ho["method"].isin(methods)]
    topk = ho[ho["metric"] == "top_k_accuracy"].copy()
    topk["vote"] = topk["analysis"].str.replace("holdout_", "", regex=False)
    rnd = (
        ho[ho["metric"] == "random_baseline"]
        .groupby("parameter", as_index=False)["value"]
        .first()
        .sort_values("parameter")
    )
    return topk.sort_values(["method", "vote", "parameter"]).reset_index(drop=True), rnd.reset_index(drop=True)


def cp_ablation(rows: pd.DataFrame) -> pd.DataFrame:
    """The CP recipes' ablation (:func:`moa_core.evaluation.ablation.ablation_wide` of the ``cp_ablation`` rows,
    :func:`dashboard.comparison_sql.cp_ablation_rows`: one row per recipe step, one column per metric)."""
    from moa_core.evaluation.ablation import ablation_wide

    return ablation_wide(rows) if not rows.empty else rows


def fraction_curves(all_fractions: pd.DataFrame, methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Headline metrics (:data:`dashboard.queries.FRACTION_METRICS`) of every method at every fraction of
    :func:`dataset_results`, with ``metric_label``, numeric ``fraction_pct`` and ``seed`` (a seed replicate's
    offset, 0 for the plain key; :func:`dashboard.queries.with_fraction_scale`), CIs where stored."""
    keys = pd.Series(
        list(zip(all_fractions["analysis"], all_fractions["metric"])), index=all_fractions.index, dtype=object
    )
    fc = all_fractions[keys.isin(list(queries.FRACTION_METRICS))].copy()
    if methods is not None:
        fc = fc[fc["method"].isin(methods)]
    fc["metric_label"] = [queries.FRACTION_METRICS[(a, m)] for a, m in zip(fc["analysis"], fc["metric"])]
    fc = queries.with_fraction_scale(fc)
    order = {lab: i for i, lab in enumerate(queries.FRACTION_METRICS.values())}
    fc["_o"] = fc["metric_label"].map(order)
    fc = fc.sort_values(["_o", "method", "fraction_pct", "seed"])
    return fc.drop(columns="_o").reset_index(drop=True)


# ---------------------------------------------------------------------- tables
def all_results_table(res: pd.DataFrame, analyses: list[str]) -> pd.DataFrame:
    """The partition's results with human labels (for :func:`dashboard.common.table`), methods in
    ``style.sort_methods`` order; ``n`` as an integer (en dash when missing)."""
    sel = res[res["analysis"].isin(analyses)].copy()
    order = {m: i for i, m in enumerate(sort_methods(sel["method"].unique()))}
    sel["_o"] = sel["method"].map(order)
    sel = sel.sort_values(["_o", "analysis", "metric", "parameter"], kind="stable")
    out = pd.DataFrame(
        {
            "method": sel["method"],
            "analysis": sel["analysis"].map(analysis_label),
            "metric": sel["metric"].map(metric_label),
            "parameter": sel["parameter"].astype(float),
            "value": sel["value"].astype(float),
            "95% CI low": sel["ci_low"].astype(float),
            "95% CI high": sel["ci_high"].astype(float),
            "p-value": sel["p_value"].astype(float),
            "n": [EMPTY if pd.isna(v) else str(int(v)) for v in sel["n"]],
        }
    )
    return out.reset_index(drop=True)


def per_moa_table(pm: pd.DataFrame, analysis: str) -> pd.DataFrame:
    """Per-MOA metrics of one analysis: one row per (MOA, method), methods in ``style.sort_methods`` order."""
    sel = pm[pm["analysis"] == analysis]
    order = {m: i for i, m in enumerate(sort_methods(sel["method"].unique()))}
    sel = sel.assign(_o=sel["method"].map(order)).sort_values(["moa", "_o"])
    return pd.DataFrame(
        {
            "MOA": sel["moa"],
            "method": sel["method"],
            "wells": sel["n"].astype(int),
            "precision": sel["precision"].astype(float),
            "recall": sel["recall"].astype(float),
            "F1": sel["f1"].astype(float),
        }
    ).reset_index(drop=True)


CLASSIFICATION_COLUMNS = {
    "accuracy": "accuracy",
    "accuracy_baseline": "accuracy baseline (1 / #classes)",
    "auprc_micro": "AUPRC (micro-averaged)",
    "auprc_baseline": "AUPRC baseline (prevalence)",
}


def _subset_label(subset: str) -> str:
    fixed = {"all": "all fields", "edge": "edge wells", "non_edge": "non-edge wells"}
    if subset in fixed:
        return fixed[subset]
    key, _, value = subset.partition("=")
    if key == "timepoint":
        return f"timepoint {value} h"
    return f"{label(key)} {value}".strip()


def classification_display(cls: pd.DataFrame) -> pd.DataFrame:
    """:func:`dashboard.queries.classification_table` with human subset and column labels."""
    out = cls.rename(columns=CLASSIFICATION_COLUMNS)
    out.columns.name = None
    out["subset"] = out["subset"].map(_subset_label)
    cols = ["subset", *[c for c in CLASSIFICATION_COLUMNS.values() if c in out.columns]]
    return out[cols + [c for c in out.columns if c not in cols]].reset_index(drop=True)
