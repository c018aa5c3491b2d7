"""Find a perturbation or an MOA by any of its names (type-ahead and suggestions).

Every perturbation of an index is findable by: its name (``pert_iname``, or the gene of a
CRISPR/ORF reagent), its Broad sample ID and Broad core ID (``BRD-K12345678``, the part
before the batch suffix), its JCP2022 ID, its InChIKey and the InChIKey's first block
(14 characters, the skeleton LINCS uses), synonyms (``Metadata_synonyms``,
``|``-separated, where the annotations carry them), and its MOA and target. Matching is
case-insensitive: exact match first, then prefix, then substring; an unknown string gets
the closest names (:func:`difflib.get_close_matches`) as suggestions.
"""

from __future__ import annotations

import difflib
import re

import pandas as pd

from moa_core.retrieval.index import RetrievalIndex

__all__ = ["search_terms", "search", "suggest", "broad_core_id", "option_label"]

_BRD = re.compile(r"^(BRD-[A-Z]\d{8})", re.IGNORECASE)


def broad_core_id(broad_sample: object) -> str | None:
    """``BRD-K12345678`` from ``BRD-K12345678-001-01-1`` (None when not a Broad ID)."""
    if broad_sample is None or pd.isna(broad_sample):
        return None
    m = _BRD.match(str(broad_sample))
    return m.group(1).upper() if m else None


def _split(v: object) -> list[str]:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return []
    return [t.strip() for t in str(v).split("|") if t.strip()]


def search_terms(index: RetrievalIndex) -> pd.DataFrame:
    """One row per (term, kind, compound): every string a perturbation can be found by."""
    comp = index.compounds
    rows: list[tuple[str, str, str]] = []

    def get(c: str) -> pd.Series:
        return comp[c] if c in comp.columns else pd.Series([None] * len(comp))

    for i, key in enumerate(comp["compound"].astype(str)):
        if bool(comp["is_control"].iat[i]) and key != "DMSO":
            rows.append(("DMSO", "control", key))
        rows.append((str(comp["name"].iat[i]), "name", key))
        bs = get("Metadata_broad_sample").iat[i]
        for kind, v in (
            ("Broad ID", bs),
            ("Broad core ID", broad_core_id(bs)),
            ("JCP ID", get("Metadata_JCP2022").iat[i]),
            ("InChIKey", get("Metadata_InChIKey").iat[i]),
        ):
            for t in _split(v):
                rows.append((t, kind, key))
        ik = get("Metadata_InChIKey").iat[i]
        if isinstance(ik, str) and len(ik) >= 14:
            rows.append((ik[:14], "InChIKey first block", key))
        for t in _split(get("Metadata_synonyms").iat[i]):
            rows.append((t, "synonym", key))
        for kind, c in (("MOA", "Metadata_moa"), ("target", "Metadata_target")):
            for t in _split(get(c).iat[i]):
                rows.append((t, kind, key))
        rows.append((key, "ID", key))
    t = pd.DataFrame(rows, columns=["term", "kind", "compound"]).drop_duplicates()
    t["folded"] = t["term"].str.casefold()
    return t.reset_index(drop=True)


def search(terms: pd.DataFrame, text: str, limit: int = 25) -> pd.DataFrame:
    """Rows of ``terms`` matching ``text`` (exact, then prefix, then substring), at most ``limit``."""
    q = (text or "").strip().casefold()
    if not q:
        return terms.iloc[0:0]
    exact = terms[terms["folded"] == q]
    prefix = terms[terms["folded"].str.startswith(q) & (terms["folded"] != q)]
    sub = terms[terms["folded"].str.contains(q, regex=False) & ~terms["folded"].str.startswith(q)]
    out = pd.concat([exact.assign(match="exact"), prefix.assign(match="prefix"), sub.assign(match="contains")])
    return out.drop_duplicates(["term", "kind", "compound"]).head(limit).reset_index(drop=True)


def suggest(terms: pd.DataFrame, text: str, n: int = 5) -> list[str]:
    """The closest known names/IDs/MOAs to an unknown ``text``."""
    q = (text or "").strip()
    if not q:
        return []
    pool = terms.drop_duplicates("folded")
    by_fold = dict(zip(pool["folded"], pool["term"]))
    close = difflib.get_close_matches(q.casefold(), list(by_fold), n=n, cutoff=0.5)
    return [by_fold[c] for c in close]


def option_label(comp_row: pd.Series) -> str:
    """A one-line label for a perturbation: name · ID · MOA."""
    parts = [str(comp_row["name"])]
    key = str(comp_row["compound"])
    if key != parts[0]:
        parts.append(key)
    moa = comp_row.get("Metadata_moa")
    if isinstance(moa, str) and moa.strip() and moa != "DMSO":
        parts.append(moa)
    return " \u00b7 ".join(parts)
