"""Automation: the catalogue -> dataset partitions, new JUMP releases -> runs, and periodic reruns.

- ``catalogue_sensor`` (on by default): adds every catalogue entry (shipped, user TOML,
  registered) as a ``dataset`` partition; requests no runs.
- ``jump_release_sensor`` (off by default): polls the release manifest's ETag and entries
  and the gallery's ``cpg0016-jump/<source>/workspace/profiles/<batch>/`` prefixes;
  registers each new or changed release as a catalogue entry and a dataset partition and
  requests ``published_job`` for it, with run_key ``<dataset>:<version>`` so nothing is
  requested twice. Its cursor is JSON ``{"manifest_etag": ..., "seen": {dataset: version}}``.
- ``jump_rerun_schedule`` (off by default): weekly rerun of ``published_job`` for every
  gallery profile dataset.

Turn the last two on in the Dagster UI (Automation tab), or from the command line:
``uv run dagster sensor start jump_release_sensor -w workspace.yaml`` and
``uv run dagster schedule start jump_rerun_schedule -w workspace.yaml`` (the daemon runs
them under ``dagster dev``). ``$MOA_JUMP_MANIFEST`` overrides the manifest location.
"""

from __future__ import annotations

import json
import os

import dagster as dg
from dagster_aws.s3 import S3Resource

from moa_core.data.sources.releases import (
    DEFAULT_MANIFEST,
    batch_candidates,
    manifest_candidates,
    new_candidates,
    read_manifest,
)
from moa_core.datasets import load_catalogue, register_entry
from orchestration.defs.jobs import published_job
from orchestration.partitions import DATASET_PARTITIONS_NAME
from orchestration.resources import MoaStore


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds every catalogue entry as a dataset partition (no runs).",
)
def catalogue_sensor(context: dg.SensorEvaluationContext, store: MoaStore) -> dg.SensorResult | dg.SkipReason:
    names = sorted(load_catalogue(store.root_path))
    have = set(context.instance.get_dynamic_partitions(DATASET_PARTITIONS_NAME))
    new = [n for n in names if n not in have]
    if not new:
        return dg.SkipReason(f"all {len(names)} catalogue datasets are partitions")
    return dg.SensorResult(dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(DATASET_PARTITIONS_NAME, new)])


@dg.sensor(
    job=published_job,
    minimum_interval_seconds=6 * 3600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New JUMP releases (manifest ETags, new source/batch prefixes) -> dataset partitions + runs.",
)
def jump_release_sensor(context: dg.SensorEvaluationContext, store: MoaStore, s3: S3Resource):
    from moa_core.data.sources.s3 import S3Transfer

    cursor = json.loads(context.cursor) if context.cursor else {}
    seen: dict[str, str] = dict(cursor.get("seen", {}))
    transfer = S3Transfer(s3.get_client())
    manifest_uri = os.environ.get("MOA_JUMP_MANIFEST", DEFAULT_MANIFEST)
    etag, entries = read_manifest(transfer, manifest_uri)
    candidates = manifest_candidates(entries) + batch_candidates(transfer)
    new = new_candidates(candidates, seen)
    have = set(context.instance.get_dynamic_partitions(DATASET_PARTITIONS_NAME))
    for c in new:
        register_entry(store.root_path, c.name, c.entry)
        seen[c.name] = c.version
    add = sorted({c.name for c in new} - have)
    context.log.info(f"manifest {manifest_uri} ETag {etag}: {len(candidates)} releases, {len(new)} new or changed")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                partition_key=c.name,
                run_key=f"{c.name}:{c.version}",
                tags={"moa/release": c.name, "moa/version": c.version[:60]},
            )
            for c in new
        ],
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(DATASET_PARTITIONS_NAME, add)] if add else [],
        cursor=json.dumps({"manifest_etag": etag, "seen": seen}, sort_keys=True),
    )


@dg.schedule(
    job=published_job,
    cron_schedule="0 4 * * 1",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly rerun of published_job for every gallery profile dataset (cached downloads: an "
    "unchanged release downloads nothing).",
)
def jump_rerun_schedule(context: dg.ScheduleEvaluationContext, store: MoaStore):
    entries = load_catalogue(store.root_path)
    when = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(partition_key=n, run_key=f"{n}:{when}")
        for n, e in sorted(entries.items())
        if e.kind == "profiles" and e.source == "gallery"
    ]
