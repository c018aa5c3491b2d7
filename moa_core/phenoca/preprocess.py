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

   **Out of core.** Every step also takes the features as a separate float32 matrix
   (``matrix=``, rows aligned with the metadata table), so a JUMP-sized release
   (~750,000 wells) is never copied into a float64 frame: the per-plate statistics are
   computed plate by plate, :meth:`Preprocessor.transform` works in row chunks, and above
   :data:`STREAMED_PCA_ELEMENTS` training values the PCA is fitted from the streamed
   Gram matrix (``sum x xᵀ`` and ``sum x`` over chunks of training wells, then
   ``eigh`` of the covariance): exactly scikit-learn's ``svd_solver="covariance_eigh"``
   (the same formulas, eigenvector signs and attributes; equal to it, tested), with the
   memory of one chunk plus a ``d × d`` matrix instead of the whole training matrix.
   :attr:`Preprocessor.explained_variance` reports the variance kept.

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

__all__ = [
    "METHODS",
    "STREAMED_PCA_ELEMENTS",
    "Preprocessor",
    "fit_preprocessor",
    "validate_matrix",
    "validate_profiles",
]

#: Training values (wells x features) above which the PCA is fitted from the streamed Gram matrix.
STREAMED_PCA_ELEMENTS = 2**26
#: Rows per chunk of the out-of-core steps.
CHUNK_ROWS = 32_768

METHODS = ("robust", "dmso")
COMPOUND_COL = "Metadata_JCP2022"
PLATE_COL = "Metadata_Plate"
WELL_COL = "Metadata_Well"
PERT_TYPE_COL = "Metadata_pert_type"
NEGCON_TYPE = "negcon"


