"""Training domain: MOAProfiler and DP-recipe checkpoints and embeddings, per (dataset, fraction).

Assets read the fields from the preprocessed image store (:mod:`orchestration.defs.image_store`)
through DataLoaders, train through one entry point (:mod:`moa_core.model.launch`: in this
process, or ``torchrun`` with ``nproc_per_node`` processes), record the checkpoint's SHA-256
in its warehouse row and check it before embedding.
"""

import dataclasses
import time
import types
import typing
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from moa_core.model.config import TrainConfig
from moa_core.model.launch import TrainSpec
from moa_core.splits import SPLIT_COL, fraction_split
from moa_core.storage import partition_table, write_parquet_atomic
from orchestration.defs.executors import GPU_TAGS, executed_by, in_celery_worker
from orchestration.defs.image_store import image_store
from orchestration.defs.ingest import compound_holdout_splits, cp_profiles, splits
from orchestration.partitions import dataset_fraction_keys, dataset_fraction_partitions, dataset_key, dataset_partitions
from orchestration.resources import MoaStore

GROUP = "training"
KEYS = ["Metadata_Plate", "Metadata_Well"]
FIELD_KEYS = KEYS + ["Metadata_Site"]


def _override_fields(cls: type) -> dict[str, tuple[object, None]]:
    """Every field of the dataclass ``cls`` as an optional Dagster config field (unset = ``None``).

    Types come from the dataclass's own annotations (tuples become lists, Dagster's config has no
    tuples), so a field added to :class:`~moa_core.model.config.TrainConfig` is a launchpad option
    without being declared twice.
    """
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if typing.get_origin(t) in (types.UnionType, typing.Union):  # ``X | None``
            t = args[0]
        if typing.get_origin(t) is tuple:
            t = list[typing.get_args(t)[0]]
        out[f.name] = (t | None, None)
    return out


def _apply_overrides(self, base: TrainConfig) -> TrainConfig:
    """``base`` with every set override (launch and weight options aside) replaced."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    vals = {k: v for k, v in self.model_dump().items() if v is not None and k in names}
    if "milestones" in vals:
        vals["milestones"] = tuple(vals["milestones"])
    return dataclasses.replace(base, **vals)


_OVERRIDES = _override_fields(TrainConfig)

#: Overrides of the dataset's registered training config (from the launchpad); unset = the entry's value:
#: every :class:`~moa_core.model.config.TrainConfig` field, plus ``nproc_per_node`` (more than one launches
#: ``torchrun --standalone``: DDP, one process per GPU, or gloo on CPU).
TrainOverrides = type(
    "TrainOverrides",
    (dg.Config,),
    {
        "__module__": __name__,
        "__qualname__": "TrainOverrides",
        "__doc__": "Overrides of the dataset's registered training config (from the launchpad); unset = the entry's "
        "value. Every TrainConfig field, plus nproc_per_node: more than one launches torchrun "
        "--standalone (DDP; one process per GPU, or gloo on CPU).",
        "__annotations__": {**{k: t for k, (t, _) in _OVERRIDES.items()}, "nproc_per_node": int},
        **{k: d for k, (_, d) in _OVERRIDES.items()},
        "nproc_per_node": 1,
        "apply": _apply_overrides,
    },
)


class DPRecipeConfig(TrainOverrides):
    """The DP recipe's training (defaults: the entry's ``dp_train`` table) and optional pretrained weights.

    ``pretrained_weights``: a PyTorch state dict of the 5-channel EfficientNet-B0 (read with
    ``weights_only=True``); with ``epochs = 0`` it embeds the cells without training,
    otherwise training starts from it.
    """

    pretrained_weights: str | None = None
    cell_crop: int | None = None


def _fields_for(index: pd.DataFrame, wells: pd.DataFrame) -> pd.DataFrame:
    return index.merge(wells, on=KEYS, how="inner").sort_values(FIELD_KEYS).reset_index(drop=True)


def skipped_fields(store: MoaStore, ds: str) -> pd.DataFrame:
    """The fields of ``ds`` that field QC skips (``field_qc`` rows with ``skipped``; none if it has not run)."""
    wh = store.warehouse()
    if not wh.has_table("field_qc"):
        return pd.DataFrame(columns=FIELD_KEYS)
    qc = wh.read_table("field_qc", {"dataset": ds})
    if "skipped" not in qc.columns:  # written before per-channel QC existed: nothing was skipped
        return pd.DataFrame(columns=FIELD_KEYS)
    return qc.loc[qc["skipped"].astype(bool), FIELD_KEYS].drop_duplicates()


def _store_index(store: MoaStore, ds: str) -> tuple[Path, pd.DataFrame]:
    """The image store's path and index, without the fields field QC skips."""
    from moa_core.store import ImageStore

    path = store.image_store_path(ds)
    index = ImageStore(path).index()
    skip = skipped_fields(store, ds)
    if len(skip):
        drop = pd.MultiIndex.from_frame(skip.astype({"Metadata_Site": "int64"}))
        index = index[~pd.MultiIndex.from_frame(index[FIELD_KEYS].astype({"Metadata_Site": "int64"})).isin(drop)]
    return path, index


