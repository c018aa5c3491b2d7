"""The code location: assets by domain, their checks, jobs, automation and resources."""

import dagster as dg

from orchestration.defs import (
    automation,
    baselines,
    evaluation,
    executors,
    image_store,
    ingest,
    jobs,
    paper_weights,
    phenoca,
    publish,
    published,
    retrieval,
    training,
)
from orchestration.resources import MoaStore, gallery_s3

MODULES = [ingest, baselines, image_store, published, training, paper_weights, evaluation, phenoca, retrieval, publish]


def build_definitions(
    store: MoaStore | None = None, s3_endpoint_url: str | None = None, executor: str | None = None
) -> dg.Definitions:
    """All definitions, with ``store`` (default: ``$MOA_DATA_DIR`` or ``.moa_data``), the gallery's S3
    (``s3_endpoint_url``, default ``$MOA_S3_ENDPOINT_URL`` or AWS) and the jobs' executor (``executor``,
    default ``$MOA_EXECUTOR``: multiprocess, in_process or celery; :mod:`orchestration.defs.executors`)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(MODULES),
        asset_checks=dg.load_asset_checks_from_modules(MODULES),
        jobs=[
            jobs.ingest_job,
            jobs.published_job,
            jobs.train_eval_job,
            jobs.dp_recipe_job,
            jobs.holdout_job,
            jobs.paper_weights_job,
            jobs.phenoca_inputs_job,
            jobs.phenoca_job,
            jobs.scaling_job,
            jobs.retrieval_job,
            jobs.publish_job,
        ],
        sensors=[automation.catalogue_sensor, automation.jump_release_sensor],
        schedules=[automation.jump_rerun_schedule],
        resources={"store": store or MoaStore(), "s3": gallery_s3(s3_endpoint_url)},
        executor=executors.from_env(executor),
    )


defs = build_definitions()
