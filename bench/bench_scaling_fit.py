"""Benchmark of the scaling-law fit (moa_core.scaling) on a realistic model zoo.

Usage::

    python bench/bench_scaling_fit.py                    # 7 sizes x 3 runs, 1,000 resamples
    python bench/bench_scaling_fit.py --sizes 5 --naive-resamples 3

Times :func:`moa_core.scaling.fit_scaling_laws` with every form (linear, log_linear,
power_floor, m4, broken_power), ``n_boot`` bootstrap resamples, a 1-size back-test and a target
extrapolation with cost, on a synthetic Pheno-CA-like zoo: ``--sizes`` training-set sizes from
20K to 1M compounds, ``--runs`` seeds per size, MoA accuracy following an M4 curve plus
N(0, 0.01) noise. Target: <= 10 s per (task, model family).

Baseline, measured in the same run on the same resamples: a *naive* bootstrap that, for each
resample, materializes the resampled points and runs a cold-start grid fit (one
``scipy.optimize.least_squares(loss="soft_l1")`` call per grid start, with the same analytic
Jacobians, but no warm start and no batching), keeping the best. It is timed on
``--naive-resamples`` resamples per form and scaled linearly to ``n_boot``; the ratio is
(naive bootstrap estimate + the library's own fit/back-test time) / library time. The bench
also reports how closely the library's warm-started batched fits match the naive optimum on
those resamples (relative cost gap; negative = the library found a lower cost).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from moa_core.scaling import (  # noqa: E402
    FORMS,
    ScalingData,
    backtest,
    bootstrap_fit,
    bootstrap_weights,
    fit_form,
    fit_scaling_laws,
)

TARGET_S = 10.0
TRUTH = {"e_inf": 0.35, "beta": 40.0, "c": 0.45, "gamma": 1.2}  # MoA accuracy ~0.27 -> ~0.52


def make_zoo(n_sizes: int, n_runs: int, seed: int = 0, sd: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = np.round(np.geomspace(2e4, 1e6, n_sizes))
    mu = FORMS["m4"].predict(TRUTH, sizes)
    rows = [
        {"n": n, "metric": float(np.clip(m + rng.normal(0, sd), 0, 1)), "run": r}
        for r in range(n_runs)
        for n, m in zip(sizes, mu)
    ]
    return pd.DataFrame(rows)


def naive_grid_fit(points: pd.DataFrame, name: str, f_scale: float) -> float:
    """Cold-start grid fit with one scipy call per start; returns the best robust cost."""
    form = FORMS[name]
    data = ScalingData.from_points(points)
    lo, hi = form.raw_bounds(data.space)
    resid, jac = data.residual_fn(form), data.jacobian_fn(form)
    best = np.inf
    for start in np.clip(form.starts(data.start_data()), lo, hi):
        sol = least_squares(
            lambda t: resid(t[None, :])[0],
            start,
            jac=lambda t: jac(t[None, :])[0],
            loss="soft_l1",
            f_scale=f_scale,
            bounds=(lo, hi),
            method="trf",
        )
        best = min(best, float(sol.cost))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, default=7)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--naive-resamples", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    pts = make_zoo(args.sizes, args.runs, args.seed)
    kw = dict(n_boot=args.n_boot, target=0.55, cost_per_compound=100.0, replicates=5, seed=args.seed)
    fit_scaling_laws(pts, **dict(kw, n_boot=20))  # warm-up (imports, first-call overheads)

    t0 = time.perf_counter()
    report = fit_scaling_laws(pts, **kw)
    total = time.perf_counter() - t0

    data = ScalingData.from_points(pts)
    weights, _ = bootstrap_weights(data, args.n_boot, seed=args.seed)
    per_form: dict[str, dict[str, float]] = {}
    naive_boot_est = 0.0
    for name in FORMS:
        t = time.perf_counter()
        fit = fit_form(data, name)
        t_fit = time.perf_counter() - t
        t = time.perf_counter()
        boot = bootstrap_fit(fit, n_boot=args.n_boot, seed=args.seed)
        t_boot = time.perf_counter() - t
        t = time.perf_counter()
        backtest(data, name)
        t_bt = time.perf_counter() - t
        k = min(args.naive_resamples, args.n_boot)
        gaps = []
        t = time.perf_counter()
        for b in range(k):
            idx = np.repeat(np.arange(len(data.n)), weights[b].astype(int))
            resampled = data.table.iloc[idx].reset_index(drop=True)
            naive_cost = naive_grid_fit(resampled, name, fit.f_scale)
            gaps.append((boot.cost[b] - naive_cost) / max(naive_cost, 1e-300))
        t_naive = (time.perf_counter() - t) / max(k, 1)
        naive_boot_est += t_naive * args.n_boot
        per_form[name] = {
            "fit_s": t_fit,
            "bootstrap_s": t_boot,
            "backtest_s": t_bt,
            "naive_per_resample_s": t_naive,
            "boot_converged": float(boot.converged.mean()),
            "max_rel_cost_gap_vs_naive": float(max(gaps)) if gaps else float("nan"),
        }

    lib_fit_bt = sum(v["fit_s"] + v["backtest_s"] for v in per_form.values())
    naive_total = naive_boot_est + lib_fit_bt
    ratio = naive_total / total

    print(
        f"zoo: {args.sizes} sizes x {args.runs} runs ({len(pts)} points), n_boot={args.n_boot}, cores={os.cpu_count()}"
    )
    print(
        f"fit_scaling_laws, all {len(FORMS)} forms: {total:.2f} s  (target <= {TARGET_S:.0f} s: "
        f"{'OK' if total <= TARGET_S else 'MISSED'})"
    )
    for name, v in per_form.items():
        print(
            f"  {name:13s} fit {v['fit_s']:.3f} s  bootstrap {v['bootstrap_s']:.3f} s  backtest "
            f"{v['backtest_s']:.3f} s  | naive {v['naive_per_resample_s'] * 1e3:.0f} ms/resample, "
            f"converged {v['boot_converged']:.0%}, cost gap vs naive <= {v['max_rel_cost_gap_vs_naive']:+.1e}"
        )
    print(
        f"naive baseline (cold-start scipy grid per resample, scaled from {args.naive_resamples} resamples/form): "
        f"{naive_total:.1f} s  -> speed-up {ratio:.0f}x"
    )
    print(f"best form by back-test: {report.best}")
    print(
        json.dumps(
            {
                "seconds": round(total, 3),
                "naive_seconds_est": round(naive_total, 1),
                "ratio": round(ratio, 1),
                "target_s": TARGET_S,
                "ok": total <= TARGET_S,
                "n_boot": args.n_boot,
                "sizes": args.sizes,
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
