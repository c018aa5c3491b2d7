"""Synthetic CPJUMP1: a deterministic Cell Painting renderer on the real CPJUMP1 design.

The plates, wells, compounds, cell lines, timepoints and DMSO positions are the real
ones (:mod:`moa_core.data.design`); only the pixels are synthetic. Files are named and
laid out like the real Phenix exports (``rRRcCCfFFp01-chNsk1fk1fl1.tiff``, channel
numbers of cpg0000/source_4: ch1 Mito, ch2 AGP, ch3 RNA, ch4 ER, ch5 DNA) and listed in
a load_data table with the real column convention, so one reader serves both.

Phenotype model
---------------
Every well has a latent morphology vector ``z`` over :data:`LATENT_AXES` (log-scale
effects on size, per-compartment intensity, texture, puncta counts, shape and cell
count)::

    z_well = g_line * t_time * p_cpd * (mu_moa + delta_cpd) + b_line + b_time + eps_well
                                                                        (+ edge effect)

- ``mu_moa``: the MOA's effect, shared by its compounds (sparse: a few axes dominate);
- ``delta_cpd``: the compound's own deviation; ``p_cpd`` its potency;
- ``g_line``: per-cell-line gains (same direction, different magnitude per axis);
  ``t_time``: 24 h shows a weaker effect than 48 h; ``b_*``: baseline morphology;
- ``eps_well``: replicate noise; edge wells lose cells and gain intensity
  (evaporation); every plate has its own per-channel gain and background offset;
- cells scatter around the well vector (``cell_noise``).

DMSO wells have ``mu = delta = 0``. Nothing in the pixels encodes the MOA except
through these morphological effects: no constant, no marker pixel.
Everything is deterministic given ``seed``: each field draws from a random stream keyed
by (seed, plate, well, site), so fields can be rendered in any order or in parallel.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from moa_core.atomic import write_csv_atomic
from moa_core.data.config import REAL_FIELD_SIZE, REAL_NUCLEI_PER_FIELD, SyntheticSpec  # noqa: F401 (re-exported)
from moa_core.data.design import NEGCON, is_edge_well, select_moas, select_plates, subset_design, well_row_col
from moa_core.data.image_io import CHANNEL_MAPS, CHANNELS, field_filename, write_tiff_atomic
from moa_core.data.load_data import filename_col, pathname_col

LATENT_AXES: tuple[str, ...] = (
    "nucleus_size",
    "dna_intensity",
    "dna_texture",
    "cell_size",
    "er_intensity",
    "er_texture",
    "rna_nucleoli",
    "agp_intensity",
    "agp_fibers",
    "mito_puncta",
    "mito_intensity",
    "elongation",
    "cell_count",
)
_AX = {name: i for i, name in enumerate(LATENT_AXES)}

# Channel background (camera offset + autofluorescence), read off the real fields'
# 1st percentiles, and foreground scale (typical bright-object level).
_BACKGROUND = {"DNA": 330.0, "ER": 260.0, "RNA": 400.0, "AGP": 450.0, "Mito": 700.0}
_SCALE = {"DNA": 9000.0, "ER": 4200.0, "RNA": 5200.0, "AGP": 4800.0, "Mito": 3000.0}


def _key(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def _rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, _key(*parts)]))


@dataclass
class PhenotypeModel:
    """Latent effects for MOAs, compounds, cell lines, timepoints and plates."""

    spec: SyntheticSpec
    moa_effects: dict[str, np.ndarray] = field(default_factory=dict)
    compound_effects: dict[str, np.ndarray] = field(default_factory=dict)

    def moa_effect(self, moa: str) -> np.ndarray:
        if moa not in self.moa_effects:
            r = _rng(self.spec.seed, "moa", moa)
            weights = r.gamma(0.6, 1.0, len(LATENT_AXES))  # sparse: few axes dominate
            weights /= weights.max()
            direction = r.normal(0.0, 1.0, len(LATENT_AXES)) * weights
            direction /= np.linalg.norm(direction) + 1e-12
            self.moa_effects[moa] = direction * self.spec.moa_effect * np.sqrt(len(LATENT_AXES)) / 2.0
        return self.moa_effects[moa]

    def compound_effect(self, compound: str, moa: str) -> np.ndarray:
        if compound not in self.compound_effects:
            if moa == NEGCON:
                self.compound_effects[compound] = np.zeros(len(LATENT_AXES))
            else:
                r = _rng(self.spec.seed, "compound", compound)
                moas = [m for m in str(moa).split("|") if m]
                mu = np.mean([self.moa_effect(m) for m in moas], axis=0)
                dev = r.normal(0.0, self.spec.compound_deviation * self.spec.moa_effect, len(LATENT_AXES))
                potency = r.uniform(0.7, 1.3)
                self.compound_effects[compound] = potency * (mu + dev)
        return self.compound_effects[compound]

    def cell_line_gain(self, line: str) -> np.ndarray:
        return np.exp(_rng(self.spec.seed, "line-gain", line).normal(0.0, 0.25, len(LATENT_AXES)))

    def cell_line_baseline(self, line: str) -> np.ndarray:
        b = _rng(self.spec.seed, "line-base", line).normal(0.0, 0.08, len(LATENT_AXES))
        if line == "U2OS":  # flatter, larger, more elongated than A549
            b[_AX["cell_size"]] += 0.18
            b[_AX["elongation"]] += 0.25
            b[_AX["nucleus_size"]] += 0.06
        return b

    @staticmethod
    def time_factor(hours: int) -> float:
        return float(np.clip(hours / 48.0, 0.3, 1.5) ** 0.7)

    def plate_gain(self, plate: str) -> np.ndarray:
        return np.exp(_rng(self.spec.seed, "plate", plate).normal(0.0, self.spec.plate_gain_sd, len(CHANNELS)))

    def plate_background(self, plate: str) -> np.ndarray:
        return _rng(self.spec.seed, "plate-bg", plate).normal(0.0, 25.0, len(CHANNELS))

    def well_latent(self, row: pd.Series | dict) -> np.ndarray:
        """Latent vector ``z`` of one well (see module docstring)."""
        cpd, moa = str(row["Metadata_broad_sample"]), str(row["Metadata_moa"])
        line, hours = str(row["Metadata_cell_line"]), int(row["Metadata_timepoint"])
        z = self.cell_line_gain(line) * self.time_factor(hours) * self.compound_effect(cpd, moa)
        z = z + self.cell_line_baseline(line)
        z[_AX["cell_count"]] += 0.12 * (hours - 24) / 24.0  # cells keep dividing
        r = _rng(self.spec.seed, "well", row["Metadata_Plate"], row["Metadata_Well"])
        z = z + r.normal(0.0, self.spec.replicate_noise, len(LATENT_AXES))
        if is_edge_well(str(row["Metadata_Well"])):
            z[_AX["cell_count"]] -= 0.2
            z[_AX["dna_intensity"]] += 0.06
            z[_AX["er_intensity"]] += 0.06
        return z


def _smooth_noise(r: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(r.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return n / (n.std() + 1e-12)


def render_field(
    z: np.ndarray,
    *,
    size: int,
    mean_cells: float,
    cell_noise: float,
    plate_gain: np.ndarray,
    plate_background: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one field as a ``(5, size, size)`` uint16 array in :data:`CHANNELS` order.

    ``z`` is the well latent vector; cells scatter around it with ``cell_noise``.
    """
    S = size
    n_cells = int(rng.poisson(mean_cells * np.exp(z[_AX["cell_count"]])))
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    signal = np.zeros((len(CHANNELS), S, S), np.float32)
    ci = {ch: i for i, ch in enumerate(CHANNELS)}

    if n_cells > 0:
        zc = z[None, :] + rng.normal(0.0, cell_noise, (n_cells, len(LATENT_AXES)))
        r_nuc = 17.0 * np.exp(0.5 * zc[:, _AX["nucleus_size"]])
        r_cell = 2.6 * r_nuc * np.exp(0.5 * zc[:, _AX["cell_size"]])
        elong = np.clip(0.2 * np.exp(zc[:, _AX["elongation"]]), 0.0, 0.8)
        theta = rng.uniform(0, np.pi, n_cells)
        # centers: rejection sampling so nuclei do not overlap
        centers: list[tuple[float, float]] = []
        tries = 0
        while len(centers) < n_cells and tries < n_cells * 60:
            tries += 1
            c = rng.uniform(0, S, 2)
            rn = r_nuc[len(centers)]
            if all((c[0] - a) ** 2 + (c[1] - b) ** 2 > (1.9 * max(rn, 14.0)) ** 2 for a, b in centers):
                centers.append((float(c[0]), float(c[1])))
        n_cells = len(centers)
        cy = np.array([c[0] for c in centers], np.float32)
        cx = np.array([c[1] for c in centers], np.float32)
        r_nuc, r_cell, elong, theta, zc = (
            r_nuc[:n_cells],
            r_cell[:n_cells],
            elong[:n_cells],
            theta[:n_cells],
            zc[:n_cells],
        )

    if n_cells > 0:
        # normalized distance of every pixel to every cell (cell outline irregular + elongated)
        dy = yy[None] - cy[:, None, None]
        dx = xx[None] - cx[:, None, None]
        cos_t, sin_t = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        u = dx * cos_t + dy * sin_t
        v = -dx * sin_t + dy * cos_t
        e = elong[:, None, None]
        ang = np.arctan2(v, u)
        ph = rng.uniform(0, 2 * np.pi, (n_cells, 2))[:, :, None, None]
        wob = 1.0 + 0.12 * np.sin(3 * ang + ph[:, 0]) + 0.07 * np.sin(5 * ang + ph[:, 1])
        rc = r_cell[:, None, None]
        d_cell = np.sqrt((u / (1 + e)) ** 2 + (v * (1 + e)) ** 2) / (rc * wob)
        owner = np.argmin(d_cell, axis=0)
        dmin = np.take_along_axis(d_cell, owner[None], 0)[0]
        in_cell = dmin < 1.0
        # nucleus: smaller ellipse at the cell center, same orientation
        rn = r_nuc[:, None, None]
        d_nuc_all = np.sqrt((u / (1 + 0.6 * e)) ** 2 + (v * (1 + 0.6 * e)) ** 2) / rn
        d_nuc = np.take_along_axis(d_nuc_all, owner[None], 0)[0]
        in_nuc = in_cell & (d_nuc < 1.0)
        cyto = in_cell & ~in_nuc

        def per_px(values: np.ndarray) -> np.ndarray:
            return values[owner].astype(np.float32)

        expz = np.exp(zc)
        tex_fine = _smooth_noise(rng, (S, S), 1.2)
        tex_mid = _smooth_noise(rng, (S, S), 2.5)

        # DNA: bright nucleus, dimmer rim, chromatin texture, soft edge
        edge_n = 1.0 / (1.0 + np.exp((d_nuc - 1.0) / 0.06))
        dna_tex = 0.18 * per_px(expz[:, _AX["dna_texture"]])
        dna = per_px(expz[:, _AX["dna_intensity"]]) * (1.0 - 0.25 * d_nuc**2) * (1.0 + dna_tex * tex_fine)
        signal[ci["DNA"]] = np.clip(dna, 0, None) * edge_n * in_cell

        # ER: perinuclear reticulum decaying towards the membrane, textured
        er_tex = 0.35 * per_px(expz[:, _AX["er_texture"]])
        er_level = per_px(expz[:, _AX["er_intensity"]])
        er = er_level * np.exp(-np.clip(dmin - 0.35, 0, None) / 0.35) * (1.0 + er_tex * tex_mid)
        signal[ci["ER"]] = np.clip(er, 0, None) * (cyto + 0.15 * in_nuc)

        # RNA: faint cytoplasm + nucleoli spots inside the nucleus
        rna = np.zeros((S, S), np.float32)
        rna += 0.25 * (cyto + 0.35 * in_nuc) * (1.0 + 0.2 * tex_mid)
        spots = np.zeros((S, S), np.float32)
        n_nucleoli = rng.poisson(2.5 * expz[:, _AX["rna_nucleoli"]])
        for k in range(n_cells):
            for _ in range(int(min(n_nucleoli[k], 12))):
                rr = rng.uniform(0, 0.55) * r_nuc[k]
                a = rng.uniform(0, 2 * np.pi)
                py, px = int(cy[k] + rr * np.sin(a)), int(cx[k] + rr * np.cos(a))
                if 0 <= py < S and 0 <= px < S:
                    spots[py, px] += 60.0
        rna += ndimage.gaussian_filter(spots, 2.2)
        signal[ci["RNA"]] = rna * in_cell

        # AGP: membrane ridge at the cell outline + actin fibres inside
        membrane = np.exp(-(((1.0 - dmin) / 0.07) ** 2)) * in_cell
        fib_dir = _smooth_noise(rng, (S, S), 0.8)
        fibres = ndimage.uniform_filter1d(ndimage.uniform_filter1d(fib_dir, 9, axis=1), 2, axis=0)
        fibres = np.clip(fibres, 0, None) * per_px(expz[:, _AX["agp_fibers"]]) * 0.9
        agp = per_px(expz[:, _AX["agp_intensity"]]) * (0.8 * membrane + 0.25 * cyto + fibres * cyto)
        signal[ci["AGP"]] = agp

        # Mito: puncta in the cytoplasm, denser near the nucleus
        puncta = np.zeros((S, S), np.float32)
        n_mito = rng.poisson(22.0 * expz[:, _AX["mito_puncta"]] * (r_cell / 40.0) ** 2)
        for k in range(n_cells):
            m = int(min(n_mito[k], 400))
            if m == 0:
                continue
            rr = r_nuc[k] + rng.gamma(1.5, 0.3, m) * (r_cell[k] - r_nuc[k])
            a = rng.uniform(0, 2 * np.pi, m)
            py = np.round(cy[k] + rr * np.sin(a)).astype(int)
            px = np.round(cx[k] + rr * np.cos(a)).astype(int)
            ok = (py >= 0) & (py < S) & (px >= 0) & (px < S)
            np.add.at(puncta, (py[ok], px[ok]), 9.0 * expz[k, _AX["mito_intensity"]])
        signal[ci["Mito"]] = ndimage.gaussian_filter(puncta, 1.3) * cyto + 0.12 * cyto

    # illumination (smooth vignetting), scaling, background and shot/read noise
    vign = 1.0 - 0.12 * (((yy - S / 2) ** 2 + (xx - S / 2) ** 2) / (S / 2) ** 2)
    out = np.empty((len(CHANNELS), S, S), np.uint16)
    for i, ch in enumerate(CHANNELS):
        level = signal[i] * _SCALE[ch] * plate_gain[i] * vign
        bg = _BACKGROUND[ch] + plate_background[i]
        img = bg + level
        img = img + rng.normal(0.0, 1.0, (S, S)) * np.sqrt(np.clip(img, 1, None) * 2.0 + 15.0**2)
        out[i] = np.clip(np.round(img), 0, 65535).astype(np.uint16)
    return out


