"""MOA retrieval: an index over well profiles, queries, predicted MOA with confidence, search.

A small composable API in the spirit of copairs: :func:`build_index` -> :func:`save_index`
/ :func:`load_index`; :func:`neighbours` for one query; :func:`knn_vote`,
:func:`latent_assignment`, :func:`moa_enrichment` on its result; :func:`calibrate` +
:func:`confidence` for the empirical precision of a prediction; :func:`search_terms` /
:func:`search` / :func:`suggest` to find a perturbation by any of its names.
"""

from moa_core.retrieval.activity import ACTIVITY_COLUMNS, compound_activity
from moa_core.retrieval.index import IndexError_, RetrievalIndex, build_index, load_index, save_index, unit_rows
from moa_core.retrieval.query import (
    Neighbours,
    Prediction,
    calibrate,
    confidence,
    knn_vote,
    latent_assignment,
    moa_enrichment,
    neighbours,
    scan,
    wilson,
)
from moa_core.retrieval.search import broad_core_id, option_label, search, search_terms, suggest

__all__ = [
    "ACTIVITY_COLUMNS",
    "IndexError_",
    "Neighbours",
    "Prediction",
    "RetrievalIndex",
    "broad_core_id",
    "build_index",
    "calibrate",
    "compound_activity",
    "confidence",
    "knn_vote",
    "latent_assignment",
    "load_index",
    "moa_enrichment",
    "neighbours",
    "option_label",
    "save_index",
    "scan",
    "search",
    "search_terms",
    "suggest",
    "unit_rows",
    "wilson",
]
