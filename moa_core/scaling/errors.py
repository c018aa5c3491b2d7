"""The scaling-law input error."""

from __future__ import annotations

from moa_core.errors import MoaInputError


class ScalingError(MoaInputError):
    """Scaling-law input that cannot be fitted: too few data sizes, NaN/inf, ``n <= 0``, a bounded
    metric outside [0, 1], a missing column, or a form that needs more sizes than the data has."""
