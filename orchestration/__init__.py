"""Dagster definitions for the MOA profiling pipeline (thin: the science lives in moa_core)."""
