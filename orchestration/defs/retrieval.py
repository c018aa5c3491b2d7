"""Retrieval domain: per (dataset, fraction), one MOA-retrieval index per embedding method.

``retrieval_index`` reads every method's well embeddings that exist for the partition (MP,
CP, CP published, DP recipe, IBP; for a Pheno-CA profile dataset its profiles stand for
CP), builds a :class:`moa_core.retrieval.RetrievalIndex` for each (with per-perturbation
activity / replicate-consistency mAP and a leave-one-compound-out calibration of the
predicted MOA), writes each to ``<data>/retrieval/<dataset>/<fraction>/<method>-<build>``
(temporary folder, then rename, with its calibration; builds that neither the warehouse nor the
published snapshot names any more are removed, so a published snapshot always points at a complete
one), and records them in ``retrieval_indexes``.
For image datasets it also records where every field's images are
(``image_fields__<dataset>``: the files the load_data names, resolved, and the image
store row), so the dashboard can show cells without re-deriving paths.
"""

import re
import shutil
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from moa_core.data.design import cpjump1_identifiers
from moa_core.data.load_data import channel_paths
from moa_core.data.locator import load_locator
from moa_core.errors import MoaInputError
from moa_core.methods import method_tables
from moa_core.provenance import code_version
from moa_core.storage import partition_table
from orchestration.defs.evaluation import available_methods
from orchestration.partitions import dataset_fraction_keys, dataset_fraction_partitions
from orchestration.progress import ProgressLog
from orchestration.resources import MoaStore

GROUP = "retrieval"
CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
#: Method -> (embedding table base name, per fraction).
SOURCES = method_tables(evaluated_only=False)
INDEX_COLUMNS = [
    "dataset",
    "fraction",
    "method",
    "path",
    "build_id",
    "n_wells",
    "n_compounds",
    "dim",
    "knn_loco_precision",
    "latent_loco_precision",
    "n_calibration",
    "notes",
    "built_at",
    "code_version",
]


