"""The DP recipe: crops centred on nuclei, well means of cell features, user weights loaded safely."""

import numpy as np
import pandas as pd
import pytest
import torch

from moa_core.errors import SchemaError
from moa_core.model.dp_recipe import (
    CENTRE_X,
    CENTRE_Y,
    CellCrops,
    aggregate_cells,
    crop_window,
    load_pretrained_weights,
)
from moa_core.model.network import build_model
from moa_core.model.train import CheckpointError
from moa_core.store import ImageStore, build_image_store

KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def test_crop_window_is_centred_and_shifted_inside_the_field():
    assert crop_window(50, 60, 20, 128, 128) == (40, 50)
    assert crop_window(3, 125, 20, 128, 128) == (0, 108)  # shifted inside, never padded
    assert crop_window(64, 64, 200, 128, 128) == (0, 0)


@pytest.fixture(scope="module")
def store(mini_dataset, tmp_path_factory):
    root, ld, _, _ = mini_dataset
    path = tmp_path_factory.mktemp("dp") / "s.zarr"
    build_image_store(ld.head(4), path, root=root)
    return path, ld.head(4)


def test_cell_crops_cut_the_stored_field_around_each_nucleus(store):
    path, ld = store
    cells = pd.DataFrame({**{k: [ld.iloc[0][k]] * 2 for k in KEYS}, CENTRE_X: [40.0, 100.0], CENTRE_Y: [30.0, 70.0]})
    src = CellCrops(path, cells, 32)
    field = ImageStore(path).read(ld.iloc[0]["Metadata_Plate"], 0).astype(np.float32) / 65535
    np.testing.assert_allclose(src.read(0).numpy(), field[:, 14:46, 24:56])
    np.testing.assert_allclose(src.read(1).numpy(), field[:, 54:86, 84:116])
    assert src.channels == 5 and len(src.fingerprint()) == 64
    mean, sd = src.channel_stats()
    assert mean.shape == (5,) and (sd > 0).all()


def test_cells_without_centres_or_with_nan_centres_are_named(store):
    path, ld = store
    cells = pd.DataFrame({k: [ld.iloc[0][k]] for k in KEYS})
    with pytest.raises(SchemaError, match="re-materialize cp_profiles"):
        CellCrops(path, cells, 32)
    cells[CENTRE_X], cells[CENTRE_Y] = [np.nan], [3.0]
    with pytest.raises(SchemaError, match=f"well {ld.iloc[0]['Metadata_Well']}"):
        CellCrops(path, cells, 32)


def test_aggregate_cells_is_the_well_mean():
    cells = pd.DataFrame({"Metadata_Plate": ["P", "P", "P"], "Metadata_Well": ["A01", "A01", "B02"]})
    w = aggregate_cells(cells, np.array([[1.0, 3.0], [3.0, 5.0], [7.0, 7.0]]))
    assert w[["DP_0000", "DP_0001"]].to_numpy().tolist() == [[2.0, 4.0], [7.0, 7.0]]
    assert w["Metadata_n_cells"].tolist() == [2, 1]


def test_user_weights_load_with_weights_only_and_a_new_head(tmp_path):
    ref = build_model(12)
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    m = load_pretrained_weights(tmp_path / "w.pt", num_classes=5)
    assert m.classifier[-1].out_features == 5
    assert torch.equal(m.features[0][0].weight, ref.features[0][0].weight)
    same = load_pretrained_weights(tmp_path / "w.pt")
    assert torch.equal(same.classifier[-1].weight, ref.classifier[-1].weight)
    bad = ref.state_dict()
    bad["features.0.0.weight"] = torch.zeros(32, 3, 3, 3)  # a 3-channel ImageNet stem
    torch.save(bad, tmp_path / "rgb.pt")
    with pytest.raises(CheckpointError, match="features.0.0.weight has shape"):
        load_pretrained_weights(tmp_path / "rgb.pt")

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    torch.save({"state_dict": Payload()}, tmp_path / "evil.pt", _use_new_zipfile_serialization=True)
    with pytest.raises(CheckpointError, match="nothing was executed"):
        load_pretrained_weights(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_centres_are_rescaled_to_a_downsampled_store(mini_dataset, tmp_path):
    root, ld, _, spec = mini_dataset
    half = spec.image_size // 2
    build_image_store(ld.head(2), tmp_path / "s.zarr", root=root, resolution=half)
    cells = pd.DataFrame({**{k: [ld.iloc[0][k]] for k in KEYS}, CENTRE_X: [60.0], CENTRE_Y: [40.0]})
    crop = CellCrops(tmp_path / "s.zarr", cells, 16).read(0).numpy()
    field = ImageStore(tmp_path / "s.zarr").read(ld.iloc[0]["Metadata_Plate"], 0).astype(np.float32) / 65535
    np.testing.assert_allclose(crop, field[:, 12:28, 22:38])  # centre (20, 30) in store pixels
