"""Pheno-CA domain: study inputs per dataset, the model zoo per (dataset, data scale), scaling laws per dataset."""

import dataclasses
import os
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from moa_core.datasets import FRACTIONS, image_fraction_keys, profile_scale
from moa_core.methods import METHODS, phenoca_inputs
from moa_core.storage import partition_table, write_parquet_atomic
from orchestration.defs.executors import executed_by
from orchestration.partitions import dataset_fraction_keys, dataset_fraction_partitions, dataset_key, dataset_partitions
from orchestration.progress import ProgressLog
from orchestration.resources import MoaStore

GROUP = "phenoca"
#: Architectures per step of the zoo's fan-out when the launchpad does not say (a cluster sets 1).
ZOO_GROUP_ENV = "MOA_ZOO_GROUP_SIZE"


class StudyOverrides(dg.Config):
    """Launchpad overrides of the dataset's Pheno-CA study (``phenoca`` table of its catalogue entry)."""

    depths: list[int] | None = None
    widths: list[int] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    invariance_weight: float | None = None
    task_supervised: bool | None = None
    splits: list[str] | None = None
    device: str | None = None
    max_minutes: float | None = None
    num_threads: int | None = None  # torch threads of this run (speed only: results replay within rounding)
    #: architectures per step of the zoo's fan-out; None: $MOA_ZOO_GROUP_SIZE, else 0 (the whole zoo, one step)
    zoo_group_size: int | None = None

    def apply(self, base):
        vals = {
            k: (tuple(v) if isinstance(v, list) else v)
            for k, v in self.model_dump().items()
            if v is not None and k != "zoo_group_size"
        }
        return dataclasses.replace(base, **vals)


def _inputs_path(store: MoaStore, ds: str):
    return store.artifact_dir(ds) / "phenoca_profiles.parquet"


