"""JUMP scale on one machine: every profile-level step at 1 %, 10 % and 100 % of JUMP, out of core.

    uv run python bench/bench_jump_scale.py [--scales 0.01,0.1,1] [--data /path/with/80GB] [--steps all]

For each scale a JUMP-shaped synthetic release (:mod:`moa_core.phenoca.jump_release`: the real cpg0016
plate list, 4,762 float32 features per well, JUMP's metadata tables) is generated (cached), then each
step runs in its own Python process, so its wall time and peak resident memory (``wait4``'s
``ru_maxrss``) are its own:

==============  =====================================================================================
``generate``    the release's plate files (streamed, resumable; cached across runs)
``load``        the plate files into DuckDB, one transaction per plate (:func:`~moa_core.profiles.release.load_release`)
``normalize``   metadata join, feature hygiene, per-plate DMSO standardization, pycytominer feature
                selection, plate by plate (:func:`~moa_core.profiles.release.normalize_release`)
``retrieval``   the retrieval index over every well and compound, its leave-one-compound-out calibration,
                and the explorer's whole query (median and p95 over 50 compounds)
``activity``    phenotypic activity and replicate-consistency mAP of every perturbation vs same-plate DMSO
``analyses``    the paper's analyses (:func:`~moa_core.evaluation.suite.evaluate_embeddings`) on the
                annotated subset's well-holdout test wells, block-wise
``phenoca``     Pheno-CA preprocessing (per-plate median/IQR, clipping, PCA whitening fitted on training
                wells) and one IBP model (sampled softmax over every molecule) with its MoA and target probes
``scaling``     the ``phenoca`` study at every OOD share of ``SCALING_KEYS`` (ood0: the annotated
                molecules alone; ood1 → 100: 1 % → 100 % of the unannotated ones added) and the scaling
                laws fitted to its IBP curves over the OOD molecules (two decades, the paper's axis),
                with bootstrap intervals and back-test errors (not in the totals)
==============  =====================================================================================

Printed: per step and scale, seconds and peak RSS; the growth exponent ``b`` of ``time ∝ N^b``
(and of memory) between consecutive scales, N = wells; at the smallest scale, the exactness checks
against the in-memory code (normalization vs :func:`~moa_core.profiles.published.published_embeddings`,
activity vs copairs, the block-wise analyses vs the all-pairs ones). Results go to
``bench/results/jump_scale.json``. With CUDA the ``retrieval``, ``analyses`` and ``phenoca`` steps are
timed on the GPU too (``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("generate", "load", "normalize", "retrieval", "activity", "analyses", "phenoca", "scaling")
#: The steps of the acceptance budget (every step but the release's generation and the scaling study).
BUDGET_STEPS = STEPS[1:7]


def _shared() -> Path:
    return Path(os.environ.get("MOA_SHARED_DIR", REPO.parent / "shared"))


def _paths(data: Path, scale: float) -> dict:
    tag = f"{scale:g}".replace(".", "p")
    root = data / f"jump_{tag}"
    return {"root": root, "release": root / "release", "wh": root / "warehouse.duckdb", "out": root / "steps"}


# ---- steps (each runs in a fresh process) -------------------------------------------------------------------
def step_generate(scale: float, data: Path, device: str) -> dict:
    from moa_core.phenoca.config import JumpReleaseSpec
    from moa_core.phenoca.jump_release import generate_release

    p = _paths(data, scale)
    info = generate_release(JumpReleaseSpec(scale=scale), p["release"], _shared())
    size = sum(f.stat().st_size for f in p["release"].rglob("*.parquet"))
    return {
        "wells": info.n_wells,
        "plates": len(info.plates),
        "features": len(info.feature_cols),
        "compounds": info.spec.sizes["compounds"],
        "bytes_on_disk": size,
        "plates_generated": info.plates_generated,
    }


def step_load(scale: float, data: Path, device: str) -> dict:
    from moa_core.data.sources.profiles import release_plate_files
    from moa_core.profiles.release import load_release, release_wells
    from moa_core.storage import Warehouse

    p = _paths(data, scale)
    wh = Warehouse(p["wh"])
    rep = load_release(wh, release_plate_files(p["release"]), "release_raw")
    meta = p["release"] / "metadata"
    wells = release_wells(wh, "release_raw", meta, annotations=meta / "compound_annotations.csv.gz")
    wh.replace_table("release_wells", wells)
    return {**rep.as_metadata(), "wells": len(wells)}


def step_normalize(scale: float, data: Path, device: str) -> dict:
    from moa_core.profiles.release import normalize_release
    from moa_core.storage import Warehouse

    p = _paths(data, scale)
    wh = Warehouse(p["wh"])
    wells = wh.read_table("release_wells")
    rep = normalize_release(wh, "release_raw", wells, "release_norm")
    out = {k: v for k, v in rep.as_metadata().items() if not k.endswith("_names")}
    if scale <= 0.011:  # exactness: the in-memory published_embeddings on the whole table
        out["exact_vs_in_memory"] = _check_normalization(wh, wells, rep)
    return out


def _check_normalization(wh, wells, rep) -> dict:
    import numpy as np

    from moa_core.profiles.published import published_embeddings

    raw = wh.read("SELECT * FROM release_raw ORDER BY Metadata_Plate, Metadata_Well")
    meta = wells.sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    feats = [c for c in raw.columns if not c.startswith("Metadata_")]
    table = meta.join(raw[feats])
    ref, _ = published_embeddings(table)
    ours = wh.read("SELECT * FROM release_norm ORDER BY Metadata_Plate, Metadata_Well")
    ref = ref.sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    a = ours[rep.selected].to_numpy(np.float64)
    b = ref[rep.selected].to_numpy(np.float64)
    return {
        "wells": len(ours),
        "wells_in_memory": len(ref),
        "features_compared": len(rep.selected),
        "max_abs_diff": float(np.abs(a - b).max()),
        "features_kept_in_memory": len([c for c in ref.columns if not c.startswith("Metadata_")]),
        "features_kept_out_of_core": len(rep.selected) + 0 * len(rep.dropped_zero_dmso_sd),
    }


def _norm_table(wh):
    """The whole normalized table as one frame (the in-memory reference; only at 1 %)."""
    return wh.read("SELECT * FROM release_norm ORDER BY Metadata_Plate, Metadata_Well")


def _norm_matrix(wh, *, by_compound: bool = False, select=None):
    """``(metadata, float32 features, feature names)`` of ``release_norm`` out of core, rows in the order of
    ``_norm_table`` (plate, well) or, ``by_compound``, (compound key, plate, well); ``select(meta)`` picks rows."""
    from moa_core.profiles.release import read_matrix

    order = ("Metadata_Plate", "Metadata_Well")
    if by_compound:
        from moa_core.profiles.release import read_metadata
        from moa_core.retrieval.index import compound_key

        key = compound_key(read_metadata(wh, "release_norm"))
        order = (key, *order)
    return read_matrix(wh, "release_norm", order=order, select=select)


def step_retrieval(scale: float, data: Path, device: str) -> dict:
    import numpy as np

    from moa_core.retrieval import (
        build_index,
        calibrate,
        knn_vote,
        latent_assignment,
        load_index,
        neighbours,
        save_index,
    )
    from moa_core.retrieval.query import confidence, moa_enrichment
    from moa_core.storage import Warehouse

    p = _paths(data, scale)
    wh = Warehouse(p["wh"])
    t0 = time.time()
    meta, X, feats = _norm_matrix(wh, by_compound=True)  # features straight into float32, compound order
    t_read = time.time() - t0
    t0 = time.time()
    idx = build_index(meta, feats, method="CP published", dataset=f"jump_{scale:g}", matrix=X)
    del X
    t_build = time.time() - t0
    exact = None
    if scale <= 0.011:  # exactness: the index built from the whole table as a frame
        ref = build_index(_norm_table(wh), feats, method="CP published", dataset=f"jump_{scale:g}")
        exact = {
            "wells_compared": len(ref.wells),
            "same_well_order": bool(
                (
                    ref.wells[["Metadata_Plate", "Metadata_Well"]].to_numpy()
                    == idx.wells[["Metadata_Plate", "Metadata_Well"]].to_numpy()
                ).all()
            ),
            "max_abs_vector_diff": float(np.abs(ref.vectors - idx.vectors).max()),
            "max_abs_compound_vector_diff": float(np.abs(ref.compound_vectors - idx.compound_vectors).max()),
        }
        del ref
    t0 = time.time()
    cal = calibrate(idx)
    t_cal = time.time() - t0
    folder = save_index(idx, p["root"] / "index")
    idx = load_index(folder)
    comp = idx.compounds
    cand = np.flatnonzero(~comp["is_control"].to_numpy(bool) & comp["Metadata_moa"].notna().to_numpy())
    rng = np.random.default_rng(0)
    q = rng.choice(cand, size=min(50, len(cand)), replace=False)
    lat = []
    for r in q:
        t = time.perf_counter()
        nb = neighbours(idx, int(r), k=10)
        knn_vote(idx, nb, k=5)
        latent_assignment(idx, nb)
        moa_enrichment(idx, nb)
        confidence(cal, "knn", 0.5)
        lat.append(time.perf_counter() - t)
    lat = np.array(lat) * 1000
    return {
        "wells": len(idx.wells),
        "compounds": len(comp),
        "dims": int(idx.vectors.shape[1]),
        "read_seconds": round(t_read, 1),
        "build_seconds": round(t_build, 1),
        "calibration_seconds": round(t_cal, 1),
        "query_ms_median": round(float(np.median(lat)), 1),
        "query_ms_p95": round(float(np.percentile(lat, 95)), 1),
        "queries": len(lat),
        "knn_loco_precision": float(cal["knn_correct"].mean()) if len(cal) else None,
        **({"exact_vs_in_memory": exact} if exact else {}),
    }


def step_activity(scale: float, data: Path, device: str) -> dict:
    import numpy as np

    from moa_core.retrieval import compound_activity, load_index

    p = _paths(data, scale)
    idx = load_index(p["root"] / "index")
    V = np.asarray(idx.vectors)
    wells = idx.wells
    comp_of_well = wells["compound"].to_numpy()
    control = wells["is_control"].to_numpy(bool)
    act, notes = compound_activity(V, comp_of_well, wells["Metadata_Plate"].to_numpy(), control, null_size=2000)
    out = {
        "perturbations": len(act),
        "active_share_q05": float((act["activity_q"] < 0.05).mean()),
        "mean_activity_map": float(act["activity_map"].mean()),
        "notes": "; ".join(notes.values()),
    }
    if scale <= 0.011:
        out["exact_vs_copairs"] = _check_activity(V, comp_of_well, wells, control, act)
    return out


def _check_activity(V, comp, wells, control, act) -> dict:
    """copairs end to end on the same unit vectors (its average_precision + mean_average_precision)."""
    import numpy as np
    import pandas as pd
    from copairs import map as cmap

    meta = pd.DataFrame({"compound": comp, "plate": wells["Metadata_Plate"].to_numpy(), "control": control})
    meta["negcon"] = meta["control"]
    ap = cmap.average_precision(
        meta,
        V,
        pos_sameby=["compound"],
        pos_diffby=[],
        neg_sameby=["plate"],
        neg_diffby=["negcon"],
        batch_size=20000,
        distance="correlation",
    )
    ap = ap[~ap["control"]]
    ref = ap.groupby("compound")["average_precision"].mean()
    ours = act.set_index("compound")["activity_map"]
    common = ref.index.intersection(ours.dropna().index)
    return {"perturbations_compared": len(common), "max_abs_map_diff": float(np.abs(ref[common] - ours[common]).max())}


def step_analyses(scale: float, data: Path, device: str) -> dict:
    import pandas as pd

    from moa_core.evaluation.compare import compare_methods
    from moa_core.splits import well_holdout_split
    from moa_core.storage import Warehouse

    p = _paths(data, scale)
    wh = Warehouse(p["wh"])

    def paper_wells(df):  # the paper's analysis wells: single-MOA treatments + 2 DMSO wells per plate
        wells = df[df["Metadata_single_moa"].fillna(False).astype(bool) & df["Metadata_pert_type"].eq("trt")]
        dmso = df[df["Metadata_moa"].eq("DMSO")].groupby("Metadata_Plate", group_keys=False).head(2)
        return pd.concat([wells, dmso])

    m, X, feats = _norm_matrix(wh, select=paper_wells)  # only those wells' features are read
    paper = pd.concat([m, pd.DataFrame(X, columns=feats)], axis=1)
    del X
    meta = [c for c in paper.columns if c.startswith("Metadata_")]
    sp, _ = well_holdout_split(paper[meta], seed=0)
    t0 = time.time()
    out = compare_methods({"CP published": paper}, sp, seed=0, blockwise=True)  # memory O(N) at every scale
    sec = time.time() - t0
    head = out[(out["analysis"].isin(["knn", "latent"])) & out["metric"].isin(["best_f1", "f1"])]
    res = {
        "seconds_suite": round(sec, 1),
        "test_wells": int((sp["Metadata_split"] == "test").sum()),
        **{f"{r.analysis}_{r.metric}": float(r.value) for r in head.itertuples()},
    }
    if scale <= 0.011:  # exactness: the all-pairs implementation on the same wells
        ref = compare_methods({"CP published": paper}, sp, seed=0, blockwise=False)
        key = ["method", "analysis", "metric", "parameter"]
        both = out.merge(ref, on=key, suffixes=("", "_ref"))
        both = both[both["value"].notna() & both["value_ref"].notna()]
        res["exact_vs_in_memory"] = {
            "results_compared": len(both),
            "results_only_one_side": abs(len(out) - len(ref)),
            "max_abs_diff": float((both["value"] - both["value_ref"]).abs().max()),
        }
    return res


def _phenoca_config(device: str):
    """The one IBP model of the ``phenoca`` and ``scaling`` steps: the 100 % catalogue entry's zoo (one
    residual MLP, depth 1, width 256), a sampled softmax over the molecules, the replicate split."""
    from moa_core.phenoca.config import StudyConfig

    return StudyConfig(
        depths=(1,),
        widths=(256,),
        epochs=4,
        probe_epochs=10,
        patience=2,
        n_boot=20,
        task_supervised=False,
        splits=("replicate",),
        num_threads=os.cpu_count(),
        device=device,
        ibp_sampled_classes=4096,
        ibp_val_limit=20_000,
    )


def step_phenoca(scale: float, data: Path, device: str) -> dict:
    from moa_core.phenoca.profiles import as_study_table, study_metadata
    from moa_core.phenoca.study import run_study
    from moa_core.storage import Warehouse

    p = _paths(data, scale)
    wh = Warehouse(p["wh"])
    m, X, feats = _norm_matrix(wh)
    prof = study_metadata(m, source="bench")
    del m
    cfg = _phenoca_config(device)
    logs: list[str] = []
    t0 = time.time()
    res = run_study(prof, config=cfg, log=logs.append, features=X, feature_names=feats)
    tab = res.table
    sec_study = round(time.time() - t0, 1)
    # the scaling step's "100" point is this very study (same data, config and seed): kept for it
    tab.to_parquet(p["out"] / "phenoca_results.parquet", index=False)
    (p["out"] / "phenoca_config.txt").write_text(repr(cfg))
    exact = None
    if scale <= 0.011:  # exactness: the same study on the whole table as one frame
        del X
        ref = run_study(as_study_table(_norm_table(wh), source="bench"), config=cfg).table
        key = ["model", "supervision", "probe", "task", "split", "metric"]
        both = tab.merge(ref, on=key, suffixes=("", "_ref"))
        both = both[both["value"].notna() & both["value_ref"].notna()]
        exact = {
            "results_compared": len(both),
            "results_only_one_side": abs(len(tab) - len(ref)),
            "max_abs_diff": float((both["value"] - both["value_ref"]).abs().max()),
        }
    top = tab[(tab["metric"] == "top10") & tab["task"].isin(["moa", "target"]) & (tab["probe"] != "knn")]
    return {
        "seconds_study": sec_study,
        "wells": len(prof),
        "molecules": int(prof["Metadata_JCP2022"].nunique()),
        **{f"{r.supervision}_{r.task}_top10": float(r.value) for r in top.itertuples()},
        **{k: v for k, v in res.summary.items() if isinstance(v, (int, float, str))},
        "log_tail": logs[-3:],
        **({"exact_vs_in_memory": exact} if exact else {}),
    }


#: The OOD axis of the scaling step: the share of the release's unannotated (OOD) molecules IBP trains on.
#: ood0 is the no-OOD baseline; the laws are fitted over ood1 → 100, 1 % → 100 % of the OOD molecules.
SCALING_KEYS = ("ood0", "ood1", "ood3", "ood10", "ood30", "100")


def step_scaling(scale: float, data: Path, device: str) -> dict:
    """The scaling study over the release's OOD axis: the ``phenoca`` step's study at every key of
    ``SCALING_KEYS`` (IBP on the annotated molecules plus a growing share of the OOD ones; the "100" point
    is the ``phenoca`` step's own study of the same release and config when it is there), then the
    scaling laws of :func:`moa_core.scaling.studies.fit_curves` on its IBP curves, with bootstrap
    intervals and back-tests that withhold the largest size. x = the OOD molecules trained on
    (``phenoca_points(..., ood_x="ood_molecules")``), Linsley et al.'s axis: it spans two decades
    (ood1 → 100), where the training molecules (annotated + OOD) span ~46x, since the annotated
    ones are in every model's training set; the ood0 point is the baseline without OOD molecules."""
    import pandas as pd

    from moa_core.phenoca.config import parse_scale
    from moa_core.phenoca.profiles import study_metadata
    from moa_core.phenoca.study import run_study
    from moa_core.scaling.studies import fit_curves, phenoca_points
    from moa_core.storage import Warehouse

    p = _paths(data, scale)
    cfg = _phenoca_config(device)
    kept, kept_cfg = p["out"] / "phenoca_results.parquet", p["out"] / "phenoca_config.txt"
    fresh = (  # written by the phenoca step after the last change of the warehouse, with this config
        kept.is_file()
        and kept_cfg.is_file()
        and kept_cfg.read_text() == repr(cfg)
        and kept.stat().st_mtime >= p["wh"].stat().st_mtime
    )
    m, X, feats = _norm_matrix(Warehouse(p["wh"]))
    prof = study_metadata(m, source="bench")
    del m
    tables, points = [], []
    for key in SCALING_KEYS:
        ood_share, rep_share = parse_scale(key)
        t0 = time.time()
        reused = fresh and (ood_share, rep_share) == (1.0, 1.0)
        if reused:
            t = pd.read_parquet(kept)  # the phenoca step's study of this release: the same run, not repeated
            prev = json.loads((p["out"] / "phenoca.json").read_text())
            sec = float(prev.get("seconds_study", float("nan")))
        else:
            t = run_study(
                prof, ood_share=ood_share, replicate_share=rep_share, config=cfg, features=X, feature_names=feats
            ).table
            sec = round(time.time() - t0, 1)
        t.insert(0, "fraction", key)
        t.insert(0, "dataset", f"jump_{scale:g}")
        tables.append(t)
        ibp = t[(t["supervision"] == "ibp") & (t["probe"] != "knn") & (t["split"] == "replicate")]
        top = ibp[ibp["metric"].eq("top10")].set_index("task")["value"]
        auc = ibp[ibp["task"].eq("discovery") & ibp["metric"].eq("auc")]["value"]
        points.append(
            {
                "key": key,
                "train_molecules": int(ibp["n_train_compounds"].iloc[0]),
                "ood_molecules": int(ibp["n_ood_compounds"].iloc[0]),
                "train_wells": int(ibp["n_train_wells"].iloc[0]),
                "seconds": sec,
                "from_phenoca_step": reused,
                **{f"ibp_{k}_top10": float(top[k]) for k in ("moa", "target") if k in top.index},
                **({"ibp_discovery_auc": float(auc.iloc[0])} if len(auc) else {}),
            }
        )
        print(f"scaling {key}: {points[-1]}", flush=True)
    table = pd.concat(tables, ignore_index=True)
    table.to_parquet(p["out"] / "scaling_results.parquet", index=False)
    pts = phenoca_points(table, ood_x="ood_molecules")
    laws = fit_curves(pts[pts["study"] == "phenoca_ood"], n_boot=500)
    laws.to_parquet(p["out"] / "scaling_laws.parquet", index=False)
    best = laws[laws["rank"].eq(1)] if "rank" in laws else laws.iloc[0:0]
    mols = [q["ood_molecules"] for q in points if q["ood_molecules"] > 0]
    return {
        "wells": len(prof),
        "sizes": len(mols),
        "ood_molecules_span": f"{min(mols):,} → {max(mols):,}",
        "span_factor": round(max(mols) / max(min(mols), 1), 1),
        "points": points,
        "laws": [
            {
                "task": r.task,
                "family": r.family,
                "form": r.form,
                "backtest_error": None if pd.isna(r.backtest_error) else round(float(r.backtest_error), 4),
                "r2": None if pd.isna(r.r2) else round(float(r.r2), 3),
                "asymptote": None if pd.isna(r.asymptote) else round(float(r.asymptote), 3),
                "asymptote_ci": [
                    None if pd.isna(v) else round(float(v), 3) for v in (r.asymptote_low, r.asymptote_high)
                ],
                "target": None if pd.isna(r.target) else round(float(r.target), 3),
                "n_needed": None if pd.isna(r.n_needed) else float(r.n_needed),
                "n_needed_ci": [None if pd.isna(v) else float(v) for v in (r.n_needed_low, r.n_needed_high)],
                "reliable": None if pd.isna(r.reliable) else bool(r.reliable),
                "flagged": None if pd.isna(r.flagged) else bool(r.flagged),
            }
            for r in best.itertuples(index=False)
        ],
    }


STEP_FUNCS = {n: globals()[f"step_{n}"] for n in STEPS}


def _child(step: str, scale: float, data: Path, device: str, out: Path) -> None:
    res = STEP_FUNCS[step](scale, data, device)
    out.write_text(json.dumps(res, default=str))


def _run_step(step: str, scale: float, data: Path, device: str) -> dict:
    p = _paths(data, scale)
    p["out"].mkdir(parents=True, exist_ok=True)
    out = p["out"] / f"{step}.json"
    out.unlink(missing_ok=True)
    t0 = time.time()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", step, "--scales", str(scale), "--data", str(data), "--device", device]
    )
    _, status, ru = os.wait4(proc.pid, 0)
    sec = time.time() - t0
    rc = os.waitstatus_to_exitcode(status)
    res = json.loads(out.read_text()) if out.is_file() else {}
    return {
        "step": step,
        "scale": scale,
        "seconds": round(sec, 1),
        "peak_rss_gib": round(ru.ru_maxrss / 2**20, 2),
        "rc": rc,
        **res,
    }