@dataclass(frozen=True)
class _FieldJob:
    plate: str
    well: str
    site: int
    z: np.ndarray
    plate_gain: np.ndarray
    plate_background: np.ndarray
    paths: tuple[str, ...]  # one output path per CHANNELS entry


def _render_job(args: tuple[_FieldJob, SyntheticSpec]) -> tuple[str, str, int, int]:
    job, spec = args
    rng = _rng(spec.seed, "field", job.plate, job.well, job.site)
    img = render_field(
        job.z,
        size=spec.image_size,
        mean_cells=spec.mean_cells,
        cell_noise=spec.cell_noise,
        plate_gain=job.plate_gain,
        plate_background=job.plate_background,
        rng=rng,
    )
    for plane, path in zip(img, job.paths):
        write_tiff_atomic(path, plane)
    return job.plate, job.well, job.site, int(img.nbytes)


def build_well_table(design: pd.DataFrame, spec: SyntheticSpec) -> pd.DataFrame:
    """The wells the synthetic dataset renders: selected plates, top MOAs, DMSO subset."""
    plates = select_plates(design, spec.n_plates)
    moas = select_moas(design, spec.max_moas)
    wells = subset_design(design, plates, moas, include_multi_moa=spec.include_multi_moa)
    if spec.dmso_wells_per_plate is not None:
        keep = []
        for _, grp in wells.groupby("Metadata_Plate", sort=True):
            dmso = grp[grp["Metadata_moa"].eq(NEGCON)]
            n = min(spec.dmso_wells_per_plate, len(dmso))
            idx = np.linspace(0, len(dmso) - 1, n).round().astype(int) if n else []
            keep.append(grp[~grp["Metadata_moa"].eq(NEGCON)])
            keep.append(dmso.iloc[np.unique(idx)])
        wells = pd.concat(keep).sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    return wells


