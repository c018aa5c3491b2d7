"""Enrichment: hand-computed toy tables, zero cells, tie rule, and a brute-force check on real LINCS data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import fisher_exact

from moa_core.evaluation import DEFAULT_PERCENTILES, enrichment, enrichment_from_similarity, odds_ratio


def _toy_sim():
    # wells 0,1 = MOA A; wells 2,3 = MOA B
    s = {(0, 1): 0.9, (2, 3): 0.15, (0, 2): 0.1, (0, 3): 0.2, (1, 2): 0.3, (1, 3): 0.4}
    sim = np.eye(4)
    for (i, j), v in s.items():
        sim[i, j] = sim[j, i] = v
    return sim, np.array([0, 0, 1, 1])


def _row(res, p):
    t = res.table
    return t[np.isclose(t["percentile"], p)].iloc[0]


def test_default_percentiles():
    assert DEFAULT_PERCENTILES == (98.0, 98.2, 98.4, 98.6, 98.8, 99.0, 99.2, 99.4, 99.6, 99.8)


def test_toy_hand_computed_paper_convention():
    sim, y = _toy_sim()
    res = enrichment_from_similarity(sim, y, percentiles=[0, 50, 80, 100])
    assert res.n_pairs == 6
    # p50: sorted pairs .1 .15 .2 .3 .4 .9 -> threshold (.2+.3)/2; strong .3 .4 .9
    r = _row(res, 50)
    assert r.threshold == pytest.approx(0.25)
    assert (r.a, r.b, r.c, r.d) == (1, 2, 1, 2)
    assert r.odds_ratio == pytest.approx(1.0)
    assert r.p_value == pytest.approx(1 - 4 / 20)
    # p80: threshold is exactly the pair at 0.4 -> that pair is weak (strict >); b = 0 -> OR = inf
    r = _row(res, 80)
    assert r.threshold == pytest.approx(0.4)
    assert (r.a, r.b, r.c, r.d) == (1, 0, 1, 4)
    assert math.isinf(r.odds_ratio)
    assert r.p_value == pytest.approx(2 / 6)
    # p100: nothing is strictly above the max -> a = b = 0 -> OR NaN, p = 1
    r = _row(res, 100)
    assert (r.a, r.b, r.c, r.d) == (0, 0, 2, 4)
    assert math.isnan(r.odds_ratio) and r.p_value == 1.0
    # p0: threshold = min, all others strong; c = 0 -> inf
    r = _row(res, 0)
    assert (r.a, r.b, r.c, r.d) == (2, 3, 0, 1)
    assert math.isinf(r.odds_ratio)
    assert r.p_value == pytest.approx(4 / 6)
    for r in res.table.itertuples():
        ref = fisher_exact([[r.a, r.b], [r.c, r.d]], alternative="greater").pvalue
        assert r.p_value == pytest.approx(ref, rel=1e-12)


def test_toy_cytominer_eval_convention():
    sim, y = _toy_sim()
    res = enrichment_from_similarity(sim, y, percentiles=[50, 80], convention="cytominer-eval")
    assert res.n_pairs == 12
    r = _row(res, 50)
    assert r.threshold == pytest.approx(0.25)
    assert (r.a, r.b, r.c, r.d) == (2, 4, 2, 4)
    assert r.p_value == pytest.approx(fisher_exact([[2, 4], [2, 4]], alternative="greater").pvalue)
    r = _row(res, 80)  # doubled multiset: virtual index 8.8 between two copies of 0.4
    assert r.threshold == pytest.approx(0.4)
    assert (r.a, r.b, r.c, r.d) == (2, 0, 2, 8)


def test_odds_ratio_zero_cells_never_crash():
    assert odds_ratio(2, 1, 1, 2) == 4.0
    assert odds_ratio(3, 0, 1, 5) == math.inf
    assert odds_ratio(3, 2, 0, 5) == math.inf
    assert odds_ratio(0, 2, 3, 5) == 0.0
    assert math.isnan(odds_ratio(0, 0, 3, 5))
    assert math.isnan(odds_ratio(0, 1, 0, 5))


def test_invalid_convention():
    sim, y = _toy_sim()
    with pytest.raises(ValueError):
        enrichment_from_similarity(sim, y, convention="nope")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- real data


def _brute_force(sim_ref: np.ndarray, moa: list[str], percentile: float, ordered: bool):
    """Independent reference: python loops over pairs, np.percentile threshold, scipy Fisher."""
    n = len(moa)
    pairs = []
    for i in range(n):
        for j in range(n):
            if i == j or (not ordered and j < i):
                continue
            pairs.append((float(sim_ref[i, j]), moa[i] == moa[j]))
    thr = float(np.percentile(np.array([p[0] for p in pairs]), percentile))
    a = b = c = d = 0
    near = 0
    for s, same in pairs:
        if 0 < abs(s - thr) < 1e-12:  # ambiguous under round-off (pairs exactly AT thr are weak in both)
            near += 1
        if s > thr:
            a, b = (a + 1, b) if same else (a, b + 1)
        else:
            c, d = (c + 1, d) if same else (c, d + 1)
    res = fisher_exact([[a, b], [c, d]], alternative="greater")
    return thr, (a, b, c, d), res.pvalue, near


@pytest.mark.parametrize("convention", ["paper", "cytominer-eval"])
def test_lincs_matches_brute_force(lincs_trt, lincs_features, convention):
    df = lincs_trt
    res = enrichment(df, lincs_features, convention=convention)
    sim_ref = np.corrcoef(df[lincs_features].to_numpy(dtype=float))
    moa = df["Metadata_moa"].astype(str).tolist()
    ordered = convention == "cytominer-eval"
    n = len(df)
    assert res.n_pairs == (n * (n - 1) if ordered else n * (n - 1) // 2)
    for p in (98.0, 98.6, 99.0, 99.8):
        thr, (a, b, c, d), pval, near = _brute_force(sim_ref, moa, p, ordered)
        r = _row(res, p)
        assert r.threshold == pytest.approx(thr, abs=1e-12)
        got = (int(r.a), int(r.b), int(r.c), int(r.d))
        if near == 0:
            assert got == (a, b, c, d)
            assert r.p_value == pytest.approx(pval, rel=1e-9, abs=1e-300)
            ref_or = (a * d) / (b * c)
            assert r.odds_ratio == pytest.approx(ref_or, rel=1e-12)
        else:  # pairs within round-off of the threshold may flip
            assert sum(abs(x - y) for x, y in zip(got, (a, b, c, d))) <= 2 * near
