"""One Pheno-CA study: the model zoo at one data scale, scored on the four tasks and two splits.

For each split (``replicate``: the paper's held-out replicate wells; ``novel``: whole
compounds never seen in training, the real discovery case):

1. **split and scale** (:mod:`.splits`): hold out wells or compounds, then keep
   ``ood_share`` of the OOD molecules and ``replicate_share`` of every training compound's
   wells (nested); CRISPR wells are queries only, never trained on;
2. **preprocess** (:mod:`.preprocess`), fitted on the training wells only;
3. **models**, for every (depth, width) of the zoo:

   - ``ibp``: a residual MLP pretrained on the Inverse Biological Process (predict the
     molecule, DMSO included, from its phenotype, over every training molecule, OOD ones
     included), then frozen; 3-layer MLP probes per task (``mlp3``);
   - ``ibp_invariant`` (when ``invariance_weight > 0``): the same with source, batch and
     well-position heads pushed to uniform;
   - ``task``: the same architecture trained directly on MoA (and on target), its own head
     predicting (``head``);
   - ``none``: the preprocessed profiles themselves (CP), with the same probes (``mlp3``)
     and cosine k-NN (``knn``): the baselines that need no pretraining;

4. **tasks** (:mod:`.tasks`): MoA and target deconvolution (top-1/top-10 accuracy with the
   frequent-class and uniform chance), molecule deconvolution (replicate split only: the
   IBP head on held-out replicates; cross-entropy and top-k), and compound discovery (each
   CRISPR knockout's mean representation ranks the evaluation compounds: AUC of hits found
   vs compounds tested and the rank of the first hit, against random and CP).

Model selection never sees test wells: IBP stops early on the split's validation wells in
the replicate split (other replicates of training molecules) and on one held-out
*training* replicate per molecule with at least two training wells in the novel split
(whose validation wells are compounds that are no IBP class); probes and task-supervised
models on the split's validation wells. The data-scale counts (``n_train_wells``,
``n_train_compounds``, ``n_ood_compounds``) count perturbation wells and molecules, not
the plates' DMSO wells.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from moa_core.errors import SchemaError
from moa_core.phenoca.config import StudyConfig, Zoo
from moa_core.phenoca.preprocess import fit_preprocessor, validate_matrix, validate_profiles
from moa_core.phenoca.splits import novel_compound_split, replicate_split, scale_training
from moa_core.phenoca.tasks import (
    aggregate_by,
    compound_discovery,
    deconvolution_metrics,
    molecule_metrics_from_ranks,
    summarize_discovery,
)

RESULT_COLUMNS = [
    "model",
    "supervision",
    "probe",
    "task",
    "split",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n_train_wells",
    "n_train_compounds",
    "n_ood_compounds",
    "params",
]
TASK_COLS = {"moa": "Metadata_moa", "target": "Metadata_target"}


@dataclass
class StudyResult:
    table: pd.DataFrame
    summary: dict = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)
    #: Well embeddings of the largest IBP encoder of the replicate split (``Metadata_*`` + ``IBP_0000``...),
    #: every well of the input (the retrieval index and the explorer's "IBP" method); None without that split.
    embeddings: pd.DataFrame | None = None


def _fit_config(cfg: StudyConfig, epochs: int | None = None):
    from moa_core.phenoca.train import FitConfig

    return FitConfig(
        epochs=epochs or cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        patience=cfg.patience,
        seed=cfg.seed,
        device=cfg.device,
        num_threads=cfg.num_threads,
        max_minutes=cfg.max_minutes,
    )


def _ibp_holdout(compounds: np.ndarray, train: np.ndarray, seed: int, min_wells: int = 2) -> np.ndarray:
    """One training well per molecule with >= ``min_wells`` training wells, for IBP's early stopping."""
    rng = np.random.default_rng([seed, 7])
    idx = np.flatnonzero(train)
    order = idx[rng.permutation(len(idx))]
    seen: dict[str, int] = {}
    counts = pd.Series(compounds[idx]).value_counts()
    hold = np.zeros(len(compounds), bool)
    for i in order:
        c = compounds[i]
        if counts[c] >= min_wells and c not in seen:
            seen[c] = i
            hold[i] = True
    return hold


