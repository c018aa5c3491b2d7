"""The preprocessed image store: every field decoded once, read by DataLoaders without TIFFs.

A store is a `zarr <https://zarr.dev>`_ v3 group on local disk (a maintained chunked-array
format; OME-Zarr builds on it). Layout::

    <store>/zarr.json                 attrs: format, channels, resolution
    <store>/fields/<plate>/           uint16 array (n_fields, 5, R, R), one chunk per field,
                                      zstd-compressed; attrs: the field index (well, site),
                                      the plate's source fingerprint, skipped fields

Fields are read from load_data rows (local files or ``s3://`` through an
:class:`~moa_core.data.locator.ImageLocator`, illumination-corrected where load_data
names ``_Illum`` files), area-downsampled to ``resolution`` when it is smaller than the
field (``None`` keeps native pixels: 1080² for real JUMP fields) and written as uint16.

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
            frames.append(pd.DataFrame({"Metadata_Plate": plate, "Metadata_Well": a["wells"],
                                        "Metadata_Site": np.asarray(a["sites"], dtype=np.int64),
                                        "store_row": np.arange(len(a["wells"]), dtype=np.int64)}))
        if not frames:
            return pd.DataFrame({"Metadata_Plate": pd.Series(dtype=str), "Metadata_Well": pd.Series(dtype=str),
                                 "Metadata_Site": pd.Series(dtype=np.int64), "store_row": pd.Series(dtype=np.int64)})
        return pd.concat(frames, ignore_index=True)

    def locate(self, fields: pd.DataFrame) -> pd.DataFrame:
        """``fields`` (plate, well, site, ...) with their ``store_row``; a field not in the store is an error."""
        site = fields["Metadata_Site"].astype(np.int64)
        f = fields.drop(columns=["store_row"], errors="ignore").assign(Metadata_Site=site)
        out = f.merge(self.index(), on=KEYS, how="left", validate="many_to_one")
        missing = out["store_row"].isna()
        if missing.any():
            names = [field_context(r) for r in out[missing].head(5).to_dict("records")]
            raise StoreError(f"{int(missing.sum())} field(s) are not in the image store {self.path} "
                             f"(skipped at build time or new): {names}")
        return out.assign(store_row=out["store_row"].astype(np.int64))

    def read(self, plate: str, row: int) -> np.ndarray:
        """The ``(C, R, R)`` uint16 field at ``row`` of ``plate``."""
        return np.asarray(self._array(plate)[int(row)])


def _read_plate(rows: list[dict], locator, resolution: int | None, expected_shape, n_workers: int,
                progress: Callable[[int, int], None] | None) -> tuple[list[np.ndarray | None], list[str]]:
    fields: list[np.ndarray | None] = [None] * len(rows)
    errors: list[str] = []

    def one(i: int) -> None:
        try:
            arr = read_field_from_row(rows[i], CHANNELS, locator, expected_shape=expected_shape)
        except (ImageReadError, OSError) as exc:
            errors.append(str(exc))
            return
        fields[i] = _downsample(arr, resolution) if resolution else arr

    with ThreadPoolExecutor(max(1, n_workers)) as pool:
        for k, _ in enumerate(pool.map(one, range(len(rows))), 1):
            if progress and (k % 100 == 0 or k == len(rows)):
                progress(k, len(rows))
    return fields, sorted(errors)


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
    area-downsampled to it; ``None`` keeps the native size, which must then be one size for
    the whole store). ``on_error``: ``"fail"`` raises :class:`ImageReadError` naming every
    unreadable field of the plate (nothing of that plate is written); ``"skip"`` leaves them
    out and records them. Returns what was written, kept or rebuilt.
    """
    import zarr
    from zarr.codecs import BloscCodec

    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    if load_data.empty:
        raise MoaInputError("build_image_store: load_data has no rows (empty partition?)")
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    if (p / "zarr.json").is_file():
        grp = zarr.open_group(str(p), mode="a")
        attrs = dict(grp.attrs)
        if attrs.get("format") != STORE_FORMAT:
            raise StoreError(f"{p} holds something that is not a {STORE_FORMAT} store; refusing to write into it")
        if resolution is not None and int(attrs["resolution"]) != resolution:
            raise StoreError(f"{p} was built at {attrs['resolution']} px, asked for {resolution} px: use another "
                             f"store path (or delete it to rebuild)")
        store_res = int(attrs["resolution"])
    else:
        grp = None
        store_res = resolution
    reports: list[PlateReport] = []
    for plate, rows in load_data.sort_values(KEYS).groupby("Metadata_Plate", sort=True):
        t0 = time.time()
        plate = str(plate)
        fp = _plate_fingerprint(rows, resolution)
        final = p / "fields" / plate
        if (final / "zarr.json").is_file():
            old = zarr.open_array(str(final), mode="r")
            if old.attrs.get("fingerprint") == fp:
                reports.append(PlateReport(plate, int(old.shape[0]), "kept", list(old.attrs.get("skipped", []))))
                continue
        recs = rows.to_dict("records")
        fields, errors = _read_plate(recs, root, resolution, expected_shape, n_workers,
                                     (lambda d, t, _p=plate: progress(_p, d, t)) if progress else None)
        if errors and on_error == "fail":
            raise ImageReadError(f"image store: {len(errors)} unreadable field(s) in plate {plate}; nothing of "
                                 f"this plate was written (on_error='skip' leaves them out and records them): "
                                 + "; ".join(errors[:10]) + (" ..." if len(errors) > 10 else ""))
        keep = [i for i, f in enumerate(fields) if f is not None]
        if not keep:
            raise ImageReadError(f"image store: no readable field in plate {plate}: " + "; ".join(errors[:10]))
        shapes = {fields[i].shape for i in keep}
        side = fields[keep[0]].shape[-1]
        if len(shapes) != 1 or fields[keep[0]].shape[-2] != side or (store_res is not None and side != store_res):
            raise ImageReadError(f"image store: plate {plate} has field shapes {sorted(shapes)}, the store holds "
                                 f"{store_res} x {store_res}: set a resolution to resample to one size")
        if grp is None:
            grp = zarr.open_group(str(p), mode="w")
            grp.attrs.update({"format": STORE_FORMAT, "channels": list(CHANNELS), "resolution": int(side)})
            store_res = int(side)
        tmp_name = f".tmp-{plate}-{os.getpid()}"
        tmp = p / "fields" / tmp_name
        shutil.rmtree(tmp, ignore_errors=True)
        arr = grp.create_array(f"fields/{tmp_name}", shape=(len(keep), len(CHANNELS), side, side),
                               chunks=(1, len(CHANNELS), side, side), dtype="uint16",
                               compressors=BloscCodec(cname="zstd", clevel=compression_level, shuffle="bitshuffle"))
        for j, i in enumerate(keep):
            arr[j] = fields[i]
        skipped = errors
        arr.attrs.update({"wells": [str(recs[i]["Metadata_Well"]) for i in keep],
                          "sites": [int(recs[i]["Metadata_Site"]) for i in keep],
                          "fingerprint": fp, "skipped": skipped, "plate": plate})
        status = "rebuilt" if final.exists() else "written"
        old_dir = p / "fields" / f".old-{plate}-{os.getpid()}"
        if final.exists():
            os.replace(final, old_dir)
        os.replace(tmp, final)
        shutil.rmtree(old_dir, ignore_errors=True)
        reports.append(PlateReport(plate, len(keep), status, skipped, time.time() - t0))
    size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return StoreReport(p, int(store_res), reports, size)


def channel_statistics(store: ImageStore, fields: pd.DataFrame, *, max_fields: int = 512,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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
    sd = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))
    return mean.astype(np.float32), np.maximum(sd, 1e-6).astype(np.float32)
