"""A user's own plate of real CPJUMP1 fields on disk, as a new user brings it: negative controls marked the
way JUMP's tables mark them (``Metadata_broad_sample = DMSO``, MOA blank), a field whose Mito channel is
blank (as CPJUMP1's dexamethasone well A21), and MOAProfiler's published-checkpoint format.

Through the real Dagster definitions: ``ingest_job`` recognises the controls and standardizes CP to them,
field QC names the blank channel and skips the field, and ``paper_weights_job`` embeds the full 1080² fields
with a checkpoint saved exactly as upstream saves one (efficientnet_pytorch 0.7.1, DataParallel's
``module.`` prefix), giving what efficientnet_pytorch's own forward gives on upstream's input.
"""

from __future__ import annotations

import hashlib

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")

from moa_core.model.pretrained import STUDY_CHANNEL_ORDER, upstream_channel_stats, upstream_input  # noqa: E402
from moa_core.profiles.normalize import feature_columns, standardize_to_controls  # noqa: E402
from moa_core.storage import partition_table  # noqa: E402
from orchestration.definitions import build_definitions  # noqa: E402
from orchestration.partitions import sync_dataset_partitions  # noqa: E402
from orchestration.resources import MoaStore  # noqa: E402
from tests.support.upstream_model import input_sensitive_upstream  # noqa: E402

DS = "my_plate"
PLATE = "HOLD1"
FILE_NUMBER = {"Mito": 1, "AGP": 2, "RNA": 3, "ER": 4, "DNA": 5}  # CPJUMP1 ch1..ch5
PROJECT_ORDER = ("DNA", "ER", "RNA", "AGP", "Mito")


def _real(shared_dir, compound: str, rc: str) -> np.ndarray:
    """A real field as ``(5, H, W)`` uint16 in the project's channel order."""
    d = shared_dir / "data" / "cpjump1" / "images" / compound
    return np.stack([tifffile.imread(d / f"{rc}f05p01-ch{FILE_NUMBER[s]}sk1fk1fl1.tiff") for s in PROJECT_ORDER])


def _blank(channel: np.ndarray) -> np.ndarray:
    bg = channel[channel < np.percentile(channel, 20)]  # the channel's own camera background, resampled
    return np.random.default_rng(0).choice(bg, size=channel.shape).astype(np.uint16)


@pytest.fixture(scope="module")
def user_plate(shared_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("user_store")
    folder = root / "plates"
    dmso = _real(shared_dir, "DMSO", "r04c14")
    dexa = dmso.copy()
    dexa[PROJECT_ORDER.index("Mito")] = _blank(dmso[PROJECT_ORDER.index("Mito")])
    wells = {  # well -> (field, compound, MOA as a user's table gives it)
        "D14": (dmso, "DMSO", None),
        "D15": (np.ascontiguousarray(np.swapaxes(dmso, 1, 2)), "DMSO", None),
        "N09": (_real(shared_dir, "AMG900", "r14c09"), "BRD-K66898851", "Aurora kinase inhibitor"),
        "D08": (_real(shared_dir, "FK-866", "r04c08"), "BRD-K22134346", "NAMPT inhibitor"),
        "L09": (_real(shared_dir, "FK-866", "r12c09"), "BRD-K22134346", "NAMPT inhibitor"),
        "A21": (dexa, "BRD-K09914935", "glucocorticoid receptor agonist"),
    }
    rows, ann = [], []
    (folder / PLATE).mkdir(parents=True)
    for well, (field, compound, moa) in wells.items():
        row = {"Metadata_Plate": PLATE, "Metadata_Well": well, "Metadata_Site": 1}
        for stain, img in zip(PROJECT_ORDER, field):
            name = f"{well}_ch{FILE_NUMBER[stain]}.tiff"
            tifffile.imwrite(folder / PLATE / name, img, compression="lzw")
            row[f"FileName_Orig{stain}"], row[f"PathName_Orig{stain}"] = name, f"{PLATE}/"
        rows.append(row)
        ann.append(
            {"Metadata_Plate": PLATE, "Metadata_Well": well, "Metadata_broad_sample": compound, "Metadata_moa": moa}
        )
    pd.DataFrame(rows).to_csv(folder / "load_data.csv", index=False)
    pd.DataFrame(ann).to_csv(folder / "wells.csv", index=False)

    # a checkpoint as upstream writes one: efficientnet_pytorch's 5-channel B0 under DataParallel
    raw = torch.from_numpy(np.stack([f for f, _, _ in wells.values()]).astype(np.float32))
    order = STUDY_CHANNEL_ORDER["JUMP1"]
    net = input_sensitive_upstream(upstream_input(raw, order, *upstream_channel_stats(list(raw), order)))
    ckpt = root / "weights" / "model_best.dat"
    ckpt.parent.mkdir()
    torch.save(torch.nn.DataParallel(net).state_dict(), ckpt)
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    (root / "catalogue.toml").write_text(
        f"""
[datasets.{DS}]
kind = "images"
source = "local"
path = "plates"
load_data = ["load_data.csv"]
annotations = "wells.csv"
features = {{ texture = false }}
field_qc = {{ skip = true }}
paper_weights = {{ path = "weights/model_best.dat", sha256 = "{sha}", study = "JUMP1", batch_size = 2 }}
"""
    )
    store = MoaStore(root=str(root), shared_dir=str(shared_dir), n_workers=1)
    defs = build_definitions(store)
    instance = dg.DagsterInstance.ephemeral()
    sync_dataset_partitions(instance, [DS])
    results = {
        job: defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=DS)
        for job in ("ingest_job", "paper_weights_job")
    }
    return store, results, net, wells


