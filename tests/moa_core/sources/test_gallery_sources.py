"""Gallery, local and synthetic sources give the same load_data/wells schemas; bad inputs are named."""

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest

from moa_core.data.image_io import CHANNELS
from moa_core.data.load_data import read_field_from_row
from moa_core.data.sources import LOAD_DATA_COLUMNS, open_image_source
from moa_core.data.sources.annotations import well_annotations
from moa_core.data.sources.s3 import S3Transfer, SourceError, make_s3_client
from moa_core.datasets import DATASETS, entry_from_dict
from moa_core.errors import ImageReadError, SchemaError

PLATES = ["BR00117010", "BR00117011", "BR00117012", "BR00117013"]


def _cpjump1(**kw):
    return dataclasses.replace(DATASETS["cpg0000_cpjump1_compound"], plates=tuple(PLATES), **kw)


@pytest.fixture(scope="module")
def source(gallery, tmp_path_factory):
    endpoint, _, _ = gallery
    tr = S3Transfer(make_s3_client(endpoint))
    return open_image_source(_cpjump1(), cache_dir=tmp_path_factory.mktemp("cache"), transfer=tr, endpoint_url=endpoint)


def test_gallery_lists_plates_from_per_plate_load_data_in_every_format(source):
    assert source.list_plates() == PLATES
    files = []
    for plate in PLATES:
        ld = source.read_load_data(plate)
        assert list(ld.columns) == LOAD_DATA_COLUMNS and len(ld) == 1 and ld["Metadata_Site"].iloc[0] == 5
        assert ld["PathName_OrigDNA"].iloc[0].startswith("s3://cellpainting-gallery/cpg0000-jump-pilot/source_4/")
        assert ld["FileName_OrigDNA"].iloc[0].endswith("-ch5sk1fk1fl1.tiff")  # cpg0000: DNA is ch5
        files.append(ld["Metadata_load_data_file"].iloc[0].rsplit("/", 1)[-1])
    assert files == ["load_data.csv", "load_data.csv.gz", "load_data_with_illum.parquet", "load_data_with_illum.csv"]


def test_fields_read_straight_from_s3_with_illumination_correction(source, shared_dir):
    loc = source.locator()
    assert loc.cache_dir is None  # no local copy
    raw_ld = source.read_load_data("BR00117010")
    f = read_field_from_row(raw_ld.iloc[0], CHANNELS, loc)
    assert f.shape == (5, 1080, 1080) and f.dtype == np.uint16
    # the same bytes as the real file on disk
    disk = read_field_from_row(
        {
            **raw_ld.iloc[0].to_dict(),
            **{f"PathName_Orig{c}": str(shared_dir / "data" / "cpjump1" / "images" / "DMSO") for c in CHANNELS},
        }
    )
    assert np.array_equal(f, disk)
    ill = source.read_load_data("BR00117012").iloc[0]
    corrected = read_field_from_row(ill, CHANNELS, loc)
    uncorrected = read_field_from_row(ill, CHANNELS, loc, illumination=False)
    ratio = uncorrected.astype(np.float64).mean() / corrected.astype(np.float64).mean()
    assert 1.0 < ratio < 1.7  # the fixture's illumination functions lie in [1, 1.6]


def test_gallery_subsets_and_bad_plates(source, gallery, tmp_path):
    endpoint, _, _ = gallery
    tr = S3Transfer(make_s3_client(endpoint))
    sub = open_image_source(_cpjump1(wells=("D14",)), cache_dir=tmp_path, transfer=tr, endpoint_url=endpoint)
    assert len(sub.read_load_data("BR00117010")) == 1
    with pytest.raises(SchemaError, match=r"no field matches wells=\['D14'\]"):
        sub.read_load_data("BR00117011")
    bad = open_image_source(
        dataclasses.replace(_cpjump1(), plates=("BR99999999",)), cache_dir=tmp_path, transfer=tr, endpoint_url=endpoint
    )
    with pytest.raises(SourceError, match=r"plate\(s\) \['BR99999999'\] not found"):
        bad.list_plates()


