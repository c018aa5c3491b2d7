"""The JUMP-shaped release and its out-of-core path: generation, load, metadata, normalization, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from moa_core.errors import NormalizationError, SchemaError
from moa_core.phenoca.config import JumpReleaseSpec

# a small release: the real plate list at 0.5 %, a fraction of the features (the same code as the 4,762)
SPEC = JumpReleaseSpec(
    scale=0.005,
    n_features=300,
    n_base_features=80,
    n_processed_features=60,
    n_nan_features=5,
    n_constant_features=2,
    min_annotated=120,
    min_moas=20,
    min_targets=15,
    min_target_genes=10,
)


@pytest.fixture(scope="module")
def release(tmp_path_factory, shared_dir):
    from moa_core.phenoca.jump_release import generate_release

    root = tmp_path_factory.mktemp("release")
    return generate_release(SPEC, root, shared_dir)


@pytest.fixture(scope="module")
def loaded(release, tmp_path_factory):
    from moa_core.data.sources.profiles import release_plate_files
    from moa_core.profiles.release import load_release, release_wells
    from moa_core.storage import Warehouse

    wh = Warehouse(tmp_path_factory.mktemp("wh") / "w.duckdb")
    files = release_plate_files(release.root)
    rep = load_release(wh, files, "raw")
    meta = release.metadata_dir
    wells = release_wells(wh, "raw", meta, annotations=meta / "compound_annotations.csv.gz")
    return wh, files, rep, wells


def test_release_has_jumps_layout_schema_and_metadata(release, shared_dir):
    import pyarrow.parquet as pq

    from moa_core.phenoca.jump_release import plate_file

    plates = release.plates
    real = pd.read_csv(shared_dir / "data" / "cpg0016" / "plate.csv.gz")
    assert set(plates["Metadata_Plate"]) <= set(real["Metadata_Plate"])  # real barcodes, batches and sources
    assert set(plates["Metadata_PlateType"]) == {"COMPOUND", "CRISPR"}
    assert plates["Metadata_Source"].nunique() >= 5
    p = plates.iloc[0]
    f = plate_file(release.root, p["Metadata_Source"], p["Metadata_Batch"], p["Metadata_Plate"])
    schema = pq.read_schema(f)
    assert schema.names[:3] == ["Metadata_Source", "Metadata_Plate", "Metadata_Well"]
    assert len(schema.names) == 3 + SPEC.n_features
    assert all(str(schema.field(n).type) == "float" for n in schema.names[3:])
    wells = pd.read_csv(release.metadata_dir / "well.csv.gz")
    assert len(wells) == release.n_wells and not wells.duplicated(["Metadata_Plate", "Metadata_Well"]).any()
    ctrl = pd.read_csv(release.metadata_dir / "perturbation_control.csv")
    on_plate = wells.merge(ctrl, on="Metadata_JCP2022")
    cpd_plates = set(plates.loc[plates["Metadata_PlateType"] == "COMPOUND", "Metadata_Plate"])
    for plate in cpd_plates:  # DMSO and every positive control on every compound plate
        kinds = on_plate[on_plate["Metadata_Plate"] == plate]
        assert (kinds["Metadata_pert_type"] == "negcon").sum() == SPEC.negcon_per_plate
        assert kinds.loc[kinds["Metadata_pert_type"] == "poscon", "Metadata_JCP2022"].nunique() == 8
    ann = pd.read_csv(release.metadata_dir / "compound_annotations.csv.gz")
    assert len(ann) == SPEC.sizes["annotated"] and ann["moa_list"].notna().all()
    assert release.processed_path.is_file() and (release.root / "profile_index.json").is_file()


def test_generation_is_cached_resumable_and_refuses_another_spec(release, shared_dir):
    from moa_core.phenoca.jump_release import generate_release, plate_file

    again = generate_release(SPEC, release.root, shared_dir)
    assert again.plates_generated == 0  # cached
    # a partial release: delete two plates and the completion record -> only those two are regenerated
    info = (release.root / "release.json").read_text()
    (release.root / "release.json").unlink()
    victims = release.plates.iloc[[1, 3]]
    before = {}
    for _, p in victims.iterrows():
        f = plate_file(release.root, p["Metadata_Source"], p["Metadata_Batch"], p["Metadata_Plate"])
        before[f] = pd.read_parquet(f)
        f.unlink()
    resumed = generate_release(SPEC, release.root, shared_dir)
    assert resumed.plates_generated == 2
    for f, df in before.items():
        pd.testing.assert_frame_equal(pd.read_parquet(f), df)  # seeded per plate: the same values
    assert (release.root / "release.json").read_text() == info or (release.root / "release.json").is_file()
    with pytest.raises(ValueError, match="another spec"):
        generate_release(
            JumpReleaseSpec(scale=0.005, seed=9, n_features=300, n_base_features=80, n_processed_features=60),
            release.root,
            shared_dir,
        )


def test_load_is_out_of_core_and_equals_the_files(loaded, release):
    wh, files, rep, wells = loaded
    assert rep.plates == len(files) == len(release.plates) and rep.rows == release.n_wells
    assert rep.features == SPEC.n_features
    f = files[2]
    ref = pd.read_parquet(f.path).sort_values("Metadata_Well").reset_index(drop=True)
    got = wh.read("SELECT * FROM raw WHERE Metadata_Plate = ? ORDER BY Metadata_Well", [f.plate])
    feats = [c for c in ref.columns if not c.startswith("Metadata_")]
    np.testing.assert_array_equal(got[feats].to_numpy(np.float32), ref[feats].to_numpy(np.float32))
    assert (got["Metadata_Batch"] == f.batch).all()
    # metadata: controls, CRISPR genes and annotations joined
    assert len(wells) == release.n_wells
    assert (wells["Metadata_moa"] == "DMSO").sum() == wells["Metadata_control_type"].eq("negcon").sum()
    assert wells["Metadata_control_type"].eq("poscon").any()
    assert wells["Metadata_gene"].notna().any() and wells["Metadata_single_moa"].any()


def test_load_resumes_after_a_failure_and_keeps_the_previous_release(release, tmp_path):
    from moa_core.data.sources.profiles import release_plate_files
    from moa_core.profiles.release import load_release
    from moa_core.storage import Warehouse

    wh = Warehouse(tmp_path / "w.duckdb")
    files = release_plate_files(release.root)[:6]
    load_release(wh, files[:2], "raw")  # the "previous release"
    bad_dir = tmp_path / "bad"
    shutil.copytree(release.root, bad_dir, ignore=shutil.ignore_patterns(".processed_parts", "profiles_assembled"))
    bad = release_plate_files(bad_dir)[:6]
    bad[4].path.write_bytes(bad[4].path.read_bytes()[:-200])  # a truncated plate file (a partial download)
    with pytest.raises(SchemaError, match=bad[4].plate):
        load_release(
            wh, bad, "raw", features=[c for c in pd.read_parquet(bad[0].path).columns if not c.startswith("Metadata_")]
        )
    assert wh.read("SELECT count(DISTINCT Metadata_Plate) AS n FROM raw")["n"].iloc[0] == 2  # previous intact
    shutil.copy(files[4].path, bad[4].path)  # fixed: the rerun loads only what was missing
    rep = load_release(wh, bad, "raw")
    assert rep.plates_resumed == 4 and rep.plates_loaded == 2
    assert wh.read("SELECT count(DISTINCT Metadata_Plate) AS n FROM raw")["n"].iloc[0] == 6


def test_bad_release_files_are_named(release, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from moa_core.data.sources.profiles import release_plate_files
    from moa_core.profiles.release import check_release_files, load_release
    from moa_core.storage import Warehouse

    files = release_plate_files(release.root)[:3]
    good = pq.read_table(files[1].path)
    cases = {
        "lacks feature column": good.drop_columns([good.schema.names[10]]),
        "has extra column": good.append_column("Extra_Feature", pa.array(np.zeros(good.num_rows, np.float32))),
        "stored as string": good.set_column(5, good.schema.names[5], pa.array(["x"] * good.num_rows)),
    }
    for msg, table in cases.items():
        p = tmp_path / msg.replace(" ", "_") / files[1].path.name
        p.parent.mkdir()
        pq.write_table(table, p)
        swapped = [files[0], type(files[1])(p, files[1].source, files[1].batch, files[1].plate)]
        with pytest.raises(SchemaError, match=msg):
            check_release_files(swapped)
    missing = [files[0], type(files[1])(tmp_path / "nope.parquet", "s", "b", "P")]
    with pytest.raises(FileNotFoundError, match="plate P"):
        check_release_files(missing)
    dup = pq.read_table(files[0].path)
    p = tmp_path / "dup" / files[0].path.name
    p.parent.mkdir()
    pq.write_table(pa.concat_tables([dup, dup.slice(0, 1)]), p)
    with pytest.raises(SchemaError, match="duplicate wells.*well A"):
        load_release(Warehouse(tmp_path / "d.duckdb"), [type(files[0])(p, "s", "b", files[0].plate)], "raw")
    # a file that holds another plate's rows (a mislabelled upload) is named, in a batch of several plates
    mislabelled = tmp_path / "wrong" / files[1].path.name
    mislabelled.parent.mkdir()
    shutil.copy(files[2].path, mislabelled)
    wrong = [files[0], type(files[1])(mislabelled, files[1].source, files[1].batch, files[1].plate), files[2]]
    with pytest.raises(SchemaError, match=f"holds rows of plate '{files[2].plate}'.*not only {files[1].plate}"):
        load_release(Warehouse(tmp_path / "w.duckdb"), wrong, "raw")


def test_normalization_out_of_core_equals_in_memory(loaded):
    from moa_core.profiles.published import published_embeddings
    from moa_core.profiles.release import normalize_release

    wh, _files, _rep, wells = loaded
    rep = normalize_release(wh, "raw", wells, "norm", select=(), sample_wells=10**9)
    assert rep.dropped_na and rep.dropped_constant  # the release's mostly-NaN and constant features
    raw = wh.read("SELECT * FROM raw ORDER BY Metadata_Plate, Metadata_Well")
    meta = wells.sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    feats = [c for c in raw.columns if not c.startswith("Metadata_")]
    ref, ref_meta = published_embeddings(meta.join(raw[feats]))
    ours = wh.read("SELECT * FROM norm ORDER BY Metadata_Plate, Metadata_Well")
    ref = ref.sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    ref_feats = [c for c in ref.columns if not c.startswith("Metadata_")]
    assert rep.selected == ref_feats
    assert len(ours) == len(ref)
    np.testing.assert_allclose(
        ours[ref_feats].to_numpy(np.float64), ref[ref_feats].to_numpy(np.float64), rtol=1e-5, atol=1e-5
    )
    # with pycytominer's feature selection
    sel = normalize_release(wh, "raw", wells, "norm_sel", sample_wells=2000)
    assert 0 < len(sel.selected) < len(ref_feats) and sel.sample_wells <= 2100


def test_a_plate_without_dmso_is_skipped_and_named(loaded):
    from moa_core.profiles.release import normalize_release

    wh, _files, _rep, wells = loaded
    plate = wells["Metadata_Plate"].iloc[0]
    w = wells.copy()
    w.loc[(w["Metadata_Plate"] == plate) & (w["Metadata_moa"] == "DMSO"), "Metadata_moa"] = None
    rep = normalize_release(wh, "raw", w, "norm_skip", select=())
    assert rep.plates_without_dmso == [plate]
    assert wh.read("SELECT count(*) AS n FROM norm_skip WHERE Metadata_Plate = ?", [plate])["n"].iloc[0] == 0
    none = w.assign(Metadata_moa=None)
    with pytest.raises(NormalizationError, match="2 or more DMSO"):
        normalize_release(wh, "raw", none, "norm_none", select=())


def test_read_back_out_of_core_equals_the_table(loaded):
    from moa_core.profiles.release import read_features, read_metadata, table_columns

    wh, *_ = loaded
    meta = read_metadata(wh, "raw")
    mcols, feats = table_columns(wh, "raw")
    assert list(meta.columns) == ["_row", *mcols] and feats
    rows = np.random.default_rng(0).permutation(meta["_row"].to_numpy())[:300]  # any order, any subset
    x = read_features(wh, "raw", rows, feats[:40], batch_rows=64)
    ref = wh.read("SELECT rowid AS _row, * FROM raw").set_index("_row").loc[rows, feats[:40]]
    np.testing.assert_array_equal(x, ref.to_numpy(np.float32))
    assert x.dtype == np.float32
    with pytest.raises(SchemaError, match="not in raw"):
        read_features(wh, "raw", np.array([int(meta["_row"].max()) + 5]), feats[:3])
    with pytest.raises(SchemaError, match="repeat"):
        read_features(wh, "raw", np.array([0, 0]), feats[:3])
    with pytest.raises(SchemaError, match="not found"):
        table_columns(wh, "no_such_table")
