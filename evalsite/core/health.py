"""What ``manage.py doctor`` reports: each function answers (ok, detail) and never raises; and
``wait_for_http``, the wait for a server to answer."""

from __future__ import annotations

import time
import urllib.request

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from evalsite.celery import app
from evalsite.env import redact_url


def database_status() -> tuple[bool, str]:
    conn = connections[DEFAULT_DB_ALIAS]
    try:
        conn.ensure_connection()
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return False, f"{conn.vendor} {conn.settings_dict.get('NAME')}: {exc}".strip()
    name = conn.settings_dict.get("NAME")
    host = conn.settings_dict.get("HOST") or "local"
    return True, f"{conn.vendor} {name} ({host})"


def pending_migrations() -> list[str]:
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


def broker_status(timeout: float = 3.0) -> tuple[bool, str]:
    url = redact_url(settings.CELERY_BROKER_URL)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:
        return False, f"{url}: {type(exc).__name__}: {exc}"
    return True, url


def live_workers(timeout: float = 2.0) -> dict[str, list[str]]:
    """Worker node name -> queues it consumes, for workers that answer a ping in time."""
    inspector = app.control.inspect(timeout=timeout)
    replies = inspector.active_queues() or {}
    return {node: sorted(q["name"] for q in queues) for node, queues in replies.items()}


def wait_for_http(url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 (our own local server)
                if reply.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False
