"""Calibration of ``synthetic_jump_profiles`` against the real LINCS plate SQ00015054.

Usage::

    uv run python bench/phenoca_calibration.py [--shared ../shared] [--null-size 10000] [--no-full]
                                               [--subsamples 5] [--seed 0]

Generates the default :class:`moa_core.phenoca.synthetic.SyntheticProfileSpec` dataset
(timed), normalizes it per plate to DMSO (robust z-score), and prints
:func:`moa_core.phenoca.synthetic.calibration_figures` side by side:

    figure | LINCS SQ00015054 (dose-matched) | LINCS (doses pooled) |
    synthetic default (384-well subsample, mean of --subsamples) | synthetic default (full) | ok

``ok`` compares the synthetic subsample with LINCS (doses pooled) under the stated
tolerance (``CALIBRATION_FACTORS``: within a factor of 1.25–1.5 per figure;
``CALIBRATION_ABS_TOLERANCE``: ±0.05 for the near-zero median correlations). Exits 1 if
any compared figure is out of tolerance, 2 if the LINCS plate is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

from moa_core.phenoca.synthetic import (
    CALIBRATION_ABS_TOLERANCE,
    CALIBRATION_FACTORS,
    SyntheticProfileSpec,
    calibration_agreement,
    generate_profiles,
    lincs_calibration_figures,
    synthetic_calibration_figures,
)

REPO = Path(__file__).resolve().parents[1]
LINCS_FILE = Path("data") / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"
ROWS = [
    "n_wells",
    "n_features",
    "pc_var_top1",
    "pc_var_top5",
    "pc_var_top10",
    "pc_var_top20",
    "effective_rank",
    "n_replicate_sets",
    "n_replicate_pairs",
    "replicate_corr_median",
    "nonreplicate_corr_median",
    "negcon_corr_median",
    "n_activity_sets",
    "activity_fraction",
    "activity_mean_map",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("MOA_SHARED_DIR", str(REPO.parent / "shared"))))
    ap.add_argument("--null-size", type=int, default=10_000)
    ap.add_argument("--subsamples", type=int, default=5)
    ap.add_argument("--no-full", action="store_true", help="skip the figures of the full synthetic set")
    ap.add_argument("--seed", type=int, default=0, help="dataset seed")
    args = ap.parse_args(argv)

    path = args.shared / LINCS_FILE
    if not path.is_file():
        print(f"LINCS plate not found: {path}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    lincs = lincs_calibration_figures(pd.read_csv(path, low_memory=False), null_size=args.null_size)
    t_lincs = time.perf_counter() - t0

    spec = SyntheticProfileSpec(seed=args.seed)
    t0 = time.perf_counter()
    ds = generate_profiles(spec)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    syn = synthetic_calibration_figures(
        ds, n_subsamples=args.subsamples, full=not args.no_full, null_size=args.null_size
    )
    t_syn = time.perf_counter() - t0

    ok = calibration_agreement(lincs["doses_pooled"], syn["subsample"])
    table = pd.DataFrame(
        {
            "LINCS SQ00015054 (dose-matched)": lincs["dose_matched"],
            "LINCS SQ00015054 (doses pooled)": lincs["doses_pooled"],
            f"synthetic default (384-well subsample, mean of {args.subsamples})": syn["subsample"],
            **({"synthetic default (full)": syn["full"]} if "full" in syn else {}),
        }
    ).reindex(ROWS)
    tol = {k: f"x{v:g}" for k, v in CALIBRATION_FACTORS.items()} | {
        k: f"±{v:g}" for k, v in CALIBRATION_ABS_TOLERANCE.items()
    }
    table["tolerance"] = [tol.get(r, "") for r in ROWS]
    table["ok"] = [("yes" if ok[r] else "NO") if r in ok else "" for r in ROWS]
    table.index.name = "figure"
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(table.to_string())
    print(
        f"\ndefault spec: {len(ds.profiles):,} wells x {len(ds.feature_cols)} features, "
        f"{ds.profiles['Metadata_Plate'].nunique()} plates; generation {t_gen:.2f} s; "
        f"synthetic figures {t_syn:.1f} s; LINCS figures {t_lincs:.1f} s"
    )
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
