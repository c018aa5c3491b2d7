"""Resources: where the pipeline keeps its files and its DuckDB warehouse."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from moa_core.data.design import default_shared_dir
from moa_core.storage import Warehouse

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> str:
    return os.environ.get("MOA_DATA_DIR", str(REPO_ROOT / ".moa_data"))


class MoaStore(dg.ConfigurableResource):
    """Files (images, checkpoints, field-level tables) under ``root``; tables in ``root/warehouse.duckdb``.

    ``root`` defaults to ``$MOA_DATA_DIR`` or ``<repo>/.moa_data``; ``shared_dir`` to
    ``$MOA_SHARED_DIR`` or ``../shared`` (the real CPJUMP1 design).
    """

    root: str = ""
    shared_dir: str = ""
    n_workers: int = 2

    @property
    def root_path(self) -> Path:
        return Path(self.root or default_data_dir())

    @property
    def shared_path(self) -> Path:
        return Path(self.shared_dir) if self.shared_dir else default_shared_dir()

    def dataset_dir(self, dataset: str) -> Path:
        return self.root_path / "datasets" / dataset

    def artifact_dir(self, dataset: str, fraction: str | None = None) -> Path:
        p = self.root_path / "artifacts" / dataset
        return p / f"fraction_{fraction}" if fraction else p

    def warehouse(self) -> Warehouse:
        return Warehouse(self.root_path / "warehouse.duckdb")

    @property
    def snapshot_path(self) -> Path:
        return self.root_path / "snapshot" / "warehouse.duckdb"
