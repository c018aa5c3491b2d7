"""CP baselines domain: the field's trusted CellProfiler baselines as methods, and their ablation.

``cp_baselines`` computes "CP (JUMP recipe)", "CP spherized" and "cell count"
(:mod:`moa_core.profiles.baselines`) from the dataset's CP well profiles: the project's own (``cp_profiles``)
for an image dataset, the published ones (``published_profiles``) for a profile-only dataset.
``cp_ablation`` scores every step of the two CP recipes, beside "CP" (DMSO standardization only), with the
paper's analyses and mAP on the same test wells (:func:`moa_core.evaluation.ablation.ablation_table`).
Both belong to ``ingest_job`` and ``published_job``; ``evaluation_results`` and ``retrieval_index`` then
score and index the three methods like every other.
"""

import time

import dagster as dg
import numpy as np
import pandas as pd

from moa_core.methods import METHODS
from moa_core.storage import partition_table
from orchestration.partitions import dataset_key, dataset_partitions
from orchestration.resources import MoaStore

GROUP = "ingest"
JUMP, SPHERIZED, COUNT = "CP (JUMP recipe)", "CP spherized", "cell count"
#: Ablation suite settings: point estimates only (no bootstrap, no per-k curves, no logistic regression: see
#: moa_core.evaluation.ablation), so the ablation of ten tables costs a few evaluations of one method.
ABLATION_SUITE = {"n_boot": 0, "include_knn_curves": False, "store_knn_predictions": False, "run_logistic": False}


def cp_well_profiles(store: MoaStore, ds: str) -> tuple[pd.DataFrame, list[str], np.ndarray, str]:
    """The dataset's annotated CP well profiles (cleaned), their features, the negative-control mask and where
    they came from (``cp_profiles`` or ``published_profiles``)."""
    from moa_core.data.controls import negative_control_mask
    from moa_core.data.design import NEGCON
    from moa_core.profiles.normalize import clean_features, feature_columns

    wh = store.warehouse()
    entry = store.dataset(ds)
    for base in ("cp_profiles", "published_profiles"):
        table = partition_table(base, ds)
        if wh.has_table(table):
            break
    else:
        raise dg.Failure(
            f"dataset {ds}: no CP well profiles; materialize cp_profiles (ingest_job) or published_profiles "
            f"(published_job) first"
        )
    prof = wh.read_table(table)
    prof = prof[prof["Metadata_moa"].notna()].reset_index(drop=True)
    feats = [f for f in feature_columns(prof) if f != "Metadata_Count_Cells"]
    clean, kept, _ = clean_features(prof, feats)
    ctrl = clean["Metadata_moa"].eq(NEGCON).fillna(False).to_numpy(bool) | negative_control_mask(clean, entry.controls)
    return clean.reset_index(drop=True), kept, ctrl, base


def out_of_core_reason(store: MoaStore, ds: str) -> str | None:
    """Why the dataset's CP baselines are not computed, for an out-of-core (JUMP-scale) release: its raw features
    stay in DuckDB, plate by plate (``moa_core.profiles.release``), while the recipes fit their transforms on the
    whole table in memory (``moa_core.profiles.baselines``); None for every other dataset."""
    if not store.dataset(ds).out_of_core:
        return None
    return (
        "an out-of-core release keeps its raw features in DuckDB plate by plate; the CP baseline recipes fit on the "
        "whole table in memory, so they are computed for in-memory datasets only (its 'CP published' method is the "
        "release's plate-by-plate normalization)"
    )


