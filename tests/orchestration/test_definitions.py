"""The code location loads the way the Dagster UI and `dg` load it."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from moa_core.datasets import load_catalogue
from orchestration.definitions import defs
from orchestration.partitions import sync_dataset_partitions

REPO = Path(__file__).resolve().parents[2]


def test_asset_graph_partitions_and_jobs():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "raw_images",
        "cp_profiles",
        "splits",
        "image_store",
        "mp_checkpoint",
        "mp_embeddings",
        "dp_checkpoint",
        "dp_embeddings",
        "evaluation_results",
        "phenoca_profiles",
        "phenoca_results",
        "scaling_laws",
    } <= keys
    fractions = graph.get(dg.AssetKey("phenoca_results")).partitions_def.get_partitions_def_for_dimension("fraction")
    scales = {"100", "75", "50", "25", "10", "ood0", "ood1", "ood3", "ood10", "ood25", "ood30", "ood50"}
    seeds = {f"{k}s{i}" for k in ("100", "75", "50", "25", "10") for i in (1, 2)}  # image models' seed replicates
    assert scales | seeds == set(fractions.get_partition_keys())
    ds_fraction = graph.get(dg.AssetKey("mp_checkpoint")).partitions_def
    assert isinstance(ds_fraction, dg.MultiPartitionsDefinition)
    assert {d.name for d in ds_fraction.partitions_defs} == {"dataset", "fraction"}
    ds = graph.get(dg.AssetKey("raw_images")).partitions_def
    assert isinstance(ds, dg.DynamicPartitionsDefinition) and ds.name == "dataset"
    instance = dg.DagsterInstance.ephemeral()
    assert sync_dataset_partitions(instance, load_catalogue()) and "synthetic_cpjump1" in ds.get_partition_keys(
        dynamic_partitions_store=instance
    )
    assert sync_dataset_partitions(instance, load_catalogue()) == []  # idempotent
    for job in (
        "ingest_job",
        "published_job",
        "train_eval_job",
        "dp_recipe_job",
        "holdout_job",
        "phenoca_inputs_job",
        "phenoca_job",
        "scaling_job",
        "publish_job",
    ):
        assert defs.resolve_job_def(job) is not None
    assert {s.name for s in defs.sensors} == {"catalogue_sensor", "jump_release_sensor"}
    assert [s.name for s in defs.schedules] == ["jump_rerun_schedule"]


def test_workspace_validates_with_the_dagster_cli():
    bin_dir = Path(sys.executable).parent
    out = subprocess.run(
        [str(bin_dir / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed validation" in out.stdout + out.stderr
