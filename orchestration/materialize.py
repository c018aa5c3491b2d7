"""Materialize one job for one partition from the command line, on the persistent Dagster instance.

    uv run python -m orchestration.materialize DATASET JOB [--fraction 100]
    uv run python -m orchestration.materialize --scan-releases

Registers the catalogue's datasets as ``dataset`` partitions first (what the always-on
``catalogue_sensor`` does under ``dagster dev``), then executes the job in this process
against ``$DAGSTER_HOME`` (default ``<data dir>/dagster_home``), so its runs and
metadata appear in the Dagster UI. ``--scan-releases`` evaluates ``jump_release_sensor``
once (new JUMP releases -> catalogue entries + partitions) and prints what it found.
With ``$MOA_EXECUTOR=celery`` (``source <run dir>/cluster.env`` of ``python -m orchestration.cluster up``)
the run's steps execute on the Celery workers instead of this process.
Jobs: ingest_job, published_job, phenoca_inputs_job, scaling_job (dataset); train_eval_job, dp_recipe_job,
phenoca_job (dataset x fraction);
holdout_job (dataset); publish_job (unpartitioned, DATASET ignored).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DATASET_JOBS = {"ingest_job", "published_job", "holdout_job", "phenoca_inputs_job", "scaling_job"}
FRACTION_JOBS = {"train_eval_job", "dp_recipe_job", "phenoca_job", "retrieval_job"}


def prepare_instance(data_dir: Path):
    """The persistent instance under ``$DAGSTER_HOME``, with every catalogue dataset as a partition."""
    import dagster as dg

    from moa_core.datasets import load_catalogue
    from orchestration.partitions import sync_dataset_partitions
    from orchestration.paths import dagster_home

    dagster_home(data_dir)
    instance = dg.DagsterInstance.get()
    sync_dataset_partitions(instance, load_catalogue(data_dir))
    return instance


def run_job(
    defs,
    instance,
    job: str,
    dataset: str | None,
    fraction: str = "100",
    run_config: dict | None = None,
    asset_selection: list | None = None,
):
    """Execute ``job`` (or the ``asset_selection`` of its assets) for its partition of ``dataset`` (and
    ``fraction``), with ``run_config``; returns the result."""
    from orchestration.partitions import multi_key

    key = None if job == "publish_job" else (multi_key(dataset, fraction) if job in FRACTION_JOBS else dataset)
    if os.environ.get("MOA_EXECUTOR", "").strip() == "celery":
        return run_on_workers(defs, instance, job, key, run_config, asset_selection)
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        partition_key=key,
        raise_on_error=False,
        run_config=run_config,
        asset_selection=asset_selection,
    )


def run_on_workers(
    defs, instance, job: str, partition_key: str | None, run_config: dict | None = None, asset_selection=None
):
    """Execute ``job`` for ``partition_key`` with the job's own executor (``$MOA_EXECUTOR=celery``: every step a
    Celery task on the workers), the run's events in ``instance`` (which the workers must share: Postgres).
    The job is reconstructed from ``orchestration.definitions`` in the workers, as the webserver's runs are."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository  # what dagster-celery ships

    from orchestration.paths import REPO_ROOT

    if instance.is_ephemeral:
        raise RuntimeError("the Celery executor needs a persistent instance shared with its workers ($DAGSTER_HOME)")
    job_def = defs.resolve_job_def(job)
    tags = dict(job_def.get_tags_for_partition_key(partition_key, None)) if partition_key else {}
    recon = ReconstructableRepository.for_module(
        "orchestration.definitions", "defs", working_directory=str(REPO_ROOT)
    ).get_reconstructable_job(job)
    with dg.execute_job(
        recon,
        instance=instance,
        run_config=run_config,
        tags=tags,
        raise_on_error=False,
        asset_selection=asset_selection,
    ) as res:
        return res


def scan_releases(defs, instance) -> list[str]:
    """Evaluate ``jump_release_sensor`` once and apply what it registers; returns the new dataset names."""
    import dagster as dg

    from orchestration.defs.automation import jump_release_sensor

    ctx = dg.build_sensor_context(instance=instance, resources=defs.resources)
    res = jump_release_sensor(ctx)
    for req in res.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return [r.partition_key for r in res.run_requests]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?")
    ap.add_argument("job", nargs="?", default="ingest_job")
    ap.add_argument("--fraction", default="100")
    ap.add_argument("--scan-releases", action="store_true")
    ap.add_argument("--data-dir", default=None, help="default: $MOA_DATA_DIR or .moa_data")
    args = ap.parse_args(argv)
    if args.data_dir:
        os.environ["MOA_DATA_DIR"] = str(Path(args.data_dir).resolve())
    from orchestration.definitions import defs
    from orchestration.resources import default_data_dir

    instance = prepare_instance(Path(default_data_dir()).resolve())
    if args.scan_releases:
        for name in scan_releases(defs, instance):
            print(f"registered {name}: uv run python -m orchestration.materialize {name} published_job")
        return 0
    if not args.dataset:
        ap.error("give DATASET and JOB, or --scan-releases")
    result = run_job(defs, instance, args.job, args.dataset, args.fraction)
    for ev in result.get_asset_materialization_events():
        m = ev.event_specific_data.materialization
        print(f"materialized {m.asset_key.to_user_string()} [{ev.partition or '-'}]")
    if not result.success:
        for ev in result.all_events:
            if ev.is_step_failure:
                print(f"FAILED {ev.step_key}: {ev.event_specific_data.error.message.strip()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
