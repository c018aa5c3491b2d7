"""The same assets materialize from the fixture gallery bucket (moto on loopback), a local folder and the
synthetic default, to the same table schemas; the release sensor registers partitions and requests runs."""

import json
import shutil

import dagster as dg
import pandas as pd
import pytest

from moa_core.data.design import DESIGN_COLUMNS
from moa_core.data.sources import LOAD_DATA_COLUMNS
from moa_core.storage import Warehouse, partition_table
from orchestration.definitions import build_definitions
from orchestration.defs.automation import jump_release_sensor
from orchestration.partitions import DATASET_PARTITIONS_NAME, sync_dataset_partitions
from orchestration.resources import MoaStore, gallery_s3

PLATES = ["BR00117010", "BR00117011"]
CATALOGUE = """
[datasets.fixture_cpjump1]
kind = "images"
source = "gallery"
layout = "cpg0000"
project = "cpg0000-jump-pilot"
source_name = "source_4"
batch = "2020_11_04_CPJUMP1"
plates = ["BR00117010", "BR00117011"]
annotations = "cpjump1"
features = { texture = false }

# one LINCS plate holds too few 10 uM compounds per MOA for the paper's analyses: every dose here
[datasets.lincs_all_doses]
kind = "profiles"
source = "gallery"
layout = "cpg0004"
project = "cpg0004-lincs"
source_name = "broad"
batch = "2016_04_01_a549_48hr_batch1"
plates = ["SQ00015054"]
profile_suffix = "normalized_feature_select"
annotations = "lincs"

[datasets.local_cpjump1]
kind = "images"
source = "local"
path = "my_plates"
annotations = "cpjump1"
features = { texture = false }
"""


@pytest.fixture(scope="module")
def world(gallery, shared_dir, tmp_path_factory):
    endpoint, client, seeded = gallery
    root = tmp_path_factory.mktemp("store")
    (root / "catalogue.toml").write_text(CATALOGUE)
    # the user's folder: the same two real fields, load_data in the real column convention
    folder = root / "my_plates"
    rows = []
    for plate, compound, well, rc in [(PLATES[0], "DMSO", "D14", "r04c14"), (PLATES[1], "AMG900", "N09", "r14c09")]:
        (folder / plate).mkdir(parents=True)
        row = {"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": 5}
        for n, stain in {1: "Mito", 2: "AGP", 3: "RNA", 4: "ER", 5: "DNA"}.items():
            name = f"{rc}f05p01-ch{n}sk1fk1fl1.tiff"
            shutil.copy(shared_dir / "data" / "cpjump1" / "images" / compound / name, folder / plate / name)
            row[f"FileName_Orig{stain}"], row[f"PathName_Orig{stain}"] = name, f"{plate}/"
        rows.append(row)
    pd.DataFrame(rows).to_parquet(folder / "load_data.parquet")
    store = MoaStore(root=str(root), shared_dir=str(shared_dir), n_workers=1)
    defs = build_definitions(store, s3_endpoint_url=endpoint)
    instance = dg.DagsterInstance.ephemeral()
    sync_dataset_partitions(
        instance,
        [
            "fixture_cpjump1",
            "local_cpjump1",
            "synthetic_cpjump1_mini",
            "cpg0004_lincs_batch1_profiles",
            "lincs_all_doses",
        ],
    )
    results = {}
    for ds in ("fixture_cpjump1", "local_cpjump1", "synthetic_cpjump1_mini"):
        results[ds] = defs.resolve_job_def("ingest_job").execute_in_process(
            instance=instance, partition_key=ds, asset_selection=[dg.AssetKey("raw_images"), dg.AssetKey("cp_profiles")]
        )
    results["lincs"] = defs.resolve_job_def("published_job").execute_in_process(
        instance=instance, partition_key="lincs_all_doses"
    )
    results["lincs_10uM"] = defs.resolve_job_def("published_job").execute_in_process(
        instance=instance, partition_key="cpg0004_lincs_batch1_profiles", raise_on_error=False
    )
    return store, defs, instance, results, endpoint, client