def _rows(df: pd.DataFrame, **keys) -> list[dict]:
    out = []
    for r in df.to_dict("records"):
        k = r.get("k")
        metric = r["metric"]
        if metric in ("top_k_accuracy", "chance_frequent", "chance_uniform") and pd.notna(k):
            metric = {
                "top_k_accuracy": f"top{int(k)}",
                "chance_frequent": f"chance_top{int(k)}",
                "chance_uniform": f"chance_uniform_top{int(k)}",
            }[metric]
        out.append(
            {
                **keys,
                "metric": metric,
                "value": float(r["value"]),
                "ci_low": float(r.get("ci_low", np.nan)),
                "ci_high": float(r.get("ci_high", np.nan)),
            }
        )
    return out


def _deconvolution(
    scores: np.ndarray, classes: list[str], y_test: np.ndarray, y_train: np.ndarray, cfg: StudyConfig, **keys
) -> list[dict]:
    return _rows(
        deconvolution_metrics(scores, y_test, classes, y_train, ks=(1, 10), n_boot=cfg.n_boot, seed=cfg.seed), **keys
    )


def _discovery(
    reps: np.ndarray, df: pd.DataFrame, crispr: np.ndarray, evaluated: np.ndarray, cfg: StudyConfig, **keys
) -> list[dict]:
    if not crispr.any() or not evaluated.any():
        return []
    genes, q = aggregate_by(df.loc[crispr, "Metadata_gene"].astype(str).to_numpy(), reps[crispr])
    comps, c = aggregate_by(df.loc[evaluated, "Metadata_JCP2022"].astype(str).to_numpy(), reps[evaluated])
    tmap = df.loc[evaluated].groupby("Metadata_JCP2022")["Metadata_target"].first()
    targets = [frozenset(str(t).split("|")) if pd.notna(t) else None for t in (tmap.get(x) for x in comps)]
    per, _ = compound_discovery(q, list(genes), c, targets, seed=cfg.seed)
    if per.empty:
        return []
    summ = summarize_discovery(per, n_boot=cfg.n_boot, seed=cfg.seed)
    rows = []
    for r in summ.to_dict("records"):
        rows.append(
            {
                **keys,
                "metric": r["metric"],
                "value": float(r["value"]),
                "ci_low": float(r["ci_low"]),
                "ci_high": float(r["ci_high"]),
            }
        )
        rows.append(
            {
                **keys,
                "metric": f"random_{r['metric']}",
                "value": float(r["random"]),
                "ci_low": np.nan,
                "ci_high": np.nan,
            }
        )
    rows.append({**keys, "metric": "genes", "value": float(len(per)), "ci_low": np.nan, "ci_high": np.nan})
    return rows


def scaled_split(df: pd.DataFrame, split_name: str, *, ood_share: float, replicate_share: float, seed: int):
    """The split ``split_name`` (``"replicate"`` or ``"novel"``) of ``df`` at one data scale: what every model of a
    study at that scale trains and is scored on (:func:`run_study`, :func:`scale_counts`)."""
    if split_name == "replicate":
        sp = replicate_split(df, seed=seed)
    elif split_name == "novel":
        sp = novel_compound_split(df, seed=seed)
    else:
        raise SchemaError(f"unknown Pheno-CA split {split_name!r}: use 'replicate' or 'novel'")
    return scale_training(df, sp, ood_share=ood_share, replicate_share=replicate_share, seed=seed)


def training_counts(df: pd.DataFrame, train: np.ndarray) -> dict[str, int]:
    """The data-scale counts of the ``train`` wells of ``df``: perturbation wells (compounds; not CRISPR, whose
    wells are queries only, nor the plates' DMSO), their molecules, and the OOD ones among them."""
    ptype = df["Metadata_pert_type"].astype(str).to_numpy()
    is_ood = df["Metadata_is_ood"].astype(bool).to_numpy()
    compounds = df["Metadata_JCP2022"].astype(str).to_numpy()
    pert_train = np.asarray(train, bool) & (ptype != "crispr") & (ptype != "negcon")
    return {
        "n_train_wells": int(pert_train.sum()),
        "n_train_compounds": int(len(set(compounds[pert_train]))),
        "n_ood_compounds": int(len(set(compounds[pert_train & is_ood]))),
    }


