"""Negative-control wells, recognised by the field's conventions.

Cell Painting tables mark their negative controls in different columns: CPJUMP1's and LINCS's
platemaps name the perturbation (``Metadata_broad_sample`` or ``Metadata_pert_iname`` = ``DMSO``),
JUMP's ``well.csv``/``perturbation_control.csv`` give a type (``Metadata_pert_type`` or
``Metadata_control_type`` = ``negcon``), and the paper's tables put ``DMSO`` in the MOA column.
:func:`negative_control_mask` accepts any of them (a :class:`~moa_core.data.config.ControlSpec` says
which, per dataset); :func:`mark_negative_controls` makes them the ``DMSO`` class of the wells table,
the one rule every method's per-plate standardization reads; :func:`control_summary` says, for a plate
with too few controls, how many each rule found. Mirrors pycytominer's ``samples=`` query of
``normalize`` (which takes one expression) but with the several conventions at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moa_core.data.config import ControlSpec
from moa_core.data.design import NEGCON
from moa_core.errors import SchemaError


def _matches(col: pd.Series, values: tuple[str, ...]) -> np.ndarray:
    want = {str(v).strip().casefold() for v in values}
    s = col.astype("string").str.strip().str.casefold()
    return s.isin(want).fillna(False).to_numpy(bool)


def control_rules(df: pd.DataFrame, spec: ControlSpec = ControlSpec()) -> dict[str, np.ndarray]:
    """``"<column> = <values>"`` -> boolean mask, for every rule of ``spec`` whose column ``df`` has."""
    out = {}
    for cols, values in ((spec.value_columns, spec.values), (spec.type_columns, spec.type_values)):
        for c in cols:
            if c in df.columns:
                out[f"{c} = {'/'.join(values)}"] = _matches(df[c], values)
    return out


def negative_control_mask(df: pd.DataFrame, spec: ControlSpec = ControlSpec()) -> np.ndarray:
    """True for every row that any rule of ``spec`` calls a negative control."""
    mask = np.zeros(len(df), bool)
    for m in control_rules(df, spec).values():
        mask |= m
    return mask


def mark_negative_controls(df: pd.DataFrame, spec: ControlSpec = ControlSpec(), source: str = "wells") -> pd.DataFrame:
    """``df`` with ``Metadata_moa = "DMSO"`` on every negative-control well (a copy).

    A well that a rule calls a control but whose MOA names another class is a contradiction in the
    user's table: :class:`~moa_core.errors.SchemaError` names the first such well and the rule.
    """
    if "Metadata_moa" not in df.columns:
        raise SchemaError(f"{source}: no Metadata_moa column")
    out = df.copy()
    moa = out["Metadata_moa"].astype("string").str.strip()
    ctrl = negative_control_mask(out, spec)
    blank = moa.isna() | moa.eq("")
    clash = ctrl & ~blank.to_numpy(bool) & ~_matches(moa, (NEGCON, *spec.values))
    if clash.any():
        r = out[clash].iloc[0]
        rules = [k for k, m in control_rules(out[clash].iloc[:1], spec).items() if m[0]]
        raise SchemaError(
            f"{source}: plate {r.get('Metadata_Plate')} well {r.get('Metadata_Well')} is a negative control by "
            f"{', '.join(rules)} but its Metadata_moa is {r['Metadata_moa']!r} ({int(clash.sum())} such well(s)); "
            f"fix the table or the dataset's `controls`"
        )
    out.loc[ctrl, "Metadata_moa"] = NEGCON
    return out


def control_summary(df: pd.DataFrame, spec: ControlSpec = ControlSpec()) -> str:
    """How many rows each rule of ``spec`` finds in ``df``, e.g. ``"Metadata_moa = DMSO: 0, ..."``."""
    rules = control_rules(df, spec)
    found = ", ".join(f"{k}: {int(m.sum())}" for k, m in rules.items())
    absent = [c for c in (*spec.value_columns, *spec.type_columns) if c not in df.columns]
    return (found or "no control column") + (f" (absent columns: {', '.join(absent)})" if absent else "")
