"""Image store domain: the dataset's fields decoded once into a zarr store the DataLoaders stream from."""

import time

import dagster as dg
import numpy as np

from moa_core.data.locator import load_locator
from moa_core.splits import SPLIT_COL
from moa_core.storage import partition_table
from orchestration.defs.ingest import raw_images, splits
from orchestration.partitions import dataset_key, dataset_partitions
from orchestration.resources import MoaStore

GROUP = "ingest"


class ImageStoreConfig(dg.Config):
    """Launchpad settings of the store build (defaults: the dataset entry's ``store_resolution``)."""

    resolution: int | None = None  # stored side in px; None: the entry's setting, else native (1080 for JUMP)
    skip_unreadable: bool = False  # leave missing/corrupt/wrong-shape fields out (recorded) instead of failing
    workers: int | None = None  # decoding threads per plate (default: the store resource's n_workers x 2)


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    deps=[raw_images, splits],
    kinds={"zarr"},
    description=(
        "Every field of the dataset's load_data (local or S3) decoded once into a zarr v3 store, per plate "
        "(atomic, incremental: unchanged plates are kept, new ones appended), at a configurable resolution; "
        "channel statistics of the training split. Training and embedding stream from it."
    ),
)
def image_store(context: dg.AssetExecutionContext, config: ImageStoreConfig, store: MoaStore) -> dg.MaterializeResult:
    from moa_core.store import ImageStore, build_image_store, channel_statistics

    ds = dataset_key(context)
    entry = store.dataset(ds)
    t0 = time.time()
    wh = store.warehouse()
    load_data = wh.read_table(partition_table("load_data", ds))
    resolution = config.resolution or entry.store_resolution
    shape = (entry.synthetic.image_size,) * 2 if entry.synthetic else None

    def progress(plate: str, done: int, total: int) -> None:
        context.log.info(f"image store: plate {plate} {done}/{total} fields ({time.time() - t0:.0f} s)")

    rep = build_image_store(
        load_data,
        store.image_store_path(ds),
        root=load_locator(store.dataset_dir(ds)),
        resolution=resolution,
        expected_shape=shape,
        on_error="skip" if config.skip_unreadable else "fail",
        n_workers=config.workers or 2 * store.n_workers,
        progress=progress,
    )
    for p in rep.plates:
        context.log.info(f"image store: plate {p.plate} {p.status} ({p.n_fields} fields, {len(p.skipped)} skipped)")
    sp = wh.read_table(partition_table("splits", ds))
    train_wells = sp[sp[SPLIT_COL].eq("train")][["Metadata_Plate", "Metadata_Well"]]
    st = ImageStore(rep.path)
    train_fields = st.index().merge(train_wells, on=["Metadata_Plate", "Metadata_Well"])
    mean, sd = channel_statistics(st, train_fields)
    raw_bytes = rep.n_fields * len(st.channels) * rep.resolution**2 * 2
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(rep.path)),
            "fields": rep.n_fields,
            "plates": len(rep.plates),
            "plates_written": sum(p.status != "kept" for p in rep.plates),
            "plates_kept": sum(p.status == "kept" for p in rep.plates),
            "resolution": rep.resolution,
            "bytes_on_disk": rep.bytes_on_disk,
            "compression_ratio": round(raw_bytes / max(1, rep.bytes_on_disk), 2),
            "skipped_fields": len(rep.skipped),
            "skipped": dg.MetadataValue.json(rep.skipped[:50]),
            "train_channel_mean": dg.MetadataValue.json(dict(zip(st.channels, np.round(mean, 6).tolist()))),
            "train_channel_sd": dg.MetadataValue.json(dict(zip(st.channels, np.round(sd, 6).tolist()))),
            "seconds": round(time.time() - t0, 1),
        }
    )
