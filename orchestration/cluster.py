"""A Celery cluster on this machine: Redis, Postgres, the Dagster daemon, the webserver and N workers.

    uv run python -m orchestration.cluster up [--workers 2] [--gpu-workers 0] [--run-dir DIR]
    uv run python -m orchestration.cluster status [--run-dir DIR]
    uv run python -m orchestration.cluster down [--run-dir DIR]
    uv run python -m orchestration.cluster worker --queue gpu [--name gpu1] [--pool solo]   # foreground

``up`` starts every server in its own process group with its log under ``DIR/logs`` and its pid file
under ``DIR/pids`` (default ``DIR`` = ``<data dir>/cluster``), writes the instance's ``dagster.yaml``
(``deploy/dagster.yaml``: Postgres storage, queued run coordinator) into ``DIR/dagster_home`` and the
environment every process shares into ``DIR/cluster.env`` (``source`` it, then run
``python -m orchestration.materialize ...`` or use the UI: steps run on the workers). ``down`` stops
exactly the processes whose pid files ``up`` wrote (a pid that now belongs to another program is left
alone) and keeps the data (Postgres' runs, Redis' nothing: it keeps no state on disk). ``status``
prints each process and whether it is alive, and the workers' queues as the broker sees them.

The same pieces on several machines, or on Kubernetes, are described in ``docs/cluster.md``.
PostgreSQL refuses to run as root: as root the launcher starts it as the ``postgres`` user
(``setpriv``), which must be able to reach ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestration.paths import REPO_ROOT, default_data_dir

DEPLOY = REPO_ROOT / "deploy"
PG_USER, PG_DB = "dagster", "dagster"


class ClusterError(RuntimeError):
    """A server of the local cluster did not start, or a command found no cluster to act on."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    """An executable of this environment (the venv's ``bin`` first), else of ``PATH``."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise ClusterError(f"{name} not found (install it: bash .ci/services)")
    return found


def pg_bindir() -> Path:
    """The folder of PostgreSQL's server programs (``initdb``, ``postgres``): Debian's, else ``PATH``'s."""
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ClusterError("PostgreSQL's initdb/postgres not found (install them: bash .ci/services)")


# ---- processes: own process group, log file, pid file ----------------------------------------------------
@dataclass
class Proc:
    """A process the launcher started: its name, pid (= its process group), log and pid file."""

    name: str
    pid: int
    log: Path
    pidfile: Path
    popen: subprocess.Popen | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (the postgres user's server)
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().split(") ", 1)[-1].startswith("Z"))


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, ``/proc/<pid>/stat`` field 22): with the pid, what
    identifies a process; a recycled pid has another start time."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def start_process(
    name: str,
    argv: Sequence[str],
    run_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Proc:
    """Start ``argv`` in a new session (its own process group), stdout+stderr to ``run_dir/logs/<name>.log``,
    its pid, command line and stop signal in ``run_dir/pids/<name>.json``."""
    logs, pids = run_dir / "logs", run_dir / "pids"
    logs.mkdir(parents=True, exist_ok=True)
    pids.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with open(log, "ab") as fh:
        p = subprocess.Popen(
            list(argv),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    pidfile = pids / f"{name}.json"
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "name": name,
                "pid": p.pid,
                "start_ticks": _start_time(p.pid),
                "argv": list(argv),
                "stop_signal": int(stop_signal),
                "started": time.time(),
            }
        )
    )
    tmp.replace(pidfile)
    return Proc(name, p.pid, log, pidfile, p)


def stop_process(pidfile: Path, timeout: float = 20.0) -> str:
    """Stop the process group of ``pidfile`` (its stop signal, then SIGKILL after ``timeout``) if its pid is
    still the process the file records (same start time); remove the file. Returns what happened."""
    try:
        rec = json.loads(pidfile.read_text())
    except (OSError, ValueError):
        pidfile.unlink(missing_ok=True)
        return "no readable pid file"
    pid = int(rec["pid"])
    if not _alive(pid):
        pidfile.unlink(missing_ok=True)
        return "not running"
    if rec.get("start_ticks") is not None and _start_time(pid) != rec["start_ticks"]:
        pidfile.unlink(missing_ok=True)
        return f"pid {pid} is another process now (started after ours ended): left alone"
    try:
        os.killpg(pid, int(rec.get("stop_signal", signal.SIGTERM)))
    except ProcessLookupError:
        pass
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end and _group_alive(pid):
        time.sleep(0.1)
    how = "stopped"
    if _group_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        how = "killed after SIGTERM timed out"
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end and _group_alive(pid):
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    return how


