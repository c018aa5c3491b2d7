"""Agreement of moa_core.evaluation with independent references on the real LINCS plate.

    python bench/lincs_agreement.py

Plate SQ00015054 (``../shared/data/lincs``), DMSO and wells without ``Metadata_moa``
dropped, positives = same ``Metadata_moa``. Prints, per analysis, how the library's
output compares with a brute-force reference (``bench/reference_paper_algorithm.py``:
Python loops over pairs, ``scipy.stats.fisher_exact``, per-query sort + Counter) and with
copairs called directly. The same comparisons are asserted in
``tests/moa_core/evaluation``; this script prints the figures.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_paper_algorithm import enrichment_reference, knn_reference, latent_reference

from moa_core.evaluation import (
    DEFAULT_PERCENTILES,
    class_latent_assignment,
    enrichment,
    knn_curves,
    phenotypic_activity,
)

PLATE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"
)


def main() -> int:
    if not PLATE.is_file():
        print(f"LINCS plate not found at {PLATE}")
        return 1
    raw = pd.read_csv(PLATE)
    feats = [c for c in raw.columns if not c.startswith("Metadata_")]
    trt = raw[(raw["Metadata_broad_sample"] != "DMSO") & raw["Metadata_moa"].notna()].reset_index(drop=True)
    moa = trt["Metadata_moa"].astype(str).tolist()
    X = trt[feats].to_numpy(np.float64)
    sim_ref = np.corrcoef(X)
    n = len(trt)
    print(f"LINCS SQ00015054: {n} treated wells with an MOA, {len(set(moa))} MOAs, {len(feats)} features\n")

    rows = []
    for convention, ordered in (("paper", False), ("cytominer-eval", True)):
        t = time.time()
        lib = enrichment(trt, feats, convention=convention).table
        t_lib = time.time() - t
        t = time.time()
        ref = enrichment_reference(sim_ref, moa, DEFAULT_PERCENTILES, ordered=ordered)
        t_ref = time.time() - t
        iu = np.triu_indices(n, 1)
        pair_sims = np.concatenate([sim_ref[iu], sim_ref[iu]]) if ordered else sim_ref[iu]
        same, explained, or_rel, p_rel = 0, 0, 0.0, 0.0
        for r, e in zip(lib.itertuples(), ref):
            got, want = (int(r.a), int(r.b), int(r.c), int(r.d)), (e["a"], e["b"], e["c"], e["d"])
            if got == want:
                same += 1
                or_rel = max(or_rel, abs(r.odds_ratio - e["odds_ratio"]) / abs(e["odds_ratio"]))
                p_rel = max(p_rel, abs(r.p_value - e["p_value"]) / max(e["p_value"], 1e-300))
            else:  # differences must be pairs lying on the threshold (within round-off)
                on_thr = int((np.abs(pair_sims - e["threshold"]) < 1e-12).sum())
                moved = sum(abs(x - y) for x, y in zip(got, want)) // 2
                explained += moved <= on_thr
        note = f"; the other {len(ref) - same} differ only by pairs on the threshold" if same < len(ref) else ""
        if explained != len(ref) - same:
            note = f"; {len(ref) - same - explained} UNEXPLAINED differences"
        rows.append(
            (
                f"enrichment ({convention})",
                f"{same}/{len(ref)} 2x2 tables equal{note}",
                f"equal tables: max rel. diff OR {or_rel:.1e}, Fisher p {p_rel:.1e}",
                f"{t_ref / t_lib:.0f}x",
            )
        )

    t = time.time()
    knn = knn_curves(trt, feats)
    t_lib = time.time() - t
    t = time.time()
    ref_preds, ref_metrics = knn_reference(sim_ref, moa)
    t_ref = time.time() - t
    classes = np.asarray(knn.classes)
    equal_k = sum(np.array_equal(classes[knn.pred_codes[k - 1]], ref_preds[k - 1].astype(str)) for k in range(1, n))
    f1_diff = max(abs(knn.f1[k - 1] - ref_metrics[k - 1][2]) for k in range(1, n))
    rows.append(
        (
            "k-NN, every k",
            f"predictions equal for {equal_k}/{n - 1} values of k",
            f"max |weighted F1 - sklearn| {f1_diff:.1e}",
            f"{t_ref / t_lib:.0f}x",
        )
    )

    t = time.time()
    lat = class_latent_assignment(trt, feats)
    t_lib = time.time() - t
    t = time.time()
    ref_lat = latent_reference(X, moa)
    t_ref = time.time() - t
    lib_lat = [str(p) for p in lat.predictions()]
    rows.append(
        (
            "class latent assignment",
            f"{sum(a == b for a, b in zip(lib_lat, ref_lat))}/{n} predictions equal",
            "",
            f"{t_ref / t_lib:.0f}x",
        )
    )

    from copairs.map import average_precision, mean_average_precision
    from copairs.matching import assign_reference_index

    with tempfile.TemporaryDirectory() as cache:
        res = phenotypic_activity(raw, feats, null_size=1000, seed=1, cache_dir=cache)
        meta = raw[["Metadata_broad_sample", "Metadata_Plate"]].reset_index(drop=True).astype(str)
        ctl = pd.Index(np.flatnonzero(meta["Metadata_broad_sample"].to_numpy() == "DMSO"))
        meta = assign_reference_index(meta, ctl, reference_col="ref", default_value=-1)
        ap = average_precision(
            meta,
            raw[feats].to_numpy(dtype=float),
            pos_sameby=["Metadata_broad_sample", "ref"],
            pos_diffby=[],
            neg_sameby=["Metadata_Plate"],
            neg_diffby=["Metadata_broad_sample", "ref"],
            distance="correlation",
            progress_bar=False,
        )
        maps = mean_average_precision(
            ap,
            sameby=["Metadata_broad_sample"],
            null_size=1000,
            threshold=0.05,
            seed=1,
            progress_bar=False,
            cache_dir=cache,
        )
    a = res.map.set_index("Metadata_broad_sample").sort_index()
    b = maps.set_index("Metadata_broad_sample").sort_index()
    d_map = float(np.nanmax(np.abs(a["mean_average_precision"] - b["mean_average_precision"])))
    d_p = float(np.nanmax(np.abs(a["corrected_p_value"] - b["corrected_p_value"])))
    rows.append(
        (
            "mAP, phenotypic activity",
            f"{len(a)} compounds; fraction retrieved {res.fraction_retrieved:.3f} "
            f"vs {b['below_corrected_p'].mean():.3f}",
            f"max |mAP diff| {d_map:.1e}, |q diff| {d_p:.1e}",
            "-",
        )
    )

    w = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("analysis", "agreement", "numeric difference", "speed-up vs reference")
    w = [max(a, len(h)) for a, h in zip(w, head)]
    print("  ".join(h.ljust(x) for h, x in zip(head, w)))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print("  ".join(c.ljust(x) for c, x in zip(r, w)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
