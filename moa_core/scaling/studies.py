"""Scaling points from the project's result tables, and the laws fitted to every curve.

Two kinds of curve feed :func:`moa_core.scaling.fit_scaling_laws`:

- **Pheno-CA** (``phenoca_results``): a metric of one task and split for every model of the
  zoo at every data scale. Study ``phenoca_ood`` (x = training molecules, as the share of
  OOD molecules grows: keys ``ood0 … ood50, 100``) and ``phenoca_replicates`` (x = training
  wells, as each compound's replicate share grows: keys ``25 … 100``). With
  ``ood_x="ood_molecules"`` the OOD study's x is the OOD molecules trained on instead, the axis
  of Linsley et al. (IBP "given images from 1e3, 2e4, 5e4, 8e4 or 1e5 molecules" outside the
  Pheno-CA, and their laws read "1 % per ~56K OOD molecules added"); its ``ood0`` point (no OOD
  molecule) has no place on that log axis and is left out. Each (model,
  supervision) of the zoo is a *run* of its family (``IBP``, ``IBP invariant``,
  ``task-supervised``, ``profiles (CP)``), with its parameter count as ``model_size``; the
  fit uses the best model per size (the paper's "best-of-zoo" envelope, biased upward by
  the maximum over models: stated, not corrected).
- **MOAProfiler's replicate-fraction curve** (``evaluation_results`` at fractions 25 … 100):
  study ``mp_fractions``, x = training wells of the fraction, one run per method.

:func:`fit_curves` fits every (study, task, family) curve with at least three sizes and
returns the ``scaling_laws`` rows (``SCALING_LAW_COLUMNS`` with the curve's keys); curves
with fewer sizes are listed with the reason, not fitted.
"""

from __future__ import annotations

import pandas as pd

from moa_core.scaling.errors import ScalingError
from moa_core.scaling.report import SCALING_LAW_COLUMNS, fit_scaling_laws

POINT_COLUMNS = ["dataset", "study", "task", "family", "n", "metric", "run", "model_size"]
CURVE_KEYS = ["dataset", "study", "task", "family"]

#: (task, split, metric) of phenoca_results -> the scaling task name (bounded metrics only).
PHENOCA_TASKS = {
    ("moa", "replicate", "top10"): "moa_top10",
    ("moa", "novel", "top10"): "moa_top10_novel",
    ("target", "replicate", "top10"): "target_top10",
    ("target", "novel", "top10"): "target_top10_novel",
    ("molecule", "replicate", "top10"): "molecule_top10",
    ("discovery", "novel", "auc"): "discovery_auc",
}
SUPERVISION_FAMILY = {
    "ibp": "IBP",
    "ibp_invariant": "IBP invariant",
    "task": "task-supervised",
    "none": "profiles (CP)",
}


