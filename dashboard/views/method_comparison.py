"""Method comparison: every method of the snapshot on the same test wells, per (dataset, fraction).

Headline metrics with 95% CIs and chance baselines; enrichment and k-NN curves (CI bands where the
snapshot stores them, chance lines); held-out top-k with the random baseline; replicate-fraction
curves; mean PCC per pair group; per-MOA F1 and a confusion matrix; a PCA map coloured by MOA and by
plate; every result as a table. One colour per method (``dashboard.style``), human labels, 3
significant figures, p-values in scientific notation.
"""

import numpy as np
import pandas as pd
import plotly.colors as pcolors
import plotly.graph_objects as go
import streamlit as st

from dashboard import common, queries
from dashboard import comparison_sql as csql
from dashboard import comparison_tables as cq
from dashboard.style import color_map, method_color, rgba, sig3, sort_methods

GREY = method_color("random")
HOVER = "%{y:.3g}"

st.title("Method comparison")
common.require_snapshot()
SIG = queries.signature()


# ---------------------------------------------------------------------- cached reads (keyed on the snapshot)
@st.cache_data(show_spinner=False, max_entries=64)
def _partitions(sig: tuple) -> pd.DataFrame:
    return csql.partitions()


@st.cache_data(show_spinner=False, max_entries=64)
def _dataset_results(sig: tuple, dataset: str) -> pd.DataFrame:
    return csql.dataset_results(dataset)


@st.cache_data(show_spinner=False, max_entries=64)
def _chance(sig: tuple, dataset: str, fraction: str) -> cq.Chance:
    return cq.chance(
        csql.chance_rows(dataset, fraction), cq.results(dataset, fraction, all_fractions=_dataset_results(sig, dataset))
    )


@st.cache_data(show_spinner=False, max_entries=64)
def _per_moa(sig: tuple, dataset: str, fraction: str) -> pd.DataFrame:
    return csql.per_moa(dataset, fraction)


@st.cache_data(show_spinner=False, max_entries=64)
def _confusion(sig: tuple, dataset: str, fraction: str) -> pd.DataFrame:
    return csql.confusion(dataset, fraction)


@st.cache_data(show_spinner=False, max_entries=64)
def _maps(sig: tuple, dataset: str, fraction: str) -> pd.DataFrame:
    return csql.embedding_maps(dataset, fraction)


@st.cache_data(show_spinner=False, max_entries=64)
def _holdout(sig: tuple, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return cq.holdout_topk(dataset)


@st.cache_data(show_spinner=False, max_entries=64)
def _fractions(sig: tuple, dataset: str) -> pd.DataFrame:
    return cq.fraction_curves(_dataset_results(sig, dataset))


# ---------------------------------------------------------------------- plot helpers
def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 380, *, legend_below: bool = False) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        height=height,
        legend_title_text="",
        margin=dict(l=10, r=10, t=50, b=10),
        hovermode="x unified",
    )
    if legend_below:  # narrow (two-column) charts keep their plot width
        fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0), height=height + 90)
    return fig


def _line(
    fig: go.Figure,
    df: pd.DataFrame,
    x: str,
    name: str,
    color: str,
    *,
    dash: str | None = None,
    group: str | None = None,
    markers: bool = False,
) -> None:
    """A method's curve: a 95% CI band when every point has a CI, error bars when only some do."""
    coverage = cq.ci_coverage(df)
    xs, ys = df[x].to_numpy(float), df["value"].to_numpy(float)
    if coverage == "all":
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=df["ci_high"],
                mode="lines",
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
                legendgroup=group or name,
                name=f"{name} 95% CI",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=df["ci_low"],
                mode="lines",
                line=dict(width=0),
                fill="tonexty",
                fillcolor=rgba(color, 0.18),
                hoverinfo="skip",
                showlegend=False,
                legendgroup=group or name,
                name=f"{name} 95% CI",
            )
        )
    error = None
    if coverage == "some":
        error = dict(
            type="data",
            array=(df["ci_high"] - df["value"]).to_numpy(float),
            arrayminus=(df["value"] - df["ci_low"]).to_numpy(float),
            color=color,
            thickness=1.5,
        )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            name=name,
            mode="lines+markers" if markers or error else "lines",
            line=dict(color=color, dash=dash),
            marker=dict(color=color, size=6),
            error_y=error,
            legendgroup=group or name,
            hovertemplate=HOVER,
        )
    )


