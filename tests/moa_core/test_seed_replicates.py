"""Seed replicates of the image models' replicate fractions: keys, splits, and the runs of MP's scaling curve."""

import numpy as np
import pandas as pd
import pytest

from moa_core.datasets import (
    FRACTION_KEYS,
    FRACTIONS,
    SEED_KEYS,
    SEED_REPLICATES,
    data_scale,
    image_fraction_keys,
    profile_scale,
    replicate_fraction,
    seed_replicate,
    training_seed,
)
from moa_core.errors import SchemaError
from moa_core.scaling import ledger
from moa_core.scaling.studies import fit_curve_reports, fraction_points, fraction_train_wells
from moa_core.splits import SPLIT_COL, fraction_split


def test_seed_keys_are_partition_keys_of_every_replicate_fraction():
    assert SEED_KEYS == [f"{k}s{i}" for k in FRACTIONS for i in SEED_REPLICATES]
    assert len(set(FRACTION_KEYS)) == len(FRACTION_KEYS) and set(SEED_KEYS) <= set(FRACTION_KEYS)
    assert not any(set(k) & set("|,[]") for k in FRACTION_KEYS)  # Dagster's partition key rules
    assert seed_replicate("50s2") == ("50", 2) and seed_replicate("50") == ("50", 0)
    assert training_seed("100s1") == 1 and training_seed("ood25") == 0
    assert data_scale("25s1") == data_scale("25") == (1.0, 0.25) and replicate_fraction("10s2") == 0.1
    assert set(image_fraction_keys()) == set(FRACTIONS) | set(SEED_KEYS)
    for bad in ("50s9", "ood25s1", "s1", "50 s1", ""):
        with pytest.raises(SchemaError, match="seed replicate"):
            seed_replicate(bad)


def test_profile_studies_refuse_a_seed_replicate_and_name_its_scale():
    assert profile_scale("ood25") == (0.25, 1.0) and profile_scale("50") == (1.0, 0.5)
    with pytest.raises(SchemaError, match=r"'50s1'.*scale key '50'"):
        profile_scale("50s1")


def _splits(compounds=12, reps=8):
    rows = [
        {
            "Metadata_Plate": f"P{r % 2}",
            "Metadata_Well": f"W{c:02d}{r}",
            "Metadata_moa": f"m{c % 3}",
            "Metadata_broad_sample": f"c{c}",
            SPLIT_COL: "train" if r < reps - 2 else ("val" if r == reps - 2 else "test"),
        }
        for c in range(compounds)
        for r in range(reps)
    ]
    return pd.DataFrame(rows)


def _train_wells(sp):
    t = sp[sp[SPLIT_COL].eq("train")]
    return set(zip(t["Metadata_Plate"], t["Metadata_Well"]))


def test_a_seed_replicate_draws_as_many_wells_per_compound_but_other_ones():
    sp = _splits()
    half, half1, half2 = (_train_wells(fraction_split(sp, k, seed=3)) for k in ("50", "50s1", "50s2"))
    assert len(half) == len(half1) == len(half2) == 12 * 3  # ceil(0.5 * 6) of each compound's 6 train wells
    assert half != half1 and half1 != half2  # another draw of which wells
    # within one seed the fractions stay nested: the seed-1 run at 25 % is a subset of its run at 50 %
    assert _train_wells(fraction_split(sp, "25s1", seed=3)) <= half1
    # at 100 % every replicate keeps every well: only the training seed differs
    assert _train_wells(fraction_split(sp, "100s2", seed=3)) == _train_wells(fraction_split(sp, "100", seed=3))
    # val/test are never resampled
    for k in ("50", "50s1"):
        assert fraction_split(sp, k, seed=3)[SPLIT_COL].ne("train").sum() == sp[SPLIT_COL].ne("train").sum()
    wells = fraction_train_wells(sp, ["50", "50s1", "25s2"], seed=3)
    assert wells == {"50": 36, "50s1": 36, "25s2": 24}


def _law(n):
    return 0.9 - 0.8 * np.asarray(n, dtype=float) ** -0.3


def _evaluation(keys, sizes, sd=0.01, seed=0):
    """evaluation_results rows of MP (a noisy known law) and CP (flat) at every key."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in keys:
        n = sizes[seed_replicate(k)[0]]
        rows.append(
            {
                "fraction": k,
                "method": "MP",
                "analysis": "knn",
                "metric": "best_f1",
                "value": _law(n) + rng.normal(0, sd),
            }
        )
        rows.append({"fraction": k, "method": "CP", "analysis": "knn", "metric": "best_f1", "value": 0.7})
    return pd.DataFrame(rows)


SIZES = {"25": 400, "50": 800, "100": 1600}


def test_fraction_points_make_each_seed_a_run_of_its_method_and_leave_untrained_methods_out():
    keys = ["100", "100s1", "50", "50s1", "25"]
    wells = {k: SIZES[seed_replicate(k)[0]] for k in keys}
    pts = fraction_points(_evaluation(keys, SIZES), wells, "d")
    mp, cp = pts[pts["family"].eq("MP")], pts[pts["family"].eq("CP")]
    assert sorted(mp["run"].unique()) == ["MP", "MP s1"]
    assert mp.groupby("run")["n"].apply(sorted).to_dict() == {"MP": [400.0, 800.0, 1600.0], "MP s1": [800.0, 1600.0]}
    # CP has no training of its own: its seed-replicate rows repeat seed 0 and would pass for exact replicates
    assert len(cp) == 3 and set(cp["run"]) == {"CP"}


def test_three_seeds_per_fraction_give_mps_curve_an_interval_one_seed_does_not():
    """The study's point: three replicate fractions alone leave the noise no degrees of freedom; three seeds
    at each give it six, and the forecasts get predictive intervals that hold the true law."""
    keys3 = [f"{k}{s}" for k in SIZES for s in ("", "s1", "s2")]
    for keys, has_interval in ((list(SIZES), False), (keys3, True)):
        wells = {k: SIZES[seed_replicate(k)[0]] for k in keys}
        pts = fraction_points(_evaluation(keys, SIZES), wells, "d")
        pts = pts[pts["family"].eq("MP")]
        fitted = fit_curve_reports(pts, n_boot=200, targets={("mp_fractions", "knn_f1"): 0.8})
        fc = ledger.forecasts(fitted, made_at="2026-01-01T00:00:00Z", next_scales={})
        avg = fc[fc["form"].eq("averaged")]
        assert not avg.empty
        if has_interval:
            assert avg["metric_low"].notna().all() and (avg["metric_low"] < avg["metric_high"]).all()
            near = avg[avg["n"] <= 2 * 1600]  # within a factor 2 of the data the interval holds the law
            assert ((near["metric_low"] <= _law(near["n"])) & (_law(near["n"]) <= near["metric_high"])).all()
        else:
            assert avg["metric_low"].isna().all() and avg["reason"].str.startswith("no interval").all()
