"""Human labels of the *Scaling laws* page (studies, tasks, law forms, splits, model families), the jobs
behind each study and the "what to run" messages that name a study's own dataset and jobs. The page shows
no raw column names; colours are the method registry's (:func:`dashboard.style.method_color`)."""

from __future__ import annotations

import re

from dashboard import style
from moa_core.scaling import AVERAGED, studies

_CLI = "uv run python -m orchestration.materialize"


#: The jobs behind each study's points: (job, the partition keys it runs at, what it materializes).
STUDY_JOBS = {
    "mp_fractions": (
        "train_eval_job",
        "100, 50 and 25 (and their seed replicates 100s1, 100s2, 50s1, ... for an interval)",
        "MOAProfiler's training and `evaluation_results` at each fraction",
    ),
    "phenoca_ood": (
        "phenoca_job",
        "ood0, ood10, ood25 and 100",
        "the Pheno-CA zoo (`phenoca_results`) at each OOD share",
    ),
    "phenoca_replicates": (
        "phenoca_job",
        "100, 75, 50 and 25",
        "the Pheno-CA zoo (`phenoca_results`) at each replicate share",
    ),
}


def what_to_run(dataset: str | None, study: str | None = None) -> str:
    """What to run so that ``study`` of ``dataset`` has points and fits: its own jobs, named for that dataset."""
    ds = dataset or "DATASET"
    if dataset is None and study is None:  # no dataset yet: the embedded ones as the example
        return (
            f"materialize `phenoca_results` at each data scale for a profile dataset (`{_CLI} synthetic_jump_profiles "
            f"phenoca_job --fraction KEY`) or `evaluation_results` at each replicate fraction for an image dataset "
            f"(`{_CLI} synthetic_cpjump1 train_eval_job --fraction F`); then the `scaling_laws` of that dataset "
            f"(`{_CLI} DATASET scaling_job`) and the snapshot (`{_CLI} DATASET publish_job`)."
        )
    job, keys, what = STUDY_JOBS.get(study or "", ("phenoca_job", "each data scale", "the study at each scale"))
    if study is None:  # no study yet: both kinds
        return (
            f"materialize `phenoca_results` at each data scale for a profile dataset (`{_CLI} {ds} phenoca_job "
            f"--fraction KEY`) or `evaluation_results` at each replicate fraction for an image dataset (`{_CLI} {ds} "
            f"train_eval_job --fraction F`); then the `scaling_laws` (`{_CLI} {ds} scaling_job`) and the snapshot "
            f"(`{_CLI} {ds} publish_job`)."
        )
    return (
        f"run {what} (`{_CLI} {ds} {job} --fraction KEY` for KEY in {keys}), then the `scaling_laws` "
        f"(`{_CLI} {ds} scaling_job`), then publish the snapshot (`{_CLI} {ds} publish_job`)."
    )


STUDY_LABELS = {
    "phenoca_ood": "Pheno-CA: more training molecules (out-of-distribution share grows)",
    "phenoca_replicates": "Pheno-CA: more replicate wells per molecule",
    "mp_fractions": "MOAProfiler: replicate-fraction curve",
}


TASK_LABELS = {
    "moa_top10": "MoA top-10 accuracy",
    "target_top10": "Target top-10 accuracy",
    "molecule_top10": "Molecule top-10 accuracy",
    "moa_top10_novel": "MoA top-10 accuracy (novel molecules)",
    "target_top10_novel": "Target top-10 accuracy (novel molecules)",
    "discovery_auc": "Discovery AUC",
    "knn_f1": "k-NN weighted F1",
    "latent_f1": "Class latent assignment F1",
}


METRIC_LABELS = {
    "top10": "top-10 accuracy",
    "top1": "top-1 accuracy",
    "top5": "top-5 accuracy",
    "accuracy": "accuracy",
    "auc": "AUC",
    "f1": "F1",
    "best_f1": "best weighted F1",
    "top10_accuracy": "top-10 accuracy",
}


TASK_NAMES = {
    "moa": "MoA",
    "target": "Target",
    "molecule": "Molecule",
    "discovery": "Discovery",
    "knn": "k-NN",
    "latent": "Class latent assignment",
}


FORM_LABELS = {
    AVERAGED: "Averaged over the laws (back-test weights)",
    "linear": "Linear, a + bN (Pheno-CA)",
    "log_linear": "Log-linear, a + b log10 N",
    "power_floor": "Power law with floor, a\u221e \u2212 A N^\u2212\u03b1",
    "m4": "M4 (Alabdulmohsin et al.)",
    "broken_power": "Broken power law (Caballero et al.)",
}


FORM_NAMES_IN_TEXT = {
    AVERAGED: "the averaged law",
    "linear": "the linear law",
    "log_linear": "the log-linear law",
    "power_floor": "the power law with floor",
    "m4": "M4",
    "broken_power": "the broken power law",
}


FORM_RE = re.compile(r"'?\b(log_linear|power_floor|broken_power|linear|m4)\b'?")


SPLIT_LABELS = {
    "replicate": "held-out replicates of training molecules",
    "novel": "novel molecules (OOD)",
    "test": "test",
    "ood": "out-of-distribution molecules",
    "val": "validation",
}


FAMILY_LABELS = {
    "ibp": "IBP",
    "ibp_invariant": "IBP invariant",
    "task": "task-supervised",
    "task_supervised": "task-supervised",
    "none": "profiles (CP)",
    "cp": "profiles (CP)",
    "profiles": "profiles (CP)",
    "mp": "MP",
}


PROBE_LABELS = {
    "mlp3": "3-layer MLP",
    "head": "trained head",
    "cosine": "cosine similarity",
    "knn": "k-NN",
    "linear": "linear",
}


FORM_DASH = {
    AVERAGED: "solid",
    "linear": "dot",
    "log_linear": "dashdot",
    "power_floor": "solid",
    "m4": "dash",
    "broken_power": "longdash",
}


def pretty(raw: str) -> str:
    return str(raw).replace("_", " ")


def study_label(study: str) -> str:
    return STUDY_LABELS.get(study, pretty(study))


def x_label(study: str) -> str:
    return studies.STUDY_X.get(study, "training-set size N")


def task_label(task: str, metric: str | None = None) -> str:
    """``moa_top10`` -> "MoA top-10 accuracy"; ``("moa", "top10")`` likewise."""
    if metric is None:
        if task in TASK_LABELS:
            return TASK_LABELS[task]
        head, _, tail = str(task).partition("_")
        if tail and head in TASK_NAMES:
            return f"{TASK_NAMES[head]} {METRIC_LABELS.get(tail, pretty(tail))}"
        return pretty(task).capitalize()
    joined = f"{task}_{metric}"
    if joined in TASK_LABELS:
        return TASK_LABELS[joined]
    return f"{task_label(task)}: {METRIC_LABELS.get(metric, pretty(metric))}"


def form_label(form: str) -> str:
    return FORM_LABELS.get(form, pretty(form))


def split_label(split: str) -> str:
    return SPLIT_LABELS.get(split, pretty(split))


def family_label(family: str) -> str:
    return FAMILY_LABELS.get(str(family).lower(), str(family))


def family_color(family: str) -> str:
    """The family's colour: the method registry's (:mod:`moa_core.methods`, as on every page)."""
    return style.method_color(family)


STUDY_ORDER = ("phenoca_ood", "mp_fractions", "phenoca_replicates")
