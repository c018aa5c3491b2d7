"""The tidy result schema shared by every analysis.

Every analysis in :mod:`moa_core.evaluation` can be flattened to rows of

==========  ======================================================================
column      meaning
==========  ======================================================================
method      embedding method being evaluated (e.g. ``"MP"``, ``"CP"``, ``"DP"``)
analysis    analysis name (e.g. ``"enrichment"``, ``"knn"``)
metric      metric name (e.g. ``"odds_ratio"``, ``"f1"``)
parameter   float parameter of the metric (k, percentile, ...) or NaN
value       the number
ci_low      lower bound of a bootstrap confidence interval, or NaN
ci_high     upper bound of a bootstrap confidence interval, or NaN
p_value     p-value of the associated test, or NaN
n           number of wells / pairs / queries / compounds behind ``value`` (float, NaN if n/a)
==========  ======================================================================

``parameter``, ``value``, ``ci_*``, ``p_value`` and ``n`` are float64; ``method``,
``analysis`` and ``metric`` are plain Python strings (object dtype).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

RESULT_COLUMNS: list[str] = [
    "method",
    "analysis",
    "metric",
    "parameter",
    "value",
    "ci_low",
    "ci_high",
    "p_value",
    "n",
]
_FLOAT_COLUMNS = RESULT_COLUMNS[3:]
_STR_COLUMNS = RESULT_COLUMNS[:3]


def _as_float(x: Any) -> float:
    if x is None:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError) as exc:  # pragma: no cover - defensive
        raise TypeError(f"result field must be numeric or None, got {x!r}") from exc


def result_row(
    method: str,
    analysis: str,
    metric: str,
    value: float,
    *,
    parameter: float | None = None,
    ci_low: float | None = None,
    ci_high: float | None = None,
    p_value: float | None = None,
    n: float | None = None,
) -> dict[str, Any]:
    """Build one tidy result row (``None`` becomes NaN).

    Parameters
    ----------
    method, analysis, metric : str
        Identify the number.
    value : float
        The number itself (may be NaN/inf where the analysis documents it).
    parameter : float, optional
        k, percentile, ... (NaN when the metric has none).
    ci_low, ci_high : float, optional
        Confidence-interval bounds.
    p_value : float, optional
        p-value of the associated test.
    n : float, optional
        Number of wells/pairs/queries used.

    Returns
    -------
    dict
        Keys exactly :data:`RESULT_COLUMNS`.
    """
    return {
        "method": str(method),
        "analysis": str(analysis),
        "metric": str(metric),
        "parameter": _as_float(parameter),
        "value": _as_float(value),
        "ci_low": _as_float(ci_low),
        "ci_high": _as_float(ci_high),
        "p_value": _as_float(p_value),
        "n": _as_float(n),
    }


def results_frame(rows: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Make a DataFrame with exactly :data:`RESULT_COLUMNS` (in order) and fixed dtypes.

    Missing keys become NaN; extra keys raise ``ValueError`` (so typos are caught).
    """
    rows = list(rows)
    for r in rows:
        extra = set(r) - set(RESULT_COLUMNS)
        if extra:
            raise ValueError(f"unknown result field(s): {sorted(extra)}")
    data: dict[str, Any] = {}
    for col in _STR_COLUMNS:
        data[col] = pd.Series([str(r.get(col, "")) for r in rows], dtype=object)
    for col in _FLOAT_COLUMNS:
        data[col] = pd.Series([_as_float(r.get(col)) for r in rows], dtype=np.float64)
    return pd.DataFrame(data, columns=RESULT_COLUMNS)


def concat_results(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate tidy result frames (re-validating the schema); empty input gives an empty frame."""
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return results_frame([])
    for f in frames:
        if list(f.columns) != RESULT_COLUMNS:
            raise ValueError(f"not a tidy result frame: columns {list(f.columns)}")
    out = pd.concat(frames, ignore_index=True)
    return out.astype({**{c: object for c in _STR_COLUMNS}, **{c: np.float64 for c in _FLOAT_COLUMNS}})
