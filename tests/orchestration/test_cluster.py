"""The Celery cluster for real: Redis, Postgres and Celery workers on loopback, the mini dataset's jobs on them.

Servers are Debian's ``redis-server`` and PostgreSQL (``.ci/services`` installs them), started by these
tests in their own process groups with their own data folders and stopped at teardown. Runs go through
``python -m orchestration.materialize`` with ``MOA_EXECUTOR=celery`` in a subprocess, the way a user of
``orchestration.cluster up`` runs them; their events are read back from Postgres.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from orchestration import cluster

pytestmark = pytest.mark.timeout(1200)

REPO = Path(__file__).resolve().parents[2]
MINI = "synthetic_cpjump1_mini"


def _have_servers() -> bool:
    try:
        cluster.pg_bindir()
    except cluster.ClusterError:
        return False
    return shutil.which("redis-server") is not None


needs_servers = pytest.mark.skipif(
    not _have_servers(), reason="redis-server / PostgreSQL missing: the test command installs them (.ci/services)"
)


@pytest.fixture(scope="module")
def servers():
    """Redis + Postgres on free loopback ports, in a run folder the postgres user can reach (as root)."""
    run_dir = Path(tempfile.mkdtemp(prefix="moa-cluster-test-", dir="/tmp"))
    os.chmod(run_dir, 0o755)
    procs = []
    try:
        redis_port, pg_port = cluster.free_port(), cluster.free_port()
        procs.append(cluster.start_redis(run_dir, redis_port))
        procs.append(cluster.start_postgres(run_dir, pg_port))
        yield run_dir, redis_port, pg_port, procs
    finally:
        for p in reversed(procs):
            cluster.stop_process(p.pidfile)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def env(servers, shared_dir):
    run_dir, redis_port, pg_port, _ = servers
    e = cluster.cluster_env(run_dir, redis_port, pg_port)
    e.update(
        {
            "MOA_DATA_DIR": str(run_dir / "data"),
            "MOA_SHARED_DIR": str(shared_dir),
            "MOA_CELERY_QUEUE_WAIT_S": "15",
            "PYTHONUNBUFFERED": "1",
        }
    )
    cluster.write_instance_yaml(Path(e["DAGSTER_HOME"]))
    return e


@pytest.fixture(scope="module")
def workers(servers, env):
    """One worker per queue: ``cpu1`` (default queue ``dagster``, prefork) and ``gpu1`` (queue ``gpu``, solo)."""
    run_dir = servers[0]
    procs = [
        cluster.start_worker("cpu1", ["dagster"], run_dir, env),
        cluster.start_worker("gpu1", ["gpu"], run_dir, env, pool="solo"),
    ]
    try:
        cluster.wait_for_workers(env, ["cpu1", "gpu1"], procs, timeout=120)
        yield procs
    finally:
        for p in procs:
            cluster.stop_process(p.pidfile)


def _materialize(env, job, *extra, timeout=900, dataset=MINI, **popen):
    cmd = [sys.executable, "-m", "orchestration.materialize", dataset, job, *extra]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, **popen)


def _instance(env):
    import dagster as dg

    old = {k: os.environ.get(k) for k in env if k.startswith(("MOA_PG_", "DAGSTER_HOME"))}
    os.environ.update({k: env[k] for k in old})
    try:
        return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _last_run_events(env, job):
    import dagster as dg

    inst = _instance(env)
    runs = inst.get_runs(filters=dg.RunsFilter(job_name=job), limit=1)
    assert runs, f"no {job} run recorded in Postgres"
    return runs[0], inst.all_logs(runs[0].run_id)


def _step_workers(events) -> dict[str, str]:
    """step key -> the Celery worker that ran it (dagster-celery's "Executing steps ... in celery worker")."""
    out = {}
    for ev in events:
        d = ev.dagster_event
        if d is None or not d.is_engine_event or not ev.step_key:
            continue
        md = d.engine_event_data.metadata or {}
        if "Celery worker" in md:
            out[ev.step_key] = str(md["Celery worker"].value)
    return out


def _output_meta(events, step_prefix: str) -> list[dict]:
    rows = []
    for ev in events:
        d = ev.dagster_event
        if d is not None and d.event_type_value == "STEP_OUTPUT" and ev.step_key.startswith(step_prefix):
            md = d.step_output_data.metadata
            if "executed_by" in md:
                rows.append(md["executed_by"].value)
    return rows


@needs_servers
def test_deploy_configs_validate_against_dagsters_schemas(env):
    """deploy/dagster.yaml builds a real instance on the Postgres server; deploy/celery.yaml is valid run
    config for the project's Celery executor and dagster-celery's worker CLI."""
    from dagster._config import validate_config
    from dagster_celery.cli import get_validated_config

    from orchestration.defs.executors import moa_celery_executor

    inst = _instance(env)
    assert type(inst.run_storage).__name__ == "PostgresRunStorage"
    assert type(inst.run_coordinator).__name__ == "QueuedRunCoordinator"
    import yaml

    block = yaml.safe_load((REPO / "deploy" / "celery.yaml").read_text())["execution"]["config"]
    res = validate_config(moa_celery_executor.config_schema.config_type, block)
    assert res.success, res.errors
    dagster_celery_block = {k: v for k, v in block.items() if k != "queue_wait_seconds"}
    bad = validate_config(moa_celery_executor.config_schema.config_type, {**block, "brokr": "x"})
    assert not bad.success  # the schema is strict: a typo is refused
    tmp = Path(env["DAGSTER_HOME"]) / "celery_cli.yaml"
    tmp.write_text(yaml.safe_dump({"execution": {"config": dagster_celery_block}}))
    old = {k: os.environ.get(k) for k in ("MOA_CELERY_BROKER", "MOA_CELERY_BACKEND", "DAGSTER_HOME")}
    os.environ.update({k: env[k] for k in old})
    try:
        got = get_validated_config(str(tmp))
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert got["broker"] == env["MOA_CELERY_BROKER"]
    assert got["config_source"]["broker_transport_options"]["visibility_timeout"] > 3600


@needs_servers
def test_ingest_and_training_run_on_the_workers_and_equal_the_in_process_run(env, workers, mini_pipeline):
    """The mini dataset's ingest_job and train_eval_job with MOA_EXECUTOR=celery: every plate step ran on the
    CPU worker and the training step on the gpu-queue worker (a torchrun subprocess); the tables equal the
    in-process run's."""
    from moa_core.storage import Warehouse, partition_table

    res = _materialize(env, "ingest_job")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run, events = _last_run_events(env, "ingest_job")
    where = _step_workers(events)
    plate_steps = [k for k in where if k.startswith("cp_profiles.cp_profile_plate")]
    assert len(plate_steps) == 2, where  # the mini dataset's two plates, one step each
    assert all(where[k].startswith("cpu1@") for k in plate_steps)
    assert {k.split("[")[0] for k in where} >= {"raw_images", "cp_profiles.cp_collect", "cp_embeddings", "splits"}
    plate_meta = _output_meta(events, "cp_profiles.cp_profile_plate")
    assert len(plate_meta) == 2 and all(m["worker"].startswith("cpu1@") for m in plate_meta)
    runner_pid = {m["pid"] for m in plate_meta}
    assert os.getpid() not in runner_pid

    res = _materialize(env, "train_eval_job", "--fraction", "100")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    _, events = _last_run_events(env, "train_eval_job")
    where = _step_workers(events)
    assert where["mp_checkpoint"].startswith("gpu1@"), where
    assert all(w.startswith("cpu1@") for k, w in where.items() if k != "mp_checkpoint")
    mats = [e for e in events if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"]
    ck = next(e for e in mats if e.dagster_event.asset_key.path == ["mp_checkpoint"])
    md = ck.dagster_event.step_materialization_data.materialization.metadata
    assert md["launched_as"].value == "torchrun subprocess"
    assert md["executed_by"].value["worker"].startswith("gpu1@")

    ref_store = mini_pipeline[0]
    got, ref = Warehouse(Path(env["MOA_DATA_DIR"]) / "warehouse.duckdb"), ref_store.warehouse()
    for table in ("cp_profiles", "cp_embeddings", "splits"):
        a = got.read_table(partition_table(table, MINI))
        b = ref.read_table(partition_table(table, MINI))
        keys = [c for c in ("Metadata_Plate", "Metadata_Well") if c in a.columns]
        a, b = (x.sort_values(keys).reset_index(drop=True) for x in (a, b))
        pd.testing.assert_frame_equal(a[sorted(a.columns)], b[sorted(b.columns)], check_exact=False, rtol=1e-6)


@needs_servers
def test_a_worker_killed_mid_plate_step_is_retried_on_the_other_worker(servers, env, workers):
    """SIGKILL to the pool process running a plate step: Celery puts the step back on its queue (acks late,
    reject on worker lost), the other CPU worker runs it, the run succeeds and the plate's file is whole."""
    run_dir = servers[0]
    extra = cluster.start_worker("cpu2", ["dagster"], run_dir, env)
    try:
        cluster.wait_for_workers(env, ["cpu1", "cpu2", "gpu1"], [*workers, extra], timeout=120)
        killed: dict = {}
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestration.materialize", MINI, "ingest_job"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
        reader.start()

        def plate_child() -> int | None:
            """The pool process of a worker that is running a plate step now."""
            for w in (workers[0], extra):
                for child in _children(w.pid):
                    if "cp_profile_plate" in _open_step(child, env):
                        return child
            return None

        t_end = time.monotonic() + 600
        while time.monotonic() < t_end and proc.poll() is None and not killed:
            pid = plate_child()
            if pid:
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
            time.sleep(0.2)
        proc.wait(timeout=900)
        reader.join(5)
        log = "".join(out)
        assert killed, "no plate step was seen running: nothing was killed\n" + log[-3000:]
        assert proc.returncode == 0, log[-4000:]
        _, events = _last_run_events(env, "ingest_job")
        where = _step_workers(events)
        plate_runs = [
            (e.step_key, str(e.dagster_event.engine_event_data.metadata["Celery worker"].value))
            for e in events
            if e.dagster_event
            and e.dagster_event.is_engine_event
            and (e.step_key or "").startswith("cp_profiles.cp_profile_plate")
            and "Celery worker" in (e.dagster_event.engine_event_data.metadata or {})
        ]
        assert len(plate_runs) == 3, plate_runs  # two plates, one of them started twice
        again = [k for k in {k for k, _ in plate_runs} if sum(1 for x, _ in plate_runs if x == k) == 2]
        assert len(again) == 1, plate_runs
        assert len(where) >= 2
        single = Path(env["MOA_DATA_DIR"]) / "artifacts" / MINI / "single_cells"
        assert not [p.name for p in single.iterdir() if p.name.endswith(".tmp")]  # no half-written file left
        import pyarrow.parquet as pq

        for f in single.glob("*.parquet"):
            assert pq.ParquetFile(f).metadata.num_rows > 0
    finally:
        cluster.stop_process(extra.pidfile)


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids]


def _open_step(pid: int, env) -> str:
    """What a pool process is running, from its open files (a plate step holds its single-cell .tmp file)."""
    try:
        names = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return ""
    return "cp_profile_plate" if any("single_cells" in n and n.endswith(".tmp") for n in names) else ""


ZOO_ENTRY = """
[datasets.cluster_profiles]
kind = "synthetic_profiles"

[datasets.cluster_profiles.profile_spec]
n_annotated_compounds = 120
n_ood_compounds = 200
n_moas = 20
n_targets = 15
n_crispr_genes = 10
n_features = 60
n_sources = 2
batches_per_source = 1

[datasets.cluster_profiles.phenoca]
depths = [1, 2]
widths = [32]
epochs = 2
probe_epochs = 3
n_boot = 20
num_threads = 1
task_supervised = false
"""


@needs_servers
def test_the_pheno_ca_zoo_spreads_over_the_workers(servers, env, workers):
    """MOA_ZOO_GROUP_SIZE=1 (what cluster_env sets): one step per architecture, taken by both CPU workers."""
    run_dir = servers[0]
    cat = Path(env["MOA_DATA_DIR"]) / "catalogue.toml"
    cat.parent.mkdir(parents=True, exist_ok=True)
    cat.write_text((cat.read_text() if cat.is_file() else "") + ZOO_ENTRY)
    extra = cluster.start_worker("cpu3", ["dagster"], run_dir, env)
    try:
        cluster.wait_for_workers(env, ["cpu1", "cpu3"], [workers[0], extra], timeout=120)
        for job, frac in (("phenoca_inputs_job", None), ("phenoca_job", "100")):
            res = _materialize(env, job, *(["--fraction", frac] if frac else []), dataset="cluster_profiles")
            assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        _, events = _last_run_events(env, "phenoca_job")
        where = _step_workers(events)
        members = {k: w.split("@")[0] for k, w in where.items() if "phenoca_member" in k}
        assert sorted(members) == ["phenoca_results.phenoca_member[d1w32]", "phenoca_results.phenoca_member[d2w32]"]
        assert set(members.values()) == {"cpu1", "cpu3"}, members  # the two members ran side by side
    finally:
        cluster.stop_process(extra.pidfile)


@needs_servers
def test_broker_down_is_a_clear_error_not_a_hang(env):
    dead = dict(env, MOA_CELERY_BROKER=f"redis://127.0.0.1:{cluster.free_port()}/0")
    t0 = time.monotonic()
    res = _materialize(dead, "ingest_job", timeout=240)
    assert res.returncode != 0
    assert "does not answer" in res.stdout + res.stderr and "MOA_CELERY_BROKER" in res.stdout + res.stderr
    assert time.monotonic() - t0 < 180


@needs_servers
def test_postgres_down_is_a_clear_error_not_a_hang(env):
    dead = dict(env, MOA_PG_PORT=str(cluster.free_port()))
    t0 = time.monotonic()
    res = _materialize(dead, "ingest_job", timeout=240)
    text = res.stdout + res.stderr
    assert res.returncode != 0
    assert "127.0.0.1" in text and ("Connection refused" in text or "could not connect" in text), text[-2000:]
    assert time.monotonic() - t0 < 180


@needs_servers
def test_a_queue_without_worker_fails_naming_the_queue(servers, env):
    """No worker on queue ``gpu`` (the module's workers are not started here... the gpu1 worker may be:
    a fresh broker database is used so no worker of this module answers)."""
    run_dir, redis_port, _, _ = servers
    lonely = dict(
        env,
        MOA_CELERY_BROKER=f"redis://127.0.0.1:{redis_port}/5",
        MOA_CELERY_BACKEND=f"redis://127.0.0.1:{redis_port}/6",
    )
    cpu = cluster.start_worker("lonelycpu", ["dagster"], run_dir, lonely)
    try:
        cluster.wait_for_workers(lonely, ["lonelycpu"], [cpu], timeout=120)
        t0 = time.monotonic()
        res = _materialize(lonely, "train_eval_job", "--fraction", "100", timeout=300)
        text = res.stdout + res.stderr
        assert res.returncode != 0
        assert "no Celery worker consumes queue(s) ['gpu']" in text, text[-3000:]
        assert "orchestration.cluster worker --queue gpu" in text
        assert time.monotonic() - t0 < 240
    finally:
        cluster.stop_process(cpu.pidfile)


def _cluster_cli(env, *args, timeout: float):
    cmd = [sys.executable, "-m", "orchestration.cluster", *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@needs_servers
def test_cluster_up_then_down_leaves_nothing_of_its_own(tmp_path):
    run_dir = Path(tempfile.mkdtemp(prefix="moa-cluster-up-", dir="/tmp"))
    os.chmod(run_dir, 0o755)
    try:
        env = dict(os.environ, MOA_DATA_DIR=str(run_dir / "data"))
        up = ["up", "--run-dir", str(run_dir), "--workers", "1", "--gpu-workers", "1"]
        res = _cluster_cli(env, *up, "--web-port", str(cluster.free_port()), timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        st = json.loads((run_dir / "cluster.json").read_text())
        pids = {f.stem: json.loads(f.read_text())["pid"] for f in (run_dir / "pids").glob("*.json")}
        assert set(pids) == {"redis", "postgres", "worker-cpu1", "worker-gpu1", "daemon", "webserver"}
        assert all(cluster._alive(p) for p in pids.values())
        assert set(st["queues"]) == {"dagster", "gpu"}
        status = _cluster_cli(env, "status", "--run-dir", str(run_dir), timeout=60)
        assert status.returncode == 0 and all(v["alive"] for v in json.loads(status.stdout)["processes"].values())
        groups = set(pids.values())
        res = _cluster_cli(env, "down", "--run-dir", str(run_dir), timeout=180)
        assert res.returncode == 0, res.stderr
        left = [g for g in groups if cluster._group_alive(g)]
        assert not left, f"process groups still alive after down: {left}"
        assert not list((run_dir / "pids").glob("*.json"))
    finally:
        for f in (run_dir / "pids").glob("*.json"):
            cluster.stop_process(f)
        shutil.rmtree(run_dir, ignore_errors=True)
