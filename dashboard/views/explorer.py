"""Compound / MOA explorer: look a perturbation up, see what it resembles, with what confidence, and its cells.

Deep links: ``/explorer?dataset=...&fraction=...&method=...&compound=<name or ID>&compare=<method>``.
"""

import html

import pandas as pd
import streamlit as st

from dashboard import common
from dashboard import explorer_queries as eq
from dashboard.style import EMPTY, method_color, pval, sig3, sort_methods
from moa_core.data.display import composite, placeholder, stretch, to_uint8
from moa_core.retrieval import (
    IndexError_,
    confidence,
    knn_vote,
    latent_assignment,
    moa_enrichment,
    neighbours,
    search,
    suggest,
)

st.title("Compound / MOA explorer")
st.caption(
    "Find a perturbation by name, Broad or JCP ID, InChIKey or MOA; see its nearest and most "
    "anti-correlated perturbations (mean Pearson correlation of their wells with the query's median "
    "profile), its predicted MOA with an empirical confidence, the MOA enrichment of its neighbours, "
    "and its cells next to a match and a same-plate DMSO well."
)
common.require_snapshot()
params = st.query_params
idx_rows = eq.indexes()
if idx_rows.empty:
    st.warning(
        "The snapshot holds no retrieval index yet: materialize `retrieval_index` (it runs in train_eval_job; "
        f"retrieval_job rebuilds it alone), then publish the snapshot. Or {common.WHAT_TO_RUN}."
    )
    st.stop()


def _pick(label: str, options: list, param: str, key: str, **kw):
    want = params.get(param)
    index = options.index(want) if want in options else 0
    return st.selectbox(label, options, index=index, key=key, **kw)


c1, c2, c3, c4 = st.columns([3, 1, 3, 3])
datasets = sorted(idx_rows["dataset"].unique())
with c1:
    dataset = _pick("Dataset", datasets, "dataset", "ex_dataset")
fracs = sorted(
    idx_rows[idx_rows["dataset"] == dataset]["fraction"].unique(),
    key=lambda f: (not f.isdigit(), -float(f) if f.isdigit() else 0, f),
)
with c2:
    fraction = _pick("Fraction (%)", fracs, "fraction", "ex_fraction")
rows = idx_rows[(idx_rows["dataset"] == dataset) & (idx_rows["fraction"] == fraction)].set_index("method")
methods = sort_methods(rows.index)
with c3:
    method = _pick(
        "Method",
        methods,
        "method",
        "ex_method",
        help="Embeddings indexed for this dataset and fraction (MP, CP computed, CP published, IBP, "
        "DP recipe: whatever the snapshot holds).",
    )
with c4:
    others = ["(none)"] + [m for m in methods if m != method]
    compare = _pick("Side by side with", others, "compare", "ex_compare")
asked = params.get("method")
if asked and asked not in methods:
    st.warning(
        f"No {asked} embeddings for {dataset} at fraction {fraction}: "
        f"{eq.HOW_TO_GET.get(asked, 'materialize its embeddings, then retrieval_index')}. Showing {method}."
    )
absent = [m for m in eq.HOW_TO_GET if m not in methods]
if absent:
    st.caption(
        "Not in this snapshot for this dataset and fraction: "
        + "; ".join(f"**{m}** ({eq.HOW_TO_GET[m]})" for m in absent)
        + "."
    )

try:
    index = eq.open_index(rows.loc[method])
except (IndexError_, FileNotFoundError) as exc:
    st.error(
        f"The {method} index of {dataset} / {fraction} cannot be opened: {exc}. Rematerialize `retrieval_index` "
        f"for this partition and republish the snapshot."
    )
    st.stop()
folder, build = str(eq.resolve(rows.loc[method, "path"])), str(rows.loc[method, "build_id"])
terms = eq.terms(folder, build)
comp = index.compounds

# ---- search --------------------------------------------------------------------------------------------------
treat = comp[~comp["is_control"]]
labels = eq.option_labels(folder, build)
moas = sorted({m for m in treat.get("Metadata_moa", pd.Series(dtype=object)).dropna().astype(str) if m.strip()})
options = list(labels) + [f"MOA: {m}" for m in moas]
fmt = lambda o: o if o.startswith("MOA: ") else labels[o]  # noqa: E731


def _resolve_text(text: str) -> str | None:
    """An exact name/ID/MOA typed or linked -> option key; None when it is not exact."""
    hits = search(terms, text, limit=50)
    exact = hits[hits["match"] == "exact"]
    if exact.empty:
        return None
    if (exact["kind"] == "MOA").all():
        return f"MOA: {exact['term'].iloc[0]}"
    keys = [k for k in exact["compound"] if k in labels]
    return keys[0] if keys else None