def _flat(fig: go.Figure, x0: object, x1: object, y: float, name: str) -> None:
    """A horizontal chance/reference line from ``x0`` to ``x1`` as a legend entry (grey, dashed)."""
    fig.add_trace(
        go.Scatter(
            x=[x0, x1], y=[y, y], mode="lines", name=name, line=dict(color=GREY, dash="dash"), hovertemplate=HOVER
        )
    )


def _span(values: pd.Series) -> tuple[float, float]:
    v = values.to_numpy(float)
    return float(np.nanmin(v)), float(np.nanmax(v))


def _ci_note(frames: list[pd.DataFrame], what: str) -> str:
    cov = {cq.ci_coverage(f) for f in frames}
    if cov == {"all"}:
        return "Shaded: 95% bootstrap CI."
    if "some" in cov or "all" in cov:
        return (
            f"The snapshot stores a 95% bootstrap CI only at some {what} (error bars there; the suite bootstraps "
            "the headline point only)."
        )
    return f"No CIs are stored for this curve (the suite bootstraps the headline value only, not every {what})."


def _category_colors(values: list[str]) -> dict[str, str]:
    palette = pcolors.qualitative.Dark24 + pcolors.qualitative.Light24
    return {v: palette[i % len(palette)] for i, v in enumerate(values)}


# ---------------------------------------------------------------------- pickers
parts = _partitions(SIG)
if parts.empty:
    st.warning(
        "The snapshot holds no evaluation results yet: materialize `evaluation_results` "
        f"(train_eval_job) and publish the snapshot. {common.WHAT_TO_RUN}."
    )
    st.stop()

c1, c2, c3 = st.columns([1, 1, 2])
dataset = c1.selectbox("Dataset", sorted(parts["dataset"].unique()))
ds_fractions = cq.fraction_order(parts[parts["dataset"] == dataset]["fraction"].tolist())
fraction = c2.selectbox("Training-data fraction (%)", ds_fractions)
res_all = cq.results(dataset, fraction, all_fractions=_dataset_results(SIG, dataset))
available = sort_methods(res_all["method"].unique())
methods = sort_methods(c3.multiselect("Methods", available, default=available))
if not methods:
    st.info("Pick at least one method.")
    st.stop()
res = res_all[res_all["method"].isin(methods)]
chance = _chance(SIG, dataset, fraction)
colors = color_map(methods)

# ---------------------------------------------------------------------- headline
st.subheader("Headline metrics")
n_wells = res[(res["analysis"] == "knn") & (res["metric"] == "best_f1")]["n"]
n_text = f"{int(n_wells.iloc[0])} test wells" if not n_wells.empty and not pd.isna(n_wells.iloc[0]) else "test wells"
common.table(
    cq.headline_table(res, chance, methods),
    "headline metrics",
    key="headline",
    caption=(
        f"{n_text} common to every method; DMSO and single-compound MOAs excluded. Cells: value "
        "[95% bootstrap CI over wells] where the suite computes one. Chance: weighted F1 of a "
        f"prevalence-matched random guess, \u03a3 p\u00b2 over {chance.n_moas} MOAs ({chance.source}); "
        "odds ratio 1; PCC delta 0."
    ),
)


