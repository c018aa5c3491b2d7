"""MP vs CP: the paper's analyses side by side for one (dataset, fraction) partition."""

import sys
from pathlib import Path

import plotly.express as px
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dashboard import common, queries  # noqa: E402

COLORS = {"MP": "#d62728", "CP": "#1f77b4", "CP published": "#9467bd", "DP recipe (trained here)": "#2ca02c"}
st.title("Method comparison: MP vs CP")

common.require_snapshot()
parts = queries.evaluated_partitions()
if parts.empty:
    st.warning("The snapshot holds no evaluation results yet.")
    st.stop()

c1, c2 = st.columns(2)
dataset = c1.selectbox("Dataset", sorted(parts["dataset"].unique()))
fraction = c2.selectbox("Training-data fraction (%)", sorted(parts[parts["dataset"] == dataset]["fraction"].unique(),
                                                             key=lambda f: -float(f)))
res = queries.evaluation(dataset, fraction)

st.subheader("Headline metrics")
st.caption("Test wells only; DMSO and single-compound MOAs excluded; 95% bootstrap CIs over wells in brackets.")
st.dataframe(queries.headline(res), hide_index=True, width="stretch")

left, right = st.columns(2)
enr = queries.curve(res, "enrichment", "odds_ratio")
if not enr.empty:
    left.plotly_chart(
        px.line(enr, x="parameter", y="value", color="method", markers=True, color_discrete_map=COLORS,
                labels={"parameter": "PCC percentile threshold", "value": "Enrichment (odds ratio)"},
                title="Enrichment of same-MOA pairs among strongly correlated pairs"),
        key="enrichment",
    )
metric = right.radio("k-NN metric", ["f1", "precision", "recall"], horizontal=True)
knn = queries.curve(res, "knn", metric)
if not knn.empty:
    right.plotly_chart(
        px.line(knn, x="parameter", y="value", color="method", color_discrete_map=COLORS,
                labels={"parameter": "k (nearest wells)", "value": f"weighted {metric}"},
                title=f"k-NN MOA prediction over every k ({metric})"),
        key="knn",
    )

groups = res[res["analysis"].isin(["intra_inter", "groups"]) & res["metric"].str.endswith("mean")]
if not groups.empty:
    st.plotly_chart(
        px.bar(groups, x="metric", y="value", color="method", barmode="group", color_discrete_map=COLORS,
               error_y=None, title="Mean pairwise PCC by group"),
        key="groups",
    )

cls = queries.classification_table(res)
if not cls.empty:
    st.subheader("Image-field classification (MP)")
    st.caption("Micro-averaged AUPRC with the prevalence baseline and accuracy with the 1/#classes baseline, "
               "overall and split by edge wells, cell line and timepoint.")
    st.dataframe(cls.round(3), hide_index=True)

ho = queries.holdout(dataset)
if not ho.empty:
    st.subheader("Held-out compounds")
    st.caption("One compound per MOA never seen in training; MOA predicted from training-compound MOA medians.")
    topk = ho[ho["metric"].isin(["top_k_accuracy", "random_baseline"])].copy()
    topk["series"] = topk["method"] + " " + topk["analysis"].str.replace("holdout_", "") + " vote"
    topk.loc[topk["metric"] == "random_baseline", "series"] = "random"
    topk = topk.drop_duplicates(["series", "parameter"])
    st.plotly_chart(
        px.line(topk, x="parameter", y="value", color="series", markers=True,
                labels={"parameter": "k", "value": "top-k accuracy"}, title="Top-k accuracy on held-out compounds"),
        key="holdout",
    )

st.subheader("All results")
analyses = sorted(res["analysis"].unique())
pick = st.multiselect("Analyses", analyses, default=analyses)
st.dataframe(res[res["analysis"].isin(pick)].drop(columns=["dataset", "fraction"]), hide_index=True, width="stretch")
