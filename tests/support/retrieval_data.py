"""Small well-profile tables with planted MOA structure, and a published snapshot with retrieval indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MOAS = ["aurora kinase inhibitor", "HDAC inhibitor", "tubulin inhibitor"]
CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")


def toy_profiles(
    seed: int = 0, n_plates: int = 3, per_moa: int = 4, dim: int = 32, noise: float = 0.35
) -> tuple[pd.DataFrame, list[str]]:
    """3 MOAs x ``per_moa`` compounds, one well per compound per plate, 4 DMSO wells per plate. MOA 2's
    direction is minus MOA 0's, so MOA 0 and MOA 2 compounds are anti-correlated."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(2, dim))
    dirs = [base[0], base[1], -base[0]]
    rows, X = [], []
    for p in range(n_plates):
        plate = f"P{p}"
        for m, moa in enumerate(MOAS):
            for c in range(per_moa):
                own = np.random.default_rng(100 * m + c).normal(size=dim) * 0.3
                X.append(dirs[m] + own + rng.normal(size=dim) * noise)
                rows.append(
                    {
                        "Metadata_Plate": plate,
                        "Metadata_Well": f"A{m:02d}{c:02d}",
                        "Metadata_broad_sample": f"BRD-K{m}{c:07d}-001-01-1",
                        "Metadata_pert_iname": f"cpd{m}{c}",
                        "Metadata_moa": moa,
                        "Metadata_target": f"T{m}",
                        "Metadata_pert_type": "trt",
                    }
                )
        for d in range(4):
            X.append(rng.normal(size=dim) * noise)
            rows.append(
                {
                    "Metadata_Plate": plate,
                    "Metadata_Well": f"P{d:02d}",
                    "Metadata_broad_sample": "DMSO",
                    "Metadata_pert_iname": "DMSO",
                    "Metadata_moa": "DMSO",
                    "Metadata_target": None,
                    "Metadata_pert_type": "control",
                }
            )
    df = pd.DataFrame(rows)
    feats = [f"f{i}" for i in range(dim)]
    return pd.concat([df, pd.DataFrame(np.array(X), columns=feats)], axis=1), feats


def publish_toy_snapshot(
    root: Path,
    *,
    methods: tuple[str, ...] = ("MP", "CP"),
    dataset: str = "toy",
    fraction: str = "100",
    images: bool = True,
    missing_image_well: str | None = None,
) -> Path:
    """Build real retrieval indexes (``moa_core.retrieval``) for ``methods`` under ``root``, real 16-bit TIFF
    fields for every well (except ``missing_image_well``, recorded but absent), the warehouse tables the
    retrieval_index asset writes, and publish the snapshot. Returns the snapshot path."""
    from moa_core.data.image_io import write_tiff_atomic
    from moa_core.retrieval import build_index, calibrate, compound_activity, save_index
    from moa_core.storage import Warehouse, partition_table

    wh = Warehouse(root / "warehouse.duckdb")
    rows = []
    for i, method in enumerate(methods):
        df, feats = toy_profiles(seed=i, noise=0.35 + 0.3 * i)
        idx = build_index(df, feats, method=method, dataset=dataset, fraction=fraction)
        w = idx.wells
        act, _ = compound_activity(
            np.asarray(idx.vectors),
            w["compound"].to_numpy(),
            w["Metadata_Plate"].to_numpy(),
            w["is_control"].to_numpy(bool),
            null_size=200,
        )
        idx.compounds = idx.compounds.merge(act, on="compound", how="left")
        rel = Path("retrieval") / dataset / fraction / f"{method.lower()}-{idx.manifest['build_id']}"
        cal = calibrate(idx, k=5)
        save_index(idx, root / rel, tables={"calibration.parquet": cal})
        rows.append(
            {
                "dataset": dataset,
                "fraction": fraction,
                "method": method,
                "path": str(rel),
                "build_id": idx.manifest["build_id"],
                "n_wells": idx.n_wells,
                "n_compounds": len(idx.compounds),
                "dim": idx.dim,
                "knn_loco_precision": float(cal["knn_correct"].mean()),
                "latent_loco_precision": float(cal["latent_correct"].mean()),
                "n_calibration": len(cal),
                "notes": "",
                "built_at": idx.manifest["built_at"],
                "code_version": "test",
            }
        )
    wh.replace_rows("retrieval_indexes", pd.DataFrame(rows), {"dataset": dataset, "fraction": fraction})
    if images:
        df, _ = toy_profiles()
        rng = np.random.default_rng(0)
        fields = []
        for r in df[["Metadata_Plate", "Metadata_Well"]].itertuples(index=False):
            rec = {"Metadata_Plate": r.Metadata_Plate, "Metadata_Well": r.Metadata_Well, "Metadata_Site": 1}
            for c, ch in enumerate(CHANNELS):
                rel = Path("images") / r.Metadata_Plate / f"{r.Metadata_Well}-ch{c + 1}.tiff"
                if r.Metadata_Well != missing_image_well:
                    write_tiff_atomic(root / rel, rng.integers(0, 4000, (48, 48)).astype(np.uint16))
                rec[f"path_{ch}"] = str(rel)
            rec["store_path"], rec["store_row"] = None, None
            fields.append(rec)
        f = pd.DataFrame(fields)
        f["store_row"] = f["store_row"].astype("Int64")
        wh.replace_table(partition_table("image_fields", dataset), f, partition={"dataset": dataset})
    return wh.publish_snapshot(root / "snapshot" / "warehouse.duckdb")