# ---------------------------------------------------------------------- curves
def section_curves() -> None:
    left, right = st.columns(2)
    with left:
        enr = cq.curve(res, "enrichment", "odds_ratio")
        if enr.empty:
            st.info("No enrichment results in this partition.")
        else:
            fig = go.Figure()
            frames = []
            for m in methods:
                g = enr[enr["method"] == m]
                if not g.empty:
                    frames.append(g)
                    _line(fig, g, "parameter", m, colors[m], markers=True)
            _flat(fig, *_span(enr["parameter"]), 1.0, "OR = 1 (no enrichment)")
            st.plotly_chart(
                _layout(
                    fig,
                    "Same-MOA enrichment among the top PCC pairs",
                    "PCC percentile threshold",
                    "odds ratio",
                    legend_below=True,
                ),
                key="enrichment",
            )
            st.caption(_ci_note(frames, "percentile") + " Dashed: odds ratio 1.")
    with right:
        metric = st.radio(
            "k-NN metric",
            ["f1", "precision", "recall"],
            horizontal=True,
            key="knn_metric",
            format_func=lambda m: cq.metric_label(m),
        )
        knn = cq.curve(res, "knn", metric)
        if knn.empty:
            st.info("No k-NN results in this partition.")
        else:
            fig = go.Figure()
            frames = []
            for m in methods:
                g = knn[knn["method"] == m]
                if not g.empty:
                    frames.append(g)
                    _line(fig, g, "parameter", m, colors[m])
            best = res[(res["analysis"] == "knn") & (res["metric"] == f"best_{metric}")]
            if metric == "f1":  # the suite's headline point: F1 at the best k with its bootstrap CI
                best = best[best["ci_low"].notna()].set_index("method").reindex(methods).dropna(subset=["value"])
                for r in best.reset_index().itertuples():
                    fig.add_trace(
                        go.Scatter(
                            x=[r.parameter],
                            y=[r.value],
                            mode="markers",
                            name=f"{r.method}: best k, 95% CI",
                            marker=dict(color=colors[r.method], symbol="diamond", size=10),
                            legendgroup=r.method,
                            showlegend=False,
                            error_y=dict(
                                type="data",
                                array=[r.ci_high - r.value],
                                arrayminus=[r.value - r.ci_low],
                                color=colors[r.method],
                            ),
                            hovertemplate=HOVER,
                        )
                    )
            if not np.isnan(chance.f1):
                _flat(fig, *_span(knn["parameter"]), chance.f1, "chance (random guess)")
            st.plotly_chart(
                _layout(
                    fig,
                    f"k-NN MOA prediction over k ({cq.metric_label(metric)})",
                    "k (nearest wells)",
                    cq.metric_label(metric),
                    legend_below=True,
                ),
                key="knn",
            )
            st.caption(
                _ci_note(frames, "k")
                + (" Diamonds: the best k with its 95% CI." if metric == "f1" else "")
                + " Dashed: prevalence-matched random guess (\u03a3 p\u00b2, the same "
                "for weighted precision, recall and F1)."
            )


# ---------------------------------------------------------------------- held-out compounds
def section_held_out() -> None:
    topk, rnd = _holdout(SIG, dataset)
    if not topk.empty:
        topk = topk[topk["method"].isin(methods)]
    if not topk.empty:
        st.subheader("Held-out compounds")
        fig = go.Figure()
        for m in sort_methods(topk["method"].unique()):
            for vote, dash in (("individual", None), ("aggregated", "dot")):
                g = topk[(topk["method"] == m) & (topk["vote"] == vote)]
                if not g.empty:
                    _line(fig, g, "parameter", f"{m}, {vote} vote", method_color(m), dash=dash, group=m, markers=True)
        if not rnd.empty:
            fig.add_trace(
                go.Scatter(
                    x=rnd["parameter"],
                    y=rnd["value"],
                    mode="lines",
                    name="random",
                    line=dict(color=GREY, dash="dash"),
                    hovertemplate=HOVER,
                )
            )
        st.plotly_chart(_layout(fig, "Top-k MOA accuracy on held-out compounds", "k", "top-k accuracy"), key="holdout")
        st.caption(
            "One compound per MOA never seen in training; MOA predicted from the training compounds' MOA "
            "medians (solid: each well votes; dotted: the compound's wells aggregated). Grey dashed: random "
            "ranking (k / #MOAs). Dataset-level (not per fraction)."
        )
    else:
        st.info(
            f"No compound-holdout results for {dataset} and these methods: materialize `holdout_results` "
            "(holdout_job) and publish the snapshot."
        )


# ---------------------------------------------------------------------- replicate fraction
def _seed_runs(fig: go.Figure, df: pd.DataFrame, x: str, name: str, color: str) -> None:
    """A method's seed replicates (``seed`` > 0) as open markers of its colour, grouped with its line."""
    runs = df[df["seed"].gt(0)]
    if runs.empty:
        return
    fig.add_trace(
        go.Scatter(
            x=runs[x].to_numpy(float),
            y=runs["value"].to_numpy(float),
            mode="markers",
            marker=dict(color=color, symbol="circle-open", size=9),
            name=f"{name} (seed replicates)",
            legendgroup=name,
            customdata=runs["seed"].to_numpy(int),
            hovertemplate="seed %{customdata}: %{y:.3f}<extra></extra>",
        )
    )