def growth(rows: list[dict]) -> list[dict]:
    """``b`` of ``time ∝ N^b`` and ``m`` of ``memory ∝ N^m`` between consecutive scales of each step."""
    out = []
    wells = {r["scale"]: r.get("wells") for r in rows if r["step"] == "generate"}
    for step in STEPS:
        rs = sorted((r for r in rows if r["step"] == step and r["rc"] == 0), key=lambda r: r["scale"])
        for a, b in zip(rs, rs[1:]):
            na, nb = wells.get(a["scale"]), wells.get(b["scale"])
            if not na or not nb or a["seconds"] <= 0:
                continue
            lr = math.log(nb / na)
            out.append(
                {
                    "step": step,
                    "from": a["scale"],
                    "to": b["scale"],
                    "time_exponent": round(math.log(b["seconds"] / a["seconds"]) / lr, 2),
                    "memory_exponent": round(
                        math.log(max(b["peak_rss_gib"], 1e-3) / max(a["peak_rss_gib"], 1e-3)) / lr, 2
                    ),
                }
            )
    return out


def _machine() -> dict:
    import platform
    import subprocess as sp

    try:
        commit = sp.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
        dirty = sp.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout
    except OSError:
        commit, dirty = "", ""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "commit": commit.strip() + ("+dirty" if dirty.strip() else ""),
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


