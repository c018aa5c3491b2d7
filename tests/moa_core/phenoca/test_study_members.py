"""A Pheno-CA zoo split into members (one per architecture, as the cluster fans it out) merges into the
whole study, row for row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_core.errors import SchemaError
from moa_core.phenoca.config import StudyConfig, SyntheticProfileSpec
from moa_core.phenoca.study import merge_study_results, run_study, scale_counts, zoo_members
from moa_core.phenoca.synthetic import generate_profiles

SPEC = SyntheticProfileSpec(
    n_annotated_compounds=150,
    n_ood_compounds=200,
    n_moas=20,
    n_targets=15,
    n_crispr_genes=10,
    n_novel_moas=5,
    n_features=80,
    n_sources=2,
    batches_per_source=1,
    seed=11,
)
CFG = StudyConfig(
    depths=(1, 2), widths=(32,), epochs=3, probe_epochs=5, patience=2, n_boot=20, pca_components=16, num_threads=1
)


@pytest.fixture(scope="module")
def whole_and_members():
    prof = generate_profiles(SPEC).profiles
    whole = run_study(prof, config=CFG)
    groups = zoo_members(CFG)
    parts = [run_study(prof, config=CFG, archs=g, baselines=i == 0) for i, g in enumerate(groups)]
    return whole, groups, parts


def test_members_merge_into_the_whole_study(whole_and_members):
    whole, groups, parts = whole_and_members
    assert groups == [[(1, 32)], [(2, 32)]]
    assert not (parts[1].table["supervision"] == "none").any()  # baselines in exactly one member
    merged = merge_study_results(parts)
    pd.testing.assert_frame_equal(merged.table, whole.table)
    assert [m["model"] for m in merged.models] == [m["model"] for m in whole.models]
    assert merged.summary["ibp_embedding_params"] == whole.summary["ibp_embedding_params"]
    a = merged.embeddings.filter(like="IBP_").to_numpy()
    b = whole.embeddings.filter(like="IBP_").to_numpy()
    np.testing.assert_array_equal(a, b)


def test_scale_counts_are_the_counts_the_study_trains_on(whole_and_members):
    """The ledger's exact next-scale sizes: what run_study would count at a scale, without training."""
    whole = whole_and_members[0]
    prof = generate_profiles(SPEC).profiles
    counts = scale_counts(prof, {"100": (1.0, 1.0), "ood10": (0.1, 1.0), "50": (1.0, 0.5)}, CFG)
    cols = ["n_train_wells", "n_train_compounds", "n_ood_compounds"]
    trained = whole.table.groupby("split")[cols].first()
    at_100 = counts[counts["fraction"] == "100"].set_index("split")[cols]
    pd.testing.assert_frame_equal(at_100.sort_index(), trained.sort_index(), check_dtype=False, check_names=False)
    by = counts.set_index(["fraction", "split"])
    for split in ("replicate", "novel"):  # fewer OOD molecules, fewer replicates: fewer of what the axis counts
        assert by.loc[("ood10", split), "n_ood_compounds"] < by.loc[("100", split), "n_ood_compounds"]
        assert by.loc[("50", split), "n_train_wells"] < by.loc[("100", split), "n_train_wells"]
        assert by.loc[("50", split), "n_train_compounds"] == by.loc[("100", split), "n_train_compounds"]


def test_unknown_architecture_and_bad_group_are_refused():
    prof = generate_profiles(SPEC).profiles
    with pytest.raises(SchemaError, match=r"\(3, 32\).*not in the zoo"):
        run_study(prof, config=CFG, archs=[(3, 32)])
    with pytest.raises(SchemaError, match="group_size"):
        zoo_members(CFG, group_size=0)
    with pytest.raises(SchemaError, match="no study member"):
        merge_study_results([])