def _study_source(context: dg.AssetExecutionContext, store: MoaStore, ds: str) -> tuple[pd.DataFrame | tuple, str]:
    """The dataset's well-level profiles in the study schema, and where they came from."""
    from moa_core.phenoca.profiles import as_study_table

    entry = store.dataset(ds)
    wh = store.warehouse()
    if entry.kind == "synthetic_profiles":
        from moa_core.phenoca.synthetic import generate_profiles

        return generate_profiles(entry.profile_spec).profiles, "synthetic_jump_profiles generator"
    rep = METHODS[entry.phenoca_representation]
    if entry.kind == "profiles" and rep.name == "CP":  # a profile dataset's CP is its published profiles
        rep = METHODS["CP published"]
    if not rep.label_free:
        # e.g. MP, trained on MoA labels of this dataset's own split: Pheno-CA's test wells and novel compounds
        # would have been its training data
        raise dg.Failure(
            f"dataset {ds}: Pheno-CA on {rep.name} embeddings would test on what {rep.name} learned from MoA "
            f"labels; set phenoca_representation to one of {', '.join(phenoca_inputs())}"
        )
    table = partition_table(rep.table, ds)
    if not wh.has_table(table):
        raise dg.Failure(f"dataset {ds}: no {table} table to run Pheno-CA on; materialize it first")
    if entry.out_of_core:  # a JUMP-scale release: metadata + a float32 matrix, never a frame of the features
        from moa_core.phenoca.profiles import study_metadata
        from moa_core.profiles.release import read_matrix

        m, X, feats = read_matrix(wh, table, progress=ProgressLog(context.log.info, "read features", "wells"))
        return (study_metadata(m, source=ds), X, feats), table
    return as_study_table(wh.read_table(table), source=ds), table


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    kinds={"python", "parquet"},
    description=(
        "Well-level profiles of the dataset in the Pheno-CA schema: the embedded synthetic_jump_profiles, the "
        "published CellProfiler profiles, or the CP/MP well embeddings of an image dataset."
    ),
)
def phenoca_profiles(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    ds = dataset_key(context)
    t0 = time.time()
    df, origin = _study_source(context, store, ds)
    if isinstance(df, tuple):  # out of core: written a row group at a time
        from moa_core.phenoca.profiles import write_study_parquet

        df, X, feats = df
        path = write_study_parquet(df, X, feats, _inputs_path(store, ds))
        del X
    else:
        path = write_parquet_atomic(df, _inputs_path(store, ds))
        feats = [c for c in df.columns if not c.startswith("Metadata_")]
    kinds = df["Metadata_pert_type"].value_counts().to_dict()
    comp = df[df["Metadata_pert_type"].eq("compound")]
    meta = {
        "path": dg.MetadataValue.path(str(path)),
        "source": origin,
        "wells": len(df),
        "features": len(feats),
        "plates": int(df["Metadata_Plate"].nunique()),
        "sources": int(df["Metadata_Source"].nunique()),
        "annotated_compounds": int(comp.loc[~comp["Metadata_is_ood"], "Metadata_JCP2022"].nunique()),
        "ood_compounds": int(comp.loc[comp["Metadata_is_ood"], "Metadata_JCP2022"].nunique()),
        "crispr_genes": int(df.loc[df["Metadata_pert_type"].eq("crispr"), "Metadata_gene"].nunique()),
        "moas": int(comp["Metadata_moa"].nunique()),
        "targets": int(comp["Metadata_target"].nunique()),
        "wells_by_type": dg.MetadataValue.json({str(k): int(v) for k, v in kinds.items()}),
        "seconds": round(time.time() - t0, 1),
    }
    return dg.MaterializeResult(metadata=meta)


def _load_study_inputs(store: MoaStore, ds: str):
    """``(profiles, X, feature names)`` of the dataset's study inputs (X None: the features are in profiles)."""
    path = _inputs_path(store, ds)
    if not path.is_file():
        raise dg.Failure(f"dataset {ds}: no Pheno-CA inputs at {path}; materialize phenoca_profiles first")
    if store.dataset(ds).out_of_core:  # metadata + a float32 matrix (the preprocessing then works in chunks)
        from moa_core.phenoca.profiles import read_study_parquet

        return read_study_parquet(path)
    return pd.read_parquet(path), None, None


def _scale(frac: str) -> tuple[float, float]:
    """``(ood_share, replicate_share)`` of a Pheno-CA partition (a seed-replicate key is a clear failure)."""
    from moa_core.errors import SchemaError

    try:
        return profile_scale(frac)
    except SchemaError as exc:
        raise dg.Failure(str(exc)) from None


@dg.op(
    ins={"start": dg.In(dg.Nothing)},
    out=dg.DynamicOut(dict),
    description="The zoo's members: its (depth, width) architectures in groups of zoo_group_size, one step each.",
)
def phenoca_zoo(context: dg.OpExecutionContext, config: StudyOverrides, store: MoaStore):
    from moa_core.phenoca.study import zoo_members

    ds, frac = dataset_fraction_keys(context)
    _scale(frac)  # a seed-replicate key is refused before any member runs
    cfg = config.apply(store.dataset(ds).phenoca)
    size = config.zoo_group_size if config.zoo_group_size is not None else int(os.environ.get(ZOO_GROUP_ENV) or 0)
    archs = [a for g in zoo_members(cfg) for a in g]
    groups = zoo_members(cfg, size) if size > 0 else [archs]
    context.log.info(f"{ds} {frac}: {len(archs)} architectures in {len(groups)} step(s)")
    for i, g in enumerate(groups):
        key = "_".join(f"d{d}w{w}" for d, w in g) if size > 0 else "zoo"
        yield dg.DynamicOutput(
            {"config": dataclasses.asdict(cfg), "archs": [list(a) for a in g], "baselines": i == 0, "key": key},
            mapping_key=key,
        )


@dg.op(description="Train and probe one member of the zoo (its architectures' IBP and task models).")
def phenoca_member(context: dg.OpExecutionContext, store: MoaStore, member: dict) -> dict:
    from moa_core.phenoca.config import StudyConfig
    from moa_core.phenoca.study import run_study

    ds, frac = dataset_fraction_keys(context)
    t0 = time.time()
    cfg = StudyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in member["config"].items()})
    ood_share, rep_share = _scale(frac)
    profiles, X, feats = _load_study_inputs(store, ds)
    res = run_study(
        profiles,
        ood_share=ood_share,
        replicate_share=rep_share,
        config=cfg,
        log=lambda msg: context.log.info(msg),
        features=X,
        feature_names=feats,
        archs=[tuple(a) for a in member["archs"]],
        baselines=member["baselines"],
    )
    out = store.artifact_dir(ds, frac) / "phenoca_members"
    table_path = write_parquet_atomic(res.table, out / f"{member['key']}.parquet")
    emb_path = None
    if res.embeddings is not None:
        emb_path = str(write_parquet_atomic(res.embeddings, out / f"{member['key']}.embeddings.parquet"))
    where = executed_by()
    context.add_output_metadata({"models": len(res.models), "executed_by": dg.MetadataValue.json(where)})
    return {
        "key": member["key"],
        "table": str(table_path),
        "embeddings": emb_path,
        "summary": res.summary,
        "models": res.models,
        "executed_by": where,
        "seconds": round(time.time() - t0, 1),
    }


