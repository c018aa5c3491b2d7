"""Published CellProfiler profiles: reading, canonical schema, annotations, the paper's filters, DuckDB load."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from moa_core.errors import SchemaError
from moa_core.profiles.published import (
    PUBLISHED_METADATA,
    annotate_by_inchikey,
    annotate_cpjump1,
    annotate_lincs,
    apply_paper_filters,
    load_published_profiles,
    profile_suffix,
    read_profile_file,
    to_canonical,
)
from moa_core.storage import Warehouse


@pytest.fixture(scope="module")
def lincs(shared_dir):
    return shared_dir / "data" / "lincs"


def _lincs_canonical(lincs):
    df = read_profile_file(lincs / "SQ00015054_normalized_feature_select.csv.gz")
    ann = annotate_lincs(df, lincs / "repurposing_info_external_moa_map_resolved.tsv")
    return to_canonical(
        ann,
        release="cpg0004/SQ00015054_normalized_feature_select",
        etag="e1",
        source_file="s3://x/y",
        source="broad",
        batch="b1",
    )


def test_lincs_plate_to_canonical_schema(lincs):
    raw = pd.read_csv(lincs / "SQ00015054_normalized_feature_select.csv.gz")
    c = _lincs_canonical(lincs)
    feats = [col for col in raw.columns if not col.startswith("Metadata_")]
    assert list(c.columns) == PUBLISHED_METADATA + feats and len(c) == 384
    assert (c[feats].dtypes == np.float32).all()
    np.testing.assert_allclose(c[feats].to_numpy(), raw[feats].to_numpy(np.float32))
    assert c["Metadata_moa"].eq("DMSO").sum() == raw["Metadata_broad_sample"].eq("DMSO").sum() == 24
    assert c.loc[c["Metadata_moa"].eq("DMSO"), "Metadata_pert_type"].eq("control").all()
    assert (c["Metadata_etag"] == "e1").all() and (c["Metadata_Source"] == "broad").all()
    np.testing.assert_allclose(c["Metadata_dose_uM"], raw["Metadata_mmoles_per_liter"])


def test_paper_filters_on_lincs_match_an_independent_count(lincs):
    raw = pd.read_csv(lincs / "SQ00015054_normalized_feature_select.csv.gz")
    c = _lincs_canonical(lincs)
    out, rep = apply_paper_filters(c, dose_uM=10.0)
    dmso = raw["Metadata_broad_sample"].eq("DMSO")
    at10 = (raw["Metadata_mmoles_per_liter"] - 10).abs() <= 0.5
    assert rep.dropped_other_dose == int((~dmso & ~at10).sum())
    trt10 = c[~c["Metadata_moa"].eq("DMSO").fillna(False).to_numpy(bool) & at10.to_numpy()]
    assert rep.dropped_unannotated == int(trt10["Metadata_moa"].isna().sum())
    assert rep.dropped_multi_moa == int(trt10["Metadata_moa"].str.contains("|", regex=False).fillna(False).sum())
    assert rep.wells_out == len(out) == int(dmso.sum()) + len(trt10) - rep.dropped_unannotated - rep.dropped_multi_moa
    assert out["Metadata_single_moa"].all() and rep.plates_without_dmso == []


def test_profile_suffix_levels():
    assert profile_suffix("SQ00015054_normalized_feature_select.csv.gz") == "normalized_feature_select"
    assert (
        profile_suffix("BR00116991_normalized_feature_select_negcon_batch.csv.gz")
        == "normalized_feature_select_negcon_batch"
    )
    assert profile_suffix("BR00116991.csv.gz") == ""
    assert profile_suffix("BR00117037.parquet") == ""


def test_real_cpg0016_per_plate_parquets(shared_dir):
    for p in sorted((shared_dir / "data" / "cpg0016").glob("source_*/workspace/profiles/*/*/*.parquet")):
        df = read_profile_file(p)
        c = to_canonical(df, release="cpg0016/x", source_file=str(p), batch=p.parts[-3])
        assert c["Metadata_Source"].iloc[0] == p.parts[-6] and c["Metadata_Batch"].iloc[0] == p.parts[-3]
        assert c["Metadata_moa"].isna().all() and c["Metadata_n_moa"].eq(0).all()
        out, rep = apply_paper_filters(c)  # nothing annotated: reported, not emptied
        assert len(out) == len(c) and rep.wells_out == len(c)


@pytest.mark.parametrize(
    "problem, match",
    [
        ("renamed", r"missing column 'Metadata_Well' \(did you mean 'Metadata_well'\?\)"),
        ("blank", r"blank Metadata_Well in row 3"),
        ("dup", r"duplicated Metadata_Plate P1 Metadata_Well A02"),
        ("text", r"non-numeric feature column\(s\) \['Cells_x'\]"),
        ("nofeat", r"no feature column"),
    ],
)
def test_bad_profile_files_name_the_file_and_column(tmp_path, problem, match):
    df = pd.DataFrame(
        {"Metadata_Plate": ["P1"] * 4, "Metadata_Well": ["A01", "A02", "A03", "A04"], "Cells_x": [1.0, 2.0, 3.0, 4.0]}
    )
    if problem == "renamed":
        df = df.rename(columns={"Metadata_Well": "Metadata_well"})
    elif problem == "blank":
        df.loc[3, "Metadata_Well"] = " "
    elif problem == "dup":
        df.loc[2, "Metadata_Well"] = "A02"
    elif problem == "text":
        df["Cells_x"] = ["a", "b", "c", "d"]
    elif problem == "nofeat":
        df = df.drop(columns=["Cells_x"])
    p = tmp_path / "P1.parquet"
    df.to_parquet(p)
    with pytest.raises(SchemaError, match=match) as e:
        read_profile_file(p)
    assert str(p) in str(e.value)


def test_annotation_file_without_moa_column(tmp_path, lincs):
    bad = tmp_path / "ann.tsv"
    pd.DataFrame({"broad_sample": ["BRD-1"], "moa_lst": ["x"]}).to_csv(bad, sep="\t", index=False)
    df = read_profile_file(lincs / "SQ00015054_normalized_feature_select.csv.gz")
    with pytest.raises(SchemaError, match=r"ann.tsv: annotation file lacks column\(s\) \['moa_list'\]"):
        annotate_cpjump1(df, bad)
    with pytest.raises(SchemaError, match=r"ann.tsv: annotation file lacks column\(s\) \['moa'\]"):
        annotate_lincs(df, bad)


def test_annotate_by_inchikey_with_jump_tables(shared_dir):
    """cpg0016 annotation by InChIKey. JUMP's real well.csv.gz / compound.csv.gz are not in shared/:
    the well and compound tables here are built from the real perturbation_control.csv and
    JUMP-Target-1 annotations, in JUMP's column names."""
    ctrl = pd.read_csv(shared_dir / "data" / "cpg0016" / "perturbation_control.csv")
    ann = pd.read_csv(
        shared_dir / "data" / "cpjump1" / "JUMP-Target-1_compound_metadata_additional_annotations.tsv", sep="\t"
    )
    amg = ann[ann["pert_iname"].eq("AMG900")].iloc[0]
    prof = read_profile_file(next((shared_dir / "data" / "cpg0016").glob("source_4/**/*.parquet")))
    wells = prof[["Metadata_Plate", "Metadata_Well"]].copy()
    dmso_id = ctrl.loc[ctrl["Metadata_Name"].eq("DMSO"), "Metadata_JCP2022"].iloc[0]
    amg_id = ctrl.loc[ctrl["Metadata_Name"].eq("AMG900"), "Metadata_JCP2022"].iloc[0]
    wells["Metadata_JCP2022"] = np.where(np.arange(len(wells)) % 2 == 0, dmso_id, amg_id)
    compounds = pd.DataFrame(
        {"Metadata_JCP2022": [dmso_id, amg_id], "Metadata_InChIKey": ["IAZDPXIOMUYVGZ-UHFFFAOYSA-N", amg["InChIKey"]]}
    )
    out = annotate_by_inchikey(prof, wells, compounds, ann, controls=ctrl)
    assert out.loc[out["Metadata_JCP2022"].eq(amg_id), "Metadata_moa"].eq(amg["moa_list"]).all()
    assert out.loc[out["Metadata_JCP2022"].eq(dmso_id), "Metadata_moa"].eq("DMSO").all()
    with pytest.raises(SchemaError, match=r"compound table lacks column\(s\) \['Metadata_InChIKey'\]"):
        annotate_by_inchikey(prof, wells, compounds.drop(columns=["Metadata_InChIKey"]), ann)


