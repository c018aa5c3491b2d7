"""MOA profiling dashboard: Streamlit multipage app (``st.navigation``), read-only on the published snapshot.

    MOA_DATA_DIR=<data dir> uv run python -m dashboard.serve      (or: uv run streamlit run dashboard/app.py)

Pages live in ``dashboard/views`` (not ``pages/``: Streamlit would then serve a deep link on a fresh
server as a bare page script, without this navigation); each also runs on its own (Streamlit's AppTest opens them
one by one). Every page reads ``$MOA_DATA_DIR/snapshot/warehouse.duckdb`` and the retrieval
indexes that snapshot names; none writes anything.
"""

from pathlib import Path

import streamlit as st

from dashboard import warmup

st.set_page_config(page_title="MOA profiling", layout="wide")
PAGES = Path(__file__).resolve().parent / "views"
nav = st.navigation(
    [
        st.Page(
            PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True, url_path="overview"
        ),
        st.Page(PAGES / "explorer.py", title="Compound / MOA explorer", icon=":material/search:", url_path="explorer"),
        st.Page(
            PAGES / "method_comparison.py",
            title="Method comparison",
            icon=":material/compare:",
            url_path="method_comparison",
        ),
        st.Page(
            PAGES / "model_training.py",
            title="Model training",
            icon=":material/model_training:",
            url_path="model_training",
        ),
        st.Page(
            PAGES / "scaling_laws.py", title="Scaling laws", icon=":material/trending_up:", url_path="scaling_laws"
        ),
    ]
)
from dashboard.common import run_page  # noqa: E402 (after the navigation is declared)

run_page(nav.run)
warmup.start()  # after the first page rendered: it does not compete with it
