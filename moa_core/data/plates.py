"""Plate geometry: well names, plate formats, edge wells."""

from __future__ import annotations

import re

_PLATE_DIMS = {6: (2, 3), 24: (4, 6), 96: (8, 12), 384: (16, 24), 1536: (32, 48)}
_WELL_RE = re.compile(r"^\s*([A-Za-z]{1,2})\s*0*(\d{1,2})\s*$")


def plate_dimensions(plate_format: int) -> tuple[int, int]:
    """``(n_rows, n_columns)`` of a standard plate format (6, 24, 96, 384, 1536)."""
    if plate_format not in _PLATE_DIMS:
        raise ValueError(f"unknown plate format {plate_format}; known: {sorted(_PLATE_DIMS)}")
    return _PLATE_DIMS[plate_format]


def _row_index(letters: str) -> int:
    letters = letters.upper()
    if len(letters) == 1:
        return ord(letters) - ord("A")
    return (ord(letters[0]) - ord("A") + 1) * 26 + (ord(letters[1]) - ord("A"))


def is_edge_well(well: str, plate_format: int = 384) -> bool:
    """True when ``well`` lies on the outer ring of the plate.

    Edge = first or last row, or first or last column (384-well: row A or P, column
    1 or 24). Accepts ``"A01"``, ``"A1"``, ``"p24"``, and two-letter rows (``"AF48"``)
    for 1536-well plates.

    Raises
    ------
    ValueError
        Unparseable well name or a position outside the plate.
    """
    n_rows, n_cols = plate_dimensions(plate_format)
    m = _WELL_RE.match(str(well))
    if not m:
        raise ValueError(f"cannot parse well name {well!r}")
    r, c = _row_index(m.group(1)), int(m.group(2))
    if not (0 <= r < n_rows and 1 <= c <= n_cols):
        raise ValueError(f"well {well!r} is outside a {plate_format}-well plate")
    return r == 0 or r == n_rows - 1 or c == 1 or c == n_cols


def well_row_col(well: str) -> tuple[int, int]:
    """``"D14"`` -> ``(4, 14)`` (1-based row, column); two-letter rows for 1536-well plates."""
    m = _WELL_RE.match(str(well))
    if not m:
        raise ValueError(f"cannot parse well name {well!r}")
    return _row_index(m.group(1)) + 1, int(m.group(2))