def test_cpg0016_load_data_pointing_at_missing_images_names_the_key(gallery, tmp_path):
    endpoint, _, _ = gallery
    entry = entry_from_dict(
        "cpg0016_s4_b12",
        {
            "kind": "images",
            "source": "gallery",
            "layout": "cpg0016",
            "project": "cpg0016-jump",
            "source_name": "source_4",
            "batch": "2021_08_23_Batch12",
            "annotations": "cpg0016",
        },
    )
    src = open_image_source(
        entry, cache_dir=tmp_path, transfer=S3Transfer(make_s3_client(endpoint)), endpoint_url=endpoint
    )
    assert src.list_plates() == ["BR00126114"]
    ld = src.read_load_data("BR00126114")
    assert len(ld) == 2 and ld["FileName_IllumDNA"].iloc[0] == "BR00126114_IllumDNA.npy"
    with pytest.raises(
        (ImageReadError, SourceError),
        match=r"cellpainting-gallery/cpg0016-jump/source_4/images/"
        r"2021_08_23_Batch12/images/BR00126114__",
    ):
        read_field_from_row(ld.iloc[0], CHANNELS, src.locator())


def test_local_folder_gives_the_same_schema_as_the_gallery(source, shared_dir, tmp_path):
    folder = tmp_path / "my plates"
    rows = []
    for plate, compound in zip(PLATES[:2], ["DMSO", "AMG900"]):
        ld = source.read_load_data(plate)
        (folder / "images" / plate).mkdir(parents=True)
        for c in CHANNELS:
            name = ld[f"FileName_Orig{c}"].iloc[0]
            shutil.copy(shared_dir / "data" / "cpjump1" / "images" / compound / name, folder / "images" / plate / name)
            ld[f"PathName_Orig{c}"] = f"images/{plate}/"
        rows.append(ld.drop(columns=[c for c in ld.columns if "Illum" in c or c == "Metadata_load_data_file"]))
    pd.concat(rows).to_csv(folder / "load_data.csv", index=False)
    entry = entry_from_dict(
        "my_plates", {"kind": "images", "source": "local", "path": str(folder), "annotations": "cpjump1"}
    )
    local = open_image_source(entry, cache_dir=tmp_path)
    assert local.list_plates() == PLATES[:2]
    a, b = local.read_load_data(PLATES[0]), source.read_load_data(PLATES[0])
    assert list(a.columns) == list(b.columns) == LOAD_DATA_COLUMNS
    assert np.array_equal(
        read_field_from_row(a.iloc[0], CHANNELS, local.locator()),
        read_field_from_row(b.iloc[0], CHANNELS, source.locator()),
    )
    w_local = well_annotations(entry, a, shared_dir)
    w_gallery = well_annotations(_cpjump1(), b, shared_dir, source)
    pd.testing.assert_frame_equal(w_local, w_gallery)
    assert w_local["Metadata_moa"].tolist() == ["DMSO"]


def test_local_folder_bad_inputs(tmp_path):
    entry = entry_from_dict("x", {"kind": "images", "source": "local", "path": str(tmp_path / "nope")})
    with pytest.raises(FileNotFoundError, match="folder not found"):
        open_image_source(entry, cache_dir=tmp_path).list_plates()
    (tmp_path / "f").mkdir()
    pd.DataFrame(
        {
            "Metadata_Plate": ["P1"],
            "Metadata_Well": [""],
            "Metadata_Site": [1],
            **{f"{k}Orig{c}": ["x"] for c in CHANNELS for k in ("FileName_", "PathName_")},
        }
    ).to_csv(tmp_path / "f" / "load_data.csv", index=False)
    entry = entry_from_dict("x", {"kind": "images", "source": "local", "path": str(tmp_path / "f")})
    with pytest.raises(SchemaError, match=r"load_data.csv: blank Metadata_Well in row 0"):
        open_image_source(entry, cache_dir=tmp_path).list_plates()


