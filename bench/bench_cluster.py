"""A many-plate CP backfill on Celery workers vs Dagster's multiprocess executor, and what a step costs.

    uv run python bench/bench_cluster.py [--plates 8] [--empty-steps 40] [--data DIR]

One run, one machine, real servers (Redis, Postgres; ``bash .ci/services``) on loopback:

1. A synthetic CPJUMP1 dataset of ``--plates`` plates (the demo's settings, ``synthetic_cpjump1``, with
   more plates: 2 fields of 256 px per well) is rendered once (``raw_images``, in process, not timed).
2. ``cp_profiles`` (one step per plate, then the well medians) is materialized three times on the same
   Postgres instance: with the multiprocess executor (2 concurrent steps), with one Celery worker and
   with two (concurrency 1 each). Printed: wall time of each run, the ratios, and the busy time of the
   plate steps as the workers report it (sum of step durations).
3. Scheduling overhead: a job of ``--empty-steps`` independent no-op steps, through one Celery worker
   and through the in-process executor; the difference per step is what Celery + the per-step process
   (Dagster's step startup, the instance writes to Postgres, the broker round trip) costs.

Results go to ``bench/results/cluster.json``. On a 2-core machine, 2 workers compete with each other
and with the run's own process for 2 cores: the ratio measures the executor's overhead and fan-out,
not a cluster's speed-up, which needs more machines (or cores) than this one has.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASET = "bench_cluster_plates"


def _catalogue(data: Path, plates: int) -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data / "catalogue.toml").write_text(
        f"""[datasets.{DATASET}]
