"""First render of every dashboard page in a real browser, on a published snapshot (default: the demo's).

    MOA_DATA_DIR=<data dir of the demo> uv run python bench/bench_dashboard_pages.py [--query <compound>]

Starts the dashboard on loopback (``python -m dashboard.serve``, or ``--launcher streamlit`` for a
plain ``streamlit run dashboard/app.py``; own process group, killed at the end),
opens Debian's chromium through playwright (``bash .ci/browser`` installs it), and times, in one
browser session as a scientist would click through: the server's very first page (cold Python
process: every import), then each page of the navigation on its first visit, then an explorer
query by deep link; and, as a baseline in the same run, an empty Streamlit app's first page (the
frontend's own load). Time = from navigation to a complete render (the script finished and every
visible chart, table and image is drawn; ``tests/support/browser.py``). Repeated ``--rounds``
times with a fresh server each; prints the median and the spread. Target (issue 8): every page's
first render <= 3 s on the demo snapshot.
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.browser import CHROMIUM_ARGS, find_chromium, open_page  # noqa: E402
from tests.support.streamlit_server import streamlit_server  # noqa: E402


def nav_paths() -> list[tuple[str, str]]:
    """(title, url path) of app.py's navigation; the default page is served at '/'."""
    out = []
    for node in ast.walk(ast.parse((REPO / "dashboard" / "app.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Page":
            kw = {k.arg: k.value for k in node.keywords}
            title = ast.literal_eval(kw["title"])
            default = "default" in kw and ast.literal_eval(kw["default"])
            out.append((title, "/" if default else "/" + ast.literal_eval(kw["url_path"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--query", default="bepridil", help="compound for the explorer deep link")
    ap.add_argument(
        "--launcher",
        choices=["serve", "streamlit"],
        default="serve",
        help="python -m dashboard.serve (modules imported before the first visit; default) or a plain "
        "streamlit run dashboard/app.py",
    )
    args = ap.parse_args()
    data = Path(os.environ.get("MOA_DATA_DIR", REPO / ".moa_data"))
    if not (data / "snapshot" / "warehouse.duckdb").is_file():
        sys.exit(f"no published snapshot under {data}: run the demo first (README), or set MOA_DATA_DIR")
    chromium = find_chromium()
    if chromium is None:
        sys.exit("Debian's chromium is missing: bash .ci/browser")
    from playwright.sync_api import sync_playwright

    pages = nav_paths()
    times: dict[str, list[float]] = {}
    env = dict(os.environ, MOA_DATA_DIR=str(data), PYTHONUNBUFFERED="1")
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        for r in range(args.rounds):
            with streamlit_server(
                REPO / "dashboard" / "app.py",
                env=env,
                log_path=Path(tmp) / f"st{r}.log",
                cwd=REPO,
                launcher=args.launcher,
            ) as server:
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                ctx.set_default_timeout(90_000)
                page = ctx.new_page()
                visits = [("server's first page: " + pages[0][0], pages[0][1])]
                visits += [(t, p) for t, p in pages[1:]]
                visits += [(f"explorer query ?compound={args.query}", f"/explorer?compound={quote(args.query)}")]
                for label, path in visits:
                    times.setdefault(label, []).append(open_page(page, server.url.rstrip("/") + path))
                ctx.close()
            # baseline in the same run: an empty Streamlit app (a title), same server, same browser
            empty = Path(tmp) / "empty_app.py"
            empty.write_text("import streamlit as st\nst.title('empty')\n")
            with streamlit_server(empty, env=env, log_path=Path(tmp) / f"empty{r}.log", cwd=REPO) as server:
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = ctx.new_page()
                times.setdefault("baseline: an empty Streamlit app's first page", []).append(
                    open_page(page, server.url.rstrip("/") + "/")
                )
                ctx.close()
        browser.close()
    print(
        f"first complete render per page, {args.rounds} fresh servers ({args.launcher}), snapshot {data / 'snapshot'}, "
        f"{os.cpu_count()} CPU cores (target <= 3 s):"
    )
    for label, ts in times.items():
        spread = f"{min(ts):.2f}-{max(ts):.2f}" if len(ts) > 1 else ""
        print(f"  {label:<52} median {statistics.median(ts):5.2f} s   range {spread} s")


if __name__ == "__main__":
    main()
