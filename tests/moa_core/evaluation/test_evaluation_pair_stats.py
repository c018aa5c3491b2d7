"""Intra/inter-MOA PCC, three groups with z-tests, plate effect: hand-computed toys + LINCS sanity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from moa_core.evaluation import (
    batch_effect,
    batch_effect_from_similarity,
    intra_inter_from_similarity,
    intra_inter_moa,
    three_group_pcc,
    three_groups_from_similarity,
    z_test,
)


def _sym(n, pairs):
    s = np.eye(n)
    for (i, j), v in pairs.items():
        s[i, j] = s[j, i] = v
    return s


def test_intra_inter_toy():
    sim = _sym(4, {(0, 1): 0.9, (2, 3): 0.15, (0, 2): 0.1, (0, 3): 0.2, (1, 2): 0.3, (1, 3): 0.4})
    r = intra_inter_from_similarity(sim, np.array([0, 0, 1, 1]))
    assert r.intra_mean == pytest.approx(0.525)
    assert r.intra_sd == pytest.approx(0.75 / math.sqrt(2))
    assert r.n_intra == 2 and r.n_inter == 4
    assert r.inter_mean == pytest.approx(0.25)
    assert r.inter_sd == pytest.approx(np.std([0.1, 0.2, 0.3, 0.4], ddof=1))
    assert r.delta == pytest.approx(0.275)
    t = r.to_results("M")
    assert t.loc[t["metric"] == "delta", "value"].item() == pytest.approx(0.275)


def test_z_test_hand_computed():
    z, p = z_test(1.0, 1.0, 4, 0.0, 1.0, 4)
    assert z == pytest.approx(math.sqrt(2))
    assert p == pytest.approx(2 * norm.sf(math.sqrt(2)))
    assert p == pytest.approx(0.157299207, rel=1e-6)
    assert all(math.isnan(v) for v in z_test(1.0, 1.0, 1, 0.0, 1.0, 4))
    assert z_test(1.0, 0.0, 3, 0.0, 0.0, 3) == (math.inf, 0.0)
    assert all(math.isnan(v) for v in z_test(1.0, 0.0, 3, 1.0, 0.0, 3))


def test_three_groups_toy():
    # 0:c1/A 1:c1/A 2:c2/A 3:c3/B 4:c3/B 5:c4/B
    cpd = np.array([0, 0, 1, 2, 2, 3])
    moa = np.array([0, 0, 0, 1, 1, 1])
    rng = np.random.default_rng(0)
    vals = {(i, j): float(rng.uniform(-1, 1)) for i in range(6) for j in range(i + 1, 6)}
    sim = _sym(6, vals)
    r = three_groups_from_similarity(sim, cpd, moa)
    g1 = [vals[(0, 1)], vals[(3, 4)]]
    g2 = [vals[(0, 2)], vals[(1, 2)], vals[(3, 5)], vals[(4, 5)]]
    g3 = [v for (i, j), v in vals.items() if moa[i] != moa[j]]
    s = r.summary.set_index("group")
    for name, g in zip(["same_compound", "diff_compound_same_moa", "diff_moa"], [g1, g2, g3]):
        assert s.loc[name, "n"] == len(g)
        assert s.loc[name, "mean"] == pytest.approx(np.mean(g))
        assert s.loc[name, "sd"] == pytest.approx(np.std(g, ddof=1))
    t = r.tests.set_index(["group_1", "group_2"])
    z = (np.mean(g2) - np.mean(g3)) / math.sqrt(np.var(g2, ddof=1) / 4 + np.var(g3, ddof=1) / 9)
    assert t.loc[("diff_compound_same_moa", "diff_moa"), "z"] == pytest.approx(z)
    assert t.loc[("diff_compound_same_moa", "diff_moa"), "p_value"] == pytest.approx(2 * norm.sf(abs(z)))
    assert len(r.tests) == 3
    tidy = r.to_results("M")
    assert {"same_compound_mean", "z_same_compound_vs_diff_moa"} <= set(tidy["metric"])


def test_batch_toy():
    # MOA A wells 0,1,2 ; MOA B wells 3,4 ; plates 0,0,1,0,1
    moa = np.array([0, 0, 0, 1, 1])
    plate = np.array([0, 0, 1, 0, 1])
    cpd = np.array([0, 0, 1, 2, 3])
    vals = {(0, 1): 0.8, (0, 2): 0.2, (1, 2): 0.4, (3, 4): 0.5}
    full = {(i, j): vals.get((i, j), -0.1) for i in range(5) for j in range(i + 1, 5)}
    sim = _sym(5, full)
    r = batch_effect_from_similarity(sim, moa, plate)
    assert r.n_within == 1 and r.within_mean == pytest.approx(0.8)
    assert r.n_across == 3 and r.across_mean == pytest.approx((0.2 + 0.4 + 0.5) / 3)
    assert r.delta == pytest.approx(0.8 - 1.1 / 3)
    r2 = batch_effect_from_similarity(sim, moa, plate, cpd)  # drop same-compound pair (0,1)
    assert r2.n_within == 0 and math.isnan(r2.within_mean)
    assert r2.n_across == 3


def test_dataframe_wrappers_agree(synthetic):
    df, feats = synthetic
    d = df[df["Metadata_broad_sample"] != "DMSO"].reset_index(drop=True)
    a = intra_inter_moa(d, feats)
    sim = np.corrcoef(d[feats].to_numpy())
    iu = np.triu_indices(len(d), 1)
    same = (d["Metadata_moa"].to_numpy()[:, None] == d["Metadata_moa"].to_numpy()[None, :])[iu]
    assert a.intra_mean == pytest.approx(sim[iu][same].mean(), abs=1e-12)
    assert a.inter_mean == pytest.approx(sim[iu][~same].mean(), abs=1e-12)
    g = three_group_pcc(d, feats)
    assert g.summary["n"].sum() == len(d) * (len(d) - 1) // 2
    b = batch_effect(d, feats)
    assert b.n_within + b.n_across == same.sum()


def test_lincs_group_ordering(lincs_trt, lincs_features):
    g = three_group_pcc(lincs_trt, lincs_features).summary.set_index("group")
    # replicate pairs are most similar; different MOA pairs least
    assert g.loc["same_compound", "mean"] > g.loc["diff_compound_same_moa", "mean"] > g.loc["diff_moa", "mean"]
    assert pd.api.types.is_integer_dtype(g["n"])