def _epoch_logger(context: dg.AssetExecutionContext, epochs: int):
    def on_epoch(rec: dict) -> None:
        bal = (
            f" well balanced acc (no DMSO) {rec['val_balanced_accuracy']:.3f}" if "val_balanced_accuracy" in rec else ""
        )
        context.log.info(
            f"epoch {rec['epoch']}/{epochs}: loss {rec['train_loss']:.3f} train acc {rec['train_accuracy']:.3f} "
            f"val acc {rec['val_accuracy']:.3f}{bal} lr {rec['lr']:.4f} ({rec['seconds']:.0f} s)"
        )

    return on_epoch


def _run_training(context: dg.AssetExecutionContext, spec: TrainSpec, nproc: int, epochs: int) -> dict:
    """Launch, log, content-address the checkpoint; returns the metadata of the run."""
    from moa_core.model.launch import launch_training
    from moa_core.model.train import content_addressed

    isolated = in_celery_worker()  # a Celery pool process cannot start DataLoader/DDP processes: torchrun can
    res = launch_training(
        spec,
        Path(spec.checkpoint).with_suffix(".spec.json"),
        nproc=nproc,
        on_epoch=_epoch_logger(context, epochs),
        on_line=lambda line: context.log.debug(line),
        isolated=isolated,
    )
    if res.resumed_from_epoch:
        context.log.info(f"resumed after epoch {res.resumed_from_epoch} from the previous attempt's saved state")
    for w in res.warnings:
        context.log.warning(w)
    final = content_addressed(res.checkpoint_path, res.sha256)
    hist = pd.DataFrame(res.history)
    return {
        "checkpoint": dg.MetadataValue.path(str(final)),
        "sha256": res.sha256,
        "best_epoch": res.best_epoch,
        "epochs": len(res.history),
        "best_val_score": float(res.best_val_accuracy),
        "selected_on": "well balanced accuracy, DMSO excluded"
        if spec.exclude_class is not None
        else "well balanced accuracy",
        "resumed_from_epoch": res.resumed_from_epoch,
        "warnings": "; ".join(res.warnings) or "none",
        "processes": nproc,
        "launched_as": "torchrun subprocess" if isolated or nproc > 1 else "in process",
        "executed_by": dg.MetadataValue.json(executed_by()),
        "classes": len(spec.classes),
        "train_config": dg.MetadataValue.json(spec.config),
        "history": dg.MetadataValue.md(hist.round(4).to_markdown(index=False)),
        "learning_curve": dg.MetadataValue.json(hist.round(4).to_dict("list")),
    }, hist


def _seeded(cfg: TrainConfig, fraction: str) -> TrainConfig:
    """``cfg`` with its seed offset by the fraction key's seed replicate (``"50s2"``: +2; a plain key: +0)."""
    from moa_core.datasets import training_seed

    return dataclasses.replace(cfg, seed=cfg.seed + training_seed(fraction))


