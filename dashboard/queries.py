"""Read-only queries for the dashboard, against the published warehouse snapshot.

The dashboard never opens the pipeline's own DuckDB file (a reader would block the
writer); it reads ``<data dir>/snapshot/warehouse.duckdb``, which the
``dashboard_snapshot`` asset replaces atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]


def snapshot_path() -> Path:
    data = Path(os.environ.get("MOA_DATA_DIR", str(REPO_ROOT / ".moa_data")))
    return data / "snapshot" / "warehouse.duckdb"


def query(sql: str, params: list | None = None, path: Path | None = None) -> pd.DataFrame:
    p = path or snapshot_path()
    if not p.is_file():
        raise FileNotFoundError(f"no published snapshot at {p}; run the demo or materialize dashboard_snapshot")
    con = duckdb.connect(str(p), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def has_table(name: str, path: Path | None = None) -> bool:
    return bool(
        query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name = ?", [name], path)["n"].iloc[0]
    )


def evaluated_partitions(path: Path | None = None) -> pd.DataFrame:
    """(dataset, fraction) pairs that have evaluation results."""
    if not has_table("evaluation_results", path):
        return pd.DataFrame(columns=["dataset", "fraction"])
    return query("SELECT DISTINCT dataset, fraction FROM evaluation_results ORDER BY dataset, fraction", path=path)


def evaluation(dataset: str, fraction: str, path: Path | None = None) -> pd.DataFrame:
    return query(
        "SELECT * FROM evaluation_results WHERE dataset = ? AND fraction = ? ORDER BY method, analysis, metric, parameter",
        [dataset, fraction], path,
    )


HEADLINE = [
    ("knn", "best_f1", None, "k-NN best weighted F1"),
    ("latent", "f1", None, "Class latent assignment F1"),
    ("intra_inter", "intra_mean", None, "Intra-MOA mean PCC"),
    ("intra_inter", "inter_mean", None, "Inter-MOA mean PCC"),
    ("intra_inter", "delta", None, "Intra - inter delta"),
    ("enrichment", "odds_ratio", 99.0, "Enrichment OR @ 99th pct"),
    ("logistic", "f1", None, "Logistic regression F1"),
    ("map_consistency", "mean_map", None, "MOA-consistency mAP"),
    ("map_consistency", "fraction_retrieved", None, "Fraction of MOAs retrieved"),
]


def headline(results: pd.DataFrame) -> pd.DataFrame:
    """One row per headline metric, one column per method (with CI where defined)."""
    rows = []
    for analysis, metric, param, label in HEADLINE:
        sel = results[(results["analysis"] == analysis) & (results["metric"] == metric)]
        if param is not None:
            sel = sel[sel["parameter"].astype(float).round(3) == param]
        if sel.empty:
            continue
        row = {"metric": label}
        for _, r in sel.iterrows():
            v = r["value"]
            ci = "" if pd.isna(r.get("ci_low")) else f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            at_k = f" (k={r['parameter']:g})" if metric.startswith("best_") and not pd.isna(r["parameter"]) else ""
            row[r["method"]] = f"{v:.4g}{ci}{at_k}"
        rows.append(row)
    return pd.DataFrame(rows)


def curve(results: pd.DataFrame, analysis: str, metric: str) -> pd.DataFrame:
    """Rows of one analysis/metric over its parameter (k, percentile), for plotting."""
    sel = results[(results["analysis"] == analysis) & (results["metric"] == metric)].dropna(subset=["parameter"])
    return sel.sort_values(["method", "parameter"])


def holdout(dataset: str, path: Path | None = None) -> pd.DataFrame:
    """Compound-holdout results (individual / aggregated vote) of one dataset; empty if not materialized."""
    if not has_table("holdout_results", path):
        return pd.DataFrame()
    return query("SELECT * FROM holdout_results WHERE dataset = ? ORDER BY method, analysis, metric, parameter",
                 [dataset], path)


def classification_table(results: pd.DataFrame) -> pd.DataFrame:
    """Image-field classification: one row per subset (all, edge, cell line, ...), metrics as columns."""
    cls = results[results["analysis"] == "classification"]
    if cls.empty:
        return cls
    parts = cls["metric"].str.extract(r"^(?P<metric>[^\[]+)(?:\[(?P<subset>.*)\])?$")
    table = pd.DataFrame({"subset": parts["subset"].fillna("all"), "metric": parts["metric"], "value": cls["value"]})
    return table.pivot_table(index="subset", columns="metric", values="value", aggfunc="first").reset_index()


MODEL_LABELS = {"mp": "MP", "mp_holdout": "MP (compound holdout)", "dp_recipe": "DP recipe (trained here)"}


def checkpoints(dataset: str, path: Path | None = None) -> pd.DataFrame:
    """The recorded checkpoints of one dataset (model, fraction, best epoch, score, warnings)."""
    if not has_table("checkpoints", path):
        return pd.DataFrame()
    df = query("SELECT * FROM checkpoints WHERE dataset = ? ORDER BY model, fraction", [dataset], path)
    df["model"] = df["model"].map(lambda m: MODEL_LABELS.get(m, m))
    return df


def training_history(dataset: str, path: Path | None = None) -> pd.DataFrame:
    """Per-epoch learning curves of every model of one dataset, long format (model, fraction, epoch, curve, value)."""
    if not has_table("training_history", path):
        return pd.DataFrame()
    h = query("SELECT * FROM training_history WHERE dataset = ? ORDER BY model, fraction, epoch", [dataset], path)
    names = {"train_accuracy": "train accuracy (fields)", "val_accuracy": "validation accuracy (fields)",
             "val_balanced_accuracy": "validation balanced accuracy (wells, no DMSO)", "train_loss": "train loss"}
    cols = [c for c in names if c in h.columns]
    long = h.melt(id_vars=["model", "fraction", "epoch"], value_vars=cols, var_name="curve", value_name="value")
    long["curve"] = long["curve"].map(names)
    long["model"] = long["model"].map(lambda m: MODEL_LABELS.get(m, m))
    return long


FRACTION_METRICS = {("knn", "best_f1"): "k-NN best weighted F1", ("latent", "f1"): "Class latent assignment F1",
                    ("logistic", "f1"): "Logistic regression F1"}


def fraction_curve(dataset: str, path: Path | None = None) -> pd.DataFrame:
    """The replicate-fraction study: headline metrics of every method at every materialized fraction."""
    if not has_table("evaluation_results", path):
        return pd.DataFrame()
    res = query("SELECT * FROM evaluation_results WHERE dataset = ? AND ((analysis = 'knn' AND metric = 'best_f1') "
                "OR (analysis IN ('latent', 'logistic') AND metric = 'f1'))", [dataset], path)
    if res.empty:
        return res
    res["metric_label"] = [FRACTION_METRICS[(a, m)] for a, m in zip(res["analysis"], res["metric"])]
    res["fraction_pct"] = res["fraction"].astype(float)
    return res.sort_values(["metric_label", "method", "fraction_pct"]).reset_index(drop=True)
