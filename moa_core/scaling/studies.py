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
  study ``mp_fractions``, x = training wells of the fraction, a family per method whose runs are
  its training seeds (the fraction keys' seed replicates ``"50s1"``, ``"50s2"``).

:func:`curve_points` is the one rule of what a curve's fitted points are (the envelope of a zoo,
the seeds of one model kept as replicates); :func:`mp_targets` and :func:`default_target` the
targets; :func:`next_scales` the scales a curve can still grow to (for the forecast ledger,
:mod:`moa_core.scaling.ledger`), with their exact sizes (:func:`fraction_train_wells` for MOAProfiler,
:func:`phenoca_scale_sizes` of :func:`moa_core.phenoca.study.scale_counts` for the Pheno-CA studies).
:func:`fit_curve_reports` fits every (study, task, family) curve with at least three sizes and
:func:`laws_table` returns the ``scaling_laws`` rows (``SCALING_LAW_COLUMNS`` with the curve's keys;
:func:`fit_curves` does both); curves with fewer
sizes are listed with the reason, not fitted.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from moa_core.scaling.errors import ScalingError
from moa_core.scaling.fit import best_of_zoo
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
#: The x axis of each study: what N counts.
STUDY_X = {
    "phenoca_ood": "training molecules",
    "phenoca_replicates": "training wells",
    "mp_fractions": "training wells",
}


def task_source(task: str) -> tuple[str, str, str] | None:
    """The (task, split, metric) of ``phenoca_results`` a scaling task is read from (the inverse of
    :data:`PHENOCA_TASKS`), or None for a task that is not a Pheno-CA one (e.g. MP's ``knn_f1``)."""
    for source, name in PHENOCA_TASKS.items():
        if name == task:
            return source
    return None


def fraction_train_wells(splits: pd.DataFrame, fractions, *, seed: int) -> dict[str, int]:
    """MOAProfiler's x axis: the training wells of each replicate fraction of a dataset's ``splits``
    (:func:`moa_core.splits.fraction_split`, the split every fraction's model trains on)."""
    from moa_core.splits import SPLIT_COL, fraction_split

    return {str(f): int(fraction_split(splits, f, seed=seed)[SPLIT_COL].eq("train").sum()) for f in fractions}


SUPERVISION_FAMILY = {
    "ibp": "IBP",
    "ibp_invariant": "IBP invariant",
    "task": "task-supervised",
    "none": "profiles (CP)",
}


def _phenoca_studies(fraction: str, task: str, family: str | None) -> list[str]:
    """The studies a Pheno-CA row at ``fraction`` belongs to: OOD shares and 100 make the OOD study, replicate
    shares and 100 the replicate study. The OOD axis only changes what IBP trains on (task-supervised models and
    the profiles see the annotated compounds alone), and molecule deconvolution gains classes along it: those
    are on the replicate axis only. ``family`` None: every study the row's scale and task allow."""
    study = "phenoca_ood" if fraction.startswith("ood") or fraction == "100" else "phenoca_replicates"
    studies = [study] + (["phenoca_replicates"] if fraction == "100" else [])
    ibp = family is None or family.startswith("IBP")
    return [st for st in studies if st != "phenoca_ood" or (ibp and task != "molecule")]


def _phenoca_x(study: str, row, ood_x: str) -> float | None:
    """What N counts on ``study``'s axis for a row with the data-scale counts (None: no point)."""
    if study != "phenoca_ood":
        return float(row.n_train_wells)
    if ood_x == "ood_molecules":
        return float(row.n_ood_compounds) if row.n_ood_compounds > 0 else None
    return float(row.n_train_compounds)