def scale_counts(
    profiles: pd.DataFrame, scales: dict[str, tuple[float, float]], config: StudyConfig | None = None
) -> pd.DataFrame:
    """The data-scale counts a study would train on at each of ``scales`` (key -> ``(ood_share,
    replicate_share)``), without training: one row per (``fraction``, ``split``) with ``n_train_wells``,
    ``n_train_compounds``, ``n_ood_compounds`` - the numbers :func:`run_study` writes into its result rows at
    that scale (the same split functions, seeded by ``config.seed``). Only the ``Metadata_`` columns are read,
    so a JUMP-sized table's metadata suffices. The forecast ledger uses them as the exact sizes of the scales
    not yet materialized."""
    cfg = config or StudyConfig()
    df = profiles.reset_index(drop=True)
    rows = []
    for key, (ood_share, replicate_share) in scales.items():
        for split_name in cfg.splits:
            sp = scaled_split(df, split_name, ood_share=ood_share, replicate_share=replicate_share, seed=cfg.seed)
            rows.append({"fraction": str(key), "split": split_name, **training_counts(df, sp.mask("train"))})
    return pd.DataFrame(rows, columns=["fraction", "split", "n_train_wells", "n_train_compounds", "n_ood_compounds"])


def run_study(
    profiles: pd.DataFrame,
    *,
    ood_share: float = 1.0,
    replicate_share: float = 1.0,
    config: StudyConfig | None = None,
    log: Callable[[str], None] | None = None,
    features: np.ndarray | None = None,
    feature_names: Sequence[str] | None = None,
    archs: Sequence[tuple[int, int]] | None = None,
    baselines: bool = True,
) -> StudyResult:
    """The zoo of ``config`` on ``profiles`` (schema of :mod:`.synthetic`) at one data scale; tidy results.

    Out of core (a JUMP-sized release): ``profiles`` holds only the metadata and ``features`` the float32
    matrix aligned with its rows (``feature_names`` its columns); the preprocessing then never builds a
    float64 copy of the table (:mod:`.preprocess`).

    One member of a zoo spread over several processes or machines: ``archs`` (a subset of the zoo's
    ``(depth, width)`` pairs) restricts the models trained, ``baselines=False`` leaves out the profiles'
    own rows (``supervision == "none"``); :func:`merge_study_results` of the members equals the whole
    study (every model is seeded by ``config.seed`` alone, and the splits and preprocessing are the same
    deterministic functions of the data in every member, which each member recomputes).
    """
    from moa_core.phenoca.train import embed, fit_probe, knn_scores, train_encoder

    cfg = config or StudyConfig()
    log = log or (lambda m: None)
    zoo_archs = Zoo.of(cfg).archs
    if archs is not None:
        archs = [tuple(int(v) for v in a) for a in archs]
        unknown = [a for a in archs if a not in zoo_archs]
        if unknown:
            raise SchemaError(f"architectures {unknown} are not in the zoo {zoo_archs} (depths x widths of the config)")
    member_archs = zoo_archs if archs is None else [a for a in zoo_archs if a in archs]
    if features is not None:
        feats = validate_matrix(profiles, features, feature_names if feature_names is not None else [])
    else:
        feats = validate_profiles(profiles)
    df = profiles.reset_index(drop=True)
    ptype = df["Metadata_pert_type"].astype(str).to_numpy()
    is_ood = df["Metadata_is_ood"].astype(bool).to_numpy()
    compounds = df["Metadata_JCP2022"].astype(str).to_numpy()
    annotated = (ptype == "compound") & ~is_ood
    if not annotated.any():
        raise SchemaError("no annotated compound (Metadata_moa set, not OOD) in the profiles: no Pheno-CA task to run")
    crispr = ptype == "crispr"
    rows: list[dict] = []
    models: list[dict] = []
    ibp_reps: tuple[int, np.ndarray] | None = None
    pca_info: dict = {}
    t_all = time.time()
    for split_name in cfg.splits:
        sp = scaled_split(df, split_name, ood_share=ood_share, replicate_share=replicate_share, seed=cfg.seed)
        train, val, test = sp.mask("train"), sp.mask("val"), sp.mask("test")
        pre = fit_preprocessor(
            df,
            feats,
            train,
            method=cfg.preprocess,
            clip=cfg.clip,
            whiten=True,
            pca_components=cfg.pca_components,
            seed=cfg.seed,
            matrix=features,
        )
        X = pre.transform(df, features)
        pca_info = {"pca_components": pre.n_components, "pca_explained_variance": pre.explained_variance}
        mol_train = train & (ptype != "crispr")
        n_train = training_counts(df, train)
        log(
            f"{split_name} split: {n_train['n_train_wells']} training wells of {n_train['n_train_compounds']} "
            f"molecules ({n_train['n_ood_compounds']} OOD), {int(val.sum())} val, {int(test.sum())} test; "
            f"{X.shape[1]} whitened dimensions ({pre.explained_variance:.3f} of the training variance)"
        )
        task_sets = {}
        for task, col in TASK_COLS.items():
            labels = df[col].astype(object).where(annotated)
            tr, va, te = train & annotated, val & annotated, test & annotated
            classes = sorted(set(labels[tr].dropna()))
            known = labels.isin(classes).to_numpy()
            task_sets[task] = (labels.to_numpy(), classes, tr & known, va & known, te & known)
        # compounds scored by discovery: held-out compounds' test wells (novel) or every annotated compound's
        # test wells (replicate)
        evaluated = test & annotated
        base = {"split": split_name, **n_train}

        def score_tasks(
            model_name: str,
            supervision: str,
            reps: np.ndarray,
            encoder,
            params: int,
            *,
            task_sets=task_sets,
            X=X,
            base=base,
            evaluated=evaluated,
        ) -> None:  # this split's data bound as defaults: called within the iteration that defines it
            for task, (labels, classes, tr, va, te) in task_sets.items():
                if not te.any() or not va.any():
                    continue
                ci = {c: i for i, c in enumerate(classes)}
                probe = fit_probe(
                    encoder,
                    X[tr],
                    [ci[x] for x in labels[tr]],
                    X[va],
                    [ci[x] for x in labels[va]],
                    _fit_config(cfg, cfg.probe_epochs),
                    n_classes=len(classes),
                    hidden=cfg.probe_hidden,
                )
                rows.extend(
                    _deconvolution(
                        probe.predict_proba_reps(reps[te]),
                        classes,
                        labels[te],
                        labels[tr],
                        cfg,
                        model=model_name,
                        supervision=supervision,
                        probe="mlp3",
                        task=task,
                        params=params,
                        **base,
                    )
                )
            rows.extend(
                _discovery(
                    reps,
                    df,
                    crispr,
                    evaluated,
                    cfg,
                    model=model_name,
                    supervision=supervision,
                    probe="cosine",
                    task="discovery",
                    params=params,
                    **base,
                )
            )

        # baselines on the profiles themselves (CP)
        if baselines:
            score_tasks("profiles", "none", X, None, 0)
        for task, (labels, classes, tr, _va, te) in task_sets.items():
            if te.any() and baselines:
                ci = {c: i for i, c in enumerate(classes)}
                s = knn_scores(
                    X[tr], np.array([ci[x] for x in labels[tr]]), X[te], k=cfg.knn_k, classes=np.arange(len(classes))
                )
                rows.extend(
                    _deconvolution(
                        s,
                        classes,
                        labels[te],
                        labels[tr],
                        cfg,
                        model="profiles",
                        supervision="none",
                        probe="knn",
                        task=task,
                        params=0,
                        **base,
                    )
                )
        # IBP: molecule identity over every training molecule (DMSO one class, OOD included)
        if split_name == "replicate":  # the split's val wells are other replicates of training molecules
            ibp_tr, ibp_va = mol_train, val
        else:  # novel compounds are no IBP class: one held-out training replicate per molecule (>= 2 wells)
            hold = _ibp_holdout(compounds, mol_train, cfg.seed)
            ibp_tr, ibp_va = mol_train & ~hold, hold
        mols = sorted(set(compounds[ibp_tr]))
        mi = {m: i for i, m in enumerate(mols)}
        y_tr = np.array([mi[m] for m in compounds[ibp_tr]])
        keep_va = np.array([m in mi for m in compounds]) & ibp_va
        y_va = np.array([mi[m] for m in compounds[keep_va]])
        variants = [("ibp", 0.0)] + ([("ibp_invariant", cfg.invariance_weight)] if cfg.invariance_weight > 0 else [])
        nuis = {
            name: pd.factorize(df[col].fillna("NA").astype(str))[0]
            for name, col in (("source", "Metadata_Source"), ("batch", "Metadata_Batch"), ("well", "Metadata_Well"))
        }
        for depth, width in member_archs:
            name = f"resmlp_d{depth}_w{width}"
            for supervision, weight in variants:
                t0 = time.time()
                m = train_encoder(
                    X[ibp_tr],
                    y_tr,
                    X[keep_va],
                    y_va,
                    width=width,
                    depth=depth,
                    config=_fit_config(cfg),
                    n_classes=len(mols),
                    dropout=cfg.dropout,
                    nuisances={k: v[ibp_tr] for k, v in nuis.items()} if weight > 0 else None,
                    invariance_weight=weight,
                    sampled_classes=cfg.ibp_sampled_classes if weight == 0 else None,
                    val_limit=cfg.ibp_val_limit,
                )
                reps = embed(m, X)
                if (
                    split_name == "replicate"
                    and supervision == "ibp"
                    and (ibp_reps is None or m.encoder_param_count >= ibp_reps[0])
                ):
                    ibp_reps = (m.encoder_param_count, reps)
                models.append(
                    {
                        "split": split_name,
                        "model": name,
                        "supervision": supervision,
                        "best_epoch": m.best_epoch,
                        "val_accuracy": m.best_val_accuracy,
                        "params": m.encoder_param_count,
                        "seconds": round(time.time() - t0, 1),
                        "wells_per_second": round(m.wells_per_second, 1),
                    }
                )
                log(
                    f"{split_name} {supervision} {name}: IBP val accuracy {m.best_val_accuracy:.3f} (best epoch "
                    f"{m.best_epoch}, {m.wells_per_second:.0f} wells/s, {time.time() - t0:.0f} s)"
                )
                score_tasks(name, supervision, reps, m, m.encoder_param_count)
                if split_name == "replicate":  # molecule deconvolution: the IBP head on held-out replicates
                    te = test & np.array([c in mi for c in compounds])
                    if te.any():
                        pt, rank = m.true_class_scores(X[te], np.array([mi[c] for c in compounds[te]]))
                        mm = molecule_metrics_from_ranks(pt, rank, m.n_classes)
                        rows.extend(
                            _rows(
                                mm.assign(ci_low=np.nan, ci_high=np.nan),
                                model=name,
                                supervision=supervision,
                                probe="head",
                                task="molecule",
                                params=m.encoder_param_count,
                                **base,
                            )
                        )
            if not cfg.task_supervised:
                continue
            for task, (labels, classes, tr, va, te) in task_sets.items():
                if not te.any() or not va.any():
                    continue
                t0 = time.time()
                ci = {c: i for i, c in enumerate(classes)}
                m = train_encoder(
                    X[tr],
                    [ci[x] for x in labels[tr]],
                    X[va],
                    [ci[x] for x in labels[va]],
                    width=width,
                    depth=depth,
                    config=_fit_config(cfg),
                    n_classes=len(classes),
                    head_layers=3,
                    head_hidden=cfg.probe_hidden,
                    dropout=cfg.dropout,
                )
                rows.extend(
                    _deconvolution(
                        m.predict_proba(X[te]),
                        classes,
                        labels[te],
                        labels[tr],
                        cfg,
                        model=name,
                        supervision="task",
                        probe="head",
                        task=task,
                        params=m.encoder_param_count,
                        **base,
                    )
                )
                if task == "moa":
                    rows.extend(
                        _discovery(
                            embed(m, X),
                            df,
                            crispr,
                            evaluated,
                            cfg,
                            model=name,
                            supervision="task",
                            probe="cosine",
                            task="discovery",
                            params=m.encoder_param_count,
                            **base,
                        )
                    )
                models.append(
                    {
                        "split": split_name,
                        "model": name,
                        "supervision": f"task ({task})",
                        "best_epoch": m.best_epoch,
                        "val_accuracy": m.best_val_accuracy,
                        "params": m.encoder_param_count,
                        "seconds": round(time.time() - t0, 1),
                        "wells_per_second": round(m.wells_per_second, 1),
                    }
                )
    table = pd.DataFrame(rows)
    for c in RESULT_COLUMNS:
        if c not in table.columns:
            table[c] = np.nan
    table = table[RESULT_COLUMNS]
    summary = {"seconds_total": round(time.time() - t_all, 1), "models_trained": len(models), **pca_info}
    emb = None
    if ibp_reps is not None:
        meta = df[[c for c in df.columns if c.startswith("Metadata_")]].reset_index(drop=True)
        vals = np.asarray(ibp_reps[1], dtype=np.float32)
        emb = pd.concat([meta, pd.DataFrame(vals, columns=[f"IBP_{i:04d}" for i in range(vals.shape[1])])], axis=1)
    summary["ibp_embedding_params"] = None if ibp_reps is None else int(ibp_reps[0])
    return StudyResult(table, summary, models, emb)


