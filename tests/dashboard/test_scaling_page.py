"""The Scaling laws page (Streamlit AppTest) on fabricated snapshots with known laws."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import scaling_fits as fits
from dashboard import scaling_labels as labels
from moa_core.scaling import fit_scaling_laws
from moa_core.storage import Warehouse

REPO = Path(__file__).resolve().parents[2]
PAGE = str(REPO / "dashboard" / "views" / "scaling_laws.py")
DATASET = "synthetic_jump_profiles"
SIZES = np.geomspace(100, 10_000, 6)
# metric = a_inf - A * N^-alpha (power law with a floor), 3 runs, N(0, 0.004) noise
LAWS = {"IBP": (0.95, 2.0, 0.35), "task-supervised": (0.85, 1.5, 0.30)}


def _points() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for family, (a_inf, amp, alpha) in LAWS.items():
        for run in range(3):
            for n in SIZES:
                rows.append(("moa_top10", family, n, a_inf - amp * n**-alpha + rng.normal(0, 0.004), str(run)))
                if family == "IBP":
                    rows.append(("target_top10", family, n, 0.3 + rng.normal(0, 0.01), str(run)))  # flat
    for n in SIZES[:2]:  # only two sizes
        rows.append(("molecule_top10", "IBP", n, 0.2 + 0.01 * np.log(n), "0"))
    df = pd.DataFrame(rows, columns=["task", "family", "n", "metric", "run"])
    df.insert(0, "study", "phenoca_ood")
    df.insert(0, "dataset", DATASET)
    df["model_size"] = np.nan
    return df


def _laws(points: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for (task, family), g in points.groupby(["task", "family"]):
        if g["n"].nunique() < 3:
            continue
        tab = fit_scaling_laws(g[["n", "metric", "run"]], n_boot=10, target=0.8, cost_per_compound=100.0).table()
        tab.insert(0, "family", family)
        tab.insert(0, "task", task)
        tab.insert(0, "study", "phenoca_ood")
        tab.insert(0, "dataset", DATASET)
        frames.append(tab)
    return pd.concat(frames, ignore_index=True)


def _phenoca() -> pd.DataFrame:
    rows = []
    # the pipeline's raw supervision names and probes (moa_core.phenoca.study)
    best = {("ibp", "mlp3"): 0.72, ("task", "head"): 0.61, ("none", "knn"): 0.45}
    for (sup, probe), top in best.items():
        for frac, n_cpd in (("25", 100), ("50", 200), ("100", 400)):
            for model, shift in (("d1_w128", 0.03), ("d3_w256", 0.0)):
                for split, sdrop in (("replicate", 0.0), ("novel", 0.2)):
                    v = top - shift - sdrop - (0.1 if frac != "100" else 0.0)
                    rows.append(
                        (
                            DATASET,
                            frac,
                            model,
                            sup,
                            probe,
                            "moa",
                            split,
                            "top10",
                            v,
                            v - 0.03,
                            v + 0.03,
                            4 * n_cpd,
                            n_cpd,
                            50,
                            "{}",
                        )
                    )
    return pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "fraction",
            "model",
            "supervision",
            "probe",
            "task",
            "split",
            "metric",
            "value",
            "ci_low",
            "ci_high",
            "n_train_wells",
            "n_train_compounds",
            "n_ood_compounds",
            "params",
        ],
    )


def _publish(tmp_path, monkeypatch, tables: dict[str, pd.DataFrame]) -> None:
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    for name, df in tables.items():
        wh.replace_rows(name, df, {"dataset": DATASET})
    wh.publish_snapshot(tmp_path / "snapshot" / "warehouse.duckdb")
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    pts = _points()
    return {"scaling_points": pts, "scaling_laws": _laws(pts), "phenoca_results": _phenoca()}


@pytest.fixture()
def snapshot(tmp_path, monkeypatch, tables):
    _publish(tmp_path, monkeypatch, tables)
    return tmp_path


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a {column!r} column; have {[list(d.value.columns) for d in at.dataframe]}")


def _row(table: pd.DataFrame, family: str, law: str) -> pd.Series:
    sel = table[(table["Model family"] == family) & (table["Law"] == labels.form_label(law))]
    assert len(sel) == 1, table
    return sel.iloc[0]


def _n_needed(cell: str) -> float:
    """The point value of "1,140 [1,020, 1,210]" / "3.25M [...]"."""
    head = cell.split(" [")[0].replace(",", "")
    scale = {"M": 1e6, "B": 1e9, "T": 1e12}.get(head[-1], 1.0)
    return float(head[:-1]) * scale if scale != 1.0 else float(head)


def _keyed(widgets, name: str):
    """The widget keyed ``name:<dataset>:<study>:<task>`` (the page keys a curve's choices by the curve)."""
    found = [w for w in widgets if str(w.key).startswith(f"{name}:")]
    assert len(found) == 1, [w.key for w in widgets]
    return found[0]


def _run() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def test_page_renders_points_curves_and_ranked_forms(snapshot):
    at = _run()
    assert at.selectbox(key="dataset").value == DATASET
    assert at.selectbox(key="task").value == "moa_top10"
    assert set(_keyed(at.multiselect, "families").value) == set(LAWS)
    chosen = _keyed(at.multiselect, "forms").value
    assert len(chosen) == 2
    forms = _frame(at, "Rank (back-test)")
    assert set(forms["Law"]) == {
        labels.form_label(f) for f in ("averaged", "linear", "log_linear", "power_floor", "m4", "broken_power")
    }
    assert chosen[0] == "averaged"  # the first view draws the averaged law (form uncertainty in its band)
    for family in LAWS:
        fam = forms[forms["Model family"] == family]
        ranks = fam["Rank (back-test)"].tolist()
        assert sorted(ranks) == ["1", "2", "3", "4", "5", "\u2013"]  # the averaged law has no rank
        weights = fam[fam["Law"] != labels.form_label("averaged")]["Weight in the average"].astype(float)
        assert weights.sum() == pytest.approx(1.0, abs=0.01)
        # the default laws are the top-2 by back-test rank (mean over families)
        top = forms[(forms["Model family"] == family) & forms["Rank (back-test)"].isin(["1", "2"])]["Law"]
        assert set(top) & {labels.form_label(f) for f in chosen}
    # the data follow a power law with a floor: the straight line is ranked last, and its R² is below the floor's
    ibp = forms[forms["Model family"] == "IBP"].set_index("Law")
    assert ibp.loc[labels.form_label("linear"), "Rank (back-test)"] == "5"
    assert float(ibp.loc[labels.form_label("power_floor"), "In-sample R\u00b2"]) > 0.95
    assert ibp.loc[labels.form_label("linear"), "Asymptote [95% CI]"].startswith("none")
    asym = ibp.loc[labels.form_label("power_floor"), "Asymptote [95% CI]"]
    assert 0.9 < float(asym.split(" [")[0]) < 1.0  # true floor 0.95
    assert any("Data needed" in h.value for h in at.subheader)
    assert len(at.get("plotly_chart")) >= 2  # scaling chart + comparison chart
    # no raw column names in the tables
    for df in at.dataframe:
        assert not {"n_needed", "backtest_error", "p_reachable", "family", "form"} & set(df.value.columns)


def test_switching_the_dataset_resets_the_curve_choices_to_the_new_curves(tmp_path, monkeypatch, tables):
    """A choice of families made for one dataset's curve does not carry over as an empty choice for another."""
    other = {k: v.assign(dataset="other_profiles") for k, v in tables.items()}
    only_ibp = other["scaling_points"]
    other["scaling_points"] = only_ibp[only_ibp["family"] == "IBP"]
    other["scaling_laws"] = other["scaling_laws"][other["scaling_laws"]["family"] == "IBP"]
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    for group in (tables, other):
        for name, df in group.items():
            wh.replace_rows(name, df, {"dataset": df["dataset"].iloc[0]})
    wh.publish_snapshot(tmp_path / "snapshot" / "warehouse.duckdb")
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    at = _run()
    first = at.selectbox(key="dataset").value
    _keyed(at.multiselect, "families").set_value(["task-supervised"] if first == DATASET else ["IBP"]).run()
    at.selectbox(key="dataset").set_value("other_profiles" if first == DATASET else DATASET).run()
    assert not at.exception
    families = _keyed(at.multiselect, "families")
    assert families.value and set(families.value) == set(families.options)
    assert not any("Pick at least one model family" in i.value for i in at.info)


def test_target_slider_changes_n_needed_and_cost(snapshot):
    at = _run()
    _keyed(at.multiselect, "forms").set_value(["power_floor"])
    _keyed(at.slider, "target").set_value(0.8).run()
    assert not at.exception
    low = _row(_frame(at, "N needed [95% CI]"), "IBP", "power_floor")
    _keyed(at.slider, "target").set_value(0.88).run()
    assert not at.exception
    high = _row(_frame(at, "N needed [95% CI]"), "IBP", "power_floor")
    assert _n_needed(high["N needed [95% CI]"]) > 2 * _n_needed(low["N needed [95% CI]"])
    # known law: N = (A / (a_inf - target))^(1/alpha) -> 0.8: ~1,640; 0.88: ~14,400
    assert 1_000 < _n_needed(low["N needed [95% CI]"]) < 2_300
    assert high["Cost [95% CI]"].startswith("$") and high["Cost [95% CI]"] != low["Cost [95% CI]"]
    # cost = N x $/compound x replicates
    at.number_input(key="cost").set_value(200.0).run()
    doubled = _row(_frame(at, "N needed [95% CI]"), "IBP", "power_floor")
    assert _n_needed(doubled["Cost [95% CI]"].replace("$", "")) == pytest.approx(
        2 * _n_needed(high["Cost [95% CI]"].replace("$", "")), rel=0.02
    )


def test_target_above_the_asymptote_is_unreachable(snapshot):
    at = _run()
    _keyed(at.multiselect, "forms").set_value(["power_floor", "log_linear"])
    _keyed(at.slider, "target").set_value(0.95).run()  # task-supervised plateaus at 0.85
    assert not at.exception
    table = _frame(at, "N needed [95% CI]")
    row = _row(table, "task-supervised", "power_floor")
    assert row["N needed [95% CI]"] == "unreachable"
    assert float(row["P(reachable)"].rstrip("%")) < 10
    forms = _frame(at, "Rank (back-test)")
    reason = forms[(forms["Model family"] == "task-supervised") & (forms["Law"] == labels.form_label("power_floor"))][
        "Reason"
    ].iloc[0]
    assert "unreachable" in reason
    assert row["Beyond 3\u00d7 observed?"] == "\u2013" and row["Cost [95% CI]"] == "\u2013"
    # the log-linear law (no asymptote) "reaches" it, but far past the data: flagged
    line = _row(table, "task-supervised", "log_linear")
    assert line["Beyond 3\u00d7 observed?"] == "yes"
    assert any("Flagged" in i.value for i in at.info)


def test_flat_points_give_no_reliable_extrapolation(snapshot):
    at = _run()
    at.selectbox(key="task").set_value("target_top10").run()
    assert not at.exception
    msgs = [w.value for w in at.warning]
    assert sum(m.startswith("IBP: No reliable extrapolation") and "flat" in m for m in msgs) == 1, msgs
    assert not any("Metric at the data budget [95% CI]" in df.value.columns for df in at.dataframe)  # no numbers
    stored = _frame(at, "Target")  # the pipeline's stored fits: numbers blank, the same reason
    assert set(stored["N needed [95% CI]"]) == {"\u2013"} and stored["Reason"].str.contains("flat").all()
    forms = _frame(at, "Reliability")
    assert set(forms["Reliability"]) == {"no reliable extrapolation"}


def test_fewer_than_three_sizes_say_what_to_materialize(snapshot):
    at = _run()
    at.selectbox(key="task").set_value("molecule_top10").run()
    assert not at.exception
    msg = " ".join(w.value for w in at.warning)
    assert "at least 3" in msg and "phenoca_job" in msg


def test_comparison_shows_ibp_and_task_supervised(snapshot):
    at = _run()
    assert any("IBP vs task-supervised" in h.value for h in at.header)
    assert at.selectbox(key="cmp_task:moa_top10").value == ("moa", "top10")  # matches the scaling page's task
    comp = _frame(at, "Supervision").set_index("Supervision")
    assert comp.loc["IBP", "Value [95% CI]"] == "0.720 [0.690, 0.750]"
    assert comp.loc["task-supervised", "Value [95% CI]"] == "0.610 [0.580, 0.640]"
    assert comp.loc["IBP", "Best model"] == "d3_w256" and comp.loc["IBP", "Training molecules"] == "400"
    assert comp.loc["IBP", "Probe"] == "3-layer MLP" and comp.loc["profiles (CP)", "Probe"] == "k-NN"
    assert list(comp.index) == ["IBP", "task-supervised", "profiles (CP)"]
    assert at.selectbox(key="cmp_split:moa_top10:moa:top10").value == "replicate"
    at.selectbox(key="cmp_split:moa_top10:moa:top10").set_value("novel").run()
    assert not at.exception
    comp = _frame(at, "Supervision").set_index("Supervision")
    assert comp.loc["IBP", "Value [95% CI]"].startswith("0.520 ")


def test_missing_snapshot_and_tables_name_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    at = _run()
    assert "No published snapshot" in at.warning[0].value and "phenoca_job" in at.warning[0].value
    # a snapshot without any scaling table
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    wh.replace_rows(
        "evaluation_results", pd.DataFrame({"dataset": ["d"], "fraction": ["100"], "value": [0.5]}), {"dataset": "d"}
    )
    wh.publish_snapshot(tmp_path / "snapshot" / "warehouse.duckdb")
    at = _run()
    assert "phenoca_results" in at.warning[0].value and "scaling_laws" in at.warning[0].value
    assert "uv run python -m orchestration.materialize synthetic_jump_profiles phenoca_job" in at.warning[0].value


def test_only_phenoca_results_still_shows_the_comparison(tmp_path, monkeypatch):
    _publish(tmp_path, monkeypatch, {"phenoca_results": _phenoca()})
    at = _run()
    assert any("`scaling_points`" in w.value and "phenoca_job" in w.value for w in at.warning)
    assert "IBP" in _frame(at, "Supervision")["Supervision"].tolist()


def test_live_readoff_matches_fit_scaling_laws_with_a_target(tables):
    """The page's cheap re-read at a new target equals a full refit with that target."""
    pts = tables["scaling_points"]
    g = pts[(pts["task"] == "moa_top10") & (pts["family"] == "IBP")]
    fp = fits.family_points(g, "IBP")
    kw = dict(n_boot=40, seed=3)
    live = fits.at_target(fits.fit(fp, **kw), 0.85, 100.0, 2).table()
    full = fit_scaling_laws(fp, n_boot=40, seed=3, target=0.85, cost_per_compound=100.0, replicates=2).table()
    pd.testing.assert_frame_equal(live, full)


def test_helpers_format_and_reduce():
    assert [fits.sig(x) for x in (0.52345, 1137.1, 52345, 3.25e6, 3.25e8 * 1.0, np.nan, np.inf)] == [
        "0.523",
        "1,140",
        "52,300",
        "3.25M",
        "325M",
        "\u2013",
        "\u221e",
    ]
    assert fits.sig(0.72) == "0.720" and fits.sig(3.3e6) == "3.30M" and fits.count(50.0) == "50"
    assert fits.sig_ci(1137, 1025, np.inf) == "1,140 [1,020, \u221e]"
    assert fits.sig_ci(4.04e9, 1.51e9, np.inf, prefix="$") == "$4.04B [$1.51B, \u221e]"
    assert fits.sig(3.34e292) == "3.34e+292"
    assert fits._sentence("log_linear has no asymptote; back-test of 'm4' failed") == (
        "The log-linear law has no asymptote; back-test of M4 failed"
    )
    assert labels.task_label("moa_top10") == labels.task_label("moa", "top10") == "MoA top-10 accuracy"
    opts = [("discovery", "auc"), ("moa", "top10"), ("target", "top10")]
    assert opts[fits.matching_option(opts, "moa_top10_novel")] == ("moa", "top10")
    assert opts[fits.matching_option(opts, "discovery_auc")] == ("discovery", "auc")
    assert fits.matching_split(["replicate", "novel"], "moa_top10_novel") == 1
    assert labels.family_label("none") == "profiles (CP)"
    zoo = pd.DataFrame(
        {
            "family": "IBP",
            "n": [1, 1, 2, 2, 3, 3],
            "metric": [0.1, 0.3, 0.2, 0.5, 0.4, 0.6],
            "run": "0",
            "model_size": [1.0, 2.0] * 3,
        }
    )
    assert fits.mixes_model_sizes(zoo)
    assert fits.family_points(zoo, "IBP", "largest")["metric"].tolist() == [0.3, 0.5, 0.6]
    assert fits.family_points(zoo, "IBP", "best")["metric"].tolist() == [0.3, 0.5, 0.6]  # per size and seed
    # the pipeline's zoo: one run per model; the envelope is the best model per size (runs collapsed)
    models = pd.DataFrame(
        {
            "family": "IBP",
            "n": [1, 1, 1, 2, 2, 2, 3, 3, 3],
            "run": ["a", "b", "c"] * 3,
            "metric": [0.1, 0.3, 0.2, 0.2, 0.4, 0.5, 0.4, 0.6, 0.5],
            "model_size": [1.0, 2.0, 3.0] * 3,
        }
    )
    env = fits.family_points(models, "IBP")
    assert list(env.columns) == ["n", "metric"] and env["metric"].tolist() == [0.3, 0.5, 0.6]
    assert fits.family_points(models, "IBP", "largest")["metric"].tolist() == [0.2, 0.5, 0.5]
    assert list(fits.family_points(zoo.assign(model_size=np.nan), "IBP").columns) == ["n", "metric", "run"]


def _chart(at: AppTest) -> dict:
    import json

    return json.loads(at.get("plotly_chart")[0].proto.spec)


def _values(v) -> np.ndarray:
    """A plotly trace's data: a list, or plotly's typed array ``{"dtype", "bdata"}``."""
    import base64

    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=float)


