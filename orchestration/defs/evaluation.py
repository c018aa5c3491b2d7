"""Evaluation domain: the paper's analyses for MP, CP, CP published and the DP recipe on the same test wells."""

import time

import dagster as dg
import pandas as pd

from moa_core.methods import method_tables
from moa_core.splits import fraction_split
from moa_core.storage import partition_table
from orchestration.defs.baselines import cp_baselines
from orchestration.defs.ingest import compound_holdout_splits, cp_embeddings, splits
from orchestration.defs.paper_weights import mp_paper_embeddings
from orchestration.defs.training import dp_embeddings, mp_embeddings, mp_holdout_embeddings
from orchestration.partitions import dataset_fraction_keys, dataset_fraction_partitions, dataset_key, dataset_partitions
from orchestration.resources import MoaStore

GROUP = "evaluation"

#: Method -> (embedding table base name, per fraction): the registry of moa_core.methods.
METHOD_TABLES = method_tables()


def available_methods(
    wh,
    ds: str,
    frac: str,
    tables: dict[str, tuple[str, bool]] | None = None,
    *,
    wells: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Every method of ``tables`` (default :data:`METHOD_TABLES`) whose embeddings exist for (dataset, fraction).

    ``wells`` (a frame with ``Metadata_Plate``/``Metadata_Well``, e.g. the split) reads only those wells
    of each table, out of core (:func:`moa_core.profiles.release.read_matrix`: only their features are
    read, as float32): a JUMP-scale release's table never becomes one pandas frame.
    """
    from moa_core.profiles.release import read_matrix

    keys = ["Metadata_Plate", "Metadata_Well"]
    wanted = None if wells is None else pd.MultiIndex.from_frame(wells[keys].astype(str))

    def select(meta: pd.DataFrame) -> pd.DataFrame:
        return meta[pd.MultiIndex.from_frame(meta[keys].astype(str)).isin(wanted)]

    out = {}
    for method, (base, per_fraction) in (tables or METHOD_TABLES).items():
        table = partition_table(base, ds, frac) if per_fraction else partition_table(base, ds)
        if not wh.has_table(table):
            continue
        if wanted is None:
            out[method] = wh.read_table(table)
            continue
        meta, X, feats = read_matrix(wh, table, select=select)
        out[method] = pd.concat([meta, pd.DataFrame(X, columns=feats)], axis=1)
    return out


@dg.asset(
    partitions_def=dataset_fraction_partitions,
    group_name=GROUP,
    deps=[mp_embeddings, cp_embeddings, cp_baselines, splits, dp_embeddings, mp_paper_embeddings],
    kinds={"duckdb"},
    description=(
        "Evaluation tables for MP, CP, CP published and the DP recipe (whichever exist) on the same test wells: "
        "enrichment, intra/inter-MOA PCC, k-NN over all k, "
        "class latent assignment, logistic regression, similarity groups, batch effect, mAP, bootstrap CIs, "
        "and MP image-level classification. Also per (dataset, fraction): evaluation_chance (chance levels of the "
        "scored wells), evaluation_per_moa (per-MOA precision/"
        "recall/F1 of the k-NN vote at the best-F1 k and of the class latent assignment), evaluation_confusion "
        "(their confusion counts) and embedding_maps (2-D PCA of every method's evaluated wells)."
    ),
)
def evaluation_results(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    from moa_core.evaluation.compare import chance_baselines, common_test_wells, compare_methods, compare_per_moa

    ds, frac = dataset_fraction_keys(context)
    t0 = time.time()
    wh = store.warehouse()
    # the fraction's own training split: logistic regression (and MP) see the same subsample
    sp = fraction_split(wh.read_table(partition_table("splits", ds)), frac, seed=store.dataset(ds).split_seed)
    # a JUMP-scale release: only the split's wells are read (the paper's analysis wells), never the whole table
    tables = available_methods(wh, ds, frac, wells=sp if store.dataset(ds).out_of_core else None)
    if not tables:
        raise dg.Failure(f"dataset {ds} fraction {frac}: no MP, CP or CP published embeddings to evaluate")
    fp = store.artifact_dir(ds, frac) / "mp_field_predictions.parquet"
    fields = {"MP": pd.read_parquet(fp)} if "MP" in tables and fp.is_file() else {}
    context.log.info(f"evaluating {', '.join(tables)} on {len(common_test_wells(sp, tables))} common test wells")
    out = compare_methods(tables, sp, field_predictions=fields, seed=0)
    out.insert(0, "fraction", frac)
    out.insert(0, "dataset", ds)
    # per-MOA breakdown, confusion counts and PCA maps on the same wells, k-NN at the k reported as best;
    # computed before anything is written, so a failure leaves the partition's old tables consistent
    t1 = time.time()
    best_k = out[(out["analysis"] == "knn") & (out["metric"] == "best_f1")].set_index("method")["parameter"]
    per = compare_per_moa(tables, sp, k={m: int(k) for m, k in best_k.items()})
    per_moa_seconds = round(time.time() - t1, 2)
    chance = chance_baselines(sp, tables)
    where = {"dataset": ds, "fraction": frac}
    wh.replace_rows("evaluation_results", out, where)
    for table, df in (
        ("evaluation_chance", chance),
        ("evaluation_per_moa", per.per_moa),
        ("evaluation_confusion", per.confusion),
        ("embedding_maps", per.maps),
    ):
        wh.replace_rows(table, df.assign(**where)[[*where, *df.columns]], where)

    headline = {}
    for (m, analysis, metric), v in out.groupby(["method", "analysis", "metric"])["value"].first().items():
        if (analysis, metric) in {
            ("knn", "best_f1"),
            ("latent", "f1"),
            ("intra_inter", "delta"),
            ("logistic", "f1"),
            ("map_consistency", "mean_map"),
        }:
            headline[f"{m}_{analysis}_{metric}"] = float(v)
    return dg.MaterializeResult(
        metadata={
            **headline,
            "rows": len(out),
            "seconds": round(time.time() - t0, 1),
            "per_moa_seconds": per_moa_seconds,
        }
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[mp_holdout_embeddings, cp_embeddings, compound_holdout_splits],
    kinds={"duckdb"},
    description="Held-out compound MOA prediction (individual and aggregated vote, top-k) for MP and CP.",
)
def holdout_results(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    from moa_core.evaluation.compare import compare_holdout

    ds = dataset_key(context)
    t0 = time.time()
    wh = store.warehouse()
    tables = {
        "MP": wh.read_table(partition_table("mp_holdout_embeddings", ds)),
        "CP": wh.read_table(partition_table("cp_embeddings", ds)),
    }
    out = compare_holdout(tables, wh.read_table(partition_table("compound_holdout_splits", ds)))
    out.insert(0, "dataset", ds)
    wh.replace_rows("holdout_results", out, {"dataset": ds})
    top1 = out[(out["metric"] == "top_k_accuracy") & (out["parameter"] == 1.0)]
    meta = {f"{r.method}_{r.analysis}_top1": float(r.value) for r in top1.itertuples()}
    return dg.MaterializeResult(metadata={**meta, "rows": len(out), "seconds": round(time.time() - t0, 1)})
