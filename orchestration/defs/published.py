"""Published-profiles domain: consortium CellProfiler profiles ("CP published") into DuckDB, and their evaluation."""

import time

import dagster as dg
from dagster_aws.s3 import S3Resource

from moa_core.data.sources.base import to_wells_table
from moa_core.storage import partition_table
from orchestration.partitions import dataset_key, dataset_partitions
from orchestration.resources import MoaStore

GROUP = "published"
CP_PUBLISHED = "CP published"


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    kinds={"s3", "duckdb"},
    description=(
        "Published well-level CellProfiler profiles (cpg0000/cpg0004 csv.gz, cpg0016 parquet, assembled releases) "
        "in the canonical schema, annotated, filtered as the paper does, with their release and ETag; plus their "
        "DMSO-standardized embeddings (method 'CP published')."
    ),
)
def published_profiles(context: dg.AssetExecutionContext, store: MoaStore, s3: S3Resource) -> dg.MaterializeResult:
    from moa_core.data.sources.profiles import build_published_table, fetch_profiles, local_profiles
    from moa_core.profiles.published import load_published_profiles, published_embeddings

    ds = dataset_key(context)
    entry = store.dataset(ds)
    t0 = time.time()
    meta: dict = {}
    if entry.source == "gallery":
        from moa_core.data.sources.s3 import S3Transfer

        def report(done: int, total: int, n_bytes: int) -> None:
            if done == total or done % 20 == 0:
                context.log.info(f"profiles: {done}/{total} files, {n_bytes / 1e6:.1f} MB ({time.time() - t0:.0f} s)")

        files, stats = fetch_profiles(
            entry,
            S3Transfer(s3.get_client(), max_workers=store.download_workers),
            store.cache_dir / "gallery" / "profiles",
            progress=report,
        )
        meta.update({f"download_{k}": v for k, v in stats.as_metadata().items()})
    elif entry.source == "local":
        files = local_profiles(entry)
    else:
        raise dg.Failure(f"dataset {ds} ({entry.kind}) has no published profiles")
    table, report, how = build_published_table(entry, files, store.shared_path)
    context.log.info(f"{ds}: {len(table)} wells from {len(files)} file(s); annotations: {how}")
    wh = store.warehouse()
    meta.update(
        load_published_profiles(wh, partition_table("published_profiles", ds), table, partition={"dataset": ds})
    )
    annotated = table["Metadata_moa"].notna()
    if annotated.any():
        emb, emb_meta = published_embeddings(table[annotated])
        emb_meta["plates_without_dmso"] = dg.MetadataValue.json(emb_meta["plates_without_dmso"])
        wh.replace_table(partition_table("cp_published_embeddings", ds), emb, partition={"dataset": ds})
        meta.update({f"embeddings_{k}": v for k, v in emb_meta.items()})
        if entry.kind == "profiles":  # a profile-only dataset's wells come from its profiles
            wells = to_wells_table(table[annotated], f"dataset {ds} published profiles")
            wh.replace_table(partition_table("wells", ds), wells, partition={"dataset": ds})
    return dg.MaterializeResult(
        metadata={
            **meta,
            **report.as_metadata(),
            "annotated_wells": int(annotated.sum()),
            "annotations": how,
            "files": dg.MetadataValue.json([f.source_file for f in files]),
            "etags": dg.MetadataValue.json(sorted({f.etag for f in files if f.etag})),
            "release": str(table["Metadata_release"].iloc[0]),
            "seconds_total": round(time.time() - t0, 1),
        }
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[published_profiles, "splits"],
    kinds={"duckdb"},
    description=(
        "The paper's analyses of a profile-only dataset's 'CP published' embeddings on its well-holdout test wells "
        "(rows of evaluation_results at fraction 100). Image datasets score CP published inside evaluation_results."
    ),
)
def published_evaluation(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    from moa_core.evaluation.compare import compare_methods, require_evaluable_test_wells

    ds = dataset_key(context)
    entry = store.dataset(ds)
    if entry.kind != "profiles":
        raise dg.Failure(f"dataset {ds} has images: its CP published profiles are scored by evaluation_results")
    t0 = time.time()
    wh = store.warehouse()
    sp = wh.read_table(partition_table("splits", ds))
    emb = wh.read_table(partition_table("cp_published_embeddings", ds))
    require_evaluable_test_wells(sp, {CP_PUBLISHED: emb}, where=f"dataset {ds}")
    out = compare_methods({CP_PUBLISHED: emb}, sp, seed=0)
    out.insert(0, "fraction", "100")
    out.insert(0, "dataset", ds)
    wh.replace_rows("evaluation_results", out, {"dataset": ds, "fraction": "100"})
    head = (
        out[
            (out["analysis"].isin(["knn", "latent", "map_activity"]))
            & out["metric"].isin(["best_f1", "f1", "fraction_retrieved"])
        ]
        .groupby(["analysis", "metric"])["value"]
        .first()
    )
    return dg.MaterializeResult(
        metadata={
            **{f"{a}_{m}": float(v) for (a, m), v in head.items()},
            "rows": len(out),
            "seconds": round(time.time() - t0, 1),
        }
    )
