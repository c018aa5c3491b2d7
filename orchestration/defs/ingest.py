"""Ingest domain: raw images (load_data) from any source, CellProfiler-style profiles per plate, splits."""

import re
import time
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd
from dagster_aws.s3 import S3Resource

from moa_core.data.design import load_cpjump1_design
from moa_core.data.field_qc import KEYS as FIELD_KEYS
from moa_core.data.field_qc import QC_COLUMNS
from moa_core.data.locator import load_locator, save_locator
from moa_core.data.sources import open_image_source
from moa_core.data.sources.annotations import well_annotations
from moa_core.splits import SPLIT_COL, compound_holdout_split, well_holdout_split
from moa_core.storage import atomic_directory, partition_table
from orchestration.defs.executors import executed_by
from orchestration.partitions import dataset_key, dataset_partitions
from orchestration.resources import MoaStore

GROUP = "ingest"


def _progress(context: dg.AssetExecutionContext, what: str):
    t0 = time.time()

    def report(done: int, total: int) -> None:
        context.log.info(f"{what}: {done}/{total} ({time.time() - t0:.0f} s)")

    return report


def _transfer(store: MoaStore, s3: S3Resource):
    from moa_core.data.sources.s3 import S3Transfer

    return S3Transfer(s3.get_client(), max_workers=store.download_workers)


def _render_synthetic(context: dg.AssetExecutionContext, store: MoaStore, entry) -> tuple[pd.DataFrame, dict]:
    from moa_core.data.synthetic import render_dataset

    final = store.dataset_dir(entry.name)
    design = load_cpjump1_design(store.shared_path)
    with atomic_directory(final) as tmp:
        _, wells = render_dataset(
            design, entry.synthetic, tmp, n_workers=store.n_workers, progress=_progress(context, "rendered fields")
        )
    return wells, {
        "image_size": entry.synthetic.image_size,
        "mean_cells_per_field": float(entry.synthetic.mean_cells),
        "bytes_on_disk": int(sum(f.stat().st_size for f in final.rglob("*.tiff"))),
        "spec": dg.MetadataValue.json(entry.synthetic.to_dict()),
    }


def _download_images(context: dg.AssetExecutionContext, source, load_data: pd.DataFrame) -> dict:
    """Copy every image and illumination file into the local cache (concurrent, resumable, cached)."""
    objs = source.image_objects(load_data)
    dest = source.cache_dir / "objects"
    t0 = time.time()

    def report(done: int, total: int, n_bytes: int) -> None:
        if done == total or done % 200 == 0:
            context.log.info(f"downloaded {done}/{total} objects, {n_bytes / 1e6:.1f} MB ({time.time() - t0:.0f} s)")

    stats = source.transfer.download_many([(b, k, dest / b / k) for b, k in objs], progress=report)
    return {f"download_{k}": v for k, v in stats.as_metadata().items()}


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    kinds={"python", "s3", "duckdb"},
    description=(
        "Raw Cell Painting fields and their load_data table: rendered (synthetic), listed from the gallery's "
        "per-plate load_data files on S3 (optionally downloaded), or read from a local folder."
    ),
)
def raw_images(context: dg.AssetExecutionContext, store: MoaStore, s3: S3Resource) -> dg.MaterializeResult:
    ds = dataset_key(context)
    entry = store.dataset(ds)
    if not entry.has_images:
        raise dg.Failure(f"dataset {ds} is a published-profile dataset (no images); materialize published_profiles")
    t0 = time.time()
    meta: dict = {}
    wells = None
    if entry.kind == "synthetic":  # the renderer knows its wells (and their true latents)
        wells, meta = _render_synthetic(context, store, entry)
    source = open_image_source(
        entry,
        cache_dir=store.cache_dir,
        root=store.dataset_dir(ds),
        transfer=_transfer(store, s3) if entry.source == "gallery" else None,
        endpoint_url=s3.endpoint_url,
        image_cache=store.download_images,
    )
    plates = source.list_plates()
    load_data = pd.concat([source.read_load_data(p) for p in plates], ignore_index=True)
    context.log.info(f"{ds}: {len(plates)} plate(s), {len(load_data)} fields")
    if entry.source == "gallery" and store.download_images:
        meta.update(_download_images(context, source, load_data))
    if wells is None:
        wells = well_annotations(entry, load_data, store.shared_path, source)
    wh = store.warehouse()
    save_locator(store.dataset_dir(ds), source.locator())
    wh.replace_table(partition_table("load_data", ds), load_data, partition={"dataset": ds})
    wh.replace_table(partition_table("wells", ds), wells, partition={"dataset": ds})
    return dg.MaterializeResult(
        metadata={
            **meta,
            "plates": len(plates),
            "wells": int(load_data[["Metadata_Plate", "Metadata_Well"]].drop_duplicates().shape[0]),
            "annotated_wells": len(wells),
            "fields": len(load_data),
            "compounds": int(wells["Metadata_broad_sample"].nunique()),
            "moas": int(wells["Metadata_moa"].nunique()),
            "illumination_corrected_fields": int(load_data["FileName_IllumDNA"].notna().sum()),
            "source": entry.source or "synthetic",
            "load_data_files": dg.MetadataValue.json(sorted(load_data["Metadata_load_data_file"].unique().tolist())),
            "seconds": round(time.time() - t0, 1),
        }
    )


