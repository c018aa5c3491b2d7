"""Publish domain: the read-only snapshot the dashboard reads."""

import time

import dagster as dg

from orchestration.resources import MoaStore

GROUP = "publish"


@dg.asset(
    group_name=GROUP,
    deps=["evaluation_results", "holdout_results", "scaling_laws", "retrieval_index"],
    kinds={"duckdb"},
    description="Read-only copy of the warehouse for the dashboard (written to a temporary name, then renamed).",
)
def dashboard_snapshot(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    t0 = time.time()
    path = store.warehouse().publish_snapshot(store.snapshot_path)
    return dg.MaterializeResult(
        metadata={"snapshot": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size,
                  "seconds": round(time.time() - t0, 1)}
    )