def section_replicate_fraction() -> None:
    fc = _fractions(SIG, dataset)
    if not fc.empty and fc["fraction_pct"].nunique() > 1:
        fc = fc[fc["method"].isin(methods)]
        st.subheader("Replicate-fraction curves")
        labels = list(dict.fromkeys(fc["metric_label"]))
        which = st.radio("Metric", labels, horizontal=True, key="fraction_metric")
        sel = fc[fc["metric_label"] == which]
        fig = go.Figure()
        frames = []
        for m in sort_methods(sel["method"].unique()):
            g = sel[sel["method"] == m].sort_values("fraction_pct")
            frames.append(g[g["seed"].eq(0)])
            _line(fig, g[g["seed"].eq(0)], "fraction_pct", m, method_color(m), markers=True)
            _seed_runs(fig, g, "fraction_pct", m, method_color(m))
        if which in {"k-NN best weighted F1", "Class latent assignment F1", "Logistic regression F1"} and not np.isnan(
            chance.f1
        ):
            _flat(fig, *_span(sel["fraction_pct"]), chance.f1, "chance (random guess)")
        st.plotly_chart(
            _layout(fig, f"{which} over the share of training replicates", "training-data fraction (%)", which),
            key="fractions",
        )
        seeds = int(sel["seed"].nunique())
        st.caption(
            _ci_note(frames, "fraction")
            + " Methods without a per-fraction model (CP) are flat by construction."
            + (
                f" Open markers: the seed replicates ({seeds - 1} more training seed(s) and draws of the wells at "
                "some fractions); the line is seed 0."
                if seeds > 1
                else ""
            )
        )
    else:
        st.info(
            f"{dataset} is evaluated at one fraction only: materialize `evaluation_results` at more fractions "
            "(train_eval_job, e.g. 50 and 25) to see the replicate-fraction curves."
        )


# ---------------------------------------------------------------------- pair groups
def section_pair_groups() -> None:
    gm = cq.group_means(res)
    if not gm.empty:
        st.subheader("Mean PCC by pair group")
        fig = go.Figure()
        for m in methods:
            g = gm[gm["method"] == m]
            if g.empty:
                continue
            err = None
            if g["ci_low"].notna().any():
                err = dict(
                    type="data",
                    array=(g["ci_high"] - g["value"]).to_numpy(float),
                    arrayminus=(g["value"] - g["ci_low"]).to_numpy(float),
                )
            fig.add_trace(
                go.Bar(x=g["group"], y=g["value"], name=m, marker_color=colors[m], error_y=err, hovertemplate=HOVER)
            )
        fig.update_layout(barmode="group")
        st.plotly_chart(_layout(fig, "Mean pairwise PCC by pair group", "", "mean PCC"), key="groups")
        st.caption(
            "Pairs of evaluated test wells. "
            + (
                "Error bars: 95% CI."
                if gm["ci_low"].notna().any()
                else "No CIs are stored for these means (pairs share wells; the suite bootstraps the "
                "intra \u2212 inter delta, see the headline table)."
            )
        )

    cls = queries.classification_table(res)
    if not cls.empty:
        st.subheader("Image-field classification (MP)")
        common.table(
            cq.classification_display(cls),
            "image-field classification",
            key="classification",
            caption="Micro-averaged AUPRC with the prevalence baseline and accuracy with the 1/#classes "
            "baseline, overall and split by edge wells, cell line and timepoint.",
        )


