"""The demo's results as data, and the documentation's results page rendered from them.

    uv run python -m orchestration.report RUN.json [RUN2.json ...] [--out docs/results.md] [--readme README.md]

:func:`collect` reads the published snapshot after a demo run (headline metrics with their 95 %
intervals, the replicate-fraction study, checkpoints, the compound holdout, Pheno-CA, scaling laws,
retrieval indexes); :func:`run_facts` records the commit and the machine. The demo writes both, with
each job's and asset's seconds, to ``<data dir>/results/demo_results.json``. The command renders
``docs/results.md`` from one or more such files (several runs: each time as its range over the runs)
and, with ``--readme``, the block between ``<!-- demo-results:start -->`` and
``<!-- demo-results:end -->`` of the README, so no figure of the docs is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

#: The headline rows of ``evaluation_results``: (analysis, metric, parameter or None, label).
HEADLINE = [
    ("knn", "best_f1", None, "k-NN best weighted F1"),
    ("latent", "f1", None, "class latent assignment F1"),
    ("logistic", "f1", None, "logistic regression F1"),
    ("intra_inter", "delta", None, "intra − inter MOA PCC"),
    ("enrichment", "odds_ratio", 99.0, "enrichment odds ratio @ 99th pct"),
    ("map_consistency", "mean_map", None, "MOA-consistency mAP"),
]
README_START, README_END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"


# ---- collecting ---------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def run_facts() -> dict:
    """The commit (package version + git commit, ``.dirty`` when uncommitted) and the machine of this run."""
    from moa_core.provenance import code_version

    facts = {
        "code_version": code_version(),
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    try:
        import torch

        facts["machine"]["torch"] = torch.__version__
        facts["machine"]["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return facts


def bench_facts() -> dict:
    """The flat facts a bench page starts with: code version, finish time, CPU, cores, torch, GPU."""
    rf = run_facts()
    m = rf["machine"]
    return {
        "code_version": rf["code_version"],
        "finished_at": rf["finished_at"],
        "cpu": m["cpu"],
        "cores": m["cores"],
        "torch": m.get("torch"),
        "gpu": m.get("cuda"),
    }


def _records(df) -> list[dict]:
    """JSON-safe records (NaN -> None)."""
    out = []
    for r in df.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()})
    return out


def collect(wh, dataset: str, fractions: Sequence[str], profiles: str = "") -> dict:
    """The demo's results from the published warehouse ``wh`` (a read-only :class:`~moa_core.storage.Warehouse`)."""
    out: dict = {}
    ev = wh.read(
        "SELECT fraction, method, analysis, metric, parameter, value, ci_low, ci_high, n FROM evaluation_results "
        "WHERE dataset = ?",
        [dataset],
    )
    keep = []
    for analysis, metric, param, label in HEADLINE:
        sel = ev[(ev["analysis"] == analysis) & (ev["metric"] == metric)]
        if param is not None:
            sel = sel[sel["parameter"] == param]
        keep.append(sel.assign(label=label))
    import pandas as pd

    head = pd.concat(keep, ignore_index=True) if keep else ev.head(0)
    best = ev[(ev["analysis"] == "knn") & (ev["metric"] == "best_f1")]
    best_k = best[["fraction", "method"]].assign(value=best["parameter"])  # the k of the best F1
    out["headline"] = _records(head.sort_values(["fraction", "label", "method"]))
    out["best_k"] = _records(best_k)
    out["headline_fraction"] = fractions[0] if fractions else None
    out["checkpoints"] = _records(
        wh.read(
            "SELECT model, fraction, best_epoch, best_val_score, warnings, train_fields, val_fields, classes, seconds "
            "FROM checkpoints WHERE dataset = ? ORDER BY model, fraction",
            [dataset],
        )
    )
    if wh.has_table("training_history"):
        out["epochs"] = _records(
            wh.read(
                "SELECT model, fraction, count(*) AS epochs, max(seconds) AS seconds FROM training_history "
                "WHERE dataset = ? GROUP BY model, fraction ORDER BY model, fraction",
                [dataset],
            )
        )
    if wh.has_table("holdout_results"):
        out["holdout"] = _records(
            wh.read(
                "SELECT method, analysis, parameter AS k, value FROM holdout_results WHERE dataset = ? AND "
                "metric = 'top_k_accuracy' AND parameter IN (1, 5) ORDER BY method, analysis, parameter",
                [dataset],
            )
        )
    if wh.has_table(f"splits__{dataset}"):
        out["dataset_facts"] = _records(
            wh.read(
                f"SELECT count(*) AS wells, count(DISTINCT Metadata_Plate) AS plates, "  # noqa: S608 (validated name)
                f"count(DISTINCT Metadata_broad_sample) AS compounds FROM {wh_ident(f'splits__{dataset}')}"
            )
        )
    if profiles and wh.has_table("phenoca_results"):
        out["phenoca"] = _records(
            wh.read(
                "SELECT fraction, model, supervision, probe, task, split, metric, value, ci_low, ci_high, "
                "n_train_wells, n_train_compounds, n_ood_compounds FROM phenoca_results WHERE dataset = ? AND "
                "metric IN ('top10', 'auc', 'cross_entropy') AND probe != 'knn' ORDER BY fraction, split, task, model",
                [profiles],
            )
        )
    if wh.has_table("scaling_laws"):
        out["scaling_laws"] = _records(
            wh.read(
                "SELECT dataset, study, task, family, form, rank, n_needed, n_needed_low, n_needed_high, target, "
                "p_reachable, backtest_error, extrapolation_factor, reliable, reason FROM scaling_laws "
                "WHERE dataset IN (?, ?) AND (rank = 1 OR (rank IS NULL AND form = 'power_floor' AND "
                "study = 'mp_fractions')) ORDER BY dataset, study, task, family",
                [dataset, profiles or dataset],
            )
        )
    if wh.has_table("scaling_ledger"):  # forecasts of earlier fits scored against the scales materialized since
        out["forecast_ledger"] = _records(
            wh.read(
                "SELECT dataset, study, task, family, form, fit_id, reliable, n_max_observed, n, decades, predicted, "
                "low, high, observed, error, abs_error, inside FROM scaling_ledger WHERE dataset IN (?, ?) "
                "ORDER BY dataset, study, task, family, form, n",
                [dataset, profiles or dataset],
            )
        )
    if wh.has_table("retrieval_indexes"):
        out["retrieval"] = _records(
            wh.read(
                "SELECT dataset, fraction, method, n_wells, n_compounds, dim, knn_loco_precision, "
                "latent_loco_precision, n_calibration FROM retrieval_indexes ORDER BY dataset, fraction DESC, method"
            )
        )
    return out