def _ledger(pts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Forecasts of the IBP MoA curve fitted on its 4 smaller sizes, scored against all 6."""
    from moa_core.scaling import ledger
    from moa_core.scaling.studies import fit_curve_reports

    curve = pts[(pts["task"] == "moa_top10") & (pts["family"] == "IBP")]
    early = fit_curve_reports(curve[curve["n"] <= SIZES[3] * 1.001], n_boot=50)
    fc = ledger.forecasts([(k, p, r) for k, p, r in early])
    full = fit_curve_reports(curve, n_boot=0)
    led = ledger.score_forecasts(fc, pd.concat([p.assign(**k) for k, p, _ in full]))
    return fc, led


def test_the_first_view_is_bounded_and_tells_fitted_from_withheld_points(snapshot):
    at = _run()
    spec = _chart(at)
    lay = spec["layout"]
    lo, hi = lay["yaxis"]["range"]
    assert 0.0 <= lo < hi <= 1.0  # the metric's own range, not a line's extrapolation past 1
    x_lo, x_hi = lay["xaxis"]["range"]
    budget = 10.0 * SIZES[-1]  # the default data budget: 10x the largest observed N
    assert x_lo < np.log10(SIZES[0]) and np.log10(budget) <= x_hi < np.log10(budget) + 0.5
    names = [t.get("name", "") for t in spec["data"]]
    assert any("points fitted" in n for n in names) and any("withheld in the back-test" in n for n in names)
    withheld = [t for t in spec["data"] if "withheld" in t.get("name", "")]
    assert all(t["marker"]["symbol"] == "circle-open" for t in withheld)
    assert all(np.allclose(_values(t["x"]), SIZES[-1]) for t in withheld)  # the largest size, the one the back-test hid
    # the top axis reads N in plates and dollars
    assert lay["xaxis2"]["overlaying"] == "x" and all("plates" in t and "$" in t for t in lay["xaxis2"]["ticktext"])
    readoff = _frame(at, "N needed [95% CI]")
    assert "Decades past the data" in readoff.columns
    assert any(c.startswith("Expected error there") for c in readoff.columns)
    decades = readoff["Decades past the data"][readoff["Decades past the data"] != "\u2013"].astype(float)
    factors = readoff.loc[decades.index, "Extrapolation (\u00d7 largest observed N)"].str.rstrip("\u00d7").astype(float)
    assert np.allclose(decades, np.log10(factors.clip(lower=1)), atol=0.01)


def test_the_page_opens_on_a_curve_with_a_reliable_fit(tmp_path, monkeypatch, tables):
    """A dataset whose name sorts first but whose only curve is flat does not open the page."""
    flat = tables["scaling_points"]
    flat = flat[(flat["task"] == "target_top10")].assign(dataset="aaa_flat")
    laws = tables["scaling_laws"]
    flat_laws = laws[laws["task"] == "target_top10"].assign(dataset="aaa_flat")
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    for name, df in tables.items():
        wh.replace_rows(name, df, {"dataset": DATASET})
    wh.replace_rows("scaling_points", flat, {"dataset": "aaa_flat"})
    wh.replace_rows("scaling_laws", flat_laws, {"dataset": "aaa_flat"})
    wh.publish_snapshot(tmp_path / "snapshot" / "warehouse.duckdb")
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    assert fits.default_view() == (DATASET, "phenoca_ood", "moa_top10")
    at = _run()
    assert at.selectbox(key="dataset").value == DATASET and at.selectbox(key="task").value == "moa_top10"
    # choosing the flat dataset: its message names its own dataset and jobs
    at.selectbox(key="dataset").set_value("aaa_flat").run()
    assert not at.exception
    texts = " ".join(w.value for w in at.warning) + " ".join(i.value for i in at.info)
    assert "aaa_flat" in texts and "synthetic_jump_profiles " not in texts


def test_the_forecast_ledger_shows_the_record_per_law(tmp_path, monkeypatch, tables):
    fc, led = _ledger(tables["scaling_points"])
    assert not led.empty
    _publish(tmp_path, monkeypatch, {**tables, "scaling_forecasts": fc, "scaling_ledger": led})
    at = _run()
    record = _frame(at, "Forecasts scored")
    assert set(record["Law"]) == {labels.form_label(f) for f in set(led["form"])}
    avg = record[record["Law"] == labels.form_label("averaged")].iloc[0]
    assert int(avg["Forecasts scored"]) == len(led[led["form"] == "averaged"]) == 2  # the two withheld sizes
    rows = _frame(at, "Forecast [95% predictive interval]")
    assert len(rows) == len(led) and set(rows["Inside?"]) <= {"yes", "no"}
    inside = led[led["form"] == "averaged"]["inside"].astype(bool)
    assert avg["Inside the 95% interval"].startswith(fits.pct(inside.mean()))


def test_without_scored_forecasts_the_ledger_says_what_to_run(snapshot):
    at = _run()
    assert any("No forecast of this curve has been scored yet" in i.value for i in at.info)
    assert any(f"materialize {DATASET} phenoca_job" in i.value for i in at.info)
