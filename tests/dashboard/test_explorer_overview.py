"""The explorer and the overview (Streamlit AppTest) on a snapshot with real retrieval indexes and TIFF fields;
bad input: unknown compound, method without embeddings, missing image file, missing/empty snapshot, a snapshot
replaced while a page reads it."""

import os
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import queries
from moa_core.storage import Warehouse
from tests.support.retrieval_data import publish_toy_snapshot

REPO = Path(__file__).resolve().parents[2]
EXPLORER = str(REPO / "dashboard" / "views" / "explorer.py")
OVERVIEW = str(REPO / "dashboard" / "views" / "overview.py")
APP = str(REPO / "dashboard" / "app.py")


@pytest.fixture()
def toy(tmp_path, monkeypatch):
    publish_toy_snapshot(tmp_path, missing_image_well="P00")
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    return tmp_path


def _explorer(**params) -> AppTest:
    at = AppTest.from_file(EXPLORER, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def _prediction(at, rule: str) -> str:
    """The predicted MOA shown for ``rule`` ('knn' or 'latent') in the first (left) method's header."""
    import re

    blocks = [re.sub(r"<[^>]+>", "", m.value) for m in at.markdown if m.value.startswith("<p style='font-size")]
    return blocks[0 if rule == "knn" else 1]


def _texts(at) -> str:
    return " ".join(
        str(x.value) for kind in (at.markdown, at.caption, at.warning, at.info, at.error, at.subheader) for x in kind
    )


def test_query_by_name_shows_neighbours_predictions_enrichment_and_cells(toy):
    at = _explorer(compound="cpd01")
    assert not at.exception
    assert [h.value for h in at.subheader] == ["cpd01", "Cells"]
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Activity mAP (vs DMSO)"]) > 0.5
    assert _prediction(at, "knn") == _prediction(at, "latent") == "aurora kinase inhibitor"
    nearest = at.dataframe[0].value
    assert len(nearest) == 10 and "cpd01" not in set(nearest["compound"])
    assert set(nearest["MOA"].head(3)) == {"aurora kinase inhibitor"}  # its 3 MOA mates first
    anti = at.dataframe[1].value
    assert anti["MOA"].iloc[0] == "tubulin inhibitor"
    enr = at.dataframe[2].value
    assert enr["moa"].iloc[0] == "aurora kinase inhibitor" and "e-" in enr["p"].iloc[0]  # scientific notation
    assert all("None" not in str(v) for d in at.dataframe for v in d.value.to_numpy().ravel())
    text = _texts(at)
    assert "p = " in text and "confidence" in text and "Annotated MOA" in text
    # query, top match and same-plate DMSO: the query's and the match's fields are read from their files;
    # the DMSO well P00 was recorded but its files are missing: placeholder and the path
    assert "Read from files:" in text
    assert "Not readable" in text and "P00-ch1.tiff" in text
    downloads = [b for b in at.get("download_button")]
    assert len(downloads) == 5  # every table has its CSV: nearest, anti-correlated, enrichment, votes, centroids


def test_search_by_broad_core_id_moa_and_type_ahead(toy):
    at = _explorer(compound="BRD-K1")  # a prefix: a list of matches to open
    assert not at.exception and "Matches for" in _texts(at)
    at = _explorer(compound="BRD-K20000003")  # Broad core ID, exact
    assert not at.exception and at.subheader[0].value == "cpd23"
    at = _explorer(compound="HDAC inhibitor")  # an MOA: its compounds
    assert not at.exception and at.subheader[0].value == "MOA: HDAC inhibitor"
    assert len(at.dataframe[0].value) == 4
    # the type-ahead box lists every perturbation and MOA; picking one opens it
    at = _explorer()
    box = at.selectbox(key="ex_query_toy_100_MP")
    assert "MOA: tubulin inhibitor" in box.options or any("tubulin" in o for o in box.options)
    box.set_value("BRD-K20000001-001-01-1").run()
    assert not at.exception and at.subheader[0].value == "cpd21"


def test_unknown_compound_gets_suggestions_not_a_crash(toy):
    at = _explorer(compound="cdp12")
    assert not at.exception
    warn = " ".join(w.value for w in at.warning)
    assert "No perturbation, ID or MOA matches" in warn and "cpd12" in warn


def test_method_without_embeddings_and_side_by_side(toy):
    at = _explorer(compound="cpd01", method="IBP")
    assert not at.exception
    warn = " ".join(w.value for w in at.warning)
    assert "No IBP embeddings for toy at fraction 100" in warn and "phenoca_results" in warn
    at = _explorer(compound="cpd01", method="CP", compare="MP")
    assert not at.exception
    assert sum(c.value.startswith("Predicted MOA, k-NN") for c in at.caption) == 2
    assert "CP" in _texts(at) and "MP" in _texts(at)


def test_a_damaged_index_says_what_to_rematerialize(toy):
    row = Warehouse(toy / "snapshot" / "warehouse.duckdb", read_only=True).read_table("retrieval_indexes").iloc[0]
    (toy / row["path"] / "vectors.npy").unlink()
    at = _explorer(compound="cpd01", method=row["method"])
    assert not at.exception
    assert any("cannot be opened" in e.value and "retrieval_index" in e.value for e in at.error)


def test_snapshot_without_indexes_and_missing_snapshot_say_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    for page in (EXPLORER, OVERVIEW):
        at = AppTest.from_file(page, default_timeout=60).run()
        assert not at.exception and "No published snapshot" in at.warning[0].value
        assert "orchestration.demo" in at.warning[0].value
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    wh.replace_rows(
        "evaluation_results",
        pd.DataFrame({"dataset": ["d"], "fraction": ["100"], "method": ["CP"]}),
        {"dataset": "d", "fraction": "100"},
    )
    wh.publish_snapshot(tmp_path / "snapshot" / "warehouse.duckdb")
    at = AppTest.from_file(EXPLORER, default_timeout=60).run()
    assert not at.exception and "no retrieval index" in at.warning[0].value
    (tmp_path / "snapshot" / "warehouse.duckdb").write_bytes(b"")  # an empty (truncated) snapshot
    at = AppTest.from_file(OVERVIEW, default_timeout=60).run()
    assert not at.exception and "empty" in at.error[0].value
    (tmp_path / "snapshot" / "warehouse.duckdb").write_bytes(b"not a duckdb file" * 100)
    at = AppTest.from_file(OVERVIEW, default_timeout=60).run()
    assert not at.exception and "cannot open the snapshot" in at.error[0].value


def test_snapshot_replaced_while_reading_is_detected_and_the_app_reruns_on_the_new_one(toy, monkeypatch):
    snap = toy / "snapshot" / "warehouse.duckdb"
    queries.pin(snap)
    try:
        assert queries.has_table("retrieval_indexes", snap)
        wh = Warehouse(toy / "warehouse.duckdb")
        wh.replace_rows("extra", pd.DataFrame({"dataset": ["x"], "v": [1]}), {"dataset": "x"})
        wh.publish_snapshot(snap)  # a publish lands mid-render: temp name, then rename
        with pytest.raises(queries.SnapshotReplaced):
            queries.query("SELECT count(*) FROM catalog", path=snap)
    finally:
        queries.unpin()
    # a page run through the app pins the new snapshot and renders it whole
    real_body = {"n": 0}
    orig = queries.pin

    def pin_then_replace_once(path=None):
        sig = orig(path)
        if real_body["n"] == 0:
            real_body["n"] += 1
            os.utime(snap, ns=(sig[3] + 10**9, sig[3] + 10**9))  # the file changes after the page pinned it
        return sig

    monkeypatch.setattr(queries, "pin", pin_then_replace_once)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any("What is materialized" in h.value for h in at.subheader)


def test_overview_lists_tables_and_health(toy):
    at = AppTest.from_file(OVERVIEW, default_timeout=60).run()
    assert not at.exception
    head = at.markdown[1].value
    assert "Snapshot published" in head and "code version" in head
    infos = " ".join(i.value for i in at.info)
    assert "republish" in infos and "mp_checkpoint" in infos  # an old-style snapshot: what to run
    assert any("retrieval_indexes" in str(v) for d in at.dataframe for v in d.value.to_numpy().ravel())


def test_numbers_have_three_significant_figures_and_p_values_scientific_notation():
    from dashboard.style import display_frame, pval, sig3, with_ci

    assert [sig3(v) for v in (0.99999999, 0.553, 35.1234, 1020.4, 0.000123, 12345678, 0.0, None)] == [
        "1.00",
        "0.553",
        "35.1",
        "1,020",
        "0.000123",
        "12.3M",
        "0",
        "\u2013",
    ]
    assert pval(5e-15) == "5.00e-15" and with_ci(0.553, 0.43, 0.69) == "0.553 [0.430, 0.690]"
    out = display_frame(
        pd.DataFrame(
            {"p_value": [5e-15], "value": [0.12345], "note": [None], "when": pd.to_datetime(["2026-12-01 17:49:37.7"])}
        )
    )
    assert out.iloc[0].tolist() == ["5.00e-15", "0.123", "\u2013", "2026-12-01 17:49:37"]
    assert list(out.columns) == ["p", "value", "note", "when"]


def test_a_jump_sized_list_is_searched_not_shipped_whole(tmp_path, monkeypatch):
    """Past 5,000 perturbations the type-ahead box holds only the matches of the search box."""
    import numpy as np

    from moa_core.retrieval import build_index, save_index

    rng = np.random.default_rng(0)
    n = 6000
    df = pd.DataFrame(
        {
            "Metadata_Plate": [f"P{i % 20}" for i in range(2 * n)],
            "Metadata_Well": [f"W{i}" for i in range(2 * n)],
            "Metadata_JCP2022": [f"JCP2022_{i // 2:06d}" for i in range(2 * n)],
            "Metadata_moa": [f"moa_{(i // 2) % 30}" for i in range(2 * n)],
        }
    )
    feats = pd.DataFrame(rng.normal(size=(2 * n, 8)), columns=[f"f{i}" for i in range(8)])
    idx = build_index(pd.concat([df, feats], axis=1), list(feats.columns), method="CP", dataset="big")
    save_index(idx, tmp_path / "retrieval" / "big")
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    wh.replace_rows(
        "retrieval_indexes",
        pd.DataFrame(
            [
                {
                    "dataset": "big",
                    "fraction": "100",
                    "method": "CP",
                    "path": "retrieval/big",
                    "build_id": idx.manifest["build_id"],
                }
            ]
        ),
        {"dataset": "big", "fraction": "100"},
    )
    wh.publish_snapshot(tmp_path / "snapshot" / "warehouse.duckdb")
    monkeypatch.setenv("MOA_DATA_DIR", str(tmp_path))
    at = _explorer()
    assert not at.exception and "6,000 perturbations" in _texts(at)
    assert at.selectbox(key="ex_query_big_100_CP").options == []
    at.text_input(key="ex_text").set_value("JCP2022_00123").run()
    assert not at.exception
    opts = at.selectbox(key="ex_query_big_100_CP").options
    assert 1 <= len(opts) <= 11 and all("JCP2022_00123" in o for o in opts)
    at = _explorer(compound="JCP2022_004321")  # a deep link still opens any perturbation
    assert not at.exception and at.subheader[0].value == "JCP2022_004321"
