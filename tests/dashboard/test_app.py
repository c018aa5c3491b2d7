"""The dashboard renders the MP vs CP tables from a published snapshot (Streamlit AppTest)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from moa_core.storage import Warehouse

REPO = Path(__file__).resolve().parents[2]


def _results() -> pd.DataFrame:
    frames = []
    for method, base in (("MP", 0.6), ("CP", 0.4)):
        rows = [("knn", metric, float(k), base - 0.01 * k) for k in range(1, 30) for metric in ("f1", "precision", "recall")]
        rows += [("knn", "best_f1", 1.0, base), ("latent", "f1", np.nan, base + 0.05),
                 ("intra_inter", "intra_mean", np.nan, base / 2), ("intra_inter", "inter_mean", np.nan, 0.01),
                 ("intra_inter", "delta", np.nan, base / 2 - 0.01)]
        rows += [("enrichment", "odds_ratio", round(float(p), 1), base * 10) for p in np.arange(98.0, 99.81, 0.2)]
        if method == "MP":
            rows += [("classification", "accuracy", np.nan, 0.3), ("classification", "accuracy[edge]", np.nan, 0.2),
                     ("classification", "accuracy_baseline[edge]", np.nan, 0.07)]
        df = pd.DataFrame(rows, columns=["analysis", "metric", "parameter", "value"])
        df["method"] = method
        frames.append(df)
    res = pd.concat(frames, ignore_index=True)
    res["ci_low"], res["ci_high"], res["p_value"], res["n"] = np.nan, np.nan, np.nan, 50.0
    return res


def _holdout() -> pd.DataFrame:
    rows = []
    for method in ("MP", "CP"):
        for scheme in ("individual", "aggregated"):
            for k in range(1, 11):
                rows.append((method, f"holdout_{scheme}", "top_k_accuracy", float(k), min(1.0, 0.2 + 0.08 * k)))
                rows.append((method, f"holdout_{scheme}", "random_baseline", float(k), k / 14))
    df = pd.DataFrame(rows, columns=["method", "analysis", "metric", "parameter", "value"])
    df["ci_low"], df["ci_high"], df["p_value"], df["n"] = np.nan, np.nan, np.nan, 14.0
    df.insert(0, "dataset", "synthetic_cpjump1")
    return df


@pytest.fixture()
def snapshot(tmp_path, monkeypatch):
    res = _results()
    res.insert(0, "fraction", "100")
    res.insert(0, "dataset", "synthetic_cpjump1")
    res = res[["dataset", "fraction", "method", "analysis", "metric", "parameter", "value", "ci_low", "ci_high",
               "p_value", "n"]]
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    wh.replace_rows("evaluation_results", res, {"dataset": "synthetic_cpjump1", "fraction": "100"})
    wh.replace_rows("holdout_results", _holdout(), {"dataset": "synthetic_cpjump1"})
    wh.publish_snapshot(tmp_path / "snapshot" / "warehouse.duckdb")
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    return tmp_path


def test_method_comparison_page_renders_mp_vs_cp(snapshot):
    at = AppTest.from_file(str(REPO / "dashboard" / "pages" / "1_Method_comparison.py"), default_timeout=60).run()
    assert not at.exception
    head = at.dataframe[0].value
    assert {"MP", "CP"} <= set(head.columns)
    best = head[head["metric"] == "k-NN best weighted F1"].iloc[0]
    assert best["MP"].startswith("0.6") and best["CP"].startswith("0.4") and best["MP"].endswith("(k=1)")
    assert at.selectbox[0].value == "synthetic_cpjump1"
    assert any("Held-out compounds" in h.value for h in at.subheader)
    cls = at.dataframe[1].value
    assert cls.set_index("subset").loc["edge", "accuracy"] == 0.2
    # switch the k-NN metric
    at.radio[0].set_value("recall").run()
    assert not at.exception


def test_home_page_lists_partitions(snapshot):
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.dataframe[0].value["dataset"].tolist() == ["synthetic_cpjump1"]


def test_pages_warn_without_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(REPO / "dashboard" / "pages" / "1_Method_comparison.py"), default_timeout=60).run()
    assert not at.exception
    assert "No published snapshot" in at.warning[0].value
