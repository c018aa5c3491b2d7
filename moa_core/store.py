"""The preprocessed image store: every field decoded once, read by DataLoaders without TIFFs.

A store is a `zarr <https://zarr.dev>`_ v3 group on local disk (a maintained chunked-array
format; OME-Zarr builds on it). Layout::

    <store>/zarr.json                 attrs: format, channels, resolution
    <store>/fields/<plate>/           uint16 array (n_fields, 5, R, R), chunks of one field
                                      (512-px tiles above 512 px), zstd-compressed; attrs: the
                                      field index (well, site, row), the native side, the
                                      plate's source fingerprint, skipped fields

Fields are read from load_data rows (local files or ``s3://`` through an
:class:`~moa_core.data.locator.ImageLocator`, illumination-corrected where load_data
names ``_Illum`` files), area-downsampled to ``resolution`` when it is smaller than the
field (``None`` keeps native pixels: 1080² for real JUMP fields) and written as uint16,
each field as soon as it is decoded (memory holds a few fields, not a plate).

- **Per plate, in parallel, atomic**: a plate's array is written under a temporary name
  (fields decoded by a thread pool) and renamed into place complete, so a crash leaves
  the previous plate (or none), never half a plate.
- **Incremental**: a plate whose load_data rows and resolution are unchanged (same
  fingerprint) is kept; new plates are appended, changed ones rebuilt.
- **Bad input**: missing, corrupt or wrong-shape fields fail the plate naming every file
  (``on_error="fail"``, the default), or with ``on_error="skip"`` are left out and
  recorded (count and names) in the plate's attributes.
- **Channel statistics** (:func:`channel_statistics`) are computed from the store over the
  fields of the training split, never over validation or test fields.

Readers: :class:`ImageStore` (``read`` one field, ``index`` of every field) is what the
training and embedding DataLoaders (:mod:`moa_core.model.loader`) open in each worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.data.image_io import CHANNELS
from moa_core.data.load_data import field_context, read_field_from_row
from moa_core.errors import ImageReadError, MoaInputError

STORE_FORMAT = "moa_profiler.image_store.v1"
KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


class StoreError(MoaInputError):
    """The store is not ours, is of another resolution, or lacks a field that is asked for."""


@dataclass
class PlateReport:
    plate: str
    n_fields: int
    status: str  # "written", "kept" (unchanged), "rebuilt"
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class StoreReport:
    path: Path
    resolution: int
    plates: list[PlateReport]
    bytes_on_disk: int

    @property
    def n_fields(self) -> int:
        return sum(p.n_fields for p in self.plates)

    @property
    def skipped(self) -> list[str]:
        return [s for p in self.plates for s in p.skipped]


def _plate_fingerprint(rows: pd.DataFrame, resolution: int | None) -> str:
    cols = sorted(c for c in rows.columns if c.startswith(("Metadata_", "FileName_", "PathName_")))
    h = hashlib.sha256(json.dumps({"resolution": resolution, "columns": cols}).encode())
    h.update(pd.util.hash_pandas_object(rows[cols].astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()


def _downsample(field_u16: np.ndarray, size: int) -> np.ndarray:
    """Area (box) downsampling of a ``(C, H, W)`` uint16 field to ``size`` x ``size``, back to uint16."""
    import torch
    import torch.nn.functional as F

    if field_u16.shape[-2:] == (size, size):
        return field_u16
    t = torch.from_numpy(field_u16.astype(np.float32))[None]
    out = F.interpolate(t, size=(size, size), mode="area")[0].numpy()
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)


class ImageStore:
    """Read access to a built store (cheap to open; open one per DataLoader worker)."""

    def __init__(self, path: str | os.PathLike):
        import zarr

        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise StoreError(f"no image store at {self.path}: materialize the image_store asset first")
        self._root = zarr.open_group(str(self.path), mode="r")
        attrs = dict(self._root.attrs)
        if attrs.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.path} is not a {STORE_FORMAT} store (format {attrs.get('format')!r})")
        self.resolution = int(attrs["resolution"])
        self.channels = tuple(attrs["channels"])
        self._arrays: dict[str, object] = {}

    def plates(self) -> list[str]:
        d = self.path / "fields"
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.is_dir() else []

    def _array(self, plate: str):
        if plate not in self._arrays:
            try:
                self._arrays[plate] = self._root[f"fields/{plate}"]
            except KeyError:
                raise StoreError(f"plate {plate} is not in the image store {self.path}: rebuild it") from None
        return self._arrays[plate]

    def plate_attrs(self, plate: str) -> dict:
        return dict(self._array(plate).attrs)

    def index(self) -> pd.DataFrame:
        """One row per stored field: ``Metadata_Plate, Metadata_Well, Metadata_Site, store_row``."""
        frames = []
        for plate in self.plates():
            a = self.plate_attrs(plate)
            rows = a.get("rows", list(range(len(a["wells"]))))
            frames.append(
                pd.DataFrame(
                    {
                        "Metadata_Plate": plate,
                        "Metadata_Well": a["wells"],
                        "Metadata_Site": np.asarray(a["sites"], dtype=np.int64),
                        "store_row": np.asarray(rows, dtype=np.int64),
                    }
                )
            )
        if not frames:
            return pd.DataFrame(
                {
                    "Metadata_Plate": pd.Series(dtype=str),
                    "Metadata_Well": pd.Series(dtype=str),
                    "Metadata_Site": pd.Series(dtype=np.int64),
                    "store_row": pd.Series(dtype=np.int64),
                }
            )
        return pd.concat(frames, ignore_index=True)

    def locate(self, fields: pd.DataFrame) -> pd.DataFrame:
        """``fields`` (plate, well, site, ...) with their ``store_row``; a field not in the store is an error."""
        site = fields["Metadata_Site"].astype(np.int64)
        f = fields.drop(columns=["store_row"], errors="ignore").assign(Metadata_Site=site)
        out = f.merge(self.index(), on=KEYS, how="left", validate="many_to_one")
        missing = out["store_row"].isna()
        if missing.any():
            names = [field_context(r) for r in out[missing].head(5).to_dict("records")]
            raise StoreError(
                f"{int(missing.sum())} field(s) are not in the image store {self.path} "
                f"(skipped at build time or new): {names}"
            )
        return out.assign(store_row=out["store_row"].astype(np.int64))

    def read(self, plate: str, row: int, window: tuple[int, int, int] | None = None) -> np.ndarray:
        """The ``(C, R, R)`` uint16 field at ``row`` of ``plate``; ``window=(y0, x0, size)`` reads only that
        square (only the tiles it touches are decoded)."""
        a = self._array(plate)
        if window is None:
            return np.asarray(a[int(row)])
        y0, x0, s = window
        return np.asarray(a[int(row), :, y0 : y0 + s, x0 : x0 + s])

    def native_side(self, plate: str) -> int:
        """The side of the plate's fields before resampling (nucleus centres are in these pixels)."""
        a = self.plate_attrs(plate)
        return int(a.get("native_side", self.resolution))


