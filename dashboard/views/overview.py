"""Overview: what the snapshot holds, for which dataset and release, when, from which code; model health;
missing partitions and how to backfill them."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import common, queries
from dashboard.queries import MODEL_LABELS
from dashboard.style import EMPTY, method_color, sig3

#: The job that materializes each partitioned asset (orchestration/defs/jobs.py), for backfill instructions.
ASSET_JOBS = {
    "raw_images": "ingest_job",
    "cp_profiles": "ingest_job",
    "cp_embeddings": "ingest_job",
    "splits": "ingest_job",
    "compound_holdout_splits": "ingest_job",
    "image_store": "ingest_job",
    "published_profiles": "published_job",
    "published_evaluation": "published_job",
    "mp_checkpoint": "train_eval_job",
    "mp_embeddings": "train_eval_job",
    "evaluation_results": "train_eval_job",
    "retrieval_index": "train_eval_job (or retrieval_job)",
    "dp_checkpoint": "dp_recipe_job",
    "dp_embeddings": "dp_recipe_job",
    "mp_holdout_checkpoint": "holdout_job",
    "mp_holdout_embeddings": "holdout_job",
    "holdout_results": "holdout_job",
    "phenoca_profiles": "phenoca_inputs_job",
    "phenoca_results": "phenoca_job",
    "scaling_laws": "scaling_job",
}

st.title("MOA profiling from Cell Painting images")
st.markdown(
    "MOAProfiler (a 5-channel EfficientNet-B0 trained to classify each field's mechanism of action), "
    "CellProfiler-style profiles, a DeepProfiler-style recipe trained here and Pheno-CA's IBP-pretrained MLPs, "
    "evaluated with the analyses of Wong et al. (2023) and Linsley et al. **Compound / MOA explorer**: look a "
    "compound up; **Method comparison**: every method side by side; **Model training**: learning curves; "
    "**Scaling laws**: how much data reaches a target."
)
common.require_snapshot()
tables = queries.tables()

# ---- the snapshot ----------------------------------------------------------------------------------------------
sig = queries.signature()
pub = queries.query("SELECT * FROM publication") if "publication" in tables else pd.DataFrame()
when = pub["published_at"].iloc[0] if not pub.empty else pd.Timestamp(sig[3], unit="ns")
version = pub["code_version"].iloc[0] if not pub.empty else EMPTY
st.markdown(
    f"**Snapshot published** {pd.Timestamp(when).strftime('%Y-%m-%d %H:%M:%S')} \u00b7 **code version** "
    f"`{version}` \u00b7 **{len(tables)} tables**, {sig[2] / 1e6:.1f} MB",
    help="Code version: package version + git commit of the code that published the snapshot ('.dirty': "
    "uncommitted changes). Each table's own code version is in the last table of this page.",
)
st.caption(f"`{sig[0]}`" + (f" \u00b7 Dagster run `{pub['run_id'].iloc[0]}`" if not pub.empty else ""))

# ---- datasets ----------------------------------------------------------------------------------------------------
st.subheader("Datasets")
if "datasets" in tables:
    ds = queries.query("SELECT * FROM datasets ORDER BY dataset")
    if "retrieval_indexes" in tables:
        idx = queries.query(
            "SELECT dataset, string_agg(DISTINCT method, ', ' ORDER BY method) AS methods, "
            "max(n_compounds) AS perturbations, max(n_wells) AS wells FROM retrieval_indexes "
            "GROUP BY dataset"
        )
        ds = ds.merge(idx, on="dataset", how="left")
    if "evaluation_results" in tables:
        ev = queries.query(
            "SELECT dataset, string_agg(DISTINCT fraction, ', ' ORDER BY fraction) AS "
            "evaluated_fractions FROM evaluation_results GROUP BY dataset"
        )
        ds = ds.merge(ev, on="dataset", how="left")
    show = [
        c
        for c in [
            "dataset",
            "kind",
            "release",
            "source",
            "project",
            "batch",
            "wells",
            "perturbations",
            "methods",
            "evaluated_fractions",
            "description",
        ]
        if c in ds.columns
    ]
    common.table(
        ds[show],
        "datasets",
        key="datasets",
        caption="Datasets in use (with at least one materialized asset); release = the JUMP release a "
        "gallery dataset was registered from (none for the embedded synthetic datasets).",
    )
else:
    st.info("This snapshot predates the dataset list: republish it (publish_job) to see datasets and releases.")

# ---- model health ------------------------------------------------------------------------------------------------
st.subheader("Model health")
if "checkpoints" in tables:
    ck = queries.query("SELECT * FROM checkpoints ORDER BY dataset, model, fraction")
    ck["model"] = ck["model"].map(lambda m: MODEL_LABELS.get(m, m))
    ck["chance"] = 1.0 / (ck["classes"].clip(lower=2) - 1)
    flagged = ck[ck["warnings"].fillna("none").ne("none")]
    for _, r in flagged.iterrows():
        st.warning(
            f"**{r['model']}** ({r['dataset']}, fraction {r['fraction']} %): {r['warnings']} "
            f"(best validation score {sig3(r['best_val_score'])}, chance {sig3(r['chance'])})."
        )
    if flagged.empty:
        st.success("No model warning: every checkpoint peaked before its last epoch and above chance.")
    show = ck[
        ["dataset", "model", "fraction", "best_epoch", "best_val_score", "chance", "selected_on", "warnings", "seconds"]
    ].rename(
        columns={
            "best_epoch": "best epoch",
            "best_val_score": "best validation score",
            "selected_on": "selected on",
            "seconds": "training time (s)",
        }
    )
    with st.expander(f"Checkpoints ({len(show)}: best epoch, validation score, chance, training time)"):
        common.table(show, "checkpoints", key="checkpoints")
    if "training_history" in tables:
        h = queries.query(
            "SELECT dataset, model, fraction, epoch, val_balanced_accuracy FROM training_history "
            "WHERE fraction = '100' ORDER BY dataset, model, epoch"
        )
        if not h.empty and h["val_balanced_accuracy"].notna().any():
            fig = go.Figure()
            for (d, m), g in h.groupby(["dataset", "model"]):
                label = MODEL_LABELS.get(m, m)
                fig.add_trace(
                    go.Scatter(
                        x=g["epoch"],
                        y=g["val_balanced_accuracy"],
                        mode="lines+markers",
                        name=f"{label} ({d})",
                        line={"color": method_color(label)},
                    )
                )
            fig.update_layout(
                height=300,
                margin={"t": 30, "b": 10},
                xaxis_title="epoch",
                yaxis_title="validation balanced accuracy",
                title="Learning curves at 100 %",
            )
            st.plotly_chart(fig, width="stretch", key="health_curves")
            st.caption("Details, chance lines and every fraction: the Model training page.")
else:
    st.info("No trained model in this snapshot yet (materialize `mp_checkpoint` through train_eval_job).")

# ---- missing partitions -------------------------------------------------------------------------------------------
st.subheader("Missing partitions and how to backfill them")
if "partition_status" in tables:
    ps = queries.query("SELECT * FROM partition_status ORDER BY asset, dataset, fraction")
    miss = ps[~ps["materialized"].astype(bool)]
    have = ps[ps["materialized"].astype(bool)]
    st.caption(
        f"{len(have)} partitions materialized, {len(miss)} missing, over the datasets in use (for each asset "
        "and dataset, the partitions of the kind already started: replicate fractions or Pheno-CA OOD shares)."
    )
    if miss.empty:
        st.success("Nothing missing.")
    else:
        summary = miss.groupby(["asset", "dataset"])["fraction"].agg(lambda s: ", ".join(s)).reset_index()
        summary = summary.rename(columns={"fraction": "missing fractions"})
        common.table(summary, "missing partitions", key="missing")
        first = miss.iloc[0]
        job = ASSET_JOBS.get(first["asset"], "<the job that holds the asset>")
        st.markdown(
            "**Backfill from the Dagster UI** (`uv run dagster dev`, then http://localhost:3000): *Assets* \u2192 "
            "pick the asset (e.g. `{a}`) \u2192 *Materialize* \u2192 select the partitions (dataset \u00d7 fraction) "
            "\u2192 *Launch backfill*; its upstream assets must be materialized for those partitions (the asset "
            "graph shows them). **Or from a shell**, one partition:\n\n"
            "```\nuv run dagster asset materialize -m orchestration.definitions --select {a} --partition "
            "'{k}'\nuv run python -m orchestration.materialize {d} {job} --fraction {f}\n```\n"
            "then publish the snapshot again (`publish_job`).".format(
                a=first["asset"],
                k=first["partition_key"],
                d=first["dataset"],
                f=first["fraction"] or "100",
                job=job.split()[0],
            )
        )
        st.caption(
            "Jobs by asset: "
            + "; ".join(f"`{a}` \u2192 {j}" for a, j in ASSET_JOBS.items() if a in set(miss["asset"]))
            + "."
        )
else:
    st.info("This snapshot predates the partition status: republish it (publish_job).")

# ---- what is materialized ----------------------------------------------------------------------------------------
st.subheader("What is materialized")
if "asset_status" in tables:
    a = queries.query('SELECT * FROM asset_status ORDER BY "group", asset')
    done = int((a["materialized_partitions"] > 0).sum())
    st.caption(f"{done} of {len(a)} assets materialized at least once (from the Dagster instance at publication).")
    with st.expander("Every asset: partitioning, materialized partitions, latest materialization and run"):
        common.table(
            a.rename(
                columns={
                    "partitioned_by": "partitioned by",
                    "materialized_partitions": "materialized partitions",
                    "latest_partition": "latest partition",
                    "latest_at": "latest materialization",
                    "latest_run_id": "run",
                }
            ),
            "assets",
            key="assets",
        )
if "catalog" in tables:
    with st.expander("Every table written to the warehouse (rows, columns, when, code version)"):
        cat = queries.query("SELECT * FROM catalog ORDER BY written_at DESC")
        common.table(cat, "tables", key="catalog")