# ---------------------------------------------------------------------- per MOA
def section_per_moa() -> None:
    st.subheader("Per-MOA breakdown")
    pm = _per_moa(SIG, dataset, fraction)
    pm = pm[pm["method"].isin(methods)] if not pm.empty else pm
    if pm.empty:
        st.info(
            f"This snapshot has no per-MOA breakdown for {dataset} at fraction {fraction} (table "
            f"`evaluation_per_moa`): {cq.rematerialize_hint(dataset, fraction)}."
        )
    else:
        analysis = st.radio(
            "Prediction", ["knn", "latent"], horizontal=True, key="per_moa_analysis", format_func=cq.analysis_label
        )
        sel = pm[pm["analysis"] == analysis]
        moas = sorted(sel["moa"].unique())
        fig = go.Figure()
        for m in sort_methods(sel["method"].unique()):
            g = sel[sel["method"] == m].set_index("moa").reindex(moas)
            fig.add_trace(go.Bar(x=moas, y=g["f1"], name=m, marker_color=method_color(m), hovertemplate=HOVER))
        if not np.isnan(chance.f1):
            _flat(fig, moas[0], moas[-1], chance.f1, "chance (random guess, weighted)")
        fig.update_layout(barmode="group", xaxis_tickangle=-35)
        st.plotly_chart(
            _layout(fig, f"F1 per MOA ({cq.analysis_label(analysis)})", "", "F1", height=440), key="per_moa_f1"
        )
        k_used = res[(res["analysis"] == "knn") & (res["metric"] == "best_f1")].set_index("method")["parameter"]
        k_text = ", ".join(f"{m} k={int(k)}" for m, k in k_used.items() if not pd.isna(k))
        st.caption(
            "One-vs-rest F1 per MOA; "
            + (
                f"k-NN at the best-F1 k ({k_text})."
                if analysis == "knn"
                else "class latent assignment with leave-one-out MOA medians."
            )
        )
        common.table(cq.per_moa_table(pm, analysis), "per-MOA metrics", key="per_moa")

        conf = _confusion(SIG, dataset, fraction)
        if conf.empty:
            st.info(
                f"This snapshot has no confusion counts for {dataset} at fraction {fraction} (table "
                f"`evaluation_confusion`): {cq.rematerialize_hint(dataset, fraction)}."
            )
        else:
            conf_methods = sort_methods(set(conf["method"]) & set(methods))
            cm = st.selectbox("Confusion matrix of", conf_methods, key="confusion_method")
            mat = cq.confusion_matrix(conf, cm, analysis, moas)
            fig = go.Figure(
                go.Heatmap(
                    z=mat.to_numpy(),
                    x=list(mat.columns),
                    y=list(mat.index),
                    colorscale="Blues",
                    text=mat.to_numpy(),
                    texttemplate="%{text}",
                    colorbar=dict(title="wells"),
                    hovertemplate="true %{y}<br>predicted %{x}<br>%{z} wells<extra></extra>",
                )
            )
            fig.update_yaxes(autorange="reversed")
            fig.update_layout(
                title=f"Confusion matrix: {cm}, {cq.analysis_label(analysis)}",
                xaxis_title="predicted MOA",
                yaxis_title="true MOA",
                height=260 + 26 * len(mat),
                margin=dict(l=10, r=10, t=50, b=10),
            )
            st.plotly_chart(fig, key="confusion")
            long = conf[(conf["method"] == cm) & (conf["analysis"] == analysis)].rename(
                columns={"true_moa": "true MOA", "predicted_moa": "predicted MOA", "count": "wells"}
            )
            common.table(
                long.drop(columns=["method", "analysis"]).reset_index(drop=True),
                "confusion counts",
                key="confusion_counts",
                caption="Pairs that never occur are omitted; the diagonal holds the correct votes.",
            )


