"""Every repository path and module the documentation and the catalogue's comments name exists.

The docs (``README.md``, ``docs/**/*.md``) and the comments of ``moa_core/catalogue.toml`` name
files (``moa_core/datasets.py``), folders (``deploy/``) and modules or objects
(``moa_core.model.config.TrainConfig``). A rename that forgets the docs fails here; placeholders
(``<ds>``), globs and runtime paths (``.moa_data/...``) are not checked. ``mkdocs build --strict``
(in the test command) checks the links and the API reference of the site itself.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("moa_core", "orchestration", "dashboard", "tests", "bench", "docs", "deploy", ".ci")
ROOT_FILES = ("pyproject.toml", "mkdocs.yml", "workspace.yaml", "uv.lock", "README.md")
_ALTERNATIVES = "|".join(re.escape(r) for r in ROOTS)
_FILES = "|".join(re.escape(f) for f in ROOT_FILES)
_PATH = re.compile(rf"(?<![\w./-])((?:{_ALTERNATIVES})/[\w./-]*|{_FILES})")
_MODULE = re.compile(r"(?<![\w./-])((?:moa_core|orchestration|dashboard)(?:\.[A-Za-z_]\w*)+)")


def _doc_texts() -> list[tuple[str, str]]:
    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    out = [(str(f.relative_to(REPO)), f.read_text()) for f in files if f.is_file()]
    toml = REPO / "moa_core" / "catalogue.toml"
    comments = "\n".join(line.split("#", 1)[1] for line in toml.read_text().splitlines() if "#" in line)
    out.append(("moa_core/catalogue.toml (comments)", comments))
    return out


def _clean(token: str) -> str:
    return token.rstrip(".,;:)")


def named_paths() -> list[tuple[str, str]]:
    found = []
    for where, text in _doc_texts():
        for m in _PATH.finditer(text):
            tok = _clean(m.group(1))
            if any(c in tok for c in "<>*{}") or tok.endswith("/..."):
                continue
            found.append((where, tok))
    return sorted(set(found))


def named_modules() -> list[tuple[str, str]]:
    found = []
    for where, text in _doc_texts():
        for m in _MODULE.finditer(text):
            tok = _clean(m.group(1))
            if not tok.endswith((".md", ".py", ".toml", ".yml", ".yaml", ".json", ".png")):
                found.append((where, tok))
    return sorted(set(found))


@cache
def _defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:i])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            rest = parts[i:]
            if not rest:
                return True
            obj = rest[0]
            if obj in _defined_names(module):
                return True
            # a class attribute or method: Class.attr
            return False
    return False


def test_the_docs_name_paths_at_all():
    """The scan finds what it is meant to find (a scan that matches nothing would pass vacuously)."""
    paths = {p for _, p in named_paths()}
    mods = {m for _, m in named_modules()}
    assert "moa_core/datasets.py" in paths and "bench/bench_retrieval.py" in paths
    assert "moa_core.model.config.TrainConfig" in mods or "moa_core.model.config" in mods


@pytest.mark.parametrize("where,path", named_paths())
def test_every_named_path_exists(where, path):
    assert (REPO / path).exists(), f"{where} names {path}, which does not exist in the repository"


@pytest.mark.parametrize("where,dotted", named_modules())
def test_every_named_module_resolves(where, dotted):
    assert _resolves(dotted), f"{where} names {dotted}, which is no module or top-level name of the repository"
