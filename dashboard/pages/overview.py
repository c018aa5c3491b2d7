"""Overview: what the snapshot holds, for which dataset and release, when, from which code; model health."""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dashboard import common, queries  # noqa: E402

st.title("MOA profiling from Cell Painting images")
st.markdown(
    "MOAProfiler (a 5-channel EfficientNet-B0 trained to classify each field's mechanism of action), "
    "CellProfiler-style profiles, a DeepProfiler-style recipe trained here and Pheno-CA's IBP-pretrained "
    "MLPs, evaluated with the analyses of Wong et al. (2023) and Linsley et al. Pick a page on the left."
)
common.require_snapshot()
st.caption(f"Snapshot: `{queries.snapshot_path()}`")
if queries.has_table("catalog"):
    cat = queries.query("SELECT table_name, partition_key, n_rows, n_columns, written_at FROM catalog "
                        "ORDER BY written_at DESC")
    common.table(cat, "materialized tables", key="catalog")
