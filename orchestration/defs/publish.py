"""Publish domain: the read-only snapshot the dashboard reads, with what Dagster knows about the assets.

Before copying the warehouse, ``dashboard_snapshot`` records, from the Dagster instance:

- ``asset_status``: one row per asset of the code location (group, partitioning, how many
  partitions are materialized, the latest materialization: partition, time, run id);
- ``partition_status``: per partitioned asset and *dataset in use* (one with at least one
  materialized partition of that asset), every partition key of the same kind
  (replicate fractions, or Pheno-CA OOD shares) and whether it is materialized, so the
  Overview page can list what is missing and how to backfill it;
- ``datasets``: the catalogue entries behind those datasets (kind, source, release).
"""

import time

import dagster as dg
import pandas as pd

from moa_core.provenance import code_version
from orchestration.resources import MoaStore

GROUP = "publish"


def _kind(fraction: str) -> str:
    """The kind of scale a fraction key is: OOD share, replicate share, or a seed replicate of one (which a
    dataset's coverage lists only once any seed replicate was run)."""
    from moa_core.datasets import SEED_KEYS

    return "ood" if fraction.startswith("ood") else "seed" if fraction in SEED_KEYS else "replicate"


def _asset_defs() -> dict[dg.AssetKey, dg.AssetsDefinition]:
    """Every asset of the code location (the same modules ``orchestration.definitions`` loads)."""
    from orchestration.definitions import MODULES  # at run time: definitions imports this module

    out = {}
    for adef in dg.load_assets_from_modules(MODULES):
        if isinstance(adef, dg.AssetsDefinition):
            for key in adef.keys:
                out[key] = adef
    return out


def _status(context: dg.AssetExecutionContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    instance = context.instance
    assets, parts = [], []
    for key, adef in sorted(_asset_defs().items(), key=lambda kv: kv[0].to_user_string()):
        name = key.to_user_string()
        if name == "dashboard_snapshot":
            continue
        ev = instance.get_latest_materialization_event(key)
        mat = ev.asset_materialization if ev is not None else None
        pdef = adef.partitions_def
        done = set(instance.get_materialized_partitions(key)) if pdef is not None else set()
        assets.append(
            {
                "asset": name,
                "group": adef.group_names_by_key.get(key, ""),
                "partitioned_by": (
                    "dataset x fraction"
                    if isinstance(pdef, dg.MultiPartitionsDefinition)
                    else "dataset"
                    if pdef is not None
                    else "-"
                ),
                "materialized_partitions": len(done) if pdef is not None else int(ev is not None),
                "latest_partition": (mat.partition if mat is not None else None),
                "latest_at": (pd.Timestamp(ev.timestamp, unit="s") if ev is not None else pd.NaT),
                "latest_run_id": (ev.run_id if ev is not None else None),
            }
        )
        if pdef is None:
            continue
        if isinstance(pdef, dg.MultiPartitionsDefinition):
            by_ds: dict[str, set[str]] = {}
            for k in done:
                ds, frac = str(k).split("|", 1)
                by_ds.setdefault(ds, set()).add(frac)
            fractions = list(pdef.get_partitions_def_for_dimension("fraction").get_partition_keys())
            for ds, have in sorted(by_ds.items()):
                kinds = {_kind(f) for f in have}
                for frac in fractions:
                    if _kind(frac) in kinds:
                        parts.append(
                            {
                                "asset": name,
                                "dataset": ds,
                                "fraction": frac,
                                "partition_key": f"{ds}|{frac}",
                                "materialized": frac in have,
                            }
                        )
        else:
            for ds in sorted(str(k) for k in done):
                parts.append({"asset": name, "dataset": ds, "fraction": "", "partition_key": ds, "materialized": True})
    return pd.DataFrame(assets), pd.DataFrame(
        parts, columns=["asset", "dataset", "fraction", "partition_key", "materialized"]
    )


def _datasets(store: MoaStore, names: list[str]) -> pd.DataFrame:
    rows = []
    for n in names:
        try:
            e = store.dataset(n)
        except Exception as exc:  # noqa: BLE001 - a dataset removed from the catalogue since: say so
            rows.append({"dataset": n, "kind": None, "description": f"not in the catalogue any more ({exc})"})
            continue
        rows.append(
            {
                "dataset": n,
                "kind": e.kind,
                "description": e.description,
                "source": e.source,
                "project": e.project,
                "batch": e.batch,
                "release": e.release,
                "origin": e.origin,
                "has_images": e.has_images,
            }
        )
    return pd.DataFrame(rows)


@dg.asset(
    group_name=GROUP,
    deps=["evaluation_results", "holdout_results", "scaling_laws", "retrieval_index"],
    kinds={"duckdb"},
    description="Read-only copy of the warehouse for the dashboard (written to a temporary name, then renamed), "
    "with the instance's materialization status of every asset and the datasets in use.",
)
def dashboard_snapshot(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    t0 = time.time()
    wh = store.warehouse()
    assets, parts = _status(context)
    in_use = sorted(set(parts["dataset"])) if not parts.empty else []
    wh.replace_table("asset_status", assets)
    if not parts.empty:
        wh.replace_table("partition_status", parts)
    if in_use:
        wh.replace_table("datasets", _datasets(store, in_use))
    wh.replace_table(
        "publication",
        pd.DataFrame(
            [
                {
                    "published_at": pd.Timestamp.now(),
                    "code_version": code_version(),
                    "run_id": context.run.run_id,
                    "data_dir": str(store.root_path),
                }
            ]
        ),
    )
    path = wh.publish_snapshot(store.snapshot_path)
    missing = int((~parts["materialized"]).sum()) if not parts.empty else 0
    return dg.MaterializeResult(
        metadata={
            "snapshot": dg.MetadataValue.path(str(path)),
            "bytes": path.stat().st_size,
            "datasets": len(in_use),
            "missing_partitions": missing,
            "code_version": code_version(),
            "seconds": round(time.time() - t0, 1),
        }
    )
