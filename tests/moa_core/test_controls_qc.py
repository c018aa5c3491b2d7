"""Negative controls by the field's conventions, and per-channel field QC on real CPJUMP1 fields."""

import glob

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

from moa_core.data.config import ControlSpec, FieldQCConfig
from moa_core.data.controls import control_summary, mark_negative_controls, negative_control_mask
from moa_core.data.field_qc import channel_metrics, flag_fields, metrics_frame
from moa_core.data.sources.base import to_wells_table
from moa_core.errors import NormalizationError, SchemaError
from moa_core.profiles.normalize import standardize_to_controls

CPJUMP1_ORDER = ("Mito", "AGP", "RNA", "ER", "DNA")  # file numbers ch1..ch5


def _wells(**cols):
    n = len(next(iter(cols.values())))
    base = {"Metadata_Plate": ["HOLD1"] * n, "Metadata_Well": [f"A{i:02d}" for i in range(1, n + 1)]}
    return pd.DataFrame({**base, **cols})


def test_controls_are_recognised_by_every_convention():
    df = _wells(
        Metadata_broad_sample=["DMSO", "BRD-1", "BRD-2", "BRD-3", "BRD-4"],
        Metadata_moa=[None, "kinase inhibitor", "", None, "DMSO"],
        Metadata_pert_type=["trt", "trt", "trt", "negcon", "control"],
    )
    out = to_wells_table(df, "my table")
    assert (
        out.set_index("Metadata_Well")["Metadata_moa"].to_dict()
        == {
            "A01": "DMSO",  # broad_sample = DMSO, MOA blank (as JUMP's own tables)
            "A02": "kinase inhibitor",
            "A03": None,
            "A04": "DMSO",  # pert_type = negcon
            "A05": "DMSO",
        }
        or out["Metadata_moa"].isna().sum() == 1
    )
    assert out["Metadata_moa"].eq("DMSO").sum() == 3
    assert list(negative_control_mask(_wells(Metadata_pert_iname=[" dmso ", "x"]))) == [True, False]
    assert list(negative_control_mask(_wells(Metadata_control_type=["NegCon", "poscon"]))) == [True, False]


def test_controls_are_configurable_and_contradictions_are_named():
    df = _wells(Metadata_broad_sample=["vehicle", "BRD-1"], Metadata_moa=[None, "x"])
    assert not negative_control_mask(df).any()
    spec = ControlSpec(values=("vehicle",))
    assert mark_negative_controls(df, spec)["Metadata_moa"].tolist() == ["DMSO", "x"]
    bad = _wells(Metadata_broad_sample=["DMSO"], Metadata_moa=["kinase inhibitor"])
    with pytest.raises(SchemaError, match=r"plate HOLD1 well A01 is a negative control by Metadata_broad_sample"):
        mark_negative_controls(bad, source="wells.csv")


def test_a_plate_without_enough_controls_says_what_each_rule_found():
    df = _wells(Metadata_broad_sample=["DMSO", "BRD-1", "BRD-2"], Metadata_moa=[None, "a", "b"], f=[1.0, 2.0, 3.0])
    with pytest.raises(NormalizationError) as e:
        standardize_to_controls(df, ["f"], control_mask=df["Metadata_moa"].eq("DMSO"))
    msg = str(e.value)
    assert "plate HOLD1 has 0 negative-control" in msg
    assert "Metadata_broad_sample = DMSO: 1" in msg and "Metadata_moa = DMSO: 0" in msg
    assert "absent columns: Metadata_pert_iname" in msg
    assert "Metadata_pert_type = negcon: 0" in control_summary(_wells(Metadata_pert_type=["trt"]))


@pytest.fixture(scope="module")
def real_fields(shared_dir):
    out = []
    for d in sorted(glob.glob(str(shared_dir / "data" / "cpjump1" / "images" / "*"))):
        for prefix in sorted({p.split("/")[-1][:12] for p in glob.glob(d + "/*.tiff")}):
            out.append(np.stack([tifffile.imread(f"{d}/{prefix}-ch{n}sk1fk1fl1.tiff") for n in range(1, 6)]))
    assert len(out) == 4
    return out


def _blank(channel: np.ndarray, seed: int = 0) -> np.ndarray:
    """A never-acquired channel: the real channel's own background pixels (its darkest 20 %), resampled."""
    bg = channel[channel < np.percentile(channel, 20)]
    return np.random.default_rng(seed).choice(bg, size=channel.shape).astype(channel.dtype)


def test_blank_saturated_and_blurred_channels_are_flagged_with_the_channel_named(real_fields):
    rows = []
    for i, f in enumerate(real_fields):  # 4 real fields and their transposes: 8 clean fields on one plate
        for k, g in enumerate((f, np.swapaxes(f, 1, 2))):
            rows.append(({"Metadata_Plate": "HOLD1", "Metadata_Well": f"B{i}{k}", "Metadata_Site": 1}, g))
    blank = real_fields[1].copy()
    blank[0] = _blank(blank[0])  # the DMSO field with its Mito channel blank (as CPJUMP1's A21)
    sat = real_fields[2].copy()
    sat[2, :200] = 65535  # RNA clipped over a band of the field
    blur = real_fields[3].copy()
    blur[3] = ndimage.gaussian_filter(blur[3].astype(np.float32), 4).astype(np.uint16)  # ER out of focus
    for well, g in (("A21", blank), ("C01", sat), ("C02", blur)):
        rows.append(({"Metadata_Plate": "HOLD1", "Metadata_Well": well, "Metadata_Site": 1}, g))
    m = metrics_frame([(k, channel_metrics(f, CPJUMP1_ORDER)) for k, f in rows])
    flags = flag_fields(m, FieldQCConfig(skip=True))
    got = {(r.Metadata_Well, r.channel, r.reason.split(":")[0]) for r in flags.itertuples()}
    assert got == {("A21", "Mito", "blank"), ("C01", "RNA", "saturated"), ("C02", "ER", "out of focus")}
    assert flags["skipped"].all()
    # the clean real fields pass whatever the plate size (no plate statistics with 4 fields)
    clean = metrics_frame([(k, channel_metrics(f, CPJUMP1_ORDER)) for k, f in rows[:8:2]])
    assert flag_fields(clean).empty