def test_gallery_local_and_synthetic_materialize_to_the_same_schemas(world):
    store, _, _, results, _, _ = world
    assert all(r.success for k, r in results.items() if k != "lincs_10uM")
    wh = Warehouse(store.root_path / "warehouse.duckdb")
    tables = {
        ds: {t: wh.read_table(partition_table(t, ds)) for t in ("load_data", "wells", "cp_profiles")}
        for ds in ("fixture_cpjump1", "local_cpjump1", "synthetic_cpjump1_mini")
    }
    for ds, t in tables.items():
        assert list(t["load_data"].columns) == LOAD_DATA_COLUMNS, ds
        assert list(t["wells"].columns)[: len(DESIGN_COLUMNS)] == DESIGN_COLUMNS, ds
    g, loc = tables["fixture_cpjump1"], tables["local_cpjump1"]
    syn = tables["synthetic_cpjump1_mini"]["cp_profiles"]
    assert list(g["cp_profiles"].columns) == list(loc["cp_profiles"].columns) == list(syn.columns)
    # the same real fields, read from S3 and from disk, give the same profiles
    pd.testing.assert_frame_equal(g["cp_profiles"], loc["cp_profiles"])
    moa = g["cp_profiles"].set_index("Metadata_Well")["Metadata_moa"]
    assert moa["D14"] == "DMSO" and moa["N09"] not in ("DMSO", None) and len(moa) == 2
    assert g["load_data"]["PathName_OrigDNA"].str.startswith("s3://").all()


def test_raw_images_metadata_and_plates_fan_out(world):
    _, _, instance, results, _, _ = world
    r = results["fixture_cpjump1"]
    mats = {
        e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
        for e in r.get_asset_materialization_events()
    }
    assert mats["raw_images"].metadata["plates"].value == 2 and mats["raw_images"].metadata["fields"].value == 2
    assert mats["cp_profiles"].metadata["plates"].value == 2
    steps = {e.step_key for e in r.all_events if e.step_key}
    assert {"cp_profiles.cp_profile_plate[BR00117010]", "cp_profiles.cp_profile_plate[BR00117011]"} <= steps


def test_lincs_published_profiles_load_and_are_evaluated(world, shared_dir):
    store, _, _, results, _, _ = world
    wh = Warehouse(store.root_path / "warehouse.duckdb")
    raw = pd.read_csv(shared_dir / "data" / "lincs" / "SQ00015054_normalized_feature_select.csv.gz")
    pub = wh.read_table(partition_table("published_profiles", "cpg0004_lincs_batch1_profiles"))
    assert pub["Metadata_release"].str.startswith("cpg0004").all() and pub["Metadata_etag"].str.len().gt(0).all()
    assert set(pub["Metadata_dose_uM"].round(3)) == {0.0, 10.0}  # the paper's 10 uM selection + DMSO
    at10 = raw[(raw["Metadata_mmoles_per_liter"] - 10).abs() < 0.5]
    assert pub["Metadata_moa"].eq("DMSO").sum() == raw["Metadata_broad_sample"].eq("DMSO").sum()
    assert len(pub) < len(at10) + 24 and pub["Metadata_single_moa"].all()
    # one plate at 10 uM leaves too few compounds per MOA: a clear failure, not a crash
    fail = results["lincs_10uM"]
    assert not fail.success
    msg = " ".join(str(e.event_specific_data.error) for e in fail.all_events if e.is_step_failure)
    assert "cpg0004_lincs_batch1_profiles" in msg and "add plates" in msg
    assert results["lincs"].success
    res = wh.read_table("evaluation_results", {"dataset": "lincs_all_doses"})
    assert set(res["method"]) == {"CP published"} and {"knn", "latent", "enrichment"} <= set(res["analysis"])


def _sensor(world, cursor=None):
    store, _, instance, _, endpoint, _ = world
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"store": store, "s3": gallery_s3(endpoint)}
    )
    return jump_release_sensor(ctx)