def test_lincs_image_wells_come_from_the_plates_profile_metadata(gallery, shared_dir, tmp_path):
    """LINCS platemaps travel with its profiles: the image dataset's wells table is built from them (10 uM)."""
    endpoint, _, _ = gallery
    entry = dataclasses.replace(DATASETS["cpg0004_lincs_batch1"], profile_suffix="normalized_feature_select")
    src = open_image_source(
        entry, cache_dir=tmp_path, transfer=S3Transfer(make_s3_client(endpoint)), endpoint_url=endpoint
    )
    raw = pd.read_csv(shared_dir / "data" / "lincs" / "SQ00015054_normalized_feature_select.csv.gz")
    ld = raw[["Metadata_Plate", "Metadata_Well"]].assign(Metadata_Site=1)
    wells = well_annotations(entry, ld, shared_dir, src)
    at10 = raw[(raw["Metadata_mmoles_per_liter"] - 10).abs() < 0.5]
    assert wells["Metadata_moa"].eq("DMSO").sum() == 24
    assert set(wells.loc[wells["Metadata_moa"].ne("DMSO"), "Metadata_Well"]) <= set(at10["Metadata_Well"])
    assert len(wells) == 24 + len(at10)  # every 10 uM well and DMSO; splits apply the single-MOA filter


def test_cpg0016_profiles_annotated_by_inchikey_through_jump_metadata(shared_dir, tmp_path, monkeypatch):
    """JUMP's well.csv.gz / compound.csv.gz are not in shared/: built here from the real control table and
    JUMP-Target-1 annotations in JUMP's column names, for the real BR00117037 per-plate profile."""
    from moa_core.data.sources.profiles import build_published_table, local_profiles

    src = next((shared_dir / "data" / "cpg0016").glob("source_4/**/BR00117037.parquet"))
    prof = pd.read_parquet(src)
    ctrl = pd.read_csv(shared_dir / "data" / "cpg0016" / "perturbation_control.csv")
    ann = pd.read_csv(
        shared_dir / "data" / "cpjump1" / "JUMP-Target-1_compound_metadata_additional_annotations.tsv", sep="\t"
    )
    dmso = ctrl.loc[ctrl["Metadata_Name"].eq("DMSO"), "Metadata_JCP2022"].iloc[0]
    amg = ctrl.loc[ctrl["Metadata_Name"].eq("AMG900"), "Metadata_JCP2022"].iloc[0]
    meta = tmp_path / "jump_metadata"
    meta.mkdir()
    wells = prof[["Metadata_Source", "Metadata_Plate", "Metadata_Well"]].assign(
        Metadata_JCP2022=[dmso if i % 3 else amg for i in range(len(prof))]
    )
    wells.to_csv(meta / "well.csv.gz", index=False)
    pd.DataFrame(
        {"Metadata_JCP2022": [amg], "Metadata_InChIKey": [ann.loc[ann["pert_iname"].eq("AMG900"), "InChIKey"].iloc[0]]}
    ).to_csv(meta / "compound.csv.gz", index=False)
    monkeypatch.setenv("MOA_JUMP_METADATA", str(meta))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / src.name).write_bytes(src.read_bytes())
    entry = entry_from_dict(
        "cpg0016_local",
        {"kind": "profiles", "source": "local", "layout": "cpg0016", "path": str(tmp_path / "profiles")},
    )
    table, report, how = build_published_table(entry, local_profiles(entry), shared_dir)
    assert how.startswith("InChIKey") and len(table) == len(prof) == report.wells_out
    moa = table.set_index("Metadata_Well")["Metadata_moa"]
    assert moa.eq("DMSO").sum() == (wells["Metadata_JCP2022"] == dmso).sum()
    assert set(moa[moa.ne("DMSO")]) == {"Aurora kinase inhibitor"}
    assert table["Metadata_release"].iloc[0].startswith("cpg0016")
