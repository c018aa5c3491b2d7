import numpy as np
import pandas as pd
import pytest

from moa_core.errors import SchemaError
from moa_core.splits import (
    ELIGIBLE_COL,
    SPLIT_COL,
    compound_holdout_split,
    subsample_training,
    well_holdout_split,
)


def _wells():
    rows = []
    k = 0
    for moa, cpds in {
        "DMSO": ["DMSO"],
        "a": ["a1", "a2"],
        "b": ["b1", "b2", "b3"],
        "solo": ["s1"],
        "a|b": ["ab1"],
    }.items():
        for c in cpds:
            for rep in range(10 if moa == "DMSO" else 4):
                k += 1
                rows.append(
                    {
                        "Metadata_Plate": f"P{rep % 2}",
                        "Metadata_Well": f"W{k:03d}",
                        "Metadata_moa": moa,
                        "Metadata_broad_sample": c,
                        "Metadata_single_moa": "|" not in moa,
                    }
                )
    rows.append(
        {
            "Metadata_Plate": "P0",
            "Metadata_Well": "W999",
            "Metadata_moa": np.nan,
            "Metadata_broad_sample": "x",
            "Metadata_single_moa": False,
        }
    )
    return pd.DataFrame(rows)


def test_60_10_30_per_moa_every_moa_in_every_split():
    sp, rep = well_holdout_split(_wells(), seed=3)
    assert rep.dropped_multi_moa == 4 and rep.dropped_unannotated == 1
    assert "a|b" not in set(sp["Metadata_moa"])
    for moa, grp in sp.groupby("Metadata_moa"):
        n = len(grp)
        c = grp[SPLIT_COL].value_counts()
        assert set(c.index) == {"train", "val", "test"}, moa
        assert c["test"] == max(1, round(0.3 * n)) and c["val"] == max(1, round(0.1 * n))
    # a well goes to exactly one split; DMSO and single-compound MOAs are not evaluated
    assert not sp.duplicated(["Metadata_Plate", "Metadata_Well"]).any()
    assert not sp.loc[sp["Metadata_moa"].isin(["DMSO", "solo"]), ELIGIBLE_COL].any()
    assert sp.loc[sp["Metadata_moa"].isin(["a", "b"]), ELIGIBLE_COL].all()


def test_deterministic_and_seed_dependent():
    a, _ = well_holdout_split(_wells(), seed=1)
    b, _ = well_holdout_split(_wells(), seed=1)
    c, _ = well_holdout_split(_wells(), seed=2)
    assert a[SPLIT_COL].tolist() == b[SPLIT_COL].tolist()
    assert a[SPLIT_COL].tolist() != c[SPLIT_COL].tolist()


def test_fraction_subsampling_is_nested_and_keeps_val_test():
    sp, _ = well_holdout_split(_wells(), seed=0)
    half = subsample_training(sp, 0.5)
    quarter = subsample_training(sp, 0.25)
    key = lambda d: set(zip(d["Metadata_Plate"], d["Metadata_Well"], d[SPLIT_COL]))  # noqa: E731
    assert key(quarter) <= key(half) <= key(sp)
    for d in (half, quarter):
        assert (d[SPLIT_COL] != "train").sum() == (sp[SPLIT_COL] != "train").sum()
        assert set(d[d[SPLIT_COL] == "train"]["Metadata_moa"]) == set(sp["Metadata_moa"])
    with pytest.raises(ValueError):
        subsample_training(sp, 0)


def test_compound_holdout_one_compound_per_multi_compound_moa():
    sp, _ = compound_holdout_split(_wells(), seed=0)
    test = sp[sp[SPLIT_COL] == "test"]
    assert test.groupby("Metadata_moa")["Metadata_broad_sample"].nunique().to_dict() == {"a": 1, "b": 1}
    held = set(test["Metadata_broad_sample"])
    assert not sp[(sp[SPLIT_COL] != "test") & sp["Metadata_broad_sample"].isin(held)].shape[0]
    rest = sp[sp[SPLIT_COL] != "test"]
    assert abs((rest[SPLIT_COL] == "val").mean() - 0.3) < 0.05


def test_empty_or_malformed_input():
    with pytest.raises(SchemaError, match="empty"):
        well_holdout_split(_wells().iloc[:0])
    with pytest.raises(SchemaError, match="Metadata_moa"):
        well_holdout_split(_wells().drop(columns=["Metadata_moa"]))


def test_fractions_keep_each_compounds_share_of_replicates_nested():
    import math

    sp, _ = well_holdout_split(_wells(), seed=0)
    tr = sp[sp[SPLIT_COL] == "train"]
    n_full = tr.groupby("Metadata_broad_sample").size()
    prev = None
    for f in (1.0, 0.75, 0.5, 0.25):
        sub = subsample_training(sp, f, seed=3)
        n = sub[sub[SPLIT_COL] == "train"].groupby("Metadata_broad_sample").size()
        assert (n == n_full.map(lambda k: max(1, math.ceil(f * k)))).all()  # every compound, its own share
        keys = set(zip(sub["Metadata_Plate"], sub["Metadata_Well"]))
        assert prev is None or keys <= prev  # nested
        prev = keys