def wh_ident(name: str) -> str:
    from moa_core.storage import quoted_identifier

    return quoted_identifier(name)


# ---- formatting ---------------------------------------------------------------------------------------
def fmt(x, digits: int = 3) -> str:
    """3 significant figures (thousands separated), an en dash for a missing value."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) >= 1000):
        return f"{int(x):,}"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    dec = max(0, digits - 1 - mag)
    s = f"{x:,.{dec}f}"
    return s


def _ci(v, lo, hi) -> str:
    if lo is None or hi is None:
        return fmt(v)
    return f"{fmt(v)} [{fmt(lo, 2)}, {fmt(hi, 2)}]"


def _span(values: Iterable[float | None], digits: int = 0) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    lo, hi = min(vals), max(vals)
    f = (lambda v: f"{v:,.{digits}f}") if digits or max(vals) >= 10 else (lambda v: f"{v:.1f}")
    return f(lo) if f(lo) == f(hi) else f"{f(lo)}–{f(hi)}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _job_key(j: dict) -> str:
    part = j["fraction"] if j["job"] in ("train_eval_job", "phenoca_job", "retrieval_job") else ""
    ds = j["dataset"] if j["job"] in ("scaling_job", "phenoca_inputs_job", "retrieval_job") else ""
    extra = ", ".join(x for x in (ds, part) if x)
    job = f"{j['job']} [{j['label']}]" if j.get("label") else j["job"]
    return f"{job} ({extra})" if extra else job


def _seconds_by_key(runs: Sequence[dict], field: str, key) -> tuple[list[str], dict[str, list[float]]]:
    """Every run's ``field`` rows grouped by ``key(row)``, in first-seen order, with their seconds."""
    keys: list[str] = []
    secs: dict[str, list[float]] = {}
    for r in runs:
        for row in r.get(field, []):
            k = key(row)
            if k not in secs:
                keys.append(k)
                secs[k] = []
            if row.get("seconds") is not None:
                secs[k].append(row["seconds"])
    return keys, secs