@dg.op(description="Merge the members into phenoca_results (and the largest IBP encoder's embeddings).")
def phenoca_collect(context: dg.OpExecutionContext, store: MoaStore, members: list[dict]) -> None:
    from moa_core.phenoca.study import StudyResult, merge_study_results

    ds, frac = dataset_fraction_keys(context)
    t0 = time.time()
    ood_share, rep_share = _scale(frac)
    parts = [
        StudyResult(
            pd.read_parquet(m["table"]),
            m["summary"],
            m["models"],
            pd.read_parquet(m["embeddings"]) if m["embeddings"] else None,
        )
        for m in members
    ]
    res = merge_study_results(parts)
    table = res.table
    table.insert(0, "fraction", frac)
    table.insert(0, "dataset", ds)
    wh = store.warehouse()
    wh.replace_rows("phenoca_results", table, {"dataset": ds, "fraction": frac})
    if res.embeddings is not None:  # the IBP encoder's well embeddings: the explorer's "IBP" method
        wh.replace_table(
            partition_table("ibp_embeddings", ds, frac), res.embeddings, partition={"dataset": ds, "fraction": frac}
        )
    for m in members:  # the warehouse holds them now
        for f in (m["table"], m["embeddings"]):
            if f:
                Path(f).unlink(missing_ok=True)
    context.add_output_metadata(
        {
            "rows": len(table),
            "models": int(table["model"].nunique()),
            "ood_share": ood_share,
            "replicate_share": rep_share,
            "seconds": round(sum(m["seconds"] for m in members) + time.time() - t0, 1),
            "members": len(members),
            "members_executed_by": dg.MetadataValue.json({m["key"]: m["executed_by"] for m in members}),
            **{k: v for k, v in res.summary.items() if v is not None},
        }
    )


@dg.graph_asset(
    partitions_def=dataset_fraction_partitions,
    group_name=GROUP,
    ins={"phenoca_profiles": dg.AssetIn(dagster_type=dg.Nothing)},
    kinds={"pytorch", "duckdb"},
    description=(
        "The Pheno-CA model zoo at one data scale (fraction key: replicate share 100/75/50/25/10 or OOD-molecule "
        "share ood0..ood50): IBP-pretrained residual MLPs probed per task, task-supervised models, profile "
        "baselines; MoA/target/molecule deconvolution and compound discovery on two splits -> phenoca_results. "
        "The zoo fans out in steps of zoo_group_size architectures (default $MOA_ZOO_GROUP_SIZE; 0: one step), "
        "merged into the same table as one step."
    ),
)
def phenoca_results(phenoca_profiles):
    return phenoca_collect(phenoca_zoo(phenoca_profiles).map(phenoca_member).collect())


