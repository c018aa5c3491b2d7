"""Which code produced a table: the package version and the git commit of the working tree.

``code_version()`` is ``"<package version>+g<12-hex commit>"``, with ``".dirty"`` when tracked
files differ from that commit, or ``"<version>+unknown"`` outside a git checkout. It is
recorded with every warehouse write (``catalog.code_version``) so the dashboard can say
from which code each table came.

:class:`MachineShare` says whether a timed run had the machine to itself: the CPU time every
process of the machine used while it ran (``/proc/stat``), minus the run's own (its process and
the children it waited for), and the time the hypervisor gave to other guests (*steal*). A wall
time measured beside other work is not the run's cost; the demo records this next to its times.
"""

from __future__ import annotations

import os
import resource
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["MachineShare", "code_version", "package_version"]

_ROOT = Path(__file__).resolve().parents[1]


def package_version() -> str:
    try:
        return metadata.version("moa-profiler")
    except metadata.PackageNotFoundError:
        return "0+local"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@lru_cache(maxsize=1)
def code_version() -> str:
    """The code version of this process (computed once)."""
    sha = _git("rev-parse", "--short=12", "HEAD")
    if not sha:
        return f"{package_version()}+unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{package_version()}+g{sha}{'.dirty' if dirty else ''}"


def _proc_stat() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine since boot, from ``/proc/stat`` (None off Linux)."""
    try:
        with open("/proc/stat") as f:
            head = f.readline().split()
    except OSError:
        return None
    if not head or head[0] != "cpu" or len(head) < 9:
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is inside user already
    v = [float(x) for x in head[1:9]]
    tick = float(os.sysconf("SC_CLK_TCK"))
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy / tick, v[7] / tick


def _own_cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have been waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class MachineShare:
    """How much of the machine a timed run had: start with :meth:`start`, end with :meth:`stop`.

    ``other_cpu_s`` is the CPU time the machine's other processes used meanwhile (busy time of every
    core minus the run's own, which counts its worker processes only once they have exited and been
    waited for: stop after the pool is closed); ``steal_cpu_s`` the time the hypervisor ran other
    guests on this machine's cores. Both as a share of ``cores * wall`` are what the run lost; a run
    with either above a few per cent was not timed alone.
    """

    wall_s: float | None = None
    cores: int = 1
    own_cpu_s: float | None = None
    other_cpu_s: float | None = None
    steal_cpu_s: float | None = None
    _t0: float = 0.0
    _stat0: tuple[float, float] | None = None
    _own0: float = 0.0

    @classmethod
    def start(cls) -> MachineShare:
        import time

        return cls(cores=os.cpu_count() or 1, _t0=time.time(), _stat0=_proc_stat(), _own0=_own_cpu_seconds())

    def stop(self) -> MachineShare:
        import time

        self.wall_s = time.time() - self._t0
        self.own_cpu_s = _own_cpu_seconds() - self._own0
        stat = _proc_stat()
        if stat is not None and self._stat0 is not None:
            self.other_cpu_s = max(0.0, stat[0] - self._stat0[0] - self.own_cpu_s)
            self.steal_cpu_s = max(0.0, stat[1] - self._stat0[1])
        return self

    def share(self, seconds: float | None) -> float | None:
        """``seconds`` as a share of the machine's capacity over the run (cores x wall)."""
        if seconds is None or not self.wall_s:
            return None
        return seconds / (self.cores * self.wall_s)

    def as_dict(self) -> dict:
        r = lambda v: None if v is None else round(v, 1)  # noqa: E731
        return {
            "wall_s": r(self.wall_s),
            "cores": self.cores,
            "own_cpu_s": r(self.own_cpu_s),
            "other_cpu_s": r(self.other_cpu_s),
            "steal_cpu_s": r(self.steal_cpu_s),
            "other_share": None if self.share(self.other_cpu_s) is None else round(self.share(self.other_cpu_s), 4),
            "steal_share": None if self.share(self.steal_cpu_s) is None else round(self.share(self.steal_cpu_s), 4),
        }