def _train(
    context: dg.AssetExecutionContext,
    store: MoaStore,
    ds: str,
    sp: pd.DataFrame,
    overrides: TrainOverrides,
    ckpt_path: Path,
    base: TrainConfig | None = None,
    fraction: str = "100",
) -> tuple[dict, pd.DataFrame]:
    """Train MP on the ``train`` wells of ``sp``, select on ``val``; returns (metadata, history).
    ``fraction``: the partition's key, whose seed replicate (``"50s1"``) offsets the training seed."""
    from moa_core.model.launch import write_fields

    cfg = _seeded(overrides.apply(base or store.dataset(ds).train), fraction)
    t0 = time.time()
    store_path, index = _store_index(store, ds)
    classes = sorted(sp["Metadata_moa"].unique())
    cls_index = {c: i for i, c in enumerate(classes)}
    tr = _fields_for(index, sp[sp[SPLIT_COL].eq("train")][KEYS + ["Metadata_moa"]])
    va = _fields_for(index, sp[sp[SPLIT_COL].eq("val")][KEYS + ["Metadata_moa"]])
    context.log.info(
        f"{len(tr)} training and {len(va)} validation fields from the image store "
        f"({cfg.num_workers} DataLoader workers, {overrides.nproc_per_node} process(es))"
    )
    work = ckpt_path.parent / f".{ckpt_path.stem}"
    spec = TrainSpec(
        store=str(store_path),
        train_fields=write_fields(
            tr[FIELD_KEYS].assign(label=tr["Metadata_moa"].map(cls_index)), work / "train.parquet"
        ),
        val_fields=write_fields(
            va[FIELD_KEYS].assign(
                label=va["Metadata_moa"].map(cls_index), group=va["Metadata_Plate"] + "/" + va["Metadata_Well"]
            ),
            work / "val.parquet",
        ),
        classes=classes,
        config=cfg.to_dict(),
        checkpoint=str(ckpt_path),
        exclude_class=cls_index.get("DMSO"),
    )
    meta, hist = _run_training(context, spec, overrides.nproc_per_node, cfg.epochs)
    meta.update({"train_fields": len(tr), "val_fields": len(va), "seconds": round(time.time() - t0, 1)})
    return meta, hist


