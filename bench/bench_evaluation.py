"""Benchmark of the embedding-evaluation suite (moa_core.evaluation).

Usage::

    python bench/bench_evaluation.py                 # N = 500 1000 2000 4000 8000, reference at N=500
    python bench/bench_evaluation.py --quick         # N = 300 1000, reference at N=200
    python bench/bench_evaluation.py --sizes 2000 --ref-n 300

For every N a fresh subprocess builds a synthetic table (N wells x 1280 features, ~N/20
MOAs with 2-3 compounds each, several plates, plus an N-well training split) and runs
:func:`moa_core.evaluation.evaluate_embeddings` with the paper's analyses 2-8 and 11
(similarity, enrichment in both conventions, intra/inter, k-NN for all k, latent
assignment, logistic regression, three groups, plate effect) plus bootstrap CIs; mAP
is off. Peak memory is the child's ``ru_maxrss``. Logistic regression (sklearn
one-vs-rest L-BFGS, dominated by sklearn) is only run up to ``--logistic-max-n``.

At ``--ref-n`` the straightforward reference in ``bench/reference_paper_algorithm.py``
(per-pair ``np.corrcoef``, per-threshold loops over pairs, per-(query, k) ``Counter``
votes) is timed against the library on the same data and the outputs are asserted
identical (k-NN predictions for every k, enrichment 2x2 tables, latent predictions).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

TARGET_N, TARGET_S, TARGET_MB = 2000, 30.0, 2048.0


def make_data(n: int, n_features: int = 1280, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Synthetic test + train well tables with MOA / compound / plate structure."""
    rng = np.random.default_rng(seed)
    n_moa = max(2, n // 20)
    cpd_moa = np.concatenate([np.full(int(rng.integers(2, 4)), m) for m in range(n_moa)])
    n_cpd = len(cpd_moa)
    moa_center = rng.normal(size=(n_moa, n_features)) * 0.6
    cpd_center = moa_center[cpd_moa] + rng.normal(size=(n_cpd, n_features)) * 0.5
    feats = [f"emb_{i:04d}" for i in range(n_features)]
    n_plates = max(2, int(np.ceil(n / 300)))

    def table(n_wells: int, offset: int) -> pd.DataFrame:
        cpd = (np.arange(n_wells) + offset) % n_cpd
        X = cpd_center[cpd] + rng.normal(size=(n_wells, n_features))
        pos = np.arange(n_wells) % 384
        meta = pd.DataFrame(
            {
                "Metadata_moa": [f"moa_{m:04d}" for m in cpd_moa[cpd]],
                "Metadata_broad_sample": [f"cpd_{c:05d}" for c in cpd],
                "Metadata_Plate": [f"plate_{p:03d}" for p in np.arange(n_wells) % n_plates],
                "Metadata_Well": [f"{chr(65 + p // 24)}{p % 24 + 1:02d}" for p in pos],
            }
        )
        return pd.concat([meta, pd.DataFrame(X, columns=feats)], axis=1)

    return table(n, 0), table(n, 7), feats


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_suite(n: int, n_features: int, logistic_max_n: int, n_boot: int, n_boot_enrichment: int) -> dict:
    """Run the suite once on size n (in this process) and return figures."""
    import warnings

    from moa_core.evaluation import evaluate_embeddings

    test, train, feats = make_data(n, n_features)
    base_mb = _maxrss_mb()
    run_lr = n <= logistic_max_n
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = evaluate_embeddings(
            test,
            feats,
            "bench",
            train_df=train if run_lr else None,
            run_logistic=run_lr,
            run_map=False,
            n_boot=n_boot,
            n_boot_enrichment=n_boot_enrichment,
            seed=0,
        )
    total = time.perf_counter() - t0
    best = res.knn.best["f1"]
    return {
        "n": n,
        "n_moa": int(test["Metadata_moa"].nunique()),
        "timings": res.timings,
        "total_s": total,
        "peak_rss_mb": _maxrss_mb(),
        "data_rss_mb": base_mb,
        "logistic": run_lr,
        "logistic_converged": None if res.logistic is None else res.logistic.converged,
        "best_f1": best[0],
        "best_k": best[1],
        "n_rows": int(len(res.results)),
    }


def child_reference(n: int, n_features: int) -> dict:
    """Time the naive reference vs the library at size n and check identical outputs."""
    from bench.reference_paper_algorithm import (
        enrichment_reference,
        intra_inter_reference,
        knn_reference,
        latent_reference,
        pcc_matrix_pairwise,
        three_groups_reference,
    )
    from moa_core.evaluation import (
        DEFAULT_PERCENTILES,
        enrichment_from_similarity,
        intra_inter_from_similarity,
        knn_from_similarity,
        latent_from_array,
        pearson_similarity,
        three_groups_from_similarity,
    )
    from moa_core.evaluation._common import encode_labels

    test, _, feats = make_data(n, n_features)
    X = test[feats].to_numpy()
    labels = test["Metadata_moa"].to_numpy(dtype=object)
    cpds = test["Metadata_broad_sample"].to_numpy(dtype=object)
    codes, classes = encode_labels(test["Metadata_moa"])
    cpd_codes, _ = encode_labels(test["Metadata_broad_sample"])
    pct = list(DEFAULT_PERCENTILES)
    lib, ref = {}, {}

    def timed(store: dict, key: str, fn, *args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        store[key] = time.perf_counter() - t
        return out

    sim = timed(lib, "similarity", pearson_similarity, test, feats)
    sim_ref = timed(ref, "similarity", pcc_matrix_pairwise, X)
    max_sim_diff = float(np.abs(sim - sim_ref).max())

    convs = ("paper", "cytominer-eval")
    enr = timed(
        lib,
        "enrichment",
        lambda: {c: enrichment_from_similarity(sim, codes, percentiles=pct, convention=c) for c in convs},
    )
    enr_ref = timed(
        ref, "enrichment", lambda: {c: enrichment_reference(sim_ref, labels, pct, ordered=c != "paper") for c in convs}
    )
    ii = timed(lib, "intra_inter", intra_inter_from_similarity, sim, codes)
    ii_ref = timed(ref, "intra_inter", intra_inter_reference, sim_ref, labels)
    knn = timed(lib, "knn", knn_from_similarity, sim, codes, classes=classes)
    knn_pred_ref, knn_m_ref = timed(ref, "knn", knn_reference, sim_ref, labels)
    lat = timed(lib, "latent", latent_from_array, X, codes, classes)
    lat_ref = timed(ref, "latent", latent_reference, X, labels)
    grp = timed(lib, "groups", three_groups_from_similarity, sim, cpd_codes, codes)
    grp_ref = timed(ref, "groups", three_groups_reference, sim_ref, cpds, labels)

    # ---- identical outputs
    for conv in enr:
        tab = enr[conv].table
        for row, r in zip(tab.itertuples(index=False), enr_ref[conv]):
            got = (int(row.a), int(row.b), int(row.c), int(row.d))
            exp = (r["a"], r["b"], r["c"], r["d"])
            assert got == exp, f"enrichment {conv} p={r['percentile']}: {got} != {exp}"
            assert abs(row.threshold - r["threshold"]) < 1e-12
            assert np.isclose(row.p_value, r["p_value"], rtol=1e-9, atol=1e-300)
    for k in range(1, n):
        assert np.array_equal(knn.predictions(k), knn_pred_ref[k - 1]), f"k-NN predictions differ at k={k}"
    f1_ref = np.array([m[2] for m in knn_m_ref])
    assert np.allclose(knn.f1, f1_ref, atol=1e-12), "k-NN F1 curve differs"
    assert list(lat.predictions()) == lat_ref, "latent predictions differ"
    assert np.isclose(ii.intra_mean, ii_ref[0]) and np.isclose(ii.inter_mean, ii_ref[1])
    gs = grp.summary.set_index("group")["mean"]
    assert all(np.isclose(gs[k], v) for k, v in grp_ref.items())
    return {
        "n": n,
        "lib": lib,
        "ref": ref,
        "identical": True,
        "max_sim_diff": max_sim_diff,
        "peak_rss_mb": _maxrss_mb(),
    }


def _spawn(args: list[str], timeout: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_COLS = ["similarity", "enrichment", "intra_inter", "knn", "latent", "logistic", "groups", "batch", "bootstrap"]


def _print_suite_table(rows: list[dict]) -> None:
    head = (
        f"{'N':>6} {'MOAs':>5} "
        + " ".join(f"{c[:9]:>9}" for c in _COLS)
        + f" {'total s':>8} {'peak MB':>8} {'data MB':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        t = r["timings"]
        cells = " ".join(f"{t[c]:9.2f}" if c in t else f"{'-':>9}" for c in _COLS)
        print(
            f"{r['n']:>6} {r['n_moa']:>5} {cells} {r['total_s']:8.2f} {r['peak_rss_mb']:8.0f} {r['data_rss_mb']:8.0f}"
        )


def _print_ref_table(r: dict) -> None:
    print(
        f"\nReference (naive paper algorithm) vs library at N={r['n']} "
        f"(outputs identical: {r['identical']}; max |PCC diff| = {r['max_sim_diff']:.1e})"
    )
    head = f"{'analysis':>12} {'reference s':>12} {'library s':>10} {'speed-up':>9}"
    print(head)
    print("-" * len(head))
    for c in r["lib"]:
        print(f"{c:>12} {r['ref'][c]:12.3f} {r['lib'][c]:10.4f} {r['ref'][c] / max(r['lib'][c], 1e-9):8.0f}x")
    lt, rt = sum(r["lib"].values()), sum(r["ref"].values())
    print(f"{'total':>12} {rt:12.3f} {lt:10.4f} {rt / lt:8.0f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="N values (default 500 1000 2000 4000 8000)")
    ap.add_argument("--quick", action="store_true", help="small sizes (300 1000) and reference at N=200")
    ap.add_argument("--ref-n", type=int, default=None, help="N for the reference comparison (0 disables)")
    ap.add_argument("--n-features", type=int, default=1280)
    ap.add_argument("--logistic-max-n", type=int, default=2000, help="run logistic regression only up to this N")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--n-boot-enrichment", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=3600.0, help="per-child timeout (s)")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures to this file")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ref-child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child is not None:
        print(json.dumps(child_suite(a.child, a.n_features, a.logistic_max_n, a.n_boot, a.n_boot_enrichment)))
        return 0
    if a.ref_child is not None:
        print(json.dumps(child_reference(a.ref_child, a.n_features)))
        return 0

    sizes = a.sizes or ([300, 1000] if a.quick else [500, 1000, 2000, 4000, 8000])
    ref_n = a.ref_n if a.ref_n is not None else (200 if a.quick else 500)
    print(
        f"moa_core.evaluation benchmark: {a.n_features} features, cpus={os.cpu_count()}, "
        f"n_boot={a.n_boot}, n_boot_enrichment={a.n_boot_enrichment}, logistic up to N={a.logistic_max_n}\n"
    )
    common = [
        "--n-features",
        str(a.n_features),
        "--logistic-max-n",
        str(a.logistic_max_n),
        "--n-boot",
        str(a.n_boot),
        "--n-boot-enrichment",
        str(a.n_boot_enrichment),
    ]
    rows = []
    for n in sizes:
        rows.append(_spawn(["--child", str(n), *common], a.timeout))
    _print_suite_table(rows)
    status = 0
    for r in rows:
        if r["n"] == TARGET_N:
            ok = r["total_s"] <= TARGET_S and r["peak_rss_mb"] <= TARGET_MB
            print(
                f"\nTarget N={TARGET_N}: {r['total_s']:.1f} s (<= {TARGET_S:.0f} s), peak {r['peak_rss_mb']:.0f} MB "
                f"(<= {TARGET_MB:.0f} MB): {'PASS' if ok else 'FAIL'}"
            )
            status |= 0 if ok else 1
    ref = None
    if ref_n:
        ref = _spawn(["--ref-child", str(ref_n), "--n-features", str(a.n_features)], a.timeout)
        _print_ref_table(ref)
    if a.json:
        a.json.write_text(json.dumps({"suite": rows, "reference": ref}, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