def _plain(df):
    """Missing values as None and strings as str, so DuckDB's and pandas' NA spellings compare equal."""
    return df.astype(object).where(df.notna(), None)


def test_load_into_duckdb_reads_back_identical(tmp_path, lincs):
    c = _lincs_canonical(lincs)
    wh = Warehouse(tmp_path / "w.duckdb")
    meta = load_published_profiles(wh, "published_profiles__x", c, partition={"dataset": "x"})
    assert meta["rows"] == 384 and meta["plates"] == 1 and meta["features"] == c.shape[1] - len(PUBLISHED_METADATA)
    assert meta["etag"] == "e1" and meta["release"] == "cpg0004/SQ00015054_normalized_feature_select"
    back = wh.read_table("published_profiles__x")
    assert list(back.columns) == list(c.columns)
    pd.testing.assert_frame_equal(_plain(back), _plain(c))


def test_lincs_moas_come_from_the_repurposing_map(lincs):
    raw = pd.read_csv(lincs / "SQ00015054_normalized_feature_select.csv.gz")
    rep = pd.read_csv(lincs / "repurposing_info_external_moa_map_resolved.tsv", sep="\t")
    c = _lincs_canonical(lincs)
    expected = raw["Metadata_broad_sample"].map(rep.set_index("broad_sample")["moa"])
    mapped = expected.notna().to_numpy()
    assert mapped.sum() > 300
    assert (c["Metadata_moa"].to_numpy()[mapped] == expected.to_numpy()[mapped]).all()
    n_pipes = expected[mapped].str.count(r"\|").to_numpy() + 1
    assert (c["Metadata_n_moa"].to_numpy()[mapped] == n_pipes).all()


