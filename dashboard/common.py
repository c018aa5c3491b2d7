"""Page scaffolding shared by every dashboard page: snapshot guard, what-to-run messages, downloads."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.style import csv_bytes, display_frame

DEMO = "uv run python -m orchestration.demo"
PUBLISH = "uv run dagster job execute -m orchestration.definitions -j publish_job"
WHAT_TO_RUN = (
    f"run the demo (`{DEMO}`), or in the Dagster UI (`uv run dagster dev`) materialize the pipeline's "
    f"assets and then `dashboard_snapshot` (publish_job: `{PUBLISH}`)"
)
_RERUNS = "_snapshot_reruns"


def run_page(body: Callable[[], None]) -> None:
    """Run a page body on a pinned snapshot.

    - no snapshot: a warning that says what to run (the page stops, no exception);
    - unreadable snapshot: an error naming the file;
    - snapshot replaced while the page read it: rerun once on the new one (a second
      replacement in a row shows a note instead of looping).
    """
    try:
        queries.pin()
    except queries.SnapshotMissing:
        st.warning(f"No published snapshot at `{queries.snapshot_path()}` yet: {WHAT_TO_RUN}.")
        return
    except queries.SnapshotUnreadable as exc:
        st.error(str(exc))
        return
    try:
        body()
        st.session_state[_RERUNS] = 0
    except queries.SnapshotReplaced:
        n = st.session_state.get(_RERUNS, 0)
        if n < 2:
            st.session_state[_RERUNS] = n + 1
            st.toast("A new snapshot was published while this page read the old one: reloading.")
            st.rerun()
        st.info("The snapshot is being republished repeatedly; showing what was read. Reload the page.")
    except queries.SnapshotMissing:
        st.warning(f"The snapshot at `{queries.snapshot_path()}` disappeared while this page read it: {WHAT_TO_RUN}.")
    except queries.SnapshotUnreadable as exc:
        st.error(str(exc))
    finally:
        queries.unpin()


def require_snapshot(what_to_run: str | None = None) -> None:
    """At the top of a page: pin the snapshot, or say what to run (``what_to_run``, default: the whole
    pipeline) and stop the page (no exception)."""
    try:
        queries.pin()
        queries.tables()  # a truncated or foreign file fails here, not halfway through the page
    except queries.SnapshotMissing:
        st.warning(f"No published snapshot at `{queries.snapshot_path()}` yet: {what_to_run or WHAT_TO_RUN}.")
        st.stop()
    except queries.SnapshotUnreadable as exc:
        st.error(str(exc))
        st.stop()


def table(
    df: pd.DataFrame,
    name: str,
    *,
    key: str,
    caption: str | None = None,
    hide_index: bool = True,
    p_columns: tuple[str, ...] = (),
    height: int | None = None,
) -> None:
    """A formatted table (3 significant figures, p-values in scientific notation, human labels) with a
    CSV download of the raw values."""
    if caption:
        st.caption(caption)
    kwargs = {"height": height} if height else {}
    st.dataframe(display_frame(df, p_columns=p_columns), hide_index=hide_index, width="stretch", **kwargs)
    st.download_button(
        f"Download {name} (CSV)", csv_bytes(df), file_name=f"{key}.csv", mime="text/csv", key=f"dl_{key}"
    )
