"""load_data tables: the CellProfiler convention that names every image of a field.

A load_data table has one row per field (plate, well, site) with, for each channel
``<Ch>`` in :data:`~moa_core.data.image_io.CHANNELS`, a ``FileName_Orig<Ch>`` column
and a ``PathName_Orig<Ch>`` column (a folder; real JUMP tables end it with ``/`` and
may use ``s3://`` URIs). The same table drives the synthetic and the real data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.data.image_io import CHANNELS, apply_illumination, read_field
from moa_core.data.locator import ImageLocator, as_locator
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


def illum_filename_col(channel: str) -> str:
    return f"FileName_Illum{channel}"


def illum_pathname_col(channel: str) -> str:
    return f"PathName_Illum{channel}"


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype(str).str.strip().isin(["", "nan", "None", "<NA>"])


def validate_load_data(df: pd.DataFrame, channels: tuple[str, ...] = CHANNELS, source: str = "load_data") -> None:
    """Raise :class:`SchemaError` naming missing columns, empty tables, blank or duplicated fields.

    Blank keys are errors, never silently dropped: a blank ``Metadata_Plate``,
    ``Metadata_Well`` or ``Metadata_Site`` (the row is named by its index and whatever
    keys it has), a blank ``FileName_Orig*``/``PathName_Orig*``, a non-integer site, or
    an illumination column present for some channels but blank in some rows.
    """
    missing = [c for c in required_columns(channels) if c not in df.columns]
    if missing:
        present = sorted(c for c in df.columns if c.startswith("FileName_Orig"))
        hint = f" (it names {present})" if present else ""
        raise SchemaError(f"{source}: missing column(s) {missing}{hint}")
    if df.empty:
        raise SchemaError(f"{source}: no rows (empty partition?)")
    for col in KEY_COLUMNS:
        blank = _blank(df[col])
        if blank.any():
            i = int(np.flatnonzero(blank.to_numpy())[0])
            r = df.iloc[i]
            keys = ", ".join(f"{k}={r[k]!r}" for k in KEY_COLUMNS)
            raise SchemaError(f"{source}: blank {col} in row {i} ({keys}); {int(blank.sum())} row(s) affected")
    site = pd.to_numeric(df["Metadata_Site"], errors="coerce")
    if site.isna().any() or (site % 1 != 0).any():
        r = df[site.isna() | (site % 1 != 0)].iloc[0]
        raise SchemaError(
            f"{source}: Metadata_Site {r['Metadata_Site']!r} is not an integer "
            f"(plate {r['Metadata_Plate']} well {r['Metadata_Well']})"
        )
    cols = [filename_col(ch) for ch in channels] + [pathname_col(ch) for ch in channels]
    illum = [c for ch in channels for c in (illum_filename_col(ch), illum_pathname_col(ch)) if c in df.columns]
    cols += [c for c in illum if not _blank(df[c]).all()]  # an all-blank _Illum column = no correction
    for col in cols:
        blank = _blank(df[col])
        if blank.any():
            r = df[blank].iloc[0]
            raise SchemaError(
                f"{source}: empty {col} for plate {r['Metadata_Plate']} well {r['Metadata_Well']} "
                f"site {r['Metadata_Site']}"
            )
    dup = df.duplicated(KEY_COLUMNS)
    if dup.any():
        r = df[dup].iloc[0]
        raise SchemaError(
            f"{source}: duplicated field plate {r['Metadata_Plate']} well {r['Metadata_Well']} "
            f"site {r['Metadata_Site']}"
        )


def check_channel_map(df: pd.DataFrame, channel_map: dict[int, str] | None, source: str = "load_data") -> None:
    """Check that each ``FileName_Orig<Stain>`` names the channel number the map gives that stain.

    Phenix file names carry the channel as ``-chN``; a load_data whose DNA column points
    at ``-ch1`` files of a cpg0000 plate (ch1 = Mito) is mislabelled. Raises
    :class:`SchemaError` naming the column, the file and the expected channel.
    """
    if not channel_map:
        return
    for num, stain in channel_map.items():
        col = filename_col(stain)
        if col not in df.columns:
            raise SchemaError(
                f"{source}: the channel map names ch{num} = {stain} but there is no {col} column "
                f"(fewer channels than the channel map)"
            )
        got = df[col].astype(str).str.extract(r"-ch(\d+)", expand=False)
        bad = got.notna() & (got != str(num))
        if bad.any():
            r = df[bad].iloc[0]
            raise SchemaError(
                f"{source}: {col} of plate {r['Metadata_Plate']} well {r['Metadata_Well']} is "
                f"{r[col]!r}, but the channel map puts {stain} on ch{num}"
            )


def channel_paths(
    row: pd.Series | dict, channels: tuple[str, ...] = CHANNELS, root: Path | str | ImageLocator | None = None
) -> dict[str, str]:
    """Map channel -> full file path or URI for one load_data row."""
    loc = as_locator(root)
    return {ch: loc.resolve(row[pathname_col(ch)], str(row[filename_col(ch)])) for ch in channels}


def illum_paths(
    row: pd.Series | dict, channels: tuple[str, ...] = CHANNELS, root: Path | str | ImageLocator | None = None
) -> dict[str, str]:
    """Channel -> illumination function path/URI, for the channels the row names one for."""
    loc = as_locator(root)
    out = {}
    for ch in channels:
        name, folder = row.get(illum_filename_col(ch)), row.get(illum_pathname_col(ch))
        if name is not None and folder is not None and not pd.isna(name) and str(name).strip():
            out[ch] = loc.resolve(str(folder), str(name))
    return out


def field_context(row: pd.Series | dict) -> str:
    return f"plate {row['Metadata_Plate']} well {row['Metadata_Well']} site {row['Metadata_Site']}"


def read_field_from_row(
    row: pd.Series | dict,
    channels: tuple[str, ...] = CHANNELS,
    root: Path | str | ImageLocator | None = None,
    expected_shape: tuple[int, int] | None = None,
    *,
    illumination: bool = True,
) -> np.ndarray:
    """Read the ``(C, H, W)`` uint16 field named by one load_data row.

    ``root`` is a local folder for relative paths or an :class:`ImageLocator` (which also
    reads ``s3://`` URIs). Where the row names ``_Illum`` files (``FileName_Illum<Ch>``),
    each channel is divided by its illumination function (CellProfiler's
    CorrectIlluminationApply) unless ``illumination`` is False.
    """
    loc = as_locator(root)
    ctx = field_context(row)
    field = read_field(
        channel_paths(row, channels, loc),
        channels=channels,
        expected_shape=expected_shape,
        context=ctx,
        reader=loc.read_channel,
    )
    if illumination:
        for i, ch in enumerate(channels):
            uri = illum_paths(row, (ch,), loc).get(ch)
            if uri is not None:
                illum = loc.read_illumination(uri, context=f"{ctx} channel {ch}")
                field[i] = apply_illumination(field[i], illum, name=uri, context=f"{ctx} channel {ch}")
    return field


def read_table_file(path: str | os.PathLike) -> pd.DataFrame:
    """A csv, csv.gz or parquet table (by suffix); :class:`SchemaError` naming the file if unreadable."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"file missing: {p}")
    try:
        if p.name.endswith(".parquet"):
            return pd.read_parquet(p)
        return pd.read_csv(p, low_memory=False)
    except Exception as exc:
        raise SchemaError(f"cannot read table {p}: {type(exc).__name__}: {exc}") from exc


def read_load_data(path: str | os.PathLike, channels: tuple[str, ...] = CHANNELS) -> pd.DataFrame:
    """Read a load_data CSV/CSV.gz/parquet file and validate its schema."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"load_data file missing: {p}")
    df = read_table_file(p)
    validate_load_data(df, channels, source=str(p))
    df["Metadata_Site"] = pd.to_numeric(df["Metadata_Site"]).astype(int)
    df["Metadata_Plate"] = df["Metadata_Plate"].astype(str)
    df["Metadata_Well"] = df["Metadata_Well"].astype(str)
    return df


def field_image_shape(
    df: pd.DataFrame, root: Path | None = None, channels: tuple[str, ...] = CHANNELS
) -> tuple[int, int]:
    """Shape of the first field's first channel (used to validate the rest)."""
    arr = read_field_from_row(df.iloc[0], channels[:1], root)
    return tuple(np.asarray(arr.shape[1:]).tolist())  # type: ignore[return-value]
