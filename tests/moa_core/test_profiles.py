import numpy as np
import pandas as pd
import pytest

from moa_core.data.image_io import CHANNEL_MAPS, read_field
from moa_core.errors import NormalizationError, SchemaError
from moa_core.profiles.features import FeatureConfig, aggregate_wells, measure_field, single_cell_profiles
from moa_core.profiles.normalize import drop_invalid_features, feature_columns, standardize_to_controls
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
    assert {"Cells_Intensity_MeanIntensity_ER", "Nuclei_Intensity_MeanIntensity_DNA",
            "Cytoplasm_Intensity_MeanIntensity_Mito", "Cells_Correlation_Pearson_DNA_ER"} <= set(feats)
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
            rows.append({"Metadata_Plate": p, "Metadata_Well": f"A{i + 1:02d}",
                         "Metadata_moa": "DMSO" if i < 4 else "x",
                         "f1": rng.normal(5 if p == "P1" else 9, 2), "f2": rng.normal(0, 1), "const": 1.0})
    return pd.DataFrame(rows)


def test_standardize_matches_pycytominer_per_plate():
    from pycytominer import normalize

    df = _plates()
    ours, dropped = standardize_to_controls(df, ["f1", "f2"], control_mask=df["Metadata_moa"].eq("DMSO"))
    assert dropped == []
    for p, grp in df.groupby("Metadata_Plate"):
        ref = normalize(grp, features=["f1", "f2"], meta_features=["Metadata_Plate", "Metadata_Well", "Metadata_moa"],
                        samples="Metadata_moa == 'DMSO'", method="standardize")
        np.testing.assert_allclose(ours.loc[grp.index, ["f1", "f2"]].to_numpy(), ref[["f1", "f2"]].to_numpy(),
                                   rtol=1e-5, atol=1e-5)
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


def test_drop_invalid_features_counts_and_names():
    df = _plates()
    df.loc[3, "f2"] = np.inf
    kept, rep = drop_invalid_features(df, ["f1", "f2", "const"])
    assert kept == ["f1"] and rep.non_finite == ["f2"] and rep.constant == ["const"]
    assert rep.as_metadata()["features_kept"] == 1
