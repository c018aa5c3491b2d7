"""Executors: in-process, multiprocess (one machine) or Celery workers (a cluster), chosen by ``$MOA_EXECUTOR``.

=================  ====================================================================================
``MOA_EXECUTOR``   what runs the steps of a run
=================  ====================================================================================
``multiprocess``   (default) Dagster's multiprocess executor: one process per step on this machine
``in_process``     every step in the run's own process (debugging)
``celery``         dagster-celery: each step is a Celery task on a Redis broker, run by the worker that
                   consumes its queue (``python -m orchestration.cluster worker``); the instance must be
                   shared (Postgres, ``deploy/dagster.yaml``) and so must the store (``$MOA_DATA_DIR`` on
                   a shared file system)
=================  ====================================================================================

Queues: every step goes to the default queue :data:`CPU_QUEUE` (``dagster``, dagster-celery's default),
except the training steps (MP, holdout, DP recipe, the Pheno-CA zoo's IBP models), whose op tag
``dagster-celery/queue`` is :data:`GPU_QUEUE`, so a lab runs GPU workers only where GPUs are.

The broker, result backend and Celery settings come from the environment (:func:`celery_settings`), so
the run's executor and the workers (:mod:`orchestration.celery_app`) cannot disagree. Unlike plain
dagster-celery, the ``moa_celery`` executor checks before it submits anything that the broker answers
and that every queue the run needs has a live worker; a missing worker is waited for at most
``queue_wait_seconds`` (default ``$MOA_CELERY_QUEUE_WAIT_S`` or 60 s) and then fails the run naming the
queue. The worker settings that make a killed worker's step run again: ``task_acks_late`` with
``task_reject_on_worker_lost`` (a step whose pool process dies is put back on its queue, and another
worker takes it), ``worker_prefetch_multiplier = 1`` (a worker reserves one step at a time), and a Redis
``visibility_timeout`` above the longest step (default 24 h, ``$MOA_CELERY_VISIBILITY_TIMEOUT_S``): Redis
re-delivers a task that is not acknowledged within it, and an acks-late step is acknowledged only when
it ends, so a shorter timeout would start a second copy of a step that is still running.
"""

from __future__ import annotations

import os
import socket
import time

import dagster as dg
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

#: The default Celery queue (dagster-celery's ``task_default_queue``): CPU steps.
CPU_QUEUE = "dagster"
#: The queue of the training steps.
GPU_QUEUE = "gpu"
#: Op tags of a training step.
GPU_TAGS = {DAGSTER_CELERY_QUEUE_TAG: GPU_QUEUE}
#: Set by :mod:`orchestration.celery_app` in every worker process: the worker's Celery node name.
WORKER_ENV = "MOA_CELERY_WORKER"
EXECUTORS = ("multiprocess", "in_process", "celery")
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
#: Redis re-delivers an unacknowledged task after this long: above the longest step (24 h).
DEFAULT_VISIBILITY_TIMEOUT_S = 24 * 3600


class ClusterUnavailable(RuntimeError):
    """The broker does not answer, or no worker consumes a queue the run needs."""


def celery_settings(env: dict[str, str] | None = None) -> dict:
    """``broker``, ``backend`` and ``config_source`` of the Celery app, from ``env`` (default ``os.environ``):
    ``MOA_CELERY_BROKER`` (default ``redis://127.0.0.1:6379/0``), ``MOA_CELERY_BACKEND`` (default: the
    broker), ``MOA_CELERY_VISIBILITY_TIMEOUT_S`` (default 86,400)."""
    env = os.environ if env is None else env
    broker = env.get("MOA_CELERY_BROKER") or DEFAULT_BROKER
    backend = env.get("MOA_CELERY_BACKEND") or broker
    vis = int(env.get("MOA_CELERY_VISIBILITY_TIMEOUT_S") or DEFAULT_VISIBILITY_TIMEOUT_S)
    if vis <= 0:
        raise ValueError(f"MOA_CELERY_VISIBILITY_TIMEOUT_S must be positive, got {vis}")
    return {
        "broker": broker,
        "backend": backend,
        "config_source": {
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": {"visibility_timeout": vis, "max_retries": 3},
            "result_backend_transport_options": {"visibility_timeout": vis},
            "result_expires": 7 * 24 * 3600,
        },
    }


