"""Where the pipeline's files live by default (no Dagster import: the CLI and the demo read it first)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> str:
    """``$MOA_DATA_DIR``, else ``<repo>/.moa_data``."""
    return os.environ.get("MOA_DATA_DIR", str(REPO_ROOT / ".moa_data"))


def dagster_home(data_dir: str | os.PathLike) -> Path:
    """``$DAGSTER_HOME`` (set to ``<data dir>/dagster_home`` when unset), created with an empty ``dagster.yaml``."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(data_dir) / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch(exist_ok=True)
    return home
