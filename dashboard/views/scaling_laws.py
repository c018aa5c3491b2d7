"""Scaling laws: how the metric grows with training data, how sure we are, and what a target would cost.

Reads the snapshot's ``scaling_points`` (and ``scaling_laws`` / ``phenoca_results``) and refits
every law live with :func:`moa_core.scaling.fit_scaling_laws` (500 bootstrap resamples for
interactivity, cached per points and settings); the target, budget and cost inputs only re-read
that fit (:func:`dashboard.scaling_fits.at_target`), so they respond at once.
"""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import common
from dashboard import scaling_fits as fits
from dashboard import scaling_labels as labels
from dashboard import scaling_sql as sql
from moa_core.scaling import ScalingError

st.title("Scaling laws: how much data reaches a target?")
st.caption(
    "Each law is fitted to the points of one model family, ranked by how well it predicts the largest "
    "size when that size is withheld (back-test error, metric units), with 95% bootstrap intervals over "
    f"runs ({fits.N_BOOT} resamples, refitted live). Flat or non-monotone points get no extrapolation."
)


@st.cache_data(show_spinner="Fitting scaling laws\u2026", max_entries=64)
def fit_family(points: pd.DataFrame, n_boot: int, seed: int):
    """Cached on the points and the settings: every form fitted, bootstrapped and back-tested."""
    return fits.fit(points, n_boot=n_boot, seed=seed)


common.require_snapshot(labels.what_to_run(None).rstrip("."))
present = sql.tables_present()
if not present["scaling_points"] and not present["phenoca_results"]:
    st.warning(f"The snapshot holds no scaling points and no Pheno-CA results yet: {labels.what_to_run(None)}")
    st.stop()

# the first view: the curve with a reliable fit and an interval (not merely the first dataset by name)
opening = fits.default_view()
all_datasets = sql.datasets()
dataset = st.selectbox(
    "Dataset",
    all_datasets,
    index=all_datasets.index(opening[0]) if opening and opening[0] in all_datasets else 0,
    key="dataset",
)


def _index_of(options: list[str], wanted: str | None) -> int:
    return options.index(wanted) if wanted in options else 0


