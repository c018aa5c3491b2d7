"""Image-field classification metrics, edge wells, and copairs mAP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from copairs.map import average_precision, mean_average_precision
from copairs.matching import assign_reference_index
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import label_binarize

from moa_core.evaluation import (
    classification_metrics,
    is_edge_well,
    phenotypic_activity,
    phenotypic_consistency,
)

# --------------------------------------------------------------------------- edge wells


@pytest.mark.parametrize(
    "well,edge",
    [
        ("A01", True),
        ("P24", True),
        ("A1", True),
        ("p13", True),
        ("B01", True),
        ("B24", True),
        ("B02", False),
        ("H12", False),
        ("O23", False),
    ],
)
def test_is_edge_well_384(well, edge):
    assert is_edge_well(well) is edge


def test_is_edge_well_other_formats_and_errors():
    assert is_edge_well("H12", plate_format=96) and not is_edge_well("G11", plate_format=96)
    assert is_edge_well("AF48", plate_format=1536) and not is_edge_well("AE47", plate_format=1536)
    for bad in ("Q01", "B25", "A00", "xx", ""):
        with pytest.raises(ValueError):
            is_edge_well(bad)
    with pytest.raises(ValueError):
        is_edge_well("A01", plate_format=100)


# --------------------------------------------------------------------------- classification


def test_classification_perfect_and_baselines():
    classes = ["DMSO", "a", "b", "c"]
    y = ["a", "b", "c", "a", "DMSO"]
    P = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0.9, 0.1, 0], [1, 0, 0, 0]], dtype=float)
    r = classification_metrics(y, P, classes)
    row = r.table.set_index("subset").loc["all"]
    assert row.auprc_micro == pytest.approx(1.0) and row.accuracy == 1.0
    assert row.auprc_baseline == pytest.approx(1 / 3) and row.accuracy_baseline == pytest.approx(1 / 3)
    assert row.n_fields == 4  # DMSO field excluded


def test_classification_matches_sklearn_and_subsets():
    rng = np.random.default_rng(0)
    classes = np.array(["DMSO", "m1", "m2", "m3", "m4"], dtype=object)
    n = 80
    y = rng.choice(classes, size=n)
    P = rng.dirichlet(np.ones(5), size=n)
    wells = rng.choice(["A01", "B02", "C03", "P24", "H12", "A12"], size=n)
    meta = pd.DataFrame(
        {
            "Metadata_Well": wells,
            "Metadata_cell_line": rng.choice(["A549", "U2OS"], n),
            "Metadata_timepoint": rng.choice([24, 48], n),
        }
    )
    r = classification_metrics(y, P, classes, meta)
    t = r.table.set_index("subset")
    keep = y != "DMSO"
    Y = label_binarize(y[keep], classes=list(classes[1:]))
    ref = average_precision_score(Y, P[keep][:, 1:], average="micro")
    assert t.loc["all", "auprc_micro"] == pytest.approx(ref)
    assert t.loc["all", "accuracy"] == pytest.approx(np.mean(classes[P.argmax(1)][keep] == y[keep]))
    edge = np.array([is_edge_well(w) for w in wells])
    assert t.loc["edge", "n_fields"] == (keep & edge).sum()
    assert t.loc["non_edge", "n_fields"] == (keep & ~edge).sum()
    assert {"cell_line=A549", "cell_line=U2OS", "timepoint=24", "timepoint=48"} <= set(t.index)
    sub = keep & edge
    ref_e = average_precision_score(label_binarize(y[sub], classes=list(classes[1:])), P[sub][:, 1:], average="micro")
    assert t.loc["edge", "auprc_micro"] == pytest.approx(ref_e)
    assert len(r.to_results("MP")) == 4 * len(t)


def test_classification_bad_input():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(["a"], np.ones((1, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="not among classes"):
        classification_metrics(["z"], np.ones((1, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        classification_metrics(["a"], np.array([[np.nan, 1.0]]), ["a", "b"])


# --------------------------------------------------------------------------- mAP vs copairs


def test_map_activity_equals_copairs(lincs_raw, lincs_features, tmp_path):
    df = lincs_raw
    res = phenotypic_activity(df, lincs_features, null_size=200, seed=1, cache_dir=tmp_path)
    # direct copairs call with the same configuration
    meta = df[["Metadata_broad_sample", "Metadata_Plate"]].reset_index(drop=True).astype(str)
    ctl = pd.Index(np.flatnonzero(meta["Metadata_broad_sample"].to_numpy() == "DMSO"))
    meta = assign_reference_index(meta, ctl, reference_col="ref", default_value=-1)
    ap = average_precision(
        meta,
        df[lincs_features].to_numpy(dtype=float),
        pos_sameby=["Metadata_broad_sample", "ref"],
        pos_diffby=[],
        neg_sameby=["Metadata_Plate"],
        neg_diffby=["Metadata_broad_sample", "ref"],
        distance="correlation",
        progress_bar=False,
    )
    maps = mean_average_precision(
        ap,
        sameby=["Metadata_broad_sample"],
        null_size=200,
        threshold=0.05,
        seed=1,
        progress_bar=False,
        cache_dir=tmp_path,
    )
    np.testing.assert_allclose(
        res.ap["average_precision"].to_numpy(), ap["average_precision"].to_numpy(), equal_nan=True
    )
    a = res.map.set_index("Metadata_broad_sample").sort_index()
    b = maps.set_index("Metadata_broad_sample").sort_index()
    np.testing.assert_allclose(a["mean_average_precision"], b["mean_average_precision"])
    np.testing.assert_allclose(a["p_value"], b["p_value"])
    np.testing.assert_allclose(a["corrected_p_value"], b["corrected_p_value"])
    assert res.fraction_retrieved == pytest.approx(b["below_corrected_p"].mean())
    assert "DMSO" not in set(a.index)


def test_map_consistency_equals_copairs(lincs_raw, lincs_features, tmp_path):
    df = lincs_raw
    res = phenotypic_consistency(df, lincs_features, null_size=200, seed=2, cache_dir=tmp_path)
    d = df[(df["Metadata_broad_sample"] != "DMSO") & df["Metadata_moa"].notna()]
    meta = d[["Metadata_moa", "Metadata_broad_sample"]].reset_index(drop=True).astype(str)
    ap = average_precision(
        meta,
        d[lincs_features].to_numpy(dtype=float),
        pos_sameby=["Metadata_moa"],
        pos_diffby=["Metadata_broad_sample"],
        neg_sameby=[],
        neg_diffby=["Metadata_moa"],
        distance="correlation",
        progress_bar=False,
    )
    maps = mean_average_precision(
        ap, sameby=["Metadata_moa"], null_size=200, threshold=0.05, seed=2, progress_bar=False, cache_dir=tmp_path
    )
    a = res.map.set_index("Metadata_moa").sort_index()
    b = maps.set_index("Metadata_moa").sort_index()
    assert list(a.index) == list(b.index)
    np.testing.assert_allclose(a["mean_average_precision"], b["mean_average_precision"])
    np.testing.assert_allclose(a["corrected_p_value"], b["corrected_p_value"])
    tidy = res.to_results("CP")
    assert set(tidy["metric"]) == {"mean_map", "fraction_retrieved", "mean_ap"}


def test_map_compound_level_and_errors(lincs_raw, lincs_features, tmp_path):
    r = phenotypic_consistency(lincs_raw, lincs_features, level="compound", null_size=100, cache_dir=tmp_path)
    assert (
        len(r.ap)
        == lincs_raw.loc[
            (lincs_raw["Metadata_broad_sample"] != "DMSO") & lincs_raw["Metadata_moa"].notna(), "Metadata_broad_sample"
        ].nunique()
    )
    no_ctl = lincs_raw[lincs_raw["Metadata_broad_sample"] != "DMSO"]
    with pytest.raises(ValueError, match="no control wells"):
        phenotypic_activity(no_ctl, lincs_features, null_size=10, cache_dir=tmp_path)