def jobs_table(runs: Sequence[dict]) -> str:
    """Seconds per job (range over the runs), start-up and the total."""
    keys, secs = _seconds_by_key(runs, "jobs", _job_key)
    rows = [("start-up (imports, instance, catalogue)", _span(r["seconds"]["startup"] for r in runs))]
    rows += [(f"`{k}`", _span(secs[k])) for k in keys]
    rows.append(
        (
            "**whole demo (from its start-up; `uv sync` excluded)**",
            "**" + _span(r["seconds"]["total"] for r in runs) + "**",
        )
    )
    return _table(["step", f"wall time (s), {len(runs)} run(s)"], rows)


def assets_table(runs: Sequence[dict]) -> str:
    """Seconds per asset and partition (range over the runs)."""
    keys, secs = _seconds_by_key(
        runs, "assets", lambda a: f"{a['asset']} [{a['partition']}]" if a.get("partition") else a["asset"]
    )
    return _table(["asset", "seconds"], [(f"`{k}`", _span(secs[k])) for k in keys])


def headline_table(res: dict, fraction: str | None = None) -> str:
    fraction = fraction or res.get("headline_fraction")
    rows = [h for h in res.get("headline", []) if h["fraction"] == fraction]
    methods = sorted({h["method"] for h in rows}, key=lambda m: (m != "CP", m != "MP", m))
    best_k = {(b["fraction"], b["method"]): b["value"] for b in res.get("best_k", [])}
    labels = [label for _, _, _, label in HEADLINE]
    out = []
    for label in labels:
        cells = []
        for m in methods:
            hit = [h for h in rows if h["label"] == label and h["method"] == m]
            if not hit:
                cells.append("–")
                continue
            h = hit[0]
            cell = _ci(h["value"], h["ci_low"], h["ci_high"])
            if h["analysis"] == "knn" and best_k.get((fraction, m)) is not None:
                cell += f" (k = {int(best_k[(fraction, m)])})"
            cells.append(cell)
        out.append((label, *cells))
    return _table(["metric (test wells, 95 % CI)", *methods], out)


def fraction_table(res: dict) -> str:
    rows = [h for h in res.get("headline", []) if h["analysis"] in ("knn", "latent")]
    fracs = sorted({h["fraction"] for h in rows}, key=lambda f: float(f) if f.replace(".", "").isdigit() else 0)
    keys = sorted({(h["label"], h["method"]) for h in rows})
    out = []
    for label, m in keys:
        cells = []
        for f in fracs:
            hit = [h for h in rows if h["label"] == label and h["method"] == m and h["fraction"] == f]
            cells.append(_ci(hit[0]["value"], hit[0]["ci_low"], hit[0]["ci_high"]) if hit else "–")
        out.append((f"{m}: {label}", *cells))
    return _table(["test-well F1 by training-replicate fraction", *[f"{f} %" for f in fracs]], out)


def checkpoints_table(res: dict) -> str:
    epochs = {(e["model"], e["fraction"]): e["epochs"] for e in res.get("epochs", [])}
    rows = [
        (
            c["model"],
            c["fraction"],
            epochs.get((c["model"], c["fraction"]), "–"),
            c["best_epoch"],
            fmt(c["best_val_score"]),
            c["classes"],
            fmt(c["seconds"]),
            c["warnings"],
        )
        for c in res.get("checkpoints", [])
    ]
    return _table(
        ["model", "fraction", "epochs", "best epoch", "best validation score", "classes", "seconds", "warnings"], rows
    )


def phenoca_table(res: dict, fraction: str = "100") -> str:
    rows = [p for p in res.get("phenoca", []) if p["fraction"] == fraction]
    fams = sorted({f"{p['supervision']}/{p['model']}" for p in rows})
    keys = sorted({(p["split"], p["task"], p["metric"]) for p in rows})
    out = []
    for split, task, metric in keys:
        cells = []
        for fam in fams:
            hit = [
                p
                for p in rows
                if (p["split"], p["task"], p["metric"]) == (split, task, metric)
                and f"{p['supervision']}/{p['model']}" == fam
            ]
            cells.append(fmt(hit[0]["value"]) if hit else "–")
        out.append((split, task, metric, *cells))
    return _table(["split", "task", "metric", *fams], out)


