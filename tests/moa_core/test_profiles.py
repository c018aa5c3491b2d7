import numpy as np
import pandas as pd
import pytest

from moa_core.data.image_io import CHANNEL_MAPS, read_field
from moa_core.errors import NormalizationError, SchemaError
from moa_core.profiles.features import FeatureConfig, aggregate_wells, measure_field, single_cell_profiles
from moa_core.profiles.normalize import feature_columns, standardize_to_controls
from moa_core.profiles.segmentation import segment_field


def _real_field(shared_dir, compound):
    first = sorted((shared_dir / "data" / "cpjump1" / "images" / compound).glob("*-ch1sk1fk1fl1.tiff"))[0]
    return read_field({s: str(first).replace("-ch1", f"-ch{n}") for n, s in CHANNEL_MAPS["cpg0000"].items()})


def test_real_fields_segment_plausible_nuclei(shared_dir):
    dmso = segment_field(_real_field(shared_dir, "DMSO"))
    assert 50 <= dmso.n_objects <= 150  # ~94 nuclei by eye in this DMSO field
    areas = np.bincount(dmso.nuclei.ravel())[1:]
    assert 500 < np.median(areas) < 1600  # ~35 px diameter
    # the cytotoxic FK-866 (NAMPT inhibitor) field has clearly fewer cells than DMSO
    assert segment_field(_real_field(shared_dir, "FK-866")).n_objects < 0.7 * dmso.n_objects
    # cells contain their nucleus and cytoplasm excludes it
    assert np.all(dmso.cells[dmso.nuclei > 0] == dmso.nuclei[dmso.nuclei > 0])
    assert not np.any(dmso.cytoplasm[dmso.nuclei > 0])


def test_measure_field_cellprofiler_columns(mini_dataset):
    root, ld, _, _ = mini_dataset
    sc = single_cell_profiles(ld.head(3), root, FeatureConfig(texture=False))
    assert {"Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"} <= set(sc.columns)
    feats = feature_columns(sc)
    assert any(c.startswith("Nuclei_AreaShape") or c.startswith("Nuclei_Area") for c in feats)
    assert {
        "Cells_Intensity_MeanIntensity_ER",
        "Nuclei_Intensity_MeanIntensity_DNA",
        "Cytoplasm_Intensity_MeanIntensity_Mito",
        "Cells_Correlation_Pearson_DNA_ER",
    } <= set(feats)
    assert not any(c.startswith("Nuclei_Correlation") for c in feats)  # colocalization on whole cells only
    assert not any("Center_" in c or "Location_" in c for c in feats)
    prof = aggregate_wells(sc)
    assert prof["Metadata_Count_Cells"].sum() == len(sc)
    assert len(prof) == sc.groupby(["Metadata_Plate", "Metadata_Well"]).ngroups


def test_empty_field_gives_no_cells():
    field = np.full((5, 64, 64), 300, np.uint16)
    assert measure_field(field).empty


def _plates():
    rng = np.random.default_rng(0)
    rows = []
    for p in ("P1", "P2"):
        for i in range(8):
            rows.append(
                {
                    "Metadata_Plate": p,
                    "Metadata_Well": f"A{i + 1:02d}",
                    "Metadata_moa": "DMSO" if i < 4 else "x",
                    "f1": rng.normal(5 if p == "P1" else 9, 2),
                    "f2": rng.normal(0, 1),
                    "const": 1.0,
                }
            )
    return pd.DataFrame(rows)


def test_standardize_matches_pycytominer_per_plate():
    from pycytominer import normalize

    df = _plates()
    ours, dropped = standardize_to_controls(df, ["f1", "f2"], control_mask=df["Metadata_moa"].eq("DMSO"))
    assert dropped == []
    for _p, grp in df.groupby("Metadata_Plate"):
        ref = normalize(
            grp,
            features=["f1", "f2"],
            meta_features=["Metadata_Plate", "Metadata_Well", "Metadata_moa"],
            samples="Metadata_moa == 'DMSO'",
            method="standardize",
        )
        np.testing.assert_allclose(
            ours.loc[grp.index, ["f1", "f2"]].to_numpy(), ref[["f1", "f2"]].to_numpy(), rtol=1e-5, atol=1e-5
        )
    dmso = ours[df["Metadata_moa"].eq("DMSO")]
    assert np.allclose(dmso.groupby("Metadata_Plate")[["f1", "f2"]].mean(), 0, atol=1e-5)


