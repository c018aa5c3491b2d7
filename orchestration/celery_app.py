"""The Celery app of the project's workers: dagster-celery's step task, with the broker, backend and
settings of :func:`orchestration.defs.executors.celery_settings` (the environment), so the executor that
submits a step and the worker that runs it agree.

    celery -A orchestration.celery_app worker -Q dagster -n cpu1@%h --concurrency 1
    celery -A orchestration.celery_app worker -Q gpu -n gpu1@%h --pool solo

(``python -m orchestration.cluster worker`` runs exactly that.) dagster-celery's own
``dagster-celery worker start`` writes its settings into a module under the instance folder; this app
reads the same settings from the environment instead, the way the rest of the deployment is configured.
Every worker process gets ``$MOA_CELERY_WORKER`` = its node name, which the steps record in their metadata.
"""

from __future__ import annotations

import os

from celery.signals import celeryd_init
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from orchestration.defs.executors import WORKER_ENV, celery_settings


@celeryd_init.connect
def _name_the_worker(sender=None, **_kwargs) -> None:  # in the worker's main process, before its pool forks
    os.environ[WORKER_ENV] = str(sender)


app = make_app(CeleryExecutor.for_cli(**celery_settings()).app_args())
execute_plan = create_task(app)