linked = params.get("compound")
default = _resolve_text(linked) if linked else None
# The type-ahead box filters its options in the browser: up to MAX_OPTIONS it holds every perturbation and
# MOA; past that (a JUMP release has ~116,000 compounds) it holds the matches of the search box below.
MAX_OPTIONS = 5000
if len(options) > MAX_OPTIONS:
    typed = st.session_state.get("ex_text") or ""
    found = search(terms, typed, limit=MAX_OPTIONS) if typed else terms.iloc[0:0]
    keep = [k for k in dict.fromkeys(found["compound"]) if k in labels]
    keep += [f"MOA: {m}" for m in dict.fromkeys(found.loc[found["kind"] == "MOA", "term"])]
    options = ([default] if default else []) + [o for o in keep if o != default]
    st.caption(
        f"{len(labels):,} perturbations: the list holds the matches of the search box (up to "
        f"{MAX_OPTIONS:,}); type a few letters there first."
    )
s1, s2 = st.columns([3, 2])
with s1:
    choice = st.selectbox(
        "Compound or MOA",
        options,
        index=options.index(default) if default in options else None,
        format_func=fmt,
        placeholder="Type a name, Broad or JCP ID, InChIKey or MOA\u2026",
        key=f"ex_query_{dataset}_{fraction}_{method}",
    )
with s2:
    text = st.text_input(
        "\u2026or search any identifier",
        value=linked if linked and default is None else "",
        key="ex_text",
        placeholder="e.g. BRD-K, an InChIKey block, a target",
    )
if text and (choice is None or text != linked):
    hits = search(terms, text, limit=25)
    exact = _resolve_text(text)
    if exact is not None:
        choice = exact
    elif hits.empty:
        sug = suggest(terms, text)
        st.warning(
            f"No perturbation, ID or MOA matches \u201c{text}\u201d in {method} / {dataset}."
            + (f" Did you mean: {', '.join(sug)}?" if sug else " Try part of a name or an MOA.")
        )
    else:
        show = hits.merge(comp[["compound", "name"]], on="compound", how="left")[
            ["term", "kind", "name", "compound", "match"]
        ]
        common.table(
            show,
            "matches",
            key="matches",
            caption=f"Matches for \u201c{text}\u201d:",
            height=min(36 * (len(show) + 1), 300),
        )
        keys = [k for k in dict.fromkeys(show["compound"]) if k in labels]
        if keys and choice is None:
            choice = st.radio("Open", keys[:10], format_func=lambda k: labels[k], horizontal=True, key="ex_hit")
if choice is None:
    st.info(
        f"{len(treat)} perturbations and {len(moas)} MOAs in the {method} index of {dataset} "
        f"(fraction {fraction}). Start typing above."
    )
    st.stop()

# ---- an MOA: its compounds -----------------------------------------------------------------------------------
if choice.startswith("MOA: "):
    moa = choice[len("MOA: ") :]
    members = treat[treat["Metadata_moa"].astype(str) == moa]
    st.subheader(f"MOA: {moa}")
    cols = [
        c
        for c in [
            "name",
            "compound",
            "Metadata_target",
            "n_wells",
            "activity_map",
            "activity_q",
            "consistency_map",
            "consistency_q",
        ]
        if c in members.columns
    ]
    common.table(
        members[cols].sort_values(cols[4] if len(cols) > 4 else "name", ascending=False),
        "compounds of this MOA",
        key="moa_members",
        caption=f"{len(members)} perturbations annotated with this MOA.",
    )
    choice = st.selectbox(
        "Open a compound of this MOA", list(members["compound"]), format_func=lambda k: labels[k], key="ex_moa_member"
    )
    if choice is None:
        st.stop()

st.query_params.update({"dataset": dataset, "fraction": fraction, "method": method, "compound": str(choice)})
row = index.compound_row(str(choice))
q = comp.iloc[row]

k1, k2 = st.columns(2)
k_list = k1.slider("Neighbours to list", 5, 50, 10, key="ex_k")
k_vote = k2.slider(
    "k for the k-NN vote and the enrichment",
    1,
    25,
    5,
    key="ex_kvote",
    help="The calibration of the confidence used k = 5.",
)


def analyse(idx, key: str):
    """Everything shown for the query under one index (None when the perturbation is not in it)."""
    try:
        r = idx.compound_row(key)
    except KeyError:
        return None
    nb = neighbours(idx, r, k=k_list)
    return nb, knn_vote(idx, nb, k_vote), latent_assignment(idx, nb), moa_enrichment(idx, nb, k_vote)


