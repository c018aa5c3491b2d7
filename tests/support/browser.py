"""Driving the dashboard in Debian's chromium with playwright: launch flags, the render wait, page timing.

Shared by the browser test (``tests/browser``) and the page-render bench (``bench/bench_dashboard_pages.py``).

Render wait: the ``stApp`` element carries ``data-test-script-state`` (``initial`` until the server
starts a run, ``running`` while the page script runs, ``notRunning`` once it finished) and
``data-test-connection-state`` (``CONNECTED``). A page counts as rendered when it is connected, the
script is ``notRunning``, the main block holds elements, none is stale, every visible Plotly chart has
drawn its SVG, every visible dataframe its canvas and every visible image has loaded, and all that has
held for 0.3 s.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

# Flags for closed-network CI machines: no sandbox (root in a container), no GPU, no calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


# A JS predicate for page.wait_for_function: the page finished its run and drew everything.
RENDERED_JS = """
() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  let ok = !!(app && main)
    && app.getAttribute('data-test-connection-state') === 'CONNECTED'
    && app.getAttribute('data-test-script-state') === 'notRunning'
    && !!main.querySelector('[data-testid="stElementContainer"]')
    && !main.querySelector('[data-testid="stElementContainer"][data-stale="true"]');
  // hidden ones (inactive tabs, closed expanders: a dataframe draws no canvas there) are not waited for
  const shown = (e) => e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true});
  if (ok) {
    for (const c of main.querySelectorAll('[data-testid="stPlotlyChart"]'))
      if (shown(c) && !c.querySelector('svg.main-svg')) { ok = false; break; }
  }
  if (ok) {
    for (const d of main.querySelectorAll('[data-testid="stDataFrame"]'))
      if (shown(d) && !d.querySelector('canvas')) { ok = false; break; }
  }
  if (ok) {
    for (const i of main.querySelectorAll('[data-testid="stImage"] img'))
      if (shown(i) && !i.complete) { ok = false; break; }
  }
  const now = performance.now();
  if (!ok) { window.__moaRenderedSince = null; return false; }
  if (window.__moaRenderedSince == null) window.__moaRenderedSince = now;
  return now - window.__moaRenderedSince >= 300;
}
"""

# What the page shows while it is not rendered yet (for the failure message).
STATE_JS = """
() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  return {script: app && app.getAttribute('data-test-script-state'),
          connection: app && app.getAttribute('data-test-connection-state'),
          elements: main ? main.querySelectorAll('[data-testid="stElementContainer"]').length : null,
          stale: main ? main.querySelectorAll('[data-stale="true"]').length : null,
          pending: main ? [...main.querySelectorAll('[data-testid="stPlotlyChart"], [data-testid="stDataFrame"], '
                                                    + '[data-testid="stImage"] img')]
            .filter(e => e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}))
            .filter(e => e.tagName === 'IMG' ? !e.complete
                         : !e.querySelector(e.dataset.testid === 'stPlotlyChart' ? 'svg.main-svg' : 'canvas'))
            .map(e => (e.dataset.testid || 'img') + ': ' + e.outerHTML.slice(0, 300)) : null,
          text: main ? main.innerText.slice(0, 600) : document.body.innerText.slice(0, 600)};
}
"""

# Full height of the page's content: Streamlit scrolls inside its own containers, not the document.
CONTENT_HEIGHT_JS = """
() => Math.max(document.documentElement.scrollHeight,
  ...[...document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"], '
      + '[data-testid="stMainBlockContainer"]')].map(e => e.scrollHeight))
"""


def wait_rendered(page, timeout_ms: int = 60_000) -> None:
    from playwright.sync_api import Error as PlaywrightError

    try:
        page.wait_for_function(RENDERED_JS, polling=50, timeout=timeout_ms)
    except PlaywrightError as exc:  # TimeoutError is one
        try:
            state = page.evaluate(STATE_JS)
        except PlaywrightError as inner:
            state = f"(state unreadable: {inner})"
        raise AssertionError(
            f"{page.url} not rendered in {timeout_ms / 1000:.0f} s ({exc.__class__.__name__}); "
            f"page state: {state}; uncaught JS errors: {getattr(page, 'errors', [])}"
        ) from None


def open_page(page, url: str) -> float:
    """Open ``url``, wait for its first complete render; returns the seconds it took."""
    t0 = time.monotonic()
    page.goto(url, wait_until="domcontentloaded")
    wait_rendered(page)
    return time.monotonic() - t0


# ---- the app's pages and what a broken page shows -----------------------------------------------------
ERROR_TEXT = re.compile(
    r"Traceback \(most recent call last\)|Page not found|No published snapshot|"
    r"disappeared while this page read it|Connection error|Is Streamlit still running"
)


@dataclass(frozen=True)
class NavPage:
    title: str
    url_path: str  # "" for the default page (Streamlit serves it at the app's root and ignores url_path)
    file: str

    @property
    def path(self) -> str:
        return "/" + self.url_path

    @property
    def slug(self) -> str:
        return self.url_path or Path(self.file).stem


def nav_pages(app: Path) -> list[NavPage]:
    """The pages of ``st.navigation`` in ``dashboard/app.py``, read from its ``st.Page(...)`` calls."""
    pages = []
    for node in ast.walk(ast.parse(app.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Page"):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        consts = [n.value for n in ast.walk(node.args[0]) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        file = next(c for c in reversed(consts) if c.endswith(".py"))
        title = kw["title"].value if "title" in kw else Path(file).stem.replace("_", " ")
        default = "default" in kw and kw["default"].value is True
        url_path = kw["url_path"].value if "url_path" in kw else re.sub(r"^\d+_", "", Path(file).stem)
        pages.append(NavPage(title=title, url_path="" if default else url_path, file=file))
    return pages


def problems(page) -> list[str]:
    """Exceptions, error boxes, 'page not found' dialogs and uncaught JS errors shown by the page."""
    found = []
    for sel in ('[data-testid="stException"]', '[data-testid="stAlertContentError"]'):
        for el in page.locator(sel).all():
            found.append(f"{sel}: {el.inner_text()[:800]}")
    text = page.locator('[data-testid="stApp"]').inner_text()
    found += [f"text on the page: {m.group(0)!r}" for m in ERROR_TEXT.finditer(text)]
    found += [f"uncaught JS error: {e}" for e in page.errors]
    return found


def full_page_screenshot(page, path: Path) -> None:
    """A screenshot of the whole content: grow the viewport to the content's height (Streamlit scrolls
    inside its own container, so ``full_page`` alone shows one screen), let it re-lay out, then shoot."""
    size = page.viewport_size
    height = size["height"]
    for _ in range(4):  # content drawn once on screen can grow the page: measure until it holds still
        want = min(int(page.evaluate(CONTENT_HEIGHT_JS)) + 40, 16_000)
        if want <= height:
            break
        height = want
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(300)
        wait_rendered(page)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
