"""Pheno-CA preprocessing of well-level profiles, fitted on training wells only.

Linsley et al. ("Neural scaling laws for phenotypic drug discovery", Methods,
"Preprocessing"): well-level CellProfiler vectors are normalized per plate by
subtracting the plate's median and dividing by its inter-quartile range (Wong et al.
2023), then PCA-whitened before training. Here every statistic is *fitted on the
training wells only*, so a held-out (validation/test/excluded) well never influences
the transform of any other well:

1. **Per-plate scaling** (``method``), for feature ``f`` on plate ``p`` with training
   wells ``T_p``:

   * ``"robust"`` (the paper's)::

         x' = (x - median_{T_p}(x)) / (IQR_{T_p}(x) + eps)

     ``IQR = q75 - q25`` (``numpy.percentile``, linear interpolation); ``eps`` keeps
     near-constant features finite. ``T_p`` holds every training well of the plate
     (DMSO, OOD and annotated training wells alike).
   * ``"dmso"`` (the project's DMSO standardization, Wong et al. 2023; identical to
     :func:`moa_core.profiles.normalize.standardize_to_controls` with
     ``control_mask = DMSO & train``)::

         x' = (x - mean_{D_p}(x)) / SD_{D_p}(x)

     over the plate's training DMSO wells ``D_p`` (``Metadata_pert_type == "negcon"``),
     population SD (``ddof=0``). A zero SD raises (naming plate and column) instead of
     silently dropping the column, because a fitted transform must keep a fixed
     feature set.

2. **Clipping** to ``[-clip, clip]`` (``clip=None``: none).
3. **PCA whitening** (``sklearn.decomposition.PCA(whiten=True)``) fitted on the clipped
   training wells; ``pca_components`` is passed to ``PCA(n_components=...)`` (None: all
   ``min(n_train, n_features)`` components; an int: that many; a float in (0, 1): the
   share of variance to keep). ``whiten=False`` with ``pca_components=None`` skips PCA;
   ``whiten=False`` with ``pca_components`` set projects without whitening.

:meth:`Preprocessor.transform` applies the stored statistics to any table. A plate that
had no training wells at fit time is *unseen*: with ``"robust"`` it raises naming the
plate (there is no training statistic for it, and using the plate's own held-out wells
would leak them into each other's transform); with ``"dmso"`` it is standardized to its
own DMSO wells in the transformed table (DMSO wells are controls, never evaluation
wells; this is the usual practice for new plates) — those plates are listed in
:attr:`Preprocessor.last_unseen_plates`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from moa_core.errors import NormalizationError, SchemaError

__all__ = ["METHODS", "Preprocessor", "fit_preprocessor", "validate_profiles"]

METHODS = ("robust", "dmso")
COMPOUND_COL = "Metadata_JCP2022"
PLATE_COL = "Metadata_Plate"
WELL_COL = "Metadata_Well"
PERT_TYPE_COL = "Metadata_pert_type"
NEGCON_TYPE = "negcon"


def _check_finite(df: pd.DataFrame, feature_cols: Sequence[str], plate_col: str, well_col: str) -> None:
    x = df[list(feature_cols)].to_numpy(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        per_col = bad.sum(axis=0)
        r, c = np.argwhere(bad)[0]
        row = df.iloc[r]
        cols = [feature_cols[j] for j in np.flatnonzero(per_col)]
        raise SchemaError(
            f"non-finite feature value (NaN/inf) in column {feature_cols[c]!r} at plate "
            f"{row.get(plate_col)!s} well {row.get(well_col)!s}: {int(bad.sum())} non-finite value(s) in "
            f"{len(cols)} column(s) ({cols[:5]}{' ...' if len(cols) > 5 else ''}); clean or impute features "
            f"first (moa_core.profiles.normalize.clean_features)"
        )


def validate_profiles(
    df: pd.DataFrame,
    *,
    compound_col: str = COMPOUND_COL,
    plate_col: str = PLATE_COL,
    well_col: str = WELL_COL,
) -> list[str]:
    """Check a well-level profile table and return its feature columns.

    Features are every column not prefixed ``Metadata_`` (pycytominer's convention).

    Raises
    ------
    SchemaError
        The compound (``compound_col``) or plate (``plate_col``) column is missing; the
        table is empty; it has no feature column; a feature column is not numeric (named);
        a feature value is NaN/inf (the message names the column, a plate and well, and
        the number of bad values).
    """
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"expected a pandas DataFrame of well profiles, got {type(df).__name__}")
    for col, what in ((compound_col, "compound"), (plate_col, "plate")):
        if col not in df.columns:
            raise SchemaError(f"profile table lacks the {what} column {col!r}")
    if df.empty:
        raise SchemaError("profile table is empty (no wells)")
    feats = [c for c in df.columns if not str(c).startswith("Metadata_")]
    if not feats:
        raise SchemaError("profile table has no feature column (every column starts with 'Metadata_')")
    non_num = [c for c in feats if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]
    if non_num:
        raise SchemaError(f"feature column(s) {non_num[:5]} are not numeric (dtype {df[non_num[0]].dtype})")
    _check_finite(df, feats, plate_col, well_col)
    return feats


@dataclass
class Preprocessor:
    """Fitted Pheno-CA preprocessing (see the module docstring for the definitions).

    Attributes
    ----------
    feature_cols : list of str
        Input features, in order.
    method : str
        ``"robust"`` (median/IQR of training wells) or ``"dmso"`` (mean/SD of training DMSO).
    clip : float or None
        Clipping bound after per-plate scaling.
    eps : float
        Added to the IQR (``"robust"``).
    center, scale : dict
        Plate -> float64 ``(n_features,)`` location and divisor: ``x' = (x - center) / scale``
        (``scale`` already includes ``eps`` for ``"robust"``).
    n_train_wells : dict
        Plate -> number of wells the plate's statistics were computed from.
    pca : sklearn PCA or None
        Fitted on the clipped training wells (``pca.n_samples_`` = number of training wells).
    n_fit_wells : int
        Training wells the PCA (and the per-plate statistics together) were fitted on.
    plate_col, well_col, pert_type_col : str
        Column names used.
    last_unseen_plates : list
        Plates standardized to their own DMSO wells by the last :meth:`transform`
        (``"dmso"`` only).
    """

    feature_cols: list[str]
    method: str
    clip: float | None
    eps: float
    center: dict[object, np.ndarray]
    scale: dict[object, np.ndarray]
    n_train_wells: dict[object, int]
    pca: PCA | None
    n_fit_wells: int
    plate_col: str = PLATE_COL
    well_col: str = WELL_COL
    pert_type_col: str = PERT_TYPE_COL
    last_unseen_plates: list = field(default_factory=list)

    @property
    def n_components(self) -> int:
        """Output dimension of :meth:`transform`."""
        return int(self.pca.n_components_) if self.pca is not None else len(self.feature_cols)

    def scale_plates(self, df: pd.DataFrame) -> np.ndarray:
        """Steps 1-2 (per-plate scaling, clipping) of ``df``'s features: float64 ``(n_wells, n_features)``.

        Raises
        ------
        SchemaError
            Missing plate or feature columns; NaN/inf features (named).
        NormalizationError
            A plate unseen at fit time (``"robust"``), or, for ``"dmso"``, an unseen plate
            with fewer than 2 DMSO wells or a zero DMSO SD (named).
        """
        missing = [c for c in [self.plate_col, *self.feature_cols] if c not in df.columns]
        if missing:
            raise SchemaError(f"table to transform lacks column(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        _check_finite(df, self.feature_cols, self.plate_col, self.well_col)
        x = df[self.feature_cols].to_numpy(np.float64, copy=True)
        plates = df[self.plate_col].to_numpy()
        uniq = pd.unique(plates)
        unseen = [p for p in uniq if p not in self.center]
        if unseen and self.method == "robust":
            raise NormalizationError(
                f"plate(s) {unseen[:5]} had no training wells when the preprocessor was fitted; "
                f"'robust' statistics come from training wells only (refit including the plate's training wells, "
                f"or use method='dmso', which standardizes a new plate to its own DMSO wells)"
            )
        self.last_unseen_plates = list(unseen)
        for p in uniq:
            rows = plates == p
            if p in self.center:
                mu, s = self.center[p], self.scale[p]
            else:
                if self.pert_type_col not in df.columns:
                    raise SchemaError(
                        f"unseen plate {p}: its DMSO wells are needed but the table lacks {self.pert_type_col!r}"
                    )
                ctrl = rows & (df[self.pert_type_col].to_numpy() == NEGCON_TYPE)
                mu, s = _dmso_stats(x[ctrl], p, self.feature_cols)
            x[rows] = (x[rows] - mu) / s
        if self.clip is not None:
            np.clip(x, -self.clip, self.clip, out=x)
        return x

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Preprocess ``df`` (same rows, same order): float32 ``(n_wells, n_components)``."""
        x = self.scale_plates(df)
        if self.pca is not None:
            x = self.pca.transform(x)
        return x.astype(np.float32)


def _dmso_stats(xc: np.ndarray, plate: object, feature_cols: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    if len(xc) < 2:
        raise NormalizationError(
            f"plate {plate} has {len(xc)} (training) DMSO well(s); DMSO standardization needs at least 2"
        )
    mu = xc.mean(axis=0)
    sd = xc.std(axis=0, ddof=0)
    zero = ~(sd > 0)
    if zero.any():
        raise NormalizationError(
            f"plate {plate}: DMSO SD is 0 for column {feature_cols[int(np.argmax(zero))]!r} "
            f"({int(zero.sum())} column(s)); drop constant features first or use method='robust'"
        )
    return mu, sd


def fit_preprocessor(
    df: pd.DataFrame,
    feature_cols: Sequence[str],
    train_mask: np.ndarray | pd.Series,
    *,
    method: str = "robust",
    clip: float | None = 5.0,
    whiten: bool = True,
    pca_components: int | float | None = None,
    eps: float = 0.01,
    plate_col: str = PLATE_COL,
    well_col: str = WELL_COL,
    pert_type_col: str = PERT_TYPE_COL,
    seed: int = 0,
) -> Preprocessor:
    """Fit the Pheno-CA preprocessing on the training wells of ``df``.

    Parameters
    ----------
    df
        Well-level profiles (all wells; only rows with ``train_mask`` True are used).
    feature_cols
        Features to use (e.g. :func:`validate_profiles`'s result).
    train_mask
        Boolean per row: True for training wells (e.g. ``split.labels == "train"``).
    method, clip, whiten, pca_components, eps
        See the module docstring.
    seed
        ``random_state`` of the PCA (only used by randomized solvers).

    Raises
    ------
    SchemaError
        Bad ``method``/``clip``/``eps``; ``train_mask`` not boolean or of the wrong length;
        no training well; missing columns or NaN/inf features (named).
    NormalizationError
        ``"robust"``: a plate of ``df`` with fewer than 2 training wells (named; its wells
        could never be transformed). ``"dmso"``: a plate with training wells but fewer
        than 2 training DMSO wells, or a zero DMSO SD (named).
    """
    if method not in METHODS:
        raise SchemaError(f"method must be one of {METHODS}, got {method!r}")
    if clip is not None and not clip > 0:
        raise SchemaError(f"clip must be > 0 or None, got {clip!r}")
    if not eps >= 0:
        raise SchemaError(f"eps must be >= 0, got {eps!r}")
    feature_cols = list(feature_cols)
    if not feature_cols:
        raise SchemaError("no feature columns given")
    missing = [c for c in [plate_col, *feature_cols] if c not in df.columns]
    if missing:
        raise SchemaError(f"profile table lacks column(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    mask = np.asarray(train_mask)
    if mask.dtype != bool:
        raise SchemaError(f"train_mask must be boolean (dtype {mask.dtype}); pass e.g. labels == 'train'")
    if mask.shape != (len(df),):
        raise SchemaError(f"train_mask has shape {mask.shape}, the table has {len(df)} rows")
    if not mask.any():
        raise SchemaError("train_mask selects no training well")
    if method == "dmso" and pert_type_col not in df.columns:
        raise SchemaError(f"method='dmso' needs the {pert_type_col!r} column to find DMSO wells")

    train = df.loc[mask]
    _check_finite(train, feature_cols, plate_col, well_col)
    x = train[feature_cols].to_numpy(np.float64)
    plates = train[plate_col].to_numpy()
    center: dict[object, np.ndarray] = {}
    scale: dict[object, np.ndarray] = {}
    n_used: dict[object, int] = {}
    if method == "robust":
        seen = set(pd.unique(plates))
        no_train = [p for p in pd.unique(df[plate_col]) if p not in seen]
        counts = pd.Series(plates).value_counts()
        few = list(counts.index[counts < 2])
        if no_train or few:
            bad = no_train + few
            raise NormalizationError(
                f"plate(s) {bad[:5]}{' ...' if len(bad) > 5 else ''} have fewer than 2 training wells; "
                f"per-plate median/IQR come from training wells only"
            )
        for p in pd.unique(plates):
            xp = x[plates == p]
            q25, med, q75 = np.percentile(xp, [25, 50, 75], axis=0)
            center[p], scale[p], n_used[p] = med, (q75 - q25) + eps, len(xp)
        if eps == 0:
            for p, s in scale.items():
                if not (s > 0).all():
                    raise NormalizationError(
                        f"plate {p}: IQR is 0 for column {feature_cols[int(np.argmin(s > 0))]!r} and eps=0"
                    )
    else:
        is_ctl = train[pert_type_col].to_numpy() == NEGCON_TYPE
        for p in pd.unique(plates):
            ctl = (plates == p) & is_ctl
            center[p], scale[p] = _dmso_stats(x[ctl], p, feature_cols)
            n_used[p] = int(ctl.sum())

    pre = Preprocessor(
        feature_cols=feature_cols,
        method=method,
        clip=clip,
        eps=float(eps),
        center=center,
        scale=scale,
        n_train_wells=n_used,
        pca=None,
        n_fit_wells=int(len(train)),
        plate_col=plate_col,
        well_col=well_col,
        pert_type_col=pert_type_col,
    )
    if whiten or pca_components is not None:
        z = pre.scale_plates(train)
        pca = PCA(n_components=pca_components, whiten=whiten, random_state=seed)
        pca.fit(z)
        pre.pca = pca
    return pre
