"""Per-perturbation phenotypic activity and replicate consistency (mAP with p and q values).

Definitions (copairs' average precision; jump_rr reports the first as "phenotypic activity"):

- *activity*: query = each treatment well; positives = the other wells of its
  perturbation (any plate); negatives = the DMSO wells of the query's plate;
- *replicate consistency*: the same positives; negatives = the wells of *other*
  treatments on the query's plate (controls excluded).

AP of a query = mean over its positives, sorted by similarity, of (positives so far) /
(rank among positives and negatives); similarity = PCC (copairs' ``distance="correlation"``).
A perturbation's mAP = mean AP of its wells; p = copairs' permutation null
(:func:`copairs.map.mean_average_precision`, ``null_size`` rankings with the same numbers
of positives and partners); q = Benjamini-Hochberg over perturbations.

Mirrors :func:`moa_core.evaluation.map.phenotypic_activity` /
:func:`~moa_core.evaluation.map.replicate_consistency` (which call copairs end to end);
deliberately differs in computing the AP step itself, block-wise per plate with numpy,
because copairs' pair-by-pair step takes ~10 s on 16,000 wells and hours at JUMP scale
(``tests/moa_core/test_retrieval.py`` checks equal APs). Ties between a positive and a
negative score are counted as the negative ranking first (copairs breaks them by index).
A perturbation with a single well, or a plate without DMSO, gets no value (NaN); the
reason is returned, so one bad plate does not hide the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moa_core.errors import SchemaError

__all__ = ["ACTIVITY_COLUMNS", "average_precisions", "compound_activity"]

ACTIVITY_COLUMNS = ["activity_map", "activity_p", "activity_q", "consistency_map", "consistency_p", "consistency_q"]


def average_precisions(
    V: np.ndarray,
    compounds: np.ndarray,
    plates: np.ndarray,
    control: np.ndarray,
    kind: str,
    *,
    block_rows: int = 2048,
) -> pd.DataFrame:
    """AP of every treatment well (rows of unit, row-centred ``V``) for ``kind`` 'activity' or 'consistency'.

    Returns one row per treatment well: ``row``, ``average_precision`` (NaN without positives or
    negatives), ``n_pos_pairs``, ``n_total_pairs``.

    Two passes, so cost grows with the pairs that exist rather than with N²: per plate, each query's
    similarities to its negatives, sorted; then per perturbation, the similarities among its wells
    (``block_rows`` query wells at a time: a positive control with wells on every plate of a JUMP
    release is one ``(block_rows, n_wells)`` product per block, not one matrix-vector product per well).
    """
    if kind not in ("activity", "consistency"):
        raise ValueError(f"kind must be 'activity' or 'consistency', got {kind!r}")
    n = len(V)
    comp_codes, _ = pd.factorize(pd.Series(compounds).astype(str))
    plate_codes, _ = pd.factorize(pd.Series(plates).astype(str))
    out_ap = np.full(n, np.nan)
    out_pos = np.zeros(n, dtype=np.int64)
    out_tot = np.zeros(n, dtype=np.int64)
    treat = ~control
    comp_size = np.bincount(comp_codes, minlength=comp_codes.max() + 1 if n else 0)
    # pass 1: per plate, the sorted similarities of each query to its negatives
    blocks: list[np.ndarray] = []
    q_block = np.full(n, -1, dtype=np.int64)
    q_at = np.zeros(n, dtype=np.int64)
    n_neg_of = np.zeros(n, dtype=np.int64)
    by_plate = pd.Series(np.arange(n)).groupby(plate_codes, sort=True).indices
    for p in sorted(by_plate):
        on = by_plate[p]
        q = on[treat[on]]
        if len(q) == 0:
            continue
        neg = on[(control if kind == "activity" else treat)[on]]
        if len(neg) == 0:
            out_pos[q] = comp_size[comp_codes[q]] - 1
            continue
        S = V[q] @ V[neg].T
        if kind == "consistency":  # a query's own perturbation is no negative
            same = comp_codes[q][:, None] == comp_codes[neg][None, :]
            S[same] = -np.inf
            n_neg_of[q] = (~same).sum(axis=1)
        else:
            n_neg_of[q] = len(neg)
        S.sort(axis=1)
        q_block[q] = len(blocks)
        q_at[q] = np.arange(len(q))
        blocks.append(S)
    # pass 2: per perturbation, each query's similarities to its positives, ranked among its negatives
    by_comp = pd.Series(np.arange(n)).groupby(comp_codes, sort=True).indices
    for c in sorted(by_comp):
        W = by_comp[c]
        queries = np.flatnonzero(treat[W] & (q_block[W] >= 0))
        if len(queries) == 0:
            continue
        VW = np.asarray(V[W])
        for a0 in range(0, len(queries), block_rows):
            qs = queries[a0 : a0 + block_rows]
            G = VW[qs] @ VW.T
            for r, jq in enumerate(qs):
                i = W[jq]
                out_pos[i] = len(W) - 1
                out_tot[i] = len(W) - 1 + int(n_neg_of[i])
                if len(W) == 1 or n_neg_of[i] == 0:
                    continue
                s = np.sort(np.delete(G[r], jq))[::-1]
                S = blocks[q_block[i]][q_at[i]]
                greater = S.shape[0] - np.searchsorted(S, s, side="left")  # negatives >= s rank first (ties)
                ranks = np.arange(1, len(s) + 1)
                out_ap[i] = float(np.mean(ranks / (ranks + greater)))
    rows = np.flatnonzero(treat)
    return pd.DataFrame(
        {"row": rows, "average_precision": out_ap[rows], "n_pos_pairs": out_pos[rows], "n_total_pairs": out_tot[rows]}
    )


def compound_activity(
    V: np.ndarray,
    compounds: np.ndarray,
    plates: np.ndarray,
    control: np.ndarray,
    *,
    null_size: int = 10_000,
    threshold: float = 0.05,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per perturbation (``compound`` column): :data:`ACTIVITY_COLUMNS`; and why a kind could not be computed.

    ``V``: unit, row-centred well profiles (a :class:`~moa_core.retrieval.RetrievalIndex`'s ``vectors``);
    ``compounds``, ``plates``, ``control``: per well.
    """
    from copairs.map import mean_average_precision
    from copairs.map.average_precision import normalize_ap

    if not (len(V) == len(compounds) == len(plates) == len(control)):
        raise SchemaError("compound_activity: V, compounds, plates and control must have one entry per well")
    comp = pd.Series(compounds).astype(str).to_numpy()
    out = pd.DataFrame({"compound": sorted(set(comp[~control]))})
    notes: dict[str, str] = {}
    for kind in ("activity", "consistency"):
        ap = average_precisions(V, comp, plates, control, kind)
        ap["compound"] = comp[ap["row"].to_numpy()]
        valid = ap["average_precision"].notna() & (ap["n_pos_pairs"] > 0)
        if not valid.any():
            notes[kind] = "no treatment well has both a replicate and a same-plate " + (
                "DMSO well" if kind == "activity" else "other treatment"
            )
            out[[f"{kind}_map", f"{kind}_p", f"{kind}_q"]] = np.nan
            continue
        if kind == "activity":
            ps = pd.Series(plates).astype(str)
            plates_wo = sorted(set(ps[~control]) - set(ps[control]))
            if plates_wo:
                notes[kind] = f"{len(plates_wo)} plate(s) without DMSO wells (no activity there): {plates_wo[:5]}"
        ap = ap[valid].reset_index(drop=True)
        n_pos = ap["n_pos_pairs"].to_numpy()
        ap["normalized_average_precision"] = normalize_ap(
            ap["average_precision"].to_numpy(), n_pos, ap["n_total_pairs"].to_numpy() - n_pos
        )
        m = mean_average_precision(
            ap,
            sameby=["compound"],
            null_size=null_size,
            threshold=threshold,
            seed=seed,
            progress_bar=False,
            cache_dir=cache_dir,
        )
        m = m.rename(
            columns={"mean_average_precision": f"{kind}_map", "p_value": f"{kind}_p", "corrected_p_value": f"{kind}_q"}
        )
        out = out.merge(m[["compound", f"{kind}_map", f"{kind}_p", f"{kind}_q"]], on="compound", how="left")
    return out, notes
