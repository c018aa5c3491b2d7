"""The Pheno-CA assets materialize through Dagster on a tiny profile dataset, and the scaling laws follow."""

import dagster as dg
import numpy as np
import pytest

from moa_core.storage import Warehouse
from orchestration.definitions import build_definitions
from orchestration.partitions import multi_key, sync_dataset_partitions
from orchestration.resources import MoaStore

DS = "tiny_profiles"
SCALES = ("ood0", "ood10", "ood25", "100")
ENTRY = f"""
[datasets.{DS}]
kind = "synthetic_profiles"

[datasets.{DS}.profile_spec]
n_annotated_compounds = 120
n_ood_compounds = 300
n_moas = 20
n_targets = 15
n_crispr_genes = 10
n_features = 60
n_sources = 2
batches_per_source = 1

[datasets.{DS}.phenoca]
depths = [1]
widths = [32]
epochs = 2
probe_epochs = 3
n_boot = 20
num_threads = 2
invariance_weight = 0.5
"""


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    root = tmp_path_factory.mktemp("phenoca")
    (root / "catalogue.toml").write_text(ENTRY)
    store = MoaStore(root=str(root), n_workers=1)
    defs = build_definitions(store)
    instance = dg.DagsterInstance.ephemeral()
    sync_dataset_partitions(instance, [DS])
    results = [defs.resolve_job_def("phenoca_inputs_job").execute_in_process(instance=instance, partition_key=DS)]
    for s in SCALES:
        results.append(
            defs.resolve_job_def("phenoca_job").execute_in_process(instance=instance, partition_key=multi_key(DS, s))
        )
        if s == SCALES[-2]:  # the laws of the three smaller scales: their forecasts go into the ledger
            results.append(defs.resolve_job_def("scaling_job").execute_in_process(instance=instance, partition_key=DS))
    results.append(defs.resolve_job_def("scaling_job").execute_in_process(instance=instance, partition_key=DS))
    return store, results


def test_phenoca_assets_write_results_for_every_scale(materialized):
    store, results = materialized
    assert all(r.success for r in results)
    wh = Warehouse(store.root_path / "warehouse.duckdb", read_only=True)
    res = wh.read_table("phenoca_results", {"dataset": DS})
    assert set(res["fraction"]) == set(SCALES)
    assert {"ibp", "ibp_invariant", "task", "none"} <= set(res["supervision"])
    assert {"moa", "target", "molecule", "discovery"} <= set(res["task"])
    assert {"replicate", "novel"} == set(res["split"])
    assert not res[(res["task"] == "molecule")]["split"].eq("novel").any()  # no identity class for novel compounds
    # more OOD molecules, more training molecules for IBP; annotated ones the same
    n = res.groupby("fraction")["n_ood_compounds"].max()
    assert n["ood0"] == 0 < n["ood10"] < n["ood25"] < n["100"]
    top10 = res[(res["metric"] == "top10") & res["value"].notna()]
    assert ((top10["value"] >= 0) & (top10["value"] <= 1)).all()


