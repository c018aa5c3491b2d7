"""Model health: learning curves, checkpoint selection and warnings, and the replicate-fraction study."""

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard import common, queries
from dashboard.style import method_color

st.title("Model training and the replicate-fraction study")

common.require_snapshot()
ck_all = (
    queries.query("SELECT DISTINCT dataset FROM checkpoints ORDER BY dataset")
    if queries.has_table("checkpoints")
    else None
)
if ck_all is None or ck_all.empty:
    st.warning("The snapshot holds no trained model yet: materialize `mp_checkpoint` (train_eval_job).")
    st.stop()
dataset = st.selectbox("Dataset", ck_all["dataset"].tolist())

ck = queries.checkpoints(dataset)
st.subheader("Checkpoints")
st.caption(
    "Selected on the validation split's balanced accuracy at well level with DMSO excluded "
    "(chance = 1 / number of non-DMSO classes)."
)
bad = ck[ck["warnings"].ne("none")]
for _, r in bad.iterrows():
    st.warning(f"{r['model']} (fraction {r['fraction']} %): {r['warnings']}")
show = ck[
    [
        "model",
        "fraction",
        "best_epoch",
        "best_val_score",
        "classes",
        "train_fields",
        "val_fields",
        "selected_on",
        "warnings",
        "seconds",
    ]
].rename(
    columns={
        "best_epoch": "best epoch",
        "best_val_score": "best validation score",
        "train_fields": "training fields/cells",
        "val_fields": "validation fields/cells",
        "selected_on": "selected on",
        "seconds": "training time (s)",
    }
)
common.table(show, "checkpoints", key="mt_checkpoints")

hist = queries.training_history(dataset)
if not hist.empty:
    st.subheader("Learning curves")
    c1, c2 = st.columns(2)
    models = sorted(hist["model"].unique())
    model = c1.selectbox("Model", models)
    fracs = sorted(hist[hist["model"] == model]["fraction"].unique(), key=queries.fraction_sort_key)
    frac = c2.selectbox("Fraction (%)", fracs)
    h = hist[(hist["model"] == model) & (hist["fraction"] == frac)]
    acc = h[h["curve"] != "train loss"]
    fig = px.line(
        acc,
        x="epoch",
        y="value",
        color="curve",
        markers=True,
        labels={"value": "accuracy", "curve": ""},
        title=f"{model}, fraction {frac} (% of training replicates; 's<k>': its seed replicate k)",
    )
    k = ck[(ck["model"] == model) & (ck["fraction"] == frac)]["classes"]
    if len(k):
        n = max(1, int(k.iloc[0]) - 1)
        fig.add_hline(y=1 / n, line_dash="dot", annotation_text=f"chance (1/{n})")
    st.plotly_chart(fig, width="stretch")

curve = queries.fraction_curve(dataset)
if not curve.empty and curve["fraction_pct"].nunique() > 1:
    st.subheader("Replicate-fraction study (Wong et al. ESI Fig. 10)")
    st.caption(
        "Each fraction keeps that share of every compound's training replicate wells (nested); every method "
        "is scored on the same test wells. CP's profiles need no training (flat), except its logistic "
        "regression, which trains on the fraction's wells. Bands: 95% bootstrap CIs over wells (seed 0). "
        "Open markers: seed replicates (fraction keys such as 50s1: another training seed and draw of the wells); "
        "the table gives the mean over the seeds of each fraction."
    )
    metric = st.radio("Metric", sorted(curve["metric_label"].unique()), horizontal=True)
    c = curve[curve["metric_label"] == metric]
    fig = go.Figure()
    for method, runs in c.groupby("method"):
        color = method_color(method)
        g = runs[runs["seed"].eq(0)]
        if g["ci_low"].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=list(g["fraction_pct"]) + list(g["fraction_pct"])[::-1],
                    y=list(g["ci_high"]) + list(g["ci_low"])[::-1],
                    fill="toself",
                    line={"width": 0},
                    fillcolor=color,
                    opacity=0.15,
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
        fig.add_trace(
            go.Scatter(x=g["fraction_pct"], y=g["value"], mode="lines+markers", name=method, line={"color": color})
        )
        seeds = runs[runs["seed"].gt(0)]
        if not seeds.empty:
            fig.add_trace(
                go.Scatter(
                    x=seeds["fraction_pct"],
                    y=seeds["value"],
                    mode="markers",
                    marker={"color": color, "symbol": "circle-open", "size": 9},
                    name=f"{method} (seed replicates)",
                    legendgroup=method,
                )
            )
    fig.update_layout(xaxis_title="training replicates kept (%)", yaxis_title=metric, xaxis_type="log")
    st.plotly_chart(fig, width="stretch")
    piv = c.pivot_table(index="fraction_pct", columns="method", values="value", aggfunc="mean").reset_index()
    piv["fraction_pct"] = piv["fraction_pct"].round().astype(int)
    common.table(
        piv.rename(columns={"fraction_pct": "training replicates kept (%)"}), "fraction study", key="mt_fraction"
    )
