"""Training domain: the MOAProfiler checkpoint and MP embeddings, per (dataset, fraction)."""


import dataclasses
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from moa_core.data.locator import ImageLocator, load_locator
from moa_core.datasets import FRACTIONS
from moa_core.model.embed import embed_fields, median_per_well
from moa_core.model.fields import load_field_tensors
from moa_core.model.train import content_addressed, load_checkpoint, prune_checkpoints, train_classifier
from moa_core.profiles.normalize import feature_columns, standardize_to_controls
from moa_core.splits import SPLIT_COL, subsample_training
from moa_core.storage import partition_table, write_parquet_atomic
from orchestration.defs.ingest import compound_holdout_splits, raw_images, splits
from orchestration.partitions import dataset_fraction_keys, dataset_fraction_partitions, dataset_key, dataset_partitions
from orchestration.resources import MoaStore

GROUP = "training"
KEYS = ["Metadata_Plate", "Metadata_Well"]


class TrainOverrides(dg.Config):
    """Optional overrides of the dataset's registered training config (from the launchpad)."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    input_size: int | None = None
    device: str | None = None


def _fields_for(load_data: pd.DataFrame, wells: pd.DataFrame) -> pd.DataFrame:
    return load_data.merge(wells, on=KEYS, how="inner").sort_values(KEYS + ["Metadata_Site"]).reset_index(drop=True)


def _image_shape(store: MoaStore, ds: str) -> tuple[int, int] | None:
    spec = store.dataset(ds)
    return (spec.synthetic.image_size,) * 2 if spec.synthetic else None


def _fields_source(store: MoaStore, ds: str) -> tuple[pd.DataFrame, ImageLocator]:
    """The dataset's load_data (warehouse) and the locator that reads its files (local or S3)."""
    return store.warehouse().read_table(partition_table("load_data", ds)), load_locator(store.dataset_dir(ds))


def _train(context: dg.AssetExecutionContext, store: MoaStore, ds: str, sp: pd.DataFrame, overrides: TrainOverrides,
           ckpt_path: Path) -> tuple[dict, pd.DataFrame]:
    """Train on the ``train`` wells of ``sp``, select on ``val``; returns (metadata, history)."""
    spec = store.dataset(ds)
    cfg = dataclasses.replace(spec.train, **{k: v for k, v in overrides.model_dump().items() if v is not None})
    t0 = time.time()
    load_data, root = _fields_source(store, ds)
    classes = sorted(sp["Metadata_moa"].unique())
    cls_index = {c: i for i, c in enumerate(classes)}
    tr = _fields_for(load_data, sp[sp[SPLIT_COL].eq("train")][KEYS + ["Metadata_moa"]])
    va = _fields_for(load_data, sp[sp[SPLIT_COL].eq("val")][KEYS + ["Metadata_moa"]])
    context.log.info(f"loading {len(tr)} training and {len(va)} validation fields at {cfg.input_size}px")
    x_tr = load_field_tensors(tr, root, cfg.input_size, expected_shape=_image_shape(store, ds))
    x_va = load_field_tensors(va, root, cfg.input_size, expected_shape=_image_shape(store, ds))

    def on_epoch(rec: dict) -> None:
        bal = f" well balanced acc (no DMSO) {rec['val_balanced_accuracy']:.3f}" if "val_balanced_accuracy" in rec else ""
        context.log.info(
            f"epoch {rec['epoch']}/{cfg.epochs}: loss {rec['train_loss']:.3f} train acc {rec['train_accuracy']:.3f} "
            f"val acc {rec['val_accuracy']:.3f}{bal} lr {rec['lr']:.4f} ({rec['seconds']:.0f} s)"
        )

    res = train_classifier(x_tr, tr["Metadata_moa"].map(cls_index).to_numpy(), x_va,
                           va["Metadata_moa"].map(cls_index).to_numpy(), classes, cfg, ckpt_path, on_epoch=on_epoch,
                           val_groups=(va["Metadata_Plate"] + "/" + va["Metadata_Well"]).to_numpy(),
                           exclude_class=cls_index.get("DMSO"))
    if res.resumed_from_epoch:
        context.log.info(f"resumed after epoch {res.resumed_from_epoch} from the previous attempt's saved state")
    for w in res.warnings:
        context.log.warning(w)
    final = content_addressed(res.checkpoint_path, res.sha256)
    hist = pd.DataFrame(res.history)
    meta = {
        "checkpoint": dg.MetadataValue.path(str(final)),
        "sha256": res.sha256,
        "best_epoch": res.best_epoch,
        "epochs": len(res.history),
        "best_val_score": float(res.best_val_accuracy),
        "selected_on": "well balanced accuracy, DMSO excluded" if "DMSO" in cls_index else "field accuracy",
        "resumed_from_epoch": res.resumed_from_epoch,
        "warnings": "; ".join(res.warnings) or "none",
        "train_fields": len(tr),
        "val_fields": len(va),
        "classes": len(classes),
        "train_config": dg.MetadataValue.json(cfg.to_dict()),
        "history": dg.MetadataValue.md(hist.round(4).to_markdown(index=False)),
        "seconds": round(time.time() - t0, 1),
    }
    return meta, hist