def test_scaling_laws_are_fitted_to_the_ood_curves(materialized):
    store, _ = materialized
    wh = Warehouse(store.root_path / "warehouse.duckdb", read_only=True)
    pts = wh.read_table("scaling_points", {"dataset": DS})
    ibp = pts[(pts["study"] == "phenoca_ood") & (pts["family"] == "IBP") & (pts["task"] == "moa_top10")]
    assert ibp["n"].nunique() == 4
    laws = wh.read_table("scaling_laws", {"dataset": DS})
    curve = laws[(laws["study"] == "phenoca_ood") & (laws["family"] == "IBP") & (laws["task"] == "moa_top10")]
    assert {"linear", "log_linear", "power_floor", "m4", "broken_power"} <= set(curve["form"])
    ranked = curve[curve["rank"].notna()]  # back-tested: fitted on the 3 smaller sizes, scored on the largest
    assert len(ranked) >= 2 and sorted(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert curve[curve["rank"].isna()]["reason"].notna().all()  # a form that could not be back-tested says why
    reliable = curve["reliable"].astype(bool)
    assert reliable.all() or curve.loc[~reliable, "reason"].str.contains("no reliable extrapolation").all()
    assert np.isfinite(curve["backtest_error"].dropna()).all()


def test_an_unparsable_or_image_only_fraction_fails_clearly(materialized):
    store, _ = materialized
    from moa_core.datasets import data_scale, replicate_fraction
    from moa_core.errors import SchemaError

    with pytest.raises(SchemaError, match="unparsable fraction key 'ood7x'"):
        data_scale("ood7x")
    with pytest.raises(SchemaError, match="image models"):
        replicate_fraction("ood25")
    # a seed replicate is an image model's run: the zoo refuses it before training anything
    defs = build_definitions(store)
    instance = dg.DagsterInstance.ephemeral()
    sync_dataset_partitions(instance, [DS])
    res = defs.resolve_job_def("phenoca_job").execute_in_process(
        instance=instance, partition_key=multi_key(DS, "50s1"), raise_on_error=False
    )
    assert not res.success
    msg = " ".join(str(e.event_specific_data.error) for e in res.all_events if e.is_step_failure)
    assert "'50s1' is a seed replicate" in msg and "scale key '50'" in msg
    assert not any(e.is_step_success and "phenoca_member" in e.step_key for e in res.all_events)


def test_the_zoo_fans_out_one_step_per_architecture_into_the_same_table(materialized):
    """zoo_group_size 1: one phenoca_member step per architecture, merged into the table of one step."""
    store, _ = materialized
    defs = build_definitions(store)
    instance = dg.DagsterInstance.ephemeral()
    sync_dataset_partitions(instance, [DS])
    wh = Warehouse(store.root_path / "warehouse.duckdb", read_only=True)
    tables, steps = [], []
    for size in (0, 1):
        cfg = {"depths": [1, 2], "zoo_group_size": size}
        res = defs.resolve_job_def("phenoca_job").execute_in_process(
            instance=instance,
            partition_key=multi_key(DS, "ood0"),
            run_config={"ops": {"phenoca_results": {"ops": {"phenoca_zoo": {"config": cfg}}}}},
        )
        assert res.success
        steps.append(sorted(e.step_key for e in res.all_events if e.is_step_success and "phenoca_member" in e.step_key))
        tables.append(wh.read_table("phenoca_results", {"dataset": DS, "fraction": "ood0"}))
    assert steps[0] == ["phenoca_results.phenoca_member[zoo]"]
    assert steps[1] == ["phenoca_results.phenoca_member[d1w32]", "phenoca_results.phenoca_member[d2w32]"]
    import pandas as pd

    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert set(tables[1]["model"]) >= {"resmlp_d1_w32", "resmlp_d2_w32", "profiles"}
    assert not list((store.artifact_dir(DS, "ood0") / "phenoca_members").glob("*.parquet"))  # merged, removed


def test_the_ledger_scores_the_smaller_scales_forecasts_against_the_larger_one(materialized):
    store, results = materialized
    wh = Warehouse(store.root_path / "warehouse.duckdb", read_only=True)
    fc = wh.read_table("scaling_forecasts", {"dataset": DS})
    ood = fc[fc["study"] == "phenoca_ood"]
    # every fitted curve recorded two fits: three scales (kept, the record), then four (new)
    per_curve = ood.groupby(["task", "family"])["n_sizes"].unique()
    assert per_curve.map(lambda v: sorted(v) == [3, 4]).any()
    led = wh.read_table("scaling_ledger", {"dataset": DS})
    pts = wh.read_table("scaling_points", {"dataset": DS})
    early = led[led["study"] == "phenoca_ood"]
    assert not early.empty and (early["decades"] > 0).all()
    for r in early.itertuples():  # scored against the point the 100 % scale added, past the early fit's data
        curve = pts[(pts["study"] == r.study) & (pts["task"] == r.task) & (pts["family"] == r.family)]
        assert r.n == curve["n"].max() > r.n_max_observed
        assert r.observed == pytest.approx(curve[curve["n"] == r.n]["metric"].max())
        assert r.error == pytest.approx(r.predicted - r.observed)
        if not np.isnan(r.low):
            assert r.inside == (r.low <= r.observed <= r.high)
    # the early fit forecast the 100 % scale at its exact size (scale_counts, before it was trained): scored there,
    # not interpolated between grid sizes
    assert early["scale"].eq("100").all()
    first = ood[ood["n_sizes"] == 3]
    at_100 = first[first["scale"] == "100"]
    assert not at_100.empty and set(first["scale"].dropna()) - {""} <= {"ood30", "ood50", "100"}
    res = wh.read_table("phenoca_results", {"dataset": DS})
    assert set(at_100["n"]) == set(res[res["fraction"] == "100"]["n_train_compounds"])
    meta = results[-1].asset_materializations_for_node("scaling_laws")[0].metadata
    assert meta["forecasts_scored"].value == len(led)
