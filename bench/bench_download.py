"""Download throughput from a loopback S3 server with injected per-request latency: concurrent vs sequential.

Usage::

    uv run python bench/bench_download.py [--objects 48] [--size-kib 512] [--latency-ms 40] [--workers 16]

Seeds moto's S3 server (``ThreadedMotoServer`` on 127.0.0.1) with ``--objects`` random
objects, puts a proxy in front of it that delays every request by ``--latency-ms`` (S3's
first-byte latency is tens of ms; loopback has none), then downloads all objects with
:class:`moa_core.data.sources.s3.S3Transfer` twice into fresh folders in the same run:
sequentially (``max_workers=1``, the baseline) and concurrently (``--workers``). Prints
objects, MB, seconds, MB/s and the speed-up, and the time of a cached rerun (which
transfers nothing). Exits 1 if the speed-up is below 4x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from moa_core.data.sources.s3 import S3Transfer, make_s3_client
from tests.support.s3_server import FaultProxy, FaultRules, moto_server

BUCKET = "bench-bucket"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=48)
    ap.add_argument("--size-kib", type=int, default=512)
    ap.add_argument("--latency-ms", type=float, default=40.0)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    with moto_server() as url:
        seed = make_s3_client(url, unsigned=False)
        seed.create_bucket(Bucket=BUCKET)
        keys = [f"bench/obj{i:04d}.bin" for i in range(args.objects)]
        for k in keys:
            seed.put_object(Bucket=BUCKET, Key=k, Body=rng.bytes(args.size_kib * 1024))
        with (
            FaultProxy(url, FaultRules(latency_s=args.latency_ms / 1000)) as proxy,
            tempfile.TemporaryDirectory() as tmp,
        ):
            rows = []
            for label, workers in (("sequential", 1), (f"concurrent ({args.workers})", args.workers)):
                tr = S3Transfer(
                    make_s3_client(proxy.url, unsigned=False, max_pool_connections=args.workers), max_workers=workers
                )
                dest = Path(tmp) / label.split()[0]
                stats = tr.download_many([(BUCKET, k, dest / k) for k in keys])
                assert stats.objects == args.objects and stats.cached == 0
                rows.append((label, stats))
            t0 = time.perf_counter()
            again = tr.download_many([(BUCKET, k, dest / k) for k in keys])
            rerun = time.perf_counter() - t0
    print(f"{args.objects} objects x {args.size_kib} KiB, {args.latency_ms:.0f} ms injected per request (loopback)")
    print(f"{'mode':<18} {'objects':>8} {'MB':>8} {'seconds':>8} {'MB/s':>8}")
    for label, s in rows:
        print(f"{label:<18} {s.objects:>8} {s.bytes / 1e6:>8.1f} {s.seconds:>8.2f} {s.mb_per_s:>8.1f}")
    ratio = rows[0][1].seconds / rows[1][1].seconds
    print(f"speed-up concurrent / sequential: {ratio:.1f}x (target >= 4x)")
    print(f"cached rerun: {again.cached}/{args.objects} objects cached, {again.bytes} bytes moved, {rerun:.2f} s")
    return 0 if ratio >= 4 else 1


if __name__ == "__main__":
    sys.exit(main())
