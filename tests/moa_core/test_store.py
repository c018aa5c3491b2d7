"""The preprocessed image store: fidelity, incremental builds, bad fields, statistics, streaming sources."""

import shutil

import numpy as np
import pandas as pd
import pytest

from moa_core.data.load_data import read_field_from_row
from moa_core.errors import ImageReadError
from moa_core.model.loader import StoreFields
from moa_core.store import ImageStore, StoreError, build_image_store, channel_statistics

KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


@pytest.fixture()
def mini(mini_dataset, tmp_path):
    root, ld, wells, spec = mini_dataset
    return root, ld.sort_values(KEYS).reset_index(drop=True), spec


def test_store_holds_every_field_bit_exact_and_reads_back(mini, tmp_path):
    root, ld, spec = mini
    rep = build_image_store(ld, tmp_path / "s.zarr", root=root, n_workers=2)
    assert rep.n_fields == len(ld) and {p.status for p in rep.plates} == {"written"}
    st = ImageStore(tmp_path / "s.zarr")
    idx = st.index()
    assert len(idx) == len(ld) and st.resolution == spec.image_size
    for r in ld.sample(5, random_state=0).to_dict("records"):
        row = st.locate(pd.DataFrame([r])[KEYS])["store_row"].iloc[0]
        np.testing.assert_array_equal(st.read(r["Metadata_Plate"], row), read_field_from_row(r, root=root))


