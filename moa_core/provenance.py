"""Which code produced a table: the package version and the git commit of the working tree.

``code_version()`` is ``"<package version>+g<12-hex commit>"``, with ``".dirty"`` when tracked
files differ from that commit, or ``"<version>+unknown"`` outside a git checkout. It is
recorded with every warehouse write (``catalog.code_version``) so the dashboard can say
from which code each table came.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["code_version", "package_version"]

_ROOT = Path(__file__).resolve().parents[1]


def package_version() -> str:
    try:
        return metadata.version("moa-profiler")
    except metadata.PackageNotFoundError:
        return "0+local"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@lru_cache(maxsize=1)
def code_version() -> str:
    """The code version of this process (computed once)."""
    sha = _git("rev-parse", "--short=12", "HEAD")
    if not sha:
        return f"{package_version()}+unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{package_version()}+g{sha}{'.dirty' if dirty else ''}"
