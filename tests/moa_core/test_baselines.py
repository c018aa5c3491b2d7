"""The field's CP baselines (moa_core.profiles.baselines) and their ablation, against the libraries they use
and on the real LINCS plate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_core.errors import NormalizationError, SchemaError
from moa_core.evaluation.ablation import ABLATION_METRICS, ablation_table, ablation_wide
from moa_core.profiles.baselines import (
    JUMP_STEPS,
    SPHERIZE_STEPS,
    _spanning_points,
    cell_count_profile,
    harmony_batch_column,
    jump_recipe,
    spherize_recipe,
)
from moa_core.profiles.normalize import feature_columns


def _plates(n_plates=3, wells=60, feats=12, seed=0) -> tuple[pd.DataFrame, np.ndarray]:
    """Wells of ``n_plates`` plates with a plate offset (a batch effect) and 12 controls per plate."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_plates):
        x = rng.normal(size=(wells, feats)) * rng.uniform(0.5, 3, feats) + 4 * rng.normal(size=feats)
        df = pd.DataFrame(x, columns=[f"Cells_F{i:02d}" for i in range(feats)])
        df.insert(0, "Metadata_Well", [f"W{i:03d}" for i in range(wells)])
        df.insert(0, "Metadata_Plate", f"P{p}")
        df.insert(2, "Metadata_moa", ["DMSO"] * 12 + [f"moa{i % 4}" for i in range(wells - 12)])
        df.insert(3, "Metadata_Count_Cells", rng.integers(200, 900, wells))
        rows.append(df)
    df = pd.concat(rows, ignore_index=True)
    return df, df["Metadata_moa"].eq("DMSO").to_numpy()


def test_mad_robustize_is_pycytominers_per_plate_on_the_controls():
    from pycytominer import normalize

    df, ctrl = _plates()
    feats = [c for c in feature_columns(df) if c != "Metadata_Count_Cells"]
    rec = jump_recipe(df, feats, ctrl)
    assert list(rec.steps) == list(JUMP_STEPS)
    got = rec.steps["MAD robustize"]
    for _, part in df.groupby("Metadata_Plate"):
        ref = normalize(
            part, features=feats, samples="Metadata_moa == 'DMSO'", method="mad_robustize", mad_robustize_epsilon=0
        )
        np.testing.assert_allclose(got.loc[part.index, feats].to_numpy(), ref[feats].to_numpy(), atol=1e-9)


def test_harmony_reduces_the_plate_effect_and_is_skipped_on_one_plate():
    df, ctrl = _plates()
    feats = [c for c in feature_columns(df) if c != "Metadata_Count_Cells"]
    df[feats] += df["Metadata_Plate"].map({"P0": 0.0, "P1": 1.5, "P2": -1.5}).to_numpy()[:, None]
    rec = jump_recipe(df, feats, ctrl)
    before, after = rec.steps["feature selection"], rec.steps["Harmony"]
    sel = feature_columns(after)

    def spread(t):  # distance between plate centroids relative to the within-plate SD
        c = t.groupby("Metadata_Plate")[sel].mean().to_numpy()
        return np.linalg.norm(c - c.mean(0), axis=1).mean() / t[sel].std().mean()

    assert harmony_batch_column(before) == "Metadata_Plate"
    assert spread(after) < spread(before)
    one = df[df["Metadata_Plate"].eq("P0")]
    rec1 = jump_recipe(one, feats, one["Metadata_moa"].eq("DMSO").to_numpy())
    assert "Harmony" not in rec1.steps and rec1.report[-1]["skipped"] == "one batch"


def test_variance_filter_drops_a_feature_constant_over_a_plates_controls():
    df, ctrl = _plates()
    feats = [c for c in feature_columns(df) if c != "Metadata_Count_Cells"]
    df.loc[ctrl & df["Metadata_Plate"].eq("P1").to_numpy(), "Cells_F03"] = 7.0
    rec = jump_recipe(df, feats, ctrl)
    assert "Cells_F03" not in rec.steps["variance filter"].columns and rec.report[0]["dropped"] >= 1


