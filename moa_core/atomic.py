"""Atomic files: written under a temporary name in the destination folder, then renamed.

A reader never sees half a file or half a folder; a failed write leaves the previous
version (or nothing) and no temporary file behind. Only the standard library is imported
here (pandas only for the type of :func:`write_parquet_atomic`'s argument).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name; swap it into ``final`` only on success.

    On an exception the temporary directory is removed and ``final`` is untouched, so a
    reader never sees a half-rendered or half-downloaded dataset.
    """
    import shutil

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block succeeds.

    The folder is created if needed. On an exception the temporary file is removed and ``path``
    is untouched (the previous version, or nothing). Every ``write_*_atomic`` helper of the
    project is this context manager around a library's own writer.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a parquet file via a temporary name in the same folder, then rename."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a CSV (no index; gzip-compressed when ``path`` ends in ``.gz``) via a temporary name, then rename."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, compression="gzip" if str(path).endswith(".gz") else None)
    return Path(path)


def write_json_atomic(obj: object, path: str | os.PathLike) -> Path:
    """Write ``obj`` as JSON via a temporary name in the same folder, then rename."""
    import json

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) via a temporary name in the same folder, then rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
