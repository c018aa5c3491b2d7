"""Materialize every asset for one (dataset, fraction) partition and say how to look at it.

    uv run python -m orchestration.demo [--dataset synthetic_cpjump1] [--fraction 100]

Runs the jobs (ingest + image store -> DP recipe -> train/eval at every ``--fractions``
(the replicate-fraction study) -> compound holdout -> publish) against a persistent Dagster
instance under ``$DAGSTER_HOME`` (default ``<data dir>/dagster_home``), so the runs,
materializations and their metadata show up in the Dagster UI afterwards.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from moa_core.datasets import DEFAULT_DATASET, DEFAULT_FRACTION, FRACTIONS

DEMO_FRACTIONS = "100,50,25"
DEMO_PROFILES = "synthetic_jump_profiles_small"
DEMO_SCALES = "ood0,ood10,ood25,100"


def _asset_seconds(result) -> list[tuple[str, float | None]]:
    rows = []
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        sec = mat.metadata.get("seconds")
        rows.append((mat.asset_key.to_user_string(), getattr(sec, "value", None)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=DEFAULT_DATASET, help="a synthetic or image dataset of the catalogue")
    ap.add_argument("--fractions", default=DEMO_FRACTIONS,
                    help=f"comma-separated training-replicate fractions to train and evaluate (of {list(FRACTIONS)}); "
                         f"the first is the headline, the DP recipe trains at {DEFAULT_FRACTION}")
    ap.add_argument("--profiles", default=DEMO_PROFILES,
                    help="the profile dataset of the Pheno-CA part ('' skips it)")
    ap.add_argument("--scales", default=DEMO_SCALES,
                    help="comma-separated data scales of the Pheno-CA zoo (OOD shares ood0..ood50, replicate shares)")
    ap.add_argument("--data-dir", default=None, help="where files and the warehouse go (default: $MOA_DATA_DIR or .moa_data)")
    args = ap.parse_args(argv)
    fractions = [f.strip() for f in args.fractions.split(",") if f.strip()]
    bad = [f for f in fractions if f not in FRACTIONS]
    if bad or not fractions:
        ap.error(f"--fractions: unknown fraction(s) {bad}; use some of {list(FRACTIONS)}")

    if args.data_dir:
        os.environ["MOA_DATA_DIR"] = str(Path(args.data_dir).resolve())
    from orchestration.resources import default_data_dir  # after MOA_DATA_DIR is set

    data_dir = Path(default_data_dir()).resolve()
    from moa_core.datasets import load_catalogue
    from orchestration.definitions import defs
    from orchestration.materialize import prepare_instance, run_job

    catalogue = load_catalogue(data_dir)
    if args.dataset not in catalogue or not catalogue[args.dataset].has_images:
        ap.error(f"--dataset must be an image dataset of the catalogue: "
                 f"{sorted(n for n, e in catalogue.items() if e.has_images)}")
    instance = prepare_instance(data_dir)
    home = Path(os.environ["DAGSTER_HOME"])
    t_all = time.time()
    timings: list[tuple[str, float | None]] = []
    scales = [f.strip() for f in args.scales.split(",") if f.strip()]
    plan = [("ingest_job", args.dataset, DEFAULT_FRACTION), ("dp_recipe_job", args.dataset, DEFAULT_FRACTION)]
    plan += [("train_eval_job", args.dataset, f) for f in fractions]
    plan += [("holdout_job", args.dataset, DEFAULT_FRACTION), ("scaling_job", args.dataset, DEFAULT_FRACTION)]
    if args.profiles:
        plan += [("phenoca_inputs_job", args.profiles, DEFAULT_FRACTION)]
        plan += [("phenoca_job", args.profiles, s) for s in scales] + [("scaling_job", args.profiles, DEFAULT_FRACTION)]
        if DEFAULT_FRACTION in scales:  # the explorer's indexes of the profile dataset (its profiles and IBP)
            plan += [("retrieval_job", args.profiles, DEFAULT_FRACTION)]
    plan += [("publish_job", args.dataset, DEFAULT_FRACTION)]
    for job_name, dataset, fraction in plan:
        t0 = time.time()
        print(f"[demo] {job_name} dataset={dataset} fraction={fraction} ...", flush=True)
        result = run_job(defs, instance, job_name, dataset, fraction)
        if not result.success:
            for ev in result.all_events:
                if ev.is_step_failure:
                    print(f"[demo] {ev.step_key} failed: {ev.event_specific_data.error.message.strip()}",
                          file=sys.stderr)
            return 1
        timings += [(f"{name} [{dataset if job_name == 'scaling_job' else fraction}]"
                     if job_name in ("train_eval_job", "phenoca_job", "scaling_job", "retrieval_job") else name, sec)
                    for name, sec in _asset_seconds(result)]
        print(f"[demo] {job_name} done in {time.time() - t0:.0f} s", flush=True)
    total = time.time() - t_all

    import pandas as pd

    from moa_core.storage import Warehouse

    wh = Warehouse(data_dir / "snapshot" / "warehouse.duckdb", read_only=True)
    res = wh.read(
        "SELECT method, analysis, metric, parameter, value FROM evaluation_results WHERE dataset = ? AND fraction = ? "
        "AND ((analysis = 'knn' AND metric IN ('best_f1', 'best_k')) OR (analysis = 'latent' AND metric = 'f1') "
        "OR (analysis = 'intra_inter' AND metric = 'delta') OR (analysis = 'enrichment' AND metric = 'odds_ratio' "
        "AND parameter = 99.0) OR (analysis = 'logistic' AND metric = 'f1') OR (analysis = 'map_consistency' "
        "AND metric = 'mean_map')) ORDER BY analysis, metric, method",
        [args.dataset, fractions[0]],
    )
    print("\nAsset wall times (s):")
    for name, sec in timings:
        print(f"  {name:<28} {sec if sec is not None else '-'}")
    print(f"  {'total (' + str(len(plan)) + ' runs)':<28} {total:.0f}")
    print("\nHeadline numbers (test wells, DMSO and single-compound MOAs excluded):")
    if not res.empty:
        res["metric"] = [m if pd.isna(p) or m == "best_f1" else f"{m}@{p:g}" for m, p in zip(res["metric"], res["parameter"])]
        piv = res.pivot_table(index=["analysis", "metric"], columns="method", values="value", aggfunc="first")
        print(piv.round(4).to_string())
    ck = wh.read("SELECT model, fraction, best_epoch, best_val_score, warnings FROM checkpoints WHERE dataset = ? "
                 "ORDER BY model, fraction DESC", [args.dataset])
    if not ck.empty:
        print("\nCheckpoints (best epoch, well balanced validation accuracy without DMSO):")
        print(ck.round(3).to_string(index=False))
    curve = wh.read(
        "SELECT method, fraction, analysis, value, ci_low, ci_high FROM evaluation_results WHERE dataset = ? AND "
        "((analysis = 'knn' AND metric = 'best_f1') OR (analysis = 'latent' AND metric = 'f1'))", [args.dataset])
    if curve["fraction"].nunique() > 1:
        print("\nReplicate-fraction study (test wells; value [95% CI]):")
        curve["cell"] = [f"{v:.3f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in zip(curve["value"], curve["ci_low"],
                                                                           curve["ci_high"])]
        curve["fraction"] = curve["fraction"].astype(int)
        print(curve.pivot_table(index=["analysis", "method"], columns="fraction", values="cell",
                                aggfunc="first").to_string())
    _print_phenoca(wh, args.dataset, args.profiles)
    if wh.has_table("retrieval_indexes"):
        ri = wh.read("SELECT dataset, fraction, method, n_wells, n_compounds, dim, knn_loco_precision, "
                     "latent_loco_precision, n_calibration FROM retrieval_indexes ORDER BY dataset, fraction DESC, "
                     "method")
        print("\nRetrieval indexes (explorer; leave-one-compound-out precision of the predicted MOA, k-NN k=5 and "
              "class latent assignment):")
        print(ri.round(3).to_string(index=False))
    print(f"""
