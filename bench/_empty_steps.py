"""The no-op jobs of ``bench_cluster.py``'s overhead measure: ``$EMPTY_STEPS`` independent steps that do
nothing, on the project's Celery executor and on the in-process one (loaded by file path in the workers)."""

from __future__ import annotations

import os

import dagster as dg

from orchestration.defs.executors import moa_celery_executor

N = int(os.environ.get("EMPTY_STEPS", "40"))


@dg.op(out=dg.Out(dg.Nothing))
def nothing() -> None:
    return None


@dg.graph
def empty_steps():
    for i in range(N):
        nothing.alias(f"step_{i}")()


empty_celery_job = empty_steps.to_job(name="empty_celery_job", executor_def=moa_celery_executor)
empty_in_process_job = empty_steps.to_job(name="empty_in_process_job", executor_def=dg.in_process_executor)