def slug(method: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", method).strip("_").lower()


def _sources(store: MoaStore, ds: str, frac: str) -> dict[str, pd.DataFrame]:
    from moa_core.profiles.normalize import standardize_to_controls
    from moa_core.retrieval.index import is_control

    wh = store.warehouse()
    big = store.dataset(ds).out_of_core and wh.has_table(partition_table("cp_published_embeddings", ds))
    out: dict = available_methods(wh, ds, frac, {k: v for k, v in SOURCES.items() if not (big and k == "CP published")})
    if big:  # a JUMP-scale release: read as metadata + a float32 matrix when its index is built, never as a frame
        out["CP published"] = partition_table("cp_published_embeddings", ds)
    phenoca_inputs = store.artifact_dir(ds) / "phenoca_profiles.parquet"
    if "CP" not in out and "CP published" not in out and phenoca_inputs.is_file():
        # a profile dataset: its CellProfiler-style profiles, standardized per plate to its DMSO wells
        # (pycytominer's normalize with the negcon samples), as the paper's CP profiles are
        raw = pd.read_parquet(phenoca_inputs)
        feats = [c for c in raw.columns if not c.startswith("Metadata_")]
        try:
            z, dropped = standardize_to_controls(raw, feats, control_mask=is_control(raw))
        except MoaInputError as exc:
            raise dg.Failure(f"dataset {ds}: its profiles cannot be standardized to DMSO: {exc}") from exc
        out["CP"] = z
    return out


def _identifiers(store: MoaStore, ds: str) -> pd.DataFrame | None:
    """Extra compound IDs (InChIKey) for datasets drawn from the CPJUMP1 design, from its real annotations."""
    entry = store.dataset(ds)
    if entry.kind != "synthetic" and not str(getattr(entry, "layout", "") or "").startswith("cpjump1"):
        return None
    try:
        return cpjump1_identifiers(store.shared_path)
    except FileNotFoundError:
        return None  # the IDs are a search convenience: the index is built without them


def image_fields(store: MoaStore, ds: str) -> pd.DataFrame | None:
    """One row per field: the resolved path/URI of each channel file and its image-store row (if stored)."""
    wh = store.warehouse()
    ld_table = partition_table("load_data", ds)
    if not wh.has_table(ld_table):
        return None
    ld = wh.read_table(ld_table)
    try:
        loc = load_locator(store.dataset_dir(ds))
    except FileNotFoundError:
        loc = None
    rows = [channel_paths(r, CHANNELS, loc) for r in ld.to_dict("records")]
    out = ld[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].copy()
    out["Metadata_Site"] = out["Metadata_Site"].astype(np.int64)
    for ch in CHANNELS:
        out[f"path_{ch}"] = [r[ch] for r in rows]
    out["store_path"] = None
    out["store_row"] = pd.array([pd.NA] * len(out), dtype="Int64")
    sp = store.image_store_path(ds)
    if (sp / "zarr.json").is_file():
        from moa_core.store import ImageStore

        idx = ImageStore(sp).index()
        out = out.drop(columns=["store_row"]).merge(
            idx, on=["Metadata_Plate", "Metadata_Well", "Metadata_Site"], how="left"
        )
        out["store_row"] = out["store_row"].astype("Int64")
        out["store_path"] = str(sp.relative_to(store.root_path))
    return out


def _referenced(store: MoaStore) -> set[Path]:
    """Index folders that the warehouse or the published snapshot still name."""
    from moa_core.storage import Warehouse

    out: set[Path] = set()
    for wh in (store.warehouse(), Warehouse(store.snapshot_path, read_only=True)):
        try:
            if wh.has_table("retrieval_indexes"):
                out |= {(store.root_path / p).resolve() for p in wh.read_table("retrieval_indexes")["path"]}
        except Exception:  # noqa: BLE001 - an unreadable snapshot keeps nothing alive; the warehouse still does
            continue
    return out


def _prune(store: MoaStore, folder: Path, keep: set[Path]) -> None:
    """Remove the partition's index builds that neither this run, the warehouse nor the snapshot uses."""
    alive = _referenced(store) | {p.resolve() for p in keep}
    for old in folder.iterdir() if folder.is_dir() else []:
        if old.is_dir() and not old.name.startswith(".") and old.resolve() not in alive:
            shutil.rmtree(old, ignore_errors=True)


@dg.asset(
    partitions_def=dataset_fraction_partitions,
    group_name=GROUP,
    deps=[
        "mp_embeddings",
        "cp_embeddings",
        "dp_embeddings",
        "cp_published_embeddings",
        "mp_paper_embeddings",
        "cp_baselines",
        "phenoca_results",
        "image_store",
    ],
    kinds={"numpy", "duckdb"},
    description=(
        "MOA-retrieval indexes of one (dataset, fraction): one per embedding method present (every method "
        "of moa_core.methods: MP, MP (paper weights), the CP baselines, DP recipe, IBP): unit-scaled well "
        "profiles (PCC), per-compound activity / replicate-consistency mAP "
        "(p, q), leave-one-compound-out calibration of the predicted MOA; and where every field's images are."
    ),
)
def retrieval_index(context: dg.AssetExecutionContext, store: MoaStore) -> dg.MaterializeResult:
    from moa_core.retrieval import build_index, calibrate, compound_activity, save_index

    ds, frac = dataset_fraction_keys(context)
    t0 = time.time()
    sources = _sources(store, ds, frac)
    if not sources:
        raise dg.Failure(
            f"dataset {ds} fraction {frac}: no well embeddings to index; materialize mp_embeddings, "
            f"cp_embeddings, dp_embeddings, cp_published_embeddings or phenoca_results first"
        )
    ids = _identifiers(store, ds)
    folder = store.root_path / "retrieval" / ds / frac
    cache = store.cache_dir / "copairs"
    rows, meta, built = [], {}, []
    for method, df in sources.items():
        t1 = time.time()
        X = None
        if isinstance(df, str):  # out of core: the table's features straight into float32, in compound order
            from moa_core.profiles.release import read_matrix, read_metadata
            from moa_core.retrieval.index import compound_key

            wh = store.warehouse()
            key = compound_key(read_metadata(wh, df))
            df, X, feats = read_matrix(
                wh,
                df,
                order=(key, "Metadata_Plate", "Metadata_Well"),
                progress=ProgressLog(context.log.info, f"read {method} features", "wells"),
            )
        else:
            feats = [c for c in df.columns if not c.startswith("Metadata_")]
        try:
            idx = build_index(
                df,
                feats,
                method=method,
                dataset=ds,
                fraction=frac,
                identifiers=ids,
                extra={"code_version": code_version()},
                matrix=X,
            )
            del X
        except MoaInputError as exc:
            raise dg.Failure(f"dataset {ds} fraction {frac} method {method}: {exc}") from exc
        w = idx.wells
        act, notes = compound_activity(
            np.asarray(idx.vectors),
            w["compound"].to_numpy(),
            w["Metadata_Plate"].to_numpy(),
            w["is_control"].to_numpy(bool),
            cache_dir=cache,
        )
        idx.compounds = idx.compounds.merge(act, on="compound", how="left")
        cal = calibrate(idx, k=5)
        idx.manifest["notes"] = notes
        dest = folder / f"{slug(method)}-{idx.manifest['build_id']}"
        save_index(idx, dest, tables={"calibration.parquet": cal} if not cal.empty else None)
        built.append(dest)
        knn_p = float(cal["knn_correct"].mean()) if len(cal) else float("nan")
        lat_p = float(cal["latent_correct"].mean()) if len(cal) else float("nan")
        rows.append(
            {
                "dataset": ds,
                "fraction": frac,
                "method": method,
                "path": str(dest.relative_to(store.root_path)),
                "build_id": idx.manifest["build_id"],
                "n_wells": idx.n_wells,
                "n_compounds": len(idx.compounds),
                "dim": idx.dim,
                "knn_loco_precision": knn_p,
                "latent_loco_precision": lat_p,
                "n_calibration": int(len(cal)),
                "notes": "; ".join(f"{k}: {v}" for k, v in notes.items()),
                "built_at": idx.manifest["built_at"],
                "code_version": code_version(),
            }
        )
        meta[f"{slug(method)}_wells"] = idx.n_wells
        meta[f"{slug(method)}_seconds"] = round(time.time() - t1, 1)
        context.log.info(
            f"{method}: {idx.n_wells} wells x {idx.dim} d, {len(idx.compounds)} perturbations; LOCO "
            f"k-NN {knn_p:.3f} latent {lat_p:.3f} ({len(cal)} compounds) in {time.time() - t1:.1f} s"
        )
    wh = store.warehouse()
    wh.replace_rows("retrieval_indexes", pd.DataFrame(rows, columns=INDEX_COLUMNS), {"dataset": ds, "fraction": frac})
    _prune(store, folder, keep=set(built))
    fields = image_fields(store, ds) if store.dataset(ds).has_images else None
    if fields is not None and not fields.empty:
        wh.replace_table(partition_table("image_fields", ds), fields, partition={"dataset": ds})
        meta["image_fields"] = len(fields)
    return dg.MaterializeResult(
        metadata={"methods": dg.MetadataValue.text(", ".join(sources)), **meta, "seconds": round(time.time() - t0, 1)}
    )


@dg.asset_check(
    asset=retrieval_index,
    description="Every index of the partition opens with matching SHA-256 hashes and answers a query.",
)
def retrieval_index_answers(context: dg.AssetCheckExecutionContext, store: MoaStore) -> dg.AssetCheckResult:
    from moa_core.retrieval import load_index, neighbours

    ds, frac = dataset_fraction_keys(context)
    rows = store.warehouse().read_table("retrieval_indexes", {"dataset": ds, "fraction": frac})
    problems = []
    for r in rows.itertuples():
        try:
            idx = load_index(store.root_path / r.path, verify=True)
            treat = idx.compounds[~idx.compounds["is_control"]]
            neighbours(idx, str(treat["compound"].iloc[0]), k=5)
        except Exception as exc:  # noqa: BLE001 - reported as the check's failure, with the index
            problems.append(f"{r.method}: {exc}")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"indexes": len(rows), "problems": dg.MetadataValue.text("; ".join(problems) or "none")},
    )


