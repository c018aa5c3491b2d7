"""The documentation's screenshots, taken on a demo snapshot by the same browser checks as the suite.

    MOA_SCREENSHOT_DATA_DIR=.moa_data uv run pytest tests/browser/test_docs_screenshots.py

With ``MOA_SCREENSHOT_DATA_DIR`` naming a data folder the demo filled (its published snapshot), the
dashboard is served on that snapshot and two pages are opened as a newcomer opens them: the explorer
with a query (the first treatment compound with replicate wells of the demo's dataset) and the scaling
laws page on the Pheno-CA profile set, scrolled to its first chart. Each must render with no exception,
error box or error text, and its screenshot (1400 px wide) goes to ``docs/assets/screenshots/`` (or
``$MOA_DOCS_SCREENSHOT_DIR``), where the README and the docs show it. Without the variable there is no
demo snapshot to shoot and the test is skipped (the suite's own browser test covers every page on the
mini pipeline).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.browser import CHROMIUM_ARGS, open_page, problems

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "app.py"
DATA_DIR = os.environ.get("MOA_SCREENSHOT_DATA_DIR")

pytestmark = pytest.mark.skipif(
    not DATA_DIR, reason="set MOA_SCREENSHOT_DATA_DIR to a demo data folder to (re)take the docs' screenshots"
)


@pytest.fixture(scope="module")
def demo_server():
    from tests.support.streamlit_server import streamlit_server

    data_dir = Path(DATA_DIR).resolve()
    snap = data_dir / "snapshot" / "warehouse.duckdb"
    assert snap.is_file(), f"{data_dir} has no published snapshot ({snap}): run the demo with --data-dir {data_dir}"
    env = dict(os.environ, MOA_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    with streamlit_server(
        APP, env=env, log_path=data_dir / "screenshots_streamlit.log", cwd=REPO, launcher="serve"
    ) as server:
        yield server, data_dir


@pytest.fixture(scope="module")
def shots_dir() -> Path:
    out = Path(os.environ.get("MOA_DOCS_SCREENSHOT_DIR") or REPO / "docs" / "assets" / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture()
def demo_page(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1100})
            page = context.new_page()
            page.errors = []
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))
            yield page
        finally:
            browser.close()


def _shoot(page, path: Path, label: str) -> None:
    found = problems(page)
    page.screenshot(path=str(path))
    assert not found, f"{label} shows problems:\n" + "\n".join(found)
    assert path.stat().st_size > 10_000, f"{path} is nearly empty"


def test_explorer_screenshot(demo_server, demo_page, shots_dir):
    from tests.browser.test_dashboard_browser import assert_retrieval_results, replicate_compound

    server, data_dir = demo_server
    compound = replicate_compound(data_dir, "synthetic_cpjump1")
    open_page(demo_page, f"{server.url}/explorer?compound={quote(compound)}")
    assert_retrieval_results(demo_page, compound)
    _shoot(demo_page, shots_dir / "explorer.png", f"explorer ?compound={compound}")


def test_scaling_page_screenshot(demo_server, demo_page, shots_dir, monkeypatch):
    """The scaling page's first view, as it opens with no choice made: it must open on the curve with a reliable
    fit (:func:`dashboard.scaling_fits.default_view` on the demo's snapshot), with its chart bounded; shot at
    the top, at the chart and at the forecast ledger, which must hold the demo's scored forecasts."""
    from playwright.sync_api import expect

    from dashboard import scaling_fits as fits
    from dashboard import scaling_labels as labels

    server, data_dir = demo_server
    monkeypatch.setenv("MOA_DATA_DIR", str(data_dir))
    opening = fits.default_view()
    assert opening is not None, "the demo's snapshot holds no stored scaling laws"
    open_page(demo_page, f"{server.url}/scaling_laws")
    main = demo_page.get_by_test_id("stMain")
    for label, value in (("Dataset", opening[0]), ("Study", labels.study_label(opening[1]))):
        box = main.get_by_test_id("stSelectbox").filter(has_text=label).first.get_by_role("combobox")
        expect(box).to_be_visible()
        shown = box.evaluate("e => e.value || e.getAttribute('aria-valuetext') || e.textContent || ''")
        assert value in (shown or "") or value in box.aria_snapshot(), (label, shown, box.aria_snapshot())
    expect(main.get_by_text("Pick at least one model family")).to_have_count(0)
    _shoot(demo_page, shots_dir / "scaling_laws_first_view.png", f"scaling laws, first view ({opening})")
    chart = main.locator('[data-testid="stPlotlyChart"]').first
    expect(chart).to_be_visible()
    chart.evaluate("e => e.scrollIntoView({block: 'center'})")
    demo_page.wait_for_timeout(500)
    _shoot(demo_page, shots_dir / "scaling_laws.png", f"scaling laws chart, {opening}")
    head = main.get_by_text("Forecast ledger: earlier predictions checked against later data")
    expect(head).to_be_visible()
    head.evaluate("e => e.scrollIntoView({block: 'start'})")
    expect(main.get_by_text("No forecast of this curve has been scored yet")).to_have_count(0)
    demo_page.wait_for_timeout(500)
    _shoot(demo_page, shots_dir / "scaling_ledger.png", f"forecast ledger, {opening}")
