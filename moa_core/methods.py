"""The profiling methods the project compares: one registry read by evaluation, retrieval, Pheno-CA and the dashboard.

A *method* turns a dataset's wells into one profile per well (a row of a warehouse table with
``Metadata_*`` columns and features). Each :class:`Method` says where its table is, whether it exists
per (dataset, fraction) or per dataset, how it is computed, how a user gets it (the jobs to run), and
how it is drawn (label, colour). Adding a method is adding an entry here and an asset that writes its
table; evaluation, the retrieval indexes and the dashboard's pages pick it up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One profiling method (see the module docstring)."""

    name: str
    table: str
    per_fraction: bool
    colour: str
    computed: str
    how_to_get: str
    evaluated: bool = True  # compared by evaluation_results (IBP is a Pheno-CA model: retrieval only)
    label: str = ""
    #: learned nothing from MoA labels (CP and its recipes): a Pheno-CA study may read it without testing on
    #: what the method was trained on
    label_free: bool = False

    @property
    def display(self) -> str:
        return self.label or self.name


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "MP",
            "mp_embeddings",
            True,
            "#d62728",  # red
            "MOAProfiler trained here: pooled 1280-d field features -> well median -> per-plate DMSO standardization",
            "materialize `mp_checkpoint` + `mp_embeddings` (train_eval_job, which also rebuilds the index)",
        ),
        Method(
            "MP (paper weights)",
            "mp_paper_embeddings",
            False,
            "#e377c2",  # pink
            "MOAProfiler's published checkpoint (Wong et al. 2023) with upstream's input; well median -> DMSO "
            "standardization",
            "download the checkpoint (python -m moa_core.model.pretrained download jump1_moa FILE), set the "
            "entry's `paper_weights`, materialize `mp_paper_embeddings` (paper_weights_job), then `retrieval_index`",
        ),
        Method(
            "CP",
            "cp_embeddings",
            False,
            "#1f77b4",  # blue
            "CellProfiler-style features computed here -> well median -> per-plate DMSO standardization",
            "materialize `cp_embeddings` (ingest_job), then `retrieval_index`",
            label_free=True,
        ),
        Method(
            "CP published",
            "cp_published_embeddings",
            False,
            "#9467bd",  # purple
            "the dataset's published well-level CellProfiler profiles, DMSO-standardized per plate",
            "materialize `cp_published_embeddings` (published_job), then `retrieval_index` (retrieval_job)",
            label_free=True,
        ),
        Method(
            "CP (JUMP recipe)",
            "cp_jump_embeddings",
            False,
            "#17becf",  # cyan
            "the JUMP profiling recipe on the CP well profiles: variance filter -> per-plate MAD robustize -> "
            "rank-based inverse normal transform -> feature selection -> Harmony on plate/batch/source "
            "(pycytominer, harmonypy)",
            "materialize `cp_baselines` (ingest_job), then `retrieval_index`",
            label_free=True,
        ),
        Method(
            "CP spherized",
            "cp_spherized_embeddings",
            False,
            "#bcbd22",  # olive
            "the paper's optimized CP (ESI Figs. 4, 6): per-plate DMSO standardization -> feature selection -> ZCA "
            "sphering fitted on DMSO wells (pycytominer's Spherize)",
            "materialize `cp_baselines` (ingest_job), then `retrieval_index`",
            label_free=True,
        ),
        Method(
            "cell count",
            "cell_count_embeddings",
            False,
            "#393b79",  # dark indigo
            "cells per well alone (segmentation or the published Count features), standardized to DMSO per plate "
            "(Seal et al. 2026's baseline)",
            "materialize `cp_baselines` (ingest_job), then `retrieval_index`",
            label_free=True,
        ),
        Method(
            "DP recipe (trained here)",
            "dp_embeddings",
            True,
            "#2ca02c",  # green
            "the DeepProfiler recipe trained here (single-cell crops, compound-identity labels), not DeepProfiler's "
            "weights",
            "materialize `dp_checkpoint` + `dp_embeddings` (dp_recipe_job), then `retrieval_index` (retrieval_job)",
        ),
        Method(
            "IBP",
            "ibp_embeddings",
            True,
            "#ff7f0e",  # orange
            "Pheno-CA's Inverse Biological Process encoder on the dataset's profiles (Linsley et al.)",
            "materialize `phenoca_results` for this scale (phenoca_job), then `retrieval_index` (retrieval_job)",
            evaluated=False,
        ),
    )
}

#: Colours of what is not a method in METHODS but is drawn next to them.
OTHER_COLOURS = {
    "MP (compound holdout)": "#8c564b",  # brown
    # the scaling studies' model families: IBP's own orange, its invariant variant a lighter orange
    "IBP invariant": "#ffbb78",  # light orange
    "task-supervised": "#637939",  # dark olive
    "random": "#7f7f7f",  # grey: chance / random baselines
}

#: Drawn names that are another name under a different label, so share its colour: the scaling studies'
#: "profiles (CP)" family is the CP method's profiles, "chance" is the random baseline.
COLOUR_ALIASES = {"profiles (CP)": "CP", "chance": "random"}


def method_tables(*, evaluated_only: bool = True) -> dict[str, tuple[str, bool]]:
    """Method name -> (warehouse table base name, per fraction), in registry order."""
    return {m.name: (m.table, m.per_fraction) for m in METHODS.values() if m.evaluated or not evaluated_only}


def phenoca_inputs() -> list[str]:
    """The methods a Pheno-CA study of an image dataset may read (:attr:`Method.label_free`)."""
    return [m.name for m in METHODS.values() if m.label_free]


def method_order() -> list[str]:
    """Method names in the order pages list them (the registry's, then the other drawn names)."""
    return [*METHODS, *OTHER_COLOURS, *COLOUR_ALIASES]


def colour_map() -> dict[str, str]:
    """Every drawn name -> its colour: the registry's methods, the other drawn names, and the aliases."""
    colours = {**{m.name: m.colour for m in METHODS.values()}, **OTHER_COLOURS}
    return {**colours, **{alias: colours[name] for alias, name in COLOUR_ALIASES.items()}}
