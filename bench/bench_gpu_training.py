"""GPU throughput of MOAProfiler training and inference fed from the image store (skips without CUDA).

Usage::

    uv run python bench/bench_gpu_training.py [--sizes 540,1080] [--fields 448] [--workers 8] [--batch 28]

For each field size: builds an image store of ``--fields`` random uint16 fields
(5 x S x S; zstd-compressed like a real store), then measures

- **training** (EfficientNet-B0, SGD as the paper, bf16 autocast + channels_last) fed by
  the store DataLoader (``--workers`` workers, dihedral augmentation, pinned memory), fields/s,
  against the same model fed from a batch already in GPU memory (the loader-free bound);
- **inference** (embedding, inference mode, bf16 + channels_last) from the store vs from
  GPU memory.

Target: >= 60 % of the bound at 1080² on one GPU. Prints every figure and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _store(path: Path, n: int, size: int) -> None:
    import zarr
    from zarr.codecs import BloscCodec

    from moa_core.data.image_io import CHANNELS
    from moa_core.store import STORE_FORMAT

    grp = zarr.open_group(str(path), mode="w")
    grp.attrs.update({"format": STORE_FORMAT, "channels": list(CHANNELS), "resolution": size})
    arr = grp.create_array(
        "fields/P1",
        shape=(n, 5, size, size),
        chunks=(1, 5, size, size),
        dtype="uint16",
        compressors=BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
    )
    rng = np.random.default_rng(0)
    base = rng.normal(600, 40, size=(5, size, size)).clip(0, 65535).astype(np.uint16)
    for i in range(n):
        arr[i] = base + rng.integers(0, 200, size=(5, 1, 1), dtype=np.uint16)
    arr.attrs.update(
        {
            "wells": [f"A{i:04d}" for i in range(n)],
            "sites": [1] * n,
            "fingerprint": "bench",
            "skipped": [],
            "plate": "P1",
        }
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="540,1080")
    ap.add_argument("--fields", type=int, default=448)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=28, help="per-GPU batch (the paper: 56 over 4 GPUs = 14; 28 fits)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: GPU bench skipped")
        return 0
    import pandas as pd

    from moa_core.model.embed import embed_fields
    from moa_core.model.loader import BalancedDistributedSampler, FieldDataset, StoreFields, field_loader
    from moa_core.model.network import build_model, embed_and_logits
    from moa_core.model.train import _to_device, autocast

    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; {args.workers} loader workers")
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "s.zarr"
            _store(path, args.fields, size)
            fields = pd.DataFrame(
                {"Metadata_Plate": "P1", "Metadata_Well": [f"A{i:04d}" for i in range(args.fields)], "Metadata_Site": 1}
            )
            src = StoreFields(path, fields)
            y = np.arange(args.fields) % 10
            model = build_model(10).to(dev).to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
            mean, sd = torch.full((5,), 0.01), torch.full((5,), 0.001)

            def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
                opt.zero_grad(set_to_none=True)
                with autocast(dev):
                    loss = F.cross_entropy(model(xb).float(), yb)
                loss.backward()
                opt.step()

            xg = _to_device(torch.rand(args.batch, 5, size, size).half(), mean, sd, dev)
            yg = torch.randint(0, 10, (args.batch,), device=dev)
            for _ in range(3):
                step(xg, yg)
            torch.cuda.synchronize()
            n_steps = max(3, args.fields // args.batch)
            t0 = time.perf_counter()
            for _ in range(n_steps):
                step(xg, yg)
            torch.cuda.synchronize()
            bound = n_steps * args.batch / (time.perf_counter() - t0)

            sampler = BalancedDistributedSampler(y, args.fields, seed=0)
            loader = field_loader(
                FieldDataset(src, y, train=True),
                batch_size=args.batch,
                sampler=sampler,
                num_workers=args.workers,
                pin_memory=True,
            )
            for _batch in loader:  # warm the workers
                break
            sampler.set_epoch(1)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            seen = 0
            for xb, yb in loader:
                step(_to_device(xb, mean, sd, dev), yb.to(dev, non_blocking=True))
                seen += len(yb)
            torch.cuda.synchronize()
            fed = seen / (time.perf_counter() - t0)
            print(
                f"{size}px training: from the store {fed:.1f} fields/s, from GPU memory {bound:.1f} fields/s "
                f"= {100 * fed / bound:.0f} % of the bound"
            )

            model.eval()
            with torch.inference_mode(), autocast(dev):
                for _ in range(2):
                    embed_and_logits(model, xg)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(n_steps):
                    embed_and_logits(model, xg)
                torch.cuda.synchronize()
            ibound = n_steps * args.batch / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            embed_fields(model, src, mean, sd, batch_size=args.batch, device=dev, num_workers=args.workers)
            torch.cuda.synchronize()
            ifed = args.fields / (time.perf_counter() - t0)
            print(
                f"{size}px inference: from the store {ifed:.1f} fields/s, from GPU memory {ibound:.1f} fields/s "
                f"= {100 * ifed / ibound:.0f} % of the bound"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