def scaling_section() -> str | None:
    """The scaling-law view of one (study, task) of the dataset; returns the task shown (None if none)."""
    if not present["scaling_points"]:
        st.warning(f"The snapshot holds no scaling points (`scaling_points`) yet: {labels.what_to_run(dataset)}")
        return None
    index = sql.scaling_index(dataset)
    if index.empty:
        st.warning(f"No scaling points for {dataset}: {labels.what_to_run(dataset)}")
        return None
    first = opening if opening and opening[0] == dataset else None
    c1, c2, c3 = st.columns([2, 1, 2])
    studies = index["study"].drop_duplicates().tolist()
    study = c1.selectbox(
        "Study",
        studies,
        index=_index_of(studies, first[1] if first else None),
        format_func=labels.study_label,
        key="study",
    )
    tasks = index[index["study"] == study]["task"].drop_duplicates().tolist()
    task = c2.selectbox(
        "Task and metric",
        tasks,
        index=_index_of(tasks, first[2] if first and first[1] == study else None),
        format_func=labels.task_label,
        key="task",
    )
    todo = labels.what_to_run(dataset, study)
    fam_index = index[(index["study"] == study) & (index["task"] == task)]
    all_families = fam_index["family"].tolist()
    # Widgets whose options or defaults depend on the dataset, study and task are keyed by them: a choice
    # made for one curve must not carry over as an empty or invalid choice for another.
    view_key = f"{dataset}:{study}:{task}"
    families = c3.multiselect(
        "Model families",
        all_families,
        default=all_families,
        key=f"families:{view_key}",
        format_func=labels.family_label,
    )
    if not families:
        st.info("Pick at least one model family.")
        return task

    pts = sql.points(dataset, study, task)
    model_sizes = "best"
    if fits.mixes_model_sizes(pts[pts["family"].isin(families)]):
        model_sizes = st.radio(
            "Families with several model sizes",
            ["best", "largest"],
            horizontal=True,
            key="model_sizes",
            format_func={
                "largest": "largest model only",
                "best": "best model per size (Pheno-CA's envelope, as stored; biased upward)",
            }.get,
        )

    reports, fam_points = {}, {}
    for family in families:
        fp = fits.family_points(pts, family, model_sizes)
        k = fp["n"].nunique()
        if k < fits.MIN_SIZES:
            st.warning(
                f"{labels.family_label(family)} has {k} training-set size{'s' if k != 1 else ''}; a scaling law "
                f"needs at least {fits.MIN_SIZES}. Materialize more data scales: {todo}"
            )
            continue
        try:
            reports[family] = fit_family(fp, fits.N_BOOT, fits.SEED)
        except ScalingError as exc:
            st.error(f"{labels.family_label(family)}: the points cannot be fitted ({exc}).")
            continue
        fam_points[family] = fp
    if not reports:
        return task

    stored = sql.stored_laws(dataset, study, task)
    forms = st.multiselect(
        "Laws",
        list(fits.LAW_CHOICES),
        default=fits.default_forms(reports),
        format_func=labels.form_label,
        key=f"forms:{view_key}",
        help="Default: the average over the laws weighted by how well each predicted the withheld sizes (its band "
        "includes the uncertainty about the form), and the law with the lowest back-test error.",
    )

    n_max = max(float(fp["n"].max()) for fp in fam_points.values())
    n_min = min(float(fp["n"].min()) for fp in fam_points.values())
    c1, c2, c3, c4, c5 = st.columns(5)
    target = c1.slider(
        f"Target {labels.task_label(task)}", 0.0, 1.0, fits.default_target(pts, stored), 0.01, key=f"target:{view_key}"
    )
    budget = c2.number_input(
        "Data budget (\u00d7 the largest observed N)",
        min_value=1.0,
        max_value=1000.0,
        value=10.0,
        step=1.0,
        key="budget",
    )
    cost = c3.number_input(
        "Cost per compound ($)",
        min_value=0.0,
        value=100.0,
        step=10.0,
        key="cost",
        help="The Pheno-CA paper's $100 per compound.",
    )
    replicates = int(c4.number_input("Replicates per compound", min_value=1, value=1, step=1, key="replicates"))
    wells_per_plate = int(
        c5.number_input(
            "Wells per plate",
            min_value=1,
            value=fits.WELLS_PER_PLATE,
            step=1,
            key="wells_per_plate",
            help="For the chart's top axis, which reads the x axis in plates and dollars.",
        )
    )
    budget_n = budget * n_max
    st.caption(
        f"Largest observed N: {fits.count(n_max)} {labels.x_label(study)}; the data budget is "
        f"{fits.count(budget_n)}. Cost = N needed \u00d7 cost per compound \u00d7 replicates (the whole N, "
        "not only the increment)."
        + (
            " Here N counts wells: read the cost per compound as the cost per well, with 1 replicate."
            if labels.x_label(study) == "training wells"
            else ""
        )
    )

    tables = {
        labels.family_label(f): fits.at_target(rep, target, cost, replicates).table() for f, rep in reports.items()
    }
    labelled = {labels.family_label(f): rep for f, rep in reports.items()}

    # ---- chart
    grid = np.geomspace(n_min, budget_n, 120)
    fig = go.Figure()
    drawn = [target]  # the y values shown, for an axis bounded by what is drawn (and by [0, 1])
    for family, rep in reports.items():
        name = labels.family_label(family)
        color = labels.family_color(name)
        reliable = fits.unreliable_reason(tables[name]) is None
        curves = rep.curves(grid if reliable else np.geomspace(n_min, float(fam_points[family]["n"].max()), 60))
        for form in forms:
            c = curves[curves["form"] == form]
            if c.empty:
                continue
            drawn += list(c["metric"])
            if c["metric_low"].notna().any():
                drawn += list(c["metric_low"]) + list(c["metric_high"])
                fig.add_trace(
                    go.Scatter(
                        x=list(c["n"]) + list(c["n"])[::-1],
                        y=list(c["metric_high"]) + list(c["metric_low"])[::-1],
                        fill="toself",
                        line={"width": 0},
                        fillcolor=fits.rgba(color, 0.12),
                        showlegend=False,
                        hoverinfo="skip",
                        legendgroup=name,
                    )
                )
            fig.add_trace(
                go.Scatter(
                    x=c["n"],
                    y=c["metric"],
                    mode="lines",
                    legendgroup=name,
                    name=f"{name}: {labels.form_label(form)}",
                    line={"color": color, "dash": labels.FORM_DASH.get(form, "solid")},
                )
            )
        p = fam_points[family]
        drawn += list(p["metric"])
        holdout = int(rep.settings.get("holdout", 1))
        withheld_n = sorted(p["n"].unique())[-holdout:] if p["n"].nunique() > holdout + 2 else []
        withheld = p["n"].isin(withheld_n)
        for mask, label, symbol in (
            (~withheld, "fitted", "circle"),
            (withheld, "withheld in the back-test (largest size)", "circle-open"),
        ):
            if mask.any():
                fig.add_trace(
                    go.Scatter(
                        x=p.loc[mask, "n"],
                        y=p.loc[mask, "metric"],
                        mode="markers",
                        name=f"{name}: points {label}",
                        legendgroup=name,
                        marker={"color": color, "size": 8, "symbol": symbol, "line": {"width": 2, "color": color}},
                    )
                )
    x_rng = fits.x_range(n_min, budget_n)
    fig.add_hline(y=target, line_dash="dash", line_color="#555", annotation_text=f"target {fits.sig(target)}")
    fig.add_vline(x=n_max, line_dash="dot", line_color="#999", annotation_text="largest observed N")
    ticks, tick_text = fits.cost_axis(
        x_rng, study, wells_per_plate=wells_per_plate, cost_per_unit=cost, replicates=replicates
    )
    fig.add_trace(  # carries the top axis (plates, dollars) over the same N
        go.Scatter(
            x=[10 ** x_rng[0], 10 ** x_rng[1]],
            y=[target, target],
            xaxis="x2",
            mode="lines",
            line={"width": 0},
            showlegend=False,
            hoverinfo="skip",
        )
    )
    fig.update_layout(
        xaxis={"type": "log", "range": x_rng, "title": labels.x_label(study)},
        xaxis2={
            "type": "log",
            "range": x_rng,
            "overlaying": "x",
            "side": "top",
            "tickvals": ticks,
            "ticktext": tick_text,
            "title": "cost: plates \u00b7 dollars",
            "showgrid": False,
        },
        yaxis={"range": fits.y_range(drawn, bounded=True), "title": labels.task_label(task)},
        title={
            "text": f"{labels.task_label(task)} vs {labels.x_label(study)} (bands: 95% bootstrap intervals)",
            "y": 0.98,
        },
        legend_title_text="",
        margin={"t": 110},
    )
    st.plotly_chart(fig, width="stretch", key="scaling_chart")
    st.caption(
        "Filled points were fitted; open ones (the largest size) were also withheld in the back-test that ranks "
        "the laws. The axes stop at the data budget and at the metric's range [0, 1]; the top axis reads N in "
        f"plates ({wells_per_plate} wells each) and dollars."
    )

    # ---- read-off
    st.subheader(f"Data needed for {labels.task_label(task)} = {fits.sig(target)}")
    for name, tab in tables.items():
        reason = fits.unreliable_reason(tab)
        if reason is not None:
            st.warning(f"{name}: {reason}")
    readoff = fits.readoff_table(tables, labelled, forms, budget_n)
    if not readoff.empty:
        st.caption(
            "P(reachable): share of bootstrap fits whose asymptote exceeds the target (for the linear laws, "
            "which grow without bound, only the share with a positive slope). Extrapolations beyond "
            f"{fits.FLAG_FACTOR:g}\u00d7 the largest observed N are flagged."
        )
        st.dataframe(readoff, hide_index=True, width="stretch", key="readoff")
        far = readoff[readoff[f"Beyond {fits.FLAG_FACTOR:g}\u00d7 observed?"] == "yes"]
        if not far.empty:
            st.info(
                "Flagged: "
                + ", ".join(f"{a} ({b})" for a, b in zip(far["Model family"], far["Law"]))
                + f" extrapolate more than {fits.FLAG_FACTOR:g}\u00d7 past the data; treat those numbers as "
                "speculative."
            )

    # ---- forms
    st.subheader("Laws ranked by back-test error")
    st.caption(
        "Back-test error: mean absolute error at the withheld largest size, fitted on the rest. In-sample "
        "R\u00b2 is shown for reference only (it favours flexible laws). Reliability at the current target."
    )
    st.dataframe(fits.forms_table(tables), hide_index=True, width="stretch", key="forms_table")

    view = fits.stored_table(stored, families)
    if not view.empty:
        with st.expander("The pipeline's stored fits (its default target and bootstrap size)"):
            st.dataframe(view, hide_index=True, width="stretch", key="stored")
    elif not present["scaling_laws"]:
        st.info(f"The snapshot holds no stored fits (`scaling_laws`) yet: {todo}")
    ledger_section(study, task, families, todo)
    return task


