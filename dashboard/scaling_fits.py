"""The *Scaling laws* page's live fits and the tables and ranges it draws, from what
:mod:`dashboard.scaling_sql` reads.

The fits are recomputed from the snapshot's ``scaling_points`` with
:func:`moa_core.scaling.fit_scaling_laws` (no target: fit, bootstrap, back-test); the
target-dependent read-off (N needed, P(reachable), extrapolation distance, cost) is then
:func:`moa_core.scaling.extrapolate` on that same fit and bootstrap, so moving the target slider
costs microseconds and gives exactly what ``fit_scaling_laws(points, target=...)`` reports
(same seed, same resamples; see :func:`at_target`). Numbers are formatted by the dashboard's one
formatter (:mod:`dashboard.style`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard import style
from dashboard.scaling_labels import (
    FORM_NAMES_IN_TEXT,
    FORM_RE,
    PROBE_LABELS,
    SPLIT_LABELS,
    STUDY_ORDER,
    TASK_LABELS,
    family_label,
    form_label,
    pretty,
    x_label,
)
from dashboard.scaling_sql import view_candidates
from moa_core.scaling import AVERAGED, FORMS, ScalingReport, extrapolate, fit_scaling_laws, ledger, studies
from moa_core.scaling.studies import curve_points

N_BOOT = 500
"""Bootstrap resamples of the page's live fits: enough for stable 95% percentile intervals while
keeping a refit under ~1 s per model family on 2 cores (the pipeline's stored fits may use more)."""


SEED = 0


MIN_SIZES = 3


FLAG_FACTOR = 3.0


CI = 0.95


WELLS_PER_PLATE = 384


rgba = style.rgba


sig, count, sig_ci, pct = style.sig3, style.count, style.sig_ci, style.pct


def _n_needed(v: float, lo: float, hi: float) -> str:
    if math.isinf(v):
        return "unreachable"
    return sig_ci(v, lo, hi)


def default_view(path: Path | None = None) -> tuple[str, str, str] | None:
    """The (dataset, study, task) the page opens on: the curve with the most model families whose stored
    averaged law is reliable and has an interval of N needed (then the most with a reliable fit at all), by
    study (Pheno-CA's OOD study first, :data:`dashboard.scaling_labels.STUDY_ORDER`) and task; None without
    stored fits."""
    df = view_candidates(path)
    if df.empty:
        return None
    df["study_rank"] = df["study"].map(lambda x: STUDY_ORDER.index(x) if x in STUDY_ORDER else len(STUDY_ORDER))
    df["task_rank"] = df["task"].map(lambda x: list(TASK_LABELS).index(x) if x in TASK_LABELS else len(TASK_LABELS))
    top = df.sort_values(
        ["good", "fitted", "study_rank", "task_rank", "dataset"], ascending=[False, False, True, True, True]
    ).iloc[0]
    return str(top["dataset"]), str(top["study"]), str(top["task"])


def family_points(pts: pd.DataFrame, family: str, model_sizes: str = "best") -> pd.DataFrame:
    """The points of one family ready for :func:`fit_scaling_laws`: :func:`moa_core.scaling.studies.curve_points`,
    the rule the pipeline's ``scaling_laws`` fits by (the best-of-zoo envelope of a zoo, or its ``largest`` model)."""
    return curve_points(pts[pts["family"] == family], model_sizes)


def mixes_model_sizes(pts: pd.DataFrame) -> bool:
    return studies.mixes_model_sizes(pts)


def fit(points_: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = SEED) -> ScalingReport:
    """Every registered form fitted, bootstrapped and back-tested (no target yet)."""
    return fit_scaling_laws(points_, forms=list(FORMS), n_boot=n_boot, seed=seed, ci=CI, flag_factor=FLAG_FACTOR)


def at_target(report: ScalingReport, target: float, cost_per_compound: float, replicates: int) -> ScalingReport:
    """The report with every form extrapolated to ``target`` - what ``fit_scaling_laws`` with
    these settings returns, without refitting or re-bootstrapping."""
    results = {}
    for name, r in report.results.items():
        ex = None
        if r.fit is not None:
            ex = extrapolate(
                r.fit,
                target,
                bootstrap=r.bootstrap,
                trend=report.trend,
                cost_per_compound=cost_per_compound,
                replicates=replicates,
                flag_factor=float(report.settings.get("flag_factor", FLAG_FACTOR)),
                ci=report.ci,
            )
        results[name] = dataclasses.replace(r, extrapolation=ex)
    settings = {**report.settings, "cost_per_compound": cost_per_compound, "replicates": replicates}
    return dataclasses.replace(report, results=results, target=target, settings=settings)


LAW_CHOICES: tuple[str, ...] = (AVERAGED, *FORMS)
"""What the page can draw: the averaged law first, then every form."""


def default_forms(reports: dict[str, ScalingReport], k: int = 1) -> list[str]:
    """The averaged law (its band includes the uncertainty about the form) and the ``k`` forms
    with the best mean back-test rank over the given families' fits."""
    ranks: dict[str, list[int]] = {}
    for rep in reports.values():
        for i, name in enumerate(rep.ranking):
            ranks.setdefault(name, []).append(i + 1)
    order = sorted(ranks, key=lambda f: (float(np.mean(ranks[f])), list(FORMS).index(f) if f in FORMS else 99))
    return [AVERAGED, *(order[:k] if order else list(FORMS)[:k])]


def default_target(pts: pd.DataFrame, stored: pd.DataFrame) -> float:
    """The pipeline's default target when it stored one, else 0.05 above the best observed mean."""
    if not stored.empty and "target" in stored.columns:
        t = pd.to_numeric(stored["target"], errors="coerce").dropna()
        if not t.empty and 0.0 < float(t.iloc[0]) < 1.0:
            return round(float(t.iloc[0]), 2)
    if pts.empty:
        return 0.5
    best = float(pts.groupby(["family", "n"])["metric"].mean().max())
    return float(min(0.99, round(best + 0.05, 2)))


def _asymptote_text(row: pd.Series) -> str:
    form = FORMS.get(row["form"])
    if form is not None and not form.has_asymptote:
        return "none (grows without bound)"
    return sig_ci(row["asymptote"], row["asymptote_low"], row["asymptote_high"])


def _status(row: pd.Series) -> str:
    if not bool(row["reliable"]):
        return "no reliable extrapolation"
    return "flagged" if bool(row["flagged"]) else "ok"


def forms_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Human table of every form of every family: rank, back-test error, R², asymptote with
    CI, reliability and reason (``tables``: family -> ``ScalingReport.table()``)."""
    rows = []
    for family, tab in tables.items():
        for _, r in tab.iterrows():
            rank = r["rank"]
            rows.append(
                {
                    "Model family": family,
                    "Law": form_label(r["form"]),
                    "Rank (back-test)": "\u2013" if pd.isna(rank) else str(int(rank)),
                    "Back-test error": sig(r["backtest_error"]),
                    "Weight in the average": sig(r.get("weight", float("nan"))),
                    "In-sample R\u00b2": sig(r["r2"]),
                    "Asymptote [95% CI]": _asymptote_text(r),
                    "Reliability": _status(r),
                    "Reason": _sentence(r["reason"]) or "\u2013",
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "Model family",
            "Law",
            "Rank (back-test)",
            "Back-test error",
            "Weight in the average",
            "In-sample R\u00b2",
            "Asymptote [95% CI]",
            "Reliability",
            "Reason",
        ],
    )


def _sentence(text: object) -> str:
    """A library reason for people: form names spelled out, first letter capitalised."""
    s = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    s = FORM_RE.sub(lambda m: FORM_NAMES_IN_TEXT[m.group(1)], s)
    return s[:1].upper() + s[1:] if s else ""


def unreliable_reason(table: pd.DataFrame) -> str | None:
    """The "no reliable extrapolation ..." reason when the fit refuses to extrapolate, else None."""
    if table.empty or table["reliable"].astype(bool).any():
        return None
    reasons = [str(x) for x in table["reason"] if isinstance(x, str) and "no reliable extrapolation" in x]
    if not reasons:
        return "No reliable extrapolation."
    r = reasons[0]
    return _sentence(r[r.index("no reliable extrapolation") :])


def backtest_distance(report: ScalingReport) -> float:
    """How far the back-test extrapolated, in decades: from the largest size it kept to the one it withheld."""
    sizes = np.unique(report.points["n"].to_numpy(np.float64))
    holdout = int(report.settings.get("holdout", 1))  # type: ignore[arg-type]
    if sizes.size <= holdout:
        return float("nan")
    return float(np.log10(sizes[-1] / sizes[-1 - holdout]))


def expected_error(row: pd.Series, report: ScalingReport, decades: float) -> float:
    """The back-test error expected at ``decades`` past the data: the form's back-test error (for the
    averaged law, the weighted mean of the forms') scaled by ``decades`` over the back-test's own distance,
    and never below it - assuming the error grows linearly with the distance in decades, which the
    calibration study's errors roughly follow (a rule of thumb, stated, not a bound)."""
    if row["form"] == AVERAGED:
        w = report.weights
        errs = [
            (w[k], r.backtest.error)
            for k, r in report.results.items()
            if k in w and r.backtest is not None and math.isfinite(r.backtest.error)
        ]
        total = sum(x for x, _ in errs)
        bt = sum(x * e for x, e in errs) / total if total > 0 else float("nan")
    else:
        bt = float(row["backtest_error"])
    d_bt = backtest_distance(report)
    if not (math.isfinite(bt) and math.isfinite(d_bt) and d_bt > 0 and math.isfinite(decades)):
        return float("nan")
    return bt * max(1.0, decades / d_bt)


def readoff_table(
    tables: dict[str, pd.DataFrame], reports: dict[str, ScalingReport], forms: list[str], budget_n: float
) -> pd.DataFrame:
    """N needed with CI, P(reachable), the extrapolation distance (x and decades past the data, flagged
    beyond 3x), the back-test error expected at that distance, cost with CI and the predicted metric at
    the data budget, for the chosen forms of the reliable families."""
    rows = []
    for family, tab in tables.items():
        if unreliable_reason(tab) is not None:
            continue
        rep = reports[family]
        at_budget = rep.curves([budget_n])
        d_bt = backtest_distance(rep)
        for _, r in tab[tab["form"].isin(forms)].iterrows():
            factor = float(r["extrapolation_factor"])
            finite = math.isfinite(factor) and factor > 0
            decades = math.log10(factor) if finite else float("nan")
            b = at_budget[at_budget["form"] == r["form"]]
            rows.append(
                {
                    "Model family": family,
                    "Law": form_label(r["form"]),
                    "N needed [95% CI]": _n_needed(
                        float(r["n_needed"]), float(r["n_needed_low"]), float(r["n_needed_high"])
                    ),
                    "P(reachable)": pct(r["p_reachable"]),
                    "Extrapolation (\u00d7 largest observed N)": f"{sig(factor)}\u00d7" if finite else "\u2013",
                    "Decades past the data": sig(max(decades, 0.0)) if finite else "\u2013",
                    f"Beyond {FLAG_FACTOR:g}\u00d7 observed?": ("yes" if factor > FLAG_FACTOR else "no")
                    if finite
                    else "\u2013",
                    f"Expected error there (back-test at {sig(d_bt)} decades)": sig(expected_error(r, rep, decades))
                    if finite
                    else "\u2013",
                    "Cost [95% CI]": "\u2013"
                    if math.isinf(float(r["n_needed"]))
                    else sig_ci(r["cost"], r["cost_low"], r["cost_high"], prefix="$"),
                    "Metric at the data budget [95% CI]": "\u2013"
                    if b.empty
                    else sig_ci(b["metric"].iloc[0], b["metric_low"].iloc[0], b["metric_high"].iloc[0]),
                }
            )
    return pd.DataFrame(rows)


def ledger_record_table(led: pd.DataFrame) -> pd.DataFrame:
    """The ledger's record per law form (:func:`moa_core.scaling.ledger.ledger_record`), for people."""
    rec = ledger.ledger_record(led)
    return pd.DataFrame(
        {
            "Law": rec["form"].map(form_label),
            "Curves": rec["fits"].map(count),
            "Forecasts scored": rec["scored"].map(count),
            "Mean absolute error": rec["mae"].map(sig),
            "Inside the 95% interval": [
                f"{pct(c)} of {count(n)}" if n else "no interval" for c, n in zip(rec["coverage"], rec["with_interval"])
            ],
            "Decades out (median, max)": [
                f"{sig(a)}, {sig(b)}" for a, b in zip(rec["median_decades"], rec["max_decades"])
            ],
        }
    )


def ledger_table(led: pd.DataFrame) -> pd.DataFrame:
    """Every scored forecast, for people."""
    return pd.DataFrame(
        {
            "Model family": led["family"].map(family_label),
            "Law": led["form"].map(form_label),
            "Fitted up to N": led["n_max_observed"].map(count),
            "Scored at N": led["n"].map(count),
            "Decades out": led["decades"].map(sig),
            "Forecast [95% predictive interval]": [
                sig_ci(v, lo, hi) for v, lo, hi in zip(led["predicted"], led["low"], led["high"])
            ],
            "Observed": led["observed"].map(sig),
            "Error": led["error"].map(sig),
            "Inside?": led["inside"].map(lambda x: "\u2013" if pd.isna(x) else ("yes" if x else "no")),
            "Trend reliable when made?": led["reliable"].map(lambda x: "yes" if bool(x) else "no"),
            "Made at": led["made_at"].astype(str),
        }
    )


def x_range(n_min: float, budget_n: float) -> list[float]:
    """The chart's log x range: from just below the smallest observed N to just past the data budget."""
    return [math.log10(n_min) - 0.1, math.log10(budget_n) + 0.1]


def y_range(values: list[float], bounded: bool = True) -> list[float] | None:
    """The chart's y range: the drawn values (points, target, curves and bands within the budget) with a
    margin, within the metric's own range [0, 1] when it is bounded."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return [0.0, 1.0] if bounded else None
    lo, hi = float(v.min()), float(v.max())
    pad = max(0.02, 0.05 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    return [max(0.0, lo), min(1.0, hi)] if bounded else [lo, hi]


def cost_axis(
    x_rng: list[float], study: str, *, wells_per_plate: int, cost_per_unit: float, replicates: int
) -> tuple[list[float], list[str]]:
    """Tick positions (N, one per decade in the range) and their labels in plates and dollars for the chart's
    top axis: wells = N (x counts wells) or N x replicates (x counts molecules); plates = wells / wells per
    plate; dollars = N x cost per compound x replicates (the read-off's cost)."""
    lo, hi = math.ceil(x_rng[0]), math.floor(x_rng[1])
    ticks = [10.0**k for k in range(lo, hi + 1)]
    wells_per_n = 1 if x_label(study) == "training wells" else max(1, replicates)
    labels = [
        f"{sig(n * wells_per_n / max(1, wells_per_plate))} plates \u00b7 ${sig(n * cost_per_unit * replicates)}"
        for n in ticks
    ]
    return ticks, labels


def stored_table(stored: pd.DataFrame, families: list[str]) -> pd.DataFrame:
    """Human view of the pipeline's stored ``scaling_laws`` rows of the chosen families."""
    if stored.empty:
        return stored
    s = stored[stored["family"].isin(families)]
    rows = []
    for _, r in s.iterrows():
        g = r.get
        rows.append(
            {
                "Model family": family_label(r["family"]),
                "Law": form_label(r["form"]) if isinstance(r["form"], str) else "\u2013",
                "Rank (back-test)": "\u2013" if pd.isna(g("rank")) else str(int(g("rank"))),
                "Back-test error": sig(g("backtest_error")),
                "In-sample R\u00b2": sig(g("r2")),
                "Target": sig(g("target")),
                "N needed [95% CI]": (
                    "unreachable"
                    if sig(g("n_needed")) == "\u221e"
                    else sig_ci(g("n_needed"), g("n_needed_low"), g("n_needed_high"))
                ),
                "P(reachable)": pct(g("p_reachable")),
                "Cost [95% CI]": (
                    "\u2013"
                    if sig(g("n_needed")) == "\u221e"
                    else sig_ci(g("cost"), g("cost_low"), g("cost_high"), prefix="$")
                ),
                "Bootstrap resamples": count(g("n_boot")),
                "Reason": _sentence(g("reason")) or "\u2013",
            }
        )
    return pd.DataFrame(rows)


def task_options(results: pd.DataFrame) -> list[tuple[str, str]]:
    if results.empty:
        return []
    pairs = results[["task", "metric"]].drop_duplicates().astype(str)
    return sorted(map(tuple, pairs.to_numpy()))


def matching_option(options: list[tuple[str, str]], scaling_task: str | None) -> int:
    """Index of the (task, metric) of ``phenoca_results`` that matches the scaling page's task."""
    if scaling_task:
        source = studies.task_source(scaling_task)
        for test in (
            lambda t, m: source is not None and (t, m) == (source[0], source[2]),
            lambda t, m: f"{t}_{m}" == scaling_task,
            lambda t, m: t == scaling_task,
            lambda t, m: scaling_task.startswith(f"{t}_"),
        ):
            for i, (t, m) in enumerate(options):
                if test(t, m):
                    return i
    return 0


def matching_split(splits: list[str], scaling_task: str | None) -> int:
    """Index of the split the scaling task was measured on (``moa_top10_novel`` -> ``novel``)."""
    source = studies.task_source(scaling_task or "")
    if source is not None and source[1] in splits:
        return splits.index(source[1])
    return 0


def ordered_splits(splits: pd.Series) -> list[str]:
    """Distinct splits, in-distribution first (replicate, test, novel, ood), then the rest by name."""
    known = list(SPLIT_LABELS)
    found = set(splits.dropna().astype(str))
    return [s for s in known if s in found] + sorted(found - set(known))


def comparison(results: pd.DataFrame, task: str, metric: str, split: str) -> pd.DataFrame:
    """Per supervision, the best model at its largest training size: value with CI."""
    sel = results[
        (results["task"].astype(str) == task)
        & (results["metric"].astype(str) == metric)
        & (results["split"].astype(str) == split)
    ].copy()
    if sel.empty:
        return pd.DataFrame()
    for col in ("n_train_compounds", "n_train_wells"):
        sel[col] = pd.to_numeric(sel[col], errors="coerce") if col in sel.columns else np.nan
    sel["family"] = sel["supervision"].map(family_label)
    rows = []
    for family, g in sel.groupby("family", sort=False):
        top = g.sort_values(["n_train_compounds", "n_train_wells"], ascending=False, na_position="last")
        size = top.iloc[0][["n_train_compounds", "n_train_wells"]]
        at = g[
            (g["n_train_compounds"].fillna(-1) == (-1 if pd.isna(size.iloc[0]) else size.iloc[0]))
            & (g["n_train_wells"].fillna(-1) == (-1 if pd.isna(size.iloc[1]) else size.iloc[1]))
        ]
        best = at.sort_values("value", ascending=False).iloc[0]
        rows.append(
            {
                "family": family,
                "model": best.get("model"),
                "probe": best.get("probe"),
                "value": float(best["value"]),
                "ci_low": float(best.get("ci_low", np.nan)),
                "ci_high": float(best.get("ci_high", np.nan)),
                "n_train_compounds": size.iloc[0],
                "n_train_wells": size.iloc[1],
            }
        )
    return pd.DataFrame(rows).sort_values("value", ascending=False).reset_index(drop=True)


def comparison_table(comp: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Supervision": comp["family"],
            "Value [95% CI]": [sig_ci(v, lo, hi) for v, lo, hi in zip(comp["value"], comp["ci_low"], comp["ci_high"])],
            "Best model": comp["model"].astype(str),
            "Probe": comp["probe"].astype(str).map(lambda p: PROBE_LABELS.get(p, pretty(p))),
            "Training molecules": comp["n_train_compounds"].map(count),
            "Training wells": comp["n_train_wells"].map(count),
        }
    )
