"""The retrieval index: build/save/load, neighbours, predicted MOA and its confidence, enrichment, search, mAP."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from moa_core.errors import SchemaError
from moa_core.evaluation.map import phenotypic_activity, replicate_consistency
from moa_core.retrieval import (
    IndexError_,
    build_index,
    calibrate,
    compound_activity,
    confidence,
    knn_vote,
    latent_assignment,
    load_index,
    moa_enrichment,
    neighbours,
    save_index,
    search,
    search_terms,
    suggest,
    wilson,
)
from moa_core.retrieval.activity import average_precisions
from moa_core.retrieval.index import is_control, unit_rows
from tests.support.retrieval_data import toy_profiles

_profiles = toy_profiles


@pytest.fixture()
def index():
    df, feats = _profiles()
    return build_index(df, feats, method="CP", dataset="toy", fraction="100")


def test_well_vectors_give_pearson_and_compounds_are_contiguous(index):
    df, feats = _profiles()
    X = df[feats].to_numpy()
    pcc = np.corrcoef(X[0], X[1])[0, 1]
    V = unit_rows(X[:2])
    assert V[0] @ V[1] == pytest.approx(pcc, abs=1e-5)
    comp = index.compounds
    assert comp["n_wells"].sum() == index.n_wells == len(df)
    for r in range(len(comp)):
        wells = index.wells.iloc[comp.at[r, "start"] : comp.at[r, "start"] + comp.at[r, "n_wells"]]
        assert set(wells["compound"]) == {comp.at[r, "compound"]}
    assert comp.set_index("compound").at["DMSO", "is_control"] and comp["is_control"].sum() == 1


def test_neighbours_are_the_same_moa_and_anticorrelated_the_opposite(index):
    q = "BRD-K00000001-001-01-1"  # an aurora kinase inhibitor
    nb = neighbours(index, q, k=3)
    assert q not in set(nb.nearest["compound"]) and "DMSO" not in set(nb.nearest["compound"])
    assert set(nb.nearest["Metadata_moa"]) == {"aurora kinase inhibitor"}
    assert set(nb.anticorrelated["Metadata_moa"]) == {"tubulin inhibitor"}
    assert nb.nearest["similarity"].is_monotonic_decreasing and nb.anticorrelated["similarity"].is_monotonic_increasing
    # the compound similarity is the mean PCC of the query consensus with the compound's wells
    row = index.compound_row(nb.nearest.at[0, "compound"])
    qv = index.consensus(index.compound_row(q))
    assert nb.nearest.at[0, "similarity"] == pytest.approx(float(np.mean(index.well_vectors(row) @ qv)), abs=1e-5)
    # the best well is the match's most similar well; the full well scan gives the same ranking and best wells
    bw = nb.best_well[row]
    assert float(np.asarray(index.vectors[bw]) @ qv) == pytest.approx(float((index.well_vectors(row) @ qv).max()))
    full = neighbours(index, q, k=3, scan_wells=True)
    pd.testing.assert_frame_equal(full.nearest, nb.nearest, atol=1e-5)
    pd.testing.assert_frame_equal(full.anticorrelated, nb.anticorrelated, atol=1e-5)
    assert full.well_similarity.shape == (index.n_wells,)


def test_predictions_enrichment_and_confidence(index):
    nb = neighbours(index, "BRD-K10000002-001-01-1", k=10)  # HDAC
    kv, la = knn_vote(index, nb, k=3), latent_assignment(index, nb)
    assert kv.moa == la.moa == "HDAC inhibitor" and kv.score == 1.0 and la.score > 0
    enr = moa_enrichment(index, nb, k=3)
    top = enr.iloc[0]
    assert top["moa"] == "HDAC inhibitor" and top["in_top_k"] == 3
    # 11 annotated candidates, 3 of them HDAC: P(X >= 3) drawing 3
    assert top["p"] == pytest.approx(hypergeom.sf(2, 11, 3, 3)) and top["q"] >= top["p"]
    cal = calibrate(index, k=3)
    assert len(cal) == 12 and cal["knn_correct"].all() and cal["latent_correct"].all()
    c = confidence(cal, "knn", kv.score)
    assert c["precision"] == 1.0 and c["n"] == 12 and c["low"] == pytest.approx(wilson(12, 12)[0])


def test_calibrate_matches_one_query_at_a_time():
    df, feats = _profiles(seed=3, noise=5.0)  # noisy: some predictions wrong
    idx = build_index(df, feats, method="CP", dataset="toy")
    cal = calibrate(idx, k=3)
    for r in cal.itertuples():
        nb = neighbours(idx, r.compound, k=1)
        kv, la = knn_vote(idx, nb, 3), latent_assignment(idx, nb)
        assert (kv.moa, la.moa) == (r.knn_moa, r.latent_moa)
        assert kv.score == pytest.approx(r.knn_share) and la.score == pytest.approx(r.latent_margin, abs=1e-5)
    assert 0 < cal["knn_correct"].mean() < 1


def test_wilson_interval_known_value():
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)


@pytest.mark.parametrize("kind", ["activity", "consistency"])
def test_average_precision_equals_copairs(kind):
    df, feats = _profiles(seed=1, noise=1.0)
    ctrl = is_control(df)
    V = unit_rows(df[feats].to_numpy())
    mine = average_precisions(V, df["Metadata_broad_sample"].to_numpy(), df["Metadata_Plate"].to_numpy(), ctrl, kind)
    fn = phenotypic_activity if kind == "activity" else replicate_consistency
    ref = fn(df, feats, null_size=500).ap.reset_index(drop=True)
    rows = np.flatnonzero(~ctrl) if kind == "consistency" else np.arange(len(df))
    got = pd.Series(np.nan, index=rows)
    got.loc[mine["row"].to_numpy()] = mine["average_precision"].to_numpy()
    exp = ref["average_precision"].to_numpy(dtype=float)
    both = ~np.isnan(exp)
    assert both.sum() == len(mine) == (~ctrl).sum()
    np.testing.assert_allclose(got.to_numpy()[both], exp[both], atol=1e-12)


def test_compound_activity_equals_copairs_end_to_end():
    df, feats = _profiles(seed=2, noise=1.2)
    idx = build_index(df, feats, method="CP", dataset="toy")
    w = idx.wells
    act, notes = compound_activity(
        np.asarray(idx.vectors),
        w["compound"].to_numpy(),
        w["Metadata_Plate"].to_numpy(),
        w["is_control"].to_numpy(bool),
        null_size=1000,
    )
    ref = phenotypic_activity(df, feats, null_size=1000).map.set_index("Metadata_broad_sample")
    got = act.set_index("compound").loc[ref.index]
    np.testing.assert_allclose(got["activity_map"], ref["mean_average_precision"], atol=1e-12)
    np.testing.assert_allclose(got["activity_p"], ref["p_value"])
    np.testing.assert_allclose(got["activity_q"], ref["corrected_p_value"])
    assert notes == {} and act["consistency_map"].notna().all()


def test_a_plate_without_dmso_is_named_and_gets_no_activity():
    df, feats = _profiles()
    df = df[~((df["Metadata_Plate"] == "P1") & (df["Metadata_broad_sample"] == "DMSO"))]
    idx = build_index(df, feats, method="CP", dataset="toy")
    w = idx.wells
    act, notes = compound_activity(
        np.asarray(idx.vectors),
        w["compound"].to_numpy(),
        w["Metadata_Plate"].to_numpy(),
        w["is_control"].to_numpy(bool),
        null_size=200,
    )
    assert "P1" in notes["activity"] and act["activity_map"].notna().all()


def test_save_load_roundtrip_and_damage_is_refused(index, tmp_path):
    folder = save_index(index, tmp_path / "idx")
    back = load_index(folder, verify=True)
    np.testing.assert_array_equal(np.asarray(back.vectors), index.vectors)
    pd.testing.assert_frame_equal(back.compounds, index.compounds)
    nb1, nb2 = neighbours(index, index.compounds.at[0, "compound"], k=5), neighbours(back, 0, k=5)
    pd.testing.assert_frame_equal(nb1.nearest, nb2.nearest)
    # a tampered array fails verification; a missing one, a wrong shape and a foreign folder fail to load
    arr = np.load(folder / "vectors.npy")
    arr[0, 0] += 1
    np.save(folder / "vectors.npy", arr)
    with pytest.raises(IndexError_, match="does not match its manifest hash"):
        load_index(folder, verify=True)
    np.save(folder / "vectors.npy", arr[:-1])
    with pytest.raises(IndexError_, match="do not match the manifest"):
        load_index(folder)
    (folder / "vectors.npy").unlink()
    with pytest.raises(IndexError_, match="vectors.npy missing"):
        load_index(folder)
    with pytest.raises(IndexError_, match="manifest.json missing"):
        load_index(tmp_path / "nothing")
    (folder / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(IndexError_, match="not a moa-retrieval-index"):
        load_index(folder)


def test_bad_input_names_plate_well_column():
    df, feats = _profiles()
    df.loc[5, "f3"] = np.nan
    with pytest.raises(SchemaError, match=r"plate P0 well .* column f3"):
        build_index(df, feats, method="CP", dataset="toy")
    df, feats = _profiles()
    df.loc[2, "Metadata_broad_sample"] = " "
    df.loc[2, "Metadata_pert_iname"] = None
    with pytest.raises(SchemaError, match="without Metadata_broad_sample"):
        build_index(df.drop(columns=["Metadata_pert_iname"]), feats, method="CP", dataset="toy")


def test_search_by_every_identifier_and_suggestions(index):
    ids = pd.DataFrame(
        {"Metadata_broad_sample": ["BRD-K00000001-001-01-1"], "Metadata_InChIKey": ["BSYNRYMUTXBXSQ-UHFFFAOYSA-N"]}
    )
    df, feats = _profiles()
    idx = build_index(df, feats, method="CP", dataset="toy", identifiers=ids)
    terms = search_terms(idx)
    hit = lambda text: set(search(terms, text)["compound"])  # noqa: E731
    assert hit("cpd01") == {"BRD-K00000001-001-01-1"}
    assert hit("BRD-K00000001") == {"BRD-K00000001-001-01-1"}  # Broad core ID
    assert hit("bsynrymutxbxsq-uhfffaoysa-n") == hit("BSYNRYMUTXBXSQ") == {"BRD-K00000001-001-01-1"}
    assert len(hit("HDAC inhibitor")) == 4  # by MOA
    first = search(terms, "cpd1")
    assert first["match"].iloc[0] == "prefix" and search(terms, "cpd10")["match"].iloc[0] == "exact"
    assert search(terms, "zzz").empty and "cpd10" in suggest(terms, "cdp10")


def test_index_from_a_matrix_equals_the_frame_and_reuses_the_matrix():
    from moa_core.retrieval.index import compound_key

    df, feats = _profiles(seed=2, noise=1.0)
    ref = build_index(df, feats, method="CP", dataset="toy")
    meta = df[[c for c in df.columns if c.startswith("Metadata_")]]
    order = np.argsort(df[compound_key(df)].astype(str).to_numpy(), kind="stable")
    meta = meta.iloc[order].reset_index(drop=True)
    X = df[feats].to_numpy(np.float32)[order]
    idx = build_index(meta, feats, method="CP", dataset="toy", matrix=X)
    np.testing.assert_array_equal(idx.vectors, ref.vectors)
    np.testing.assert_array_equal(idx.compound_vectors, ref.compound_vectors)
    pd.testing.assert_frame_equal(idx.compounds, ref.compounds)
    assert idx.vectors is X  # normalized in place: no second copy of a JUMP-sized matrix
    with pytest.raises(SchemaError, match="shape"):
        build_index(meta, feats, method="CP", dataset="toy", matrix=X[:, :3])


@pytest.mark.parametrize("kind", ["activity", "consistency"])
def test_average_precision_blocks_do_not_change_it(kind):
    df, feats = _profiles(seed=1, noise=1.0)
    ctrl = is_control(df)
    V = unit_rows(df[feats].to_numpy())
    args = (V, df["Metadata_broad_sample"].to_numpy(), df["Metadata_Plate"].to_numpy(), ctrl, kind)
    a, b = average_precisions(*args), average_precisions(*args, block_rows=2)
    pd.testing.assert_frame_equal(a, b)