def header(idx, key: str, meth: str, res, cal: pd.DataFrame) -> None:
    c = idx.compounds.iloc[idx.compound_row(key)]
    nb, kv, la, enr = res
    m = st.columns(4)
    am, ap, aq = (c.get(f"activity_{x}") for x in ("map", "p", "q"))
    cm, cp_, cq = (c.get(f"consistency_{x}") for x in ("map", "p", "q"))
    m[0].metric(
        "Activity mAP (vs DMSO)",
        sig3(am),
        help="Replicates retrieved against same-plate DMSO "
        "wells (copairs' definition); p from the permutation null, q after Benjamini-Hochberg.",
    )
    m[0].caption(f"p = {pval(ap)}, q = {pval(aq)}")
    m[1].metric(
        "Replicate consistency (mAP)",
        sig3(cm),
        help="Replicates retrieved against other treatments on the same plates.",
    )
    m[1].caption(f"p = {pval(cp_)}, q = {pval(cq)}")
    ck = confidence(cal, "knn", kv.score)
    cl = confidence(cal, "latent", la.score)
    m[2].caption(f"Predicted MOA, k-NN vote (k = {k_vote})")
    m[2].markdown(
        f"<p style='font-size:1.35rem;line-height:1.25;margin:0'>{html.escape(kv.moa or EMPTY)}</p>",
        unsafe_allow_html=True,
    )
    m[2].caption(
        f"vote share {sig3(kv.score)}; confidence {sig3(ck['precision'])} "
        f"[{sig3(ck['low'])}, {sig3(ck['high'])}] (n = {ck['n']})"
    )
    m[3].caption("Predicted MOA, class latent assignment")
    m[3].markdown(
        f"<p style='font-size:1.35rem;line-height:1.25;margin:0'>{html.escape(la.moa or EMPTY)}</p>",
        unsafe_allow_html=True,
    )
    m[3].caption(
        f"margin {sig3(la.score)}; confidence {sig3(cl['precision'])} "
        f"[{sig3(cl['low'])}, {sig3(cl['high'])}] (n = {cl['n']})"
    )
    annotated = c.get("Metadata_moa")
    if isinstance(annotated, str) and annotated.strip():
        verdict = []
        for name, pred in (("k-NN", kv.moa), ("latent", la.moa)):
            verdict.append(f"{name} {'agrees' if pred == annotated else 'differs'}")
        st.caption(
            f"Annotated MOA: **{annotated}** ({', '.join(verdict)}). Confidence = precision of the same rule "
            f"on the index's annotated compounds queried leave-one-out whose score was at least this one "
            f"(95% Wilson interval); overall k-NN {sig3(ck['overall'])}, latent {sig3(cl['overall'])} over "
            f"{ck['n_calibration']} compounds."
        )
    if not enr.empty:
        own = enr[enr["moa"] == annotated] if isinstance(annotated, str) else enr.iloc[0:0]
        top = enr.iloc[0]
        msg = (
            f"MOA enrichment of the top {int(top['k'])} neighbours: **{top['moa']}** {int(top['in_top_k'])} of "
            f"{int(top['k'])} (expected {sig3(top['expected'])}), p = {pval(top['p'])}, q = {pval(top['q'])}"
        )
        if not own.empty and own.iloc[0]["moa"] != top["moa"]:
            msg += f"; the annotated MOA: p = {pval(own.iloc[0]['p'])}"
        st.markdown(msg + ".")


NEIGHBOUR_COLS = [
    "rank",
    "name",
    "similarity",
    "Metadata_moa",
    "Metadata_target",
    "Metadata_pert_type",
    "n_wells",
    "compound",
    "best_plate",
    "best_well",
]


def neighbour_tables(res, key_prefix: str, meth: str) -> None:
    nb, kv, la, enr = res
    t1, t2, t3, t4 = st.tabs(["Nearest compounds", "Most anti-correlated", "MOA enrichment", "Prediction details"])
    with t1:
        common.table(
            nb.nearest[[c for c in NEIGHBOUR_COLS if c in nb.nearest.columns]],
            f"nearest compounds ({meth})",
            key=f"{key_prefix}_nearest",
        )
    with t2:
        common.table(
            nb.anticorrelated[[c for c in NEIGHBOUR_COLS if c in nb.anticorrelated.columns]],
            f"anti-correlated compounds ({meth})",
            key=f"{key_prefix}_anti",
        )
    with t3:
        common.table(
            enr.rename(
                columns={
                    "in_top_k": "in top k",
                    "moa_compounds": "compounds of this MOA",
                    "annotated_compounds": "annotated candidates",
                }
            ),
            f"MOA enrichment ({meth})",
            key=f"{key_prefix}_enrichment",
            caption="Hypergeometric P(X \u2265 x) of each MOA among the top-k annotated neighbours; "
            "q = Benjamini-Hochberg over the MOAs listed.",
        )
    with t4:
        common.table(kv.table, f"k-NN votes ({meth})", key=f"{key_prefix}_votes")
        common.table(
            la.table.head(15),
            f"MOA centroid similarities ({meth})",
            key=f"{key_prefix}_latent",
            caption="PCC of the query's median profile with each MOA's centroid (median of its compounds; "
            "the query left out).",
        )


