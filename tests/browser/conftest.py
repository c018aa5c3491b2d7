"""Fixtures of the dashboard's real-browser test: Debian's chromium driven by Python playwright.

The browser is Debian's ``chromium`` package (``bash .ci/browser`` installs it; the README's test
command runs that), launched through ``executable_path``; ``playwright install`` is never needed.
The dashboard is a real ``streamlit run dashboard/app.py`` on loopback reading the snapshot published
by the session's mini pipeline (``mini_pipeline`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "app.py"
INSTALL = "bash .ci/browser   (or: apt-get install -y chromium)"
from tests.support.browser import CHROMIUM_ARGS, find_chromium  # noqa: E402


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        msg = f"Debian's chromium not found (needed by the dashboard's browser test); install it: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(msg + " -- in CI the browser test must run, not skip", pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    out = Path(os.environ.get("MOA_SCREENSHOT_DIR") or REPO / ".screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def render_times(screenshot_dir):
    """Per-page seconds to the first complete render, written to ``render_times.json`` at the end."""
    times: dict[str, dict] = {}
    yield times
    if times:
        (screenshot_dir / "render_times.json").write_text(json.dumps(times, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def dashboard(chromium_path, mini_pipeline, screenshot_dir):
    """``streamlit run dashboard/app.py`` on the mini pipeline's published snapshot; killed (whole
    process group) at the end of the session."""
    from tests.support.streamlit_server import streamlit_server

    store, _instance, _results = mini_pipeline
    data_dir = Path(store.root_path)
    assert (data_dir / "snapshot" / "warehouse.duckdb").is_file(), "the mini pipeline published no snapshot"
    env = dict(os.environ, MOA_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    with streamlit_server(
        APP, env=env, log_path=screenshot_dir / "streamlit.log", cwd=REPO, launcher="serve"
    ) as server:  # as the README starts it (the deep-link test: plain run)
        yield server


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def page(browser, dashboard):
    """A fresh browser context and page; uncaught page errors are collected in ``page.errors``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    pg = context.new_page()
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()
