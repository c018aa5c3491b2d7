import duckdb
import numpy as np
import pandas as pd
import pytest

from moa_core.errors import SchemaError
from moa_core.storage import Warehouse, atomic_directory, partition_table


def test_replace_rows_is_transactional(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    a = pd.DataFrame({"dataset": ["d1"] * 3, "value": [1.0, 2.0, 3.0]})
    wh.replace_rows("results", a, {"dataset": "d1"})
    wh.replace_rows("results", a.assign(dataset="d2"), {"dataset": "d2"})
    wh.replace_rows("results", a.assign(value=[9.0, 9.0, 9.0]), {"dataset": "d1"})
    got = wh.read("SELECT dataset, sum(value) AS s FROM results GROUP BY 1 ORDER BY 1")
    assert got["s"].tolist() == [27.0, 6.0]
    # schema drift fails and leaves the old rows intact
    with pytest.raises(SchemaError, match="schema drift"):
        wh.replace_rows("results", a.assign(extra=1), {"dataset": "d1"})
    assert wh.read("SELECT count(*) AS n FROM results")["n"].iloc[0] == 6
    with pytest.raises(SchemaError, match="every row"):
        wh.replace_rows("results", a, {"dataset": "d3"})
    with pytest.raises(SchemaError, match="empty"):
        wh.replace_rows("results", a.iloc[:0], {"dataset": "d1"})


def test_replace_table_and_catalog(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    t = partition_table("cp_profiles", "synthetic-cpjump1", "100")
    assert t == "cp_profiles__synthetic_cpjump1__100"
    wh.replace_table(t, pd.DataFrame({"Metadata_Plate": ["P"], "f": [1.0]}), partition={"dataset": "x"})
    assert wh.has_table(t)
    cat = wh.read_table("catalog")
    assert cat["table_name"].tolist() == [t] and cat["n_rows"].tolist() == [1]
    with pytest.raises(KeyError, match="materialize"):
        wh.read_table("nope")


def test_snapshot_is_a_consistent_readonly_copy(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.replace_table("t", pd.DataFrame({"x": np.arange(100)}))
    snap = wh.publish_snapshot(tmp_path / "snap" / "s.duckdb")
    con = duckdb.connect(str(snap), read_only=True)
    assert con.execute("SELECT sum(x) FROM t").fetchone()[0] == 4950
    con.close()
    assert [p.name for p in snap.parent.iterdir()] == ["s.duckdb"]
    # the writer keeps working while the snapshot is open elsewhere
    reader = duckdb.connect(str(snap), read_only=True)
    wh.replace_table("t", pd.DataFrame({"x": [1]}))
    reader.close()


def test_atomic_directory_keeps_old_on_failure(tmp_path):
    final = tmp_path / "ds"
    with atomic_directory(final) as d:
        (d / "a.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as d:
            (d / "a.txt").write_text("half")
            raise RuntimeError("download broke")
    assert (final / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.parametrize("folder", ["o'brien", "x' AS a; CREATE TABLE injected (i INT); --"])
def test_snapshot_paths_are_data_not_sql(tmp_path, folder):
    """A data folder whose name carries quotes or SQL is just a path: the snapshot works, nothing runs."""
    root = tmp_path / folder
    wh = Warehouse(root / "warehouse.duckdb")
    wh.replace_table("t", pd.DataFrame({"a": [1, 2]}))
    snap = wh.publish_snapshot(root / "snapshot" / "warehouse.duckdb")
    ro = Warehouse(snap, read_only=True)
    assert ro.read("SELECT sum(a) AS s FROM t")["s"].iloc[0] == 3
    assert "injected" not in ro.tables() and "injected" not in wh.tables()
    assert sorted(p.name for p in snap.parent.iterdir()) == ["warehouse.duckdb"]  # no temporary left


def test_replace_rows_allow_empty_clears_the_partition(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    a = pd.DataFrame({"dataset": ["d1", "d1"], "reason": ["blank", "noise"]})
    wh.replace_rows("qc", a, {"dataset": "d1"})
    wh.replace_rows("qc", a.iloc[:0], {"dataset": "d1"}, allow_empty=True)
    assert wh.read("SELECT count(*) AS n FROM qc")["n"].iloc[0] == 0


def test_drop_table_removes_the_table_and_its_catalog_rows(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.replace_table("cell_count_embeddings__d", pd.DataFrame({"Metadata_Well": ["A01"], "x": [1.0]}))
    assert wh.drop_table("cell_count_embeddings__d") and not wh.has_table("cell_count_embeddings__d")
    assert wh.read("SELECT count(*) AS n FROM catalog WHERE table_name = ?", ["cell_count_embeddings__d"])["n"][0] == 0
    assert not wh.drop_table("cell_count_embeddings__d")
