"""Per-well annotations (compound, MOA, target, controls) for every layout, as one wells table.

- ``"cpjump1"``: the real CPJUMP1 design + JUMP-Target-1 annotations (``moa_list``), as
  :func:`moa_core.data.design.load_cpjump1_design`;
- ``"lincs"``: the plate's own published profile metadata (LINCS platemaps travel with its
  profiles) annotated by the LINCS repurposing map, restricted to ``entry.dose_uM``;
- ``"cpg0016"``: JUMP's ``well.csv.gz`` + ``compound.csv.gz`` (folder ``$MOA_JUMP_METADATA``)
  joined by InChIKey to the JUMP-Target-1 annotations; controls from ``perturbation_control.csv``;
- a path: a user's table with ``Metadata_Plate, Metadata_Well, Metadata_broad_sample,
  Metadata_moa``; negative controls by the entry's ``controls``
  (:mod:`moa_core.data.controls`: ``DMSO`` in the MOA, compound or name column, or ``negcon``).

Every branch ends in :func:`moa_core.data.sources.base.to_wells_table`, so the
``wells`` table has the same schema whatever the source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from moa_core.data.design import load_cpjump1_design
from moa_core.data.load_data import read_table_file
from moa_core.data.sources.base import to_wells_table
from moa_core.errors import SchemaError

if TYPE_CHECKING:
    from moa_core.datasets import DatasetEntry

KEYS = ["Metadata_Plate", "Metadata_Well"]


def _restrict(wells: pd.DataFrame, load_data: pd.DataFrame) -> pd.DataFrame:
    keys = load_data[KEYS].drop_duplicates().astype(str)
    return wells.astype({"Metadata_Plate": str, "Metadata_Well": str}).merge(keys, on=KEYS, how="inner")


def _shared_file(shared_dir: Path, *parts: str) -> Path:
    p = Path(shared_dir).joinpath("data", *parts)
    if not p.is_file():
        raise FileNotFoundError(f"annotation file not found: {p} (set MOA_SHARED_DIR)")
    return p


def lincs_wells(profile_paths: list[Path], shared_dir: Path, dose_uM: float | None) -> pd.DataFrame:
    """LINCS per-well annotations from the plates' published profile metadata + repurposing map."""
    from moa_core.profiles.published import annotate_lincs, apply_paper_filters, read_profile_file, to_canonical

    parts = []
    for p in profile_paths:
        prof = read_profile_file(p)
        meta = prof[[c for c in prof.columns if c.startswith("Metadata_")]]
        parts.append(
            to_canonical(
                annotate_lincs(
                    meta, _shared_file(shared_dir, "lincs", "repurposing_info_external_moa_map_resolved.tsv")
                ),
                release="cpg0004",
                source_file=str(p),
            )
        )
    wells = pd.concat(parts, ignore_index=True)
    if dose_uM is not None:
        wells, _ = apply_paper_filters(wells, single_moa=False, dose_uM=dose_uM)
    return wells


def cpg0016_wells(shared_dir: Path, metadata_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """cpg0016 per-well annotations: well.csv.gz + compound.csv.gz joined by InChIKey to JUMP-Target-1."""
    from moa_core.profiles.published import annotate_by_inchikey

    d = Path(metadata_dir or os.environ.get("MOA_JUMP_METADATA", ""))
    need = [d / "well.csv.gz", d / "compound.csv.gz"]
    if not str(metadata_dir or os.environ.get("MOA_JUMP_METADATA", "")) or not all(p.is_file() for p in need):
        raise FileNotFoundError(
            "cpg0016 annotations need JUMP's metadata tables well.csv.gz and compound.csv.gz (the "
            "jump-cellpainting/datasets repository's metadata/ folder): set MOA_JUMP_METADATA to that folder; "
            f"looked in {d if str(d) != '.' else '(unset)'}"
        )
    wells = read_table_file(need[0])
    compounds = read_table_file(need[1])
    ann = pd.read_csv(
        _shared_file(shared_dir, "cpjump1", "JUMP-Target-1_compound_metadata_additional_annotations.tsv"), sep="\t"
    )
    controls = pd.read_csv(_shared_file(shared_dir, "cpg0016", "perturbation_control.csv"))
    return annotate_by_inchikey(wells, wells, compounds, ann, controls=controls)


def well_annotations(entry: DatasetEntry, load_data: pd.DataFrame, shared_dir: Path, source=None) -> pd.DataFrame:
    """The wells table of an image dataset's fields (see the module docstring)."""
    ann = entry.annotations
    where = f"dataset {entry.name}"
    if ann == "cpjump1":
        wells = load_cpjump1_design(shared_dir)
    elif ann == "lincs":
        if source is None or not hasattr(source, "download_profile"):
            raise SchemaError(f"{where}: LINCS annotations come from the gallery's per-plate profiles")
        plates = sorted(load_data["Metadata_Plate"].unique())
        wells = lincs_wells([source.download_profile(p)[0] for p in plates], shared_dir, entry.dose_uM)
    elif ann == "cpg0016":
        wells = cpg0016_wells(shared_dir)
    elif ann:
        p = Path(ann)
        if not p.is_absolute() and entry.path:
            p = Path(entry.path) / p
        wells = read_table_file(p)
        where = str(p)
    else:
        raise SchemaError(
            f"{where}: no annotations: set `annotations` to cpjump1, lincs, cpg0016 or a per-well "
            f"table (Metadata_Plate, Metadata_Well, Metadata_broad_sample, Metadata_moa)"
        )
    out = to_wells_table(_restrict(wells, load_data), where, entry.controls)
    if out.empty:
        raise SchemaError(
            f"{where}: none of the {load_data[KEYS].drop_duplicates().shape[0]} wells of the load_data "
            f"has an annotation"
        )
    return out