def test_spherized_controls_are_white_across_plates():
    df, ctrl = _plates(feats=40)  # 36 controls on 3 plates: rank 33 < 40 features, which pycytominer refuses
    feats = [c for c in feature_columns(df) if c != "Metadata_Count_Cells"]
    rec = spherize_recipe(df, feats, ctrl)
    assert list(rec.steps) == list(SPHERIZE_STEPS)
    out = rec.output
    sel = feature_columns(out)
    z = out.loc[ctrl, sel].to_numpy()
    sv = np.linalg.svd(z - z.mean(0), compute_uv=False)
    r = int((sv > 1e-3 * sv[0]).sum())
    assert r == ctrl.sum() - 3 and np.ptp(sv[:r]) / sv[0] < 1e-4  # every spanned direction equally scaled
    pts = _spanning_points(rec.steps["feature selection"].loc[ctrl, sel].to_numpy())
    x = rec.steps["feature selection"].loc[ctrl, sel].to_numpy()
    np.testing.assert_allclose(np.cov(pts.T, ddof=0), np.cov(x.T, ddof=0), atol=1e-6)  # float32 features


def test_cell_count_profile_correlates_wells_by_how_close_their_counts_are():
    df, ctrl = _plates()
    rec = cell_count_profile(df, ctrl)
    out = rec.output
    z = out[feature_columns(out)].to_numpy()
    assert z.shape[1] == 25
    count = df["Metadata_Count_Cells"].to_numpy()
    p0 = np.flatnonzero(df["Metadata_Plate"].eq("P0"))
    a = p0[np.argmin(count[p0])]
    pcc = np.array([np.corrcoef(z[a], z[b])[0, 1] for b in p0])
    gap = np.abs(count[p0] - count[a])
    assert pd.Series(pcc).corr(pd.Series(gap), method="spearman") < -0.8
    with pytest.raises(SchemaError, match="count columns"):
        cell_count_profile(df.drop(columns="Metadata_Count_Cells"), ctrl)
    flat = df.assign(Metadata_Count_Cells=500)
    with pytest.raises(NormalizationError, match="constant"):
        cell_count_profile(flat, ctrl)


def test_bad_input_is_named():
    df, ctrl = _plates()
    feats = [c for c in feature_columns(df) if c != "Metadata_Count_Cells"]
    bad = df.copy()
    bad.loc[70, "Cells_F05"] = np.nan
    with pytest.raises(SchemaError, match=r"Cells_F05.*plate P1 well W010"):
        jump_recipe(bad, feats, ctrl)
    no_ctrl = ctrl & ~df["Metadata_Plate"].eq("P2").to_numpy()
    with pytest.raises(NormalizationError, match=r"plate\(s\) P2 have 0 negative-control"):
        spherize_recipe(df, feats, no_ctrl)


@pytest.fixture(scope="module")
def lincs_plate(shared_dir):
    from moa_core.data.sources.base import to_wells_table
    from moa_core.profiles.published import annotate_lincs, read_profile_file
    from moa_core.splits import well_holdout_split

    lincs = shared_dir / "data" / "lincs"
    df = read_profile_file(lincs / "SQ00015054_normalized_feature_select.csv.gz")
    df = annotate_lincs(df, lincs / "repurposing_info_external_moa_map_resolved.tsv")
    df = df[df["Metadata_moa"].notna()].reset_index(drop=True)
    splits, _ = well_holdout_split(to_wells_table(df, "LINCS SQ00015054"), seed=0)
    return df, splits


def test_ablation_on_the_real_lincs_plate(lincs_plate):
    """The real LINCS plate (all doses; 454 published features, no Count feature, one plate): every step of
    both recipes is scored on the same wells, Harmony is skipped (one batch)."""
    from moa_core.profiles.normalize import standardize_to_controls

    df, splits = lincs_plate
    feats = feature_columns(df)
    ctrl = df["Metadata_moa"].eq("DMSO").to_numpy()
    jump, sph = jump_recipe(df, feats, ctrl), spherize_recipe(df, feats, ctrl)
    assert list(jump.steps) == list(JUMP_STEPS[:-1])
    cp, _ = standardize_to_controls(df, feats, control_mask=ctrl)
    tab = ablation_table(
        [jump, sph], splits, references={"CP": cp}, n_boot=0, include_knn_curves=False, run_logistic=False
    )
    wide = ablation_wide(tab)
    assert list(zip(wide["recipe"], wide["step"])) == [("reference", "CP")] + [
        (r.name, s) for r in (jump, sph) for s in r.steps
    ]
    labels = [m[3] for m in ABLATION_METRICS]
    assert set(labels) <= set(wide.columns)
    f1 = wide["k-NN best weighted F1"]
    assert f1.between(0, 1).all() and f1.nunique() > 1  # the steps change what the analyses see
    # every metric is defined on this plate except where the small test set makes an odds ratio infinite
    assert wide[[c for c in labels if "odds" not in c]].notna().all().all()
