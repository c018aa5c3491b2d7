"""load_data tables: the CellProfiler convention that names every image of a field.

A load_data table has one row per field (plate, well, site) with, for each channel
``<Ch>`` in :data:`~moa_core.data.image_io.CHANNELS`, a ``FileName_Orig<Ch>`` column
and a ``PathName_Orig<Ch>`` column (a folder; real JUMP tables end it with ``/`` and
may use ``s3://`` URIs). The same table drives the synthetic and the real data.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.data.image_io import CHANNELS, read_field
from moa_core.errors import SchemaError

KEY_COLUMNS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def filename_col(channel: str) -> str:
    return f"FileName_Orig{channel}"


def pathname_col(channel: str) -> str:
    return f"PathName_Orig{channel}"


def required_columns(channels: tuple[str, ...] = CHANNELS) -> list[str]:
    cols = list(KEY_COLUMNS)
    for ch in channels:
        cols += [filename_col(ch), pathname_col(ch)]
    return cols


def validate_load_data(df: pd.DataFrame, channels: tuple[str, ...] = CHANNELS, source: str = "load_data") -> None:
    """Raise :class:`SchemaError` naming missing columns, empty tables, blank or duplicated fields."""
    missing = [c for c in required_columns(channels) if c not in df.columns]
    if missing:
        raise SchemaError(f"{source}: missing column(s) {missing}")
    if df.empty:
        raise SchemaError(f"{source}: no rows (empty partition?)")
    for ch in channels:
        blank = df[filename_col(ch)].isna() | df[filename_col(ch)].astype(str).str.strip().eq("")
        if blank.any():
            r = df[blank].iloc[0]
            raise SchemaError(
                f"{source}: empty {filename_col(ch)} for plate {r['Metadata_Plate']} well {r['Metadata_Well']} "
                f"site {r['Metadata_Site']}"
            )
    dup = df.duplicated(KEY_COLUMNS)
    if dup.any():
        r = df[dup].iloc[0]
        raise SchemaError(
            f"{source}: duplicated field plate {r['Metadata_Plate']} well {r['Metadata_Well']} site {r['Metadata_Site']}"
        )


def channel_paths(row: pd.Series | dict, channels: tuple[str, ...] = CHANNELS, root: Path | None = None) -> dict[str, str]:
    """Map channel -> full file path for one load_data row (relative folders resolved against ``root``)."""
    out = {}
    for ch in channels:
        folder = str(row[pathname_col(ch)])
        name = str(row[filename_col(ch)])
        if folder.startswith("s3://"):
            out[ch] = folder.rstrip("/") + "/" + name
        else:
            base = Path(folder)
            if root is not None and not base.is_absolute():
                base = Path(root) / base
            out[ch] = str(base / name)
    return out


def field_context(row: pd.Series | dict) -> str:
    return f"plate {row['Metadata_Plate']} well {row['Metadata_Well']} site {row['Metadata_Site']}"


def read_field_from_row(
    row: pd.Series | dict,
    channels: tuple[str, ...] = CHANNELS,
    root: Path | None = None,
    expected_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read the ``(C, H, W)`` uint16 field named by one load_data row."""
    return read_field(
        channel_paths(row, channels, root),
        channels=channels,
        expected_shape=expected_shape,
        context=field_context(row),
    )


def read_load_data(path: str | os.PathLike, channels: tuple[str, ...] = CHANNELS) -> pd.DataFrame:
    """Read a load_data CSV/CSV.gz/parquet file and validate its schema."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"load_data file missing: {p}")
    df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    validate_load_data(df, channels, source=str(p))
    df["Metadata_Site"] = df["Metadata_Site"].astype(int)
    return df


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a CSV via a temporary file in the same folder, then rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def field_image_shape(df: pd.DataFrame, root: Path | None = None, channels: tuple[str, ...] = CHANNELS) -> tuple[int, int]:
    """Shape of the first field's first channel (used to validate the rest)."""
    arr = read_field_from_row(df.iloc[0], channels[:1], root)
    return tuple(np.asarray(arr.shape[1:]).tolist())  # type: ignore[return-value]
