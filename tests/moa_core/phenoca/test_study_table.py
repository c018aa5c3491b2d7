"""Any well table as Pheno-CA input: controls, molecule identity, missing nuisance columns."""

import numpy as np
import pandas as pd
import pytest

from moa_core.errors import SchemaError
from moa_core.phenoca.profiles import as_study_table


def _table():
    return pd.DataFrame(
        {
            "Metadata_Plate": ["P1"] * 5,
            "Metadata_Well": ["A01", "A02", "A03", "A04", "A05"],
            "Metadata_Source": [None] * 5,
            "Metadata_broad_sample": [
                "DMSO",
                "BRD-K11111111-001-01-1",
                "BRD-K11111111-003-02-5",
                "BRD-K22222222-001-01-1",
                "BRD-K33333333-001-01-1",
            ],
            "Metadata_pert_type": ["control", "trt", "trt", "control", "trt"],
            "Metadata_control_type": ["negcon", None, None, "poscon_diverse", None],
            "Metadata_moa": ["DMSO", "HDAC inhibitor", "HDAC inhibitor", "Aurora kinase inhibitor", None],
            "Metadata_target": [None, "HDAC1|HDAC2", "HDAC1|HDAC2", "AURKA", None],
            "f1": [0.1, 0.2, 0.3, 0.4, 0.5],
            "f2": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )


def test_controls_molecules_and_nuisances():
    t = as_study_table(_table(), source="lincs")
    assert t["Metadata_pert_type"].tolist() == ["negcon", "compound", "compound", "compound", "compound"]
    assert t.loc[3, "Metadata_moa"] == "Aurora kinase inhibitor"  # a positive control keeps its MoA
    assert t.loc[1, "Metadata_JCP2022"] == t.loc[2, "Metadata_JCP2022"] == "BRD-K11111111"  # one molecule, two salts
    assert t["Metadata_is_ood"].tolist() == [False, False, False, False, True]
    assert (t["Metadata_Source"] == "lincs").all() and t["f1"].dtype == np.float32


def test_missing_keys_are_named():
    with pytest.raises(SchemaError, match="Metadata_Plate"):
        as_study_table(_table().drop(columns=["Metadata_Plate"]))
    with pytest.raises(SchemaError, match="compound column"):
        as_study_table(_table().drop(columns=["Metadata_broad_sample"]))
    bad = _table()
    bad.loc[2, "Metadata_broad_sample"] = " "
    with pytest.raises(SchemaError, match="well A03"):
        as_study_table(bad)


def test_study_parquet_round_trip_in_row_groups(tmp_path):
    """The out-of-core study file (metadata + float32 matrix, a row group at a time) reads back exactly,
    equals pandas' reading of it, and a matrix of the wrong shape is refused before anything is written."""
    from moa_core.phenoca.profiles import read_study_parquet, study_metadata, write_study_parquet

    t = _table()
    feats = ["f1", "f2"]
    meta = study_metadata(t, source="lincs")
    X = t[feats].to_numpy(np.float32)
    path = write_study_parquet(meta, X, feats, tmp_path / "study.parquet", chunk_rows=2)  # 3 row groups
    m2, X2, f2 = read_study_parquet(path)
    assert f2 == feats and X2.dtype == np.float32 and np.array_equal(X2, X)
    pd.testing.assert_frame_equal(m2, meta, check_dtype=False)
    whole = pd.read_parquet(path)
    assert np.array_equal(whole[feats].to_numpy(np.float32), X)
    with pytest.raises(SchemaError, match="shape"):
        write_study_parquet(meta, X[:, :1], feats, tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()