def _embed(context: dg.AssetExecutionContext, store: MoaStore, ds: str, sp: pd.DataFrame, row: pd.Series,
           field_path: Path) -> tuple[pd.DataFrame, dict]:
    """Embed every field of ``sp``'s wells with the checkpoint of warehouse ``row`` (hash checked first);
    write field predictions; return DMSO-standardized wells."""
    model, ckpt = load_checkpoint(row["checkpoint_path"], expected_sha256=row["sha256"])
    load_data, root = _fields_source(store, ds)
    fields = _fields_for(load_data, sp[KEYS])
    x = load_field_tensors(fields, root, ckpt["config"]["input_size"], expected_shape=_image_shape(store, ds))
    context.log.info(f"embedding {len(fields)} fields")
    feats, probs = embed_fields(model, x, ckpt["channel_mean"], ckpt["channel_sd"])
    field_df = fields[KEYS + ["Metadata_Site"]].copy()
    field_df["Metadata_pred_moa"] = np.asarray(ckpt["classes"])[probs.argmax(1)]
    prob_df = pd.DataFrame(probs, columns=[f"Prob_{c}" for c in ckpt["classes"]])
    write_parquet_atomic(pd.concat([field_df, prob_df], axis=1), field_path)
    well = median_per_well(fields, feats)
    well = sp[[c for c in sp.columns if c.startswith("Metadata_")]].merge(well, on=KEYS, how="inner")
    std, zero_sd = standardize_to_controls(well, feature_columns(well), control_mask=well["Metadata_moa"].eq("DMSO"))
    meta = {
        "wells": len(std),
        "fields": len(fields),
        "dims": len(feature_columns(std)),
        "dropped_zero_dmso_sd": len(zero_sd),
        "field_predictions": dg.MetadataValue.path(str(field_path)),
    }
    return std, meta


def _record_checkpoint(store: MoaStore, ds: str, frac: str, model: str, meta: dict) -> None:
    """The checkpoint's row (path + SHA-256) in one transaction, then the superseded files go."""
    row = pd.DataFrame([{
        "dataset": ds, "fraction": frac, "model": model, "checkpoint_path": meta["checkpoint"].path,
        "sha256": meta["sha256"], "best_epoch": meta["best_epoch"], "best_val_score": meta["best_val_score"],
        "selected_on": meta["selected_on"], "warnings": meta["warnings"], "train_fields": meta["train_fields"],
        "val_fields": meta["val_fields"], "classes": meta["classes"], "seconds": meta["seconds"],
    }])
    store.warehouse().replace_rows("checkpoints", row, {"dataset": ds, "fraction": frac, "model": model})
    prune_checkpoints(meta["checkpoint"].path)


