"""The field's CellProfiler baselines, computed from well-level CP features: the JUMP profiling recipe, the
paper's optimized ("spherized") CP and cell count alone.

Each recipe returns every intermediate step (:class:`Recipe`), so the ablation
(:func:`moa_core.evaluation.ablation.ablation_table`) scores each step's effect with the same analyses.

**CP (JUMP recipe)** — the pipeline of the JUMP Cell Painting consortium's profiling recipe (Arevalo et al.
2024, "Evaluating batch correction methods for image-based cell profiling"; Chandrasekaran et al. 2023), built
from pycytominer's operations and harmonypy; no code of ``jump-profiling-recipe`` is used:

1. *variance filter* — drop features whose MAD over a plate's negative controls is 0 on any plate (they
   cannot be robustized) and pycytominer's ``variance_threshold`` (near-zero variance: ``freq_cut``,
   ``unique_cut``) over all wells;
2. *MAD robustize* — per plate, ``(x - median) / (1.4826 MAD)`` of the plate's negative controls
   (pycytominer's ``RobustMAD``, fitted on the controls, epsilon 0);
3. *INT* — rank-based inverse normal transform of each feature over all wells (pycytominer's
   ``InverseNormalTransform``: sklearn's ``QuantileTransformer`` with a normal output, which maps the
   empirical CDF by interpolation and bounds the tails at ±5.2, where the recipe's own INT is Blom's
   ``Φ⁻¹((r - 3/8) / (n + 1/4))``; the two agree to rank order);
4. *feature selection* — pycytominer's ``feature_select`` with ``variance_threshold``,
   ``correlation_threshold`` (0.9), ``drop_na_columns`` and ``blocklist``;
5. *Harmony* — harmonypy on the selected features (the recipe, too, runs it on the features, not on PCs),
   batch = the first of ``Metadata_Source``, ``Metadata_Batch``, ``Metadata_Plate`` with more than one level
   in the data (a single-plate dataset skips the step, and the recipe says so).

Differences from the recipe: no outlier clipping step; INT as above; Harmony's batch key is chosen from what
the dataset has (the recipe fixes ``Metadata_Source`` for cpg0016 compounds).

**CP spherized** — Wong et al. 2023 (ESI Figs. 4 and 6) compared MP with heavily optimized CP profiles:
per-plate DMSO standardization (:func:`~moa_core.profiles.normalize.standardize_to_controls`), pycytominer's
feature selection as above, then ZCA-cor sphering fitted on all negative-control wells (pycytominer's
``Spherize``, epsilon 1e-6) applied to every well. Per-plate centring leaves the controls a rank of (controls -
plates), which pycytominer's rank check refuses on multi-plate data; it is then fitted on points with the same
mean and covariance (:func:`_spanning_points`).

**cell count** — cells per well (Seal et al. 2026's baseline). The paper's analyses compare wells by Pearson
correlation across features, which a single number does not have; the count is therefore standardized to the
plate's controls (``z``) and written as a soft histogram on a fixed grid (``CellCount_z±k``: Gaussian bumps of
width :data:`COUNT_BUMP_SD` centred every :data:`COUNT_BUMP_STEP` from -6 to 6, counts beyond clipped), so that
two wells correlate by how close their counts are, and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from moa_core.errors import NormalizationError, SchemaError
from moa_core.profiles.normalize import feature_columns, standardize_to_controls

PLATE = "Metadata_Plate"
#: Harmony's batch key: the first of these with more than one level in the data.
BATCH_COLUMNS = ("Metadata_Source", "Metadata_Batch", "Metadata_Plate")
#: pycytominer's feature-selection operations used by both CP recipes.
FEATURE_SELECT_OPERATIONS = ("variance_threshold", "correlation_threshold", "drop_na_columns", "blocklist")
JUMP_STEPS = ("variance filter", "MAD robustize", "INT", "feature selection", "Harmony")
SPHERIZE_STEPS = ("DMSO standardize", "feature selection", "spherize")
#: Cell count columns, first found wins: the project's segmentation, then published Count features.
COUNT_COLUMNS = ("Metadata_Count_Cells", "Count_Cells", "Cells_Number_Object_Number", "Metadata_Object_Count")
COUNT_BUMP_STEP = 0.5
COUNT_BUMP_SD = 0.5
COUNT_BUMP_RANGE = 6.0


@dataclass
class Recipe:
    """Every step's well table (``steps``, in order; the last is the recipe's output) and what each did."""

    name: str
    steps: dict[str, pd.DataFrame] = field(default_factory=dict)
    report: list[dict] = field(default_factory=list)

    @property
    def output(self) -> pd.DataFrame:
        return next(reversed(self.steps.values()))

    def add(self, step: str, df: pd.DataFrame, **facts) -> None:
        self.steps[step] = df
        self.report.append({"recipe": self.name, "step": step, "features": len(feature_columns(df)), **facts})


def _meta(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if str(c).startswith("Metadata_")]


def _require_controls(df: pd.DataFrame, control_mask: np.ndarray, minimum: int, what: str) -> None:
    n = pd.Series(control_mask, index=df.index).groupby(df[PLATE]).sum()
    few = n[n < minimum]
    if len(few):
        raise NormalizationError(
            f"{what}: plate(s) {', '.join(map(str, few.index[:10]))} have {', '.join(map(str, few.to_numpy()[:10]))} "
            f"negative-control well(s), at least {minimum} needed per plate (the dataset's `controls` decide which "
            f"wells are controls)"
        )


def _check_input(df: pd.DataFrame, features: Sequence[str], what: str) -> np.ndarray:
    if PLATE not in df.columns:
        raise SchemaError(f"{what}: no {PLATE} column")
    if not features:
        raise SchemaError(f"{what}: no feature columns")
    x = df[list(features)].to_numpy(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise SchemaError(
            f"{what}: non-finite value in column {features[c]!r} for plate {df[PLATE].iloc[r]} well "
            f"{df['Metadata_Well'].iloc[r] if 'Metadata_Well' in df else r} ({int(bad.sum())} in total); "
            f"clean features first (moa_core.profiles.normalize.clean_features)"
        )
    return x


def variance_filter(df: pd.DataFrame, features: Sequence[str], control_mask: np.ndarray) -> list[str]:
    """Features kept by the recipe's variance filter: a non-zero MAD over every plate's controls and
    pycytominer's ``variance_threshold`` over all wells."""
    from pycytominer import feature_select
    from scipy.stats import median_abs_deviation

    ctrl = df.loc[control_mask, [PLATE, *features]]
    mad = ctrl.groupby(PLATE)[list(features)].agg(lambda v: median_abs_deviation(v, nan_policy="omit"))
    variant = [f for f in features if bool((mad[f] > 0).all())]
    kept = feature_select(df[variant], features=variant, operation="variance_threshold")
    return [f for f in variant if f in kept.columns]


