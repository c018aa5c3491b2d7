"""``synthetic_jump_profiles``: JUMP-like well-level profiles for the Pheno-CA study.

The embedded default dataset of the Pheno-CA study (Linsley et al., "Neural scaling laws
for phenotypic drug discovery"): annotated compounds (MoA and target known; the Pheno-CA
has 2,919 compounds, 1,282 MoAs and 942 targets), many more unannotated compounds
("out-of-distribution", OOD, of the Pheno-CA), CRISPR knockouts of genes that are targets
of annotated compounds, and DMSO negative controls on every plate, all laid out on
384-well plates across sources, batches and plates, with 3–5 replicates per perturbation.
:func:`generate_profiles` returns well-level CellProfiler-like features at the *raw*
level (arbitrary per-feature units, plate/batch/source effects included);
:func:`robust_normalize` brings them to the "normalized" level (per-plate robust z-score
to DMSO) and :func:`calibration_figures` summarizes any normalized profile table (used to
calibrate the defaults against the real LINCS plate SQ00015054).

Latent model
------------
Everything is drawn from independent random streams of ``SeedSequence(spec.seed)``, so a
seed fixes the dataset. ``d = latent_dim``; ``N(0, s²)`` draws are per latent dimension.

*Classes (long-tailed, as in JUMP).* ``M = n_moas`` MoAs, ``T = n_targets`` targets
(``M >= T``). MoA sizes ``n_m = 1 + Multinomial(N_ann - M, p_k ∝ k^-moa_zipf)`` over a
random ranking of the MoAs: every MoA has at least one compound, many exactly one, the
head is much larger than the median. MoAs are *nested in targets* (an MoA such as
"X inhibitor" acts on one target X; a target can carry several MoAs — inhibitor,
agonist...): every target gets one MoA, the other ``M - T`` MoAs go to targets with
``p_k ∝ k^-target_zipf``, so target class sizes (sums of their MoAs' sizes) are
long-tailed too. An annotated compound has MoA ``m(c)`` and target ``t(c) = parent(m(c))``.
An OOD compound has a *hidden* MoA (never reported in the profiles; kept as ground truth
in :attr:`ProfileDataset.perturbations`): with probability ``1 - ood_novel_fraction``
an annotated MoA drawn ``∝ n_m``, otherwise one of ``n_novel_moas`` novel classes (Zipf
sizes), each with its own novel target.

*Latent effects.* ``u_m ~ N(0, moa_effect²)`` per MoA, ``v_t ~ N(0, target_effect²)``
per target, ``e_c ~ N(0, compound_effect²)`` per compound::

    z_c = π_c · (u_m(c) + v_t(c) + e_c)

with potency ``π_c ~ LogNormal(log potency_median, potency_sigma²)`` for active
compounds; a share ``inactive_fraction`` (``ood_inactive_fraction`` for OOD compounds)
is inactive, ``π_c`` multiplied by ``inactive_scale`` (near-zero effect). A CRISPR
knockout of gene ``g`` (``g`` = a target ``t`` of annotated compounds) phenocopies the
compounds that inhibit ``t``: ``z_g = π_g · (v_t + u_m*(t) + e_g)``, ``m*(t)`` = the
largest MoA of ``t`` (its "inhibitor" MoA), ``e_g ~ N(0, knockout_deviation²)``. DMSO:
``z = 0``. Each well adds replicate noise in latent space: ``z_w = z_p(w) + η_w``,
``η_w ~ N(0, well_latent_noise²)`` (biological well-to-well variability, correlated
across features once mapped).

*Phenotype map (nonlinear, correlated features).* A random 2-layer network and a
low-rank mixing with a decaying spectrum::

    h1 = tanh(z W1 + b1)                        W1 ~ N(0, 1/d),  H1 = hidden_dim
    h2 = softplus(h1 W2 + b2)                   W2 ~ N(0, 1/H1), H2 = mixing_rank
    y  = c · (h2(z) - h2(0)) A diag(k^-spectrum_decay) B

``A`` a random rotation of R^H2, ``B`` (H2 x F) random orthonormal rows, ``c`` chosen so
that ``y`` has unit root-mean-square over features for ``z ~ N(0, I)``; ``y(0) = 0``.

*Measurement.* ``x_w = g_p ⊙ (y_w + ε_w + pos_w) + o_p`` and ``raw = loc + scale ⊙ x``:
``ε_w ~ N(0, feature_noise²)`` independent per feature; ``pos_w`` a well-position
effect (edge wells, row and column gradients; fixed correlated vectors, strength
``position_effect`` times a per-plate factor); plate gain ``g_p = exp(gain_sigma ·
(γ_source + γ_batch + γ_plate))`` and offset ``o_p = source_effect · o_source +
batch_effect · o_batch + plate_effect · o_plate`` (correlated vectors); per-feature
``loc``/``scale`` give CellProfiler-like arbitrary units. Per-plate normalization to
DMSO removes ``loc``, ``scale``, gains and offsets but not the position effect or noise.

*Layout and no giveaway.* DMSO wells sit at ``dmso_per_plate`` positions fixed per
source (a plate map), the same on every plate of the source. Every other well of every
plate is a slot; perturbation replicates are placed in uniformly random slots (so plate,
batch, source, row, column and edge are independent of MoA, target and OOD status by
construction), on distinct plates. Perturbation IDs (JCP2022), InChIKeys, MoA and
target names are random draws, not class- or order-coded; feature names are fixed per
``n_features`` and independent of the seed. Nothing but the phenotype carries the MoA.
CRISPR wells share the compound plates (JUMP keeps them on separate plates: a
simplification).

Schema
------
:data:`PROFILE_METADATA` then ``n_features`` float32 features named like CellProfiler's
(``Cells_AreaShape_Area``, ``Nuclei_Intensity_MeanIntensity_DNA``...). Column names
follow :data:`moa_core.profiles.published.PUBLISHED_METADATA` where it has them:

==========================  ==============================================================
``Metadata_Source``         ``source_1``...
``Metadata_Batch``          ``<source>_batch_01``...
``Metadata_Plate``          plate barcode ``SYNP000001``...
``Metadata_Well``           ``A01``...
``Metadata_JCP2022``        perturbation ID (``JCP2022_0xxxxx`` compounds, ``JCP2022_8xxxxx``
                            CRISPR, ``JCP2022_033924`` DMSO as in JUMP)
``Metadata_broad_sample``   same ID, ``DMSO`` for negative controls (the compound column
                            that :mod:`moa_core.evaluation` uses by default)
``Metadata_InChIKey``       synthetic JUMP-like InChIKey (14-10-1 letters); DMSO's real one;
                            None for CRISPR
``Metadata_pert_type``      ``compound`` | ``crispr`` | ``negcon``
``Metadata_moa``            MoA of annotated compounds; ``DMSO`` for negative controls (the
                            project's convention); None for OOD compounds and CRISPR
``Metadata_target``         target of annotated compounds; the knocked-out gene for CRISPR;
                            None otherwise
``Metadata_gene``           knocked-out gene (CRISPR only)
``Metadata_is_ood``         True for unannotated (OOD) compounds
==========================  ==============================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.phenoca.config import PLATE_SHAPES, SyntheticProfileSpec

__all__ = [
    "DATASET_NAME",
    "NEGCON",
    "PROFILE_METADATA",
    "ProfileDataset",
    "SyntheticProfileSpec",
    "calibration_figures",
    "feature_names",
    "generate_profiles",
    "plate_sized_subsample",
    "robust_normalize",
    "CALIBRATION_FACTORS",
    "calibration_agreement",
    "lincs_calibration_figures",
    "synthetic_calibration_figures",
]

DATASET_NAME = "synthetic_jump_profiles"
NEGCON = "DMSO"
NEGCON_JCP2022 = "JCP2022_033924"
NEGCON_INCHIKEY = "IAZDPXIOMUYVGZ-UHFFFAOYSA-N"

PROFILE_METADATA: list[str] = [
    "Metadata_Source",
    "Metadata_Batch",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_JCP2022",
    "Metadata_broad_sample",
    "Metadata_InChIKey",
    "Metadata_pert_type",
    "Metadata_moa",
    "Metadata_target",
    "Metadata_gene",
    "Metadata_is_ood",
]

_MAD_TO_SD = 1.4826  # MAD of a normal distribution = 0.6745 SD (pycytominer's "normal" scale)
_IQR_TO_SD = 1.0 / 1.3490


@dataclass(frozen=True)
class ProfileDataset:
    """Output of :func:`generate_profiles`.

    Attributes
    ----------
    profiles : pandas.DataFrame
        One row per well, sorted by source, batch, plate, well: :data:`PROFILE_METADATA`
        then the float32 ``feature_cols`` (raw level).
    perturbations : pandas.DataFrame
        One row per perturbation (DMSO, compounds, CRISPR genes), sorted by
        ``Metadata_JCP2022``: the per-perturbation metadata columns of ``profiles`` plus
        ground truth never shown in ``profiles``: ``hidden_moa`` / ``hidden_target``
        (the OOD compounds' classes; equal to the annotations otherwise), ``potency``,
        ``is_active`` and ``n_replicates``.
    latent : numpy.ndarray
        ``(n_perturbations, latent_dim)`` float32 latent ``z`` of each perturbation,
        aligned with ``perturbations`` rows.
    feature_cols : list of str
        Feature columns of ``profiles``.
    spec : SyntheticProfileSpec
        The spec that generated the dataset.
    """

    profiles: pd.DataFrame
    perturbations: pd.DataFrame
    latent: np.ndarray
    feature_cols: list[str]
    spec: SyntheticProfileSpec

    @property
    def metadata_cols(self) -> list[str]:
        """The ``Metadata_`` columns of ``profiles``."""
        return list(PROFILE_METADATA)


# ---------------------------------------------------------------------------------------
# Feature names
# ---------------------------------------------------------------------------------------

_CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
_COMPARTMENTS = ("Cells", "Cytoplasm", "Nuclei")


def _feature_pool() -> list[str]:
    shape = [
        "Area",
        "Compactness",
        "Eccentricity",
        "Extent",
        "FormFactor",
        "MajorAxisLength",
        "MinorAxisLength",
        "MaxFeretDiameter",
        "MinFeretDiameter",
        "Perimeter",
        "Solidity",
        "MaximumRadius",
        "MeanRadius",
        "MedianRadius",
        "Orientation",
    ]
    shape += [f"Zernike_{n}_{m}" for n in range(10) for m in range(n % 2, n + 1, 2)]
    inten = [
        "MeanIntensity",
        "IntegratedIntensity",
        "StdIntensity",
        "MADIntensity",
        "MedianIntensity",
        "LowerQuartileIntensity",
        "UpperQuartileIntensity",
        "MaxIntensity",
        "MinIntensity",
        "MeanIntensityEdge",
        "IntegratedIntensityEdge",
        "MassDisplacement",
    ]
    tex = [
        "AngularSecondMoment",
        "Contrast",
        "Correlation",
        "DifferenceEntropy",
        "DifferenceVariance",
        "Entropy",
        "InfoMeas1",
        "InfoMeas2",
        "InverseDifferenceMoment",
        "SumAverage",
        "SumEntropy",
        "SumVariance",
        "Variance",
    ]
    pool: list[str] = []
    for comp in _COMPARTMENTS:
        pool += [f"{comp}_AreaShape_{s}" for s in shape]
        pool += [f"{comp}_Intensity_{i}_{ch}" for i in inten for ch in _CHANNELS]
        pool += [
            f"{comp}_Texture_{t}_{ch}_{sc}_{ang:02d}_256"
            for t in tex
            for ch in _CHANNELS
            for sc in (3, 5, 10)
            for ang in range(4)
        ]
        pool += [f"{comp}_Granularity_{k}_{ch}" for k in range(1, 17) for ch in _CHANNELS]
        pool += [
            f"{comp}_RadialDistribution_{r}_{ch}_{k}of4"
            for r in ("FracAtD", "MeanFrac", "RadialCV")
            for ch in _CHANNELS
            for k in range(1, 5)
        ]
        pool += [
            f"{comp}_Correlation_{c}_{a}_{b}"
            for c in ("Correlation", "K", "Overlap", "Manders", "RWC")
            for i, a in enumerate(_CHANNELS)
            for b in _CHANNELS[i + 1 :]
        ]
        if comp != "Cytoplasm":
            pool += [
                f"{comp}_Neighbors_{n}_Adjacent"
                for n in (
                    "NumberOfNeighbors",
                    "PercentTouching",
                    "AngleBetweenNeighbors",
                    "FirstClosestDistance",
                    "SecondClosestDistance",
                )
            ]
    return pool


def feature_names(n_features: int) -> list[str]:
    """``n_features`` distinct CellProfiler-like feature names, in CellProfiler's order.

    A fixed draw (independent of any dataset seed) from a pool of real CellProfiler
    measurement names over 3 compartments and 5 channels; beyond the pool's size names
    get a numeric suffix (``..._2``).
    """
    pool = _feature_pool()
    rng = np.random.default_rng(20230712)
    if n_features <= len(pool):
        pick = np.sort(rng.choice(len(pool), n_features, replace=False))
        return [pool[i] for i in pick]
    reps = math.ceil(n_features / len(pool))
    names = [p if r == 0 else f"{p}_{r + 1}" for r in range(reps) for p in pool]
    return names[:n_features]


# ---------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------


def _long_tail_sizes(rng: np.random.Generator, n_items: int, n_classes: int, exponent: float) -> np.ndarray:
    """Class sizes: 1 each + Multinomial(rest, p_k ∝ k^-exponent), in a random class order."""
    w = np.arange(1, n_classes + 1, dtype=np.float64) ** -exponent
    sizes = 1 + rng.multinomial(n_items - n_classes, w / w.sum())
    return sizes[rng.permutation(n_classes)]


def _orthonormal_rows(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return (q * np.sign(np.diag(r))).T  # (k, n), rows orthonormal


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _inchikeys(rng: np.random.Generator, n: int) -> list[str]:
    """JUMP-like InChIKeys: 14 letters, '-', 8 letters + 'SA', '-N' (standard, neutral)."""
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    codes = np.ascontiguousarray(letters[rng.integers(0, 26, size=(n, 22))])
    s = codes.view("<U22").ravel()
    keys = [f"{k[:14]}-{k[14:]}SA-N" for k in s]
    if len(set(keys)) != n:  # pragma: no cover - 26^22 possibilities
        raise RuntimeError("InChIKey collision; change the seed")
    return keys


def distinct_plate_slots(
    rng: np.random.Generator, well_pert: np.ndarray, slot_plate: np.ndarray, n_plates: int, tries: int
) -> np.ndarray | None:
    """A random permutation of the slots whose first ``len(well_pert)`` put every perturbation's replicate
    wells on distinct plates (collisions swapped away with random slots), or None after ``tries`` rounds."""
    perm = rng.permutation(len(slot_plate))
    n = len(well_pert)
    for _ in range(tries):
        key = well_pert * n_plates + slot_plate[perm[:n]]
        order = np.argsort(key, kind="stable")
        dup = order[1:][key[order][1:] == key[order][:-1]]
        if not len(dup):
            return perm
        for i, j in zip(dup, rng.integers(0, len(perm), size=len(dup))):
            perm[i], perm[j] = perm[j], perm[i]
    return None


class _PhenotypeMap:
    """The random network + mixing ``z -> y`` of the module docstring."""

    def __init__(self, rng: np.random.Generator, spec: SyntheticProfileSpec) -> None:
        d, h1, h2, f = spec.latent_dim, spec.hidden_dim, spec.mixing_rank, spec.n_features
        self.w1 = (rng.standard_normal((d, h1)) / math.sqrt(d)).astype(np.float32)
        self.b1 = (0.5 * rng.standard_normal(h1)).astype(np.float32)
        self.w2 = (rng.standard_normal((h1, h2)) / math.sqrt(h1)).astype(np.float32)
        self.b2 = (0.5 * rng.standard_normal(h2)).astype(np.float32)
        a = _orthonormal_rows(rng, h2, h2)
        s = np.arange(1, h2 + 1, dtype=np.float64) ** -spec.spectrum_decay
        self.basis = _orthonormal_rows(rng, h2, f)  # (H2, F)
        mix = (a * s[None, :]) @ self.basis  # (H2, F)
        self.h0 = self._hidden(np.zeros((1, d), np.float32))
        ref = self._hidden(rng.standard_normal((4096, d)).astype(np.float32)) - self.h0
        y = ref @ mix
        self.mix = (mix / math.sqrt(float(np.mean(y.astype(np.float64) ** 2)))).astype(np.float32)

    def _hidden(self, z: np.ndarray) -> np.ndarray:
        return _softplus(np.tanh(z @ self.w1 + self.b1) @ self.w2 + self.b2).astype(np.float32)

    def __call__(self, z: np.ndarray, chunk: int = 32768) -> np.ndarray:
        out = np.empty((len(z), self.mix.shape[1]), np.float32)
        for i in range(0, len(z), chunk):
            out[i : i + chunk] = (self._hidden(z[i : i + chunk]) - self.h0) @ self.mix
        return out

    def correlated_vectors(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` unit-RMS feature-space vectors in the mixing's subspace (correlated features)."""
        v = rng.standard_normal((n, self.mix.shape[0])).astype(np.float32) @ self.mix
        return v / np.sqrt(np.mean(v**2, axis=1, keepdims=True))


def _perturbations(
    spec: SyntheticProfileSpec,
    r_cls: np.random.Generator,
    r_eff: np.random.Generator,
    r_lay: np.random.Generator,
    r_ids: np.random.Generator,
    target_names: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The perturbations of the latent model: classes, latent effects, replicate counts, names and IDs.

    Returns ``(perturbations, latent, replicates)`` in perturbation order (0 = DMSO, then
    annotated and OOD compounds, then CRISPR knockouts); ``perturbations`` holds the
    per-perturbation metadata and the hidden ground truth of :class:`ProfileDataset`.
    ``target_names`` (optional, at least ``n_targets`` names) replaces the synthetic
    ``GENE0001``... target and gene symbols. Draws from the four streams in a fixed order, so
    :func:`generate_profiles` and the JUMP-shaped release (:mod:`.jump_release`) share it.
    """
    M, T, d = spec.n_moas, spec.n_targets, spec.latent_dim
    n_ann, n_ood, n_ko = spec.n_annotated_compounds, spec.n_ood_compounds, spec.n_crispr_genes
    n_nov = spec.n_novel_moas

    # --- classes -----------------------------------------------------------------------
    moa_sizes = _long_tail_sizes(r_cls, n_ann, M, spec.moa_zipf)
    moa_parent = np.repeat(np.arange(T), _long_tail_sizes(r_cls, M, T, spec.target_zipf))[r_cls.permutation(M)]
    ann_moa = np.repeat(np.arange(M), moa_sizes)
    inhibitor_moa = (
        pd.DataFrame({"t": moa_parent, "size": moa_sizes, "m": np.arange(M)})
        .sort_values(["t", "size", "m"], ascending=[True, False, True])
        .drop_duplicates("t")
        .set_index("t")["m"]
        .reindex(np.arange(T))
        .to_numpy()
    )
    novel = r_cls.random(n_ood) < spec.ood_novel_fraction
    ood_moa = r_cls.choice(M, size=n_ood, p=moa_sizes / moa_sizes.sum())
    if n_nov:
        nov_w = _long_tail_sizes(r_cls, 10 * n_nov, n_nov, spec.moa_zipf).astype(np.float64)
        ood_moa = np.where(novel, M + r_cls.choice(n_nov, size=n_ood, p=nov_w / nov_w.sum()), ood_moa)
    cpd_moa = np.concatenate([ann_moa, ood_moa])  # index into M + n_nov MoAs
    all_parent = np.concatenate([moa_parent, T + np.arange(n_nov)])  # novel MoA k -> novel target T+k
    cpd_tgt = all_parent[cpd_moa]
    ko_tgt = np.sort(r_cls.choice(T, size=n_ko, replace=False)) if n_ko else np.zeros(0, np.int64)

    # --- latent effects ----------------------------------------------------------------
    u = r_eff.standard_normal((M + n_nov, d)) * spec.moa_effect
    v = r_eff.standard_normal((T + n_nov, d)) * spec.target_effect
    n_cpd = n_ann + n_ood
    e = r_eff.standard_normal((n_cpd, d)) * spec.compound_effect
    pot = np.exp(np.log(spec.potency_median) + spec.potency_sigma * r_eff.standard_normal(n_cpd))
    inactive_share = np.where(
        np.arange(n_cpd) < n_ann,
        spec.inactive_fraction,
        spec.inactive_fraction if spec.ood_inactive_fraction is None else spec.ood_inactive_fraction,
    )
    active = r_eff.random(n_cpd) >= inactive_share
    pot = np.where(active, pot, pot * spec.inactive_scale)
    z_cpd = pot[:, None] * (u[cpd_moa] + v[cpd_tgt] + e)
    ko_pot = np.exp(np.log(spec.potency_median) + spec.potency_sigma * r_eff.standard_normal(n_ko))
    e_ko = r_eff.standard_normal((n_ko, d)) * spec.knockout_deviation
    z_ko = ko_pot[:, None] * (v[ko_tgt] + u[inhibitor_moa[ko_tgt]] + e_ko)

    # perturbation index: 0 = DMSO, 1..n_cpd compounds, then CRISPR
    n_pert = 1 + n_cpd + n_ko
    latent = np.concatenate([np.zeros((1, d)), z_cpd, z_ko]).astype(np.float32)
    reps = np.concatenate([[0], r_lay.integers(spec.replicates_min, spec.replicates_max + 1, size=n_pert - 1)])

    # --- names and IDs -----------------------------------------------------------------
    moa_names = np.array([f"moa_{i + 1:04d}" for i in r_ids.permutation(M)], dtype=object)
    tgt_names = np.array([f"GENE{i + 1:04d}" for i in r_ids.permutation(T)], dtype=object)
    if target_names is not None:  # the same random assignment, other names
        if len(target_names) < T:
            raise ValueError(f"{len(target_names)} target names for {T} targets")
        names = np.asarray(list(target_names), dtype=object)
        tgt_names = names[[int(g[4:]) - 1 for g in tgt_names]]
    hid_moa_names = np.concatenate([moa_names, np.array([f"novel_moa_{i + 1:04d}" for i in range(n_nov)], object)])
    hid_tgt_names = np.concatenate([tgt_names, np.array([f"novel_target_{i + 1:04d}" for i in range(n_nov)], object)])
    cpd_numbers = np.arange(1, max(120_000, 2 * n_cpd))
    cpd_numbers = cpd_numbers[cpd_numbers != int(NEGCON_JCP2022.split("_")[1])]
    cpd_ids = [f"JCP2022_{k:06d}" for k in r_ids.choice(cpd_numbers, size=n_cpd, replace=False)]
    ko_ids = [f"JCP2022_{k:06d}" for k in 800_000 + r_ids.choice(np.arange(1, 100_000), size=n_ko, replace=False)]
    jcp = np.array([NEGCON_JCP2022, *cpd_ids, *ko_ids], dtype=object)
    inchi = np.array([NEGCON_INCHIKEY, *_inchikeys(r_ids, n_cpd), *([None] * n_ko)], dtype=object)
    pert_type = np.array(["negcon"] + ["compound"] * n_cpd + ["crispr"] * n_ko, dtype=object)
    is_ood = np.zeros(n_pert, bool)
    is_ood[1 + n_ann : 1 + n_cpd] = True
    moa = np.full(n_pert, None, dtype=object)
    target = np.full(n_pert, None, dtype=object)
    gene = np.full(n_pert, None, dtype=object)
    moa[0] = NEGCON
    moa[1 : 1 + n_ann] = moa_names[ann_moa]
    target[1 : 1 + n_ann] = tgt_names[moa_parent[ann_moa]]
    target[1 + n_cpd :] = tgt_names[ko_tgt]
    gene[1 + n_cpd :] = tgt_names[ko_tgt]
    hidden_moa = np.full(n_pert, None, dtype=object)
    hidden_tgt = np.full(n_pert, None, dtype=object)
    hidden_moa[1 : 1 + n_cpd] = hid_moa_names[cpd_moa]
    hidden_tgt[1 : 1 + n_cpd] = hid_tgt_names[cpd_tgt]
    hidden_moa[1 + n_cpd :] = moa_names[inhibitor_moa[ko_tgt]]
    hidden_tgt[1 + n_cpd :] = tgt_names[ko_tgt]
    broad = jcp.copy()
    broad[0] = NEGCON
    perts = pd.DataFrame(
        {
            "Metadata_JCP2022": jcp,
            "Metadata_broad_sample": broad,
            "Metadata_InChIKey": inchi,
            "Metadata_pert_type": pert_type,
            "Metadata_moa": moa,
            "Metadata_target": target,
            "Metadata_gene": gene,
            "Metadata_is_ood": is_ood,
            "hidden_moa": hidden_moa,
            "hidden_target": hidden_tgt,
            "potency": np.concatenate([[0.0], pot, ko_pot]),
            "is_active": np.concatenate([[False], active, np.ones(n_ko, bool)]),
            "n_replicates": reps,
        }
    )

    return perts, latent, reps


def generate_profiles(spec: SyntheticProfileSpec | None = None) -> ProfileDataset:
    """Generate the ``synthetic_jump_profiles`` well-level table (see module docstring).

    Deterministic per ``spec`` (its ``seed`` included); vectorized numpy in float32 (the
    default spec, ~100k wells x 454 features, takes a few seconds).

    Raises
    ------
    ValueError
        ``plates_per_batch`` too small for all replicate wells.
    """
    spec = spec or SyntheticProfileSpec()
    r_cls, r_eff, r_net, r_lay, r_nuis, r_noise, r_ids = (
        np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(7)
    )
    perts, latent, reps = _perturbations(spec, r_cls, r_eff, r_lay, r_ids)
    n_pert = len(perts)
    jcp = perts["Metadata_JCP2022"].to_numpy()

    # --- layout ------------------------------------------------------------------------
    n_rows, n_cols = PLATE_SHAPES[spec.wells_per_plate]
    n_pos = n_rows * n_cols
    slots_per_plate = n_pos - spec.dmso_per_plate
    n_trt = int(reps.sum())
    groups = spec.n_sources * spec.batches_per_source
    need = max(math.ceil(n_trt / slots_per_plate), spec.replicates_max)
    ppb = spec.plates_per_batch if spec.plates_per_batch is not None else math.ceil(need / groups)
    n_plates = groups * ppb
    if n_plates * slots_per_plate < n_trt or n_plates < spec.replicates_max:
        raise ValueError(
            f"{n_plates} plates x {slots_per_plate} treatment wells cannot hold {n_trt} replicate "
            f"wells (replicates on distinct plates): raise plates_per_batch or set it to None"
        )
    plate_source = np.arange(n_plates) // (spec.batches_per_source * ppb)
    plate_batch = np.arange(n_plates) // ppb  # global batch index
    dmso_pos = np.stack(
        [np.sort(r_lay.choice(n_pos, spec.dmso_per_plate, replace=False)) for _ in range(spec.n_sources)]
    )
    is_dmso_pos = np.zeros((spec.n_sources, n_pos), bool)
    is_dmso_pos[np.arange(spec.n_sources)[:, None], dmso_pos] = True
    trt_pos = np.stack([np.flatnonzero(~is_dmso_pos[s]) for s in range(spec.n_sources)])
    slot_plate = np.repeat(np.arange(n_plates), slots_per_plate)
    slot_pos = trt_pos[plate_source[slot_plate], np.tile(np.arange(slots_per_plate), n_plates)]
    well_pert = np.repeat(np.arange(n_pert), reps)
    perm = distinct_plate_slots(r_lay, well_pert, slot_plate, n_plates, tries=1000)
    if perm is None:  # pragma: no cover - only for nearly full layouts
        raise ValueError("could not place replicates on distinct plates; add plates (plates_per_batch)")
    w_plate = np.concatenate([slot_plate[perm[:n_trt]], np.repeat(np.arange(n_plates), spec.dmso_per_plate)])
    w_pos = np.concatenate([slot_pos[perm[:n_trt]], dmso_pos[plate_source].ravel()])
    w_pert = np.concatenate([well_pert, np.zeros(n_plates * spec.dmso_per_plate, np.int64)])
    order = np.lexsort((w_pos, w_plate))
    w_plate, w_pos, w_pert = w_plate[order], w_pos[order], w_pert[order]
    n_w = len(w_plate)

    # --- phenotype ---------------------------------------------------------------------
    fmap = _PhenotypeMap(r_net, spec)
    F, d = spec.n_features, spec.latent_dim
    z = latent[w_pert] + spec.well_latent_noise * r_noise.standard_normal((n_w, d), dtype=np.float32)
    x = fmap(z)
    x += spec.feature_noise * r_noise.standard_normal((n_w, F), dtype=np.float32)

    # --- nuisances ---------------------------------------------------------------------
    row, col = w_pos // n_cols, w_pos % n_cols
    edge = (row == 0) | (row == n_rows - 1) | (col == 0) | (col == n_cols - 1)
    rowc = (row - (n_rows - 1) / 2) / ((n_rows - 1) / 2)
    colc = (col - (n_cols - 1) / 2) / ((n_cols - 1) / 2)
    pos_vec = fmap.correlated_vectors(r_nuis, 3)  # edge, row gradient, column gradient
    strength = spec.position_effect * np.clip(1.0 + 0.3 * r_nuis.standard_normal(n_plates), 0.0, None)
    n_batches = groups
    o_src = fmap.correlated_vectors(r_nuis, spec.n_sources)
    o_bat = fmap.correlated_vectors(r_nuis, n_batches)
    o_pla = fmap.correlated_vectors(r_nuis, n_plates)
    g_src = r_nuis.standard_normal((spec.n_sources, F))
    g_bat = r_nuis.standard_normal((n_batches, F))
    g_pla = r_nuis.standard_normal((n_plates, F))
    scale = np.exp(1.5 * r_nuis.standard_normal(F))
    loc = scale * (5.0 + 2.0 * r_nuis.standard_normal(F))
    bounds = np.searchsorted(w_plate, np.arange(n_plates + 1))
    for p in range(n_plates):
        a, b = bounds[p], bounds[p + 1]
        s, bt = plate_source[p], plate_batch[p]
        blk = x[a:b]
        blk += strength[p] * (
            edge[a:b, None] * pos_vec[0] + 0.5 * rowc[a:b, None] * pos_vec[1] + 0.5 * colc[a:b, None] * pos_vec[2]
        )
        gain = np.exp(spec.gain_sigma * (g_src[s] + g_bat[bt] + g_pla[p]))
        off = spec.source_effect * o_src[s] + spec.batch_effect * o_bat[bt] + spec.plate_effect * o_pla[p]
        blk *= (scale * gain).astype(np.float32)
        blk += (loc + scale * off).astype(np.float32)

    # --- tables ------------------------------------------------------------------------
    well_names = np.array([f"{chr(65 + r)}{c + 1:02d}" for r in range(n_rows) for c in range(n_cols)], object)
    src_names = np.array([f"source_{s + 1}" for s in range(spec.n_sources)], object)
    bat_names = np.array(
        [f"source_{s + 1}_batch_{b + 1:02d}" for s in range(spec.n_sources) for b in range(spec.batches_per_source)],
        object,
    )
    plate_names = np.array([f"SYNP{p + 1:06d}" for p in range(n_plates)], object)
    meta = pd.DataFrame(
        {
            "Metadata_Source": src_names[plate_source[w_plate]],
            "Metadata_Batch": bat_names[plate_batch[w_plate]],
            "Metadata_Plate": plate_names[w_plate],
            "Metadata_Well": well_names[w_pos],
            **{c: perts[c].to_numpy()[w_pert] for c in PROFILE_METADATA[4:]},
        }
    )
    feats = feature_names(F)
    profiles = pd.concat([meta, pd.DataFrame(x, columns=feats, copy=False)], axis=1)
    order = np.argsort(jcp, kind="stable")
    return ProfileDataset(
        profiles=profiles,
        perturbations=perts.iloc[order].reset_index(drop=True),
        latent=latent[order],
        feature_cols=feats,
        spec=spec,
    )


# ---------------------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------------------


def robust_normalize(
    df: pd.DataFrame,
    features: Sequence[str],
    *,
    plate_col: str = "Metadata_Plate",
    control_mask: pd.Series | np.ndarray | None = None,
    method: str = "mad",
    epsilon: float = 1e-6,
) -> pd.DataFrame:
    """Per-plate robust z-score to the negative controls (the "normalized" level).

    For feature ``f`` on plate ``p`` with control wells ``C_p``::

        x' = (x - median_{C_p}(x)) / max(s_{C_p}(x), epsilon)

    with ``s = 1.4826 * MAD`` (``method="mad"``, the normal-consistent MAD as in
    pycytominer's ``mad_robustize``) or ``s = IQR / 1.349`` (``method="iqr"``). Note:
    LINCS' published "normalized" level is ``mad_robustize`` against *all* wells of the
    plate; pass an all-True ``control_mask`` for that variant.

    Parameters
    ----------
    control_mask
        Boolean per row; default ``Metadata_pert_type == "negcon"`` if that column
        exists, else ``Metadata_broad_sample == "DMSO"``.

    Returns
    -------
    A copy of ``df`` with float32 normalized ``features`` (same rows, same order).

    Raises
    ------
    ValueError
        Unknown ``method``; a plate with fewer than 2 control wells (named).
    """
    if method not in ("mad", "iqr"):
        raise ValueError(f"method must be 'mad' or 'iqr', got {method!r}")
    features = list(features)
    if control_mask is None:
        if "Metadata_pert_type" in df.columns and (df["Metadata_pert_type"] == "negcon").any():
            control_mask = (df["Metadata_pert_type"] == "negcon").to_numpy()
        else:
            control_mask = (df["Metadata_broad_sample"].astype("string") == NEGCON).fillna(False).to_numpy(bool)
    ctrl = np.asarray(control_mask, dtype=bool)
    x = df[features].to_numpy(np.float32, copy=True)
    for plate, idx in df.groupby(plate_col, sort=False).indices.items():
        c = idx[ctrl[idx]]
        if len(c) < 2:
            raise ValueError(f"plate {plate}: {len(c)} control well(s); robust normalization needs at least 2")
        xc = x[c].astype(np.float64)
        med = np.median(xc, axis=0)
        if method == "mad":
            s = _MAD_TO_SD * np.median(np.abs(xc - med), axis=0)
        else:
            q1, q3 = np.percentile(xc, [25, 75], axis=0)
            s = (q3 - q1) * _IQR_TO_SD
        x[idx] = ((x[idx] - med) / np.maximum(s, epsilon)).astype(np.float32)
    normed = pd.DataFrame(x, columns=features, index=df.index, copy=False)
    return pd.concat([df.drop(columns=features), normed], axis=1)[list(df.columns)]


# ---------------------------------------------------------------------------------------
# Calibration figures
# ---------------------------------------------------------------------------------------


def plate_sized_subsample(
    df: pd.DataFrame,
    *,
    n_wells: int = 384,
    n_negcon: int = 24,
    compound_col: str = "Metadata_broad_sample",
    negcon: str = NEGCON,
    pert_type: str | None = "compound",
    seed: int = 0,
) -> pd.DataFrame:
    """A subsample the size of one LINCS plate: whole replicate sets plus DMSO wells.

    Random perturbations (only ``Metadata_pert_type == pert_type`` ones unless None)
    are taken with all their wells while they fit in ``n_wells - n_negcon`` wells, then
    ``n_negcon`` random DMSO wells are added. Replicates sit on different plates, so
    compute its mAP with ``pool_plates=True`` in :func:`calibration_figures`.
    """
    rng = np.random.default_rng(seed)
    is_ctl = (df[compound_col].astype("string") == negcon).fillna(False).to_numpy(bool)
    trt = df[~is_ctl]
    if pert_type is not None and "Metadata_pert_type" in df.columns:
        trt = trt[trt["Metadata_pert_type"] == pert_type]
    sizes = trt.groupby(compound_col, sort=True).size()
    names = sizes.index.to_numpy()[rng.permutation(len(sizes))]
    cum = np.cumsum(sizes.loc[names].to_numpy())
    keep = set(names[cum <= n_wells - n_negcon])
    rows_trt = np.flatnonzero(~is_ctl & df[compound_col].isin(keep).to_numpy())
    ctl_rows = np.flatnonzero(is_ctl)
    rows_ctl = rng.choice(ctl_rows, size=min(n_negcon, len(ctl_rows)), replace=False)
    return df.iloc[np.sort(np.concatenate([rows_trt, rows_ctl]))].reset_index(drop=True)


def _pair_corr(z: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(i), np.float64)
    for a in range(0, len(i), chunk):
        out[a : a + chunk] = np.einsum("ij,ij->i", z[i[a : a + chunk]], z[j[a : a + chunk]])
    return out


def _replicate_pairs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j), i < j, with ``codes[i] == codes[j]`` (vectorized per group size)."""
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    sizes = np.diff(np.r_[starts, len(sc)])
    ii, jj = [], []
    for k in np.unique(sizes[sizes >= 2]):
        st = starts[sizes == k]
        a, b = np.triu_indices(k, 1)
        ii.append(order[(st[:, None] + a[None, :]).ravel()])
        jj.append(order[(st[:, None] + b[None, :]).ravel()])
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii), np.concatenate(jj)


def calibration_figures(
    profiles_df: pd.DataFrame,
    feature_cols: Sequence[str],
    *,
    compound_col: str = "Metadata_broad_sample",
    negcon: str = NEGCON,
    plate_col: str = "Metadata_Plate",
    extra_sameby: Sequence[str] = (),
    pool_plates: bool = False,
    top_k: Sequence[int] = (1, 5, 10, 20),
    max_pairs: int = 200_000,
    with_activity: bool = True,
    null_size: int = 10_000,
    threshold: float = 0.05,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> dict[str, float]:
    """Summary figures of a *normalized* well-level profile table.

    Definitions (treatment wells = rows whose ``compound_col`` is not ``negcon``; a
    *replicate set* = treatment wells sharing ``compound_col`` and every ``extra_sameby``
    column, e.g. the dose for LINCS):

    ``pc_var_top{k}``
        Share of variance in the top ``k`` principal components of the feature
        correlation matrix over all wells (controls included): ``sum_{i<=k} λ_i / F``.
    ``effective_rank``
        ``exp(-sum_i p_i log p_i)``, ``p_i = λ_i / sum λ`` (Roy & Vetterli 2007).
    ``replicate_corr_median``
        Median Pearson correlation (across features) over all pairs of wells of the
        same replicate set (at most ``max_pairs``, sampled).
    ``nonreplicate_corr_median``
        The same over pairs of treatment wells of different replicate sets (all pairs,
        or ``max_pairs`` random ones).
    ``negcon_corr_median``
        The same over pairs of control wells.
    ``activity_fraction``
        Share of replicate sets (with >= 2 wells) that are phenotypically active:
        copairs mAP of replicates against the same-plate controls (all controls of the
        table when ``pool_plates``), permutation p-value, BH FDR < ``threshold``
        (:func:`moa_core.evaluation.map.phenotypic_activity`); ``activity_mean_map`` is
        the mean mAP over those sets.

    Also returned: ``n_wells``, ``n_features``, ``n_replicate_sets``,
    ``n_replicate_pairs``, ``n_activity_sets``. Constant features are dropped first.
    ``cache_dir`` goes to copairs (None: its default, ``~/.copairs``).
    """
    from moa_core.evaluation.map import phenotypic_activity
    from moa_core.evaluation.similarity import row_center_normalize

    rng = np.random.default_rng(seed)
    feats = list(feature_cols)
    x = profiles_df[feats].to_numpy(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("calibration_figures: features contain NaN/inf")
    keep = x.std(axis=0) > 0
    x = x[:, keep]
    feats = [f for f, k in zip(feats, keep) if k]
    out: dict[str, float] = {"n_wells": float(len(x)), "n_features": float(x.shape[1])}

    xs = (x - x.mean(axis=0)) / x.std(axis=0)
    lam = np.clip(np.linalg.eigvalsh(xs.T @ xs / len(xs))[::-1], 0.0, None)
    for k in top_k:
        out[f"pc_var_top{k}"] = float(lam[:k].sum() / lam.sum())
    p = lam[lam > 0] / lam.sum()
    out["effective_rank"] = float(np.exp(-(p * np.log(p)).sum()))

    is_ctl = (profiles_df[compound_col].astype("string") == negcon).fillna(False).to_numpy(bool)
    z = row_center_normalize(x)
    key_cols = [compound_col, *extra_sameby]
    trt = np.flatnonzero(~is_ctl)
    codes = (
        pd.MultiIndex.from_frame(profiles_df.iloc[trt][key_cols].astype(str)).factorize()[0]
        if len(key_cols) > 1
        else pd.factorize(profiles_df.iloc[trt][compound_col].astype(str))[0]
    )
    i, j = _replicate_pairs(codes)
    if len(i) > max_pairs:
        sel = rng.choice(len(i), max_pairs, replace=False)
        i, j = i[sel], j[sel]
    out["n_replicate_sets"] = float(np.sum(np.bincount(codes) >= 2)) if len(codes) else 0.0
    out["n_replicate_pairs"] = float(len(i))
    out["replicate_corr_median"] = float(np.median(_pair_corr(z, trt[i], trt[j]))) if len(i) else float("nan")

    n = len(trt)
    if n * (n - 1) // 2 <= max_pairs:
        a, b = np.triu_indices(n, 1)
    else:
        a, b = rng.integers(0, n, max_pairs), rng.integers(0, n, max_pairs)
    diff = codes[a] != codes[b]
    out["nonreplicate_corr_median"] = float(np.median(_pair_corr(z, trt[a[diff]], trt[b[diff]])))
    ctl = np.flatnonzero(is_ctl)
    if len(ctl) >= 2:
        ca, cb = np.triu_indices(len(ctl), 1)
        if len(ca) > max_pairs:
            sel = rng.choice(len(ca), max_pairs, replace=False)
            ca, cb = ca[sel], cb[sel]
        out["negcon_corr_median"] = float(np.median(_pair_corr(z, ctl[ca], ctl[cb])))
    else:
        out["negcon_corr_median"] = float("nan")

    if with_activity:
        counts = np.bincount(codes)
        rows = np.sort(np.concatenate([ctl, trt[counts[codes] >= 2]]))
        sub = profiles_df.iloc[rows]
        pcol = plate_col
        if pool_plates:
            pcol = "Metadata_calibration_pool"
            sub = pd.concat(
                [
                    sub[[c for c in sub.columns if c in set(key_cols)]],
                    pd.Series("pool", index=sub.index, name=pcol),
                    sub[feats],
                ],
                axis=1,
            )
        res = phenotypic_activity(
            sub,
            feats,
            compound_col=compound_col,
            plate_col=pcol,
            negcon=negcon,
            extra_sameby=list(extra_sameby),
            null_size=null_size,
            threshold=threshold,
            seed=seed,
            cache_dir=cache_dir,
        )
        out["activity_fraction"] = res.fraction_retrieved
        out["activity_mean_map"] = res.mean_map
        out["n_activity_sets"] = float(len(res.map))
    return out


# ---------------------------------------------------------------------------------------
# Calibration against LINCS
# ---------------------------------------------------------------------------------------

#: Figures compared with LINCS and the stated agreement: the synthetic value must lie
#: within ``[ref / factor, ref * factor]`` of the LINCS SQ00015054 value (doses pooled;
#: ``nonreplicate_corr_median`` is near 0 in both, so it is compared as ``|syn - ref| <=
#: 0.05`` instead, see :data:`CALIBRATION_ABS_TOLERANCE`).
CALIBRATION_FACTORS: dict[str, float] = {
    "pc_var_top1": 1.5,
    "pc_var_top5": 1.25,
    "pc_var_top10": 1.25,
    "pc_var_top20": 1.25,
    "effective_rank": 1.5,
    "replicate_corr_median": 1.5,
    "activity_fraction": 1.5,
}
CALIBRATION_ABS_TOLERANCE: dict[str, float] = {"nonreplicate_corr_median": 0.05, "negcon_corr_median": 0.05}

LINCS_DOSE_COL = "Metadata_mmoles_per_liter"


def lincs_calibration_figures(
    lincs_df: pd.DataFrame, *, null_size: int = 10_000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """:func:`calibration_figures` of a LINCS normalized plate, two replicate definitions.

    ``"dose_matched"``: replicate set = compound x dose (``Metadata_mmoles_per_liter``);
    on SQ00015054 only the two positive controls (12 wells each at one dose) qualify.
    ``"doses_pooled"``: replicate set = compound (its 6 doses), 58 sets — the reference
    the synthetic defaults are calibrated to (a synthetic compound is a single
    perturbation whose potency varies across compounds much as dose does).
    """
    feats = [c for c in lincs_df.columns if not str(c).startswith("Metadata_")]
    return {
        "dose_matched": calibration_figures(
            lincs_df, feats, extra_sameby=[LINCS_DOSE_COL], null_size=null_size, seed=seed
        ),
        "doses_pooled": calibration_figures(lincs_df, feats, null_size=null_size, seed=seed),
    }


def synthetic_calibration_figures(
    dataset: ProfileDataset, *, n_subsamples: int = 5, full: bool = True, null_size: int = 10_000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """:func:`calibration_figures` of a synthetic dataset at the normalized level.

    Profiles are normalized with :func:`robust_normalize` (per plate, to DMSO); CRISPR
    wells are left out (LINCS has compounds only). ``"subsample"``: the mean over
    ``n_subsamples`` plate-sized subsamples (:func:`plate_sized_subsample`, seeds
    ``seed..``; controls pooled for mAP); ``"full"``: every compound and DMSO well (mAP
    against same-plate DMSO).
    """
    norm = robust_normalize(dataset.profiles, dataset.feature_cols)
    cpd = norm[norm["Metadata_pert_type"] != "crispr"].reset_index(drop=True)
    subs = [
        calibration_figures(
            plate_sized_subsample(cpd, seed=seed + i),
            dataset.feature_cols,
            pool_plates=True,
            null_size=null_size,
            seed=seed,
        )
        for i in range(n_subsamples)
    ]
    out = {"subsample": {k: float(np.mean([s[k] for s in subs])) for k in subs[0]}}
    if full:
        out["full"] = calibration_figures(cpd, dataset.feature_cols, null_size=null_size, seed=seed)
    return out


def calibration_agreement(reference: dict[str, float], synthetic: dict[str, float]) -> dict[str, bool]:
    """Per compared figure: is ``synthetic`` within the stated tolerance of ``reference``?"""
    ok: dict[str, bool] = {}
    for k, f in CALIBRATION_FACTORS.items():
        r, s = reference[k], synthetic[k]
        ok[k] = bool(r > 0 and s > 0 and r / f <= s <= r * f)
    for k, tol in CALIBRATION_ABS_TOLERANCE.items():
        ok[k] = bool(abs(synthetic[k] - reference[k]) <= tol)
    return ok