def _redact(url: str) -> str:
    """A broker URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def queue_consumers(app, timeout: float = 2.0) -> dict[str, list[str]]:
    """Queue name -> the live workers consuming it (Celery's ``inspect().active_queues()``)."""
    found = app.control.inspect(timeout=timeout).active_queues() or {}
    out: dict[str, list[str]] = {}
    for worker, queues in found.items():
        for q in queues or []:
            out.setdefault(q["name"], []).append(worker)
    return out


class MoaCeleryExecutor(CeleryExecutor):
    """dagster-celery's executor with the checks a user needs before a run waits on a queue: the broker
    answers (else a clear error naming it), every queue of the plan's steps has a worker (else waits
    ``queue_wait_seconds``, logging which queue, then fails)."""

    def __init__(self, *args, queue_wait_seconds: float = 60.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.queue_wait_seconds = float(queue_wait_seconds)

    def execute(self, plan_context, execution_plan):
        from dagster_celery.make_app import make_app

        app = make_app(self.app_args())
        default_q = app.conf.task_default_queue
        needed = sorted(
            {
                execution_plan.get_step_by_key(k).tags.get(DAGSTER_CELERY_QUEUE_TAG, default_q)
                for k in execution_plan.step_keys_to_execute
            }
        )
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.5, timeout=5)
        except Exception as e:  # kombu raises OperationalError and friends
            raise ClusterUnavailable(
                f"Celery broker {_redact(self.broker)} does not answer ({type(e).__name__}: {e}); start it "
                "(python -m orchestration.cluster up) or set MOA_CELERY_BROKER"
            ) from e
        deadline = time.monotonic() + self.queue_wait_seconds
        waited = False
        while True:
            consumers = queue_consumers(app)
            missing = [q for q in needed if not consumers.get(q)]
            if not missing:
                break
            if time.monotonic() >= deadline:
                raise ClusterUnavailable(
                    f"no Celery worker consumes queue(s) {missing} (live queues: "
                    f"{ {q: w for q, w in consumers.items()} }); waited {self.queue_wait_seconds:.0f} s. Start one: "
                    f"python -m orchestration.cluster worker --queue {missing[0]}"
                )
            if not waited:
                plan_context.log.warning(
                    f"waiting up to {self.queue_wait_seconds:.0f} s for a Celery worker on queue(s) {missing}"
                )
                waited = True
            time.sleep(1.0)
        plan_context.log.info(f"Celery queues {needed}: workers {[consumers[q] for q in needed]}")
        yield from super().execute(plan_context, execution_plan)


@dg.executor(
    name="moa_celery",
    config_schema={
        **CELERY_CONFIG,
        "queue_wait_seconds": dg.Field(
            float, is_required=False, description="How long a run waits for a worker on a queue it needs."
        ),
    },
    requirements=dg.multiple_process_executor_requirements(),
)
def moa_celery_executor(init_context) -> MoaCeleryExecutor:
    """dagster-celery's ``celery_executor`` configured from the environment (:func:`celery_settings`), with
    the broker and queue checks of :class:`MoaCeleryExecutor`; run config may override any field."""
    from dagster._core.execution.retries import RetryMode

    cfg = init_context.executor_config
    env = celery_settings()
    return MoaCeleryExecutor(
        retries=RetryMode.from_config(cfg["retries"]),
        broker=cfg.get("broker") or env["broker"],
        backend=cfg.get("backend") if cfg.get("backend") not in (None, "rpc://") else env["backend"],
        include=cfg.get("include"),
        config_source={**env["config_source"], **(cfg.get("config_source") or {})},
        queue_wait_seconds=cfg.get("queue_wait_seconds", float(os.environ.get("MOA_CELERY_QUEUE_WAIT_S") or 60)),
    )


def from_env(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor named by ``name`` or ``$MOA_EXECUTOR`` (:data:`EXECUTORS`; default multiprocess)."""
    name = (name if name is not None else os.environ.get("MOA_EXECUTOR") or "multiprocess").strip()
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "celery":
        return moa_celery_executor
    raise ValueError(f"MOA_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)}")


def in_celery_worker() -> bool:
    """Whether this process is (a pool process of) a Celery worker of :mod:`orchestration.celery_app`."""
    return bool(os.environ.get(WORKER_ENV))


def executed_by() -> dict[str, str | int]:
    """Where this step runs: the Celery worker's node name (``$MOA_CELERY_WORKER``; ``"-"`` outside a
    worker), the host and the process id; recorded in the step's metadata."""
    return {"worker": os.environ.get(WORKER_ENV, "-"), "host": socket.gethostname(), "pid": os.getpid()}
