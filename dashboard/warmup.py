"""Import the explorer's and plots' heavy modules in the background once per server process.

The first page a visitor opens (the Overview) needs none of them; by the time they open
the explorer, scipy.stats, scikit-image, plotly and the retrieval code are loaded, so its
first render does not pay ~2 s of imports. Imports are idempotent and thread-safe
(Python's per-module import locks): a page that needs a module before the thread is done
simply waits for it.
"""

from __future__ import annotations

import importlib
import threading

MODULES = (
    "scipy.stats",
    "skimage.exposure",
    "plotly.express",
    "plotly.graph_objects",
    "moa_core.retrieval",
    "moa_core.data.display",
    "moa_core.data.image_io",
    "dashboard.explorer_queries",
    "sklearn.decomposition",
)
_started = threading.Event()


def _load() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a page importing it will show the real error
            pass


def start() -> None:
    """Start the background import thread (once per process)."""
    if not _started.is_set():
        _started.set()
        threading.Thread(target=_load, name="dashboard-warmup", daemon=True).start()
