"""One look for every page: a colour per method, human labels, and number formatting.

Rules (issue 8): one colour per method everywhere (tables, curves, bars, maps); human
labels instead of column names; 3 significant figures; p- and q-values in scientific
notation; empty cells shown as an en dash, never "None" or "nan".
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from moa_core.methods import colour_map, method_order

# ---- methods ------------------------------------------------------------------------
# one registry of methods (moa_core.methods): its colours and order, here only looked up
METHOD_ORDER = method_order()
METHOD_COLORS = colour_map()
_EXTRA = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5"]  # names outside the registry


def method_color(method: str) -> str:
    """The method's colour; unknown methods get a stable colour from a spare palette."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _EXTRA[sum(map(ord, method)) % len(_EXTRA)]


def color_map(methods: Iterable[str]) -> dict[str, str]:
    return {m: method_color(m) for m in methods}


def sort_methods(methods: Iterable[str]) -> list[str]:
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(set(methods), key=lambda m: (order.get(m, len(order)), m))


def rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# ---- labels -------------------------------------------------------------------------
LABELS = {
    "Metadata_Plate": "plate",
    "Metadata_Well": "well",
    "Metadata_Site": "site",
    "Metadata_broad_sample": "Broad ID",
    "Metadata_pert_iname": "compound",
    "Metadata_moa": "MOA",
    "Metadata_target": "target",
    "Metadata_JCP2022": "JCP ID",
    "Metadata_InChIKey": "InChIKey",
    "Metadata_cell_line": "cell line",
    "Metadata_timepoint": "timepoint (h)",
    "diff_compound_same_moa_mean": "different compound, same MOA",
    "same_compound_mean": "same compound (replicates)",
    "diff_moa_mean": "different MOA",
    "intra_mean": "intra-MOA",
    "inter_mean": "inter-MOA",
    "best_f1": "best weighted F1",
    "f1": "weighted F1",
    "odds_ratio": "odds ratio",
    "mean_map": "mean mAP",
    "fraction_retrieved": "fraction retrieved (q < 0.05)",
    "p_value": "p",
    "corrected_p_value": "q (BH)",
    "ci_low": "95% CI low",
    "ci_high": "95% CI high",
    "n": "n",
}


def label(name: str) -> str:
    """A human label for a column, metric or group name (falls back to the name, underscores as spaces)."""
    if name in LABELS:
        return LABELS[name]
    if name.startswith("Metadata_"):
        name = name[len("Metadata_") :]
    return name.replace("_", " ")


# ---- numbers ------------------------------------------------------------------------
EMPTY = "\u2013"  # en dash


def _missing(x: object) -> bool:
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def _number(x: object) -> float | None:
    """``x`` as a float, or None when it is missing or not a number."""
    if _missing(x):
        return None
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def sig3(x: object, digits: int = 3) -> str:
    """A number to ``digits`` significant figures for people: 0.553, 35.1, 1,020, 3.25M, 1.20B; "1.00"
    keeps its trailing zeros; missing -> en dash; infinite -> "∞". The one number formatter of every page."""
    v = _number(x)
    if v is None:
        return EMPTY
    if math.isinf(v):
        return "\u221e" if v > 0 else "\u2212\u221e"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e15:
        return f"{v:.{digits}g}"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if a >= scale:
            scaled = f"{v / scale:#.{digits}g}"
            return (scaled[:-1] if scaled.endswith(".") else scaled) + suffix
    if a >= 10 ** (digits - 1):
        return f"{round(v, digits - 1 - int(math.floor(math.log10(a)))):,.0f}"
    out = f"{v:#.{digits}g}"  # keep trailing zeros: 0.720, 1.00
    if "e" in out:  # below 1e-4: scientific, as Python writes it
        return f"{v:.{digits - 1}e}"
    return out[:-1] if out.endswith(".") else out


def count(x: object) -> str:
    """A count (sizes, wells, molecules): 1,600; 3.25M from a million on."""
    v = _number(x)
    if v is None:
        return EMPTY
    if not math.isfinite(v):
        return sig3(v)
    return sig3(v) if abs(v) >= 1e6 else f"{round(v):,}"


def pct(p: object) -> str:
    """A share as a percentage to 3 significant figures: 0.953 -> "95.3%"."""
    if _missing(p):
        return EMPTY
    return f"{sig3(100.0 * float(p))}%"  # type: ignore[arg-type]


def sig_ci(v: object, lo: object, hi: object, prefix: str = "") -> str:
    """``v [lo, hi]``: the interval left off when it is missing, "(no interval)" when it is degenerate
    (``lo == hi``: no spread to speak of); ``prefix`` (a currency) only on finite numbers."""

    def fmt(x: object) -> str:
        text = sig3(x)
        return text if text in (EMPTY, "\u221e", "\u2212\u221e") else prefix + text

    core = fmt(v)
    if _missing(v):
        return EMPTY
    if _missing(lo) or _missing(hi):
        return core
    if float(lo) == float(hi):  # type: ignore[arg-type]
        return f"{core} (no interval)"
    return f"{core} [{fmt(lo)}, {fmt(hi)}]"


def pval(p: object) -> str:
    """A p- or q-value in scientific notation with 3 significant figures ("5.00e-15")."""
    if _missing(p):
        return EMPTY
    return f"{float(p):.2e}"  # type: ignore[arg-type]


def with_ci(value: object, low: object, high: object) -> str:
    """ "0.553 [0.430, 0.690]" (CI omitted when missing): :func:`sig_ci`."""
    return sig_ci(value, low, high)


P_COLUMNS = ("p", "q", "p_value", "q_value", "corrected_p_value", "p (enrichment)", "q (BH)")


def is_p_column(col: str) -> bool:
    c = col.lower()
    return (
        col in P_COLUMNS
        or c.startswith("p ")
        or c.startswith("q ")
        or c.endswith(" p")
        or c.endswith(" q")
        or c.endswith("p-value")
        or c.endswith("q-value")
        or c in ("p", "q")
    )


def display_frame(df: pd.DataFrame, *, rename: bool = True, p_columns: Iterable[str] = ()) -> pd.DataFrame:
    """A copy for ``st.dataframe``: floats at 3 significant figures, p/q columns in scientific
    notation, missing cells as an en dash, columns with human labels."""
    out = df.copy()
    pcols = set(p_columns)
    for c in out.columns:
        s = out[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            out[c] = [EMPTY if _missing(v) else pd.Timestamp(v).strftime("%Y-%m-%d %H:%M:%S") for v in s]
        elif c in pcols or is_p_column(str(c)):
            out[c] = [pval(v) for v in s]
        elif pd.api.types.is_float_dtype(s):
            out[c] = [sig3(v) for v in s]
        elif pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            out[c] = [EMPTY if _missing(v) else v for v in s]
    if rename:
        out = out.rename(columns={c: label(str(c)) for c in out.columns})
    return out


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The raw table (full precision, machine column names) as CSV for a download button."""
    return df.to_csv(index=False).encode("utf-8")