def _standardized_wells(sp: pd.DataFrame, well: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    from moa_core.profiles.normalize import feature_columns, standardize_to_controls

    well = sp[[c for c in sp.columns if c.startswith("Metadata_")]].merge(well, on=KEYS, how="inner")
    std, zero_sd = standardize_to_controls(well, feature_columns(well), control_mask=well["Metadata_moa"].eq("DMSO"))
    return std, len(zero_sd)


def _embed(
    context: dg.AssetExecutionContext, store: MoaStore, ds: str, sp: pd.DataFrame, row: pd.Series, field_path: Path
) -> tuple[pd.DataFrame, dict]:
    """Embed every field of ``sp``'s wells from the image store with the checkpoint of warehouse ``row`` (hash
    checked first); write field predictions; return DMSO-standardized wells."""
    from moa_core.model.embed import embed_fields, median_per_well
    from moa_core.model.loader import StoreFields
    from moa_core.model.train import load_checkpoint
    from moa_core.profiles.normalize import feature_columns

    model, ckpt = load_checkpoint(row["checkpoint_path"], expected_sha256=row["sha256"])
    cfg = ckpt["config"]
    store_path, index = _store_index(store, ds)
    fields = _fields_for(index, sp[KEYS])
    context.log.info(f"embedding {len(fields)} fields from the image store")
    t0 = time.time()
    device = TrainConfig(device=cfg.get("device", "auto")).resolved_device()
    feats, probs = embed_fields(
        model.to(device),
        StoreFields(store_path, fields),
        ckpt["channel_mean"],
        ckpt["channel_sd"],
        input_size=cfg["input_size"],
        device=device,
        num_workers=cfg.get("num_workers", 0),
    )
    secs = time.time() - t0
    field_df = fields[FIELD_KEYS].copy()
    field_df["Metadata_pred_moa"] = np.asarray(ckpt["classes"])[probs.argmax(1)]
    prob_df = pd.DataFrame(probs, columns=[f"Prob_{c}" for c in ckpt["classes"]])
    write_parquet_atomic(pd.concat([field_df, prob_df], axis=1), field_path)
    std, zero_sd = _standardized_wells(sp, median_per_well(fields, feats))
    meta = {
        "wells": len(std),
        "fields": len(fields),
        "fields_per_second": round(len(fields) / max(secs, 1e-9), 1),
        "dims": len(feature_columns(std)),
        "dropped_zero_dmso_sd": zero_sd,
        "field_predictions": dg.MetadataValue.path(str(field_path)),
    }
    return std, meta


def _record_checkpoint(store: MoaStore, ds: str, frac: str, model: str, meta: dict) -> None:
    """The checkpoint's row (path + SHA-256) in one transaction, then the superseded files go."""
    from moa_core.model.train import prune_checkpoints

    row = pd.DataFrame(
        [
            {
                "dataset": ds,
                "fraction": frac,
                "model": model,
                "checkpoint_path": meta["checkpoint"].path,
                "sha256": meta["sha256"],
                "best_epoch": meta["best_epoch"],
                "best_val_score": meta["best_val_score"],
                "selected_on": meta["selected_on"],
                "warnings": meta["warnings"],
                "train_fields": meta["train_fields"],
                "val_fields": meta["val_fields"],
                "classes": meta["classes"],
                "seconds": meta["seconds"],
            }
        ]
    )
    store.warehouse().replace_rows("checkpoints", row, {"dataset": ds, "fraction": frac, "model": model})
    prune_checkpoints(meta["checkpoint"].path)


def _record_history(store: MoaStore, ds: str, frac: str, model: str, hist: pd.DataFrame) -> None:
    hist = hist.copy()
    hist.insert(0, "model", model)
    hist.insert(0, "fraction", frac)
    hist.insert(0, "dataset", ds)
    store.warehouse().replace_rows("training_history", hist, {"dataset": ds, "fraction": frac, "model": model})


def _history_columns(store: MoaStore) -> list[str]:
    return store.warehouse().read("SELECT * FROM training_history LIMIT 0").columns.tolist()


def _recorded_checkpoint(store: MoaStore, ds: str, frac: str, model: str) -> pd.Series:
    wh = store.warehouse()
    ck = (
        wh.read_table("checkpoints", {"dataset": ds, "fraction": frac, "model": model})
        if wh.has_table("checkpoints")
        else pd.DataFrame()
    )
    if ck.empty:
        raise dg.Failure(f"no {model} checkpoint recorded for dataset {ds} fraction {frac}: materialize it first")
    return ck.iloc[0]


def _fraction_splits(store: MoaStore, ds: str, frac: str) -> pd.DataFrame:
    return fraction_split(
        store.warehouse().read_table(partition_table("splits", ds)), frac, seed=store.dataset(ds).split_seed
    )


@dg.asset(
    partitions_def=dataset_fraction_partitions,
    group_name=GROUP,
    op_tags=GPU_TAGS,
    deps=[splits, image_store],
    kinds={"pytorch"},
    description=(
        "5-channel EfficientNet-B0 trained to classify each field's MOA, streamed from the image store; the "
        "checkpoint with the best well-level balanced validation accuracy (DMSO excluded); resumes after a crash; "
        "DDP with nproc_per_node > 1; SHA-256 in its warehouse row."
    ),
)
def mp_checkpoint(context: dg.AssetExecutionContext, config: TrainOverrides, store: MoaStore) -> dg.MaterializeResult:
    ds, frac = dataset_fraction_keys(context)
    sp = _fraction_splits(store, ds, frac)
    meta, hist = _train(
        context, store, ds, sp, config, store.artifact_dir(ds, frac) / "mp_efficientnet_b0.pt", fraction=frac
    )
    _record_history(store, ds, frac, "mp", hist)
    _record_checkpoint(store, ds, frac, "mp", meta)
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    partitions_def=dataset_fraction_partitions,
    group_name=GROUP,
    deps=[mp_checkpoint],
    kinds={"pytorch", "duckdb"},
    description="MP embeddings: pooled 1280-d field features (batched, from the image store) -> well median -> "
    "per-plate DMSO standardization; field-level class probabilities kept.",
)
def mp_embeddings(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    ds, frac = dataset_fraction_keys(context)
    t0 = time.time()
    sp = store.warehouse().read_table(partition_table("splits", ds))
    std, meta = _embed(
        context,
        store,
        ds,
        sp,
        _recorded_checkpoint(store, ds, frac, "mp"),
        store.artifact_dir(ds, frac) / "mp_field_predictions.parquet",
    )
    store.warehouse().replace_table(
        partition_table("mp_embeddings", ds, frac), std, partition={"dataset": ds, "fraction": frac}
    )
    return dg.MaterializeResult(metadata={**meta, "seconds": round(time.time() - t0, 1)})


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    op_tags=GPU_TAGS,
    deps=[compound_holdout_splits, image_store],
    kinds={"pytorch"},
    description="A second EfficientNet-B0 trained with one compound per MOA held out (paper Fig. 4).",
)
def mp_holdout_checkpoint(
    context: dg.AssetExecutionContext, config: TrainOverrides, store: MoaStore
) -> dg.MaterializeResult:
    ds = dataset_key(context)
    sp = store.warehouse().read_table(partition_table("compound_holdout_splits", ds))
    entry = store.dataset(ds)
    meta, hist = _train(
        context,
        store,
        ds,
        sp,
        config,
        store.artifact_dir(ds) / "mp_holdout_efficientnet_b0.pt",
        base=entry.holdout_train or entry.train,
    )
    _record_history(store, ds, "100", "mp_holdout", hist)
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
    std, meta = _embed(
        context,
        store,
        ds,
        sp,
        _recorded_checkpoint(store, ds, "100", "mp_holdout"),
        store.artifact_dir(ds) / "mp_holdout_field_predictions.parquet",
    )
    wh.replace_table(partition_table("mp_holdout_embeddings", ds), std, partition={"dataset": ds})
    return dg.MaterializeResult(metadata={**meta, "seconds": round(time.time() - t0, 1)})