def zoo_members(config: StudyConfig, group_size: int = 1) -> list[list[tuple[int, int]]]:
    """The zoo's ``(depth, width)`` pairs in groups of ``group_size``: one :func:`run_study` member each."""
    if group_size < 1:
        raise SchemaError(f"group_size must be at least 1, got {group_size}")
    archs = Zoo.of(config).archs
    return [archs[i : i + group_size] for i in range(0, len(archs), group_size)]


def merge_study_results(parts: Sequence[StudyResult]) -> StudyResult:
    """The whole study from its members (:func:`run_study` with ``archs``, exactly one with ``baselines``):
    tables and model lists concatenated in zoo order, the IBP embeddings of the largest IBP encoder of any
    member (ties: the later member, as :func:`run_study` keeps the later of equal sizes), summaries merged
    (``seconds_total`` summed: the members' compute, not their wall time)."""
    if not parts:
        raise SchemaError("no study member to merge")
    table = pd.concat([p.table for p in parts], ignore_index=True)
    order = {"none": 0}
    key = table["supervision"].map(lambda s: order.get(s, 1))
    # the whole study writes, per split, the baselines first and then the zoo: keep that order
    split_rank = table["split"].map({s: i for i, s in enumerate(dict.fromkeys(table["split"]))})
    table = table.assign(_s=split_rank, _k=key).sort_values(["_s", "_k"], kind="stable").drop(columns=["_s", "_k"])
    emb, best = None, -1
    for p in parts:
        n = p.summary.get("ibp_embedding_params")
        if p.embeddings is not None and n is not None and n >= best:
            emb, best = p.embeddings, n
    summary = {}
    for p in parts:
        summary.update(p.summary)
    summary["seconds_total"] = round(sum(float(p.summary.get("seconds_total", 0)) for p in parts), 1)
    summary["models_trained"] = sum(len(p.models) for p in parts)
    summary["members"] = len(parts)
    summary["ibp_embedding_params"] = None if best < 0 else int(best)
    models = [m for p in parts for m in p.models]
    split_order = {sp: i for i, sp in enumerate(dict.fromkeys(m["split"] for m in models))}
    models = sorted(models, key=lambda m: split_order[m["split"]])  # stable: zoo order within a split
    return StudyResult(table.reset_index(drop=True), summary, models, emb)