def ledger_record_table(res: dict) -> str:
    """Per law form: forecasts scored, mean absolute error, the share inside the interval, distance."""
    import pandas as pd

    from moa_core.scaling.ledger import ledger_record

    led = pd.DataFrame(res.get("forecast_ledger", []))
    if led.empty:
        return ""
    led["inside"] = led["inside"].astype("boolean")
    rows = []
    for r in ledger_record(led).itertuples():
        rows.append(
            (
                r.form,
                str(r.fits),
                str(r.scored),
                fmt(r.mae),
                f"{r.coverage:.0%} of {r.with_interval}" if r.with_interval else "no interval",
                f"{fmt(r.median_decades)} / {fmt(r.max_decades)}",
            )
        )
    return _table(
        ["law", "curves", "forecasts scored", "mean abs. error", "inside the 95 % interval", "decades (median / max)"],
        rows,
    )


def laws_table(res: dict) -> str:
    rows = []
    for r in res.get("scaling_laws", []):
        n = (
            f"{fmt(r['n_needed'])} [{fmt(r['n_needed_low'])}, {fmt(r['n_needed_high'])}]"
            if r.get("n_needed") is not None
            else "–"
        )
        rows.append(
            (
                r["dataset"],
                r["study"],
                r["task"],
                r["family"],
                r["form"],
                fmt(r["target"]),
                n,
                fmt(r["backtest_error"]),
                "yes" if r["reliable"] else "no",
                (r.get("reason") or "")[:160],
            )
        )
    return _table(
        [
            "dataset",
            "study",
            "task",
            "family",
            "form",
            "target",
            "N needed [95 % CI]",
            "back-test error",
            "reliable",
            "reason",
        ],
        rows,
    )


def retrieval_table(res: dict) -> str:
    rows = [
        (
            r["dataset"],
            r["fraction"],
            r["method"],
            fmt(r["n_wells"]),
            fmt(r["n_compounds"]),
            r["dim"],
            fmt(r["knn_loco_precision"]),
            fmt(r["latent_loco_precision"]),
        )
        for r in res.get("retrieval", [])
    ]
    return _table(
        [
            "dataset",
            "fraction",
            "method",
            "wells",
            "compounds",
            "dims",
            "k-NN precision (LOCO)",
            "latent precision (LOCO)",
        ],
        rows,
    )


def holdout_table(res: dict) -> str:
    rows = {}
    for h in res.get("holdout", []):
        rows.setdefault((h["method"], h["analysis"]), {})[int(h["k"])] = h["value"]
    return _table(
        ["method", "vote", "top-1", "top-5"],
        [(m, a.replace("holdout_", ""), fmt(v.get(1)), fmt(v.get(5))) for (m, a), v in sorted(rows.items())],
    )


#: A run whose machine gave more than this share of its CPU to other processes or guests was not timed alone.
SHARED_MACHINE = 0.05


def machine_share_text(res: dict) -> str:
    """What the run's :class:`moa_core.provenance.MachineShare` says, in words ("" when not recorded)."""
    ms = res.get("machine_share") or {}
    other, steal = ms.get("other_share"), ms.get("steal_share")
    if other is None and steal is None:
        return ""
    parts = []
    if other is not None:
        parts.append(f"other processes used {100 * other:.1f} % of the machine's CPU ({ms.get('other_cpu_s')} core-s)")
    if steal is not None:
        parts.append(f"steal {100 * steal:.1f} %")
    alone = max(v for v in (other, steal) if v is not None) <= SHARED_MACHINE
    return ", ".join(parts) + ("" if alone else " - not timed alone: its times are an upper bound")


def shared_runs(runs: Sequence[dict]) -> list[int]:
    """The 1-based numbers of the runs that did not have the machine to themselves."""
    out = []
    for i, r in enumerate(runs, 1):
        ms = r.get("machine_share") or {}
        if any(v is not None and v > SHARED_MACHINE for v in (ms.get("other_share"), ms.get("steal_share"))):
            out.append(i)
    return out