def _recipes(store: MoaStore, ds: str, seed: int, log=None):
    """The recipes that can be computed on the dataset (name -> Recipe), the reasons of those that cannot
    (name -> message: e.g. a count constant over the controls, no count column), the profiles and their
    source table."""
    from moa_core.errors import MoaInputError
    from moa_core.profiles.baselines import cell_count_profile, count_column, jump_recipe, spherize_recipe

    df, feats, ctrl, base = cp_well_profiles(store, ds)
    builders = {
        JUMP: lambda: jump_recipe(df, feats, ctrl, seed=seed),
        SPHERIZED: lambda: spherize_recipe(df, feats, ctrl),
        COUNT: lambda: cell_count_profile(df, ctrl),
    }
    done, skipped = {}, {}
    for name, build in builders.items():
        if name == COUNT and count_column(df) is None:
            skipped[name] = f"the {base} carry no cell count"
            continue
        try:
            done[name] = build()
        except MoaInputError as exc:  # SchemaError, NormalizationError: this dataset cannot have the method
            skipped[name] = str(exc)
    for name, why in skipped.items():
        if log is not None:
            log(f"dataset {ds}: no '{name}' method: {why}")
    return df, done, skipped, base


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=["cp_profiles", "published_profiles"],
    kinds={"python", "duckdb"},
    description=(
        "The field's CP baselines from the dataset's CP well profiles: CP (JUMP recipe) (variance filter -> MAD "
        "robustize -> INT -> feature selection -> Harmony; pycytominer, harmonypy), CP spherized (the paper's "
        "optimized CP) and cell count (cells per well; where the profiles carry a count)."
    ),
)
def cp_baselines(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    ds = dataset_key(context)
    t0 = time.time()
    entry = store.dataset(ds)
    wh = store.warehouse()
    why = out_of_core_reason(store, ds)
    if why is not None:
        context.log.warning(f"dataset {ds}: no CP baselines: {why}")
        for name in (JUMP, SPHERIZED, COUNT):
            wh.drop_table(partition_table(METHODS[name].table, ds))
        return dg.MaterializeResult(
            metadata={"not_computed": dg.MetadataValue.json(dict.fromkeys((JUMP, SPHERIZED, COUNT), why))}
        )
    df, recipes, skipped, base = _recipes(store, ds, entry.split_seed, context.log.warning)
    report, written = [], {}
    for name, rec in recipes.items():
        wh.replace_table(partition_table(METHODS[name].table, ds), rec.output, partition={"dataset": ds})
        written[name] = sum(not c.startswith("Metadata_") for c in rec.output.columns)
        report += rec.report
    for name in skipped:  # a table of an earlier run no longer describes this dataset's data
        if wh.drop_table(partition_table(METHODS[name].table, ds)):
            context.log.warning(f"dataset {ds}: dropped the earlier '{name}' table")
    return dg.MaterializeResult(
        metadata={
            "profiles": base,
            "wells": len(df),
            "control_wells": int(df["Metadata_moa"].eq("DMSO").sum()),
            "features_in": len([c for c in df.columns if not c.startswith("Metadata_")]),
            "features_out": dg.MetadataValue.json(written),
            "steps": dg.MetadataValue.json(report),
            "not_computed": dg.MetadataValue.json(skipped),
            "seconds": round(time.time() - t0, 1),
        }
    )


def _clear_ablation(wh, ds: str) -> None:
    """Remove the dataset's rows of ``cp_ablation``: a previous ablation no longer describes its data."""
    if wh.has_table("cp_ablation"):
        wh.replace_rows("cp_ablation", wh.read_table("cp_ablation").head(0), {"dataset": ds}, allow_empty=True)


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[cp_baselines, "splits", "cp_embeddings", "published_profiles"],
    kinds={"duckdb"},
    description=(
        "Ablation of the CP recipes: each step of CP (JUMP recipe) and CP spherized, beside CP (DMSO "
        "standardization only) and cell count, scored with the paper's analyses and mAP on the same test wells "
        "(table cp_ablation)."
    ),
)
def cp_ablation(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    from moa_core.errors import MoaInputError
    from moa_core.evaluation.ablation import ablation_table, ablation_wide

    ds = dataset_key(context)
    t0 = time.time()
    entry = store.dataset(ds)
    wh = store.warehouse()
    why = out_of_core_reason(store, ds)
    if why is not None:
        context.log.warning(f"dataset {ds}: no CP ablation: {why}")
        _clear_ablation(wh, ds)
        return dg.MaterializeResult(metadata={"skipped": why})
    _, done, skipped, base = _recipes(store, ds, entry.split_seed, context.log.warning)
    recipes = [done[n] for n in (JUMP, SPHERIZED) if n in done]
    refs = {}
    for name in ("CP", "CP published"):
        table = partition_table(METHODS[name].table, ds)
        if wh.has_table(table):
            refs[f"{name} (DMSO standardized)"] = wh.read_table(table)
            break
    if COUNT in done:
        refs[COUNT] = done[COUNT].output
    sp = wh.read_table(partition_table("splits", ds))
    try:
        tab = ablation_table(
            recipes, sp, references=refs, where=f"dataset {ds}", seed=entry.split_seed, **ABLATION_SUITE
        )
    except MoaInputError as exc:  # e.g. a user's one plate: too few test wells for the paper's analyses
        context.log.warning(f"dataset {ds}: no CP ablation: {exc}")
        _clear_ablation(wh, ds)
        return dg.MaterializeResult(
            metadata={"skipped": str(exc), "not_computed": dg.MetadataValue.json(skipped), "profiles": base}
        )
    tab.insert(0, "dataset", ds)
    tab.insert(1, "profiles", base)
    wh.replace_rows("cp_ablation", tab, {"dataset": ds})
    wide = ablation_wide(tab)
    return dg.MaterializeResult(
        metadata={
            "ablation": dg.MetadataValue.md(wide.round(3).to_markdown(index=False)),
            "rows": len(tab),
            "profiles": base,
            "seconds": round(time.time() - t0, 1),
        }
    )