def _mapping_key(plate: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", plate)


@dg.op(
    ins={"start": dg.In(dg.Nothing)},
    out=dg.DynamicOut(str),
    description="One output per plate of the dataset's load_data.",
)
def cp_plates(context: dg.OpExecutionContext, store: MoaStore) -> Iterator[dg.DynamicOutput[str]]:
    ds = dataset_key(context)
    plates = sorted(store.warehouse().read_table(partition_table("load_data", ds))["Metadata_Plate"].unique())
    for plate in plates:
        yield dg.DynamicOutput(str(plate), mapping_key=_mapping_key(str(plate)))


@dg.op(description="Segment and measure one plate's fields; single cells streamed to the plate's parquet.")
def cp_profile_plate(context: dg.OpExecutionContext, store: MoaStore, plate: str) -> dict:
    from moa_core.profiles.features import profile_plate

    ds = dataset_key(context)
    entry = store.dataset(ds)
    ld = store.warehouse().read_table(partition_table("load_data", ds), {"Metadata_Plate": plate})
    shape = (entry.synthetic.image_size,) * 2 if entry.synthetic else None
    out = store.artifact_dir(ds) / "single_cells" / f"{plate}.parquet"
    rep = profile_plate(
        ld,
        out,
        load_locator(store.dataset_dir(ds)),
        entry.features,
        n_workers=store.n_workers,
        expected_shape=shape,
        progress=_progress(context, f"plate {plate}: profiled fields"),
        qc=entry.field_qc,
    )
    where = executed_by()
    context.log.info(
        f"plate {plate}: {rep.cells} cells in {rep.fields} fields, {len(rep.flagged_fields)} flagged "
        f"(worker {where['worker']}, pid {where['pid']})"
    )
    context.add_output_metadata({"executed_by": dg.MetadataValue.json(where)})
    return {
        "executed_by": where,
        "plate": plate,
        "path": str(out),
        "cells": int(rep.cells),
        "fields": int(rep.fields),
        "seconds": float(rep.seconds),
        "flagged": rep.flagged_fields.to_dict("records"),
    }


@dg.op(description="Well medians of every plate, joined to the well annotations, into the warehouse.")
def cp_collect(context: dg.OpExecutionContext, store: MoaStore, plates: list[dict]) -> None:
    from moa_core.profiles.features import well_profiles
    from moa_core.profiles.normalize import feature_columns

    ds = dataset_key(context)
    t0 = time.time()
    wh = store.warehouse()
    wells = wh.read_table(partition_table("wells", ds))
    flagged = [f for p in plates for f in p["flagged"]]
    qc = pd.DataFrame(flagged, columns=QC_COLUMNS)
    qc.insert(0, "dataset", ds)
    qc = qc.astype(
        {
            "dataset": "string",
            "Metadata_Plate": "string",
            "Metadata_Well": "string",
            "Metadata_Site": "int64",
            "channel": "string",
            "reason": "string",
            "skipped": bool,
        }
    )  # typed even when empty
    skipped = qc[qc["skipped"]].drop_duplicates(FIELD_KEYS)
    prof = well_profiles([p["path"] for p in plates], wells, exclude_fields=skipped)
    wh.replace_table(partition_table("cp_profiles", ds), prof, partition={"dataset": ds})
    wh.append_columns("field_qc", {"channel": ("VARCHAR", None), "skipped": ("BOOLEAN", False)})  # older stores
    wh.replace_rows("field_qc", qc, {"dataset": ds}, allow_empty=True)
    context.add_output_metadata(
        {
            "plates": len(plates),
            "wells": len(prof),
            "cells": int(sum(p["cells"] for p in plates)),
            "fields": int(sum(p["fields"] for p in plates)),
            "flagged_fields": int(qc[FIELD_KEYS].drop_duplicates().shape[0]),
            "flagged_by_reason": dg.MetadataValue.json(
                qc.assign(kind=qc["reason"].str.split(":").str[0], channel=qc["channel"].fillna("-"))
                .groupby(["kind", "channel"])
                .size()
                .rename("fields")
                .reset_index()
                .to_dict("records")
            ),
            "skipped_fields": len(skipped),
            "features": len(feature_columns(prof)),
            "median_cells_per_well": float(prof["Metadata_Count_Cells"].median()),
            "wells_without_cells": int(len(wells) - len(prof)),
            "single_cells_dir": dg.MetadataValue.path(str(store.artifact_dir(ds) / "single_cells")),
            "feature_config": dg.MetadataValue.json(store.dataset(ds).features.to_dict()),
            "seconds_per_plate": dg.MetadataValue.json({p["plate"]: round(p["seconds"], 1) for p in plates}),
            "plates_executed_by": dg.MetadataValue.json({p["plate"]: p.get("executed_by") for p in plates}),
            "seconds": round(sum(p["seconds"] for p in plates) + time.time() - t0, 1),
        }
    )


@dg.graph_asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    ins={"raw_images": dg.AssetIn(dagster_type=dg.Nothing)},
    kinds={"python", "duckdb"},
    description=(
        "CellProfiler-style well profiles: cp_measure features of nuclei/cells/cytoplasm, fanned out per plate "
        "(single cells streamed to one parquet per plate), median per well."
    ),
)
def cp_profiles(raw_images):
    return cp_collect(cp_plates(raw_images).map(cp_profile_plate).collect())


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[cp_profiles],
    kinds={"python", "duckdb"},
    description="CP well embeddings: invalid features dropped, standardized per plate to DMSO wells.",
)
def cp_embeddings(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    from moa_core.profiles.normalize import clean_features, feature_columns, standardize_to_controls

    ds = dataset_key(context)
    t0 = time.time()
    wh = store.warehouse()
    prof = wh.read_table(partition_table("cp_profiles", ds))
    clean, feats, report = clean_features(prof, feature_columns(prof))
    std, zero_sd = standardize_to_controls(clean, feats, control_mask=clean["Metadata_moa"].eq("DMSO"))
    wh.replace_table(partition_table("cp_embeddings", ds), std, partition={"dataset": ds})
    return dg.MaterializeResult(
        metadata={
            **report.as_metadata(),
            "dropped_zero_dmso_sd": len(zero_sd),
            "features_out": len(feature_columns(std)),
            "wells": len(std),
            "seconds": round(time.time() - t0, 1),
        }
    )


def _materialize_split(context: dg.AssetExecutionContext, store: MoaStore, split_fn, table: str) -> dict:
    """Split the dataset's wells with ``split_fn`` (a moa_core.splits function), store it, describe it."""
    ds = dataset_key(context)
    t0 = time.time()
    wh = store.warehouse()
    sp, report = split_fn(wh.read_table(partition_table("wells", ds)), seed=store.dataset(ds).split_seed)
    keep = [c for c in sp.columns if not c.startswith("Latent_")]
    wh.replace_table(partition_table(table, ds), sp[keep], partition={"dataset": ds})
    test = sp[sp[SPLIT_COL].eq("test")]
    return {
        **report.as_metadata(),
        **{f"wells_{k}": int(v) for k, v in sp[SPLIT_COL].value_counts().items()},
        "classes": int(sp["Metadata_moa"].nunique()),
        "moas_in_all_splits": int((sp.groupby("Metadata_moa")[SPLIT_COL].nunique() == 3).sum()),
        "evaluated_test_wells": int(test["Metadata_eval_eligible"].sum()),
        "test_compounds": int(test["Metadata_broad_sample"].nunique()),
        "seconds": round(time.time() - t0, 1),
    }


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[raw_images, "published_profiles"],
    kinds={"python", "duckdb"},
    description="The paper's 60/10/30 well holdout per MOA (single-MOA compounds, DMSO as a class).",
)
def splits(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_materialize_split(context, store, well_holdout_split, "splits"))


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[raw_images, "published_profiles"],
    kinds={"python", "duckdb"},
    description="Compound holdout: one random compound per MOA with >= 2 compounds held out; rest 70/30 train/val.",
)
def compound_holdout_splits(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata=_materialize_split(context, store, compound_holdout_split, "compound_holdout_splits")
    )


