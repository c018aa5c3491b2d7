"""Start the dashboard with its modules already imported, so the first visitor's first page is not the
process's cold start.

    MOA_DATA_DIR=<data dir> uv run python -m dashboard.serve [streamlit run options, e.g. --server.port 8501]

Streamlit imports an app's modules on the first session; on a fresh server that first page pays for
pandas, DuckDB, pyarrow, plotly, scipy and the project's own modules (several seconds where Python
writes no bytecode cache). This launcher imports them, then hands over to ``streamlit run
dashboard/app.py`` in the same process (Streamlit's own command-line entry point). ``streamlit run
dashboard/app.py`` works too; it is only slower on its first page.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
PRELOAD = (
    "pandas",
    "duckdb",
    "pyarrow",
    "plotly.graph_objects",
    "dashboard.common",
    "dashboard.queries",
    "dashboard.style",
    "dashboard.comparison_sql",
    "dashboard.comparison_tables",
    "dashboard.scaling_sql",
    "dashboard.scaling_labels",
    "dashboard.scaling_fits",
    "dashboard.warmup",
)


def main(argv: list[str] | None = None) -> int:
    from dashboard import warmup

    for name in (*PRELOAD, *warmup.MODULES):  # before the server listens: nothing competes with a first page
        importlib.import_module(name)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
