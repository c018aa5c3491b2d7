"""DuckDB load of published CellProfiler profiles in the cpg0016 per-plate schema.

Usage::

    uv run python bench/bench_profile_load.py [--plates 1] [--features 4762]

Generates ``--plates`` plates of 384 wells x ``--features`` float32 features in the cpg0016
per-plate schema (``Metadata_Source, Metadata_Plate, Metadata_Well`` + features named like
CellProfiler's; the values are random: the real files are 4,762 features wide), writes them
as parquet, and times the pipeline's path: :func:`read_profile_file` + :func:`to_canonical`
+ :func:`load_published_profiles` (one DuckDB transaction). As the same-run baseline it
loads the same rows with a row-by-row parameterized ``INSERT ... VALUES (?, ...)``
(``executemany``), the naive way, on the first 48 wells (extrapolated per row). Prints
seconds, rows/s and MB/s of parquet read, and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from moa_core.profiles.published import load_published_profiles, read_profile_file, to_canonical
from moa_core.storage import Warehouse

COMPARTMENTS = ("Cells", "Cytoplasm", "Nuclei")
KINDS = (
    "AreaShape_Zernike",
    "Intensity_MeanIntensity",
    "Texture_SumEntropy",
    "RadialDistribution_FracAtD",
    "Granularity",
    "Correlation_Pearson",
)


def plate_frame(plate: str, n_features: int, rng: np.random.Generator) -> pd.DataFrame:
    wells = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)]
    names = [f"{COMPARTMENTS[i % 3]}_{KINDS[(i // 3) % len(KINDS)]}_{i}" for i in range(n_features)]
    feats = pd.DataFrame(rng.normal(size=(len(wells), n_features)).astype(np.float32), columns=names)
    meta = pd.DataFrame({"Metadata_Source": "source_4", "Metadata_Plate": plate, "Metadata_Well": wells})
    return pd.concat([meta, feats], axis=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plates", type=int, default=1)
    ap.add_argument("--features", type=int, default=4762)
    ap.add_argument("--baseline-rows", type=int, default=48)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(args.plates):
            p = Path(tmp) / f"BR{i:08d}.parquet"
            plate_frame(p.stem, args.features, rng).to_parquet(p, index=False)
            files.append(p)
        mb = sum(p.stat().st_size for p in files) / 1e6
        wh = Warehouse(Path(tmp) / "w.duckdb")
        t0 = time.perf_counter()
        table = pd.concat(
            [to_canonical(read_profile_file(p), release="bench", source_file=str(p), batch="b") for p in files],
            ignore_index=True,
        )
        t_read = time.perf_counter() - t0
        meta = load_published_profiles(wh, "published_profiles__bench", table, partition={"dataset": "bench"})
        total = time.perf_counter() - t0
        n = len(table)
        # baseline: row-by-row parameterized INSERT of the same columns (first --baseline-rows rows)
        con = duckdb.connect(str(Path(tmp) / "naive.duckdb"))
        cols = list(table.columns)
        con.register("frame", table)
        con.execute("CREATE TABLE t AS SELECT * FROM frame LIMIT 0")
        sub = table.head(args.baseline_rows)
        rows = [
            tuple(None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in r)
            for r in sub.itertuples(index=False)
        ]
        t1 = time.perf_counter()
        con.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(cols))})", rows)
        naive_per_row = (time.perf_counter() - t1) / len(rows)
        con.close()
    print(f"{args.plates} plate(s) x 384 wells x {args.features} features ({mb:.1f} MB parquet)")
    print(f"read + canonical schema: {t_read:.2f} s; DuckDB load (one transaction): {meta['seconds']:.2f} s")
    print(f"total: {total:.2f} s = {n / total:,.0f} rows/s, {mb / total:.1f} MB/s of parquet")
    print(
        f"baseline row-by-row INSERT: {naive_per_row * 1e3:.1f} ms/row -> {naive_per_row * n:.1f} s for {n} rows "
        f"({1 / naive_per_row:,.1f} rows/s); pipeline is {naive_per_row * n / total:.0f}x faster"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