def test_standardize_bad_input():
    df = _plates()
    no_dmso = df[~(df["Metadata_Plate"].eq("P2") & df["Metadata_moa"].eq("DMSO"))]
    with pytest.raises(NormalizationError, match="plate P2 has 0 negative-control"):
        standardize_to_controls(no_dmso, ["f1"], control_mask=no_dmso["Metadata_moa"].eq("DMSO"))
    nan = df.copy()
    nan.loc[5, "f2"] = np.nan
    with pytest.raises(SchemaError, match=r"'f2' for plate P1 well A06"):
        standardize_to_controls(nan, ["f1", "f2"], control_mask=nan["Metadata_moa"].eq("DMSO"))
    out, dropped = standardize_to_controls(df, ["f1", "const"], control_mask=df["Metadata_moa"].eq("DMSO"))
    assert dropped == ["const"] and "const" not in out.columns
    with pytest.raises(NormalizationError, match="'const'"):
        standardize_to_controls(df, ["const"], control_mask=df["Metadata_moa"].eq("DMSO"), zero_sd="raise")


# ---- feature hygiene for real plates ----------------------------------------------------------
def _plate_frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {"Metadata_Plate": ["P1"] * (n // 2) + ["P2"] * (n // 2), "Metadata_Well": [f"W{i:02d}" for i in range(n)]}
    )
    for j in range(6):
        df[f"Cells_f{j}"] = rng.normal(size=n)
    return df


def test_one_bad_well_keeps_the_feature_for_every_other_well():
    from moa_core.profiles.normalize import clean_features

    df = _plate_frame()
    df.loc[3, "Cells_f1"] = np.nan  # a NaN cytoplasm feature in one well
    df.loc[25, "Cells_f2"] = np.inf  # an inf form factor
    df["Cells_allnan"] = np.nan
    df["Cells_const"] = 7.0
    out, kept, rep = clean_features(df, [c for c in df.columns if c.startswith("Cells_")])
    assert kept == [f"Cells_f{j}" for j in range(6)]
    assert [c for c, _ in rep.dropped_na] == ["Cells_allnan"] and rep.dropped_constant == ["Cells_const"]
    assert rep.inf_to_nan == 1
    assert sorted(map(tuple, rep.imputed.to_numpy().tolist())) == [("Cells_f1", "P1", "W03"), ("Cells_f2", "P2", "W25")]
    assert out.loc[3, "Cells_f1"] == pytest.approx(np.median(df.loc[[i for i in range(20) if i != 3], "Cells_f1"]))
    untouched = [i for i in range(40) if i not in (3, 25)]
    np.testing.assert_allclose(out.loc[untouched, kept].to_numpy(), df.loc[untouched, kept].to_numpy(), rtol=1e-6)
    assert np.isfinite(out[kept].to_numpy()).all()
    md = rep.as_metadata()
    assert md["imputed_values"] == 2 and "Cells_allnan (100%)" in md["dropped_na_names"]


def test_na_cutoff_matches_pycytominer_drop_na_columns():
    from pycytominer import feature_select

    from moa_core.profiles.normalize import clean_features

    df = _plate_frame(n=40)
    df.loc[:1, "Cells_f0"] = np.nan  # 2/40 = 5%: kept at na_cutoff 0.05
    df.loc[:2, "Cells_f3"] = np.nan  # 3/40 = 7.5%: dropped
    feats = [c for c in df.columns if c.startswith("Cells_")]
    ref = feature_select(df, features=feats, operation="drop_na_columns", na_cutoff=0.05)
    _, kept, _ = clean_features(df, feats, na_cutoff=0.05)
    assert kept == [c for c in ref.columns if c.startswith("Cells_")]
    assert "Cells_f0" in kept and "Cells_f3" not in kept


# ---- segmentation floor -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["blank", "constant", "noise"])
def test_empty_or_failed_stain_fields_yield_no_nuclei_and_a_flag(kind):
    rng = np.random.default_rng(1)
    shape = (5, 256, 256)
    field = (
        {"blank": np.zeros(shape), "constant": np.full(shape, 300.0), "noise": rng.normal(300, 20, shape)}[kind]
        .clip(0, 65535)
        .astype(np.uint16)
    )
    seg = segment_field(field)
    assert seg.n_objects == 0 and seg.flag and "contrast" in seg.flag


def test_floor_keeps_real_and_synthetic_segmentation(shared_dir, mini_dataset):
    from moa_core.data.load_data import read_field_from_row
    from moa_core.profiles.segmentation import SegmentationParams

    no_floor = SegmentationParams(min_dna_contrast=0.0)
    for compound in ("DMSO", "AMG900", "FK-866"):
        f = _real_field(shared_dir, compound)
        a, b = segment_field(f), segment_field(f, no_floor)
        assert a.flag is None and a.n_objects == b.n_objects > 0
    root, ld, _, _ = mini_dataset
    for _, row in ld.head(6).iterrows():
        f = read_field_from_row(row, root=root)
        assert segment_field(f).n_objects == segment_field(f, no_floor).n_objects


# ---- single cells streamed per plate ----------------------------------------------------------
def test_profile_plate_streams_the_same_cells_and_flags_empty_fields(mini_dataset, tmp_path):
    import shutil

    from moa_core.data.image_io import write_tiff_atomic
    from moa_core.profiles.features import aggregate_plate, profile_plate

    root, ld, _, _ = mini_dataset
    plate = ld["Metadata_Plate"].iloc[0]
    one = ld[ld["Metadata_Plate"].eq(plate)].head(10).reset_index(drop=True)
    cfg = FeatureConfig(texture=False)
    stale = tmp_path / ".p.parquet.k1ll3d.tmp"  # what an attempt killed mid-plate leaves behind
    stale.write_bytes(b"PAR1 half a file")
    rep = profile_plate(one, tmp_path / "p.parquet", root, cfg, chunk_fields=3)
    assert not stale.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]
    old = single_cell_profiles(one, root, cfg)
    new = pd.read_parquet(tmp_path / "p.parquet")
    assert rep.cells == len(new) == len(old) and rep.fields == 10 and rep.flagged_fields.empty
    key = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"]
    a = old.sort_values(key).reset_index(drop=True)
    b = new[a.columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    pd.testing.assert_frame_equal(aggregate_plate(tmp_path / "p.parquet"), aggregate_wells(new))
    # an all-zero field: flagged with its reason, the rest profiled
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    r0 = one.iloc[0]
    for ch in ("DNA", "ER", "RNA", "AGP", "Mito"):
        write_tiff_atomic(copy / r0[f"PathName_Orig{ch}"] / r0[f"FileName_Orig{ch}"], np.zeros((128, 128), np.uint16))
    rep2 = profile_plate(one, tmp_path / "q.parquet", copy, cfg)
    flags = rep2.flagged_fields
    assert flags[["Metadata_Well", "Metadata_Site"]].drop_duplicates().values.tolist() == [
        [r0["Metadata_Well"], r0["Metadata_Site"]]
    ]
    assert "contrast" in flags["reason"].iloc[0] and pd.isna(flags["channel"].iloc[0])  # the segmentation's flag
    # and field QC's: every channel of the all-zero field is blank, named
    assert sorted(flags["channel"].dropna()) == sorted(("DNA", "ER", "RNA", "AGP", "Mito"))
    assert flags["reason"].iloc[1:].str.startswith("blank").all() and not flags["skipped"].any()


def test_profile_plate_failure_leaves_no_file(mini_dataset, tmp_path):
    from moa_core.errors import ImageReadError
    from moa_core.profiles.features import profile_plate

    root, ld, _, _ = mini_dataset
    one = ld[ld["Metadata_Plate"].eq(ld["Metadata_Plate"].iloc[0])].head(4).reset_index(drop=True)
    one.loc[2, "FileName_OrigER"] = "missing.tiff"
    with pytest.raises(ImageReadError, match=rf"well {one.loc[2, 'Metadata_Well']} site {one.loc[2, 'Metadata_Site']}"):
        profile_plate(one, tmp_path / "p.parquet", root, FeatureConfig(texture=False), chunk_fields=2)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="exactly one plate"):
        profile_plate(ld, tmp_path / "p.parquet", root)