def test_downsampled_store_is_area_averaged(mini, tmp_path):
    root, ld, spec = mini
    half = spec.image_size // 2
    build_image_store(ld.head(3), tmp_path / "s.zarr", root=root, resolution=half)
    st = ImageStore(tmp_path / "s.zarr")
    f = read_field_from_row(ld.iloc[0].to_dict(), root=root).astype(np.float64)
    box = f.reshape(5, half, 2, half, 2).mean(axis=(2, 4))
    got = st.read(ld.iloc[0]["Metadata_Plate"], 0)
    assert got.shape == (5, half, half) and np.abs(got - box).max() <= 0.5 + 1e-6
    with pytest.raises(StoreError, match=f"built at {half} px"):
        build_image_store(ld.head(3), tmp_path / "s.zarr", root=root, resolution=half // 2)


def test_incremental_build_keeps_unchanged_plates_and_appends_new_ones(mini, tmp_path):
    root, ld, _ = mini
    plates = sorted(ld["Metadata_Plate"].unique())
    assert len(plates) >= 2
    first = ld[ld["Metadata_Plate"] == plates[0]]
    build_image_store(first, tmp_path / "s.zarr", root=root)
    rep = build_image_store(ld, tmp_path / "s.zarr", root=root)
    status = {p.plate: p.status for p in rep.plates}
    assert status[plates[0]] == "kept" and all(status[p] == "written" for p in plates[1:])
    assert len(ImageStore(tmp_path / "s.zarr").index()) == len(ld)
    changed = ld.copy()
    changed.loc[changed["Metadata_Plate"] == plates[1], "Metadata_Site"] += 0  # same rows: kept
    assert {p.status for p in build_image_store(changed, tmp_path / "s.zarr", root=root).plates} == {"kept"}
    fewer = ld[~((ld["Metadata_Plate"] == plates[1]) & (ld.index % 2 == 0))]
    rep = build_image_store(fewer, tmp_path / "s.zarr", root=root)
    assert {p.plate: p.status for p in rep.plates}[plates[1]] == "rebuilt"
    assert len(ImageStore(tmp_path / "s.zarr").index()) == len(fewer)


def test_missing_and_corrupt_fields_fail_naming_the_files_or_are_skipped_and_recorded(mini, tmp_path):
    root, ld, _ = mini
    work = tmp_path / "images"
    shutil.copytree(root, work)
    r0, r1 = ld.iloc[0], ld.iloc[1]
    missing = work / r0["PathName_OrigDNA"] / r0["FileName_OrigDNA"]
    corrupt = work / r1["PathName_OrigMito"] / r1["FileName_OrigMito"]
    missing.unlink()
    corrupt.write_bytes(b"not a tiff")
    plate = r0["Metadata_Plate"]
    with pytest.raises(ImageReadError) as exc:
        build_image_store(ld, tmp_path / "s.zarr", root=work)
    assert missing.name in str(exc.value) and corrupt.name in str(exc.value) and f"plate {plate}" in str(exc.value)
    assert not (tmp_path / "s.zarr" / "fields" / plate).exists()  # nothing half-written
    rep = build_image_store(ld, tmp_path / "s.zarr", root=work, on_error="skip")
    assert len(rep.skipped) == 2 and rep.n_fields == len(ld) - 2
    st = ImageStore(tmp_path / "s.zarr")
    assert len(st.plate_attrs(plate)["skipped"]) == 2
    with pytest.raises(StoreError, match=f"well {r0['Metadata_Well']} site {r0['Metadata_Site']}"):
        StoreFields(tmp_path / "s.zarr", ld)


def test_wrong_shape_fields_are_refused(mini, tmp_path):
    root, ld, spec = mini
    with pytest.raises(ImageReadError, match="expected"):
        build_image_store(ld.head(2), tmp_path / "s.zarr", root=root, expected_shape=(spec.image_size + 1,) * 2)


def test_a_folder_that_is_not_a_store_is_refused(tmp_path, mini):
    root, ld, _ = mini
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    with pytest.raises(StoreError, match="not a moa_profiler.image_store"):
        ImageStore(tmp_path / "x")
    with pytest.raises(StoreError, match="refusing to write"):
        build_image_store(ld.head(1), tmp_path / "x", root=root)
    with pytest.raises(StoreError, match="no image store"):
        ImageStore(tmp_path / "nothing")


def test_channel_statistics_match_numpy_on_the_given_fields_only(mini, tmp_path):
    root, ld, _ = mini
    build_image_store(ld, tmp_path / "s.zarr", root=root)
    st = ImageStore(tmp_path / "s.zarr")
    train = st.index().iloc[::2]
    mean, sd = channel_statistics(st, train)
    x = np.stack([st.read(p, r) for p, r in zip(train["Metadata_Plate"], train["store_row"])]) / 65535.0
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(sd, x.std(axis=(0, 2, 3)), rtol=1e-4)
    src = StoreFields(tmp_path / "s.zarr", ld.iloc[::2])
    assert len(src) == len(ld.iloc[::2]) and src.read(0).shape == (5, st.resolution, st.resolution)
    assert float(src.read(0).max()) <= 1.0


def test_a_non_empty_folder_is_never_wiped(mini, tmp_path):
    root, ld, _ = mini
    precious = tmp_path / "data" / "keep.txt"
    precious.parent.mkdir()
    precious.write_text("not an image store")
    with pytest.raises(StoreError, match="non-empty folder"):
        build_image_store(ld.head(1), tmp_path / "data", root=root)
    assert precious.read_text() == "not an image store"


def test_a_downsampled_store_is_extended_at_its_own_resolution(mini, tmp_path):
    root, ld, spec = mini
    plates = sorted(ld["Metadata_Plate"].unique())
    half = spec.image_size // 2
    build_image_store(ld[ld["Metadata_Plate"] == plates[0]], tmp_path / "s.zarr", root=root, resolution=half)
    rep = build_image_store(ld, tmp_path / "s.zarr", root=root)  # no resolution: the store's own
    assert {p.plate: p.status for p in rep.plates}[plates[0]] == "kept" and rep.resolution == half
    st = ImageStore(tmp_path / "s.zarr")
    assert st.read(plates[-1], 0).shape == (5, half, half) and st.native_side(plates[-1]) == spec.image_size


def test_a_plate_with_skipped_fields_is_retried_by_a_failing_build(mini, tmp_path):
    root, ld, _ = mini
    work = tmp_path / "images"
    shutil.copytree(root, work)
    r0 = ld.iloc[0]
    victim = work / r0["PathName_OrigER"] / r0["FileName_OrigER"]
    data = victim.read_bytes()
    victim.unlink()
    build_image_store(ld, tmp_path / "s.zarr", root=work, on_error="skip")
    victim.write_bytes(data)  # the transient failure is gone
    rep = build_image_store(ld, tmp_path / "s.zarr", root=work)
    assert {p.plate: p.status for p in rep.plates}[r0["Metadata_Plate"]] == "rebuilt" and not rep.skipped
    assert len(ImageStore(tmp_path / "s.zarr").index()) == len(ld)
