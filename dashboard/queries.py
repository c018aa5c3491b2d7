"""Read-only queries for the dashboard, against the published warehouse snapshot.

The dashboard never opens the pipeline's own DuckDB file (a reader would block the
writer); it reads ``<data dir>/snapshot/warehouse.duckdb``, which the
``dashboard_snapshot`` asset replaces atomically (temporary name, then rename).

Consistency: a page *pins* the snapshot it starts with (:func:`pin`: path, inode, size,
mtime). Every query checks that the file is still that one; if a publish replaced it
mid-render, :class:`SnapshotReplaced` is raised and the page reruns on the new snapshot
(:func:`dashboard.common.guarded`), so one render never mixes two snapshots. Results are
cached per (snapshot signature, SQL, parameters): a new snapshot is never served stale.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import duckdb
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]


class SnapshotMissing(FileNotFoundError):
    """No published snapshot (the pipeline has not run, or ``MOA_DATA_DIR`` points elsewhere)."""


class SnapshotReplaced(RuntimeError):
    """The snapshot file changed while a page was reading it."""


class SnapshotUnreadable(RuntimeError):
    """The snapshot exists but DuckDB cannot read it (truncated, foreign or corrupt file)."""


def data_dir() -> Path:
    return Path(os.environ.get("MOA_DATA_DIR", str(REPO_ROOT / ".moa_data")))


def snapshot_path() -> Path:
    return data_dir() / "snapshot" / "warehouse.duckdb"


Signature = tuple[str, int, int, int]
_pinned = threading.local()


def signature(path: Path | None = None) -> Signature:
    """(path, inode, size, mtime_ns) of the snapshot; :class:`SnapshotMissing` if there is none."""
    p = Path(path or snapshot_path())
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SnapshotMissing(f"no published snapshot at {p}") from None
    if st.st_size == 0:
        raise SnapshotUnreadable(f"the snapshot {p} is empty (0 bytes): republish it (publish_job)")
    return (str(p), st.st_ino, st.st_size, st.st_mtime_ns)


def pin(path: Path | None = None) -> Signature:
    """Pin the current snapshot for this script run (thread); later queries must see the same file. The
    run's queries share one read-only connection to it (opened on first use, closed by :func:`unpin`)."""
    sig = signature(path)
    if getattr(_pinned, "sig", None) != sig:
        _close_pinned()
    _pinned.sig = sig
    return sig


def unpin() -> None:
    _close_pinned()
    _pinned.sig = None


def _close_pinned() -> None:
    con = getattr(_pinned, "con", None)
    _pinned.con = None
    if con is not None:
        con.close()


def _check(sig: Signature) -> None:
    pinned = getattr(_pinned, "sig", None)
    if pinned is not None and pinned[0] == sig[0] and pinned != sig:
        raise SnapshotReplaced(f"the snapshot {sig[0]} was replaced while this page was reading it")


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(path, read_only=True)
    except duckdb.Error as exc:
        raise SnapshotUnreadable(f"cannot open the snapshot {path}: {exc}; republish it (publish_job)") from exc


def _run(sig: Signature, sql: str, params: list) -> pd.DataFrame:
    if getattr(_pinned, "sig", None) == sig:  # the pinned run's shared connection
        if getattr(_pinned, "con", None) is None:
            _pinned.con = _connect(sig[0])
        return _pinned.con.execute(sql, params).df()
    con = _connect(sig[0])
    try:
        return con.execute(sql, params).df()
    finally:
        con.close()


_cache: dict[tuple, pd.DataFrame] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 512


def query(sql: str, params: list | None = None, path: Path | None = None) -> pd.DataFrame:
    """Run ``sql`` (parameters bound, never formatted in) on the snapshot; a cached copy when the same
    snapshot answered it before."""
    sig = signature(path)
    _check(sig)
    key = (sig, sql, tuple(params or []))
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit.copy()
    df = _run(sig, sql, list(params or []))
    after = signature(path)
    if after != sig:  # replaced while we read: never cache or return a mix
        _check(after)
        raise SnapshotReplaced(f"the snapshot {sig[0]} was replaced while this query read it")
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = df
    return df.copy()