kind = "synthetic"
description = "bench_cluster: the demo's synthetic CPJUMP1 with {plates} plates"
synthetic = {{ n_plates = {plates}, fields_per_well = 2 }}
"""
    )


def _run(env: dict, *args: str, timeout: float = 3600) -> tuple[float, dict]:
    """One child run of this script (``--child ...``) with ``env``; its wall time and the JSON it prints."""
    t0 = time.time()
    res = subprocess.run(
        [sys.executable, __file__, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    sec = time.time() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return sec, json.loads(res.stdout.strip().splitlines()[-1])


def _child(kind: str, n_empty: int) -> dict:
    """In a fresh process (the env chooses the executor): materialize, return step timings from the events."""
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.materialize import prepare_instance, run_job, run_on_workers
    from orchestration.paths import default_data_dir

    instance = prepare_instance(Path(default_data_dir()))
    t0 = time.time()
    if kind == "prepare":
        res = run_job(defs, instance, "ingest_job", DATASET, asset_selection=[dg.AssetKey("raw_images")])
    elif kind == "cp_profiles":
        res = run_on_workers(defs, instance, "ingest_job", DATASET, asset_selection=[dg.AssetKey("cp_profiles")])
    elif kind in ("empty_celery", "empty_in_process"):
        from dagster._core.definitions.reconstruct import ReconstructableJob

        recon = ReconstructableJob.for_file(str(Path(__file__).with_name("_empty_steps.py")), f"{kind}_job")
        with dg.execute_job(recon, instance=instance, run_config={"ops": {}}, raise_on_error=False) as res:
            pass
    else:
        raise SystemExit(f"unknown child {kind}")
    wall = time.time() - t0
    if not res.success:
        errs = [e.event_specific_data.error.message for e in res.all_events if e.is_step_failure]
        raise SystemExit(f"{kind} failed: {errs[:3]}")
    starts, ends, workers = {}, {}, {}
    for ev in instance.all_logs(res.run_id):
        d = ev.dagster_event
        if d is None or not ev.step_key:
            continue
        if d.event_type_value == "STEP_START":
            starts[ev.step_key] = ev.timestamp
        elif d.event_type_value == "STEP_SUCCESS":
            ends[ev.step_key] = ev.timestamp
        elif d.is_engine_event and "Celery worker" in (d.engine_event_data.metadata or {}):
            workers[ev.step_key] = str(d.engine_event_data.metadata["Celery worker"].value)
    plate = [k for k in ends if k.startswith("cp_profiles.cp_profile_plate")]
    return {
        "wall_s": round(wall, 2),
        "steps": len(ends),
        "plate_steps": len(plate),
        "plate_busy_s": round(sum(ends[k] - starts[k] for k in plate if k in starts), 1),
        "workers": sorted(set(workers.values())),
    }


def render_markdown(res: dict) -> str:
    """The bench's results as the docs page ``docs/cluster-bench.md`` (generated; not edited by hand)."""
    m = res.get("machine", {})
    lines = [
        "# Cluster bench: Celery workers vs the multiprocess executor",
        "",
        "Generated by `uv run python bench/bench_cluster.py --docs docs/cluster-bench.md` "
        f"(commit `{m.get('commit', '?')}`, {res['cores']} cores, {m.get('date', '?')}); not edited by hand.",
        "",
        f"`cp_profiles` of {res['plates']} plates of the demo's synthetic CPJUMP1 (one step per plate, then the "
        "well medians), the same Postgres instance for every run:",
        "",
        "| executor | wall time (s) | ratio to multiprocess | plate steps | plate steps' busy time (s) | workers |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in res["runs"].items():
        lines.append(
            f"| {k.replace('_', ' ')} | {r['seconds']:.1f} | {res['ratio_vs_multiprocess'][k]:.2f} | "
            f"{r['plate_steps']} | {r['plate_busy_s']:.1f} | {', '.join(r['workers']) or '–'} |"
        )
    o = res["empty_step_overhead"]
    lines += [
        "",
        f"Two workers against one: {res['ratio_2_vs_1_worker']:.2f} of the wall time.",
        "",
        f"Scheduling overhead: {res['empty_steps']} no-op steps took {o['celery_1_worker_wall_s']:.1f} s through one "
        f"Celery worker ({o['per_step_celery_s']:.3f} s per step) and {o['in_process_wall_s']:.1f} s in process "
        f"({o['per_step_in_process_s']:.3f} s per step): {o['per_step_overhead_s']:.3f} s per step is what the "
        "broker round trip, the worker's step process and the instance's Postgres writes add.",
        "",
        "On this 2-core machine two workers share the cores with each other and with the run's own process, so "
        "the ratios measure the executor's overhead and fan-out, not a cluster's speed-up. Machines of the same "
        "kind differ by about 1.3x in speed; the ratios, measured in one run, vary less.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plates", type=int, default=8)
    ap.add_argument("--empty-steps", type=int, default=40)
    ap.add_argument("--data", default=str(REPO / ".moa_data" / "bench_cluster"))
    ap.add_argument("--docs", default=None, help="also render the results as this Markdown page")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.empty_steps)))
        return 0

    from orchestration import cluster

    data = Path(args.data).resolve()
    _catalogue(data, args.plates)
    run_dir = Path(tempfile.mkdtemp(prefix="moa-bench-cluster-", dir="/tmp"))
    os.chmod(run_dir, 0o755)
    servers, workers = [], []
    out: dict = {"plates": args.plates, "empty_steps": args.empty_steps, "cores": os.cpu_count()}
    try:
        redis_port, pg_port = cluster.free_port(), cluster.free_port()
        servers.append(cluster.start_redis(run_dir, redis_port))
        servers.append(cluster.start_postgres(run_dir, pg_port))
        env = cluster.cluster_env(run_dir, redis_port, pg_port)
        env.update({"MOA_DATA_DIR": str(data), "EMPTY_STEPS": str(args.empty_steps), "PYTHONUNBUFFERED": "1"})
        cluster.write_instance_yaml(Path(env["DAGSTER_HOME"]))
        sec, _ = _run({**env, "MOA_EXECUTOR": "in_process"}, "--child", "prepare")
        print(f"prepared {args.plates} plates (raw_images) in {sec:.0f} s", flush=True)

        def start(names):
            ps = [cluster.start_worker(n, ["dagster"], run_dir, env) for n in names]
            cluster.wait_for_workers(env, names, ps, timeout=120)
            workers.extend(ps)
            return ps

        def stop(ps):
            for p in ps:
                cluster.stop_process(p.pidfile)
                workers.remove(p)

        runs = {}
        sec, r = _run({**env, "MOA_EXECUTOR": "multiprocess"}, "--child", "cp_profiles")
        runs["multiprocess"] = {**r, "seconds": round(sec, 1)}
        print(f"multiprocess executor: {sec:.1f} s {r}", flush=True)
        one = start(["w1"])
        sec, r = _run(env, "--child", "cp_profiles")
        runs["celery_1_worker"] = {**r, "seconds": round(sec, 1)}
        print(f"celery, 1 worker: {sec:.1f} s {r}", flush=True)
        sec, r = _run(env, "--child", "empty_celery")
        sec0, r0 = _run({**env, "MOA_EXECUTOR": "in_process"}, "--child", "empty_in_process")
        overhead = {
            "celery_1_worker_wall_s": r["wall_s"],
            "in_process_wall_s": r0["wall_s"],
            "per_step_celery_s": round(r["wall_s"] / args.empty_steps, 3),
            "per_step_in_process_s": round(r0["wall_s"] / args.empty_steps, 3),
            "per_step_overhead_s": round((r["wall_s"] - r0["wall_s"]) / args.empty_steps, 3),
        }
        print(f"empty steps: {overhead}", flush=True)
        two = start(["w2"])
        sec, r = _run(env, "--child", "cp_profiles")
        runs["celery_2_workers"] = {**r, "seconds": round(sec, 1)}
        print(f"celery, 2 workers: {sec:.1f} s {r}", flush=True)
        stop(one + two)
        base = runs["multiprocess"]["seconds"]
        out.update(
            {
                "runs": runs,
                "ratio_vs_multiprocess": {k: round(v["seconds"] / base, 2) for k, v in runs.items()},
                "ratio_2_vs_1_worker": round(
                    runs["celery_2_workers"]["seconds"] / runs["celery_1_worker"]["seconds"], 2
                ),
                "empty_step_overhead": overhead,
            }
        )
        print(json.dumps(out, indent=2))
        res_dir = REPO / "bench" / "results"
        res_dir.mkdir(parents=True, exist_ok=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        out["machine"] = {"commit": commit.stdout.strip(), "date": time.strftime("%Y-%m-%d")}
        (res_dir / "cluster.json").write_text(json.dumps(out, indent=2))
        if args.docs:
            Path(args.docs).write_text(render_markdown(out))
            print(f"wrote {args.docs}")
    finally:
        for p in workers + servers[::-1]:
            cluster.stop_process(p.pidfile)
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
