"""Retrieval query latency on 100,000 well profiles x 1,280 dimensions, against a brute-force pandas baseline.

    uv run python bench/bench_retrieval.py [--wells 100000] [--dim 1280] [--queries 50]

What is timed, per query (the explorer's whole computation for one compound):
``neighbours`` (mean PCC of every compound's wells with the query's median profile, read
from the index's per-compound mean vectors; best wells of the listed compounds; top and
bottom k), also timed with ``scan_wells=True`` (a pass over all 100,000 well vectors, same
answer),
``knn_vote``, ``latent_assignment``, ``moa_enrichment`` and ``confidence``. The index is
built once (timed separately, as the ``retrieval_index`` asset does) and opened memory-mapped
from disk like the dashboard does; the first query also computes the MOA centroids (reported
apart). Baseline, measured in the same run on the same data: what a notebook does with pandas
-- row-centre and normalise the feature frame, ``DataFrame.dot`` with the query's median
profile, ``groupby(compound).mean()``, ``nlargest`` / ``nsmallest``.
Target (issue 8): <= 200 ms per query on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time

import numpy as np
import pandas as pd


def synthetic_wells(n_wells: int, dim: int, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """JUMP-like well profiles: 5 replicate wells per compound, 300 MOAs, 384-well plates with 32 DMSO wells."""
    rng = np.random.default_rng(seed)
    n_comp = n_wells // 5
    moa_dirs = rng.standard_normal((300, dim), dtype=np.float32)
    comp_moa = rng.integers(0, 300, n_comp)
    comp_vec = moa_dirs[comp_moa] * 0.5 + rng.standard_normal((n_comp, dim), dtype=np.float32)
    codes = np.repeat(np.arange(n_comp), 5)[:n_wells]
    X = comp_vec[codes] + rng.standard_normal((len(codes), dim), dtype=np.float32) * 2.0
    plate = rng.permutation(len(codes)) // 352
    dmso = np.arange(len(codes)) % 12 == 0  # ~8 % DMSO wells
    names = np.array([f"JCP2022_{i:06d}" for i in range(n_comp)])
    meta = pd.DataFrame(
        {
            "Metadata_Plate": [f"P{p:05d}" for p in plate],
            "Metadata_Well": [f"W{i:06d}" for i in range(len(codes))],
            "Metadata_JCP2022": np.where(dmso, "DMSO", names[codes]),
            "Metadata_moa": np.where(dmso, "DMSO", np.array([f"moa_{m:03d}" for m in comp_moa])[codes]),
        }
    )
    feats = [f"f{i:04d}" for i in range(dim)]
    return pd.concat([meta, pd.DataFrame(X, columns=feats)], axis=1), feats


def pandas_baseline(df: pd.DataFrame, feats: list[str], compound: str, k: int) -> tuple[pd.Series, pd.Series]:
    X = df[feats]
    Xc = X.sub(X.mean(axis=1), axis=0)
    Xn = Xc.div(np.sqrt((Xc**2).sum(axis=1)), axis=0)
    q = Xn[df["Metadata_JCP2022"] == compound].median()
    q = (q - q.mean()) / np.sqrt(((q - q.mean()) ** 2).sum())
    sims = Xn.dot(q)
    by = sims.groupby(df["Metadata_JCP2022"]).mean().drop([compound, "DMSO"], errors="ignore")
    return by.nlargest(k), by.nsmallest(k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wells", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--baseline-queries", type=int, default=3)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    from moa_core.retrieval import (
        build_index,
        calibrate,
        confidence,
        knn_vote,
        latent_assignment,
        load_index,
        moa_enrichment,
        neighbours,
        save_index,
    )

    print(
        f"{args.wells} wells x {args.dim} d, {os.cpu_count()} CPU cores, "
        f"BLAS threads {os.environ.get('OMP_NUM_THREADS', 'default')}"
    )
    t0 = time.perf_counter()
    df, feats = synthetic_wells(args.wells, args.dim)
    print(f"generated in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    built = build_index(df, feats, method="bench", dataset="synthetic", fraction="100")
    t_build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_index(built, os.path.join(tmp, "idx"))
        t_save = time.perf_counter() - t0
        del built
        t0 = time.perf_counter()
        index = load_index(os.path.join(tmp, "idx"))
        np.asarray(index.vectors).sum()  # page the memory map in, as the first dashboard query does
        t_open = time.perf_counter() - t0
        t0 = time.perf_counter()
        cal = calibrate(index, k=5, max_compounds=500)
        t_cal = time.perf_counter() - t0
        rng = np.random.default_rng(1)
        treat = index.compounds[~index.compounds["is_control"]]
        picks = rng.choice(treat["compound"].to_numpy(), args.queries + 1, replace=False)

        def one(c: str) -> None:
            nb = neighbours(index, c, k=args.k)
            kv, la = knn_vote(index, nb, 5), latent_assignment(index, nb)
            moa_enrichment(index, nb, 10)
            confidence(cal, "knn", kv.score), confidence(cal, "latent", la.score)

        t0 = time.perf_counter()
        one(picks[0])
        t_first = time.perf_counter() - t0
        lat = []
        for c in picks[1:]:
            t0 = time.perf_counter()
            one(c)
            lat.append(time.perf_counter() - t0)
        scan_lat = []
        for c in picks[1:11]:
            t0 = time.perf_counter()
            neighbours(index, c, k=args.k, scan_wells=True)
            scan_lat.append(time.perf_counter() - t0)
        ours = neighbours(index, picks[1], k=args.k).nearest["compound"].tolist()
        assert ours == neighbours(index, picks[1], k=args.k, scan_wells=True).nearest["compound"].tolist()
        base_lat = []
        for c in picks[1 : 1 + args.baseline_queries]:
            t0 = time.perf_counter()
            top, _ = pandas_baseline(df, feats, c, args.k)
            base_lat.append(time.perf_counter() - t0)
            if c == picks[1]:
                agree = top.index.tolist() == ours
    med, p95 = statistics.median(lat) * 1e3, float(np.percentile(lat, 95)) * 1e3
    base = statistics.median(base_lat) * 1e3
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"index build {t_build:.1f} s, save {t_save:.1f} s, open + page in {t_open:.2f} s, "
        f"calibration (500 compounds) {t_cal:.1f} s"
    )
    print(f"first query (computes MOA centroids): {t_first * 1e3:.0f} ms")
    print(
        f"query latency over {len(lat)} queries: median {med:.1f} ms, p95 {p95:.1f} ms, "
        f"max {max(lat) * 1e3:.1f} ms (target <= 200 ms)"
    )
    print(
        f"the same neighbours from a scan of every well (scan_wells=True): median "
        f"{statistics.median(scan_lat) * 1e3:.1f} ms over {len(scan_lat)} queries"
    )
    print(f"pandas brute force over {len(base_lat)} queries: median {base:.0f} ms")
    print(f"speed-up vs pandas: {base / med:.1f}x; same top-{args.k} as pandas: {agree}")
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