@dg.asset_check(asset=splits, description="Every class with >= 3 wells appears in train, val and test.")
def splits_cover_every_class(context: dg.AssetCheckExecutionContext, store: MoaStore) -> dg.AssetCheckResult:
    ds = dataset_key(context)
    sp = store.warehouse().read_table(partition_table("splits", ds))
    n = sp.groupby("Metadata_moa").size()
    k = sp.groupby("Metadata_moa")[SPLIT_COL].nunique()
    missing = sorted(k[(n >= 3) & (k < 3)].index)
    return dg.AssetCheckResult(passed=not missing, metadata={"classes_missing_a_split": len(missing)})


@dg.asset_check(asset=cp_embeddings, description="CP embeddings are finite and DMSO wells are centred per plate.")
def cp_embeddings_standardized(context: dg.AssetCheckExecutionContext, store: MoaStore) -> dg.AssetCheckResult:
    from moa_core.profiles.normalize import feature_columns

    ds = dataset_key(context)
    df = store.warehouse().read_table(partition_table("cp_embeddings", ds))
    feats = feature_columns(df)
    x = df[feats].to_numpy(np.float64)
    dmso = df["Metadata_moa"].eq("DMSO").to_numpy()
    worst = max(
        float(np.abs(x[dmso & (df["Metadata_Plate"] == p).to_numpy()].mean(0)).max())
        for p in df["Metadata_Plate"].unique()
    )
    return dg.AssetCheckResult(
        passed=bool(np.isfinite(x).all() and worst < 1e-3),
        metadata={"max_abs_dmso_mean": worst, "features": len(feats)},
    )
