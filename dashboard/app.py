"""MOA profiling dashboard (Streamlit multipage; pages live in ``dashboard/pages``).

    uv run streamlit run dashboard/app.py
"""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dashboard import queries  # noqa: E402

st.set_page_config(page_title="MOA profiling", layout="wide")
st.title("MOA profiling from Cell Painting images")
st.markdown(
    "MOAProfiler (a 5-channel EfficientNet-B0 trained to classify each field's mechanism of action) against "
    "CellProfiler-style profiles, evaluated with the analyses of Wong et al. (2023). Pick a page on the left."
)
path = queries.snapshot_path()
if not path.is_file():
    st.warning(f"No published snapshot at `{path}` yet: run the demo (README) or materialize `dashboard_snapshot`.")
else:
    parts = queries.evaluated_partitions()
    st.caption(f"Snapshot: `{path}`")
    st.subheader("Evaluated partitions")
    st.dataframe(parts, hide_index=True)