Look at it:
  Dagster UI:  DAGSTER_HOME={home} uv run dagster dev -w workspace.yaml   # http://127.0.0.1:3000
  Dashboard:   MOA_DATA_DIR={data_dir} uv run python -m dashboard.serve   # http://localhost:8501
""")
    return 0


def _print_phenoca(wh, image_dataset: str, profiles: str) -> None:
    """The Pheno-CA table (IBP vs task-supervised vs the profiles) and the best scaling law of every curve."""
    import pandas as pd

    if profiles and "phenoca_results" in wh.tables():
        res = wh.read("SELECT * FROM phenoca_results WHERE dataset = ? AND metric IN ('top10', 'auc', 'cross_entropy') "
                      "AND probe != 'knn'", [profiles])
        if not res.empty:
            res["cell"] = [f"{v:.3f}" for v in res["value"]]
            res["family"] = res["supervision"] + "/" + res["model"]
            print(f"\nPheno-CA on {profiles} (test wells; top-10 accuracy, discovery AUC, molecule CE):")
            for frac, g in res.groupby("fraction"):
                print(f"  data scale {frac}:")
                t = g.pivot_table(index=["split", "task", "metric"], columns="family", values="value", aggfunc="first")
                print(t.round(3).to_string())
    if "scaling_laws" in wh.tables():
        laws = wh.read("SELECT dataset, study, task, family, form, n_needed, n_needed_low, n_needed_high, target, "
                       "p_reachable, backtest_error, reliable, reason FROM scaling_laws WHERE dataset IN (?, ?) AND "
                       "(rank = 1 OR (rank IS NULL AND form = 'power_floor' AND study = 'mp_fractions')) "
                       "ORDER BY dataset, study, task, family", [image_dataset, profiles or image_dataset])
        if not laws.empty:
            print("\nScaling laws (best form by back-test error, or the power law with a floor where too few sizes "
                  "allow a back-test; N needed for the target with 95% CI):")
            with pd.option_context("display.width", 200, "display.max_colwidth", 60):
                print(laws.round(4).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
