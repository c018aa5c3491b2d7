"""Jobs: one per partitioning scheme, so each run materializes one partition."""

from __future__ import annotations

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest"),
    description="Raw images -> CP profiles (per plate) -> CP embeddings and the CP baselines (JUMP recipe, "
    "spherized, cell count) with their ablation, the train/val/test splits and the preprocessed image store, for "
    "one dataset.",
)
published_job = dg.define_asset_job(
    "published_job",
    selection=dg.AssetSelection.groups("published")
    | dg.AssetSelection.assets("splits", "compound_holdout_splits", "cp_baselines", "cp_ablation"),
    description="Published CellProfiler profiles -> DuckDB, splits and their evaluation, the CP baselines and their "
    "ablation, for one profile dataset.",
)
train_eval_job = dg.define_asset_job(
    "train_eval_job",
    selection=dg.AssetSelection.assets("mp_checkpoint", "mp_embeddings", "evaluation_results", "retrieval_index"),
    description="Train MOAProfiler, embed, evaluate MP vs CP (and CP published, DP recipe) and build the retrieval "
    "indexes, for one (dataset, fraction).",
)
dp_recipe_job = dg.define_asset_job(
    "dp_recipe_job",
    selection=dg.AssetSelection.assets("dp_checkpoint", "dp_embeddings"),
    description="DP recipe (trained here): single-cell crops -> EfficientNet-B0 on compound identity -> well "
    "embeddings, for one (dataset, fraction); evaluation_results scores it beside MP and CP.",
)
holdout_job = dg.define_asset_job(
    "holdout_job",
    selection=dg.AssetSelection.assets("mp_holdout_checkpoint", "mp_holdout_embeddings", "holdout_results"),
    description="Compound holdout: train a model without one compound per MOA and predict the held-out MOAs.",
)
paper_weights_job = dg.define_asset_job(
    "paper_weights_job",
    selection=dg.AssetSelection.groups("paper_weights"),
    description="MP (paper weights): embed one dataset's image store with MOAProfiler's published checkpoint "
    "(the entry's paper_weights); evaluation_results and retrieval_index then score and index it.",
)
phenoca_inputs_job = dg.define_asset_job(
    "phenoca_inputs_job",
    selection=dg.AssetSelection.assets("phenoca_profiles"),
    description="The dataset's well profiles in the Pheno-CA schema (synthetic_jump_profiles, published, CP/MP).",
)
phenoca_job = dg.define_asset_job(
    "phenoca_job",
    selection=dg.AssetSelection.assets("phenoca_results"),
    description="The Pheno-CA model zoo at one data scale (dataset x fraction); backfill over fractions builds the "
    "scaling study.",
)
scaling_job = dg.define_asset_job(
    "scaling_job",
    selection=dg.AssetSelection.assets("scaling_laws"),
    description="Scaling laws fitted to every Pheno-CA curve and MOAProfiler's replicate-fraction curve of a dataset.",
)
retrieval_job = dg.define_asset_job(
    "retrieval_job",
    selection=dg.AssetSelection.assets("retrieval_index"),
    description="(Re)build the MOA-retrieval indexes of one (dataset, fraction) from the embeddings it has (e.g. "
    "after phenoca_results added IBP embeddings, or published_job CP published ones).",
)
publish_job = dg.define_asset_job(
    "publish_job",
    selection=dg.AssetSelection.assets("dashboard_snapshot"),
    description="Publish the read-only warehouse snapshot the dashboard reads.",
)
