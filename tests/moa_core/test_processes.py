"""moa_core.processes: work that fans out over processes runs in place inside a daemonic process."""

from __future__ import annotations

import multiprocessing

from moa_core.processes import may_start_processes, usable_processes


def _inside_a_daemon(_):
    from moa_core.profiles.features import field_pool

    return may_start_processes(), usable_processes(4), usable_processes(4, serial=0), field_pool(4) is None


def test_a_daemonic_process_runs_its_work_in_place():
    assert may_start_processes() and usable_processes(4) == 4  # the test process may start children
    with multiprocessing.get_context("fork").Pool(1) as pool:  # a pool's workers are daemonic, like Celery's
        may, pool_size, loader_workers, serial_fields = pool.map(_inside_a_daemon, [0])[0]
    assert (may, pool_size, loader_workers, serial_fields) == (False, 1, 0, True)
