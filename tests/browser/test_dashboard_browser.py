"""The dashboard in a real browser: every page of the navigation renders on the mini pipeline's
snapshot without an exception, and a retrieval query in the explorer returns its nearest compounds.

Debian's chromium (``bash .ci/browser``) driven by playwright through ``executable_path``; a real
``streamlit run`` server (see ``conftest.py``). Full-page screenshots and per-page render times go to
``$MOA_SCREENSHOT_DIR`` (default ``<repo>/.screenshots/``).

Render wait: the ``stApp`` element carries ``data-test-script-state`` (``initial`` until the server
starts a run, ``running`` while the page script runs, ``notRunning`` once it finished) and
``data-test-connection-state`` (``CONNECTED``). A page counts as rendered when it is connected, the
script is ``notRunning``, the main block holds elements, none is stale (left over from a previous
run), every visible Plotly chart has drawn its SVG, every visible dataframe its canvas and every
visible image has loaded (``checkVisibility``: inactive tabs and closed expanders draw nothing and are
not waited for), and all that has held for 0.3 s (so a run that ends in ``st.rerun`` is not
taken for the final one). After an interaction the test first waits for the content the new run
must show (the attribute may still read ``notRunning`` before the rerun starts), then for the above.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.browser import (  # noqa: F401
    CONTENT_HEIGHT_JS,
    STATE_JS,
    NavPage,
    full_page_screenshot,
    nav_pages,
    open_page,
    problems,
    wait_rendered,
)

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "app.py"

PAGES = nav_pages(APP)


def assert_app_navigation(page, current: NavPage | None = None) -> None:
    """The sidebar is app.py's ``st.navigation`` (its titles, in order), not Streamlit's automatic
    ``pages/`` listing (file names), and ``current`` is the active entry."""
    links = page.get_by_test_id("stSidebarNav").get_by_test_id("stSidebarNavLink")
    labels = [links.nth(i).get_by_test_id("stMarkdownContainer").inner_text().strip() for i in range(links.count())]
    assert labels == [p.title for p in PAGES], (
        f"the sidebar lists {labels}, not app.py's navigation {[p.title for p in PAGES]}: the page ran without "
        "dashboard/app.py (Streamlit's automatic pages/ mode)"
    )
    if current is not None:
        active = page.get_by_test_id("stSidebarNav").locator('[data-testid="stSidebarNavLink"][aria-current="page"]')
        assert active.count() == 1 and current.title in active.inner_text(), f"{current.title} is not the active page"


def test_navigation_has_the_dashboard_pages():
    assert len(PAGES) >= 5, PAGES
    assert sum(p.url_path == "" for p in PAGES) == 1, "exactly one default page"
    for p in PAGES:
        assert (REPO / "dashboard" / "views" / p.file).is_file(), f"{p.title}: dashboard/views/{p.file} missing"


@pytest.mark.parametrize("nav", PAGES, ids=[p.slug for p in PAGES])
def test_page_renders_without_exception(nav, page, dashboard, screenshot_dir, render_times):
    from playwright.sync_api import Error as PlaywrightError

    try:
        seconds = open_page(page, dashboard.url + nav.path)
    except (AssertionError, PlaywrightError) as exc:
        pytest.fail(f"{nav.title} ({nav.path}) did not finish rendering: {exc}\nserver log:\n{dashboard.log_tail()}")
    found = problems(page)
    full_page_screenshot(page, screenshot_dir / f"{nav.slug}.png")
    notes = [w.inner_text()[:300] for w in page.locator('[data-testid="stAlertContentWarning"]').all()]
    render_times[nav.slug] = {"title": nav.title, "path": nav.path, "seconds": round(seconds, 3), "warnings": notes}
    print(f"\n{nav.title} ({nav.path}): first complete render in {seconds:.2f} s")
    assert not found, f"{nav.title} ({nav.path}) shows problems:\n" + "\n".join(found)
    # the page's own title (st.title -> h1), under app.py's navigation
    heading = page.locator('[data-testid="stMain"] h1').first
    assert heading.is_visible() and heading.inner_text().strip(), f"{nav.title}: no page title"
    assert_app_navigation(page, current=nav)


# ---- the Compound / MOA explorer: a retrieval query ---------------------------------------------------------

# Rows of the accessible table that Streamlit's dataframe (glide-data-grid) keeps next to its canvas.
TABLE_ROWS_JS = """
(frame) => [...frame.querySelectorAll('table tr')].map(tr => [...tr.children].map(td => td.innerText.trim()))
"""


def table_rows(frame, timeout_ms: int = 15_000) -> list[list[str]]:
    """The rows (header first) of one ``st.dataframe``, read from the accessible table glide-data-grid
    keeps next to its canvas (filled once the grid is on screen)."""
    frame.scroll_into_view_if_needed()
    frame.page.wait_for_function(
        "(f) => f.querySelectorAll('table tr').length > 1", arg=frame.element_handle(), polling=100, timeout=timeout_ms
    )
    return frame.evaluate(TABLE_ROWS_JS)


def replicate_compound(data_dir: Path, dataset: str = "synthetic_cpjump1_mini") -> str:
    """A treatment compound (not DMSO, not a control) of the mini dataset with replicate wells (>= 2 wells
    of one sample in ``wells__<dataset>``) that every retrieval index of the snapshot holds with >= 2 wells
    (the indexes cover the wells each method embedded, e.g. MP's test wells only)."""
    import duckdb

    from moa_core.retrieval import load_index

    with duckdb.connect(str(data_dir / "snapshot" / "warehouse.duckdb"), read_only=True) as con:
        names = [
            r[0]
            for r in con.execute(
                f"SELECT Metadata_pert_iname FROM wells__{dataset} "
                "WHERE Metadata_pert_iname IS NOT NULL AND upper(Metadata_pert_iname) <> 'DMSO' "
                "AND coalesce(Metadata_control_type, '') <> 'negcon' AND coalesce(Metadata_pert_type, 'trt') = 'trt' "
                "GROUP BY 1 HAVING count(*) >= 2 AND count(DISTINCT Metadata_broad_sample) = 1 "
                "ORDER BY lower(Metadata_pert_iname)"
            ).fetchall()
        ]
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        paths = (
            [r[0] for r in con.execute("SELECT path FROM retrieval_indexes WHERE dataset = ?", [dataset]).fetchall()]
            if "retrieval_indexes" in tables
            else []
        )
    assert names, f"no compound with replicate wells in wells__{dataset}"
    for path in paths:
        comp = load_index(str(path if Path(path).is_absolute() else data_dir / path)).compounds
        held = set(comp.loc[~comp["is_control"] & (comp["n_wells"] >= 2), "name"])
        names = [n for n in names if n in held]
    assert names, f"no replicate compound of wells__{dataset} is in every retrieval index ({paths})"
    return names[0]


@pytest.fixture(scope="module")
def query_compound(mini_pipeline) -> str:
    return replicate_compound(Path(mini_pipeline[0].root_path))


@pytest.fixture(scope="module")
def explorer() -> NavPage:
    found = [p for p in PAGES if p.file == "explorer.py"]
    assert found, "the navigation has no explorer page (dashboard/views/explorer.py)"
    return found[0]


def assert_retrieval_results(page, compound: str) -> list[list[str]]:
    """The explorer shows ``compound`` and its nearest compounds: a table of ranked neighbours, most
    similar first, without the query itself. Returns the table's rows (header first)."""
    from playwright.sync_api import expect

    main = page.get_by_test_id("stMain")
    expect(main.locator("h3").filter(has_text=compound).first).to_be_visible()
    tab = main.get_by_role("tab", name="Nearest compounds")
    expect(tab).to_be_visible()
    expect(tab).to_have_attribute("aria-selected", "true")
    frame = main.get_by_role("tabpanel").locator('[data-testid="stDataFrame"]').first
    expect(frame).to_be_visible()
    rows = table_rows(frame)
    assert len(rows) >= 2, f"the nearest-compounds table is empty: {rows}"
    header, body = rows[0], rows[1:]
    assert {"name", "similarity"} <= set(header), f"unexpected columns {header}"
    names = [r[header.index("name")] for r in body]
    sims = [float(r[header.index("similarity")]) for r in body]
    assert compound not in names, f"the query {compound} is listed among its own neighbours: {names}"
    assert sims == sorted(sims, reverse=True), f"neighbours not ranked by similarity: {sims}"
    assert all(-1.0 <= s <= 1.0 for s in sims), sims
    return rows


def checked_render(page, label: str, shot: Path) -> None:
    found = problems(page)
    full_page_screenshot(page, shot)
    assert not found, f"{label} shows problems:\n" + "\n".join(found)


def test_explorer_retrieval_query(page, dashboard, explorer, query_compound, screenshot_dir, render_times):
    """A query by link (``/explorer?compound=<name>``), by picking it in the search box, and by a
    partial identifier typed into the free-text search."""
    from playwright.sync_api import expect

    compound = query_compound
    main = page.get_by_test_id("stMain")

    # 1. the link
    seconds = open_page(page, f"{dashboard.url}{explorer.path}?compound={quote(compound)}")
    checked_render(page, f"explorer ?compound={compound}", screenshot_dir / "explorer_query_link.png")
    rows = assert_retrieval_results(page, compound)
    render_times["explorer_query_link"] = {
        "title": f"{explorer.title}: ?compound={compound}",
        "path": f"{explorer.path}?compound={compound}",
        "seconds": round(seconds, 3),
    }
    print(
        f"\nexplorer ?compound={compound}: rendered in {seconds:.2f} s; nearest: "
        + ", ".join(f"{r[1]} ({r[2]})" for r in rows[1:4])
    )

    # 2. the search box: type the name, pick the first suggestion
    open_page(page, dashboard.url + explorer.path)
    expect(main.get_by_text("Start typing above")).to_be_visible()
    box = main.get_by_test_id("stSelectbox").filter(has_text="Compound or MOA").get_by_role("combobox")
    t0 = time.monotonic()
    box.click()
    box.press_sequentially(compound, delay=20)
    option = page.get_by_role("option").filter(has_text=compound).first
    expect(option).to_be_visible()
    option.click()
    expect(main.locator("h3").filter(has_text=compound).first).to_be_visible()
    wait_rendered(page)
    seconds = time.monotonic() - t0
    checked_render(page, f"explorer search box ({compound})", screenshot_dir / "explorer_query_searchbox.png")
    assert_retrieval_results(page, compound)
    render_times["explorer_query_searchbox"] = {
        "title": f"{explorer.title}: search box {compound}",
        "path": explorer.path,
        "seconds": round(seconds, 3),
    }
    print(f"explorer search box {compound!r}: rendered in {seconds:.2f} s (from the first keystroke)")

    # 3. a partial identifier in the free-text search: a list of matches, the first one opened
    open_page(page, dashboard.url + explorer.path)
    part = compound[: max(3, len(compound) - 2)]
    field = main.get_by_test_id("stTextInput").locator("input")
    t0 = time.monotonic()
    field.fill(part)
    field.press("Enter")
    expect(main.get_by_text(f"Matches for \u201c{part}\u201d")).to_be_visible()
    wait_rendered(page)
    seconds = time.monotonic() - t0
    checked_render(page, f"explorer text search ({part!r})", screenshot_dir / "explorer_query_text.png")
    matches = table_rows(main.locator('[data-testid="stDataFrame"]').first)
    assert any(compound in " ".join(r) for r in matches[1:]), f"{compound} not among the matches of {part!r}: {matches}"
    assert main.get_by_role("tab", name="Nearest compounds").is_visible()
    render_times["explorer_query_text"] = {
        "title": f"{explorer.title}: text search {part!r}",
        "path": explorer.path,
        "seconds": round(seconds, 3),
    }
    print(f"explorer text search {part!r}: rendered in {seconds:.2f} s")


def test_deep_link_on_a_fresh_server(browser, mini_pipeline, explorer, query_compound, screenshot_dir, tmp_path):
    """A shared link opened before anyone visited the app's root still runs through ``dashboard/app.py``
    (its navigation, page config and snapshot guard), not as a bare ``pages/`` script."""
    from tests.support.streamlit_server import streamlit_server

    env = dict(os.environ, MOA_DATA_DIR=str(mini_pipeline[0].root_path), PYTHONUNBUFFERED="1")
    with streamlit_server(APP, env=env, log_path=tmp_path / "streamlit.log", cwd=REPO) as server:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.errors = []
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))
            open_page(page, f"{server.url}{explorer.path}?compound={quote(query_compound)}")
            checked_render(page, "explorer deep link on a fresh server", screenshot_dir / "explorer_deep_link.png")
            assert_app_navigation(page, current=explorer)
            assert_retrieval_results(page, query_compound)
        finally:
            context.close()
