"""Materialize every asset of the pipeline on the embedded data, print what it found, write it down.

    uv run python -m orchestration.demo [--dataset synthetic_cpjump1] [--fractions 100,50,25]

Runs the jobs (ingest + image store -> DP recipe -> train/eval at every ``--fractions`` (the
replicate-fraction study) -> compound holdout -> the Pheno-CA zoo of ``--profiles`` at every
``--scales`` -> scaling laws -> publish) against a persistent Dagster instance under
``$DAGSTER_HOME`` (default ``<data dir>/dagster_home``), so the runs, materializations and their
metadata show up in the Dagster UI afterwards. Prints each job's wall time, the total and the
results, and writes them (with the commit and the machine) to
``<data dir>/results/demo_results.json``, from which ``python -m orchestration.report`` renders the
documentation's results page.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from moa_core.datasets import DEFAULT_DATASET, DEFAULT_FRACTION, FRACTIONS, data_scale, image_fraction_keys

DEMO_FRACTIONS = "100,50,25"
DEMO_PROFILES = "synthetic_jump_profiles_small"
DEMO_SCALES = "ood0,ood10,ood25,100"
#: Jobs whose assets are partitioned by fraction (or, for scaling_job, run once per dataset): the printed
#: asset names carry the partition, as the same asset runs several times.
_PER_PARTITION = {
    "train_eval_job": "fraction",
    "phenoca_job": "fraction",
    "retrieval_job": "fraction",
    "scaling_job": "dataset",
}
#: The op of each job that takes a training or study config (its torch threads are set per run); a path
#: for an op inside a graph-backed asset (the zoo's fan-out op, whose config every member gets).
_THREADED_OPS = {
    "train_eval_job": ("mp_checkpoint",),
    "holdout_job": ("mp_holdout_checkpoint",),
    "dp_recipe_job": ("dp_checkpoint",),
    "phenoca_job": ("phenoca_results", "phenoca_zoo"),
}


def op_config(path: tuple[str, ...], config: dict) -> dict:
    """Run config giving ``config`` to the op at ``path`` (asset, then ops of a graph-backed asset)."""
    node: dict = {"config": config}
    for name in reversed(path[1:]):
        node = {"ops": {name: node}}
    return {"ops": {path[0]: node}}


@dataclass(frozen=True)
class Run:
    """One Dagster run of the demo: a job for one partition, after the runs it needs."""

    job: str
    dataset: str
    fraction: str
    after: tuple[str, ...] = ()
    #: Uses every core itself (its plates run ``store.n_workers`` processes): runs alone.
    exclusive: bool = False
    #: How the results name this run where its job and partition do not tell it apart.
    label: str = ""

    @property
    def name(self) -> str:
        return f"{self.job}:{self.dataset}:{self.fraction}"


def demo_plan(dataset: str, fractions: list[str], profiles: str, scales: list[str]) -> list[Run]:
    """The demo's runs with their dependencies, in the order a free worker takes them (longest first).

    Ingest (rendering, CellProfiler features per plate, the image store) uses every core and runs
    alone. Then the runs that need it share the workers: the DP recipe -> train/eval at 100 (which
    scores the DP recipe too), train/eval at the other fractions, the compound holdout, and the
    Pheno-CA zoo (which needs no image asset) at every scale; the scaling laws after their curves,
    the profile dataset's retrieval indexes after its IBP embeddings, the snapshot last.
    """
    f0 = DEFAULT_FRACTION
    ingest = Run("ingest_job", dataset, f0, exclusive=True)
    dp = Run("dp_recipe_job", dataset, f0, (ingest.name,))
    train = {
        f: Run("train_eval_job", dataset, f, (ingest.name, dp.name) if f == f0 else (ingest.name,)) for f in fractions
    }
    holdout = Run("holdout_job", dataset, f0, (ingest.name,))
    others = [train[f] for f in fractions if f != f0]
    runs = [ingest, dp, *([train[f0]] if f0 in train else []), *others[:1], holdout, *others[1:]]
    runs.append(Run("scaling_job", dataset, f0, tuple(r.name for r in train.values())))
    if profiles:
        inputs = Run("phenoca_inputs_job", profiles, f0, (ingest.name,))
        zoo = [Run("phenoca_job", profiles, s, (inputs.name,)) for s in scales]
        early = []
        if len(scales) >= 4:  # the laws of every scale but the largest first: the ledger then scores their forecasts
            largest = max(scales, key=data_scale)
            smaller = [r for r in zoo if r.fraction != largest]
            early = [
                Run(
                    "scaling_job",
                    profiles,
                    f"before-{largest}",
                    tuple(r.name for r in smaller),
                    label=f"before scale {largest}",
                )
            ]
            last = [dataclasses.replace(r, after=(*r.after, early[0].name)) for r in zoo if r.fraction == largest]
            zoo = [*smaller, *early, *last]
        runs += [inputs, *zoo, Run("scaling_job", profiles, f0, tuple(r.name for r in zoo))]
        if f0 in scales:  # the explorer's indexes of the profile dataset (its profiles and IBP)
            runs.append(Run("retrieval_job", profiles, f0, (f"phenoca_job:{profiles}:{f0}",)))
    runs.append(Run("publish_job", dataset, f0, tuple(r.name for r in runs)))
    return runs


def _asset_seconds(result) -> list[tuple[str, float | None]]:
    rows = []
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        sec = mat.metadata.get("seconds")
        rows.append((mat.asset_key.to_user_string(), getattr(sec, "value", None)))
    return rows


_WORKER: dict = {}


def _init_worker(threads: int) -> None:
    """A demo worker process: the definitions and the instance, once per process."""
    import dagster as dg

    from orchestration.definitions import defs

    _WORKER.update(defs=defs, instance=dg.DagsterInstance.get(), threads=threads, cores=os.cpu_count() or 1)


def _prepare(data_dir: str) -> None:
    """(In a worker) the persistent instance with every catalogue dataset as a partition."""
    from orchestration.materialize import prepare_instance

    prepare_instance(Path(data_dir))


def _collect(data_dir: str, dataset: str, fractions: list[str], profiles: str) -> dict:
    """(In a worker) the results from the published snapshot, with the commit and the machine."""
    from moa_core.storage import Warehouse
    from orchestration import report

    wh = Warehouse(Path(data_dir) / "snapshot" / "warehouse.duckdb", read_only=True)
    return {**report.collect(wh, dataset, fractions, profiles), "run": report.run_facts()}


def _execute(run: Run) -> dict:
    """Run ``run`` in this worker; its seconds, its assets' seconds, and the failure messages if it failed."""
    from threadpoolctl import threadpool_limits

    from orchestration.materialize import run_job

    op = _THREADED_OPS.get(run.job)
    threads = _WORKER["cores"] if run.exclusive else _WORKER["threads"]
    threadpool_limits(threads)
    cfg = op_config(op, {"num_threads": threads}) if op else None
    t0 = time.time()
    result = run_job(_WORKER["defs"], _WORKER["instance"], run.job, run.dataset, run.fraction, run_config=cfg)
    errors = [
        f"{ev.step_key} failed: {ev.event_specific_data.error.message.strip()}"
        for ev in result.all_events
        if ev.is_step_failure
    ]
    return {
        "success": bool(result.success),
        "errors": errors,
        "seconds": round(time.time() - t0, 1),
        "assets": _asset_seconds(result),
        "pid": os.getpid(),
    }