def _mp_fraction_points(store: MoaStore, ds: str) -> tuple[pd.DataFrame, dict[str, float]]:
    """MOAProfiler's replicate-fraction curve of an image dataset (x = training wells of each fraction), and
    the training wells of every replicate fraction of the catalogue (the scales the curve can grow to)."""
    from moa_core.scaling.studies import fraction_points, fraction_train_wells

    wh = store.warehouse()
    if not wh.has_table("evaluation_results") or not wh.has_table(partition_table("splits", ds)):
        return pd.DataFrame(), {}
    ev = wh.read_table("evaluation_results", {"dataset": ds})
    sp = wh.read_table(partition_table("splits", ds))
    keys = [*FRACTIONS, *(f for f in image_fraction_keys() if f in set(ev["fraction"].astype(str)) - set(FRACTIONS))]
    wells = fraction_train_wells(sp, keys, seed=store.dataset(ds).split_seed)
    done = {f: wells[f] for f in ev["fraction"].astype(str).unique() if f in wells}
    return fraction_points(ev, done, ds), {f: float(wells[f]) for f in FRACTIONS}


def _phenoca_sizes(
    context: dg.AssetExecutionContext, store: MoaStore, ds: str, results: pd.DataFrame
) -> dict[tuple[str, str], dict[str, float]]:
    """The exact N of every Pheno-CA scale key, materialized or not (the ledger's next scales), from the study
    inputs' metadata and the catalogue's study config; {} without inputs or results, or (with a warning) when
    the materialized results trained on other counts (a launchpad override of the split seed or splits)."""
    from moa_core.phenoca.config import SCALE_KEYS
    from moa_core.phenoca.study import scale_counts
    from moa_core.scaling.studies import phenoca_scale_sizes

    path = _inputs_path(store, ds)
    if results.empty or not path.is_file():
        return {}
    import pyarrow.parquet as pq

    meta = [c for c in pq.ParquetFile(path).schema_arrow.names if c.startswith("Metadata_")]
    counts = scale_counts(
        pd.read_parquet(path, columns=meta), {k: profile_scale(k) for k in SCALE_KEYS}, store.dataset(ds).phenoca
    )
    cols = ["n_train_wells", "n_train_compounds", "n_ood_compounds"]
    have = results[["fraction", "split", *cols]].drop_duplicates().astype({"fraction": str, "split": str})
    both = have.merge(counts, on=["fraction", "split"], how="left", suffixes=("", "_now"))
    differ = both[np.any([both[c].to_numpy() != both[f"{c}_now"].to_numpy() for c in cols], axis=0)]
    if len(differ):
        r = differ.iloc[0]
        context.log.warning(
            f"{ds}: phenoca_results at {r['fraction']} ({r['split']} split) trained on {int(r['n_train_wells'])} "
            f"wells, the catalogue's study config gives {r['n_train_wells_now']}: the ledger forecasts the grid "
            f"only (no exact next-scale sizes)"
        )
        return {}
    return phenoca_scale_sizes(counts)


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[phenoca_results, "evaluation_results"],
    kinds={"duckdb"},
    description=(
        "Scaling laws (linear as the paper, log-linear, power law with a floor, M4, broken power law) fitted to every "
        "Pheno-CA curve and to MOAProfiler's replicate-fraction curve; bootstrap CIs, back-tests, N needed, "
        "P(reachable), cost -> scaling_points, scaling_laws."
    ),
)
def scaling_laws(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    from moa_core.provenance import code_version
    from moa_core.scaling import ScalingReport, ledger
    from moa_core.scaling.studies import fit_curve_reports, laws_table, mp_targets, next_scales, phenoca_points

    ds = dataset_key(context)
    t0 = time.time()
    wh = store.warehouse()
    parts = []
    pheno_sizes: dict = {}
    if wh.has_table("phenoca_results"):
        results = wh.read_table("phenoca_results", {"dataset": ds})
        parts.append(phenoca_points(results))
        pheno_sizes = _phenoca_sizes(context, store, ds, results)
    mp_points, mp_sizes = _mp_fraction_points(store, ds)
    parts.append(mp_points)
    points = (
        pd.concat([p for p in parts if not p.empty], ignore_index=True)
        if any(not p.empty for p in parts)
        else pd.DataFrame()
    )
    if points.empty:
        raise dg.Failure(
            f"dataset {ds}: no phenoca_results and no replicate-fraction evaluation to fit; materialize "
            f"phenoca_results (profile datasets) or evaluation_results at several fractions"
        )
    fitted = fit_curve_reports(points, targets=mp_targets(points))
    laws = laws_table(fitted)
    # the forecast ledger: this fit's predictions above its data join the record; every stored forecast is
    # scored against the points as they are now (larger scales materialized since it was made)
    new = ledger.forecasts(
        [(k, p, r if isinstance(r, ScalingReport) else None) for k, p, r in fitted],
        next_scales=next_scales(points, {"mp_fractions": mp_sizes, **pheno_sizes}),
        code_version=code_version(),
    )
    old = wh.read_table("scaling_forecasts", {"dataset": ds}) if wh.has_table("scaling_forecasts") else None
    stored = ledger.merge_forecasts(old, new)
    curves = pd.concat(
        [p.assign(**{c: str(k[c]) for c in ledger.KEY_COLUMNS}) for k, p, _ in fitted], ignore_index=True
    )
    scored = ledger.score_forecasts(stored, curves)
    wh.replace_partitions(  # one transaction: the laws, their points and the ledger agree
        {
            "scaling_points": points.assign(dataset=ds),
            "scaling_laws": laws.assign(dataset=ds),
            "scaling_forecasts": stored,
            "scaling_ledger": scored,
        },
        {"dataset": ds},
        allow_empty=True,
    )
    record = ledger.ledger_record(scored)
    best = laws[laws["rank"].eq(1)] if "rank" in laws else laws.head(0)
    lines = [
        f"{r.study}/{r.task}/{r.family}: {r.form}, N needed {r.n_needed:.3g} "
        f"[{r.n_needed_low:.3g}, {r.n_needed_high:.3g}] for {r.target:.3g}, P(reachable) {r.p_reachable:.2f}"
        if bool(r.reliable) and np.isfinite(r.n_needed or np.nan)
        else f"{r.study}/{r.task}/{r.family}: {r.form}: {r.reason or 'no finite N'}"
        for r in best.itertuples()
    ]
    for line in lines:
        context.log.info(line)
    return dg.MaterializeResult(
        metadata={
            "points": len(points),
            "curves": int(points.groupby(["study", "task", "family"]).ngroups),
            "laws": len(laws),
            "best_forms": dg.MetadataValue.md("\n".join(f"- {x}" for x in lines) or "none"),
            "forecasts_stored": int(stored["fit_id"].nunique()) if not stored.empty else 0,
            "forecasts_new": int(new["fit_id"].nunique()) if not new.empty else 0,
            "forecasts_scored": len(scored),
            "ledger": dg.MetadataValue.md(
                "\n".join(
                    f"- {r.form}: {r.scored} forecast(s) scored, MAE {r.mae:.3g}, inside the interval "
                    f"{r.coverage:.0%} of {r.with_interval}, up to {r.max_decades:.2f} decade(s) out"
                    for r in record.itertuples()
                )
                or "no forecast scored yet"
            ),
            "seconds": round(time.time() - t0, 1),
        }
    )
