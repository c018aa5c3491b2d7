"""Materialize the whole asset graph through Dagster on the mini synthetic dataset."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from moa_core.evaluation.ablation import ABLATION_METRICS
from moa_core.profiles.baselines import JUMP_STEPS, SPHERIZE_STEPS
from moa_core.profiles.normalize import feature_columns
from moa_core.storage import Warehouse, partition_table
from orchestration.definitions import build_definitions
from orchestration.partitions import multi_key

DS, FRAC = "synthetic_cpjump1_mini", "100"


@pytest.fixture()
def materialized(mini_pipeline):
    return mini_pipeline


def test_every_asset_materializes_with_metadata(materialized):
    store, instance, results = materialized
    assert all(r.success for r in results.values())
    mats = {}
    for r in results.values():
        for ev in r.get_asset_materialization_events():
            m = ev.event_specific_data.materialization
            mats[m.asset_key.to_user_string()] = m.metadata
    assert set(mats) == {
        "raw_images",
        "cp_profiles",
        "cp_embeddings",
        "cp_baselines",
        "cp_ablation",
        "splits",
        "compound_holdout_splits",
        "image_store",
        "mp_checkpoint",
        "mp_embeddings",
        "evaluation_results",
        "mp_holdout_checkpoint",
        "mp_holdout_embeddings",
        "holdout_results",
        "dashboard_snapshot",
        "dp_checkpoint",
        "dp_embeddings",
        "retrieval_index",
    }
    assert mats["image_store"]["fields"].value == mats["raw_images"]["fields"].value
    assert mats["image_store"]["skipped_fields"].value == 0 and mats["image_store"]["bytes_on_disk"].value > 0
    assert "learning_curve" in mats["mp_checkpoint"] and mats["dp_checkpoint"]["train_cells"].value > 0
    assert mats["raw_images"]["fields"].value > 0 and "seconds" in mats["cp_profiles"]
    assert mats["mp_checkpoint"]["best_epoch"].value >= 1
    checks = [e for r in results.values() for e in r.get_asset_check_evaluations()]
    assert checks and all(c.passed for c in checks if c.severity == dg.AssetCheckSeverity.ERROR)
    names = {c.check_name for c in checks}
    assert {"retrieval_index_answers", "retrieval_index_beats_majority"} <= names


def test_warehouse_holds_mp_and_cp_for_the_same_test_wells(materialized):
    store, _, _ = materialized
    wh = Warehouse(store.snapshot_path, read_only=True)
    res = wh.read_table("evaluation_results", {"dataset": DS, "fraction": FRAC})
    methods = {"MP", "CP", "DP recipe (trained here)", "CP (JUMP recipe)", "CP spherized", "cell count"}
    assert set(res["method"]) == methods
    for analysis in ("enrichment", "intra_inter", "knn", "latent"):
        assert set(res[res["analysis"] == analysis]["method"]) == methods, analysis
    n = res[(res["analysis"] == "knn") & (res["metric"] == "f1")].groupby("method")["parameter"].max()
    assert n["MP"] == n["CP"]  # k runs to N-1 on the same wells
    # the chance level is written by the evaluation from the wells it scored (the per-MOA table's n)
    from moa_core.evaluation.compare import prevalence_f1

    ch = wh.read_table("evaluation_chance", {"dataset": DS, "fraction": FRAC}).set_index("metric")
    per = wh.read_table("evaluation_per_moa", {"dataset": DS, "fraction": FRAC})
    per = per[(per["method"] == "MP") & (per["analysis"] == per["analysis"].iloc[0])]
    assert ch.loc["weighted_f1", "value"] == pytest.approx(prevalence_f1(per["n"]))
    assert ch.loc["weighted_f1", "n_wells"] == per["n"].sum() and ch.loc["odds_ratio", "value"] == 1
    cp = wh.read_table(partition_table("cp_embeddings", DS))
    mp = wh.read_table(partition_table("mp_embeddings", DS, FRAC))
    assert len([c for c in mp.columns if c.startswith("MP_")]) <= 1280
    sp = wh.read_table(partition_table("splits", DS))
    key = lambda d: set(zip(d.Metadata_Plate, d.Metadata_Well))  # noqa: E731
    assert key(mp) == key(sp) and key(mp) <= key(cp)  # CP profiles every rendered well, MP the split's


def test_cp_baselines_are_methods_with_an_ablation(materialized):
    store, _, results = materialized
    wh = Warehouse(store.snapshot_path, read_only=True)
    meta = {
        m.asset_key.to_user_string(): m.metadata
        for r in results.values()
        for ev in r.get_asset_materialization_events()
        for m in [ev.event_specific_data.materialization]
    }
    assert meta["cp_baselines"]["profiles"].value == "cp_profiles"
    steps = {(s["recipe"], s["step"]): s for s in meta["cp_baselines"]["steps"].value}
    assert steps[("CP (JUMP recipe)", "Harmony")]["batch"] == "Metadata_Plate"  # the mini dataset: 2 plates
    jump = wh.read_table(partition_table("cp_jump_embeddings", DS))
    cp = wh.read_table(partition_table("cp_embeddings", DS))
    assert len(jump) == len(cp) and 0 < len(feature_columns(jump)) <= len(feature_columns(cp))
    count = wh.read_table(partition_table("cell_count_embeddings", DS))
    z = count[feature_columns(count)].to_numpy()
    assert z.shape[1] == 25 and np.isfinite(z).all() and np.unique(z.argmax(1)).size > 3  # counts differ by well
    ab = wh.read_table("cp_ablation", {"dataset": DS})
    got = set(zip(ab["recipe"], ab["step"]))
    assert {("CP (JUMP recipe)", s) for s in JUMP_STEPS} <= got and {("CP spherized", s) for s in SPHERIZE_STEPS} <= got
    assert {("reference", "CP (DMSO standardized)"), ("reference", "cell count")} <= got
    assert set(ab["label"]) == {m[3] for m in ABLATION_METRICS}
    knn = ab[ab["analysis"].eq("knn")].set_index(["recipe", "step"])["value"]
    assert knn.notna().all() and knn.between(0, 1).all()
    # the ablation's last JUMP step is the method evaluation_results scored (same wells: the same k-NN F1 range)
    res = wh.read_table("evaluation_results", {"dataset": DS, "fraction": FRAC})
    assert {"CP (JUMP recipe)", "CP spherized", "cell count"} <= set(res["method"])


def test_rerun_replaces_partition_rows(materialized):
    store, instance, _ = materialized
    defs = build_definitions(store)
    before = (
        Warehouse(store.root_path / "warehouse.duckdb")
        .read("SELECT count(*) AS n FROM evaluation_results")["n"]
        .iloc[0]
    )
    r = defs.resolve_job_def("train_eval_job").execute_in_process(
        instance=instance,
        partition_key=multi_key(DS, FRAC),
        asset_selection=[dg.AssetKey("evaluation_results")],
    )
    assert r.success
    after = (
        Warehouse(store.root_path / "warehouse.duckdb")
        .read("SELECT count(*) AS n FROM evaluation_results")["n"]
        .iloc[0]
    )
    assert before == after


def test_missing_image_fails_naming_the_file_and_keeps_tables(materialized, tmp_path):
    store, instance, _ = materialized
    wh = Warehouse(store.root_path / "warehouse.duckdb")
    before = wh.read_table(partition_table("cp_profiles", DS))
    ld = pd.read_csv(store.dataset_dir(DS) / "load_data.csv")
    victim = store.dataset_dir(DS) / ld.iloc[0]["PathName_OrigER"] / ld.iloc[0]["FileName_OrigER"]
    data = victim.read_bytes()
    victim.unlink()
    try:
        r = (
            build_definitions(store)
            .resolve_job_def("ingest_job")
            .execute_in_process(
                instance=instance,
                partition_key=DS,
                asset_selection=[dg.AssetKey("cp_profiles")],
                raise_on_error=False,
            )
        )
        assert not r.success
        msg = " ".join(str(e.event_specific_data.error) for e in r.all_events if e.is_step_failure)
        assert victim.name in msg and f"well {ld.iloc[0]['Metadata_Well']}" in msg
        after = wh.read_table(partition_table("cp_profiles", DS))
        pd.testing.assert_frame_equal(before, after)
    finally:
        victim.write_bytes(data)


def test_a_swapped_checkpoint_is_refused_by_its_hash(materialized):
    store, instance, _ = materialized
    row = (
        Warehouse(store.root_path / "warehouse.duckdb")
        .read_table("checkpoints", {"dataset": DS, "fraction": FRAC, "model": "mp"})
        .iloc[0]
    )
    path = store.artifact_dir(DS, FRAC) / row["checkpoint_path"].rsplit("/", 1)[-1]
    assert path.is_file() and len(row["sha256"]) == 64 and row["sha256"][:12] in path.name
    # no resume file, no stale checkpoint
    assert sorted(p.name for p in path.parent.glob("mp_efficientnet_b0*.pt")) == [path.name]
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-10] + b"0123456789")  # planted or corrupted after the row was written
        r = (
            build_definitions(store)
            .resolve_job_def("train_eval_job")
            .execute_in_process(
                instance=instance,
                partition_key=multi_key(DS, FRAC),
                asset_selection=[dg.AssetKey("mp_embeddings")],
                raise_on_error=False,
            )
        )
        assert not r.success
        msg = " ".join(str(e.event_specific_data.error) for e in r.all_events if e.is_step_failure)
        assert "its warehouse row records" in msg and path.name in msg
    finally:
        path.write_bytes(original)


def test_retrieval_indexes_images_and_asset_status_are_published(materialized):
    from moa_core.retrieval import load_index, neighbours

    store, _, _ = materialized
    wh = Warehouse(store.snapshot_path, read_only=True)
    rows = wh.read_table("retrieval_indexes", {"dataset": DS, "fraction": FRAC})
    assert set(rows["method"]) == {
        "MP",
        "CP",
        "DP recipe (trained here)",
        "CP (JUMP recipe)",
        "CP spherized",
        "cell count",
    }
    for r in rows.itertuples():
        idx = load_index(store.root_path / r.path, verify=True)
        assert idx.manifest["build_id"] == r.build_id and idx.n_wells == r.n_wells
        assert {"activity_map", "activity_q", "consistency_map"} <= set(idx.compounds.columns)
        assert (store.root_path / r.path / "calibration.parquet").is_file()
        treat = idx.compounds[~idx.compounds["is_control"]]
        nb = neighbours(idx, treat["compound"].iloc[0], k=3)
        assert len(nb.nearest) == 3 and nb.nearest["best_well"].notna().all()
    # every field of the load_data has its files recorded, resolved, and its image-store row
    fields = wh.read_table(partition_table("image_fields", DS))
    ld = pd.read_csv(store.dataset_dir(DS) / "load_data.csv")
    assert len(fields) == len(ld) and fields["store_row"].notna().all()
    first = fields.iloc[0]
    from pathlib import Path as _P

    assert _P(first["path_DNA"]).is_file()
    status = wh.read_table("asset_status").set_index("asset")
    assert status.loc["retrieval_index", "materialized_partitions"] == 1
    parts = wh.read_table("partition_status")
    mp = parts[(parts["asset"] == "mp_checkpoint") & (parts["dataset"] == DS)].set_index("fraction")["materialized"]
    assert mp["100"] and not mp["50"]  # the mini run trains 100 % only: 50 % is listed as missing
    assert wh.read_table("publication")["code_version"].iloc[0].startswith("0.")
    cat = wh.read_table("catalog")
    assert cat["code_version"].notna().all()


def test_index_rebuilds_keep_what_the_snapshot_names_and_remove_the_rest(materialized):
    from orchestration.defs.retrieval import slug

    store, instance, _ = materialized
    defs = build_definitions(store)
    folder = store.root_path / "retrieval" / DS / FRAC
    snap = lambda: set(
        Warehouse(store.snapshot_path, read_only=True).read_table(  # noqa: E731
            "retrieval_indexes", {"dataset": DS, "fraction": FRAC}
        )["path"]
    )
    published = snap()
    run = lambda job, key: defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key)  # noqa: E731
    assert run("retrieval_job", multi_key(DS, FRAC)).success
    second = set(
        Warehouse(store.root_path / "warehouse.duckdb").read_table(
            "retrieval_indexes", {"dataset": DS, "fraction": FRAC}
        )["path"]
    )
    assert second.isdisjoint(published)
    on_disk = {str(p.relative_to(store.root_path)) for p in folder.iterdir()}
    assert published | second == on_disk  # the published builds stay while the snapshot names them
    assert run("publish_job", None).success and snap() == second
    assert run("retrieval_job", multi_key(DS, FRAC)).success
    on_disk = {str(p.relative_to(store.root_path)) for p in folder.iterdir()}
    assert published.isdisjoint(on_disk) and second <= on_disk and len(on_disk) == 2 * len(second)
    assert {p.split("/")[-1].rsplit("-", 2)[0] for p in on_disk} == {
        slug(m) for m in ("MP", "CP", "DP recipe (trained here)", "CP (JUMP recipe)", "CP spherized", "cell count")
    }
    assert run("publish_job", None).success


def test_a_seed_replicate_trains_with_its_own_seed_and_becomes_a_run_of_mps_curve(materialized):
    """Fraction key "100s1": the same wells as "100" (all of them), training seed + 1; evaluated like any
    fraction, and a second run of MP at the same size on the replicate-fraction curve (not of CP)."""
    from moa_core.model.train import load_checkpoint
    from orchestration.defs.phenoca import _mp_fraction_points

    store, instance, _ = materialized
    seed_key = "100s1"
    r = (
        build_definitions(store)
        .resolve_job_def("train_eval_job")
        .execute_in_process(
            instance=instance,
            partition_key=multi_key(DS, seed_key),
            asset_selection=[dg.AssetKey(k) for k in ("mp_checkpoint", "mp_embeddings", "evaluation_results")],
        )
    )
    assert r.success
    wh = Warehouse(store.root_path / "warehouse.duckdb", read_only=True)
    ckpts = {}
    for frac in (FRAC, seed_key):
        row = wh.read_table("checkpoints", {"dataset": DS, "fraction": frac, "model": "mp"}).iloc[0]
        path = store.artifact_dir(DS, frac) / row["checkpoint_path"].rsplit("/", 1)[-1]
        ckpts[frac] = load_checkpoint(path, expected_sha256=row["sha256"])[1]
    assert ckpts[seed_key]["config"]["seed"] == ckpts[FRAC]["config"]["seed"] + 1
    assert ckpts[seed_key]["classes"] == ckpts[FRAC]["classes"]
    a, b = (wh.read_table(partition_table("mp_embeddings", DS, f)) for f in (FRAC, seed_key))
    common = sorted(set(feature_columns(a)) & set(feature_columns(b)))  # features constant on DMSO are dropped
    assert len(a) == len(b) and len(common) > 100
    assert not np.allclose(a[common].to_numpy(), b[common].to_numpy())  # another seed, another model
    res = wh.read_table("evaluation_results", {"dataset": DS, "fraction": seed_key})
    assert {"MP", "CP"} <= set(res["method"])
    points, sizes = _mp_fraction_points(store, DS)
    mp = points[points["family"].eq("MP") & points["task"].eq("knn_f1")]
    assert set(mp["run"]) == {"MP", "MP s1"} and mp["n"].nunique() == 1  # two runs at one size
    assert set(points[points["family"].eq("CP")]["run"]) == {"CP"} and seed_key not in sizes


def test_three_seeds_at_three_fractions_give_mps_replicate_fraction_law_an_interval(materialized):
    """The seed study of the replicate-fraction curve on the mini dataset: 3 fractions x 3 seeds (the previous
    test trained 100s1) -> scaling_laws. MP's curve then has noise to estimate and its forecasts intervals;
    CP's (one run per size, no training of its own) has none. Runs after the tests above: it adds
    partitions to the shared mini store."""
    store, instance, _ = materialized
    defs = build_definitions(store)
    keys = ["100s2", "50", "50s1", "50s2", "25", "25s1", "25s2"]
    for key in keys:
        r = defs.resolve_job_def("train_eval_job").execute_in_process(
            instance=instance,
            partition_key=multi_key(DS, key),
            asset_selection=[dg.AssetKey(k) for k in ("mp_checkpoint", "mp_embeddings", "evaluation_results")],
        )
        assert r.success, key
    assert defs.resolve_job_def("scaling_job").execute_in_process(instance=instance, partition_key=DS).success
    wh = Warehouse(store.root_path / "warehouse.duckdb", read_only=True)
    pts = wh.read_table("scaling_points", {"dataset": DS})
    mp = pts[pts["study"].eq("mp_fractions") & pts["family"].eq("MP") & pts["task"].eq("knn_f1")]
    assert len(mp) == 9 and mp["n"].nunique() == 3 and set(mp["run"]) == {"MP", "MP s1", "MP s2"}
    assert mp.groupby("n")["run"].nunique().eq(3).all()  # three runs at every size
    laws = wh.read_table("scaling_laws", {"dataset": DS})
    mp_laws = laws[laws["study"].eq("mp_fractions") & laws["family"].eq("MP") & laws["task"].eq("knn_f1")]
    fitted = mp_laws.dropna(subset=["n_points"])  # forms with more parameters than 3 sizes allow carry a reason
    assert "averaged" in set(fitted["form"]) and (fitted["n_points"] == 9).all() and (fitted["n_sizes"] == 3).all()
    assert mp_laws.loc[mp_laws["n_points"].isna(), "reason"].notna().all()
    fc = wh.read_table("scaling_forecasts", {"dataset": DS})
    fc = fc[fc["study"].eq("mp_fractions") & fc["task"].eq("knn_f1")]
    mp_fc, cp_fc = fc[fc["family"].eq("MP")], fc[fc["family"].eq("CP")]
    assert not mp_fc.empty and mp_fc["metric_low"].notna().all()  # six noise degrees of freedom: intervals
    assert (mp_fc["metric_low"] <= mp_fc["metric_high"]).all()
    # CP: flat by construction, one run per size - whatever it forecasts carries no interval
    assert cp_fc["metric_low"].isna().all() and mp_fc["fit_id"].nunique() >= 1