# ---- DP recipe (trained here): single-cell crops, weak supervision on compound identity -------------------


def _cells(context: dg.AssetExecutionContext, store: MoaStore, ds: str, wells: pd.DataFrame) -> pd.DataFrame:
    from moa_core.model.dp_recipe import cells_for_wells
    from moa_core.store import ImageStore

    sc_dir = store.artifact_dir(ds) / "single_cells"
    files = sorted(sc_dir.glob("*.parquet"))
    if not files:
        raise dg.Failure(f"no single-cell tables under {sc_dir}: materialize cp_profiles first")
    cols = FIELD_KEYS + ["Metadata_Nuclei_Location_Center_X", "Metadata_Nuclei_Location_Center_Y"]
    import pyarrow.parquet as pq

    for f in files:
        missing = [c for c in cols if c not in pq.read_schema(f).names]
        if missing:
            raise dg.Failure(f"{f} lacks {missing}: re-materialize cp_profiles (it now records nucleus centres)")
    sc = pd.concat([pd.read_parquet(f, columns=cols) for f in files], ignore_index=True)
    cells = cells_for_wells(sc, wells)
    stored = ImageStore(store.image_store_path(ds)).index()[FIELD_KEYS]
    kept = cells.merge(stored, on=FIELD_KEYS, how="inner")
    if len(kept) < len(cells):  # fields skipped at store build time (recorded there)
        context.log.warning(
            f"{len(cells) - len(kept)} cell(s) lie in fields that are not in the image store "
            f"(skipped at build time); left out"
        )
    return kept.sort_values(FIELD_KEYS + ["Metadata_Nuclei_Location_Center_Y"]).reset_index(drop=True)


