"""System checks. The cheap ones run with every management command; the ones that reach a
server (database, broker) carry the tag "services" and run in ``manage.py doctor``."""

from __future__ import annotations

import importlib.util
import os

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from evalsite.core.health import broker_status, database_status
from evalsite.core.jobs import registry

KNOWN_BROKER_SCHEMES = ("filesystem", "redis", "rediss", "amqp", "amqps", "pyamqp", "sqla+sqlite", "sqla+postgresql")
SERVICES = "services"


@register(Tags.compatibility)
def check_configuration(app_configs=None, **kwargs):
    problems = []
    broker = settings.CELERY_BROKER_URL
    scheme = broker.split("://", 1)[0] if "://" in broker else ""
    if scheme not in KNOWN_BROKER_SCHEMES:
        problems.append(
            Error(
                f"CELERY_BROKER_URL {broker!r} has an unknown scheme {scheme!r}.",
                hint="Use filesystem:// (no server, the default), redis://HOST:6379/0 or amqp://HOST//.",
                id="core.E001",
            )
        )
    if scheme == "filesystem":
        folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in", "")
        if not (folder and os.path.isdir(folder) and os.access(folder, os.W_OK)):
            problems.append(
                Error(
                    f"The filesystem broker's folder {folder!r} is missing or not writable.",
                    hint="Set EVALSITE_VAR_DIR to a writable folder.",
                    id="core.E002",
                )
            )
    if settings.JOB_STALE_AFTER_SECONDS < 3 * settings.JOB_HEARTBEAT_SECONDS:
        problems.append(
            Error(
                f"JOB_STALE_AFTER_SECONDS ({settings.JOB_STALE_AFTER_SECONDS}) must be at least three "
                f"heartbeats (JOB_HEARTBEAT_SECONDS={settings.JOB_HEARTBEAT_SECONDS}), or live jobs "
                "would be taken for dead ones and run twice.",
                id="core.E003",
            )
        )
    engine = settings.DATABASES["default"]["ENGINE"]
    deployed = not settings.DEBUG and not settings.ONE_MACHINE  # the demo is one machine on purpose
    if deployed and engine.endswith("sqlite3"):
        problems.append(
            Warning(
                "DEBUG is off but the database is SQLite.",
                hint="For several workers and annotators, set DATABASE_URL=postgres://... .",
                id="core.W001",
            )
        )
    if deployed and scheme == "filesystem":
        problems.append(
            Warning(
                "DEBUG is off but the broker is the local filesystem: workers on other hosts cannot reach it.",
                hint="Set CELERY_BROKER_URL=redis://HOST:6379/0.",
                id="core.W002",
            )
        )
    return problems


@register(Tags.models)
def check_job_runners(app_configs=None, **kwargs):
    """Every kind of job names a runner that exists (found, not imported: a runner may load torch)."""
    problems = []
    for label, runner in registry().items():
        module, _, function = runner.rpartition(".")
        if not (module and function and importlib.util.find_spec(module)):
            problems.append(
                Error(
                    f"{label} names the runner {runner!r}, which cannot be found.",
                    hint='Set runner = "evalsite.<app>.runner.<function>" on the model.',
                    id="core.E004",
                )
            )
    return problems


@register(SERVICES, deploy=True)
def check_services(app_configs=None, **kwargs):
    problems = []
    ok, detail = database_status()
    if not ok:
        problems.append(Error(f"The database is unreachable: {detail}", hint="Check DATABASE_URL.", id="core.E010"))
    ok, detail = broker_status()
    if not ok:
        problems.append(
            Error(
                f"The Celery broker is unreachable: {detail}",
                hint="Check CELERY_BROKER_URL, or start the broker (e.g. redis-server).",
                id="core.E011",
            )
        )
    return problems
