"""Exceptions raised for bad input. Each message names the file/plate/well/site/column at fault."""

from __future__ import annotations


class MoaInputError(ValueError):
    """Bad input data: a missing/corrupt image, schema drift, NaN features, a plate without controls."""


class ImageReadError(MoaInputError):
    """An image file is missing, truncated, unreadable, or has the wrong shape/dtype."""


class SchemaError(MoaInputError):
    """A table lacks required columns or has columns of the wrong kind."""


class NormalizationError(MoaInputError):
    """Per-plate normalization is impossible (e.g. a plate has no negative-control wells)."""