def ledger_section(study: str, task: str, families: list[str], todo: str) -> None:
    """The forecast ledger of the curve: earlier fits' forecasts scored against the scales materialized since."""
    st.subheader("Forecast ledger: earlier predictions checked against later data")
    led = sql.ledger_rows(dataset, study, task)
    led = led[led["family"].isin(families)]
    if led.empty:
        st.info(
            "No forecast of this curve has been scored yet. Every fit of the laws records its predictions above the "
            "data; materialize a larger scale and fit again to score them: " + todo
        )
        return
    st.caption(
        "Each law's forecast, made when the curve stopped at a smaller N, against what the larger scale then "
        "measured: error (forecast \u2212 observed) and whether the observation fell inside the forecast's 95% "
        "predictive interval (the bootstrap curves plus the noise of one new point)."
    )
    st.dataframe(fits.ledger_record_table(led), hide_index=True, width="stretch", key="ledger_record")
    if led["inside"].isna().all():
        st.caption(
            "No interval: the fits these forecasts came from had too few points to estimate the noise (the laws "
            "table's reason says how many); their errors are still the record. Run several seeds per size, or "
            "more sizes, for forecasts with intervals."
        )
    with st.expander("Every scored forecast"):
        st.dataframe(fits.ledger_table(led), hide_index=True, width="stretch", key="ledger_rows")