def _group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` is alive (not a zombie)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(") ", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 3 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _reap(proc: Proc) -> None:
    if proc.popen is not None:
        proc.popen.poll()


def _wait(what: str, ok, proc: Proc, timeout: float) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if ok():
            return
        if not proc.alive():
            raise ClusterError(f"{what} exited at start; its log {proc.log}:\n{_tail(proc.log)}")
        time.sleep(0.2)
    raise ClusterError(f"{what} not ready after {timeout:.0f} s; its log {proc.log}:\n{_tail(proc.log)}")


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---- servers ---------------------------------------------------------------------------------------------
def start_redis(run_dir: Path, port: int) -> Proc:
    """Debian's ``redis-server`` on 127.0.0.1:``port``, no persistence (the broker's queues are transient:
    a run's state lives in Postgres)."""
    d = run_dir / "redis"
    d.mkdir(parents=True, exist_ok=True)
    argv = [_bin("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(d)]
    argv += ["--save", "", "--appendonly", "no", "--protected-mode", "yes"]
    proc = start_process("redis", argv, run_dir)
    _wait(f"redis-server on port {port}", lambda: _redis_ping(port), proc, 20)
    return proc


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _as_pg_user() -> list[str]:
    """As root: run as Debian's ``postgres`` user (PostgreSQL refuses root); otherwise as this user."""
    if os.geteuid() != 0:
        return []
    return [_bin("setpriv"), "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def start_postgres(run_dir: Path, port: int) -> Proc:
    """A PostgreSQL server on 127.0.0.1:``port`` with its data in ``run_dir/postgres`` (``initdb`` on first
    use: trust authentication on loopback, user and database ``dagster``)."""
    d = run_dir / "postgres"
    sock = run_dir / "pgsock"
    bindir = pg_bindir()
    pre = _as_pg_user()
    if pre:
        import pwd

        pw = pwd.getpwnam("postgres")
        for p in (d, sock):
            p.mkdir(parents=True, exist_ok=True)
            os.chown(p, pw.pw_uid, pw.pw_gid)
        probe = subprocess.run([*pre, "test", "-w", str(d)], capture_output=True)
        if probe.returncode != 0:
            raise ClusterError(
                f"PostgreSQL runs as user postgres (not as root) and cannot reach {d}: use a --run-dir every "
                "folder above which the postgres user may enter (e.g. under /tmp or /srv)"
            )
    else:
        d.mkdir(parents=True, exist_ok=True)
        sock.mkdir(parents=True, exist_ok=True)
    if not (d / "PG_VERSION").is_file():
        res = subprocess.run(
            [*pre, str(bindir / "initdb"), "-D", str(d), "-U", PG_USER, "--auth=trust", "-E", "UTF8"],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise ClusterError(f"initdb {d} failed:\n{res.stdout}\n{res.stderr}")
    argv = [*pre, str(bindir / "postgres"), "-D", str(d), "-p", str(port), "-k", str(sock)]
    argv += ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
    proc = start_process("postgres", argv, run_dir, stop_signal=signal.SIGINT)  # SIGINT: fast shutdown
    _wait(f"postgres on port {port}", lambda: _pg_ready(port), proc, 60)
    _ensure_db(port)
    return proc


def _pg_connect(port: int, db: str):
    import psycopg2

    return psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, dbname=db, connect_timeout=3)


def _pg_ready(port: int) -> bool:
    try:
        _pg_connect(port, "postgres").close()
        return True
    except Exception:
        return False


def _ensure_db(port: int) -> None:
    conn = _pg_connect(port, "postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DB,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{PG_DB}"')  # a constant identifier, not user input
    finally:
        conn.close()


# ---- the Dagster side ------------------------------------------------------------------------------------
def cluster_env(run_dir: Path, redis_port: int, pg_port: int, base: Mapping[str, str] | None = None) -> dict:
    """The environment every process of the cluster shares (webserver, daemon, workers, a run's process)."""
    env = dict(os.environ if base is None else base)
    broker = f"redis://127.0.0.1:{redis_port}/0"
    env.update(
        {
            "DAGSTER_HOME": str(run_dir / "dagster_home"),
            "MOA_EXECUTOR": "celery",
            "MOA_ZOO_GROUP_SIZE": "1",  # one step per Pheno-CA zoo architecture: a backfill spreads over workers
            "MOA_CELERY_BROKER": broker,
            "MOA_CELERY_BACKEND": f"redis://127.0.0.1:{redis_port}/1",
            "MOA_PG_HOST": "127.0.0.1",
            "MOA_PG_PORT": str(pg_port),
            "MOA_PG_USER": PG_USER,
            "MOA_PG_PASSWORD": "",
            "MOA_PG_DB": PG_DB,
            "MOA_DATA_DIR": env.get("MOA_DATA_DIR") or default_data_dir(),
        }
    )
    return env


def write_instance_yaml(dagster_home: Path, template: Path | None = None) -> Path:
    """``dagster_home/dagster.yaml`` from ``deploy/dagster.yaml`` (Postgres storage from ``$MOA_PG_*``)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    out = dagster_home / "dagster.yaml"
    tmp = out.with_suffix(".tmp")
    tmp.write_text((template or DEPLOY / "dagster.yaml").read_text())
    tmp.replace(out)
    return out


def start_worker(
    name: str,
    queues: Sequence[str],
    run_dir: Path,
    env: Mapping[str, str],
    *,
    pool: str = "prefork",
    concurrency: int = 1,
) -> Proc:
    """A Celery worker of :mod:`orchestration.celery_app` consuming ``queues`` (``pool``: ``prefork``, whose
    pool process runs the step and may die without taking the worker with it; ``solo`` for GPU workers)."""
    argv = [_bin("celery"), "-A", "orchestration.celery_app", "worker", "-Q", ",".join(queues)]
    argv += ["-n", f"{name}@%h", "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO"]
    argv += ["--without-gossip", "--without-mingle", "--prefetch-multiplier", "1"]
    return start_process(f"worker-{name}", argv, run_dir, env=env, cwd=REPO_ROOT)


def wait_for_workers(env: Mapping[str, str], names: Sequence[str], procs: Sequence[Proc], timeout: float = 60) -> dict:
    """Wait until every worker of ``names`` answers the broker; returns queue -> workers."""
    from dagster_celery.make_app import make_app

    from orchestration.defs.executors import celery_settings, queue_consumers

    app = make_app(_executor_app_args(celery_settings(env)))
    t_end = time.monotonic() + timeout
    seen: dict[str, list[str]] = {}
    while time.monotonic() < t_end:
        dead = [p for p in procs if not p.alive()]
        if dead:
            raise ClusterError(f"worker {dead[0].name} exited at start; its log {dead[0].log}:\n{_tail(dead[0].log)}")
        seen = queue_consumers(app, timeout=1.0)
        live = {w.split("@")[0] for ws in seen.values() for w in ws}
        if set(names) <= live:
            return seen
    raise ClusterError(f"workers {sorted(set(names))} not all answering after {timeout:.0f} s (seen: {seen})")


def _executor_app_args(settings: dict) -> dict:
    from dagster_celery.executor import CeleryExecutor

    return CeleryExecutor.for_cli(**settings).app_args()


# ---- the CLI --------------------------------------------------------------------------------------------
def _read_state(run_dir: Path) -> dict:
    f = run_dir / "cluster.json"
    if not f.is_file():
        raise ClusterError(f"no cluster started from {run_dir} (no cluster.json): run `up` first")
    return json.loads(f.read_text())


def up(
    run_dir: Path,
    *,
    workers: int = 2,
    gpu_workers: int = 0,
    redis_port: int | None = None,
    pg_port: int | None = None,
    web_port: int | None = None,
    webserver: bool = True,
    daemon: bool = True,
) -> dict:
    """Start Redis, Postgres, the daemon, the webserver and the workers; returns the state written to
    ``run_dir/cluster.json``. A failure stops what this call started."""
    run_dir = run_dir.resolve()
    if (run_dir / "cluster.json").is_file() and any(_alive_pidfile(f) for f in (run_dir / "pids").glob("*.json")):
        raise ClusterError(f"a cluster from {run_dir} is running: `down` it first (or `status`)")
    redis_port = redis_port or free_port()
    pg_port = pg_port or free_port()
    started: list[Proc] = []
    try:
        started.append(start_redis(run_dir, redis_port))
        started.append(start_postgres(run_dir, pg_port))
        env = cluster_env(run_dir, redis_port, pg_port)
        write_instance_yaml(Path(env["DAGSTER_HOME"]))
        names = [f"cpu{i + 1}" for i in range(workers)] + [f"gpu{i + 1}" for i in range(gpu_workers)]
        wprocs = [start_worker(n, ["dagster"], run_dir, env) for n in names if n.startswith("cpu")]
        wprocs += [start_worker(n, ["gpu"], run_dir, env, pool="solo") for n in names if n.startswith("gpu")]
        started += wprocs
        queues = wait_for_workers(env, names, wprocs) if names else {}
        web = None
        if daemon:
            started.append(
                start_process(
                    "daemon",
                    [_bin("dagster-daemon"), "run", "-m", "orchestration.definitions"],
                    run_dir,
                    env=env,
                    cwd=REPO_ROOT,
                )
            )
        if webserver:
            web = web_port or free_port()
            argv = [_bin("dagster-webserver"), "-h", "127.0.0.1", "-p", str(web), "-m", "orchestration.definitions"]
            started.append(start_process("webserver", argv, run_dir, env=env, cwd=REPO_ROOT))
            _wait(f"dagster-webserver on port {web}", lambda: _port_open(web), started[-1], 120)
        with open(run_dir / "cluster.env.tmp", "w") as fh:
            for k in sorted(k for k in env if k.startswith(("MOA_", "DAGSTER_HOME"))):
                fh.write(f"export {k}={_sh_quote(env[k])}\n")
        (run_dir / "cluster.env.tmp").replace(run_dir / "cluster.env")
        state = {
            "run_dir": str(run_dir),
            "redis_port": redis_port,
            "pg_port": pg_port,
            "web_port": web,
            "workers": names,
            "queues": queues,
            "processes": [p.name for p in started],
        }
        (run_dir / "cluster.json").write_text(json.dumps(state, indent=2))
        return state
    except BaseException:
        for p in reversed(started):
            stop_process(p.pidfile)
        raise


def _sh_quote(v: str) -> str:
    import shlex

    return shlex.quote(v)


def _alive_pidfile(f: Path) -> bool:
    try:
        return _alive(int(json.loads(f.read_text())["pid"]))
    except (OSError, ValueError, KeyError):
        return False


def down(run_dir: Path) -> dict[str, str]:
    """Stop every process whose pid file ``up`` wrote under ``run_dir`` (workers and servers last), keep data."""
    run_dir = run_dir.resolve()
    pids = sorted((run_dir / "pids").glob("*.json"))
    if not pids and not (run_dir / "cluster.json").is_file():
        raise ClusterError(f"no cluster started from {run_dir}")
    order = {"webserver": 0, "daemon": 1, "redis": 8, "postgres": 9}
    out = {}
    for f in sorted(pids, key=lambda f: (order.get(f.stem, 5), f.stem)):
        out[f.stem] = stop_process(f)
    (run_dir / "cluster.json").unlink(missing_ok=True)
    return out


def status(run_dir: Path) -> dict:
    """Each process of ``up`` and whether it runs, and the workers' queues as the broker sees them."""
    run_dir = run_dir.resolve()
    state = _read_state(run_dir)
    procs = {}
    for f in sorted((run_dir / "pids").glob("*.json")):
        rec = json.loads(f.read_text())
        procs[f.stem] = {"pid": rec["pid"], "alive": _alive(int(rec["pid"]))}
    queues = {}
    if procs.get("redis", {}).get("alive"):
        from dagster_celery.make_app import make_app

        from orchestration.defs.executors import celery_settings, queue_consumers

        env = cluster_env(run_dir, state["redis_port"], state["pg_port"])
        queues = queue_consumers(make_app(_executor_app_args(celery_settings(env))), timeout=1.0)
    return {**state, "processes": procs, "queues": queues}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "status"):
        p = sub.add_parser(name)
        p.add_argument("--run-dir", default=str(Path(default_data_dir()) / "cluster"))
        if name == "up":
            p.add_argument("--workers", type=int, default=2, help="CPU workers (queue 'dagster')")
            p.add_argument("--gpu-workers", type=int, default=0, help="workers of queue 'gpu' (solo pool)")
            p.add_argument("--redis-port", type=int, default=None)
            p.add_argument("--pg-port", type=int, default=None)
            p.add_argument("--web-port", type=int, default=3000)
    w = sub.add_parser("worker", help="run one worker in the foreground with this shell's environment")
    w.add_argument("--queue", action="append", default=None, help="queue(s) to consume (default: dagster)")
    w.add_argument("--name", default=None)
    w.add_argument("--pool", default=None, help="prefork (default) or solo (default for the gpu queue)")
    w.add_argument("--concurrency", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "worker":
            queues = args.queue or ["dagster"]
            pool = args.pool or ("solo" if queues == ["gpu"] else "prefork")
            name = args.name or f"{queues[0]}-{socket.gethostname()}-{os.getpid()}"
            cmd = [_bin("celery"), "-A", "orchestration.celery_app", "worker", "-Q", ",".join(queues)]
            cmd += ["-n", f"{name}@%h", "--pool", pool, "--concurrency", str(args.concurrency), "-l", "INFO"]
            cmd += ["--prefetch-multiplier", "1"]
            os.execv(cmd[0], cmd)
        run_dir = Path(args.run_dir)
        if args.cmd == "up":
            st = up(
                run_dir,
                workers=args.workers,
                gpu_workers=args.gpu_workers,
                redis_port=args.redis_port,
                pg_port=args.pg_port,
                web_port=args.web_port,
            )
            print(json.dumps(st, indent=2))
            print(f"\nsource {Path(st['run_dir']) / 'cluster.env'}  # then materialize: steps run on the workers")
            if st.get("web_port"):
                print(f"Dagster UI: http://127.0.0.1:{st['web_port']}")
        elif args.cmd == "down":
            for k, v in down(run_dir).items():
                print(f"{k}: {v}")
        else:
            print(json.dumps(status(run_dir), indent=2))
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
