import numpy as np
import pandas as pd
import pytest
import tifffile

from moa_core.data.image_io import CHANNEL_MAPS, CHANNELS, read_channel, read_field, write_tiff_atomic
from moa_core.data.load_data import read_field_from_row, read_load_data, validate_load_data
from moa_core.errors import ImageReadError, SchemaError


def test_roundtrip_and_atomic_write(tmp_path):
    img = (np.arange(64 * 64, dtype=np.uint16) * 7).reshape(64, 64)
    p = tmp_path / "a" / "r01c01f01p01-ch1sk1fk1fl1.tiff"
    write_tiff_atomic(p, img)
    assert np.array_equal(read_channel(p), img)
    assert [f.name for f in p.parent.iterdir()] == [p.name]  # no temporary left behind


@pytest.mark.parametrize("problem", ["missing", "truncated", "float", "rgb", "shape"])
def test_bad_images_name_the_file_and_context(tmp_path, problem):
    p = tmp_path / "bad.tiff"
    good = np.ones((32, 32), np.uint16)
    if problem == "truncated":
        write_tiff_atomic(p, good)
        p.write_bytes(p.read_bytes()[:50])
    elif problem == "float":
        tifffile.imwrite(p, good.astype(np.float32))
    elif problem == "rgb":
        tifffile.imwrite(p, np.ones((32, 32, 3), np.uint16))
    elif problem == "shape":
        write_tiff_atomic(p, np.ones((16, 32), np.uint16))
    with pytest.raises(ImageReadError) as e:
        read_channel(p, expected_shape=(32, 32), context="plate P1 well A01 site 1")
    assert str(p) in str(e.value) and "plate P1 well A01 site 1" in str(e.value)


def test_real_cpjump1_fields_load_through_the_pipeline_reader(shared_dir):
    """The 4 real LZW-compressed fields load through the load_data reader the pipeline uses."""
    img_dir = shared_dir / "data" / "cpjump1" / "images"
    rows = []
    for first in sorted(img_dir.glob("*/*-ch1sk1fk1fl1.tiff")):
        row = {"Metadata_Plate": first.parent.name, "Metadata_Well": first.name[:6], "Metadata_Site": 5}
        for num, stain in CHANNEL_MAPS["cpg0000"].items():
            row[f"FileName_Orig{stain}"] = first.name.replace("-ch1", f"-ch{num}")
            row[f"PathName_Orig{stain}"] = str(first.parent) + "/"
        rows.append(row)
    ld = pd.DataFrame(rows)
    validate_load_data(ld)
    assert len(ld) == 4
    for _, r in ld.iterrows():
        f = read_field_from_row(r, expected_shape=(1080, 1080))
        assert f.shape == (5, 1080, 1080) and f.dtype == np.uint16
        dna = f[CHANNELS.index("DNA")]
        assert 100 < np.percentile(dna, 1) < 1000 and dna.max() > 5000  # background vs nuclei


def test_load_data_schema_errors(tmp_path, mini_dataset):
    root, ld, _, _ = mini_dataset
    with pytest.raises(SchemaError, match="FileName_OrigDNA"):
        validate_load_data(ld.drop(columns=["FileName_OrigDNA"]))
    with pytest.raises(SchemaError, match="empty partition"):
        validate_load_data(ld.iloc[:0])
    dup = pd.concat([ld, ld.iloc[:1]])
    with pytest.raises(SchemaError, match="duplicated field"):
        validate_load_data(dup)
    # a missing file is reported with plate/well/site
    row = ld.iloc[0].copy()
    row["FileName_OrigER"] = "nope.tiff"
    with pytest.raises(ImageReadError, match=rf"plate {row['Metadata_Plate']} well {row['Metadata_Well']} site 1"):
        read_field_from_row(row, root=root)
    assert read_load_data(root / "load_data.csv").shape == ld.shape


def test_read_field_requires_every_channel(tmp_path):
    write_tiff_atomic(tmp_path / "x.tiff", np.ones((8, 8), np.uint16))
    with pytest.raises(ImageReadError, match="no path for channel ER"):
        read_field({"DNA": tmp_path / "x.tiff"})


