"""Materializing jobs of the real definitions on an ephemeral Dagster instance (the pipeline fixtures)."""

from __future__ import annotations

from pathlib import Path


def materialize_jobs(
    root: Path, shared_dir: Path, dataset: str, runs: list[tuple[str, str | None]], *, by_run: bool = False, **execute
):
    """``(store, instance, results)``: a store under ``root``, the definitions built on it, ``dataset`` synced
    as a partition, and each ``(job, partition key)`` of ``runs`` executed in process in order; ``results``
    maps ``job`` (``job:key`` with ``by_run``, for a job run on several partitions) to its result.
    ``execute`` goes to ``execute_in_process``."""
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.partitions import sync_dataset_partitions
    from orchestration.resources import MoaStore

    store = MoaStore(root=str(root), shared_dir=str(shared_dir), n_workers=1)
    defs = build_definitions(store)
    instance = dg.DagsterInstance.ephemeral()
    sync_dataset_partitions(instance, [dataset])
    results = {}
    for job, key in runs:
        res = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key, **execute)
        results[f"{job}:{key}" if by_run else job] = res
    return store, instance, results