@dg.asset_check(
    asset=retrieval_index,
    description="Warns when a method's leave-one-compound-out k-NN MOA "
    "precision does not beat always guessing the most frequent MOA (a model that learned nothing).",
)
def retrieval_index_beats_majority(context: dg.AssetCheckExecutionContext, store: MoaStore) -> dg.AssetCheckResult:
    from moa_core.retrieval import load_index

    ds, frac = dataset_fraction_keys(context)
    rows = store.warehouse().read_table("retrieval_indexes", {"dataset": ds, "fraction": frac})
    weak, meta = [], {}
    for r in rows.itertuples():
        comp = load_index(store.root_path / r.path).compounds
        moa = comp.loc[~comp["is_control"], "Metadata_moa"] if "Metadata_moa" in comp.columns else pd.Series([])
        majority = float(moa.value_counts(normalize=True).iloc[0]) if moa.notna().any() else 0.0
        meta[f"{slug(r.method)}_knn_loco_precision"] = float(r.knn_loco_precision)
        meta[f"{slug(r.method)}_majority_share"] = majority
        if np.isfinite(r.knn_loco_precision) and r.knn_loco_precision <= majority:
            weak.append(f"{r.method}: k-NN precision {r.knn_loco_precision:.3f} <= majority MOA {majority:.3f}")
    return dg.AssetCheckResult(
        passed=not weak,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**meta, "weak": dg.MetadataValue.text("; ".join(weak) or "none")},
    )
