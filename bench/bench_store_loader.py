"""CPU throughput of the image store, its DataLoader, training and embedding (demo sizes).

Usage::

    uv run python bench/bench_store_loader.py [--plates 1] [--fields 256] [--workers 1]

Renders ``--plates`` synthetic CPJUMP1 plates of 256 x 256 fields (the demo's size) into a
temporary folder, builds the image store from them, and measures on the same fields:

1. **decode**: TIFF decoding with tifffile (``read_field_from_row``, what training did per
   field before the store) vs store reads (``ImageStore.read``), fields/s;
2. **loader vs model**: the training DataLoader (store -> 64 px area resize -> dihedral
   augmentation, class-balanced sampler, ``--workers`` worker processes: the demo's
   setting) drained without a model, fields/s, against the model's own training
   throughput (EfficientNet-B0 forward + backward + AdamW step, batch 32 at 64 px) on
   in-memory tensors with no loader (the loader-free bound); target: the loader >= 3x
   faster than the model consumes;
3. **training from the loader** vs that bound (the share of the bound reached, on warm epochs);
4. **embedding**: batched inference from the store (inference mode), fields/s.

Every figure is printed with the baseline measured in the same run and their ratio.
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


def _rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plates", type=int, default=1)
    ap.add_argument("--fields", type=int, default=256, help="fields drawn per measurement")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers (the demo uses 1 on 2 cores)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--resolution", type=int, default=128, help="store resolution (the demo's: 128 of 256 native)")
    ap.add_argument("--shared", default=None, help="the shared/ folder (default: ../shared or $MOA_SHARED_DIR)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from moa_core.data.design import default_shared_dir, load_cpjump1_design
    from moa_core.data.load_data import read_field_from_row
    from moa_core.data.synthetic import SyntheticSpec, render_dataset
    from moa_core.model.embed import embed_fields
    from moa_core.model.loader import BalancedDistributedSampler, FieldDataset, StoreFields, field_loader
    from moa_core.model.network import build_model
    from moa_core.model.train import TrainConfig, train_classifier
    from moa_core.store import ImageStore, build_image_store

    design = load_cpjump1_design(Path(args.shared) if args.shared else default_shared_dir())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        ld, wells = render_dataset(design, SyntheticSpec(n_plates=args.plates), tmp / "images", n_workers=2)
        print(f"rendered {len(ld)} fields of 5 x 256 x 256 in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        rep = build_image_store(
            ld,
            tmp / "store.zarr",
            root=tmp / "images",
            n_workers=4,
            resolution=args.resolution if args.resolution < 256 else None,
        )
        t_build = time.perf_counter() - t0
        raw = rep.n_fields * 5 * rep.resolution**2 * 2
        print(
            f"store build ({rep.resolution} px): {rep.n_fields} fields in {t_build:.1f} s "
            f"({_rate(rep.n_fields, t_build):.0f} fields/s, "
            f"TIFF decode + write), {rep.bytes_on_disk / 1e6:.0f} MB on disk ({raw / rep.bytes_on_disk:.2f}x smaller "
            f"than raw uint16)"
        )
        store = ImageStore(tmp / "store.zarr")
        rows = ld.sample(min(args.fields, len(ld)), random_state=0).to_dict("records")

        # 1. decode: tifffile vs store
        t0 = time.perf_counter()
        for r in rows:
            read_field_from_row(r, root=tmp / "images")
        t_tiff = time.perf_counter() - t0
        loc = store.locate(ld.iloc[[ld.index.get_loc(i) for i in ld.sample(len(rows), random_state=0).index]])
        t0 = time.perf_counter()
        for p, i in zip(loc["Metadata_Plate"], loc["store_row"]):
            store.read(p, i)
        t_store = time.perf_counter() - t0
        print(
            f"\n1. decode {len(rows)} fields: tifffile {_rate(len(rows), t_tiff):.0f} fields/s, store "
            f"{_rate(len(rows), t_store):.0f} fields/s: store {t_tiff / t_store:.2f}x faster"
        )

        # 2. loader alone vs the model's training throughput on in-memory tensors
        labels = wells.set_index(["Metadata_Plate", "Metadata_Well"])["Metadata_moa"]
        moa = ld.set_index(["Metadata_Plate", "Metadata_Well"]).index.map(labels.to_dict())
        classes = sorted(set(moa))
        y = np.array([classes.index(m) for m in moa])
        src = StoreFields(tmp / "store.zarr", ld)
        n = args.fields
        sampler = BalancedDistributedSampler(y, n, seed=0)
        loader = field_loader(
            FieldDataset(src, y, input_size=args.input_size, train=True),
            batch_size=args.batch,
            sampler=sampler,
            num_workers=args.workers,
        )
        for _ in loader:  # warm the workers
            break
        sampler.set_epoch(1)
        t0 = time.perf_counter()
        seen = sum(len(yb) for _, yb in loader)
        t_loader = time.perf_counter() - t0
        model = build_model(len(classes))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.rand(args.batch, 5, args.input_size, args.input_size)
        yb = torch.randint(0, len(classes), (args.batch,))
        model.train()
        for _ in range(2):  # warm-up
            opt.zero_grad()
            F.cross_entropy(model(x), yb).backward()
            opt.step()
        steps = max(2, n // args.batch)
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(x), yb).backward()
            opt.step()
        t_model = time.perf_counter() - t0
        r_loader, r_model = _rate(seen, t_loader), _rate(steps * args.batch, t_model)
        print(
            f"2. training DataLoader ({args.workers} worker(s), {args.input_size} px, dihedral): "
            f"{r_loader:.0f} fields/s; model training on in-memory tensors (loader-free bound): {r_model:.0f} "
            f"fields/s: loader {r_loader / r_model:.1f}x faster than the model consumes (target >= 3x)"
        )

        # 3. training end to end from the store vs the bound
        cfg = TrainConfig(
            epochs=3,
            batch_size=args.batch,
            lr=1e-3,
            optimizer="adamw",
            input_size=args.input_size,
            num_threads=args.threads,
            num_workers=args.workers,
            samples_per_epoch=n,
            device="cpu",
        )
        val = StoreFields(tmp / "store.zarr", ld.head(args.batch))
        t0 = time.perf_counter()
        res = train_classifier(src, y, val, y[: args.batch], classes, cfg, tmp / "c.pt")
        t_train = time.perf_counter() - t0
        r_train = _rate(2 * n, res.history[2]["seconds"] - res.history[0]["seconds"])  # epochs 2-3: workers warm
        print(
            f"3. training from the store: {r_train:.0f} fields/s (epochs 2-3, each with a validation of "
            f"{args.batch} fields; {t_train:.1f} s for 3 epochs with setup) = {100 * r_train / r_model:.0f} % of the "
            f"loader-free bound"
        )

        # 4. embedding from the store
        emb_src = StoreFields(tmp / "store.zarr", ld.head(n))
        model.eval()
        mean, sd = torch.zeros(5), torch.ones(5)
        t0 = time.perf_counter()
        embed_fields(model, emb_src, mean, sd, input_size=args.input_size, num_workers=args.workers)
        t_emb = time.perf_counter() - t0
        xs = torch.rand(n, 5, args.input_size, args.input_size)
        t0 = time.perf_counter()
        embed_fields(model, xs, mean, sd)
        t_emb_mem = time.perf_counter() - t0
        print(
            f"4. embedding from the store: {_rate(n, t_emb):.0f} fields/s; from in-memory tensors: "
            f"{_rate(n, t_emb_mem):.0f} fields/s ({100 * t_emb_mem / t_emb:.0f} % of the bound)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