@dg.asset(
    partitions_def=dataset_fraction_partitions,
    group_name=GROUP,
    op_tags=GPU_TAGS,
    deps=[splits, image_store, cp_profiles],
    kinds={"pytorch"},
    description=(
        "DP recipe (trained here), not DeepProfiler's weights: EfficientNet-B0 trained weakly supervised on compound "
        "identity from single-cell crops centred on the CP segmentation's nuclei; or a user's pretrained weights."
    ),
)
def dp_checkpoint(context: dg.AssetExecutionContext, config: DPRecipeConfig, store: MoaStore) -> dg.MaterializeResult:
    from moa_core.model.dp_recipe import CellCrops, load_pretrained_weights
    from moa_core.model.launch import write_fields
    from moa_core.model.train import content_addressed, file_sha256

    ds, frac = dataset_fraction_keys(context)
    entry = store.dataset(ds)
    cfg = _seeded(config.apply(entry.dp_train), frac)
    crop = config.cell_crop or entry.dp_cell_crop
    t0 = time.time()
    sp = _fraction_splits(store, ds, frac)
    ckpt_path = store.artifact_dir(ds, frac) / "dp_recipe_efficientnet_b0.pt"
    compounds = sorted(sp["Metadata_broad_sample"].astype(str).unique())
    ci = {c: i for i, c in enumerate(compounds)}
    dmso = sp.loc[sp["Metadata_moa"].eq("DMSO"), "Metadata_broad_sample"].astype(str)
    wells = sp[KEYS + ["Metadata_broad_sample", SPLIT_COL]]
    tr = _cells(context, store, ds, wells[wells[SPLIT_COL].eq("train")])
    va = _cells(context, store, ds, wells[wells[SPLIT_COL].eq("val")])
    if cfg.input_size > crop:  # a crop is never upsampled
        cfg = dataclasses.replace(cfg, input_size=crop)
    label = lambda d: d["Metadata_broad_sample"].astype(str).map(ci)  # noqa: E731
    if config.pretrained_weights and cfg.epochs == 0:
        model = load_pretrained_weights(config.pretrained_weights)
        from moa_core.model.train import write_checkpoint

        src = CellCrops(store.image_store_path(ds), tr, crop)
        mean, sd = src.channel_stats()
        write_checkpoint(
            ckpt_path,
            state_dict=model.state_dict(),
            classes=[f"pretrained_{i}" for i in range(model.classifier[-1].out_features)],
            channel_mean=mean,
            channel_sd=sd,
            config=cfg.to_dict(),
            best_epoch=0,
            best_val_accuracy=float("nan"),
            selection="pretrained",
            history=[],
            in_channels=5,
            cell_crop=crop,
        )
        sha = file_sha256(ckpt_path)
        final = content_addressed(ckpt_path, sha)
        meta = {
            "checkpoint": dg.MetadataValue.path(str(final)),
            "sha256": sha,
            "best_epoch": 0,
            "epochs": 0,
            "best_val_score": float("nan"),
            "selected_on": "pretrained weights (not trained here)",
            "warnings": "none",
            "classes": int(model.classifier[-1].out_features),
            "pretrained_weights": config.pretrained_weights,
        }
        if store.warehouse().has_table("training_history"):  # no learning curve: clear a previous run's
            store.warehouse().replace_rows(
                "training_history",
                pd.DataFrame(columns=_history_columns(store)),
                {"dataset": ds, "fraction": frac, "model": "dp_recipe"},
                allow_empty=True,
            )
    else:
        work = ckpt_path.parent / f".{ckpt_path.stem}"
        spec = TrainSpec(
            store=str(store.image_store_path(ds)),
            source="cells",
            cell_crop=crop,
            train_fields=write_fields(tr.assign(label=label(tr)), work / "train.parquet"),
            val_fields=write_fields(
                va.assign(label=label(va), group=va["Metadata_Plate"] + "/" + va["Metadata_Well"]), work / "val.parquet"
            ),
            classes=compounds,
            config=cfg.to_dict(),
            checkpoint=str(ckpt_path),
            exclude_class=ci[dmso.iloc[0]] if len(dmso) else None,
            init_weights=config.pretrained_weights,
        )
        meta, hist = _run_training(context, spec, config.nproc_per_node, cfg.epochs)
        meta["selected_on"] = "well balanced compound accuracy, DMSO excluded"
        _record_history(store, ds, frac, "dp_recipe", hist)
    meta.update(
        {
            "train_fields": len(tr),
            "val_fields": len(va),
            "train_cells": len(tr),
            "val_cells": len(va),
            "cell_crop": crop,
            "seconds": round(time.time() - t0, 1),
        }
    )
    _record_checkpoint(store, ds, frac, "dp_recipe", meta)
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    partitions_def=dataset_fraction_partitions,
    group_name=GROUP,
    deps=[dp_checkpoint],
    kinds={"pytorch", "duckdb"},
    description="DP recipe (trained here) embeddings: per-cell 1280-d features -> well mean -> per-plate DMSO "
    "standardization.",
)
def dp_embeddings(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    from moa_core.model.dp_recipe import embed_cells_by_well
    from moa_core.model.train import load_checkpoint
    from moa_core.profiles.normalize import feature_columns

    ds, frac = dataset_fraction_keys(context)
    t0 = time.time()
    row = _recorded_checkpoint(store, ds, frac, "dp_recipe")
    model, ckpt = load_checkpoint(row["checkpoint_path"], expected_sha256=row["sha256"])
    cfg = ckpt["config"]
    sp = store.warehouse().read_table(partition_table("splits", ds))
    cells = _cells(context, store, ds, sp[KEYS])
    crop = int(ckpt.get("cell_crop") or store.dataset(ds).dp_cell_crop)
    device = TrainConfig(device=cfg.get("device", "auto")).resolved_device()
    wells = embed_cells_by_well(
        model.to(device),
        store.image_store_path(ds),
        cells,
        crop,
        ckpt["channel_mean"],
        ckpt["channel_sd"],
        input_size=cfg["input_size"],
        device=device,
        num_workers=cfg.get("num_workers", 0),
    )
    std, zero_sd = _standardized_wells(sp, wells)
    store.warehouse().replace_table(
        partition_table("dp_embeddings", ds, frac), std, partition={"dataset": ds, "fraction": frac}
    )
    return dg.MaterializeResult(
        metadata={
            "wells": len(std),
            "cells": len(cells),
            "dims": len(feature_columns(std)),
            "dropped_zero_dmso_sd": zero_sd,
            "seconds": round(time.time() - t0, 1),
        }
    )
