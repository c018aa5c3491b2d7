"""moa_core: the science of MOA profiling from Cell Painting images.

A plain, typed Python library (no Dagster, no Streamlit):

- :mod:`moa_core.data` — plate design, load_data tables, image I/O, the synthetic renderer.
- :mod:`moa_core.profiles` — segmentation, CellProfiler-style features, normalization.
- :mod:`moa_core.splits` — the paper's well- and compound-holdout splits.
- :mod:`moa_core.model` — the 5-channel EfficientNet-B0, training and embedding.
- :mod:`moa_core.evaluation` — the paper's analyses plus mAP.
- :mod:`moa_core.storage` — atomic file writes and the DuckDB warehouse.
"""

__version__ = "0.1.0"