def _safe_plate_name(plate: str) -> str:
    if not plate or plate.startswith(".") or "/" in plate or "\\" in plate or plate in ("..",):
        raise StoreError(f"plate name {plate!r} cannot be a store folder name")
    return plate


def _write_plate(
    arr,
    rows: list[dict],
    locator,
    resolution: int | None,
    side: int,
    expected_shape,
    n_workers: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[list[int], list[str]]:
    """Decode the plate's fields with a thread pool, each written to its own chunk as soon as it is read
    (memory holds a few fields, not the plate); returns (rows written, errors naming the bad fields)."""
    import threading

    written: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            f = read_field_from_row(rows[i], CHANNELS, locator, expected_shape=expected_shape)
            f = _downsample(f, resolution) if resolution else f
            if f.shape != (len(CHANNELS), side, side):
                raise ImageReadError(
                    f"field of {field_context(rows[i])} has shape {f.shape}; the store holds "
                    f"{len(CHANNELS)} x {side} x {side} (set a resolution to resample to one size)"
                )
            arr[i] = f
        except (MoaInputError, OSError) as exc:  # image, illumination and S3 (SourceError) failures
            with lock:
                errors.append(str(exc))
            return
        with lock:
            written.append(i)

    with ThreadPoolExecutor(max(1, n_workers)) as pool:
        for k, _ in enumerate(pool.map(one, range(len(rows))), 1):
            if progress and (k % 100 == 0 or k == len(rows)):
                progress(k, len(rows))
    return sorted(written), sorted(errors)


def _first_side(rows: list[dict], locator, expected_shape) -> int:
    """The native side of a plate's fields (its first readable field)."""
    errors = []
    for r in rows[:20]:
        try:
            return int(read_field_from_row(r, CHANNELS, locator, expected_shape=expected_shape).shape[-1])
        except (MoaInputError, OSError) as exc:
            errors.append(str(exc))
    raise ImageReadError(
        f"image store: none of the first {len(errors)} fields of plate {rows[0]['Metadata_Plate']} "
        f"is readable; nothing of this plate was written: " + "; ".join(errors[:5])
    )


def build_image_store(
    load_data: pd.DataFrame,
    path: str | os.PathLike,
    *,
    root=None,
    resolution: int | None = None,
    expected_shape: tuple[int, int] | None = None,
    on_error: str = "fail",
    n_workers: int = 4,
    compression_level: int = 3,
    progress: Callable[[str, int, int], None] | None = None,
) -> StoreReport:
    """Decode every field of ``load_data`` into the store at ``path`` (created or extended), plate by plate.

    ``root`` is the local folder or :class:`~moa_core.data.locator.ImageLocator` that
    load_data paths resolve against. ``resolution`` is the stored side in pixels (fields are
    area-downsampled to it; ``None`` keeps the store's resolution, or for a new store the
    native size, which must then be one size for the whole store). ``on_error``: ``"fail"``
    raises :class:`ImageReadError` naming every unreadable field of the plate (nothing of
    that plate is written); ``"skip"`` leaves them out and records them (a later ``"fail"``
    build retries such a plate). Fields larger than 512 px are chunked in 512-px tiles, so a
    single-cell crop decodes a tile, not the field. Returns what was written, kept or rebuilt.
    """
    import zarr
    from zarr.codecs import BloscCodec

    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    if load_data.empty:
        raise MoaInputError("build_image_store: load_data has no rows (empty partition?)")
    p = Path(path)
    if (p / "zarr.json").is_file():
        grp = zarr.open_group(str(p), mode="a")
        attrs = dict(grp.attrs)
        if attrs.get("format") != STORE_FORMAT:
            raise StoreError(f"{p} holds something that is not a {STORE_FORMAT} store; refusing to write into it")
        if resolution is not None and int(attrs["resolution"]) != resolution:
            raise StoreError(
                f"{p} was built at {attrs['resolution']} px, asked for {resolution} px: use another "
                f"store path (or delete it to rebuild)"
            )
        store_res: int | None = int(attrs["resolution"])
        resolution = resolution or (store_res if attrs.get("resampled") else None)
    else:
        if p.exists() and any(p.iterdir()):
            raise StoreError(f"{p} is a non-empty folder that is not an image store; refusing to write into it")
        grp = None
        store_res = resolution
    fields_dir = p / "fields"
    for stale in fields_dir.glob(".tmp-*") if fields_dir.is_dir() else []:  # a crashed build's leftovers
        shutil.rmtree(stale, ignore_errors=True)
    for stale in fields_dir.glob(".old-*") if fields_dir.is_dir() else []:
        shutil.rmtree(stale, ignore_errors=True)
    reports: list[PlateReport] = []
    for plate, rows in load_data.sort_values(KEYS).groupby("Metadata_Plate", sort=True):
        t0 = time.time()
        plate = _safe_plate_name(str(plate))
        fp = _plate_fingerprint(rows, resolution)
        final = fields_dir / plate
        if (final / "zarr.json").is_file():
            old = zarr.open_array(str(final), mode="r")
            skipped_before = list(old.attrs.get("skipped", []))
            if old.attrs.get("fingerprint") == fp and not (skipped_before and on_error == "fail"):
                reports.append(PlateReport(plate, len(old.attrs["wells"]), "kept", skipped_before))
                continue
        recs = rows.to_dict("records")
        native = _first_side(recs, root, expected_shape)
        side = int(resolution or native)
        if store_res is not None and side != store_res:
            raise ImageReadError(
                f"image store: plate {plate} has {side} x {side} fields, the store holds "
                f"{store_res} x {store_res}: set a resolution to resample to one size"
            )
        if grp is None:
            p.mkdir(parents=True, exist_ok=True)
            grp = zarr.open_group(str(p), mode="w")
            grp.attrs.update(
                {
                    "format": STORE_FORMAT,
                    "channels": list(CHANNELS),
                    "resolution": side,
                    "resampled": resolution is not None,
                }
            )
            store_res = side
        tmp_name = f".tmp-{plate}-{os.getpid()}"
        tmp = fields_dir / tmp_name
        tile = min(side, 512)
        arr = grp.create_array(
            f"fields/{tmp_name}",
            shape=(len(recs), len(CHANNELS), side, side),
            chunks=(1, len(CHANNELS), tile, tile),
            dtype="uint16",
            compressors=BloscCodec(cname="zstd", clevel=compression_level, shuffle="bitshuffle"),
        )
        try:
            rows_ok, errors = _write_plate(
                arr,
                recs,
                root,
                resolution,
                side,
                expected_shape,
                n_workers,
                (lambda d, t, _p=plate: progress(_p, d, t)) if progress else None,
            )
            if errors and on_error == "fail":
                raise ImageReadError(
                    f"image store: {len(errors)} unreadable field(s) in plate {plate}; nothing of "
                    f"this plate was written (on_error='skip' leaves them out and records them): "
                    + "; ".join(errors[:10])
                    + (" ..." if len(errors) > 10 else "")
                )
            if not rows_ok:
                raise ImageReadError(f"image store: no readable field in plate {plate}: " + "; ".join(errors[:10]))
            arr.attrs.update(
                {
                    "wells": [str(recs[i]["Metadata_Well"]) for i in rows_ok],
                    "sites": [int(recs[i]["Metadata_Site"]) for i in rows_ok],
                    "rows": rows_ok,
                    "native_side": native,
                    "fingerprint": fp,
                    "skipped": errors,
                    "plate": plate,
                }
            )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        status = "rebuilt" if final.exists() else "written"
        old_dir = fields_dir / f".old-{plate}-{os.getpid()}"
        if final.exists():
            os.replace(final, old_dir)
        os.replace(tmp, final)
        shutil.rmtree(old_dir, ignore_errors=True)
        reports.append(PlateReport(plate, len(rows_ok), status, errors, time.time() - t0))
    size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return StoreReport(p, int(store_res), reports, size)


def channel_statistics(
    store: ImageStore, fields: pd.DataFrame, *, max_fields: int = 512, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and SD (of fields scaled to [0, 1]) over ``fields`` — pass the training split's.

    At most ``max_fields`` fields, drawn at random with ``seed`` (all of them when fewer),
    streamed one at a time in float64, so memory does not depend on the dataset's size.
    """
    located = store.locate(fields)
    if located.empty:
        raise StoreError("channel_statistics: no fields given")
    take = located
    if len(located) > max_fields:
        take = located.iloc[np.sort(np.random.default_rng(seed).choice(len(located), max_fields, replace=False))]
    s = s2 = None
    n = 0
    for plate, row in zip(take["Metadata_Plate"], take["store_row"]):
        x = store.read(plate, row).astype(np.float64) / 65535.0
        x = x.reshape(x.shape[0], -1)
        s = x.sum(1) if s is None else s + x.sum(1)
        s2 = (x * x).sum(1) if s2 is None else s2 + (x * x).sum(1)
        n += x.shape[1]
    mean = s / n
    sd = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(sd, 1e-6).astype(np.float32)
