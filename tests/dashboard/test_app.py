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
        rows = [
            ("knn", metric, float(k), base - 0.01 * k) for k in range(1, 30) for metric in ("f1", "precision", "recall")
        ]
        rows += [
            ("knn", "best_f1", 1.0, base),
            ("latent", "f1", np.nan, base + 0.05),
            ("intra_inter", "intra_mean", np.nan, base / 2),
            ("intra_inter", "inter_mean", np.nan, 0.01),
            ("intra_inter", "delta", np.nan, base / 2 - 0.01),
        ]
        rows += [("enrichment", "odds_ratio", round(float(p), 1), base * 10) for p in np.arange(98.0, 99.81, 0.2)]
        if method == "MP":
            rows += [
                ("classification", "accuracy", np.nan, 0.3),
                ("classification", "accuracy[edge]", np.nan, 0.2),
                ("classification", "accuracy_baseline[edge]", np.nan, 0.07),
            ]
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
    res = res[
        [
            "dataset",
            "fraction",
            "method",
            "analysis",
            "metric",
            "parameter",
            "value",
            "ci_low",
            "ci_high",
            "p_value",
            "n",
        ]
    ]
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    wh.replace_rows("evaluation_results", res, {"dataset": "synthetic_cpjump1", "fraction": "100"})
    wh.replace_rows("holdout_results", _holdout(), {"dataset": "synthetic_cpjump1"})
    half = res.assign(fraction="50", value=res["value"] * 0.8)
    wh.replace_rows("evaluation_results", half, {"dataset": "synthetic_cpjump1", "fraction": "50"})
    for model, frac, warn in (
        ("mp", "100", "none"),
        ("mp", "50", "best epoch is the last (3): still improving"),
        ("dp_recipe", "100", "none"),
    ):
        wh.replace_rows(
            "checkpoints",
            pd.DataFrame(
                [
                    {
                        "dataset": "synthetic_cpjump1",
                        "fraction": frac,
                        "model": model,
                        "checkpoint_path": "/x.pt",
                        "sha256": "0" * 64,
                        "best_epoch": 2,
                        "best_val_score": 0.4,
                        "selected_on": "well balanced accuracy",
                        "warnings": warn,
                        "train_fields": 100,
                        "val_fields": 20,
                        "classes": 17,
                        "seconds": 9.0,
                    }
                ]
            ),
            {"dataset": "synthetic_cpjump1", "fraction": frac, "model": model},
        )
        wh.replace_rows(
            "training_history",
            pd.DataFrame(
                {
                    "dataset": "synthetic_cpjump1",
                    "fraction": frac,
                    "model": model,
                    "epoch": [1, 2, 3],
                    "train_loss": [2.8, 2.0, 1.5],
                    "train_accuracy": [0.1, 0.4, 0.6],
                    "val_accuracy": [0.1, 0.3, 0.3],
                    "lr": [1e-3] * 3,
                    "seconds": [1.0, 2.0, 3.0],
                    "val_balanced_accuracy": [0.1, 0.4, 0.35],
                }
            ),
            {"dataset": "synthetic_cpjump1", "fraction": frac, "model": model},
        )
    wh.publish_snapshot(tmp_path / "snapshot" / "warehouse.duckdb")
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    return tmp_path


def test_method_comparison_page_renders_mp_vs_cp(snapshot):
    at = AppTest.from_file(str(REPO / "dashboard" / "views" / "method_comparison.py"), default_timeout=60).run()
    assert not at.exception
    head = at.dataframe[0].value
    assert {"MP", "CP"} <= set(head.columns)
    best = head[head["metric"] == "k-NN best weighted F1"].iloc[0]
    assert best["MP"].startswith("0.6") and best["CP"].startswith("0.4") and best["MP"].endswith("(k=1)")
    assert at.selectbox[0].value == "synthetic_cpjump1"
    at.radio(key="mc_section").set_value("Held-out compounds").run()
    assert any("Held-out compounds" in h.value for h in at.subheader)
    at.radio(key="mc_section").set_value("Pair groups and field classification").run()
    cls = at.dataframe[1].value  # formatted (3 significant figures) with human subset labels
    assert cls.set_index("subset").loc["edge wells", "accuracy"] == "0.200"
    # switch the k-NN metric
    at.radio(key="mc_section").set_value("Enrichment and k-NN curves").run()
    at.radio(key="knn_metric").set_value("recall").run()
    assert not at.exception


def test_app_opens_on_the_overview(snapshot):
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "MOA profiling from Cell Painting images"
    assert [h.value for h in at.subheader][:2] == ["Datasets", "Model health"]
    assert any("best epoch is the last" in w.value and "fraction 50" in w.value for w in at.warning)


def test_pages_warn_without_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(REPO / "dashboard" / "views" / "method_comparison.py"), default_timeout=60).run()
    assert not at.exception
    assert "No published snapshot" in at.warning[0].value


def test_model_training_page_shows_curves_warnings_and_the_fraction_study(snapshot):
    at = AppTest.from_file(str(REPO / "dashboard" / "views" / "model_training.py"), default_timeout=60).run()
    assert not at.exception
    assert any("best epoch is the last" in w.value and "fraction 50" in w.value for w in at.warning)
    table = at.dataframe[0].value
    assert set(table["model"]) == {"MP", "DP recipe (trained here)"} and len(table) == 3
    assert any("Learning curves" in h.value for h in at.subheader)
    assert any("Replicate-fraction" in h.value for h in at.subheader)
    curve = at.dataframe[1].value.set_index("training replicates kept (%)")
    assert list(curve.index) == [50, 100] and float(curve.loc[50, "MP"]) < float(curve.loc[100, "MP"])
    at.selectbox[1].set_value("DP recipe (trained here)").run()
    assert not at.exception


def test_model_training_page_without_models_says_what_to_run(tmp_path, monkeypatch):
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    wh.replace_rows(
        "evaluation_results",
        pd.DataFrame(
            {
                "dataset": ["d"],
                "fraction": ["100"],
                "method": ["CP"],
                "analysis": ["knn"],
                "metric": ["best_f1"],
                "parameter": [1.0],
                "value": [0.5],
            }
        ),
        {"dataset": "d", "fraction": "100"},
    )
    wh.publish_snapshot(tmp_path / "snapshot" / "warehouse.duckdb")
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(REPO / "dashboard" / "views" / "model_training.py"), default_timeout=60).run()
    assert not at.exception and "mp_checkpoint" in at.warning[0].value