def mad_robustize(df: pd.DataFrame, features: Sequence[str], control_mask: np.ndarray) -> pd.DataFrame:
    """Per plate, pycytominer's ``RobustMAD`` fitted on the plate's controls, applied to all its wells."""
    from pycytominer.operations.transform import RobustMAD

    out = df.copy()
    feats = list(features)
    mask = pd.Series(control_mask, index=df.index)
    for _, idx in df.groupby(PLATE).groups.items():
        scaler = RobustMAD(epsilon=0).fit(df.loc[idx[mask.loc[idx].to_numpy()], feats])
        out.loc[idx, feats] = scaler.transform(df.loc[idx, feats]).to_numpy()
    return out


def inverse_normal(df: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """pycytominer's rank-based ``InverseNormalTransform`` of each feature over all wells."""
    from pycytominer.operations.transform import InverseNormalTransform

    out = df.copy()
    out[list(features)] = InverseNormalTransform().fit_transform(df[list(features)].to_numpy())
    return out


def select_features(
    df: pd.DataFrame, features: Sequence[str], operations: Sequence[str] = FEATURE_SELECT_OPERATIONS
) -> list[str]:
    """Features kept by pycytominer's ``feature_select`` (correlation threshold 0.9, its default blocklist)."""
    from pycytominer import feature_select

    kept = feature_select(df[list(features)], features=list(features), operation=list(operations))
    return [f for f in features if f in kept.columns]


def harmony_batch_column(df: pd.DataFrame, candidates: Sequence[str] = BATCH_COLUMNS) -> str | None:
    """The first of ``candidates`` with more than one level in ``df`` (None: one batch, nothing to correct)."""
    for col in candidates:
        if col in df.columns and df[col].nunique(dropna=True) > 1:
            return col
    return None


def harmony(df: pd.DataFrame, features: Sequence[str], batch: str, seed: int = 0) -> pd.DataFrame:
    """harmonypy's correction of ``features`` for ``batch`` (wells with a blank batch are an error)."""
    import harmonypy

    if df[batch].isna().any():
        w = df.loc[df[batch].isna()].iloc[0]
        raise SchemaError(f"Harmony: blank {batch} for plate {w[PLATE]} well {w.get('Metadata_Well')}")
    x = df[list(features)].to_numpy(np.float64)
    ho = harmonypy.run_harmony(x, df[[batch]].astype(str), batch, verbose=False, random_state=seed, ncores=1)
    z = np.asarray(ho.Z_corr)
    out = df.copy()
    out[list(features)] = z if z.shape == x.shape else z.T
    return out


def jump_recipe(
    df: pd.DataFrame,
    features: Sequence[str],
    control_mask: np.ndarray,
    *,
    batch_columns: Sequence[str] = BATCH_COLUMNS,
    seed: int = 0,
) -> Recipe:
    """The JUMP profiling recipe on well-level CP features (module docstring); every step kept."""
    what = "CP (JUMP recipe)"
    control_mask = np.asarray(control_mask, bool)
    _check_input(df, features, what)
    _require_controls(df, control_mask, 2, what)
    rec = Recipe(what)
    meta = _meta(df)
    kept = variance_filter(df, list(features), control_mask)
    if not kept:
        raise NormalizationError(f"{what}: every feature has zero MAD over some plate's controls")
    cur = df[meta + kept]
    rec.add("variance filter", cur, dropped=len(features) - len(kept))
    cur = mad_robustize(cur, kept, control_mask)
    rec.add("MAD robustize", cur)
    cur = inverse_normal(cur, kept)
    rec.add("INT", cur)
    sel = select_features(cur, kept)
    cur = cur[meta + sel]
    rec.add("feature selection", cur, dropped=len(kept) - len(sel))
    batch = harmony_batch_column(cur, batch_columns)
    if batch is None:
        rec.report.append({"recipe": what, "step": "Harmony", "features": len(sel), "skipped": "one batch"})
    else:
        rec.add("Harmony", harmony(cur, sel, batch, seed), batch=batch, batches=int(cur[batch].nunique()))
    return rec


def spherize_recipe(
    df: pd.DataFrame, features: Sequence[str], control_mask: np.ndarray, *, epsilon: float = 1e-6
) -> Recipe:
    """The paper's optimized CP: DMSO standardization, feature selection, ZCA-cor sphering fitted on the
    controls (module docstring); every step kept."""
    from pycytominer.operations.transform import Spherize

    what = "CP spherized"
    control_mask = np.asarray(control_mask, bool)
    _check_input(df, features, what)
    _require_controls(df, control_mask, 2, what)
    rec = Recipe(what)
    std, zero_sd = standardize_to_controls(df, list(features), control_mask=control_mask)
    kept = feature_columns(std)
    rec.add("DMSO standardize", std, dropped=len(zero_sd))
    sel = select_features(std, kept)
    cur = std[_meta(std) + sel]
    rec.add("feature selection", cur, dropped=len(kept) - len(sel))
    x_fit = cur.loc[control_mask, sel].to_numpy(np.float64)
    sph = Spherize(epsilon=epsilon, center=True, method="ZCA-cor").fit(
        pd.DataFrame(_spanning_points(x_fit), columns=sel)
    )
    out = cur.copy()
    out[sel] = np.asarray(sph.transform(cur[sel]))
    rec.add("spherize", out, fitted_on_controls=int(control_mask.sum()), control_rank=_rank(x_fit))
    return rec


def _rank(x: np.ndarray) -> int:
    """Rank of the centred ``x`` at float32 round-off (the warehouse stores features as float32)."""
    xc = x - x.mean(0)
    sv = np.linalg.svd(xc, compute_uv=False)
    return int((sv > (sv[0] if sv.size else 0) * max(xc.shape) * np.finfo(np.float32).eps).sum())


def _spanning_points(x: np.ndarray) -> np.ndarray:
    """``x`` itself, or — when its centred rank ``r`` is below both ``n - 1`` and the number of features, as
    after per-plate centring (rank = controls - plates), which pycytominer's ``Spherize`` refuses — ``r + 1``
    points with the same mean and the same population covariance (``V S Vᵀ`` kept, on a Helmert basis), so the
    whitening fitted on them is the one ``x`` defines (up to a global scale)."""
    n, d = x.shape
    mean = x.mean(0)
    xc = x - mean
    r = _rank(x)
    if r >= n - 1 or r >= d:
        return x
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    s, vt = s[:r], vt[:r]
    helmert = np.linalg.qr(np.eye(r + 1) - 1.0 / (r + 1))[0][:, :r]  # orthonormal columns, orthogonal to 1
    return mean + helmert @ np.diag(s * np.sqrt((r + 1) / n)) @ vt


def count_column(df: pd.DataFrame, candidates: Sequence[str] = COUNT_COLUMNS) -> str | None:
    """The first cell-count column of ``df`` (None: the profiles carry no count)."""
    return next((c for c in candidates if c in df.columns), None)


def cell_count_profile(df: pd.DataFrame, control_mask: np.ndarray, column: str | None = None) -> Recipe:
    """Cells per well as a profile: the count standardized to the plate's controls, as a soft histogram
    (module docstring). Raises :class:`SchemaError` when ``df`` has no count column."""
    what = "cell count"
    column = column or count_column(df)
    if column is None or column not in df.columns:
        raise SchemaError(
            f"{what}: the profiles have none of the count columns {', '.join(COUNT_COLUMNS)} "
            f"(published profiles without Count features have no cell-count baseline)"
        )
    control_mask = np.asarray(control_mask, bool)
    base = df[_meta(df)].copy()
    base["CellCount"] = df[column].to_numpy(np.float64)
    _check_input(base, ["CellCount"], what)
    _require_controls(base, control_mask, 2, what)
    std, zero = standardize_to_controls(base, ["CellCount"], control_mask=control_mask)
    if zero:
        raise NormalizationError(f"{what}: {column} is constant over the controls of some plate")
    z = std["CellCount"].to_numpy()
    centres = np.arange(-COUNT_BUMP_RANGE, COUNT_BUMP_RANGE + 1e-9, COUNT_BUMP_STEP)
    bumps = np.exp(
        -0.5 * ((np.clip(z, -COUNT_BUMP_RANGE, COUNT_BUMP_RANGE)[:, None] - centres[None, :]) / COUNT_BUMP_SD) ** 2
    )
    out = std[_meta(std)].copy()
    for c, col in zip(centres, bumps.T):
        out[f"CellCount_z{c:+.1f}"] = col
    rec = Recipe(what)
    rec.add("count vs controls", out, column=column, median_count=float(np.median(base["CellCount"])))
    return rec