def _one_field(tmp_path, value=1000):
    from moa_core.data.load_data import filename_col, pathname_col

    row = {"Metadata_Plate": "P1", "Metadata_Well": "A01", "Metadata_Site": 1}
    for i, ch in enumerate(CHANNELS, 1):
        write_tiff_atomic(tmp_path / f"r01c01f01p01-ch{i}sk1fk1fl1.tiff", np.full((16, 16), value * i, np.uint16))
        row[filename_col(ch)] = f"r01c01f01p01-ch{i}sk1fk1fl1.tiff"
        row[pathname_col(ch)] = "./"
    return row


@pytest.mark.parametrize("col", ["Metadata_Plate", "Metadata_Well", "Metadata_Site"])
@pytest.mark.parametrize("blank", [None, "", "  "])
def test_blank_keys_are_an_error_not_a_dropped_field(tmp_path, col, blank):
    rows = [_one_field(tmp_path), {**_one_field(tmp_path), "Metadata_Well": "A02"}]
    rows[1][col] = blank
    with pytest.raises(SchemaError, match=rf"blank {col} in row 1"):
        validate_load_data(pd.DataFrame(rows), source="ld.csv")


def test_illumination_correction_divides_each_channel(tmp_path):
    from moa_core.data.locator import ImageLocator

    row = _one_field(tmp_path)
    illum = np.full((16, 16), 2.0, np.float32)
    illum[0, 0] = 4.0
    for ch in CHANNELS:
        np.save(tmp_path / f"P1_Illum{ch}.npy", illum)
        row[f"FileName_Illum{ch}"] = f"P1_Illum{ch}.npy"
        row[f"PathName_Illum{ch}"] = "./"
    raw = read_field_from_row(row, root=tmp_path, illumination=False)
    cor = read_field_from_row(row, root=ImageLocator(root=str(tmp_path)))
    assert cor.dtype == np.uint16
    assert np.array_equal(cor[:, 1:, :], (raw[:, 1:, :] / 2).astype(np.uint16))
    assert np.array_equal(cor[:, 0, 0], (raw[:, 0, 0] / 4).astype(np.uint16))


def test_illumination_file_that_is_a_pickle_is_refused(tmp_path):
    import pickle

    row = _one_field(tmp_path)
    (tmp_path / "evil.npy").write_bytes(pickle.dumps({"not": "an array"}))
    for ch in CHANNELS:
        row[f"FileName_Illum{ch}"] = "evil.npy"
        row[f"PathName_Illum{ch}"] = "./"
    with pytest.raises(ImageReadError, match="evil.npy"):
        read_field_from_row(row, root=tmp_path)


def test_channel_map_mismatch_and_missing_channel_are_named():
    from moa_core.data.load_data import check_channel_map

    ld = pd.DataFrame(
        [
            {
                "Metadata_Plate": "P1",
                "Metadata_Well": "A01",
                **{
                    f"FileName_Orig{s}": f"r01c01f01p01-ch{n}sk1fk1fl1.tiff" for n, s in CHANNEL_MAPS["cpg0000"].items()
                },
            }
        ]
    )
    check_channel_map(ld, CHANNEL_MAPS["cpg0000"])
    with pytest.raises(SchemaError, match=r"FileName_OrigDNA .* channel map puts DNA on ch1"):
        check_channel_map(ld, CHANNEL_MAPS["cpg0004"])
    with pytest.raises(SchemaError, match="no FileName_OrigMito column"):
        check_channel_map(ld.drop(columns=["FileName_OrigMito"]), CHANNEL_MAPS["cpg0000"])


def test_locator_roundtrip_is_plain_json(tmp_path):
    from moa_core.data.locator import ImageLocator, load_locator, save_locator

    loc = ImageLocator(root=None, endpoint_url="http://127.0.0.1:9", cache_dir=str(tmp_path / "c"))
    save_locator(tmp_path, loc)
    assert load_locator(tmp_path) == loc
    (tmp_path / "locator.json").write_text('{"root": null, "__reduce__": "os.system"}')
    with pytest.raises(ValueError, match="unexpected content"):
        load_locator(tmp_path)
