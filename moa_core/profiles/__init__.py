"""Profiles: segmentation, CellProfiler-style features, aggregation and normalization."""
