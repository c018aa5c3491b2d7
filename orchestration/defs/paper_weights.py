"""Paper-weights domain: MOAProfiler's published checkpoint ("MP (paper weights)") embeds a dataset's fields.

The asset reads the dataset entry's ``paper_weights`` (a known checkpoint of the catalogue and the user's
file), verifies the file's SHA-256, loads it into the upstream-faithful network
(:mod:`moa_core.model.upstream`), feeds every field of the image store as upstream fed them
(:func:`moa_core.model.pretrained.embed_upstream`) and writes well embeddings standardized per plate to
DMSO, as MP's. No training: one partition per dataset, not per fraction.
"""

import dataclasses
import time

import dagster as dg
import numpy as np

from moa_core.data.channels import CHANNELS
from moa_core.methods import METHODS
from moa_core.model.pretrained import METHOD
from moa_core.storage import partition_table, write_parquet_atomic
from orchestration.defs.executors import GPU_TAGS, executed_by
from orchestration.defs.image_store import image_store
from orchestration.defs.training import FIELD_KEYS, KEYS, _fields_for, _standardized_wells, _store_index
from orchestration.partitions import dataset_key, dataset_partitions
from orchestration.resources import MoaStore

GROUP = "paper_weights"
#: The published checkpoints were trained and evaluated on full fields of this side.
NATIVE_SIDE = 1080


class PaperWeightsRun(dg.Config):
    """Launchpad overrides of the entry's ``paper_weights`` (unset: the entry's value)."""

    checkpoint: str | None = None  # a known published checkpoint (python -m moa_core.model.pretrained list)
    path: str | None = None  # the downloaded file
    download: bool | None = None  # fetch the catalogue's URL into `path` when the file is missing
    device: str | None = None  # auto, cpu, cuda
    dtype: str | None = None  # float32 or bfloat16
    batch_size: int | None = None


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    op_tags=GPU_TAGS,
    deps=[image_store],
    kinds={"pytorch", "duckdb"},
    description=(
        "MP (paper weights): the published MOAProfiler checkpoint (SHA-256 verified, loaded without unpickling) "
        "embeds every field of the image store with upstream's input (per-field channel scaling, the checkpoint's "
        "channel order and dataset statistics, full fields) -> well median -> per-plate DMSO standardization."
    ),
)
def mp_paper_embeddings(
    context: dg.AssetExecutionContext, config: PaperWeightsRun, store: MoaStore
) -> dg.MaterializeResult:
    from moa_core.model.config import PaperWeightsConfig, TrainConfig
    from moa_core.model.embed import median_per_well
    from moa_core.model.loader import StoreFields
    from moa_core.model.pretrained import (
        embed_upstream,
        load_paper_model,
        obtain_weights,
        resolve_weights,
        source_channel_stats,
    )
    from moa_core.profiles.normalize import feature_columns

    ds = dataset_key(context)
    entry = store.dataset(ds)
    over = {k: v for k, v in config.model_dump().items() if v is not None}
    if entry.paper_weights is None and "checkpoint" not in over:
        raise dg.Failure(
            f"dataset {ds} has no `paper_weights` in its catalogue entry: add e.g. "
            f'paper_weights = {{ checkpoint = "jump1_moa", path = "/data/jump1_moa.dat" }} '
            f"(python -m moa_core.model.pretrained list shows the published checkpoints), or give `checkpoint` and "
            f"`path` in the run config. {METHODS[METHOD].how_to_get}"
        )
    pw = dataclasses.replace(entry.paper_weights or PaperWeightsConfig(), **over)
    t0 = time.time()
    weights = resolve_weights(pw, default_dir=store.root_path / "paper_weights")
    path = obtain_weights(weights, download=pw.download)
    model = load_paper_model(path, weights.sha256, weights.size)
    wh = store.warehouse()
    wells = wh.read_table(partition_table("wells", ds))
    store_path, index = _store_index(store, ds)
    fields = _fields_for(index, wells[KEYS])
    if fields.empty:
        raise dg.Failure(f"dataset {ds}: no annotated field in the image store {store_path}")
    source = StoreFields(store_path, fields)
    if source.resolution < NATIVE_SIDE:
        context.log.warning(
            f"dataset {ds}: the image store holds {source.resolution}-px fields; the published checkpoints saw "
            f"full {NATIVE_SIDE}-px fields (rebuild image_store with resolution {NATIVE_SIDE} for upstream's input)"
        )
    order = weights.channel_order
    if pw.channel_mean:
        mean, std, stats_from = np.asarray(pw.channel_mean), np.asarray(pw.channel_std), "catalogue entry"
    else:
        mean, std, n_stat = source_channel_stats(source, order, max_fields=pw.max_stat_fields, seed=entry.split_seed)
        stats_from = f"{n_stat} fields of {ds} (upstream's getChannelStats definition)"
    device = TrainConfig(device=pw.device).resolved_device()
    context.log.info(
        f"{weights.name} ({weights.study}, channels {', '.join(order)}) on {device}, {pw.dtype}: "
        f"{len(fields)} fields of {source.resolution} px"
    )
    t1 = time.time()

    def progress(done: int, total: int) -> None:
        if done == total or done % (50 * pw.batch_size) < pw.batch_size:
            context.log.info(f"embedded {done}/{total} fields ({time.time() - t1:.0f} s)")

    feats, probs = embed_upstream(
        model, source, order, mean, std, batch_size=pw.batch_size, device=device, dtype=pw.dtype, progress=progress
    )
    secs = time.time() - t1
    pred = fields[FIELD_KEYS].copy()
    pred["Metadata_pred_class"] = probs.argmax(1)
    pred["Metadata_pred_probability"] = probs.max(1)
    write_parquet_atomic(pred, store.artifact_dir(ds) / "mp_paper_field_predictions.parquet")
    std_wells, zero_sd = _standardized_wells(wells, median_per_well(fields, feats))
    wh.replace_table(partition_table(METHODS[METHOD].table, ds), std_wells, partition={"dataset": ds})
    return dg.MaterializeResult(
        metadata={
            "checkpoint": weights.name,
            "checkpoint_path": dg.MetadataValue.path(str(path)),
            "sha256": weights.sha256,
            "study": weights.study,
            "checkpoint_channel_order": ", ".join(order),
            "project_channel_order": ", ".join(CHANNELS),
            "channel_mean": dg.MetadataValue.json([round(float(v), 6) for v in mean]),
            "channel_std": dg.MetadataValue.json([round(float(v), 6) for v in std]),
            "channel_stats_from": stats_from,
            "resolution": int(source.resolution),
            "device": str(device),
            "dtype": pw.dtype,
            "fields": len(fields),
            "wells": len(std_wells),
            "dims": len(feature_columns(std_wells)),
            "dropped_zero_dmso_sd": zero_sd,
            "fields_per_second": round(len(fields) / max(secs, 1e-9), 2),
            "executed_by": dg.MetadataValue.json(executed_by()),
            "seconds": round(time.time() - t0, 1),
        }
    )