def has_table(name: str, path: Path | None = None) -> bool:
    return name in tables(path)


def tables(path: Path | None = None) -> set[str]:
    """Names of the snapshot's tables."""
    return set(query("SELECT table_name FROM information_schema.tables", path=path)["table_name"])


def evaluated_partitions(path: Path | None = None) -> pd.DataFrame:
    """(dataset, fraction) pairs that have evaluation results."""
    if not has_table("evaluation_results", path):
        return pd.DataFrame(columns=["dataset", "fraction"])
    return query("SELECT DISTINCT dataset, fraction FROM evaluation_results ORDER BY dataset, fraction", path=path)


def evaluation(dataset: str, fraction: str, path: Path | None = None) -> pd.DataFrame:
    return query(
        "SELECT * FROM evaluation_results WHERE dataset = ? AND fraction = ? "
        "ORDER BY method, analysis, metric, parameter",
        [dataset, fraction],
        path,
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
    return query(
        "SELECT * FROM holdout_results WHERE dataset = ? ORDER BY method, analysis, metric, parameter", [dataset], path
    )


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
    names = {
        "train_accuracy": "train accuracy (fields)",
        "val_accuracy": "validation accuracy (fields)",
        "val_balanced_accuracy": "validation balanced accuracy (wells, no DMSO)",
        "train_loss": "train loss",
    }
    cols = [c for c in names if c in h.columns]
    long = h.melt(id_vars=["model", "fraction", "epoch"], value_vars=cols, var_name="curve", value_name="value")
    long["curve"] = long["curve"].map(names)
    long["model"] = long["model"].map(lambda m: MODEL_LABELS.get(m, m))
    return long


def fraction_scale(fraction: str) -> tuple[float, int]:
    """``(replicate share in %, training seed)`` of a fraction key: "50" -> (50, 0), a seed replicate
    "50s1" -> (50, 1) (:func:`moa_core.datasets.seed_replicate`); an OOD share or unknown key -> (NaN, 0)."""
    from moa_core.datasets import FRACTIONS, seed_replicate
    from moa_core.errors import SchemaError

    try:
        scale, seed = seed_replicate(str(fraction))
    except SchemaError:
        return float("nan"), 0
    return (100.0 * FRACTIONS[scale], seed) if scale in FRACTIONS else (float("nan"), 0)


def with_fraction_scale(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``fraction_pct`` (the replicate share of its ``fraction`` key) and ``seed`` (0, or the seed
    replicate's offset); rows of other keys (OOD shares) dropped."""
    scales = [fraction_scale(f) for f in df["fraction"]]
    out = df.assign(fraction_pct=[p for p, _ in scales], seed=[s for _, s in scales])
    return out.dropna(subset=["fraction_pct"])


def fraction_sort_key(fraction: str) -> tuple[int, float, int, str]:
    """Sort key of fraction keys: replicate shares largest first, each followed by its seed replicates; then
    the others (OOD shares) by name."""
    pct, seed = fraction_scale(fraction)
    return (1, 0.0, 0, str(fraction)) if pct != pct else (0, -pct, seed, str(fraction))


FRACTION_METRICS = {
    ("knn", "best_f1"): "k-NN best weighted F1",
    ("latent", "f1"): "Class latent assignment F1",
    ("logistic", "f1"): "Logistic regression F1",
}


def fraction_curve(dataset: str, path: Path | None = None) -> pd.DataFrame:
    """The replicate-fraction study: headline metrics of every method at every materialized fraction, with
    its replicate share ``fraction_pct`` and ``seed`` (:func:`with_fraction_scale`)."""
    if not has_table("evaluation_results", path):
        return pd.DataFrame()
    res = query(
        "SELECT * FROM evaluation_results WHERE dataset = ? AND ((analysis = 'knn' AND metric = 'best_f1') "
        "OR (analysis IN ('latent', 'logistic') AND metric = 'f1'))",
        [dataset],
        path,
    )
    if res.empty:
        return res
    res["metric_label"] = [FRACTION_METRICS[(a, m)] for a, m in zip(res["analysis"], res["metric"])]
    res = with_fraction_scale(res)
    return res.sort_values(["metric_label", "method", "fraction_pct", "seed"]).reset_index(drop=True)