def render_dataset(
    design: pd.DataFrame,
    spec: SyntheticSpec,
    out_dir: str | Path,
    *,
    n_workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render every field of the synthetic dataset under ``out_dir``.

    Writes ``out_dir/images/<plate>/Images/<phenix name>.tiff`` (one file per channel,
    each written to a temporary name and renamed) and ``out_dir/load_data.csv``
    (written last, atomically: if it exists, every image it names exists).

    Returns ``(load_data, wells)``: the load_data table (paths relative to ``out_dir``)
    and the well table (design + latent vector columns ``Latent_<axis>``).
    """
    out = Path(out_dir)
    wells = build_well_table(design, spec)
    model = PhenotypeModel(spec)
    ch_num = {stain: num for num, stain in CHANNEL_MAPS["cpg0000"].items()}
    jobs: list[_FieldJob] = []
    rows = []
    latents = []
    for _, w in wells.iterrows():
        z = model.well_latent(w)
        latents.append(z)
        r, c = well_row_col(w["Metadata_Well"])
        rel = Path("images") / w["Metadata_Plate"] / "Images"
        for site in range(1, spec.fields_per_well + 1):
            names = [field_filename(r, c, site, ch_num[ch]) for ch in CHANNELS]
            jobs.append(
                _FieldJob(
                    w["Metadata_Plate"],
                    w["Metadata_Well"],
                    site,
                    z,
                    model.plate_gain(w["Metadata_Plate"]),
                    model.plate_background(w["Metadata_Plate"]),
                    tuple(str(out / rel / n) for n in names),
                )
            )
            row = {"Metadata_Plate": w["Metadata_Plate"], "Metadata_Well": w["Metadata_Well"], "Metadata_Site": site}
            for ch, n in zip(CHANNELS, names):
                row[filename_col(ch)] = n
                row[pathname_col(ch)] = str(rel) + "/"
            rows.append(row)
    wells = wells.copy()
    for j, ax in enumerate(LATENT_AXES):
        wells[f"Latent_{ax}"] = [z[j] for z in latents]

    done = 0
    from moa_core.processes import usable_processes

    n_workers = usable_processes(n_workers)  # 1 in a daemonic process (a Celery pool process)
    if n_workers > 1:
        with ProcessPoolExecutor(n_workers) as pool:
            for _ in pool.map(_render_job, [(j, spec) for j in jobs], chunksize=8):
                done += 1
                if progress and (done % 50 == 0 or done == len(jobs)):
                    progress(done, len(jobs))
    else:
        for j in jobs:
            _render_job((j, spec))
            done += 1
            if progress and (done % 50 == 0 or done == len(jobs)):
                progress(done, len(jobs))
    load_data = pd.DataFrame(rows)
    write_csv_atomic(load_data, out / "load_data.csv")
    return load_data, wells