def phenoca_scale_sizes(
    counts: pd.DataFrame, *, ood_x: str = "train_molecules"
) -> dict[tuple[str, str], dict[str, float]]:
    """``(study, task) -> {scale key: N}`` from :func:`moa_core.phenoca.study.scale_counts` (the counts a study
    trains on at each scale, materialized or not), on the axes :func:`phenoca_points` uses: the exact sizes of
    the scales a Pheno-CA curve can still grow to, for :func:`next_scales` and the forecast ledger."""
    if ood_x not in ("train_molecules", "ood_molecules"):
        raise ScalingError(f"ood_x must be 'train_molecules' or 'ood_molecules', got {ood_x!r}")
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in counts.itertuples(index=False):
        for (task, split, _), name in PHENOCA_TASKS.items():
            if split != r.split:
                continue
            for st in _phenoca_studies(str(r.fraction), task, None):
                n = _phenoca_x(st, r, ood_x)
                if n is not None:
                    out.setdefault((st, name), {})[str(r.fraction)] = n
    return out


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
        for st in _phenoca_studies(str(r.fraction), r.task, family):
            n = _phenoca_x(st, r, ood_x)
            if n is None:
                continue
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
    x = the fraction's training wells (``train_wells``: fraction key -> count).

    A method is a family; its seed replicates (fraction keys ``"50s1"``, ``"50s2"``:
    :data:`moa_core.datasets.SEED_REPLICATES`) are its further runs, ``"<method> s<seed>"``, each one
    run across the sizes (the seed-``k`` models of every fraction share their draws, nested as the
    fractions are). At a seed-replicate key only the methods trained per fraction count (MP, DP recipe:
    the registry's ``per_fraction``); a method with no training of its own (CP) repeats its seed-0
    value there, which would pass for noise-free replicates."""
    from moa_core.datasets import seed_replicate
    from moa_core.methods import METHODS

    tasks = tasks or {("knn", "best_f1"): "knn_f1", ("latent", "f1"): "latent_f1"}
    trained = {m.name for m in METHODS.values() if m.per_fraction}
    rows = []
    for r in evaluation.itertuples(index=False):
        task = tasks.get((r.analysis, r.metric))
        if task is None or str(r.fraction) not in train_wells:
            continue
        seed = seed_replicate(str(r.fraction))[1]
        if seed and r.method not in trained:
            continue
        rows.append(
            {
                "dataset": dataset,
                "study": "mp_fractions",
                "task": task,
                "family": r.method,
                "n": float(train_wells[str(r.fraction)]),
                "metric": float(r.value),
                "run": f"{r.method} s{seed}" if seed else r.method,
                "model_size": float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def curve_points(points: pd.DataFrame, model_sizes: str = "best") -> pd.DataFrame:
    """The points one curve's law is fitted to (``n, metric, run``) - the one rule the
    ``scaling_laws`` asset, the forecast ledger and the dashboard share.

    Runs of one model (seeds, or MOAProfiler's one run per method) are kept as they are: they are
    replicates. A curve that mixes model sizes (a Pheno-CA zoo, ``model_size`` varying) is reduced
    to the ``best`` model per size (the paper's best-of-zoo envelope, biased upward by the maximum
    over models: stated, not corrected) or to its ``largest`` model only. For the envelope, when
    every run is one model (the pipeline's zoo: run = model) the maximum is over all models at each
    size (the bootstrap then resamples sizes); when runs are seeds that each span several model
    sizes, it is per size and seed (:func:`moa_core.scaling.best_of_zoo`).
    """
    if model_sizes not in ("best", "largest"):
        raise ScalingError(f"model_sizes must be 'best' or 'largest', got {model_sizes!r}")
    pts = points[["n", "metric", "run"]].copy()
    pts["run"] = pts["run"].fillna("").astype(str)
    sizes = points["model_size"].dropna().unique() if "model_size" in points.columns else []
    if len(sizes) > 1:
        if model_sizes == "largest":
            pts = pts[points["model_size"].to_numpy() == max(sizes)]
        elif points.assign(run=pts["run"]).groupby("run")["model_size"].nunique().max() <= 1:  # run = model
            pts = pts.groupby("n", as_index=False, sort=True)["metric"].max()
        else:
            pts = best_of_zoo(pts)
    return pts.sort_values([c for c in ("n", "run") if c in pts.columns]).reset_index(drop=True)


def mixes_model_sizes(points: pd.DataFrame) -> bool:
    """Whether any family of ``points`` mixes model sizes (a zoo: :func:`curve_points` takes its envelope)."""
    if "model_size" not in points.columns:
        return False
    return bool((points.dropna(subset=["model_size"]).groupby("family")["model_size"].nunique() > 1).any())


def mp_targets(points: pd.DataFrame) -> dict[tuple[str, str], float]:
    """The target of MOAProfiler's replicate-fraction curves: how much data until MP meets CP's
    (flat) line - CP's mean metric over the fractions, per task."""
    targets = {}
    mp = points[points["study"].eq("mp_fractions")]
    for task, g in mp.groupby("task"):
        cp = g[g["family"].eq("CP")]["metric"]
        if len(cp):
            targets[("mp_fractions", str(task))] = float(cp.mean())
    return targets


def default_target(pts: pd.DataFrame) -> float:
    """A curve's default target: halfway from its best observed value to 1."""
    best = float(pts["metric"].max())
    return best + (1 - best) / 2


def fit_curve_reports(
    points: pd.DataFrame,
    *,
    targets: dict[tuple[str, str], float] | None = None,
    n_boot: int = 1000,
    cost_per_compound: float | None = 100.0,
    replicates: int = 1,
    seed: int = 0,
) -> list[tuple[dict, pd.DataFrame, object]]:
    """Every (dataset, study, task, family) curve of ``points`` fitted: ``(key, fitted points,
    ScalingReport or the ScalingError)``.

    ``targets`` maps (study, task) to the metric whose N is asked (default: :func:`default_target`).
    Each curve is fitted to :func:`curve_points` (the best-of-zoo envelope where it mixes model
    sizes). A curve with fewer than three sizes, or whose fit fails, carries the error, which
    :func:`laws_table` turns into one row with the reason and no numbers.
    """
    out: list[tuple[dict, pd.DataFrame, object]] = []
    for keys, g in points.groupby(CURVE_KEYS, sort=True):
        key = dict(zip(CURVE_KEYS, keys))
        pts = curve_points(g)
        target = (targets or {}).get((key["study"], key["task"]), default_target(pts))
        try:
            rep: object = fit_scaling_laws(
                pts,
                n_boot=n_boot,
                target=min(target, 0.999),
                seed=seed,
                cost_per_compound=cost_per_compound if key["study"] == "phenoca_ood" else None,
                replicates=replicates,
            )
        except ScalingError as exc:
            rep = exc
        out.append((key, pts, rep))
    return out


def laws_table(fitted: list[tuple[dict, pd.DataFrame, object]]) -> pd.DataFrame:
    """The ``scaling_laws`` rows of :func:`fit_curve_reports`' output."""
    out = []
    for key, _, rep in fitted:
        if isinstance(rep, ScalingError):
            table = pd.DataFrame(
                [
                    {c: None for c in SCALING_LAW_COLUMNS}
                    | {"form": None, "reason": str(rep), "reliable": False, "flagged": True}
                ]
            )
        else:
            table = rep.table()  # type: ignore[attr-defined]
        for k, v in key.items():
            table.insert(list(key).index(k), k, v)
        out.append(table)
    if not out:
        return typed_laws(pd.DataFrame(columns=CURVE_KEYS + list(SCALING_LAW_COLUMNS)))
    return typed_laws(pd.concat(out, ignore_index=True))


def fit_curves(points: pd.DataFrame, **settings) -> pd.DataFrame:
    """Fit every (dataset, study, task, family) curve of ``points``; one ``scaling_laws`` row per law form
    (``settings``: those of :func:`fit_curve_reports`)."""
    return laws_table(fit_curve_reports(points, **settings))


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


def next_scales(
    points: pd.DataFrame, sizes: Mapping[str | tuple[str, str], Mapping[str, float]]
) -> dict[tuple[str, str], dict[str, float]]:
    """The scales each (study, task) of ``points`` can still grow to: of ``sizes`` ({scale key: its size N} per
    study, e.g. every replicate fraction's training wells, or per (study, task), as
    :func:`phenoca_scale_sizes` gives them), those above the curve's largest N."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    if points.empty:
        return out
    for (study, task), g in points.groupby(["study", "task"], sort=True):
        n_max = float(g["n"].max())
        of = sizes.get((str(study), str(task))) or sizes.get(str(study)) or {}
        above = {k: float(v) for k, v in of.items() if float(v) > n_max * (1 + 1e-9)}
        if above:
            out[(str(study), str(task))] = above
    return out
