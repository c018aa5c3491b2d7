"""Published-profiles domain: consortium CellProfiler profiles ("CP published") into DuckDB, and their evaluation."""

import time

import dagster as dg
import pandas as pd
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
    if entry.out_of_core:
        return dg.MaterializeResult(metadata=_published_out_of_core(context, store, s3, entry, ds))
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
            wells = to_wells_table(table[annotated], f"dataset {ds} published profiles", entry.controls)
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


#: DMSO wells per plate kept for the paper's analyses of a JUMP-scale release (its splits and evaluation):
#: JUMP plates hold 16-64 DMSO wells each, ~45,000 in a release, which would swamp the MOA classes of the
#: well holdout; every DMSO well stays in the normalized profiles (standardization, activity, retrieval).
PAPER_DMSO_PER_PLATE = 2


def _release_sources(context: dg.AssetExecutionContext, store: MoaStore, s3: S3Resource, entry, ds: str):
    """(plate files, metadata folder, annotation table, release name, meta) of an out-of-core release."""
    import os
    from pathlib import Path

    from moa_core.data.sources.profiles import fetch_profiles, gallery_plate_files, release_plate_files
    from orchestration.progress import ProgressLog

    meta: dict = {}
    release = entry.release or f"{entry.layout}/{entry.batch or entry.name}"
    if entry.release_spec is not None:
        from moa_core.phenoca.jump_release import generate_release

        info = generate_release(
            entry.release_spec,
            store.dataset_dir(ds),
            store.shared_path,
            progress=ProgressLog(context.log.info, "generate release", rows_unit="wells"),
        )
        meta.update(
            {
                "generated_plates": info.plates_generated,
                "release_wells": info.n_wells,
                "generate_seconds": round(info.seconds, 1),
                "release_root": dg.MetadataValue.path(str(info.root)),
            }
        )
        root, release = info.root, f"synthetic JUMP-shaped release, scale {entry.release_spec.scale:g}"
        files = release_plate_files(root)
        metadata_dir = Path(entry.metadata) if entry.metadata else root / "metadata"
        annotations = metadata_dir / "compound_annotations.csv.gz"
        return files, metadata_dir, annotations, release, meta
    if entry.source == "gallery":
        from moa_core.data.sources.s3 import S3Transfer

        dl, stats = fetch_profiles(
            entry,
            S3Transfer(s3.get_client(), max_workers=store.download_workers),
            store.cache_dir / "gallery" / "profiles",
            progress=ProgressLog(context.log.info, "download", "files"),
        )
        meta.update({f"download_{k}": v for k, v in stats.as_metadata().items()})
        files = gallery_plate_files(dl)
        root = None
    else:
        root = Path(str(entry.path))
        files = release_plate_files(root)
    meta_dir = entry.metadata or (
        str(root / "metadata")
        if root is not None and (root / "metadata").is_dir()
        else os.environ.get("MOA_JUMP_METADATA", "")
    )
    if not meta_dir:
        raise dg.Failure(
            f"dataset {ds}: no JUMP metadata folder (well.csv.gz, compound.csv.gz...): set the entry's "
            f"'metadata' or $MOA_JUMP_METADATA"
        )
    metadata_dir = Path(meta_dir)
    own = metadata_dir / "compound_annotations.csv.gz"
    annotations = (
        own
        if own.is_file()
        else (store.shared_path / "data" / "cpjump1" / "JUMP-Target-1_compound_metadata_additional_annotations.tsv")
    )
    return files, metadata_dir, annotations, release, meta


def _published_out_of_core(context: dg.AssetExecutionContext, store: MoaStore, s3: S3Resource, entry, ds: str) -> dict:
    """A JUMP-scale release: loaded into DuckDB, then normalized, plate by plate (moa_core.profiles.release)."""
    import numpy as np

    from moa_core.profiles.release import load_release, normalize_release, release_wells
    from orchestration.progress import ProgressLog

    t0 = time.time()
    files, metadata_dir, annotations, release, meta = _release_sources(context, store, s3, entry, ds)
    context.log.info(f"{ds}: {len(files)} plate files; metadata {metadata_dir}; annotations {annotations}")
    wh = store.warehouse()
    raw = partition_table("release_raw", ds)
    load = load_release(wh, files, raw, progress=ProgressLog(context.log.info, "load into DuckDB"))
    wells = release_wells(wh, raw, metadata_dir, annotations=annotations, release=release, etag=entry.etag or "")
    wh.replace_table(partition_table("release_wells", ds), wells, partition={"dataset": ds})
    norm = normalize_release(
        wh,
        raw,
        wells,
        partition_table("cp_published_embeddings", ds),
        progress=ProgressLog(context.log.info, "normalize (2 passes)", rows_unit="wells"),
        partition={"dataset": ds},
    )
    # the paper's analyses: single-MOA treatment wells and a few DMSO wells per plate
    ok = ~wells["Metadata_Plate"].isin(norm.plates_without_dmso)
    trt = wells[ok & wells["Metadata_single_moa"] & wells["Metadata_pert_type"].eq("trt")]
    dmso = wells[ok & wells["Metadata_moa"].eq("DMSO")]
    rng = np.random.default_rng(0)  # a seeded choice of PAPER_DMSO_PER_PLATE DMSO wells per plate
    dmso = (
        dmso.assign(_r=rng.random(len(dmso)))
        .sort_values(["Metadata_Plate", "_r"])
        .groupby("Metadata_Plate")
        .head(PAPER_DMSO_PER_PLATE)
        .drop(columns="_r")
    )
    paper = pd.concat([trt, dmso]).sort_values(["Metadata_Plate", "Metadata_Well"])
    if trt.empty:
        raise dg.Failure(f"dataset {ds}: no annotated single-MOA well in the release ({annotations})")
    paper_wells = to_wells_table(paper, f"dataset {ds} release", store.dataset(ds).controls)
    wh.replace_table(partition_table("wells", ds), paper_wells, partition={"dataset": ds})
    return {
        **meta,
        **load.as_metadata(),
        **norm.as_metadata(),
        "release": release,
        "wells": len(wells),
        "compounds": int(wells.loc[wells["Metadata_pert_type"].eq("trt"), "Metadata_JCP2022"].nunique()),
        "annotated_compounds": int(trt["Metadata_JCP2022"].nunique()),
        "paper_analysis_wells": len(paper),
        "seconds_total": round(time.time() - t0, 1),
    }