def _recorded_checkpoint(store: MoaStore, ds: str, frac: str, model: str) -> pd.Series:
    wh = store.warehouse()
    ck = wh.read_table("checkpoints", {"dataset": ds, "fraction": frac, "model": model}) \
        if wh.has_table("checkpoints") else pd.DataFrame()
    if ck.empty:
        raise dg.Failure(f"no {model} checkpoint recorded for dataset {ds} fraction {frac}: materialize it first")
    return ck.iloc[0]


@dg.asset(
    partitions_def=dataset_fraction_partitions,
    group_name=GROUP,
    deps=[splits, raw_images],
    kinds={"pytorch"},
    description=(
        "5-channel EfficientNet-B0 trained to classify each field's MOA; the checkpoint with the best well-level "
        "balanced validation accuracy (DMSO excluded); resumes after a crash; SHA-256 in its warehouse row."
    ),
)
def mp_checkpoint(context: dg.AssetExecutionContext, config: TrainOverrides, store: MoaStore) -> dg.MaterializeResult:
    ds, frac = dataset_fraction_keys(context)
    wh = store.warehouse()
    sp = subsample_training(wh.read_table(partition_table("splits", ds)), FRACTIONS[frac],
                            seed=store.dataset(ds).split_seed)
    meta, hist = _train(context, store, ds, sp, config, store.artifact_dir(ds, frac) / "mp_efficientnet_b0.pt")
    hist.insert(0, "fraction", frac)
    hist.insert(0, "dataset", ds)
    wh.replace_rows("training_history", hist, {"dataset": ds, "fraction": frac})
    _record_checkpoint(store, ds, frac, "mp", meta)
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    partitions_def=dataset_fraction_partitions,
    group_name=GROUP,
    deps=[mp_checkpoint],
    kinds={"pytorch", "duckdb"},
    description="MP embeddings: pooled 1280-d field features -> well median -> per-plate DMSO standardization.",
)
def mp_embeddings(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    ds, frac = dataset_fraction_keys(context)
    t0 = time.time()
    wh = store.warehouse()
    sp = wh.read_table(partition_table("splits", ds))
    std, meta = _embed(context, store, ds, sp, _recorded_checkpoint(store, ds, frac, "mp"),
                       store.artifact_dir(ds, frac) / "mp_field_predictions.parquet")
    wh.replace_table(partition_table("mp_embeddings", ds, frac), std, partition={"dataset": ds, "fraction": frac})
    return dg.MaterializeResult(metadata={**meta, "seconds": round(time.time() - t0, 1)})


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[compound_holdout_splits, raw_images],
    kinds={"pytorch"},
    description="A second EfficientNet-B0 trained with one compound per MOA held out (paper Fig. 4).",
)
def mp_holdout_checkpoint(context: dg.AssetExecutionContext, config: TrainOverrides,
                          store: MoaStore) -> dg.MaterializeResult:
    ds = dataset_key(context)
    sp = store.warehouse().read_table(partition_table("compound_holdout_splits", ds))
    meta, _ = _train(context, store, ds, sp, config, store.artifact_dir(ds) / "mp_holdout_efficientnet_b0.pt")
    _record_checkpoint(store, ds, "100", "mp_holdout", meta)
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[mp_holdout_checkpoint],
    kinds={"pytorch", "duckdb"},
    description="Well embeddings of the compound-holdout model (held-out compounds never seen in training).",
)
def mp_holdout_embeddings(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    ds = dataset_key(context)
    t0 = time.time()
    wh = store.warehouse()
    sp = wh.read_table(partition_table("compound_holdout_splits", ds))
    std, meta = _embed(context, store, ds, sp, _recorded_checkpoint(store, ds, "100", "mp_holdout"),
                       store.artifact_dir(ds) / "mp_holdout_field_predictions.parquet")
    wh.replace_table(partition_table("mp_holdout_embeddings", ds), std, partition={"dataset": ds})
    return dg.MaterializeResult(metadata={**meta, "seconds": round(time.time() - t0, 1)})
