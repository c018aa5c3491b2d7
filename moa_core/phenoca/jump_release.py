"""A JUMP-shaped synthetic release: cpg0016's files, keys and schema, generated plate by plate.

JUMP (cpg0016) publishes one well-level CellProfiler profile file per plate under
``<source>/workspace/profiles/<batch>/<plate>/<plate>.parquet`` (``Metadata_Source,
Metadata_Plate, Metadata_Well`` + 4,762 float32 features), metadata tables
(``well.csv.gz``: plate, well -> JCP2022 ID; ``compound.csv.gz``: JCP2022 -> InChIKey;
``crispr.csv.gz``; ``plate.csv.gz``: source, batch, plate, plate type;
``perturbation_control.csv``) and assembled processed profiles (a few hundred selected,
normalized features). :func:`generate_release` writes exactly that layout for a share
``scale`` of JUMP, from the latent model of :mod:`moa_core.phenoca.synthetic` (the same
classes, effects, phenotype map and nuisances, calibrated against LINCS), so every part of
the pipeline reads it through the code path of a real release.

What is JUMP-like
-----------------
- **Plates**: the real cpg0016 plate list (``../shared/data/cpg0016/plate.csv.gz``: 1,876
  COMPOUND and 148 CRISPR plates over 13 sources, with their real batch names and barcodes);
  ``scale`` keeps a seeded, nested share of each source's plates of each type (at least one).
- **Perturbations**: ``round(116,000 x scale)`` compounds of which a few thousand are annotated
  with an MoA and a target (``n_annotated``; a floor keeps the small scales evaluable), the rest
  unannotated ("OOD"); CRISPR knockouts of ``round(7,975 x scale)`` genes, the first of which
  are the targets of annotated compounds (they phenocopy their target's inhibitors), the rest
  genes with effects of their own; target and gene symbols are real ones from
  ``crispr.csv.gz``. 4-7 replicate wells per compound and 4-6 per gene, on distinct plates.
- **Controls on every plate**: 24 DMSO wells (JCP2022_033924) on compound plates and 24
  non-targeting guides (JCP2022_800002) on CRISPR plates, at positions fixed per source, and
  JUMP's 8 compound positive controls (their real JCP2022 IDs and names, strong effects) in
  2 wells each on every compound plate.
- **Redundant features**: the phenotype map draws ``n_base_features`` (800) features; the other
  raw features are affine copies of them (a random source feature, a multiplier of either sign,
  ``copy_noise`` of their own), as CellProfiler's 4,762 features are largely redundant and
  JUMP's recipe keeps a few hundred after correlation filtering.
- **Nuisances**: source, batch and plate offsets and well-position effects on the base features,
  then per raw feature a source x batch x plate gain and units (``loc``/``scale``), as in
  :mod:`.synthetic`; a few features are mostly NaN and a few
  constant (real releases have both), and values are NaN at a rate of 1e-5 elsewhere.
- **Two feature sets**: the raw 4,762 features per plate, and an assembled processed set
  (``profiles_assembled/COMPOUND/v1.0/profiles_var_mad_featselect.parquet``): each plate
  robust-normalized to its negative controls (median, 1.4826 x MAD) and a fixed selection of
  ``n_processed_features`` of the features that are never NaN nor constant.

Generation is streamed: memory holds the design (a few arrays per well) and one plate, never
the release. Each plate's file is written under a temporary name and renamed complete, and a
rerun with the same spec skips the plates that are already there (resumable); a finished
release (``release.json``) is returned at once (cached). A folder generated from another spec
is refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.atomic import atomic_path, write_csv_atomic, write_json_atomic
from moa_core.errors import SchemaError
from moa_core.phenoca.config import PLATE_SHAPES, JumpReleaseSpec, SyntheticProfileSpec
from moa_core.phenoca.synthetic import (
    NEGCON_JCP2022,
    _perturbations,
    _PhenotypeMap,
    distinct_plate_slots,
    feature_names,
)

__all__ = ["JumpReleaseSpec", "ReleaseInfo", "generate_release", "plate_file", "release_plates"]

RELEASE_FORMAT = "moa_profiler.jump_release.v2"
CRISPR_NEGCON_JCP2022 = "JCP2022_800002"  # non-targeting
#: JUMP's compound positive controls (real IDs and names, ``perturbation_control.csv``).
POSITIVE_CONTROLS = {
    "JCP2022_037716": "AMG900",
    "JCP2022_025848": "dexamethasone",
    "JCP2022_046054": "FK-866",
    "JCP2022_035095": "LY2109761",
    "JCP2022_064022": "NVS-PAK1-1",
    "JCP2022_050797": "quinidine",
    "JCP2022_012818": "TC-S-7004",
    "JCP2022_085227": "aloxistatin",
}
PROCESSED_RELATIVE = "profiles_assembled/COMPOUND/v1.0/profiles_var_mad_featselect.parquet"
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class ReleaseInfo:
    """A generated release: where its files are and what it holds (``release.json``)."""

    root: Path
    spec: JumpReleaseSpec
    plates: pd.DataFrame  # Metadata_Source, Metadata_Batch, Metadata_Plate, Metadata_PlateType, n_wells
    feature_cols: list[str]
    processed_cols: list[str]
    seconds: float
    plates_generated: int

    @property
    def n_wells(self) -> int:
        return int(self.plates["n_wells"].sum())

    @property
    def metadata_dir(self) -> Path:
        return self.root / "metadata"

    @property
    def processed_path(self) -> Path:
        return self.root / PROCESSED_RELATIVE


def plate_file(root: str | os.PathLike, source: str, batch: str, plate: str) -> Path:
    """``<root>/<source>/workspace/profiles/<batch>/<plate>/<plate>.parquet`` (cpg0016's key layout)."""
    return Path(root) / source / "workspace" / "profiles" / batch / plate / f"{plate}.parquet"


def release_plates(
    shared_dir: str | os.PathLike, scale: float, seed: int = 0, min_plates: int | dict[str, int] = 1
) -> pd.DataFrame:
    """The real cpg0016 COMPOUND and CRISPR plates kept at ``scale``: a seeded, nested share of each source's
    plates of each type (at least one), and at least ``min_plates`` of each type (replicates sit on
    distinct plates)."""
    path = Path(shared_dir) / "data" / "cpg0016" / "plate.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"cpg0016 plate table not found: {path} (set MOA_SHARED_DIR)")
    plates = pd.read_csv(path)
    need = ["Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_PlateType"]
    miss = [c for c in need if c not in plates.columns]
    if miss:
        raise SchemaError(f"{path}: missing column(s) {miss}")
    plates = plates[plates["Metadata_PlateType"].isin(["COMPOUND", "CRISPR"])].reset_index(drop=True)
    keep = []
    for typ, by_type in plates.groupby("Metadata_PlateType", sort=True):
        orders, kept = [], []
        for src, g in by_type.groupby("Metadata_Source", sort=True):
            key = np.random.default_rng([seed, int(hashlib.sha256(f"{src}/{typ}".encode()).hexdigest()[:8], 16)])
            order = g.index.to_numpy()[key.permutation(len(g))]
            orders.append(order)
            kept.append(max(1, int(round(scale * len(g)))))
        need = min_plates.get(typ, 1) if isinstance(min_plates, dict) else min_plates
        while sum(kept) < need and any(k < len(o) for k, o in zip(kept, orders)):
            j = int(np.argmax([len(o) - k for k, o in zip(kept, orders)]))  # the source with the most left
            kept[j] += 1
        keep += [o[:k] for o, k in zip(orders, kept)]
    out = plates.loc[np.sort(np.concatenate(keep))]
    return out.sort_values(["Metadata_Source", "Metadata_Batch", "Metadata_Plate"]).reset_index(drop=True)


def _gene_symbols(shared_dir: Path) -> list[str]:
    """Every gene symbol of JUMP's CRISPR table, in a fixed random order (controls left out)."""
    path = shared_dir / "data" / "cpg0016" / "crispr.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"cpg0016 CRISPR table not found: {path} (set MOA_SHARED_DIR)")
    sym = pd.read_csv(path)["Metadata_Symbol"].dropna().astype(str)
    sym = sorted(set(sym) - {"no-guide", "non-targeting"})
    rng = np.random.default_rng(20240101)
    return [sym[i] for i in rng.permutation(len(sym))]


@dataclass
class _Design:
    perts: pd.DataFrame  # per perturbation (incl. DMSO, poscons, CRISPR negcon and genes)
    latent: np.ndarray
    well_plate: np.ndarray  # per well: index into plates
    well_pos: np.ndarray
    well_pert: np.ndarray
    plates: pd.DataFrame


def _design(spec: JumpReleaseSpec, shared_dir: Path) -> _Design:
    """Perturbations, their latent effects and the well layout (everything but the phenotypes)."""
    sz = spec.sizes
    pool = _gene_symbols(shared_dir)
    model = SyntheticProfileSpec(
        **{
            "n_annotated_compounds": sz["annotated"],
            "n_ood_compounds": sz["compounds"] - sz["annotated"],
            "n_moas": sz["moas"],
            "n_targets": sz["targets"],
            "n_crispr_genes": sz["target_genes"],
            "n_novel_moas": max(1, sz["moas"]),
            "replicates_min": spec.replicates_min,
            "replicates_max": spec.replicates_max,
            "n_features": spec.n_base_features,
            "seed": spec.seed,
            **spec.model,
        }
    )
    r_cls, r_eff, _r_net, r_lay, _r_nuis, _r_noise, r_ids, r_extra = (
        np.random.default_rng(s) for s in np.random.SeedSequence([spec.seed, 16]).spawn(8)
    )
    # every target of an annotated compound is a real gene symbol; the knockouts of some of them phenocopy
    # their inhibitors (_perturbations), the other knocked-out genes are symbols no compound targets
    if len(pool) < sz["targets"] + 1:
        raise SchemaError(f"{len(pool)} gene symbols in crispr.csv.gz, {sz['targets'] + 1} needed")
    target_names = pool[: sz["targets"]]
    perts, latent, reps = _perturbations(model, r_cls, r_eff, r_lay, r_ids, target_names=target_names)
    d = model.latent_dim
    # the other CRISPR genes: knockouts with effects of their own (no annotated compound targets them)
    n_other = max(0, min(sz["crispr_genes"] - sz["target_genes"], len(pool) - sz["targets"]))
    others = pool[sz["targets"] : sz["targets"] + n_other]
    pot = np.exp(np.log(model.potency_median) + model.potency_sigma * r_extra.standard_normal(len(others)))
    z_other = pot[:, None] * (r_extra.standard_normal((len(others), d)) * (model.moa_effect + model.target_effect))
    ids = [f"JCP2022_{k:06d}" for k in 800_100 + r_extra.choice(np.arange(100_000), len(others), replace=False)]
    used = set(perts["Metadata_JCP2022"])
    ids = [i if i not in used else f"JCP2022_9{i[-5:]}" for i in ids]
    other = pd.DataFrame(
        {
            "Metadata_JCP2022": ids,
            "Metadata_broad_sample": ids,
            "Metadata_InChIKey": None,
            "Metadata_pert_type": "crispr",
            "Metadata_moa": None,
            "Metadata_target": others,
            "Metadata_gene": others,
            "Metadata_is_ood": False,
            "hidden_moa": None,
            "hidden_target": others,
            "potency": pot,
            "is_active": True,
            "n_replicates": 0,
        }
    )
    # controls: JUMP's 8 compound positive controls (strong, distinct phenotypes) and the CRISPR negcon
    n_pc = len(POSITIVE_CONTROLS)
    z_pc = 2.5 * r_extra.standard_normal((n_pc, d)) * model.moa_effect
    pc = pd.DataFrame(
        {
            "Metadata_JCP2022": list(POSITIVE_CONTROLS),
            "Metadata_broad_sample": list(POSITIVE_CONTROLS),
            "Metadata_InChIKey": [f"POSCON{i}{'A' * 8}-UHFFFAOYSA-N"[:27] for i in range(n_pc)],
            "Metadata_pert_type": "poscon",
            "Metadata_moa": None,
            "Metadata_target": None,
            "Metadata_gene": None,
            "Metadata_is_ood": False,
            "hidden_moa": None,
            "hidden_target": None,
            "potency": 2.5,
            "is_active": True,
            "n_replicates": 0,
        }
    )
    pc["Metadata_pert_iname"] = list(POSITIVE_CONTROLS.values())
    neg = pd.DataFrame(
        [
            {
                "Metadata_JCP2022": CRISPR_NEGCON_JCP2022,
                "Metadata_broad_sample": "DMSO",
                "Metadata_InChIKey": None,
                "Metadata_pert_type": "negcon",
                "Metadata_moa": "DMSO",
                "Metadata_target": None,
                "Metadata_gene": None,
                "Metadata_is_ood": False,
                "hidden_moa": None,
                "hidden_target": None,
                "potency": 0.0,
                "is_active": False,
                "n_replicates": 0,
            }
        ]
    )
    # a random compound ID equal to a real control ID gets another one
    clash = perts["Metadata_JCP2022"].isin(list(POSITIVE_CONTROLS) + [CRISPR_NEGCON_JCP2022])
    if clash.any():
        fresh = [f"JCP2022_{k:06d}" for k in 700_000 + np.arange(int(clash.sum()))]
        perts.loc[clash, "Metadata_JCP2022"] = fresh
        perts.loc[clash, "Metadata_broad_sample"] = fresh
    perts = pd.concat([perts, other, pc, neg], ignore_index=True)
    latent = np.concatenate([latent, z_other.astype(np.float32), z_pc.astype(np.float32), np.zeros((1, d))])
    latent = latent.astype(np.float32)
    n_base = len(reps)
    i_pc = np.arange(n_base + len(others), n_base + len(others) + n_pc)
    i_neg_crispr = len(perts) - 1
    # replicate counts: compounds keep theirs, knockouts (target and other genes) get crispr_replicates_*
    is_cpd = (perts["Metadata_pert_type"] == "compound").to_numpy()
    is_ko = (perts["Metadata_pert_type"] == "crispr").to_numpy()
    rep = np.zeros(len(perts), np.int64)
    rep[:n_base] = reps
    rep[is_ko] = r_extra.integers(spec.crispr_replicates_min, spec.crispr_replicates_max + 1, size=int(is_ko.sum()))
    perts["n_replicates"] = rep
    # enough plates of each type for its wells (+10 %: the replicate placement needs free slots) and replicates
    n_pos384 = 384
    ctrl_cpd = spec.negcon_per_plate + n_pc * spec.poscon_wells
    plates = release_plates(
        shared_dir,
        spec.scale,
        spec.seed,
        min_plates={
            "COMPOUND": max(spec.replicates_max, -(-int(1.1 * rep[is_cpd].sum()) // (n_pos384 - ctrl_cpd))),
            "CRISPR": max(
                spec.crispr_replicates_max, -(-int(1.1 * rep[is_ko].sum()) // (n_pos384 - spec.negcon_per_plate))
            ),
        },
    )
    # --- layout: controls at fixed positions per source; the rest random slots, replicates on distinct plates
    n_rows, n_cols = PLATE_SHAPES[384]
    n_pos = n_rows * n_cols
    sources = sorted(plates["Metadata_Source"].unique())
    src_idx = plates["Metadata_Source"].map({s: i for i, s in enumerate(sources)}).to_numpy()
    ctrl_pos = np.stack(
        [np.sort(r_lay.choice(n_pos, spec.negcon_per_plate + n_pc * spec.poscon_wells, replace=False)) for _ in sources]
    )
    w_plate, w_pos, w_pert = [], [], []
    for kind, pert_idx, negcon in (
        ("COMPOUND", np.flatnonzero(is_cpd), 0),
        ("CRISPR", np.flatnonzero(is_ko), i_neg_crispr),
    ):
        pl = np.flatnonzero(plates["Metadata_PlateType"].to_numpy() == kind)
        if len(pl) == 0 or len(pert_idx) == 0:
            continue
        n_ctrl = spec.negcon_per_plate + (n_pc * spec.poscon_wells if kind == "COMPOUND" else 0)
        free = np.ones((len(sources), n_pos), bool)
        free[np.arange(len(sources))[:, None], ctrl_pos[:, :n_ctrl]] = False
        # control wells
        for p in pl:
            cp = ctrl_pos[src_idx[p]]
            w_plate.append(np.full(spec.negcon_per_plate, p))
            w_pos.append(cp[: spec.negcon_per_plate])
            w_pert.append(np.full(spec.negcon_per_plate, negcon))
            if kind == "COMPOUND":
                w_plate.append(np.full(n_pc * spec.poscon_wells, p))
                w_pos.append(cp[spec.negcon_per_plate : n_ctrl])
                w_pert.append(np.repeat(i_pc, spec.poscon_wells))
        slot_plate = np.repeat(pl, n_pos - n_ctrl)
        slot_pos = np.concatenate([np.flatnonzero(free[src_idx[p]]) for p in pl])
        trt = np.repeat(pert_idx, rep[pert_idx])
        if len(trt) > len(slot_plate):
            raise ValueError(
                f"{len(pl)} {kind} plates hold {len(slot_plate)} treatment wells, {len(trt)} needed: "
                f"lower the replicates or raise the scale"
            )
        if len(pl) < int(rep[pert_idx].max()):
            raise ValueError(
                f"{len(pl)} {kind} plates cannot hold {int(rep[pert_idx].max())} replicates on distinct plates"
            )
        perm = distinct_plate_slots(r_lay, trt, slot_plate, len(plates), tries=2000)
        if perm is None:  # pragma: no cover - nearly full layouts only
            raise ValueError(f"could not place {kind} replicates on distinct plates")
        w_plate.append(slot_plate[perm[: len(trt)]])
        w_pos.append(slot_pos[perm[: len(trt)]])
        w_pert.append(trt)
    wp, wq, wt = (np.concatenate(a) for a in (w_plate, w_pos, w_pert))
    order = np.lexsort((wq, wp))
    plates = plates.assign(n_wells=np.bincount(wp, minlength=len(plates)))
    return _Design(perts, latent, wp[order], wq[order].astype(np.int32), wt[order].astype(np.int64), plates)


class _Nuisance:
    """Per-feature units, the copy structure and source/batch/plate effects, drawn once per release."""

    def __init__(
        self,
        rng: np.random.Generator,
        fmap: _PhenotypeMap,
        model: SyntheticProfileSpec,
        sources: list[str],
        batches: list[str],
        spec: JumpReleaseSpec,
    ) -> None:
        F, B = spec.n_features, spec.n_base_features
        # offsets and position effects live in the phenotype map's (base) feature space
        self.pos_vec = fmap.correlated_vectors(rng, 3)
        self.o_src = dict(zip(sources, fmap.correlated_vectors(rng, len(sources))))
        self.o_bat = dict(zip(batches, fmap.correlated_vectors(rng, len(batches))))
        # feature j > B is mult_j x base feature src_j + its own noise (a CellProfiler-like redundancy)
        self.src = np.concatenate([np.arange(B), rng.integers(0, B, F - B)])
        self.mult = np.concatenate([np.ones(B), rng.choice([-1.0, 1.0], F - B) * rng.uniform(0.5, 1.5, F - B)]).astype(
            np.float32
        )
        self.copy_noise = spec.copy_noise
        # gains and units per raw feature
        self.g_src = dict(zip(sources, rng.standard_normal((len(sources), F)).astype(np.float32)))
        self.g_bat = dict(zip(batches, rng.standard_normal((len(batches), F)).astype(np.float32)))
        self.scale = np.exp(1.5 * rng.standard_normal(F)).astype(np.float32)
        self.loc = (self.scale * (5.0 + 2.0 * rng.standard_normal(F))).astype(np.float32)
        cols = rng.permutation(F)
        self.nan_cols = np.sort(cols[: spec.n_nan_features])
        self.const_cols = np.sort(cols[spec.n_nan_features : spec.n_nan_features + spec.n_constant_features])
        self.model = model


def _plate_profiles(
    design: _Design, p: int, fmap: _PhenotypeMap, nz: _Nuisance, spec: JumpReleaseSpec, rows: np.ndarray
) -> np.ndarray:
    """The raw features of plate ``p``'s wells (``rows`` into the design's well arrays), float32.

    The phenotype map's ``n_base_features`` (plus well noise, position, source, batch and plate offsets)
    are expanded into the ``n_features`` raw features (copies with their own noise), then each raw feature
    gets its source x batch x plate gain and its units."""
    m = nz.model
    plate = design.plates.iloc[p]
    rng = np.random.default_rng([spec.seed, 7, p])
    z = design.latent[design.well_pert[rows]] + m.well_latent_noise * rng.standard_normal(
        (len(rows), m.latent_dim), dtype=np.float32
    )
    base = fmap(z)
    base += m.feature_noise * rng.standard_normal(base.shape, dtype=np.float32)
    pos = design.well_pos[rows]
    n_rows, n_cols = PLATE_SHAPES[384]
    r, c = pos // n_cols, pos % n_cols
    edge = ((r == 0) | (r == n_rows - 1) | (c == 0) | (c == n_cols - 1)).astype(np.float32)
    rowc = ((r - (n_rows - 1) / 2) / ((n_rows - 1) / 2)).astype(np.float32)
    colc = ((c - (n_cols - 1) / 2) / ((n_cols - 1) / 2)).astype(np.float32)
    strength = m.position_effect * max(0.0, 1.0 + 0.3 * float(rng.standard_normal()))
    base += strength * (
        edge[:, None] * nz.pos_vec[0] + 0.5 * rowc[:, None] * nz.pos_vec[1] + 0.5 * colc[:, None] * nz.pos_vec[2]
    )
    src, bat = plate["Metadata_Source"], plate["Metadata_Batch"]
    o_pla = fmap.correlated_vectors(rng, 1)[0]
    base += m.source_effect * nz.o_src[src] + m.batch_effect * nz.o_bat[bat] + m.plate_effect * o_pla
    B = spec.n_base_features
    x = base[:, nz.src]
    x *= nz.mult
    if spec.n_features > B:
        # a copy's own noise is ``copy_noise`` x the base features' well noise: its correlation with its source
        # is >= 1 / sqrt(1 + copy_noise^2) (0.96 at 0.3), as CellProfiler's redundant measurements are
        x[:, B:] += (nz.copy_noise * m.feature_noise) * rng.standard_normal(
            (len(rows), spec.n_features - B), dtype=np.float32
        )
    g_pla = rng.standard_normal(spec.n_features).astype(np.float32)
    x *= nz.scale * np.exp(m.gain_sigma * (nz.g_src[src] + nz.g_bat[bat] + g_pla))
    x += nz.loc
    x[:, nz.const_cols] = nz.loc[nz.const_cols]
    nan_rows = rng.random((len(rows), len(nz.nan_cols))) < spec.nan_feature_share
    block = x[:, nz.nan_cols]
    block[nan_rows] = np.nan
    x[:, nz.nan_cols] = block
    if spec.nan_rate > 0:
        x[rng.random(x.shape) < spec.nan_rate] = np.nan
    return x.astype(np.float32, copy=False)


def _robust_to_negcon(x: np.ndarray, negcon: np.ndarray) -> np.ndarray:
    """Per-plate (x - median_ctrl) / (1.4826 MAD_ctrl), NaN-aware (the processed set's normalization)."""
    c = x[negcon]
    med = np.nanmedian(c, axis=0)
    mad = _MAD_TO_SD * np.nanmedian(np.abs(c - med), axis=0)
    return ((x - med) / np.where(mad > 0, mad, 1.0)).astype(np.float32)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # dictionary encoding only for the text keys: float features have few repeats, and a dictionary that
    # overflows falls back to plain pages after writing the dictionary too (files ~2x their data)
    keys = [c for c in df.columns if c.startswith("Metadata_")]
    with atomic_path(path) as tmp:
        pq.write_table(
            pa.Table.from_pandas(df, preserve_index=False), tmp, compression="snappy", use_dictionary=keys or False
        )


def _metadata_tables(design: _Design, out: Path) -> None:
    d, perts = design, design.perts
    plates = d.plates
    well_names = np.array([f"{chr(65 + r)}{c + 1:02d}" for r in range(16) for c in range(24)], object)
    write_csv_atomic(
        plates[["Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_PlateType"]], out / "plate.csv.gz"
    )
    wells = pd.DataFrame(
        {
            "Metadata_Source": plates["Metadata_Source"].to_numpy()[d.well_plate],
            "Metadata_Plate": plates["Metadata_Plate"].to_numpy()[d.well_plate],
            "Metadata_Well": well_names[d.well_pos],
            "Metadata_JCP2022": perts["Metadata_JCP2022"].to_numpy()[d.well_pert],
        }
    )
    write_csv_atomic(wells, out / "well.csv.gz")
    cpd = perts[perts["Metadata_pert_type"].isin(["compound", "poscon", "negcon"]) & perts["Metadata_InChIKey"].notna()]
    write_csv_atomic(
        cpd[["Metadata_JCP2022", "Metadata_InChIKey"]].assign(Metadata_InChI=None, Metadata_SMILES=None),
        out / "compound.csv.gz",
    )
    ko = perts[perts["Metadata_pert_type"] == "crispr"]
    write_csv_atomic(
        pd.DataFrame(
            {
                "Metadata_JCP2022": ko["Metadata_JCP2022"],
                "Metadata_NCBI_Gene_ID": None,
                "Metadata_Symbol": ko["Metadata_gene"],
            }
        ),
        out / "crispr.csv.gz",
    )
    ctrl = pd.DataFrame(
        [
            {
                "Metadata_JCP2022": NEGCON_JCP2022,
                "Metadata_pert_type": "negcon",
                "Metadata_Name": "DMSO",
                "Metadata_modality": "compound",
            },
            {
                "Metadata_JCP2022": CRISPR_NEGCON_JCP2022,
                "Metadata_pert_type": "negcon",
                "Metadata_Name": "non-targeting",
                "Metadata_modality": "crispr",
            },
            *[
                {
                    "Metadata_JCP2022": k,
                    "Metadata_pert_type": "poscon",
                    "Metadata_Name": v,
                    "Metadata_modality": "compound",
                }
                for k, v in POSITIVE_CONTROLS.items()
            ],
        ]
    )
    write_csv_atomic(ctrl, out / "perturbation_control.csv")
    ann = perts[(perts["Metadata_pert_type"] == "compound") & perts["Metadata_moa"].notna()]
    write_csv_atomic(
        pd.DataFrame(
            {
                "broad_sample": ann["Metadata_JCP2022"],
                "InChIKey": ann["Metadata_InChIKey"],
                "pert_iname": ann["Metadata_JCP2022"],
                "target": ann["Metadata_target"],
                "target_list": ann["Metadata_target"],
                "moa_list": ann["Metadata_moa"],
            }
        ),
        out / "compound_annotations.csv.gz",
    )
    truth = perts.drop(columns=[c for c in ("Metadata_pert_iname",) if c in perts.columns])
    _write_parquet(truth, out / "perturbations_ground_truth.parquet")


def _read_info(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return info if info.get("format") == RELEASE_FORMAT else None


def generate_release(
    spec: JumpReleaseSpec,
    root: str | os.PathLike,
    shared_dir: str | os.PathLike,
    *,
    progress: Callable[[int, int, int], None] | None = None,
) -> ReleaseInfo:
    """Write (or resume, or return the cached) JUMP-shaped release of ``spec`` under ``root``.

    ``progress(plates_done, n_plates, wells_done)`` is called after each plate. Raises
    ``ValueError`` when ``root`` holds a release of another spec (delete it or use another
    folder) and :class:`~moa_core.errors.SchemaError` for an unusable cpg0016 plate table.
    """
    t0 = time.time()
    root = Path(root)
    info_path = root / "release.json"
    done = _read_info(info_path)
    if done is not None:
        if done["spec_fingerprint"] != spec.fingerprint():
            raise ValueError(
                f"{root} holds a release of another spec ({done['spec_fingerprint']}, this is "
                f"{spec.fingerprint()}): delete the folder or generate into another one"
            )
        if done.get("complete"):
            return _info(root, spec, done, 0, time.time() - t0)
    started = root / ".generating.json"
    prev = _read_info(started)
    if prev is not None and prev["spec_fingerprint"] != spec.fingerprint():
        raise ValueError(f"{root} holds a partial release of another spec: delete it or use another folder")
    shared = Path(shared_dir)
    design = _design(spec, shared)
    model = SyntheticProfileSpec(n_features=spec.n_base_features, seed=spec.seed, **spec.model)
    r_net = np.random.default_rng(np.random.SeedSequence([spec.seed, 16]).spawn(8)[2])
    fmap = _PhenotypeMap(r_net, model)
    r_nuis = np.random.default_rng(np.random.SeedSequence([spec.seed, 16]).spawn(8)[4])
    plates = design.plates
    nz = _Nuisance(
        r_nuis, fmap, model, sorted(plates["Metadata_Source"].unique()), sorted(plates["Metadata_Batch"].unique()), spec
    )
    feats = feature_names(spec.n_features)
    clean = np.setdiff1d(np.arange(spec.n_features), np.concatenate([nz.nan_cols, nz.const_cols]))
    proc_idx = np.sort(np.random.default_rng([spec.seed, 11]).choice(clean, spec.n_processed_features, replace=False))
    proc_cols = [feats[i] for i in proc_idx]
    write_json_atomic({"format": RELEASE_FORMAT, "spec_fingerprint": spec.fingerprint(), "spec": asdict(spec)}, started)
    meta = root / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    _metadata_tables(design, meta)
    well_names = np.array([f"{chr(65 + r)}{c + 1:02d}" for r in range(16) for c in range(24)], object)
    bounds = np.searchsorted(design.well_plate, np.arange(len(plates) + 1))
    negcon_ids = {0, len(design.perts) - 1}
    parts = root / ".processed_parts"
    generated, wells_done = 0, 0
    for p in range(len(plates)):
        rows = np.arange(bounds[p], bounds[p + 1])
        pl = plates.iloc[p]
        path = plate_file(root, pl["Metadata_Source"], pl["Metadata_Batch"], pl["Metadata_Plate"])
        part = parts / f"{pl['Metadata_Plate']}.parquet"
        if not (path.is_file() and part.is_file()):
            x = _plate_profiles(design, p, fmap, nz, spec, rows)
            keys = pd.DataFrame(
                {
                    "Metadata_Source": pl["Metadata_Source"],
                    "Metadata_Plate": pl["Metadata_Plate"],
                    "Metadata_Well": well_names[design.well_pos[rows]],
                }
            )
            _write_parquet(pd.concat([keys, pd.DataFrame(x, columns=feats, copy=False)], axis=1), path)
            ctrl = np.isin(design.well_pert[rows], list(negcon_ids))
            xp = _robust_to_negcon(x[:, proc_idx], ctrl)
            _write_parquet(
                pd.concat(
                    [keys.assign(Metadata_Batch=pl["Metadata_Batch"]), pd.DataFrame(xp, columns=proc_cols, copy=False)],
                    axis=1,
                ),
                part,
            )
            generated += 1
        wells_done += len(rows)
        if progress:
            progress(p + 1, len(plates), wells_done)
    _assemble(parts, plates, root / PROCESSED_RELATIVE)
    _write_manifest(root)
    info = {
        "format": RELEASE_FORMAT,
        "spec_fingerprint": spec.fingerprint(),
        "spec": asdict(spec),
        "complete": True,
        "features": feats,
        "processed_features": proc_cols,
        "sizes": spec.sizes,
        "plates": plates.to_dict("list"),
        "n_wells": int(plates["n_wells"].sum()),
    }
    write_json_atomic(info, info_path)
    started.unlink(missing_ok=True)
    return _info(root, spec, info, generated, time.time() - t0)


def _assemble(parts: Path, plates: pd.DataFrame, out: Path) -> None:
    """Concatenate the per-plate processed parts into one assembled parquet (one row group per plate)."""
    import pyarrow.parquet as pq

    writer = None
    with atomic_path(out) as tmp:
        try:
            for plate in plates["Metadata_Plate"]:
                t = pq.read_table(parts / f"{plate}.parquet")
                if writer is None:
                    writer = pq.ParquetWriter(tmp, t.schema, compression="snappy")
                writer.write_table(t)
        finally:
            if writer is not None:
                writer.close()


def _write_manifest(root: Path) -> None:
    """A ``profile_index.json`` like JUMP's, naming the assembled processed profiles with their ETag."""
    proc = root / PROCESSED_RELATIVE
    h = hashlib.md5(usedforsecurity=False)
    with open(proc, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    write_json_atomic([{"subset": "compound", "url": str(proc), "etag": h.hexdigest()}], root / "profile_index.json")


def _info(root: Path, spec: JumpReleaseSpec, info: dict, generated: int, seconds: float) -> ReleaseInfo:
    return ReleaseInfo(
        root=root,
        spec=spec,
        plates=pd.DataFrame(info["plates"]),
        feature_cols=list(info["features"]),
        processed_cols=list(info["processed_features"]),
        seconds=seconds,
        plates_generated=generated,
    )


def expected_wells(spec: JumpReleaseSpec) -> float:
    """About how many wells a release of ``spec`` has (for sizing: compounds x mean replicates + controls)."""
    sz = spec.sizes
    reps = (spec.replicates_min + spec.replicates_max) / 2
    return sz["compounds"] * reps + math.ceil(1876 * spec.scale) * (spec.negcon_per_plate + 16)
