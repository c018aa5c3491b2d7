"""Fixtures for the evaluation tests: the real LINCS plate and small synthetic tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = (REPO_ROOT / ".." / "shared").resolve()
LINCS_PLATE = SHARED / "data" / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"


@pytest.fixture(scope="session")
def lincs_raw() -> pd.DataFrame:
    """The real LINCS plate SQ00015054 (all 384 wells)."""
    if not LINCS_PLATE.exists():
        pytest.skip(f"real LINCS data not found at {LINCS_PLATE} (../shared missing)")
    return pd.read_csv(LINCS_PLATE)


@pytest.fixture(scope="session")
def lincs_features(lincs_raw: pd.DataFrame) -> list[str]:
    return [c for c in lincs_raw.columns if not c.startswith("Metadata_")]


@pytest.fixture(scope="session")
def lincs_trt(lincs_raw: pd.DataFrame) -> pd.DataFrame:
    """Treatment wells with an MOA annotation (DMSO and unannotated wells dropped)."""
    d = lincs_raw[(lincs_raw["Metadata_broad_sample"] != "DMSO") & lincs_raw["Metadata_moa"].notna()]
    return d.reset_index(drop=True)


def _well_name(w: int) -> str:
    """384-well name of position ``w`` (row-major, wrapping)."""
    return f"{chr(65 + w // 24 % 16)}{w % 24 + 1:02d}"


def make_synthetic(
    n_moa: int = 4,
    cpd_per_moa: int = 2,
    wells_per_cpd: int = 3,
    n_features: int = 16,
    n_plates: int = 2,
    n_dmso: int = 4,
    signal: float = 1.5,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """Small well table with MOA / compound structure, plates, wells and DMSO controls."""
    rng = np.random.default_rng(seed)
    feats = [f"f{i:03d}" for i in range(n_features)]
    moa_c = rng.normal(size=(n_moa, n_features))
    rows, X = [], []
    w = 0
    for m in range(n_moa):
        for c in range(cpd_per_moa):
            cpd_c = moa_c[m] * signal + rng.normal(size=n_features) * 0.5
            for r in range(wells_per_cpd):
                X.append(cpd_c + rng.normal(size=n_features))
                rows.append(
                    {
                        "Metadata_moa": f"moa_{m}",
                        "Metadata_broad_sample": f"cpd_{m}_{c}",
                        "Metadata_Plate": f"P{r % n_plates}",
                        "Metadata_Well": _well_name(w),
                    }
                )
                w += 1
    for d in range(n_dmso):
        X.append(rng.normal(size=n_features))
        rows.append(
            {
                "Metadata_moa": None,
                "Metadata_broad_sample": "DMSO",
                "Metadata_Plate": f"P{d % n_plates}",
                "Metadata_Well": _well_name(w),
            }
        )
        w += 1
    df = pd.DataFrame(rows)
    df[feats] = np.asarray(X)
    return df, feats


@pytest.fixture()
def synthetic() -> tuple[pd.DataFrame, list[str]]:
    return make_synthetic()


@pytest.fixture()
def synthetic_factory():
    """The :func:`make_synthetic` factory (for tests needing custom sizes)."""
    return make_synthetic