def comparison_section(scaling_task: str | None) -> None:
    """Pheno-CA's supervision comparison, on the task the scaling view shows."""
    st.header("IBP vs task-supervised vs CP/MP")
    todo = labels.what_to_run(dataset, "phenoca_ood")
    if not present["phenoca_results"]:
        st.warning(f"The snapshot holds no Pheno-CA results (`phenoca_results`) yet: {todo}")
        return
    res = sql.phenoca_results(dataset)
    options = fits.task_options(res)
    if not options:
        st.info(f"{dataset} has no Pheno-CA results (a profile dataset's study); for its own: {todo}")
        return
    c1, c2 = st.columns(2)
    # keyed on the scaling task, so the comparison follows it when it changes (and keeps a manual choice otherwise)
    task, metric = c1.selectbox(
        "Task and metric",
        options,
        index=fits.matching_option(options, scaling_task),
        format_func=lambda o: labels.task_label(*o),
        key=f"cmp_task:{scaling_task}",
    )
    splits = fits.ordered_splits(
        res[(res["task"].astype(str) == task) & (res["metric"].astype(str) == metric)]["split"]
    )
    split = c2.selectbox(
        "Evaluation split",
        splits,
        index=fits.matching_split(splits, scaling_task),
        format_func=labels.split_label,
        key=f"cmp_split:{scaling_task}:{task}:{metric}",
    )
    comp = fits.comparison(res, task, metric, split)
    if comp.empty:
        st.info("No results for this task and split.")
        return
    st.caption("Per supervision, the best model of the zoo at its largest training set; 95% bootstrap intervals.")
    order = comp["family"].tolist()
    err_hi = (comp["ci_high"] - comp["value"]).to_numpy()
    err_lo = (comp["value"] - comp["ci_low"]).to_numpy()
    fig = go.Figure(
        go.Bar(
            x=comp["family"],
            y=comp["value"],
            marker_color=[labels.family_color(f) for f in order],
            error_y={"type": "data", "array": err_hi, "arrayminus": err_lo, "visible": bool(np.isfinite(err_hi).any())},
            text=[fits.sig(v) for v in comp["value"]],
            textposition="outside",
        )
    )
    fig.update_layout(
        yaxis_title=labels.task_label(task, metric),
        xaxis_title="supervision",
        title=f"{labels.task_label(task, metric)} on {labels.split_label(split)}",
    )
    st.plotly_chart(fig, width="stretch", key="comparison_chart")
    st.dataframe(fits.comparison_table(comp), hide_index=True, width="stretch", key="comparison")


comparison_section(scaling_section())
