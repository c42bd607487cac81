"""The Celery app shared by every worker. Queues per kind of work: generation (a GPU or the
CPU), judge (API calls), training (long, one at a time), live (a person waits on it: chat answers,
from a worker that keeps its models loaded), default (light bookkeeping)."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")

app = Celery("evalsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("generation", "judge", "training", "live", "default")]
app.conf.task_routes = {
    "generation.*": {"queue": "generation"},
    "judge.*": {"queue": "judge"},
    "training.*": {"queue": "training"},
    "live.*": {"queue": "live"},
}
app.autodiscover_tasks()