def next_ready(pending: list[Run], done: set[str], running: list[Run]) -> Run | None:
    """The first run of ``pending`` whose runs are ``done`` and that may start beside ``running``: nothing
    starts beside an exclusive run, and an exclusive run starts only when nothing runs."""
    if any(r.exclusive for r in running):
        return None
    return next((r for r in pending if set(r.after) <= done and not (r.exclusive and running)), None)


def worker_pool(parallel: int, threads: int):
    """``parallel`` spawned worker processes, each with the definitions loaded and ``threads`` threads per run."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        parallel, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(threads,)
    )


def run_plan(plan: list[Run], pool, parallel: int) -> tuple[list[dict], list[dict], list[str]]:
    """Execute ``plan`` on the ``parallel`` workers of ``pool``, every run as soon as the runs it needs are
    done; returns (jobs, assets, errors). After a failure no new run starts."""
    from concurrent.futures import FIRST_COMPLETED, wait

    done: set[str] = set()
    pending = list(plan)
    running: dict = {}
    jobs: list[dict] = []
    assets: list[dict] = []
    errors: list[str] = []
    t_plan = time.time()
    while pending or running:
        while not errors and len(running) < parallel:
            ready = next_ready(pending, done, [r for r, _ in running.values()])
            if ready is None:
                break
            pending.remove(ready)
            print(f"[demo] {ready.job} dataset={ready.dataset} fraction={ready.fraction} ...", flush=True)
            running[pool.submit(_execute, ready)] = (ready, time.time())
        if not running:
            break
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in finished:
            run, t0 = running.pop(fut)
            try:
                out = fut.result()
            except Exception as exc:  # a dead worker: the pool is broken, say so and stop
                errors.append(f"{run.name}: the worker process died ({type(exc).__name__}: {exc})")
                continue
            if not out["success"]:
                errors += [f"{run.name}: {e}" for e in out["errors"]] or [f"{run.name}: failed"]
                continue
            done.add(run.name)
            jobs.append(
                {
                    "job": run.job,
                    "dataset": run.dataset,
                    "fraction": run.fraction,
                    "seconds": out["seconds"],
                    "started_s": round(t0 - t_plan, 1),
                    "worker": out["pid"],
                }
                | ({"label": run.label} if run.label else {})
            )
            part = {"fraction": run.fraction, "dataset": run.dataset}.get(_PER_PARTITION.get(run.job, ""), "")
            part = f"{part}, {run.label}" if run.label else part
            assets += [
                {"asset": name, "partition": part, "job": run.job, "seconds": sec} for name, sec in out["assets"]
            ]
            print(
                f"[demo] {run.job} dataset={run.dataset} fraction={run.fraction} done in {out['seconds']:.0f} s",
                flush=True,
            )
    jobs.sort(key=lambda j: j["started_s"])
    return jobs, assets, errors


def main(argv: list[str] | None = None) -> int:
    from moa_core.provenance import MachineShare

    t_start = time.time()
    share = MachineShare.start()  # whether the run had the machine to itself (stopped once the workers exited)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=DEFAULT_DATASET, help="a synthetic or image dataset of the catalogue")
    ap.add_argument(
        "--fractions",
        default=DEMO_FRACTIONS,
        help=f"comma-separated training-replicate fractions to train and evaluate (of {list(FRACTIONS)}, or a "
        f"seed replicate of one: '50s1', '50s2'); "
        f"the first is the headline, the DP recipe trains at {DEFAULT_FRACTION}",
    )
    ap.add_argument("--profiles", default=DEMO_PROFILES, help="the profile dataset of the Pheno-CA part ('' skips it)")
    ap.add_argument(
        "--scales",
        default=DEMO_SCALES,
        help="comma-separated data scales of the Pheno-CA zoo (OOD shares ood0..ood50, replicate shares)",
    )
    ap.add_argument(
        "--data-dir", default=None, help="where files and the warehouse go (default: $MOA_DATA_DIR or .moa_data)"
    )
    ap.add_argument("--results", default=None, help="the results file (default: <data dir>/results/demo_results.json)")
    ap.add_argument(
        "--parallel",
        type=int,
        default=0,
        help="runs at a time, each in its own worker process (default: 2 on 2 or more cores)",
    )
    args = ap.parse_args(argv)
    fractions = [f.strip() for f in args.fractions.split(",") if f.strip()]
    bad = [f for f in fractions if f not in image_fraction_keys()]
    if bad or not fractions:
        ap.error(
            f"--fractions: unknown fraction(s) {bad}; use some of {list(FRACTIONS)} or their seed replicates "
            f"('100s1', '50s2', ...)"
        )

    if args.data_dir:
        os.environ["MOA_DATA_DIR"] = str(Path(args.data_dir).resolve())
    from moa_core.datasets import load_catalogue
    from orchestration.paths import dagster_home, default_data_dir  # after MOA_DATA_DIR is set

    data_dir = Path(default_data_dir()).resolve()
    catalogue = load_catalogue(data_dir)
    if args.dataset not in catalogue or not catalogue[args.dataset].has_images:
        ap.error(
            f"--dataset must be an image dataset of the catalogue: "
            f"{sorted(n for n, e in catalogue.items() if e.has_images)}"
        )
    home = dagster_home(data_dir)  # the workers inherit DAGSTER_HOME
    scales = [f.strip() for f in args.scales.split(",") if f.strip()]
    plan = demo_plan(args.dataset, fractions, args.profiles, scales)
    cores = os.cpu_count() or 1
    parallel = args.parallel or min(2, cores)
    threads = max(1, cores // parallel)
    with worker_pool(parallel, threads) as pool:
        pool.submit(_prepare, str(data_dir)).result()  # every catalogue dataset a partition, once
        t_all = time.time()
        startup = t_all - t_start
        print(
            f"[demo] start-up (imports, instance, catalogue) {startup:.1f} s; {len(plan)} runs on {parallel} "
            f"worker process(es) with {threads} thread(s) each",
            flush=True,
        )
        jobs, assets, errors = run_plan(plan, pool, parallel)
        if errors:
            for e in errors:
                print(f"[demo] {e}", file=sys.stderr)
            return 1
        pipeline = time.time() - t_all
        results = pool.submit(_collect, str(data_dir), args.dataset, fractions, args.profiles).result()
    share.stop()

    from moa_core.atomic import write_json_atomic
    from orchestration import report

    results.update(
        {
            "plan": {
                "dataset": args.dataset,
                "fractions": fractions,
                "profiles": args.profiles,
                "scales": scales,
                "parallel": parallel,
                "threads": threads,
            },
            "jobs": jobs,
            "assets": assets,
            "seconds": {
                "startup": round(startup, 1),
                "pipeline": round(pipeline, 1),
                "total": round(time.time() - t_start, 1),
            },
            "machine_share": share.as_dict(),
        }
    )
    out = Path(args.results) if args.results else data_dir / "results" / "demo_results.json"
    write_json_atomic(results, out)
    print(report.render_console(results))
    print(
        f"""Results file: {out}
  docs page:   uv run python -m orchestration.report {out}
Look at it:
  Dagster UI:  DAGSTER_HOME={home} uv run dagster dev -w workspace.yaml   # http://127.0.0.1:3000
  Dashboard:   MOA_DATA_DIR={data_dir} uv run python -m dashboard.serve   # http://localhost:8501
"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