def _check_finite(
    df: pd.DataFrame,
    feature_cols: Sequence[str],
    plate_col: str,
    well_col: str,
    matrix: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> None:
    """NaN/inf in the features raise naming column, plate and well; ``matrix`` (rows ``rows`` of it, aligned
    with ``df``'s rows) is checked a chunk at a time."""
    if matrix is not None:
        rows = np.arange(len(df)) if rows is None else rows
        for a in range(0, len(rows), CHUNK_ROWS):
            part = np.asarray(matrix[rows[a : a + CHUNK_ROWS]])
            if not np.isfinite(part).all():
                _report_nonfinite(df.iloc[a : a + CHUNK_ROWS], part, feature_cols, plate_col, well_col)
        return
    _report_nonfinite(df, df[list(feature_cols)].to_numpy(np.float64), feature_cols, plate_col, well_col)


def _report_nonfinite(
    df: pd.DataFrame, x: np.ndarray, feature_cols: Sequence[str], plate_col: str, well_col: str
) -> None:
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


def validate_matrix(
    meta: pd.DataFrame,
    matrix: np.ndarray,
    feature_names: Sequence[str],
    *,
    compound_col: str = COMPOUND_COL,
    plate_col: str = PLATE_COL,
    well_col: str = WELL_COL,
) -> list[str]:
    """:func:`validate_profiles` for a table given as metadata + a separate feature matrix (out of core).

    ``matrix`` is ``(len(meta), len(feature_names))`` of floats (float32 keeps a JUMP release at half the
    memory of a float64 frame); it is checked for NaN/inf a chunk at a time.
    """
    for col, what in ((compound_col, "compound"), (plate_col, "plate")):
        if col not in meta.columns:
            raise SchemaError(f"profile table lacks the {what} column {col!r}")
    if len(meta) == 0:
        raise SchemaError("profile table is empty (no wells)")
    names = [str(c) for c in feature_names]
    if not names:
        raise SchemaError("no feature names given for the feature matrix")
    if getattr(matrix, "ndim", 0) != 2 or matrix.shape != (len(meta), len(names)):
        raise SchemaError(
            f"feature matrix has shape {getattr(matrix, 'shape', None)}, expected {(len(meta), len(names))} "
            f"(one row per well of the metadata, one column per feature name)"
        )
    if not np.issubdtype(matrix.dtype, np.floating):
        raise SchemaError(f"feature matrix must be float (dtype {matrix.dtype})")
    _check_finite(meta, names, plate_col, well_col, matrix)
    return names


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

    @property
    def explained_variance(self) -> float | None:
        """Share of the clipped training wells' variance the kept PCA components explain (None without PCA)."""
        return float(np.sum(self.pca.explained_variance_ratio_)) if self.pca is not None else None

    def _check_input(self, df: pd.DataFrame, matrix: np.ndarray | None) -> None:
        need = [self.plate_col] if matrix is not None else [self.plate_col, *self.feature_cols]
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise SchemaError(f"table to transform lacks column(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if matrix is not None and matrix.shape != (len(df), len(self.feature_cols)):
            raise SchemaError(
                f"feature matrix has shape {matrix.shape}, expected {(len(df), len(self.feature_cols))} "
                f"(the fitted features: {self.feature_cols[:3]} ...)"
            )
        _check_finite(df, self.feature_cols, self.plate_col, self.well_col, matrix)

    def _plate_stats(self, df: pd.DataFrame, matrix: np.ndarray | None) -> dict:
        """Location and divisor of every plate of ``df`` the fit did not see (``"dmso"``: its own DMSO wells)."""
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
        stats = {}
        for p in unseen:
            if self.pert_type_col not in df.columns:
                raise SchemaError(
                    f"unseen plate {p}: its DMSO wells are needed but the table lacks {self.pert_type_col!r}"
                )
            ctrl = np.flatnonzero((plates == p) & (df[self.pert_type_col].to_numpy() == NEGCON_TYPE))
            xc = (
                np.asarray(matrix[ctrl], dtype=np.float64)
                if matrix is not None
                else df[self.feature_cols].iloc[ctrl].to_numpy(np.float64)
            )
            stats[p] = _dmso_stats(xc, p, self.feature_cols)
        return stats

    def _scale_chunk(self, plates: np.ndarray, x: np.ndarray, unseen: dict) -> np.ndarray:
        """Steps 1-2 on float64 ``x`` in place (rows on ``plates``)."""
        for p in pd.unique(plates):
            rows = plates == p
            mu, s = (self.center[p], self.scale[p]) if p in self.center else unseen[p]
            x[rows] = (x[rows] - mu) / s
        if self.clip is not None:
            np.clip(x, -self.clip, self.clip, out=x)
        return x

    def scale_plates(self, df: pd.DataFrame, matrix: np.ndarray | None = None) -> np.ndarray:
        """Steps 1-2 (per-plate scaling, clipping) of ``df``'s features: float64 ``(n_wells, n_features)``.

        ``matrix``: the features as a separate array aligned with ``df``'s rows (then ``df`` needs only
        the plate column, and the pert-type column for unseen plates).

        Raises
        ------
        SchemaError
            Missing plate or feature columns; NaN/inf features (named).
        NormalizationError
            A plate unseen at fit time (``"robust"``), or, for ``"dmso"``, an unseen plate
            with fewer than 2 DMSO wells or a zero DMSO SD (named).
        """
        self._check_input(df, matrix)
        unseen = self._plate_stats(df, matrix)
        x = (
            np.array(matrix, dtype=np.float64, copy=True)
            if matrix is not None
            else df[self.feature_cols].to_numpy(np.float64, copy=True)
        )
        return self._scale_chunk(df[self.plate_col].to_numpy(), x, unseen)

    def transform(
        self, df: pd.DataFrame, matrix: np.ndarray | None = None, *, chunk_rows: int = CHUNK_ROWS
    ) -> np.ndarray:
        """Preprocess ``df`` (same rows, same order): float32 ``(n_wells, n_components)``.

        Works ``chunk_rows`` wells at a time (memory: the float32 output plus one float64 chunk); a table
        of at most ``chunk_rows`` wells is transformed in one piece.
        """
        self._check_input(df, matrix)
        unseen = self._plate_stats(df, matrix)
        plates = df[self.plate_col].to_numpy()
        out = np.empty((len(df), self.n_components), dtype=np.float32)
        for a in range(0, len(df), chunk_rows):
            b = min(a + chunk_rows, len(df))
            x = (
                np.array(matrix[a:b], dtype=np.float64, copy=True)
                if matrix is not None
                else df[self.feature_cols].iloc[a:b].to_numpy(np.float64, copy=True)
            )
            z = self._scale_chunk(plates[a:b], x, unseen)
            out[a:b] = self.pca.transform(z) if self.pca is not None else z
        return out


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
    matrix: np.ndarray | None = None,
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
    matrix
        The features as a separate float array aligned with ``df``'s rows (``df`` then needs only the
        metadata): the out-of-core path, see the module docstring.

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
    need = [plate_col] if matrix is not None else [plate_col, *feature_cols]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise SchemaError(f"profile table lacks column(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if matrix is not None and matrix.shape != (len(df), len(feature_cols)):
        raise SchemaError(f"feature matrix has shape {matrix.shape}, expected {(len(df), len(feature_cols))}")
    mask = np.asarray(train_mask)
    if mask.dtype != bool:
        raise SchemaError(f"train_mask must be boolean (dtype {mask.dtype}); pass e.g. labels == 'train'")
    if mask.shape != (len(df),):
        raise SchemaError(f"train_mask has shape {mask.shape}, the table has {len(df)} rows")
    if not mask.any():
        raise SchemaError("train_mask selects no training well")
    if method == "dmso" and pert_type_col not in df.columns:
        raise SchemaError(f"method='dmso' needs the {pert_type_col!r} column to find DMSO wells")

    train_rows = np.flatnonzero(mask)
    train = df.iloc[train_rows]
    _check_finite(train, feature_cols, plate_col, well_col, matrix, train_rows)

    def plate_x(pos: np.ndarray) -> np.ndarray:  # float64 features of training wells ``pos`` (positions in train)
        if matrix is not None:
            return np.asarray(matrix[train_rows[pos]], dtype=np.float64)
        return train[feature_cols].iloc[pos].to_numpy(np.float64)

    plates = train[plate_col].to_numpy()
    by_plate = pd.Series(np.arange(len(plates))).groupby(plates, sort=False).indices
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
            xp = plate_x(by_plate[p])
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
            pos = by_plate[p]
            center[p], scale[p] = _dmso_stats(plate_x(pos[is_ctl[pos]]), p, feature_cols)
            n_used[p] = int(is_ctl[pos].sum())

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
        if len(train_rows) * len(feature_cols) > STREAMED_PCA_ELEMENTS:
            pre.pca = _streamed_pca(pre, plates, matrix, train, train_rows, pca_components, whiten, seed)
        else:
            z = pre.scale_plates(train, None if matrix is None else np.asarray(matrix[train_rows]))
            pca = PCA(n_components=pca_components, whiten=whiten, random_state=seed)
            pca.fit(z)
            pre.pca = pca
    return pre


def _streamed_pca(
    pre: Preprocessor,
    plates: np.ndarray,
    matrix: np.ndarray | None,
    train: pd.DataFrame,
    train_rows: np.ndarray,
    n_components: int | float | None,
    whiten: bool,
    seed: int,
) -> PCA:
    """scikit-learn's ``PCA(svd_solver="covariance_eigh")`` fitted from ``sum z zᵀ`` and ``sum z`` accumulated
    over chunks of the scaled, clipped training wells ``z`` (the same formulas, signs and attributes)."""
    from sklearn.utils.extmath import svd_flip

    d, n = len(pre.feature_cols), len(train_rows)
    gram = np.zeros((d, d))
    total = np.zeros(d)
    for a in range(0, n, CHUNK_ROWS):
        b = min(a + CHUNK_ROWS, n)
        x = (
            np.array(matrix[train_rows[a:b]], dtype=np.float64)
            if matrix is not None
            else train[pre.feature_cols].iloc[a:b].to_numpy(np.float64, copy=True)
        )
        z = pre._scale_chunk(plates[a:b], x, {})
        gram += z.T @ z
        total += z.sum(axis=0)
    mean = total / n
    cov = (gram - n * np.outer(mean, mean)) / (n - 1)
    eigenvals, eigenvecs = np.linalg.eigh(cov)
    eigenvals, eigenvecs = eigenvals[::-1].copy(), eigenvecs[:, ::-1]
    eigenvals[eigenvals < 0.0] = 0.0
    _, vt = svd_flip(None, np.ascontiguousarray(eigenvecs.T), u_based_decision=False)
    ratio = eigenvals / eigenvals.sum()
    full = min(n, d)
    if n_components is None:
        k = full
    elif isinstance(n_components, float) and 0 < n_components < 1:
        k = int(np.searchsorted(np.cumsum(ratio), n_components, side="right") + 1)
    elif isinstance(n_components, (int, np.integer)) and 0 < n_components <= full:
        k = int(n_components)
    else:
        raise SchemaError(
            f"pca_components must be None, an int in [1, {full}] or a float in (0, 1), got {n_components!r}"
        )
    pca = PCA(n_components=n_components, whiten=whiten, svd_solver="covariance_eigh", random_state=seed)
    pca.n_features_in_ = d
    pca._fit_svd_solver = "covariance_eigh"
    pca.mean_ = mean
    pca.n_samples_ = n
    pca.n_components_ = k
    pca.components_ = np.ascontiguousarray(vt[:k])
    pca.explained_variance_ = eigenvals[:k].copy()
    pca.explained_variance_ratio_ = ratio[:k].copy()
    pca.singular_values_ = np.sqrt(eigenvals[:k] * (n - 1))
    pca.noise_variance_ = float(np.mean(eigenvals[k:])) if k < full else 0.0
    return pca
