"""The Method comparison page (Streamlit AppTest) on fabricated snapshots with known values."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import comparison_tables as cq
from dashboard.style import method_color
from moa_core.storage import Warehouse

REPO = Path(__file__).resolve().parents[2]
PAGE = str(REPO / "dashboard" / "views" / "method_comparison.py")
DS = "synthetic_cpjump1"
METHODS = {"MP": 0.6, "CP": 0.4}
MOAS = {"moa_a": 2, "moa_b": 2, "moa_c": 4}  # wells per MOA: chance F1 = 0.25^2 + 0.25^2 + 0.5^2 = 0.375
CI_RE = re.compile(r"^-?\d+(\.\d+)? \[-?\d+(\.\d+)?, -?\d+(\.\d+)?\]( \(k=\d+\))?$")
SCI_RE = re.compile(r"^\d\.\d{2}e[-+]\d{2}$")


def _results(fraction: str, scale: float = 1.0) -> pd.DataFrame:
    rows = []
    for method, base in METHODS.items():
        b = base * scale
        for k in range(1, 8):
            v = b - 0.01 * k
            # MP's k-NN F1 curve carries a CI at every k (band); CP's has none
            lo, hi = (v - 0.05, v + 0.05) if method == "MP" else (np.nan, np.nan)
            rows.append((method, "knn", "f1", float(k), v, lo, hi, np.nan))
            rows += [(method, "knn", m, float(k), v, np.nan, np.nan, np.nan) for m in ("precision", "recall")]
        rows += [
            (method, "knn", "best_f1", 3.0, b, b - 0.1, b + 0.1, np.nan),
            (method, "latent", "f1", np.nan, b + 0.05, b - 0.05, b + 0.15, np.nan),
            (method, "logistic", "f1", np.nan, b + 0.02, np.nan, np.nan, np.nan),
            (method, "intra_inter", "intra_mean", np.nan, b / 2, np.nan, np.nan, np.nan),
            (method, "intra_inter", "inter_mean", np.nan, 0.01, np.nan, np.nan, np.nan),
            (method, "intra_inter", "delta", np.nan, b / 2 - 0.01, b / 2 - 0.1, b / 2 + 0.1, np.nan),
            (method, "groups", "same_compound_mean", np.nan, b, np.nan, np.nan, np.nan),
            (method, "groups", "diff_compound_same_moa_mean", np.nan, b / 2, np.nan, np.nan, np.nan),
            (method, "groups", "diff_moa_mean", np.nan, 0.0, np.nan, np.nan, np.nan),
            (method, "groups", "z_same_compound_vs_diff_moa", np.nan, 9.0, np.nan, np.nan, 5e-15),
            (method, "filtering", "n_moas_output", np.nan, 3.0, np.nan, np.nan, np.nan),
        ]
        for p in np.arange(98.0, 99.81, 0.2):
            ci = (b * 5, b * 20) if np.isclose(p, 99.0) else (np.nan, np.nan)
            rows.append((method, "enrichment", "odds_ratio", round(float(p), 1), b * 10, *ci, 1e-6))
    df = pd.DataFrame(
        rows, columns=["method", "analysis", "metric", "parameter", "value", "ci_low", "ci_high", "p_value"]
    )
    df["n"] = 8.0
    df.loc[df["analysis"] == "groups", "n"] = np.nan  # a missing n must render as an en dash
    df.insert(0, "fraction", fraction)
    df.insert(0, "dataset", DS)
    return df


def _holdout() -> pd.DataFrame:
    rows = []
    for method in METHODS:
        for scheme in ("individual", "aggregated"):
            for k in range(1, 4):
                rows.append((method, f"holdout_{scheme}", "top_k_accuracy", float(k), min(1.0, 0.3 + 0.2 * k)))
                rows.append((method, f"holdout_{scheme}", "random_baseline", float(k), k / 3))
    df = pd.DataFrame(rows, columns=["method", "analysis", "metric", "parameter", "value"])
    df["ci_low"], df["ci_high"], df["p_value"], df["n"] = np.nan, np.nan, np.nan, 3.0
    df.insert(0, "dataset", DS)
    return df


def _per_moa_tables(fraction: str) -> dict[str, pd.DataFrame]:
    per, conf, maps = [], [], []
    for method in METHODS:
        for analysis in ("knn", "latent"):
            for moa, n in MOAS.items():
                perfect = method == "MP"  # MP: diagonal confusion, F1 = 1; CP: one moa_c well voted moa_a
                per.append(
                    (
                        method,
                        analysis,
                        moa,
                        n,
                        1.0 if perfect else 0.5,
                        1.0 if perfect else 0.75,
                        1.0 if perfect else 0.6,
                    )
                )
                if perfect or moa != "moa_c":
                    conf.append((method, analysis, moa, moa, n))
                else:
                    conf += [(method, analysis, moa, moa, n - 1), (method, analysis, moa, "moa_a", 1)]
        w = 0
        for moa, n in MOAS.items():
            for i in range(n):
                maps.append(
                    (method, f"P{i % 2}", f"A{w:02d}", f"cpd_{moa}_{i % 2}", moa, float(w), float(-w), 0.5, 0.2)
                )
                w += 1
    where = {"dataset": DS, "fraction": fraction}
    per_df = pd.DataFrame(per, columns=["method", "analysis", "moa", "n", "precision", "recall", "f1"])
    conf_df = pd.DataFrame(conf, columns=["method", "analysis", "true_moa", "predicted_moa", "count"])
    map_df = pd.DataFrame(
        maps,
        columns=[
            "method",
            "Metadata_Plate",
            "Metadata_Well",
            "Metadata_pert_iname",
            "Metadata_moa",
            "pc1",
            "pc2",
            "explained_1",
            "explained_2",
        ],
    )
    return {
        name: df.assign(**where)[[*where, *df.columns]]
        for name, df in (("evaluation_per_moa", per_df), ("evaluation_confusion", conf_df), ("embedding_maps", map_df))
    }


def _ablation() -> pd.DataFrame:
    """cp_ablation rows: CP as the reference, two JUMP-recipe steps; an infinite odds ratio (tiny test sets)."""
    from moa_core.evaluation.ablation import ABLATION_METRICS

    rows = []
    for recipe, i, step, feats, base in (
        ("reference", 0, "CP (DMSO standardized)", 300, 0.4),
        ("CP (JUMP recipe)", 1, "variance filter", 280, 0.42),
        ("CP (JUMP recipe)", 2, "MAD robustize", 280, 0.45),
    ):
        for analysis, metric, param, label in ABLATION_METRICS:
            value = np.inf if analysis == "enrichment" and i == 2 else base
            rows.append((DS, "cp_profiles", recipe, i, step, feats, label, analysis, metric, param, value))
    cols = ["dataset", "profiles", "recipe", "step_index", "step", "features", "label", "analysis", "metric"]
    return pd.DataFrame(rows, columns=[*cols, "parameter", "value"]).astype({"parameter": float})


def _publish(tmp_path: Path, *, new_tables: bool = True, scale: float = 1.0) -> None:
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    for frac in ("100", "50"):
        wh.replace_rows(
            "evaluation_results",
            _results(frac, scale if frac == "100" else 0.8 * scale),
            {"dataset": DS, "fraction": frac},
        )
    wh.replace_rows("holdout_results", _holdout(), {"dataset": DS})
    wh.replace_rows("cp_ablation", _ablation(), {"dataset": DS})
    if new_tables:  # only fraction 100 has them: fraction 50 plays an older partition
        for name, df in _per_moa_tables("100").items():
            wh.replace_rows(name, df, {"dataset": DS, "fraction": "100"})
        # what evaluation_results writes: chance levels of the scored wells (2, 2, 4 wells of 3 MOAs)
        chance = pd.DataFrame(
            [("weighted_f1", 0.375, 3, 8, "prevalences"), ("odds_ratio", 1.0, 3, 8, "-")],
            columns=["metric", "value", "n_moas", "n_wells", "definition"],
        )
        wh.replace_rows(
            "evaluation_chance", chance.assign(dataset=DS, fraction="100"), {"dataset": DS, "fraction": "100"}
        )
    wh.publish_snapshot(tmp_path / "snapshot" / "warehouse.duckdb")


@pytest.fixture()
def snapshot(tmp_path, monkeypatch):
    _publish(tmp_path)
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    return tmp_path


def _run() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


SECTIONS = [
    "Enrichment and k-NN curves",
    "Held-out compounds",
    "Replicate fractions",
    "Pair groups and field classification",
    "Per MOA and confusion",
    "Embedding map",
    "CP recipe ablation",
    "All results",
]


def _show(at: AppTest, section: str) -> AppTest:
    """Open one section of the page (one is drawn at a time)."""
    at.radio(key="mc_section").set_value(section).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _values(x: object) -> np.ndarray:
    """A plotly JSON array (a list or a base64 typed array ``{"dtype", "bdata", "shape"}``) as numpy."""
    if isinstance(x, dict) and "bdata" in x:
        arr = np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))
        shape = x.get("shape")
        if shape:
            arr = arr.reshape([int(n) for n in str(shape).split(",")])
        return arr
    return np.asarray(x)


def _chart(at: AppTest, title_part: str) -> dict:
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        title = (spec["layout"].get("title") or {}).get("text", "")
        if title_part in title:
            return spec
    raise AssertionError(f"no chart titled {title_part!r}")


def _frame(at: AppTest, first_column: str) -> pd.DataFrame:
    for d in at.dataframe:
        if first_column in d.value.columns and d.value.columns[0] == first_column:
            return d.value
    raise AssertionError(f"no table starting with column {first_column!r}")


def test_headline_has_cis_chance_and_method_columns(snapshot):
    at = _run()
    head = at.dataframe[0].value
    assert list(head.columns) == ["metric", "MP", "CP", "chance"]
    row = head.set_index("metric")
    assert row.loc["k-NN best weighted F1", "MP"] == "0.600 [0.500, 0.700] (k=3)"
    assert row.loc["Class latent assignment F1", "CP"] == "0.450 [0.350, 0.550]"
    assert row.loc["Enrichment OR @ 99th pct", "MP"] == "6.00 [3.00, 12.0]"
    for metric in ("k-NN best weighted F1", "Class latent assignment F1", "Enrichment OR @ 99th pct"):
        assert CI_RE.match(row.loc[metric, "MP"]), row.loc[metric, "MP"]
    # chance: the evaluation's prevalence-weighted F1 of its scored wells (2, 2, 4 wells), OR 1, PCC delta 0
    assert row.loc["k-NN best weighted F1", "chance"] == "0.375"
    assert row.loc["Logistic regression F1", "chance"] == "0.375"
    assert row.loc["Enrichment OR @ 99th pct", "chance"] == "1"
    assert row.loc["Intra \u2212 inter-MOA PCC delta", "chance"] == "0"
    assert row.loc["Intra-MOA mean PCC", "chance"] == "\u2013"
    assert row.loc["Logistic regression F1", "MP"] == "0.620"  # no CI stored: value only


def test_p_values_are_scientific_and_no_cell_is_none(snapshot):
    at = _show(_run(), "All results")
    allres = _frame(at, "method")
    assert "p-value" in allres.columns
    assert all(v == "\u2013" or SCI_RE.match(v) for v in allres["p-value"]), set(allres["p-value"])
    z = allres[allres["metric"] == "z: same compound vs different MOA"]
    assert set(z["p-value"]) == {"5.00e-15"}
    assert set(z["n"]) == {"\u2013"}
    assert not (allres["metric"] == "diff_compound_same_moa_mean").any()
    for section in SECTIONS:
        for d in _show(at, section).dataframe:
            v = d.value
            assert not v.isna().any().any(), v
            assert not v.astype(str).isin(["None", "nan", "NaN", "<NA>"]).any().any(), v


def test_cp_ablation_lists_every_step_in_order(snapshot):
    at = _show(_run(), "CP recipe ablation")
    ab = _frame(at, "recipe")
    assert list(ab["after step"]) == ["CP (DMSO standardized)", "variance filter", "MAD robustize"]
    assert list(ab["k-NN best weighted F1"]) == ["0.400", "0.420", "0.450"]
    assert ab["enrichment odds ratio @ 99th pct"].iloc[2] in {"inf", "\u221e"}


def test_held_out_plot_uses_method_colours_and_grey_dashed_random(snapshot):
    at = _show(_run(), "Held-out compounds")
    traces = _chart(at, "held-out compounds")["data"]
    names = [t["name"] for t in traces]
    assert {
        "MP, individual vote",
        "MP, aggregated vote",
        "CP, individual vote",
        "CP, aggregated vote",
        "random",
    } <= set(names)
    for t in traces:
        if t["name"] == "random":
            assert t["line"]["color"] == method_color("random") and t["line"]["dash"] == "dash"
        else:
            method = t["name"].split(",")[0]
            assert t["line"]["color"] == method_color(method), t["name"]
    assert names.count("random") == 1


def test_curves_have_bands_chance_lines_and_method_colours(snapshot):
    at = _run()
    knn = _chart(at, "k-NN MOA prediction")["data"]
    band = [t for t in knn if t.get("fill") == "tonexty"]
    assert len(band) == 1 and band[0]["name"] == "MP 95% CI"  # only MP's curve has CIs at every k
    chance = [t for t in knn if t["name"].startswith("chance")]
    assert len(chance) == 1 and _values(chance[0]["y"]).tolist() == [0.375, 0.375]
    assert chance[0]["line"]["dash"] == "dash"
    for t in knn:
        if t["name"] in METHODS:
            assert t["line"]["color"] == method_color(t["name"])
    enr = _chart(at, "enrichment")["data"]
    one = [t for t in enr if t["name"].startswith("OR = 1")]
    assert len(one) == 1 and _values(one[0]["y"]).tolist() == [1.0, 1.0] and one[0]["line"]["dash"] == "dash"
    mp = next(t for t in enr if t["name"] == "MP")
    assert mp["error_y"]["array"] is not None  # CI stored at the 99th percentile only: error bar there
    groups = _chart(_show(at, "Pair groups and field classification"), "pair group")["data"]
    assert {t["marker"]["color"] for t in groups} == {method_color("MP"), method_color("CP")}
    assert set(_values(groups[0]["x"]).tolist()) == {
        "same compound (replicates)",
        "different compound, same MOA",
        "different MOA",
        "intra-MOA mean PCC",
        "inter-MOA mean PCC",
    }
    frac = _chart(_show(at, "Replicate fractions"), "share of training replicates")["data"]
    assert {t["name"] for t in frac if t.get("fill") == "tonexty"} == {"MP 95% CI", "CP 95% CI"}
    assert any("Shaded: 95% bootstrap CI" in c.value for c in at.caption)
    _show(at, "Enrichment and k-NN curves")
    at.radio(key="knn_metric").set_value("recall").run()
    assert not at.exception


def test_per_moa_confusion_and_map(snapshot):
    at = _show(_run(), "Per MOA and confusion")
    f1 = _chart(at, "F1 per MOA")["data"]
    bars = {t["name"]: t for t in f1 if t["type"] == "bar"}
    assert set(bars) == set(METHODS)
    assert _values(bars["MP"]["y"]).tolist() == [1.0, 1.0, 1.0]
    assert bars["MP"]["marker"]["color"] == method_color("MP") and bars["CP"]["marker"]["color"] == method_color("CP")
    heat = _chart(at, "Confusion matrix")["data"][0]
    assert list(heat["x"]) == list(heat["y"]) == list(MOAS)
    assert np.array_equal(_values(heat["z"]), np.diag(list(MOAS.values())))  # MP: perfect, diagonal
    at.selectbox(key="confusion_method").set_value("CP").run()
    assert not at.exception
    z = _values(_chart(at, "Confusion matrix")["data"][0]["z"])
    assert z[2, 0] == 1 and z[2, 2] == 3 and z.sum() == 8  # the off-diagonal moa_c -> moa_a vote
    assert not at.info
    moa_map = _chart(_show(at, "Embedding map"), "coloured by MOA")
    assert {t["name"] for t in moa_map["data"]} == set(MOAS)
    assert "50.0 %" in moa_map["layout"]["xaxis"]["title"]["text"]
    plate_map = _chart(at, "coloured by plate")
    assert {t["name"] for t in plate_map["data"]} == {"P0", "P1"}
    assert not at.info


def test_missing_new_tables_say_what_to_rematerialize(snapshot):
    at = _run()
    at.selectbox[1].set_value("50").run()  # fraction 50 has no per-MOA tables
    assert not at.exception
    infos = [i.value for i in _show(at, "Per MOA and confusion").info]
    assert any("evaluation_per_moa" in i and "`evaluation_results`" in i and "fraction=50" in i for i in infos)
    assert any("embedding_maps" in i.value for i in _show(at, "Embedding map").info)
    # the chance column falls back to 1 / #MOAs of the suite's filtering rows
    assert at.dataframe[0].value.set_index("metric").loc["k-NN best weighted F1", "chance"] == "0.333"


def test_older_snapshot_without_the_new_tables(tmp_path, monkeypatch):
    _publish(tmp_path, new_tables=False)
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    at = _run()
    infos = [i.value for s in ("Per MOA and confusion", "Embedding map") for i in _show(at, s).info]
    assert len(infos) == 2 and all("rematerialize `evaluation_results`" in i for i in infos)
    assert any("Embedding map" in h.value for h in at.subheader)


def test_methods_picker_and_a_new_snapshot_is_never_served_stale(snapshot, monkeypatch):
    at = _run()
    at.multiselect[0].set_value(["CP"]).run()
    assert not at.exception
    assert list(at.dataframe[0].value.columns) == ["metric", "CP", "chance"]
    assert {t["name"] for t in _chart(at, "k-NN MOA prediction")["data"]} <= {
        "CP",
        "CP: best k, 95% CI",
        "chance (random guess)",
    }
    _publish(snapshot, scale=0.5)  # republish with other values: the cached reads are keyed on the snapshot
    at2 = _run()
    assert at2.dataframe[0].value.set_index("metric").loc["k-NN best weighted F1", "MP"].startswith("0.300")


def test_labels_for_metrics_and_analyses():
    assert cq.metric_label("diff_compound_same_moa_mean") == "different compound, same MOA"
    assert cq.metric_label("mean_diff_same_compound_vs_diff_compound_same_moa") == (
        "mean difference: same compound vs different compound, same MOA"
    )
    assert cq.analysis_label("knn") == "k-NN vote"
    from moa_core.evaluation.compare import prevalence_f1

    assert prevalence_f1([2, 2, 4]) == pytest.approx(0.375)
    assert prevalence_f1([5, 5, 5, 5]) == pytest.approx(0.25)


def test_the_pages_column_list_is_the_evaluations():
    """comparison_sql spells the columns out (no moa_core.evaluation import on the page); they must agree."""
    from dashboard.comparison_sql import EVALUATION_COLUMNS
    from moa_core.evaluation.results import RESULT_COLUMNS

    assert EVALUATION_COLUMNS == ["dataset", "fraction", *RESULT_COLUMNS]