def test_profile_plate_with_workers_gives_the_same_cells_in_order(mini_dataset, tmp_path):
    """Two worker processes (one BLAS thread each, a few fields in flight) write exactly the cells of one
    process, in load_data order; a failing field in a worker still fails the plate and leaves no file."""
    from moa_core.errors import ImageReadError
    from moa_core.profiles.features import profile_plate

    root, ld, _, _ = mini_dataset
    one = ld[ld["Metadata_Plate"].eq(ld["Metadata_Plate"].iloc[0])].head(9).reset_index(drop=True)
    cfg = FeatureConfig(texture=False)
    profile_plate(one, tmp_path / "serial.parquet", root, cfg, chunk_fields=4)
    rep = profile_plate(one, tmp_path / "pool.parquet", root, cfg, n_workers=2, chunk_fields=4)
    a, b = pd.read_parquet(tmp_path / "serial.parquet"), pd.read_parquet(tmp_path / "pool.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert rep.fields == 9 and rep.cells == len(b)
    bad = one.copy()
    bad.loc[7, "FileName_OrigDNA"] = "missing.tiff"
    with pytest.raises(ImageReadError, match=rf"well {bad.loc[7, 'Metadata_Well']}"):
        profile_plate(bad, tmp_path / "bad.parquet", root, cfg, n_workers=2, chunk_fields=4)
    assert not (tmp_path / "bad.parquet").exists() and not list(tmp_path.glob(".bad.parquet*"))


def test_field_workers_run_one_blas_thread_each():
    from threadpoolctl import threadpool_info

    from moa_core.profiles.features import field_pool

    pool = field_pool(2)
    try:
        infos = pool.submit(threadpool_info).result()
    finally:
        pool.shutdown()
    assert infos and all(i["num_threads"] == 1 for i in infos)
    assert field_pool(1) is None
