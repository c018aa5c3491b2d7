"""Ingest domain: raw images (load_data), CellProfiler-style profiles, splits."""


import time

import dagster as dg
import numpy as np

from moa_core.data.design import load_cpjump1_design
from moa_core.data.load_data import read_load_data, validate_load_data
from moa_core.data.synthetic import render_dataset
from moa_core.datasets import get_dataset
from moa_core.profiles.features import aggregate_wells, single_cell_profiles
from moa_core.profiles.normalize import drop_invalid_features, feature_columns, standardize_to_controls
from moa_core.splits import SPLIT_COL, compound_holdout_split, well_holdout_split
from moa_core.storage import atomic_directory, partition_table, write_parquet_atomic
from orchestration.partitions import dataset_key, dataset_partitions
from orchestration.resources import MoaStore

GROUP = "ingest"


def _progress(context: dg.AssetExecutionContext, what: str):
    t0 = time.time()

    def report(done: int, total: int) -> None:
        context.log.info(f"{what}: {done}/{total} ({time.time() - t0:.0f} s)")

    return report


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    kinds={"python", "duckdb"},
    description="Raw Cell Painting fields (5-channel 16-bit TIFFs) and their load_data table.",
)
def raw_images(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    ds = dataset_key(context)
    spec = get_dataset(ds)
    if spec.synthetic is None:
        raise dg.Failure(f"dataset {ds} has no renderer; its loader is registered elsewhere")
    t0 = time.time()
    design = load_cpjump1_design(store.shared_path)
    final = store.dataset_dir(ds)
    with atomic_directory(final) as tmp:
        load_data, wells = render_dataset(
            design, spec.synthetic, tmp, n_workers=store.n_workers, progress=_progress(context, "rendered fields")
        )
    validate_load_data(load_data, source=f"{ds} load_data")
    load_data.insert(0, "Metadata_image_root", str(final))
    wh = store.warehouse()
    wh.replace_table(partition_table("load_data", ds), load_data, partition={"dataset": ds})
    wh.replace_table(partition_table("wells", ds), wells, partition={"dataset": ds})
    n_bytes = sum(f.stat().st_size for f in final.rglob("*.tiff"))
    return dg.MaterializeResult(
        metadata={
            "plates": wells["Metadata_Plate"].nunique(),
            "wells": len(wells),
            "fields": len(load_data),
            "compounds": wells["Metadata_broad_sample"].nunique(),
            "moas": int(wells["Metadata_moa"].nunique()),
            "image_size": spec.synthetic.image_size,
            "mean_cells_per_field": float(spec.synthetic.mean_cells),
            "bytes_on_disk": int(n_bytes),
            "image_root": dg.MetadataValue.path(str(final)),
            "load_data_csv": dg.MetadataValue.path(str(final / "load_data.csv")),
            "seconds": round(time.time() - t0, 1),
            "spec": dg.MetadataValue.json(spec.synthetic.to_dict()),
        }
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[raw_images],
    kinds={"python", "duckdb"},
    description="CellProfiler-style well profiles: cp_measure features of nuclei/cells/cytoplasm, median per well.",
)
def cp_profiles(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    ds = dataset_key(context)
    spec = get_dataset(ds)
    t0 = time.time()
    root = store.dataset_dir(ds)
    load_data = read_load_data(root / "load_data.csv")
    shape = (spec.synthetic.image_size,) * 2 if spec.synthetic else None
    sc = single_cell_profiles(
        load_data, root, spec.features, n_workers=store.n_workers, expected_shape=shape,
        progress=_progress(context, "profiled fields"),
    )
    sc_path = write_parquet_atomic(sc, store.artifact_dir(ds) / "cp_single_cells.parquet")
    prof = aggregate_wells(sc)
    wh = store.warehouse()
    wells = wh.read_table(partition_table("wells", ds))
    meta = [c for c in wells.columns if c.startswith("Metadata_")]
    prof = wells[meta].merge(prof, on=["Metadata_Plate", "Metadata_Well"], how="inner")
    wh.replace_table(partition_table("cp_profiles", ds), prof, partition={"dataset": ds})
    return dg.MaterializeResult(
        metadata={
            "wells": len(prof),
            "cells": len(sc),
            "features": len(feature_columns(prof)),
            "median_cells_per_well": float(prof["Metadata_Count_Cells"].median()),
            "wells_without_cells": int(len(wells) - len(prof)),
            "single_cells_parquet": dg.MetadataValue.path(str(sc_path)),
            "feature_config": dg.MetadataValue.json(spec.features.to_dict()),
            "seconds": round(time.time() - t0, 1),
        }
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[cp_profiles],
    kinds={"python", "duckdb"},
    description="CP well embeddings: invalid features dropped, standardized per plate to DMSO wells.",
)
def cp_embeddings(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    ds = dataset_key(context)
    t0 = time.time()
    wh = store.warehouse()
    prof = wh.read_table(partition_table("cp_profiles", ds))
    feats, report = drop_invalid_features(prof, feature_columns(prof))
    meta = [c for c in prof.columns if c.startswith("Metadata_")]
    std, zero_sd = standardize_to_controls(
        prof[meta + feats], feats, control_mask=prof["Metadata_moa"].eq("DMSO")
    )
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
    sp, report = split_fn(wh.read_table(partition_table("wells", ds)), seed=get_dataset(ds).split_seed)
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
    deps=[raw_images],
    kinds={"python", "duckdb"},
    description="The paper's 60/10/30 well holdout per MOA (single-MOA compounds, DMSO as a class).",
)
def splits(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_materialize_split(context, store, well_holdout_split, "splits"))


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[raw_images],
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