# ---------------------------------------------------------------------- embedding map
def section_embedding_map() -> None:
    st.subheader("Embedding map (PCA)")
    maps = _maps(SIG, dataset, fraction)
    maps = maps[maps["method"].isin(methods)] if not maps.empty else maps
    if maps.empty:
        st.info(
            f"This snapshot has no embedding map for {dataset} at fraction {fraction} (table `embedding_maps`): "
            f"{cq.rematerialize_hint(dataset, fraction)}."
        )
    else:
        mm = st.selectbox("Method", sort_methods(maps["method"].unique()), key="map_method")
        g = maps[maps["method"] == mm]
        ex1, ex2 = float(g["explained_1"].iloc[0]), float(g["explained_2"].iloc[0])
        hover = (
            "%{customdata[0]}<br>MOA %{customdata[1]}<br>plate %{customdata[2]}, well %{customdata[3]}<extra></extra>"
        )
        custom_cols = ["Metadata_pert_iname", "Metadata_moa", "Metadata_Plate", "Metadata_Well"]

        def _scatter(by: str, key: str) -> None:
            values = sorted(g[by].fillna("\u2013").astype(str).unique())
            pal = _category_colors(values)
            fig = go.Figure()
            for v in values:
                sub = g[g[by].fillna("\u2013").astype(str) == v]
                fig.add_trace(
                    go.Scatter(
                        x=sub["pc1"],
                        y=sub["pc2"],
                        mode="markers",
                        name=v,
                        marker=dict(color=pal[v], size=8, line=dict(width=0.5, color="white")),
                        customdata=sub[custom_cols].fillna("\u2013").to_numpy(),
                        hovertemplate=hover,
                    )
                )
            fig.update_layout(
                title=f"{mm}: test wells coloured by {'MOA' if by == 'Metadata_moa' else 'plate'}",
                xaxis_title=f"PC1 ({sig3(100 * ex1)} % of variance)",
                yaxis_title=f"PC2 ({sig3(100 * ex2)} % of variance)",
                height=520,
                margin=dict(l=10, r=10, t=50, b=10),
                legend_title_text="",
            )
            st.plotly_chart(fig, key=key)

        by_moa, by_plate = st.tabs(["Coloured by MOA", "Coloured by plate (batch effects)"])
        with by_moa:
            _scatter("Metadata_moa", "map_moa")
        with by_plate:
            _scatter("Metadata_Plate", "map_plate")
        st.caption(
            "PCA of the evaluated test wells of the chosen method, fitted on that method's wells only, after "
            "centring each well's embedding and scaling it to unit norm (the geometry of the PCC every analysis "
            "uses). Wells grouping by plate rather than by MOA point to a batch effect."
        )


# ---------------------------------------------------------------------- CP recipe ablation
@st.cache_data(show_spinner=False, max_entries=64)
def _ablation(sig: tuple, dataset: str) -> pd.DataFrame:
    return cq.cp_ablation(csql.cp_ablation_rows(dataset))


def section_cp_ablation() -> None:
    ab = _ablation(SIG, dataset)
    if ab.empty:
        st.info(
            f"No CP recipe ablation for {dataset}: materialize `cp_ablation` (ingest_job, or published_job for a "
            "profile dataset) and publish the snapshot."
        )
        return
    st.subheader("CP recipe ablation")
    common.table(
        ab.drop(columns="step_index").rename(columns={"recipe": "recipe", "step": "after step"}),
        "CP recipe ablation",
        key="cp_ablation",
        caption="Each step of CP (JUMP recipe) and CP spherized (each row includes the steps above it), beside CP "
        "(DMSO standardization only) and cell count, scored on the same test wells with point estimates (no "
        "bootstrap). A step that lowers the paper's metrics on this dataset lowers them here.",
    )


# ---------------------------------------------------------------------- all results
def section_all_results() -> None:
    st.subheader("All results")
    analyses = sorted(res["analysis"].unique(), key=cq.analysis_label)
    pick = st.multiselect("Analyses", analyses, default=analyses, format_func=cq.analysis_label)
    common.table(
        cq.all_results_table(res, pick),
        "all results",
        key="all_results",
        height=420,
        caption="Full precision in the CSV download; p-values in scientific notation; an en dash where a "
        "value does not apply.",
    )


# One section at a time: the page opens on the headline table and one section of plots (the others are
# computed and drawn only when picked), not on 6,700 px of charts.
TABS = [
    ("Enrichment and k-NN curves", section_curves),
    ("Held-out compounds", section_held_out),
    ("Replicate fractions", section_replicate_fraction),
    ("Pair groups and field classification", section_pair_groups),
    ("Per MOA and confusion", section_per_moa),
    ("Embedding map", section_embedding_map),
    ("CP recipe ablation", section_cp_ablation),
    ("All results", section_all_results),
]
SECTIONS = dict(TABS)
picked = st.radio("Section", list(SECTIONS), horizontal=True, key="mc_section", label_visibility="collapsed")
SECTIONS[picked]()
