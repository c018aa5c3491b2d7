"""Vectorized extraction of unordered pair similarities (i < j), split by label agreement."""

from __future__ import annotations

import numpy as np

_BLOCK_ELEMENTS = 1 << 22  # ~4M matrix entries (32 MB float64) per block


def upper_pairs_by_category(
    sim: np.ndarray,
    codes: list[np.ndarray],
    weights: np.ndarray | None = None,
) -> dict[tuple[bool, ...], np.ndarray]:
    """Similarities of all unordered pairs ``i < j`` grouped by label agreement.

    Parameters
    ----------
    sim : (n, n) array
        Symmetric similarity matrix.
    codes : list of (n,) integer arrays
        One label array per criterion (e.g. ``[moa_codes]`` or ``[compound, moa]``).

    Returns
    -------
    dict
        Key ``(same_0, same_1, ...)`` (one bool per criterion) -> 1-D float64 array of
        the similarities of the pairs in that category, in row-major (i, then j) order.
        All ``2**len(codes)`` keys are present (possibly empty arrays).
    """
    n = sim.shape[0]
    k = len(codes)
    parts: dict[tuple[bool, ...], list[np.ndarray]] = {}
    keys = [tuple(bool((m >> b) & 1) for b in range(k)) for m in range(1 << k)]
    for key in keys:
        parts[key] = []
    step = max(1, _BLOCK_ELEMENTS // max(n, 1))
    cols = np.arange(n)
    for i0 in range(0, n - 1, step):
        i1 = min(n - 1, i0 + step)
        rows = np.arange(i0, i1)
        block = sim[i0:i1]
        upper = cols[None, :] > rows[:, None]
        cat = np.zeros(block.shape, dtype=np.int8)
        for b, c in enumerate(codes):
            cat |= (c[i0:i1, None] == c[None, :]).astype(np.int8) << b
        cat[~upper] = -1
        for m, key in enumerate(keys):
            parts[key].append(block[cat == m])
    return {key: (np.concatenate(v) if v else np.empty(0)).astype(np.float64, copy=False) for key, v in parts.items()}


def upper_values(sim: np.ndarray) -> np.ndarray:
    """All similarities ``sim[i, j]`` with ``i < j`` as a 1-D array (row-major order)."""
    n = sim.shape[0]
    return np.concatenate([sim[i, i + 1 :] for i in range(n - 1)]) if n > 1 else np.empty(0)


def weighted_pair_moments(sim: np.ndarray, mask: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bootstrap weighted pair sums for pairs ``i != j`` selected by symmetric ``mask``.

    For each weight vector ``w`` (row of ``W``, shape (B, n)) returns
    ``S = sum_{i<j, mask} w_i w_j sim_ij`` and ``C = sum_{i<j, mask} w_i w_j``.
    (Diagonal excluded: copies of the same well never pair with each other.)
    """
    A = np.where(mask, sim, 0.0)
    M = mask.astype(np.float64)
    np.fill_diagonal(A, 0.0)
    np.fill_diagonal(M, 0.0)
    S = np.einsum("bi,bi->b", W @ A, W) / 2.0
    C = np.einsum("bi,bi->b", W @ M, W) / 2.0
    return S, C
