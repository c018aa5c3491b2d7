"""Shared fixtures: the real public data in ../shared and a mini synthetic dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOA_SHARED_DIR", str(REPO.parent / "shared")))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data" / "cpjump1" / "cpjump1_metadata.csv").is_file():
        pytest.skip(f"real public data not found at {SHARED} (CI always has it)")
    return SHARED


@pytest.fixture(scope="session")
def design(shared_dir):
    from moa_core.data.design import load_cpjump1_design

    return load_cpjump1_design(shared_dir)


@pytest.fixture(scope="session")
def mini_dataset(design, tmp_path_factory):
    """The registered mini synthetic dataset rendered once per session."""
    from moa_core.data.synthetic import render_dataset
    from moa_core.datasets import get_dataset

    out = tmp_path_factory.mktemp("mini")
    spec = get_dataset("synthetic_cpjump1_mini").synthetic
    load_data, wells = render_dataset(design, spec, out)
    return out, load_data, wells, spec


@pytest.fixture(scope="session")
def gallery(shared_dir):
    """A real S3 endpoint on loopback (moto server) seeded with the gallery's key layout from ../shared.

    Yields ``(endpoint_url, boto3 client, seeded)``; see ``tests/support/s3_server.py``.
    """
    from moa_core.data.sources.s3 import make_s3_client
    from tests.support.s3_server import seed_gallery, start_moto

    server, endpoint = start_moto()
    try:
        client = make_s3_client(endpoint, unsigned=False)
        seeded = seed_gallery(client, shared_dir)
        yield endpoint, client, seeded
    finally:
        server.stop()


MINI, MINI_FRACTION = "synthetic_cpjump1_mini", "100"


@pytest.fixture(scope="session")
def mini_pipeline(tmp_path_factory, shared_dir):
    """The whole image pipeline materialized through Dagster on the mini synthetic dataset, up to the
    published snapshot: ``(store, instance, results by job)``. Shared by the orchestration tests and the
    dashboard's browser test (tests that alter files restore them)."""
    from orchestration.partitions import multi_key
    from tests.support.pipeline import materialize_jobs

    runs = [
        ("ingest_job", MINI),
        ("dp_recipe_job", multi_key(MINI, MINI_FRACTION)),
        ("train_eval_job", multi_key(MINI, MINI_FRACTION)),
        ("holdout_job", MINI),
        ("publish_job", None),
    ]
    store, instance, results = materialize_jobs(tmp_path_factory.mktemp("store"), shared_dir, MINI, runs)
    return store, instance, results