def _rounded(value) -> str:
    """A metric as compared between runs: 6 decimals; a missing or NaN value as itself."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return str(value)
    return f"{float(value):.6f}"


def differing_runs(runs: Sequence[dict]) -> list[int]:
    """The 1-based numbers of the runs whose headline metrics differ from run 1's (another machine's floating
    point gives the trained models other trajectories; one machine replays a seeded run exactly)."""

    def key(res: dict) -> list:
        return sorted(
            (h["fraction"], h["method"], h["label"], _rounded(h.get("value"))) for h in res.get("headline", [])
        )

    ref = key(runs[0]) if runs else []
    return [i for i, r in enumerate(runs, 1) if i > 1 and key(r) != ref]


def _provenance(runs: Sequence[dict]) -> str:
    lines = []
    for i, r in enumerate(runs, 1):
        run, m = r.get("run", {}), r.get("run", {}).get("machine", {})
        share = machine_share_text(r)
        lines.append(
            f"- run {i}: code `{run.get('code_version', '?')}`, finished {run.get('finished_at', '?')}, "
            f"{m.get('cores', '?')} × {m.get('cpu', '?')}, {m.get('memory_gib', '?')} GiB, "
            f"Python {m.get('python', '?')}, torch {m.get('torch', '?')}"
            + (f", {m['cuda']}" if m.get("cuda") else ", no GPU")
            + (f"; {share}" if share else "; machine share not recorded")
        )
    return "\n".join(lines)


def render_markdown(runs: Sequence[dict]) -> str:
    """The documentation's results page from one or more demo results files (the first gives the metrics)."""
    if not runs:
        raise ValueError("no results to render")
    first = runs[0]
    plan = first.get("plan", {})
    parts = [
        "# Demo results",
        "",
        "<!-- Generated by `python -m orchestration.report` from the demo's results files; do not edit by hand. -->",
        "",
        f"What `uv run python -m orchestration.demo` printed and wrote to `demo_results.json`: dataset "
        f"`{plan.get('dataset')}` at fractions {', '.join(plan.get('fractions', []))}, Pheno-CA on "
        f"`{plan.get('profiles') or '–'}` at scales {', '.join(plan.get('scales', []))}. Times are ranges over "
        f"{len(runs)} run(s) of the README's first command on a fresh clone with a warm package cache; the "
        f"metrics are those of run 1 (the runs are seeded and replay exactly on one machine; a CPU with other "
        f"floating-point kernels trains other models from the same seed).",
        "",
        _provenance(runs),
        "",
        *_caveats(runs),
        "## Wall time",
        "",
        jobs_table(runs),
        "",
        "<details><summary>Per asset</summary>",
        "",
        assets_table(runs),
        "",
        "</details>",
        "",
        f"## MOAProfiler vs CellProfiler (fraction {first.get('headline_fraction')})",
        "",
        headline_table(first),
        "",
        "## Replicate-fraction study",
        "",
        fraction_table(first),
        "",
        "## Checkpoints",
        "",
        "Best validation score: well-level balanced accuracy with DMSO excluded (chance 1/classes).",
        "",
        checkpoints_table(first),
        "",
        "## Compound holdout",
        "",
        holdout_table(first),
        "",
    ]
    if first.get("phenoca"):
        parts += [
            f"## Pheno-CA on `{plan.get('profiles')}` (data scale 100)",
            "",
            "Top-10 accuracy, discovery AUC and molecule cross-entropy on test wells.",
            "",
            phenoca_table(first),
            "",
        ]
    if first.get("scaling_laws"):
        parts += [
            "## Scaling laws",
            "",
            "The best form of every curve by back-test error (or the power law with a "
            "floor where too few sizes allow a back-test).",
            "",
            laws_table(first),
            "",
        ]
    if first.get("forecast_ledger"):
        parts += [
            "## Forecast ledger",
            "",
            "The laws fitted before the largest scale was materialized, scored against the point it then measured "
            "(every curve of the OOD study; 95 % predictive intervals of the next measured point).",
            "",
            ledger_record_table(first),
            "",
        ]
    if first.get("retrieval"):
        parts += [
            "## Retrieval indexes",
            "",
            "Leave-one-compound-out precision of the predicted MOA (k-NN vote at k = 5 and class latent assignment).",
            "",
            retrieval_table(first),
            "",
        ]
    return "\n".join(parts).rstrip() + "\n"


