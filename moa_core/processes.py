"""Whether this process may start worker processes (a pool, DataLoader workers).

Python forbids a daemonic process to start children ("daemonic processes are not allowed to have
children"): a Celery prefork pool process is one, as is a ``multiprocessing`` pool worker. Code that
fans work out over processes asks :func:`usable_processes` first and runs the work in this process
when it may not; on a cluster the parallelism then comes from more workers instead.
"""

from __future__ import annotations

import multiprocessing


def may_start_processes() -> bool:
    """False inside a daemonic process (which Python does not let start children)."""
    return not multiprocessing.current_process().daemon


def usable_processes(n: int, serial: int = 1) -> int:
    """``n`` where this process may start children, else ``serial`` (1 for a pool size, 0 for DataLoader
    workers: the work then runs in this process)."""
    return n if may_start_processes() else min(n, serial)
