"""Jobs: one per partitioning scheme, so each run materializes one partition."""

from __future__ import annotations

import dagster as dg

from orchestration.partitions import dataset_fraction_partitions, dataset_partitions

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest"),
    partitions_def=dataset_partitions,
    description="Raw images -> CP profiles -> CP embeddings, and the train/val/test splits, for one dataset.",
)
train_eval_job = dg.define_asset_job(
    "train_eval_job",
    selection=dg.AssetSelection.assets("mp_checkpoint", "mp_embeddings", "evaluation_results"),
    partitions_def=dataset_fraction_partitions,
    description="Train MOAProfiler, embed, and evaluate MP vs CP, for one (dataset, fraction).",
)
publish_job = dg.define_asset_job(
    "publish_job",
    selection=dg.AssetSelection.assets("dashboard_snapshot"),
    description="Publish the read-only warehouse snapshot the dashboard reads.",
)