def _caveats(runs: Sequence[dict]) -> list[str]:
    out = []
    shared, differ = shared_runs(runs), differing_runs(runs)
    if shared:
        out += [
            f"Run(s) {', '.join(map(str, shared))} shared the machine with other work (above): their wall times "
            f"overstate the demo's own.",
            "",
        ]
    if differ:
        out += [f"Run(s) {', '.join(map(str, differ))} measured other metrics than run 1.", ""]
    return out


def render_readme_block(runs: Sequence[dict]) -> str:
    """The README's short summary: the total time and the headline table of run 1."""
    first = runs[0]
    m = first.get("run", {}).get("machine", {})
    return "\n".join(
        [
            README_START,
            f"On {m.get('cores', '?')} cores ({m.get('cpu', '?')}), the demo (from its start, `uv sync` excluded) took "
            f"**{_span(r['seconds']['total'] for r in runs)} s** over {len(runs)} run(s) "
            f"(code `{first.get('run', {}).get('code_version', '?')}`{_alone_text(runs)}). "
            f"Test-well metrics at fraction "
            f"{first.get('headline_fraction')}:",
            "",
            headline_table(first),
            README_END,
        ]
    )


def _alone_text(runs: Sequence[dict]) -> str:
    worst = [
        max(v for v in (ms.get("other_share"), ms.get("steal_share")) if v is not None)
        for ms in (r.get("machine_share") or {} for r in runs)
        if ms.get("other_share") is not None or ms.get("steal_share") is not None
    ]
    if len(worst) < len(runs):
        return "; machine share not recorded for every run"
    if shared_runs(runs):
        return f"; run(s) {', '.join(map(str, shared_runs(runs)))} shared the machine"
    return f"; each alone on the machine: other processes and steal at most {100 * max(worst):.1f} % of its CPU"


def render_console(res: dict) -> str:
    """What the demo prints at its end."""
    share = machine_share_text(res)
    lines = [
        "",
        *([f"Machine: {share}.", ""] if share else []),
        "Wall time (s):",
        jobs_table([res]),
        "",
        "Per asset (s):",
        assets_table([res]),
        "",
        f"Headline numbers (test wells, fraction {res.get('headline_fraction')}):",
        headline_table(res),
        "",
        "Replicate-fraction study:",
        fraction_table(res),
        "",
        "Checkpoints:",
        checkpoints_table(res),
        "",
        "Compound holdout:",
        holdout_table(res),
        "",
    ]
    if res.get("phenoca"):
        lines += ["Pheno-CA (data scale 100):", phenoca_table(res), ""]
    if res.get("scaling_laws"):
        lines += ["Scaling laws:", laws_table(res), ""]
    if res.get("forecast_ledger"):
        lines += ["Forecast ledger (earlier fits scored against later scales):", ledger_record_table(res), ""]
    if res.get("retrieval"):
        lines += ["Retrieval indexes:", retrieval_table(res), ""]
    return "\n".join(lines)


def update_readme(readme: Path, block: str) -> bool:
    """Replace the README's generated block (between the markers); False when it has none."""
    from moa_core.atomic import write_text_atomic

    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    write_text_atomic(head + block + tail, readme)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="demo_results.json files (one per run)")
    ap.add_argument("--out", default="docs/results.md", help="the page to write (default docs/results.md)")
    ap.add_argument("--readme", default=None, help="also update this README's generated block")
    args = ap.parse_args(argv)
    from moa_core.atomic import write_text_atomic

    runs = []
    for p in args.results:
        try:
            runs.append(json.loads(Path(p).read_text()))
        except FileNotFoundError:
            ap.error(f"results file not found: {p} (run the demo first: uv run python -m orchestration.demo)")
        except json.JSONDecodeError as exc:
            ap.error(f"{p} is not a demo results file: {exc}")
        if "jobs" not in runs[-1] or "seconds" not in runs[-1]:
            ap.error(f"{p} is not a demo results file (no 'jobs' or 'seconds')")
    write_text_atomic(render_markdown(runs), args.out)
    print(f"wrote {args.out}")
    if args.readme:
        if update_readme(Path(args.readme), render_readme_block(runs)):
            print(f"updated the generated block of {args.readme}")
        else:
            print(f"{args.readme} has no {README_START} ... {README_END} block", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
