"""The dataset catalogue: shipped entries, user TOML, registered JSON, and bad entries."""

import json

import pytest

from moa_core.datasets import (
    DATASETS,
    entry_from_dict,
    get_dataset,
    load_catalogue,
    register_entry,
    validate_name,
)
from moa_core.errors import SchemaError


def test_shipped_catalogue_has_the_synthetic_default_and_the_papers_datasets():
    assert DATASETS["synthetic_cpjump1"].synthetic.image_size == 256
    assert DATASETS["synthetic_cpjump1"].train.input_size == 64
    mini = get_dataset("synthetic_cpjump1_mini")
    assert mini.synthetic.n_plates == 2 and mini.features.texture is False
    cpj = DATASETS["cpg0000_cpjump1_compound"]
    assert (cpj.kind, cpj.source, cpj.layout, cpj.project, cpj.source_name) == (
        "images",
        "gallery",
        "cpg0000",
        "cpg0000-jump-pilot",
        "source_4",
    )
    assert cpj.stain_of_channel() == {1: "Mito", 2: "AGP", 3: "RNA", 4: "ER", 5: "DNA"}
    assert DATASETS["cpg0004_lincs_batch1"].stain_of_channel()[1] == "DNA"
    assert DATASETS["cpg0004_lincs_batch1_profiles"].dose_uM == 10.0
    for name in DATASETS:
        validate_name(name)


def test_user_toml_and_registered_entries_override_and_extend(tmp_path, monkeypatch):
    (tmp_path / "plates").mkdir()
    user = tmp_path / "mine.toml"
    user.write_text(
        '[datasets.my_plates]\nkind = "images"\nsource = "local"\npath = "plates"\nannotations = "wells.csv"\n'
        'plates = ["P1"]\nsites = [1, 2]\ntrain = { epochs = 3 }\n'
        '[datasets.synthetic_cpjump1_mini]\nkind = "synthetic"\nsynthetic = { n_plates = 1 }\n'
    )
    monkeypatch.setenv("MOA_CATALOGUE", str(user))
    data = tmp_path / "data"
    register_entry(
        data,
        "cpg0016_compound_v1.0",
        {
            "kind": "profiles",
            "source": "gallery",
            "layout": "cpg0016",
            "project": "cpg0016-jump-assembled",
            "source_name": "source_all",
            "batch": "v1.0",
            "release": "s3://b/k.parquet",
            "etag": "abc",
        },
    )
    cat = load_catalogue(data)
    mine = cat["my_plates"]
    assert mine.path == str(tmp_path / "plates") and mine.sites == (1, 2) and mine.train.epochs == 3
    assert cat["synthetic_cpjump1_mini"].synthetic.n_plates == 1  # user entry overrides the shipped one
    assert cat["cpg0016_compound_v1.0"].etag == "abc" and "synthetic_cpjump1" in cat
    assert [p.name for p in (data / "catalogue.d").iterdir()] == ["cpg0016_compound_v1.0.json"]
    assert json.loads((data / "catalogue.d" / "cpg0016_compound_v1.0.json").read_text())["etag"] == "abc"


@pytest.mark.parametrize("name", ["a|b", "a,b", "a[1]", "", "has space", "../up", "_x"])
def test_invalid_names_are_refused(name):
    with pytest.raises(SchemaError, match="invalid dataset name"):
        validate_name(name)


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"kind": "movies"}, "kind must be one of"),
        ({"kind": "images", "source": "ftp"}, "source must be one of"),
        ({"kind": "images", "source": "gallery", "layout": "cpg0000"}, "needs 'project'"),
        ({"kind": "images", "source": "local", "layout": "local"}, "needs 'path'"),
        ({"kind": "images", "source": "local", "path": "x", "plates": ["P1", " "]}, "blank"),
        ({"kind": "synthetic", "synthetic": {"n_plate": 2}}, r"unknown synthetic option\(s\) \['n_plate'\]"),
        ({"kind": "synthetic", "colour": "red"}, r"unknown key\(s\) \['colour'\]"),
    ],
)
def test_bad_entries_name_the_dataset_and_key(raw, match):
    with pytest.raises(SchemaError, match=match):
        entry_from_dict("ds1", raw, origin="test.toml")


def test_bad_toml_and_unknown_dataset(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("[datasets.x\nkind=")
    monkeypatch.setenv("MOA_CATALOGUE", str(bad))
    with pytest.raises(SchemaError, match="bad.toml: not valid TOML"):
        load_catalogue(tmp_path)
    monkeypatch.delenv("MOA_CATALOGUE")
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        get_dataset("nope", tmp_path)