#: What each step's row shows besides time and memory (its own figures).
_SHOW = {
    "generate": ["wells", "plates", "features", "compounds", "bytes_on_disk"],
    "load": ["rows", "features", "rows_per_s"],
    "normalize": [
        "normalize_seconds",
        "features_selected",
        "dropped_na_columns",
        "dropped_constant",
        "plates_without_dmso",
    ],
    "retrieval": ["compounds", "dims", "query_ms_median", "query_ms_p95", "knn_loco_precision"],
    "activity": ["perturbations", "active_share_q05", "mean_activity_map"],
    "analyses": ["test_wells", "knn_best_f1", "latent_f1", "seconds_suite"],
    "phenoca": [
        "wells",
        "molecules",
        "pca_components",
        "pca_explained_variance",
        "ibp_moa_top10",
        "ibp_target_top10",
        "none_moa_top10",
    ],
    "scaling": ["sizes", "ood_molecules_span", "span_factor"],
}


def _scaling_markdown(rows: list[dict]) -> list[str]:
    """The scaling step's points and its best-ranked law per curve (by back-test error)."""
    lines: list[str] = []
    for r in rows:
        if r["step"] != "scaling" or r.get("rc") != 0:
            continue
        lines += [
            "",
            f"## Scaling over the OOD axis at {r['scale']:g} (IBP, x = OOD molecules trained on)",
            "",
            "The laws are fitted over the keys with OOD molecules (ood0, the annotated molecules alone, is the "
            "baseline and has no place on the log axis).",
            "",
            "| key | OOD molecules | training molecules | training wells | seconds | MoA top-10 | target top-10 "
            "| discovery AUC |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for q in r.get("points", []):
            ood = q.get("ood_molecules")
            lines.append(
                f"| {q['key']} | {'–' if ood is None else f'{ood:,}'} | {q['train_molecules']:,} | "
                f"{q['train_wells']:,} | {_fmt(float(q['seconds']))}"
                + (" (the phenoca step's)" if q.get("from_phenoca_step") else "")
                + " | "
                + " | ".join(
                    _fmt(q[k]) if q.get(k) is not None else "–"
                    for k in ("ibp_moa_top10", "ibp_target_top10", "ibp_discovery_auc")
                )
                + " |"
            )
        lines += [
            "",
            "Best law per curve (ranked by back-test error: fitted without the largest size, scored on it; "
            "intervals from 500 bootstrap resamples):",
            "",
            "| task | form | back-test error | R² | asymptote (95 % CI) | target | N needed (95 % CI) | reliable |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for law in r.get("laws", []):
            lo, hi = law["asymptote_ci"]
            nlo, nhi = law["n_needed_ci"]

            def f(v):
                return "–" if v is None else _fmt(float(v))

            lines.append(
                f"| {law['task']} | {law['form']} | {f(law['backtest_error'])} | {f(law['r2'])} | "
                f"{f(law['asymptote'])} ({f(lo)} – {f(hi)}) | {f(law['target'])} | "
                f"{f(law['n_needed'])} ({f(nlo)} – {f(nhi)}) | {law['reliable']} |"
            )
    return lines


def render_markdown(result: dict) -> str:
    """The bench's results as the docs page ``docs/jump-scale.md`` (generated; not edited by hand)."""
    m = result.get("machine", {})
    lines = [
        "# JUMP scale: bench results",
        "",
        "<!-- Generated by `uv run python bench/bench_jump_scale.py --docs docs/jump-scale.md`; do not edit. -->",
        "",
        f"Last run at commit `{m.get('commit', '?')}` (each row names its own), {m.get('cores', '?')} cores, "
        f"{m.get('memory_gib', '?')} GiB, Python "
        f"{m.get('python', '?')}, finished {m.get('finished_at', '?')}. Each step ran in its own process; peak "
        "memory is that process's maximum resident set. Machines of the same kind differ by ~1.3x in speed. At "
        "1 % the normalize, retrieval, activity, analyses and phenoca processes also run the exactness checks "
        "against the in-memory code (a second computation each; their own times: `normalize_seconds`, "
        "`build_seconds`, `seconds_suite`, `seconds_total`), so those steps' growth exponents from 1 % are low.",
        "",
        "| scale | step | seconds | peak GiB | figures | commit |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        fig = ", ".join(f"{k} {_fmt(r[k])}" for k in _SHOW.get(r["step"], []) if r.get(k) is not None)
        status = "" if r.get("rc") == 0 else f" (failed, rc {r.get('rc')})"
        lines.append(
            f"| {r['scale']:g} | {r['step']}{status} | {_fmt(float(r['seconds']))} | {r['peak_rss_gib']:.2f} | {fig} "
            f"| `{r.get('commit', m.get('commit', '?'))}` |"
        )
    lines += ["", "## Totals (load to phenoca: every step but generate and the scaling study)", ""]
    lines += ["| scale | seconds | peak GiB |", "|---|---|---|"]
    for sc, t in result["totals"].items():
        lines.append(f"| {float(sc):g} | {_fmt(float(t['seconds']))} | {t['peak_rss_gib']} |")
    if result["growth"]:
        lines += [
            "",
            "## Growth (time ∝ N^b, memory ∝ N^m; N = wells)",
            "",
            "| step | scales | b | m |",
            "|---|---|---|---|",
        ]
        for x in result["growth"]:
            lines.append(
                f"| {x['step']} | {x['from']:g} → {x['to']:g} | {x['time_exponent']} | {x['memory_exponent']} |"
            )
    lines += _scaling_markdown(result["rows"])
    checks = [
        (r["scale"], r["step"], k, r[k])
        for r in result["rows"]
        for k in ("exact_vs_in_memory", "exact_vs_copairs")
        if isinstance(r.get(k), dict)
    ]
    if checks:
        lines += [
            "",
            "## Exactness against the in-memory code",
            "",
            "| scale | step | check | result |",
            "|---|---|---|---|",
        ]
        for sc, step, k, v in checks:
            lines.append(f"| {sc:g} | {step} | {k} | " + ", ".join(f"{a} {_fmt(b)}" for a, b in v.items()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="0.01,0.1,1")
    ap.add_argument("--data", default=str(REPO / ".moa_data" / "bench_jump_scale"))
    ap.add_argument("--steps", default="all")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the scales and steps this run does not repeat, from bench/results/jump_scale.json "
        "(or, when that is absent, from the JSON next to the --docs page)",
    )
    ap.add_argument("--docs", default=None, help="also render the results as this Markdown page (docs/jump-scale.md)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    data = Path(args.data).resolve()
    scales = [float(s) for s in args.scales.split(",")]
    if args.child:
        _child(args.child, scales[0], data, args.device, _paths(data, scales[0])["out"] / f"{args.child}.json")
        return 0
    steps = STEPS if args.steps == "all" else tuple(args.steps.split(","))
    rows = []
    commit = _machine()["commit"]
    for scale in scales:
        for step in steps:
            r = _run_step(step, scale, data, args.device)
            r["commit"] = commit
            rows.append(r)
            print(
                f"scale {scale:g} {step:<10} {r['seconds']:>8.1f} s  peak {r['peak_rss_gib']:>6.2f} GiB  rc {r['rc']}  "
                + json.dumps(
                    {
                        k: v
                        for k, v in r.items()
                        if k not in ("step", "scale", "seconds", "peak_rss_gib", "rc", "log_tail")
                    },
                    default=str,
                )[:400],
                flush=True,
            )
            partial = REPO / "bench" / "results" / "jump_scale.partial.json"  # what a cut run leaves behind
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"rows": rows}, indent=2, default=str))
            if r["rc"] != 0:
                print(f"step {step} failed at scale {scale:g}; later steps of this scale need it", file=sys.stderr)
                break
    res_path = REPO / "bench" / "results" / "jump_scale.json"
    docs_json = Path(args.docs).with_suffix(".json") if args.docs else None
    src = res_path if res_path.is_file() else docs_json
    if args.merge and src is not None and src.is_file():  # the rows this run did not repeat, from an earlier run
        done = {(r["scale"], r["step"]) for r in rows}
        earlier = [r for r in json.loads(src.read_text())["rows"] if (r["scale"], r["step"]) not in done]
        rows = sorted(earlier + rows, key=lambda r: (r["scale"], STEPS.index(r["step"])))
        scales = sorted({r["scale"] for r in rows})
    g = growth(rows)
    print("\ngrowth (time ∝ N^b, memory ∝ N^m; N = wells):")
    for x in g:
        print(f"  {x['step']:<10} {x['from']:g} -> {x['to']:g}: b = {x['time_exponent']}, m = {x['memory_exponent']}")
    totals = {}
    for scale in scales:
        rs = [r for r in rows if r["scale"] == scale and r["step"] in BUDGET_STEPS]
        totals[str(scale)] = {
            "seconds": round(sum(r["seconds"] for r in rs), 1),
            "peak_rss_gib": max((r["peak_rss_gib"] for r in rs), default=None),
        }
        print(
            f"scale {scale:g}: load to phenoca {totals[str(scale)]['seconds']:.0f} s, peak "
            f"{totals[str(scale)]['peak_rss_gib']} GiB"
        )
    res_dir = REPO / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "growth": g, "totals": totals, "machine": _machine()}
    (res_dir / "jump_scale.json").write_text(json.dumps(result, indent=2, default=str))
    if args.docs:  # the page and, next to it, the rows it was rendered from (what a later --merge starts from)
        Path(args.docs).write_text(render_markdown(result))
        docs_json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.docs} and {docs_json}")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
