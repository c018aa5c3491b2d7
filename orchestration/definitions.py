"""The code location: assets by domain, their checks, jobs and resources."""

import dagster as dg

from orchestration.defs import evaluation, ingest, jobs, training
from orchestration.resources import MoaStore

_MODULES = [ingest, training, evaluation]


def build_definitions(store: MoaStore | None = None) -> dg.Definitions:
    """All definitions, with ``store`` (default: ``$MOA_DATA_DIR`` or ``.moa_data``)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(_MODULES),
        jobs=[jobs.ingest_job, jobs.train_eval_job, jobs.holdout_job, jobs.publish_job],
        resources={"store": store or MoaStore()},
    )


defs = build_definitions()