key = str(choice)
cal = eq.calibration(folder, build)
res = analyse(index, key)
name = q["name"]
ids = " \u00b7 ".join(
    str(q[c]) for c in ("compound", "Metadata_InChIKey") if c in q.index and pd.notna(q[c]) and str(q[c]) != name
)
st.subheader(f"{name}")
st.caption(
    f"{ids} \u00b7 {int(q['n_wells'])} wells on {int(q['n_plates'])} plates \u00b7 target "
    f"{q.get('Metadata_target') if pd.notna(q.get('Metadata_target')) else EMPTY} \u00b7 {method} index "
    f"({index.n_wells} wells \u00d7 {index.dim} dimensions)"
)

if compare == "(none)":
    header(index, key, method, res, cal)
    neighbour_tables(res, "a", method)
else:
    try:
        other = eq.open_index(rows.loc[compare])
    except (IndexError_, FileNotFoundError) as exc:
        other = None
        st.error(f"The {compare} index cannot be opened: {exc}")
    left, right = st.columns(2)
    for col, idx, meth, prefix in ((left, index, method, "a"), (right, other, compare, "b")):
        with col:
            st.markdown(f"<h4 style='color:{method_color(meth)}'>{meth}</h4>", unsafe_allow_html=True)
            r2 = res if meth == method else (analyse(idx, key) if idx is not None else None)
            if r2 is None:
                st.info(f"{name} is not in the {meth} index of {dataset} / {fraction}.")
                continue
            c2_ = eq.calibration(str(eq.resolve(rows.loc[meth, "path"])), str(rows.loc[meth, "build_id"]))
            header(idx, key, meth, r2, c2_)
            neighbour_tables(r2, prefix, meth)

# ---- cells ---------------------------------------------------------------------------------------------------
st.subheader("Cells")
nb = res[0]
q_well = index.wells.iloc[int(nb.best_well[row])]
match = nb.nearest.iloc[0] if not nb.nearest.empty else None
dmso = index.wells[index.wells["is_control"] & (index.wells["Metadata_Plate"] == q_well["Metadata_Plate"])]
pc1, pc2, pc3 = st.columns([2, 2, 3])
site = pc1.number_input("Field (site)", min_value=1, max_value=9, value=1, step=1, key="ex_site")
lo_hi = pc2.slider("Contrast stretch (percentiles)", 0.0, 100.0, (0.5, 99.5), step=0.5, key="ex_stretch")
pc3.caption(
    "Each channel is stretched on its own between these percentiles; composite: DNA blue, ER green, "
    "RNA cyan, AGP orange, Mito magenta."
)
panels = [
    (f"Query: {name}", q_well["Metadata_Plate"], q_well["Metadata_Well"], "its well most similar to its median profile")
]
if match is not None:
    panels.append(
        (
            f"Top match: {match['name']}",
            match["best_plate"],
            match["best_well"],
            f"similarity {sig3(match['similarity'])}; its most similar well",
        )
    )
if not dmso.empty:
    d = dmso.iloc[0]
    panels.append(("DMSO, same plate", d["Metadata_Plate"], d["Metadata_Well"], "negative control"))
else:
    st.caption(f"Plate {q_well['Metadata_Plate']} has no DMSO well in this index.")
cols = st.columns(len(panels))
for col, (title, plate, well, note) in zip(cols, panels):
    with col:
        st.markdown(f"**{title}**")
        img, frow = eq.well_field(dataset, str(plate), str(well), int(site) - 1)
        if not img.ok:
            st.image(placeholder(160), caption=f"plate {plate} well {well}: image unavailable")
            st.caption(f"Not readable: `{img.source}`")
            continue
        st.image(
            to_uint8(composite(img.field, eq.CHANNELS, low=lo_hi[0], high=lo_hi[1])),
            width="stretch",
            caption=f"plate {plate} well {well} site {int(frow['Metadata_Site'])} \u00b7 {note}",
        )
        with st.expander("Single channels"):
            chans = st.columns(len(eq.CHANNELS))
            for cc, plane, cname in zip(chans, img.field, eq.CHANNELS):
                cc.image(to_uint8(stretch(plane, lo_hi[0], lo_hi[1])), caption=cname, width="stretch")
        st.caption(f"Read from {img.source}")
