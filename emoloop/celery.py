"""The Celery application; tasks live in each app's tasks.py."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun

from emoloop import logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")

app = Celery("emoloop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Log context (emoloop.logs): a task's records carry its id and name, and the id of the web
# request that sent it (in the message's headers).
before_task_publish.connect(logs.on_before_task_publish, weak=False, dispatch_uid="logs.publish")
task_prerun.connect(logs.on_task_prerun, weak=False, dispatch_uid="logs.prerun")
task_postrun.connect(logs.on_task_postrun, weak=False, dispatch_uid="logs.postrun")


def ensure_broker_folders() -> None:
    """kombu's filesystem transport fails if its folders are missing; create them."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if key in options:
            os.makedirs(options[key], exist_ok=True)


ensure_broker_folders()