def phenoca_points(results: pd.DataFrame, *, ood_x: str = "train_molecules") -> pd.DataFrame:
    """Scaling points of a ``phenoca_results`` table (see the module docstring).

    ``ood_x``: the x of the ``phenoca_ood`` study, ``"train_molecules"`` (every training molecule,
    annotated and OOD: ``n_train_compounds``) or ``"ood_molecules"`` (the OOD ones only:
    ``n_ood_compounds``; points without any are dropped).
    """
    if ood_x not in ("train_molecules", "ood_molecules"):
        raise ScalingError(f"ood_x must be 'train_molecules' or 'ood_molecules', got {ood_x!r}")
    if results.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    rows = []
    for r in results.itertuples(index=False):
        task = PHENOCA_TASKS.get((r.task, r.split, r.metric))
        family = SUPERVISION_FAMILY.get(r.supervision)
        if task is None or family is None or r.probe == "knn":
            continue
        frac = str(r.fraction)
        study = "phenoca_ood" if frac.startswith("ood") or frac == "100" else "phenoca_replicates"
        studies = [study] + (["phenoca_replicates"] if frac == "100" else [])
        # the OOD axis only changes what IBP trains on (task-supervised models and the profiles see the
        # annotated compounds alone), and molecule deconvolution gains classes along it: replicate axis only
        studies = [st for st in studies if st != "phenoca_ood" or (family.startswith("IBP") and r.task != "molecule")]
        for st in studies:
            if st != "phenoca_ood":
                n = r.n_train_wells
            elif ood_x == "ood_molecules":
                n = r.n_ood_compounds
                if not n > 0:
                    continue
            else:
                n = r.n_train_compounds
            rows.append(
                {
                    "dataset": r.dataset,
                    "study": st,
                    "task": task,
                    "family": family,
                    "n": float(n),
                    "metric": float(r.value),
                    "run": f"{r.model}",
                    "model_size": float(r.params),
                }
            )
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def fraction_points(
    evaluation: pd.DataFrame, train_wells: dict[str, int], dataset: str, tasks: dict[tuple[str, str], str] | None = None
) -> pd.DataFrame:
    """Scaling points of MOAProfiler's replicate-fraction study: ``evaluation_results`` rows at every fraction,
    x = the fraction's training wells (``train_wells``: fraction key -> count)."""
    tasks = tasks or {("knn", "best_f1"): "knn_f1", ("latent", "f1"): "latent_f1"}
    rows = []
    for r in evaluation.itertuples(index=False):
        task = tasks.get((r.analysis, r.metric))
        if task is None or str(r.fraction) not in train_wells:
            continue
        rows.append(
            {
                "dataset": dataset,
                "study": "mp_fractions",
                "task": task,
                "family": r.method,
                "n": float(train_wells[str(r.fraction)]),
                "metric": float(r.value),
                "run": r.method,
                "model_size": float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def fit_curves(
    points: pd.DataFrame,
    *,
    targets: dict[tuple[str, str], float] | None = None,
    n_boot: int = 1000,
    cost_per_compound: float | None = 100.0,
    replicates: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit every (dataset, study, task, family) curve of ``points``; one ``scaling_laws`` row per law form.

    ``targets`` maps (study, task) to the metric whose N is asked (default: halfway from the
    best observed value to 1). The best-of-zoo envelope is fitted where a curve has several
    runs per size. Curves with fewer than three sizes, or whose fit fails, get one row with
    the reason and no numbers.
    """
    out = []
    for keys, g in points.groupby(CURVE_KEYS, sort=True):
        key = dict(zip(CURVE_KEYS, keys))
        pts = g[["n", "metric", "run"]].copy()
        if pts.groupby("n")["run"].nunique().max() > 1:  # the zoo: its best model per size (bootstrap over sizes)
            pts = pts.groupby("n", as_index=False, sort=True)["metric"].max()
        best = float(pts["metric"].max())
        target = (targets or {}).get((key["study"], key["task"]), best + (1 - best) / 2)
        try:
            rep = fit_scaling_laws(
                pts,
                n_boot=n_boot,
                target=min(target, 0.999),
                seed=seed,
                cost_per_compound=cost_per_compound if key["study"] == "phenoca_ood" else None,
                replicates=replicates,
            )
            table = rep.table()
        except ScalingError as exc:
            table = pd.DataFrame(
                [
                    {c: None for c in SCALING_LAW_COLUMNS}
                    | {"form": None, "reason": str(exc), "reliable": False, "flagged": True}
                ]
            )
        for k, v in key.items():
            table.insert(list(key).index(k), k, v)
        out.append(table)
    if not out:
        return typed_laws(pd.DataFrame(columns=CURVE_KEYS + list(SCALING_LAW_COLUMNS)))
    return typed_laws(pd.concat(out, ignore_index=True))


_TEXT = {"form", "params", "params_low", "params_high", "reason", "resample"}
_BOOL = {"flagged", "reliable"}


def typed_laws(laws: pd.DataFrame) -> pd.DataFrame:
    """``scaling_laws`` rows with fixed column types (text, boolean, float), whatever is missing.

    A curve that could not be fitted has only NULLs in most columns; without fixed types the
    first such table written would give DuckDB NULL-typed columns that later rows cannot fill.
    """
    out = laws.copy()
    for c in out.columns:
        if c in CURVE_KEYS or c in _TEXT:
            out[c] = out[c].astype("string")
        elif c in _BOOL:
            out[c] = out[c].astype("boolean")
        else:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    return out
