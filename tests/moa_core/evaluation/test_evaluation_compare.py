"""compare_methods scores every method on exactly the same test wells."""

import numpy as np
import pandas as pd

from moa_core.evaluation.compare import common_test_wells, compare_holdout, compare_methods
from moa_core.splits import compound_holdout_split, well_holdout_split


def _wells(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    centers = {m: rng.normal(0, 1, 16) for m in ("m1", "m2", "m3")}
    for plate in ("P1", "P2"):
        for i in range(6):
            rows.append(("DMSO", "DMSO", plate, f"A{i + 1:02d}", rng.normal(0, 1, 16)))
        for moa in centers:
            for c in range(3):
                for _rep in range(2):
                    w = f"{'BCD'[c]}{len(rows):02d}"
                    rows.append((moa, f"{moa}_c{c}", plate, w, centers[moa] + rng.normal(0, 0.5, 16)))
    meta = pd.DataFrame(
        [r[:4] for r in rows], columns=["Metadata_moa", "Metadata_broad_sample", "Metadata_Plate", "Metadata_Well"]
    )
    meta["Metadata_single_moa"] = True
    x = np.stack([r[4] for r in rows])
    return meta, x


def test_methods_share_the_same_test_wells():
    meta, x = _wells()
    sp, _ = well_holdout_split(meta, seed=1)
    a = pd.concat([meta, pd.DataFrame(x, columns=[f"a{i}" for i in range(16)])], axis=1)
    b = pd.concat([meta, pd.DataFrame(x[:, ::-1] * 2, columns=[f"b{i}" for i in range(16)])], axis=1)
    test_wells = sp[(sp["Metadata_split"] == "test") & sp["Metadata_eval_eligible"]]
    dropped = test_wells.iloc[0][["Metadata_Plate", "Metadata_Well"]]
    b = b[~((b["Metadata_Plate"] == dropped["Metadata_Plate"]) & (b["Metadata_Well"] == dropped["Metadata_Well"]))]
    common = common_test_wells(sp, {"A": a, "B": b})
    assert (
        len(common)
        == len(sp[(sp["Metadata_split"] == "test") & (sp["Metadata_eval_eligible"] | sp["Metadata_moa"].eq("DMSO"))])
        - 1
    )
    res = compare_methods({"A": a, "B": b}, sp, run_map=False, n_boot=10)
    n = res[(res["analysis"] == "knn") & (res["metric"] == "best_f1")].set_index("method")["n"]
    assert n["A"] == n["B"] == len(test_wells) - 1
    # PCC is invariant to feature order and scale: same wells -> identical k-NN curves
    f1 = res[(res["analysis"] == "knn") & (res["metric"] == "f1")].pivot(
        index="parameter", columns="method", values="value"
    )
    np.testing.assert_allclose(f1["A"], f1["B"])


def test_compare_holdout_runs_for_each_method():
    meta, x = _wells()
    sp, _ = compound_holdout_split(meta, seed=0)
    a = pd.concat([meta, pd.DataFrame(x, columns=[f"a{i}" for i in range(16)])], axis=1)
    res = compare_holdout({"A": a}, sp)
    top = res[(res["metric"] == "top_k_accuracy") & (res["parameter"] == 3.0)]
    assert set(top["analysis"]) == {"holdout_individual", "holdout_aggregated"}
    assert (top["value"] == 1.0).all()  # 3 MOAs: top-3 always contains the truth