def test_non_finite_features_are_counted_and_the_worst_named(tmp_path, lincs):
    c = _lincs_canonical(lincs)
    feats = c.columns[len(PUBLISHED_METADATA) :]
    c.loc[:9, feats[3]] = np.nan
    c.loc[0, feats[5]] = np.inf
    meta = load_published_profiles(Warehouse(tmp_path / "w.duckdb"), "t", c, partition={})
    assert meta["non_finite_values"] == 11 and meta["columns_with_non_finite"] == 2
    assert meta["worst_column"] == feats[3]
    with pytest.raises(SchemaError, match=r"t: features must be numeric.*'Cells_bad'"):
        load_published_profiles(Warehouse(tmp_path / "w.duckdb"), "t", c.assign(Cells_bad="x"), partition={})


def test_a_failed_load_keeps_the_previous_table(tmp_path, lincs):
    c = _lincs_canonical(lincs)
    wh = Warehouse(tmp_path / "w.duckdb")
    load_published_profiles(wh, "published_profiles__x", c, partition={"dataset": "x"})
    with pytest.raises(SchemaError, match="Metadata_etag"):  # refused before any write
        load_published_profiles(
            wh, "published_profiles__x", c.drop(columns=["Metadata_etag"]), partition={"dataset": "x"}
        )
    # fail midway: the new table is created inside the transaction, then the catalog row is
    # refused by a CHECK constraint planted on the warehouse's catalog table
    with wh.connect() as con:
        con.execute("DROP TABLE catalog")
        con.execute(
            "CREATE TABLE catalog (table_name VARCHAR, partition_key VARCHAR, "
            "n_rows BIGINT CHECK (n_rows < 100), n_columns INTEGER, written_at TIMESTAMP)"
        )
    half = c.iloc[:200].assign(Metadata_release="second")
    with pytest.raises(duckdb.ConstraintException):
        load_published_profiles(wh, "published_profiles__x", half, partition={"dataset": "x"})
    back = wh.read_table("published_profiles__x")
    assert len(back) == 384 and back["Metadata_release"].eq(c["Metadata_release"].iloc[0]).all()


def test_published_embeddings_standardize_to_dmso_and_name_plates_without_it(lincs):
    from moa_core.errors import NormalizationError
    from moa_core.profiles.published import published_embeddings

    c, _ = apply_paper_filters(_lincs_canonical(lincs), dose_uM=None)
    other = c[c["Metadata_moa"].ne("DMSO")].head(5).assign(Metadata_Plate="NO_DMSO_PLATE")
    emb, meta = published_embeddings(pd.concat([c, other], ignore_index=True))
    assert meta["plates_without_dmso"] == ["NO_DMSO_PLATE"] and set(emb["Metadata_Plate"]) == {"SQ00015054"}
    feats = [col for col in emb.columns if not col.startswith("Metadata_")]
    dmso = emb[emb["Metadata_moa"].eq("DMSO")][feats].to_numpy(np.float64)
    assert np.abs(dmso.mean(0)).max() < 1e-4 and np.allclose(dmso.std(0), 1, atol=1e-3)
    with pytest.raises(NormalizationError, match="no plate has 2 or more DMSO wells"):
        published_embeddings(other)