def test_release_sensor_registers_new_releases_once(world, shared_dir):
    store, _, instance, _, endpoint, client = world
    first = _sensor(world)
    names = {r.partition_key for r in first.run_requests}
    manifest = json.loads((shared_dir / "data" / "cpg0016" / "profile_index.json").read_text())
    assert len(first.run_requests) == len(manifest) + 2  # 8 assembled releases + 2 per-plate batches in the bucket
    assert {"cpg0016_compound_v1.0", "cpg0016_source_4_2021_04_26_Batch1"} <= names
    assert len({r.run_key for r in first.run_requests}) == len(first.run_requests)
    added = first.dynamic_partitions_requests[0]
    assert added.partitions_def_name == DATASET_PARTITIONS_NAME and set(added.partition_keys) == names
    instance.add_dynamic_partitions(DATASET_PARTITIONS_NAME, list(added.partition_keys))
    assert (store.root_path / "catalogue.d" / "cpg0016_compound_v1.0.json").is_file()
    # an unchanged bucket requests nothing, and registers nothing twice
    second = _sensor(world, first.cursor)
    assert second.run_requests == [] and second.dynamic_partitions_requests == []
    # a new ETag for one manifest entry -> one run for the existing partition
    manifest[2]["etag"] = "0123456789abcdef0123456789abcdef"
    key = "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/profile_index.json"
    client.put_object(Bucket="cellpainting-gallery", Key=key, Body=json.dumps(manifest).encode(), ACL="public-read")
    third = _sensor(world, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["cpg0016_compound_v1.0"]
    assert third.run_requests[0].run_key.endswith(manifest[2]["etag"]) and third.dynamic_partitions_requests == []
    # a new batch prefix -> a new partition and one run
    src = shared_dir / "data" / "cpg0016" / "source_4" / "workspace" / "profiles" / "2021_04_26_Batch1"
    client.put_object(
        Bucket="cellpainting-gallery",
        Key="cpg0016-jump/source_4/workspace/profiles/2099_01_01_Batch99/BR00117037/BR00117037.parquet",
        Body=(src / "BR00117037" / "BR00117037.parquet").read_bytes(),
        ACL="public-read",
    )
    fourth = _sensor(world, third.cursor)
    assert [r.partition_key for r in fourth.run_requests] == ["cpg0016_source_4_2099_01_01_Batch99"]
    assert list(fourth.dynamic_partitions_requests[0].partition_keys) == ["cpg0016_source_4_2099_01_01_Batch99"]
    assert _sensor(world, fourth.cursor).run_requests == []


def test_registered_release_materializes_with_its_etag(world):
    store, defs, instance, _, _, _ = world
    if "cpg0016_compound_v1.0" not in instance.get_dynamic_partitions(DATASET_PARTITIONS_NAME):
        pytest.skip("runs after the sensor test")
    r = defs.resolve_job_def("published_job").execute_in_process(
        instance=instance, partition_key="cpg0016_compound_v1.0", asset_selection=[dg.AssetKey("published_profiles")]
    )
    assert r.success
    t = Warehouse(store.root_path / "warehouse.duckdb").read_table(
        partition_table("published_profiles", "cpg0016_compound_v1.0")
    )
    assert set(t["Metadata_Source"]) == {"source_4", "source_13"} and t["Metadata_etag"].nunique() == 1


def test_download_images_into_the_cache_then_rerun_downloads_nothing(world):
    store, _, instance, _, endpoint, _ = world
    dl_store = MoaStore(root=store.root, shared_dir=store.shared_dir, n_workers=1, download_images=True)
    defs = build_definitions(dl_store, s3_endpoint_url=endpoint)
    metas = []
    for _ in range(2):
        r = defs.resolve_job_def("ingest_job").execute_in_process(
            instance=instance, partition_key="fixture_cpjump1", asset_selection=[dg.AssetKey("raw_images")]
        )
        assert r.success
        metas.append(r.get_asset_materialization_events()[0].event_specific_data.materialization.metadata)
    first, second = metas
    assert first["download_objects"].value == 10 and first["download_cached_objects"].value == 0  # 2 fields x 5
    assert first["download_bytes"].value > 10e6 and first["download_MB_per_s"].value > 0
    assert second["download_cached_objects"].value == 10 and second["download_bytes"].value == 0
    cached = sorted((store.root_path / "cache" / "gallery" / "objects").rglob("*.tiff"))
    assert len(cached) == 10 and not list((store.root_path / "cache").rglob("*.part"))
