"""Evaluation domain: the paper's analyses for MP and CP on the same test wells; the dashboard snapshot."""


import time

import dagster as dg
import pandas as pd

from moa_core.evaluation import compound_holdout_eval, run_embedding_suite
from moa_core.evaluation.classification import classification_metrics
from moa_core.profiles.normalize import feature_columns
from moa_core.splits import ELIGIBLE_COL, SPLIT_COL
from moa_core.storage import partition_table
from orchestration.defs.ingest import compound_holdout_splits, cp_embeddings, splits
from orchestration.defs.training import mp_embeddings, mp_holdout_embeddings
from orchestration.partitions import dataset_fraction_keys, dataset_fraction_partitions, dataset_key, dataset_partitions
from orchestration.resources import MoaStore

GROUP = "evaluation"
KEYS = ["Metadata_Plate", "Metadata_Well"]


def _method_tables(store: MoaStore, ds: str, frac: str) -> dict[str, pd.DataFrame]:
    wh = store.warehouse()
    return {
        "MP": wh.read_table(partition_table("mp_embeddings", ds, frac)),
        "CP": wh.read_table(partition_table("cp_embeddings", ds)),
    }


@dg.asset(
    partitions_def=dataset_fraction_partitions,
    group_name=GROUP,
    deps=[mp_embeddings, cp_embeddings, splits],
    kinds={"duckdb"},
    description=(
        "Evaluation tables for MP and CP on the same test wells: enrichment, intra/inter-MOA PCC, k-NN over all k, "
        "class latent assignment, logistic regression, similarity groups, batch effect, mAP, bootstrap CIs, "
        "and MP image-level classification."
    ),
)
def evaluation_results(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    ds, frac = dataset_fraction_keys(context)
    t0 = time.time()
    wh = store.warehouse()
    sp = wh.read_table(partition_table("splits", ds))
    tables = _method_tables(store, ds, frac)
    # the same test wells for every method: test wells present in all tables. The suite
    # keeps DMSO only as mAP activity's negatives and drops single-compound MOAs itself.
    test = sp[sp[SPLIT_COL].eq("test") & (sp[ELIGIBLE_COL] | sp["Metadata_moa"].eq("DMSO"))][KEYS]
    for df in tables.values():
        test = test.merge(df[KEYS], on=KEYS, how="inner")
    train = sp[sp[SPLIT_COL].eq("train")][KEYS]
    frames = []
    meta: dict[str, object] = {"test_wells_incl_dmso": len(test)}
    for method, df in tables.items():
        feats = feature_columns(df)
        test_df = df.merge(test, on=KEYS, how="inner")
        train_df = df.merge(train, on=KEYS, how="inner")
        context.log.info(f"{method}: evaluating {len(test_df)} test wells x {len(feats)} features")
        tm = time.time()
        res = run_embedding_suite(test_df, feats, method, train_df=train_df, seed=0)
        meta[f"{method}_seconds"] = round(time.time() - tm, 1)
        frames.append(res)
    # image-level classification of MP's field predictions (CP has no classifier)
    fp = pd.read_parquet(store.artifact_dir(ds, frac) / "mp_field_predictions.parquet")
    fp = fp.merge(sp[KEYS + ["Metadata_moa", "Metadata_cell_line", "Metadata_timepoint"]], on=KEYS)
    fp = fp.merge(test, on=KEYS, how="inner")
    fp = fp[fp["Metadata_moa"].ne("DMSO")]
    prob_cols = [c for c in fp.columns if c.startswith("Prob_")]
    cls = classification_metrics(fp["Metadata_moa"], fp[prob_cols].to_numpy(), [c[5:] for c in prob_cols], fp)
    frames.append(cls.to_results("MP"))
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "fraction", frac)
    out.insert(0, "dataset", ds)
    wh.replace_rows("evaluation_results", out, {"dataset": ds, "fraction": frac})

    def pick(method: str, analysis: str, metric: str) -> float | None:
        sel = out[(out["method"] == method) & (out["analysis"] == analysis) & (out["metric"] == metric)]
        return None if sel.empty else float(sel["value"].iloc[0])

    headline = {}
    for m in tables:
        for analysis, metric in [("knn", "best_f1"), ("latent", "f1"), ("intra_inter", "delta"),
                                 ("enrichment", "odds_ratio_p99")]:
            v = pick(m, analysis, metric)
            if v is not None:
                headline[f"{m}_{analysis}_{metric}"] = v
    return dg.MaterializeResult(
        metadata={**meta, **headline, "rows": len(out), "seconds": round(time.time() - t0, 1)}
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[mp_holdout_embeddings, cp_embeddings, compound_holdout_splits],
    kinds={"duckdb"},
    description="Held-out compound MOA prediction (individual and aggregated vote, top-k) for MP and CP.",
)
def holdout_results(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    ds = dataset_key(context)
    t0 = time.time()
    wh = store.warehouse()
    sp = wh.read_table(partition_table("compound_holdout_splits", ds))
    tables = {
        "MP": wh.read_table(partition_table("mp_holdout_embeddings", ds)),
        "CP": wh.read_table(partition_table("cp_embeddings", ds)),
    }
    frames, meta = [], {}
    for method, df in tables.items():
        df = df.drop(columns=[c for c in (SPLIT_COL, ELIGIBLE_COL) if c in df.columns])
        df = df.merge(sp[KEYS + [SPLIT_COL]], on=KEYS, how="inner")
        # MLEs from every non-held-out well (train + val): all of them are training compounds
        res = compound_holdout_eval(df[df[SPLIT_COL].ne("test")], df[df[SPLIT_COL].eq("test")], feature_columns(df))
        out = res.to_results(method)
        frames.append(out)
        top1 = out[(out["metric"] == "top_k_accuracy") & (out["parameter"] == 1.0)]
        for _, r in top1.iterrows():
            meta[f"{method}_{r['analysis']}_top1"] = float(r["value"])
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "dataset", ds)
    wh.replace_rows("holdout_results", out, {"dataset": ds})
    return dg.MaterializeResult(metadata={**meta, "rows": len(out), "seconds": round(time.time() - t0, 1)})


@dg.asset(
    group_name=GROUP,
    deps=[evaluation_results, holdout_results],
    kinds={"duckdb"},
    description="Read-only copy of the warehouse for the dashboard (written to a temporary name, then renamed).",
)
def dashboard_snapshot(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    t0 = time.time()
    path = store.warehouse().publish_snapshot(store.snapshot_path)
    return dg.MaterializeResult(
        metadata={"snapshot": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size,
                  "seconds": round(time.time() - t0, 1)}
    )
