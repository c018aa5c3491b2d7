"""The training entry point: one process in-process, and torchrun DDP with gloo on 2 CPU processes."""

import pytest
import torch

from moa_core.model.launch import TrainSpec, launch_training, write_fields
from moa_core.model.train import CHECKPOINT_FORMAT, load_checkpoint, safe_load
from moa_core.store import build_image_store

KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


@pytest.fixture(scope="module")
def store_and_fields(mini_dataset, tmp_path_factory):
    root, ld, wells, _ = mini_dataset
    path = tmp_path_factory.mktemp("launch") / "s.zarr"
    build_image_store(ld, path, root=root)
    f = ld[KEYS].merge(
        wells[["Metadata_Plate", "Metadata_Well", "Metadata_moa"]], on=["Metadata_Plate", "Metadata_Well"]
    )
    classes = sorted(f["Metadata_moa"].unique())
    f["label"] = f["Metadata_moa"].map({c: i for i, c in enumerate(classes)})
    f["group"] = f["Metadata_Plate"] + "/" + f["Metadata_Well"]
    return path, f.sort_values(KEYS).reset_index(drop=True), classes


def _spec(tmp_path, store, fields, classes, **cfg):
    config = {
        "epochs": 2,
        "batch_size": 8,
        "lr": 1e-3,
        "optimizer": "adamw",
        "input_size": 32,
        "device": "cpu",
        "num_threads": 1,
        "samples_per_epoch": 32,
        **cfg,
    }
    tr, va = fields.iloc[::2], fields.iloc[1::2]
    return TrainSpec(
        store=str(store),
        train_fields=write_fields(tr, tmp_path / "tr.parquet"),
        val_fields=write_fields(va, tmp_path / "va.parquet"),
        classes=classes,
        config=config,
        checkpoint=str(tmp_path / "c.pt"),
        exclude_class=classes.index("DMSO"),
    )


def test_one_process_entry_point_streams_from_the_store_with_workers(tmp_path, store_and_fields):
    store, fields, classes = store_and_fields
    seen = []
    res = launch_training(
        _spec(tmp_path, store, fields, classes, num_workers=2), tmp_path / "spec.json", on_epoch=seen.append
    )
    assert [r["epoch"] for r in seen] == [1, 2] and res.sha256
    model, ckpt = load_checkpoint(res.checkpoint_path, expected_sha256=res.sha256)
    assert ckpt["world_size"] == 1 and ckpt["classes"] == classes


def test_ddp_launch_on_cpu_with_gloo_and_2_processes(tmp_path, store_and_fields):
    """torchrun --nproc_per_node 2 on the same entry point: one checkpoint, written by rank 0, with the history."""
    store, fields, classes = store_and_fields
    seen = []
    res = launch_training(
        _spec(tmp_path, store, fields, classes), tmp_path / "spec.json", nproc=2, on_epoch=seen.append
    )
    assert [r["epoch"] for r in seen] == [1, 2]  # rank 0's epoch lines reached the caller
    ckpt = safe_load(res.checkpoint_path, expected_format=CHECKPOINT_FORMAT, expected_sha256=res.sha256)
    assert ckpt["world_size"] == 2 and len(ckpt["history"]) == 2
    assert not (tmp_path / "c.resume.pt").exists()
    assert sorted(p.name for p in tmp_path.glob("c*.pt")) == ["c.pt"]  # no second rank wrote anything
    # the training loss of each epoch was reduced over both ranks' shares: 32 draws in all
    model, _ = load_checkpoint(res.checkpoint_path)
    with torch.no_grad():
        assert model(torch.zeros(2, 5, 32, 32)).shape == (2, len(classes))


def test_ddp_failure_is_reported_with_the_workers_output(tmp_path, store_and_fields):
    store, fields, classes = store_and_fields
    spec = _spec(tmp_path, store, fields, classes, batch_size=7)  # not a multiple of 2 processes
    with pytest.raises(RuntimeError, match="not a multiple of the 2 processes"):
        launch_training(spec, tmp_path / "spec.json", nproc=2)


def test_resume_with_another_process_count_refuses_to_mix(tmp_path, store_and_fields):
    store, fields, classes = store_and_fields
    spec = _spec(tmp_path, store, fields, classes, epochs=2)

    class Stop(Exception):
        pass

    def stop(rec):
        raise Stop

    with pytest.raises(Stop):
        launch_training(spec, tmp_path / "spec.json", on_epoch=stop)
    assert (tmp_path / "c.resume.pt").is_file()
    with pytest.raises(RuntimeError, match="refusing to mix"):
        launch_training(spec, tmp_path / "spec.json", nproc=2)


def test_killed_store_run_with_workers_resumes_to_the_same_weights(tmp_path, store_and_fields):
    """Streaming from the store with 2 DataLoader workers: kill after epoch 1, resume, equal an uninterrupted run."""
    store, fields, classes = store_and_fields
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref_dir.mkdir()
    run_dir.mkdir()
    cfg = {"epochs": 3, "num_workers": 2, "dropout": 0.2, "color_jitter": 0.1, "crop_size": 24}
    ref = launch_training(_spec(ref_dir, store, fields, classes, **cfg), ref_dir / "spec.json")

    class Kill(Exception):
        pass

    def kill_after_1(rec):
        if rec["epoch"] == 1:
            raise Kill

    spec = _spec(run_dir, store, fields, classes, **cfg)
    with pytest.raises(Kill):
        launch_training(spec, run_dir / "spec.json", on_epoch=kill_after_1)
    res = launch_training(spec, run_dir / "spec.json")
    assert res.resumed_from_epoch == 1
    a, b = load_checkpoint(ref.checkpoint_path)[1], load_checkpoint(res.checkpoint_path)[1]
    assert a["best_epoch"] == b["best_epoch"]
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    strip = lambda hs: [{k: v for k, v in h.items() if k != "seconds"} for h in hs]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