def test_controls_marked_as_jump_marks_them_are_the_dmso_wells(user_plate):
    store, results, _, _ = user_plate
    assert results["ingest_job"].success
    wh = store.warehouse()
    wells = wh.read_table(partition_table("wells", DS)).set_index("Metadata_Well")
    assert sorted(wells.index[wells["Metadata_moa"].eq("DMSO")]) == ["D14", "D15"]
    cp = wh.read_table(partition_table("cp_embeddings", DS))
    dmso = cp[cp["Metadata_moa"].eq("DMSO")]
    assert len(dmso) == 2 and np.abs(dmso[feature_columns(cp)].to_numpy().mean(0)).max() < 1e-4


def test_the_blank_mito_field_is_flagged_with_its_channel_and_skipped(user_plate):
    store, _, _, _ = user_plate
    wh = store.warehouse()
    qc = wh.read_table("field_qc", {"dataset": DS})
    blank = qc[qc["reason"].str.startswith("blank")]
    assert blank[["Metadata_Well", "channel"]].values.tolist() == [["A21", "Mito"]]
    assert blank["skipped"].all()
    assert "A21" not in set(wh.read_table(partition_table("cp_profiles", DS))["Metadata_Well"])
    assert "A21" not in set(wh.read_table(partition_table("mp_paper_embeddings", DS))["Metadata_Well"])


def test_paper_weights_embed_full_fields_as_efficientnet_pytorch_does(user_plate):
    store, results, net, wells = user_plate
    assert results["paper_weights_job"].success
    mat = results["paper_weights_job"].asset_materializations_for_node("mp_paper_embeddings")[0].metadata
    assert mat["resolution"].value == 1080 and mat["fields"].value == 5 and mat["study"].value == "JUMP1"
    got = store.warehouse().read_table(partition_table("mp_paper_embeddings", DS)).set_index("Metadata_Well")

    # the reference: efficientnet_pytorch's own forward on upstream's input of the same (unskipped) fields
    keep = [w for w in sorted(wells) if w != "A21"]
    raw = torch.from_numpy(np.stack([wells[w][0] for w in keep]).astype(np.float32))
    order = STUDY_CHANNEL_ORDER["JUMP1"]
    mean, std = upstream_channel_stats(list(raw), order)
    np.testing.assert_allclose(mat["channel_mean"].value, mean, atol=1e-6)
    with torch.inference_mode():
        ref = torch.cat([net.extract_features(upstream_input(raw[i : i + 1], order, mean, std)) for i in range(5)])
        ref = torch.nn.functional.adaptive_avg_pool2d(ref, 1).flatten(1).numpy()
    cols = feature_columns(got.reset_index())
    ref_wells = pd.DataFrame(ref, columns=[f"MP_{i:04d}" for i in range(ref.shape[1])])
    ref_wells.insert(0, "Metadata_Well", keep)
    ref_wells.insert(0, "Metadata_Plate", PLATE)
    ref_std, _ = standardize_to_controls(
        ref_wells,
        [c for c in ref_wells.columns if c.startswith("MP_")],
        control_mask=ref_wells["Metadata_Well"].isin(["D14", "D15"]),
    )
    ref_std = ref_std.set_index("Metadata_Well")
    # standardized by 2 DMSO wells: compare the features whose DMSO SD is not tiny (it amplifies float noise)
    ref_cols = [c for c in ref_std.columns if c.startswith("MP_")]
    sd = ref_wells.loc[ref_wells["Metadata_Well"].isin(["D14", "D15"]), ref_cols].std(ddof=0)
    real = sorted(sd.index[sd > 1e-3])
    assert len(real) >= 100 and set(real) <= set(cols)
    diff = np.abs(got.loc[keep, real].to_numpy() - ref_std.loc[keep, real].to_numpy())
    assert diff.max() < 1e-2, diff.max()


def test_baselines_a_plate_cannot_have_are_named_and_do_not_fail_ingest(user_plate):
    """D14 and D15 hold one field (D15 transposed): the same cell count, so the count has no spread over the
    controls; and 5 wells are too few for the paper's analyses. Both are said, neither fails ingest_job."""
    _, results, _, _ = user_plate
    res = results["ingest_job"]
    base = res.asset_materializations_for_node("cp_baselines")[0].metadata
    assert "constant over the controls" in base["not_computed"].value["cell count"]
    assert set(base["features_out"].value) == {"CP (JUMP recipe)", "CP spherized"}
    abl = res.asset_materializations_for_node("cp_ablation")[0].metadata
    assert "evaluable test well" in abl["skipped"].value
