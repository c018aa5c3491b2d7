"""Resources: where the pipeline keeps its files and its DuckDB warehouse, and the gallery's S3."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from moa_core.data.design import default_shared_dir
from moa_core.datasets import DatasetEntry, get_dataset
from moa_core.storage import Warehouse
from orchestration.paths import REPO_ROOT, default_data_dir  # noqa: F401  (re-exported)


def gallery_s3(endpoint_url: str | None = None) -> S3Resource:
    """dagster-aws ``S3Resource`` for the public gallery: anonymous; ``$MOA_S3_ENDPOINT_URL`` overrides AWS."""
    url = endpoint_url if endpoint_url is not None else os.environ.get("MOA_S3_ENDPOINT_URL") or None
    return S3Resource(use_unsigned_session=True, endpoint_url=url, region_name="us-east-1")


class MoaStore(dg.ConfigurableResource):
    """Files (images, checkpoints, field-level tables) under ``root``; tables in ``root/warehouse.duckdb``.

    ``root`` defaults to ``$MOA_DATA_DIR`` or ``<repo>/.moa_data``; ``shared_dir`` to
    ``$MOA_SHARED_DIR`` or ``../shared`` (the real CPJUMP1 design and annotations).
    ``download_images``: copy gallery images into the local cache (``root/cache``) before
    profiling instead of reading them straight from S3.
    """

    root: str = ""
    shared_dir: str = ""
    n_workers: int = 2
    download_images: bool = False
    download_workers: int = 16

    @property
    def root_path(self) -> Path:
        return Path(self.root or default_data_dir())

    @property
    def shared_path(self) -> Path:
        return Path(self.shared_dir) if self.shared_dir else default_shared_dir()

    @property
    def cache_dir(self) -> Path:
        return self.root_path / "cache"

    def dataset(self, name: str) -> DatasetEntry:
        """The catalogue entry ``name`` (shipped, user TOML, or registered under ``root``)."""
        return get_dataset(name, self.root_path)

    def dataset_dir(self, dataset: str) -> Path:
        return self.root_path / "datasets" / dataset

    def artifact_dir(self, dataset: str, fraction: str | None = None) -> Path:
        p = self.root_path / "artifacts" / dataset
        return p / f"fraction_{fraction}" if fraction else p

    def image_store_path(self, dataset: str) -> Path:
        return self.root_path / "image_store" / f"{dataset}.zarr"

    def warehouse(self) -> Warehouse:
        return Warehouse(self.root_path / "warehouse.duckdb")

    @property
    def snapshot_path(self) -> Path:
        return self.root_path / "snapshot" / "warehouse.duckdb"
