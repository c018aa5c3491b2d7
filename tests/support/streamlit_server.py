"""A real ``streamlit run`` of the dashboard on loopback, for the browser test.

The server runs in its own process group (``start_new_session=True``) so that teardown can kill it
and anything it spawned with one ``os.killpg``; its stdout/stderr go to a log file whose tail is
quoted when it fails to start (or when a test fails, through :meth:`StreamlitServer.log_tail`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StreamlitServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, n_chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return text[-n_chars:]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    # the leader is gone; make sure no member of its group survives it
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@contextlib.contextmanager
def streamlit_server(
    app: Path,
    *,
    env: dict[str, str],
    log_path: Path,
    cwd: Path,
    start_timeout_s: float = 90.0,
    launcher: str = "streamlit",
) -> Iterator[StreamlitServer]:
    """Run ``streamlit run <app>`` headless on a free loopback port until the block exits.

    ``launcher="serve"`` starts it through ``python -m dashboard.serve`` (modules imported first).
    Waits for ``/_stcore/health`` to answer ``ok``; raises ``RuntimeError`` with the log's tail when
    the server exits or does not become healthy in ``start_timeout_s``.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    head = (
        [sys.executable, "-m", "dashboard.serve"]
        if launcher == "serve"
        else [sys.executable, "-m", "streamlit", "run", str(app)]
    )
    cmd = [
        *head,
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = StreamlitServer(url=url, process=proc, log_path=log_path)
    try:
        deadline = time.monotonic() + start_timeout_s
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with {proc.returncode} before it was healthy; "
                    f"log {log_path}:\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"streamlit not healthy at {url} after {start_timeout_s:.0f} s; "
                    f"log {log_path}:\n{server.log_tail()}"
                )
            time.sleep(0.2)
        yield server
    finally:
        _kill_group(proc)
