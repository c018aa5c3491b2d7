"""Progress of long steps in the Dagster run log: counts, rates and the time left."""

from __future__ import annotations

import time
from collections.abc import Callable


def _eta(seconds: float) -> str:
    s = int(max(0, round(seconds)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


class ProgressLog:
    """``progress(done, total, rows=None)``: a log line at most every ``every_s`` seconds (and at the end).

    ``what`` names the step and ``unit`` what ``done`` counts (plates, epochs, fields); ``rows`` is an
    optional second count (wells, rows) whose rate is shown too, e.g.
    ``load: 120/2024 plates (5.9 %), 45,312 rows (1,234 rows/s), ETA 4m12s``.
    """

    def __init__(
        self,
        log: Callable[[str], None],
        what: str,
        unit: str = "plates",
        *,
        every_s: float = 10.0,
        rows_unit: str = "rows",
    ):
        self.log, self.what, self.unit, self.every_s, self.rows_unit = log, what, unit, every_s, rows_unit
        self.t0 = time.time()
        self.last = 0.0

    def __call__(self, done: int, total: int, rows: int | None = None) -> None:
        now = time.time()
        if done < total and now - self.last < self.every_s:
            return
        self.last = now
        el = now - self.t0
        msg = f"{self.what}: {done:,}/{total:,} {self.unit} ({100 * done / max(total, 1):.1f} %)"
        if rows is not None:
            msg += f", {rows:,} {self.rows_unit} ({rows / el if el > 0 else 0:,.0f} {self.rows_unit}/s)"
        if 0 < done < total:
            msg += f", ETA {_eta(el / done * (total - done))}"
        else:
            msg += f", {_eta(el)} elapsed"
        self.log(msg)
