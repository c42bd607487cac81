"""Configuration helpers: everything comes from environment variables, with defaults that work
on a laptop. It needs nothing of Django but its ImproperlyConfigured error (no settings, no
apps), so settings.py, the Celery app and tests can use it before Django is set up."""

from __future__ import annotations

import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def load_or_create_secret_key(var_dir: Path) -> str:
    """A development key generated once into var/, so sessions survive restarts."""
    path = var_dir / "secret_key"
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


def resolve_secret_key(configured: str, debug: bool, var_dir: Path) -> str:
    if configured:
        return configured
    if debug:
        return load_or_create_secret_key(var_dir)
    raise ImproperlyConfigured(
        "SECRET_KEY is not set and DEBUG is off. Set SECRET_KEY in the environment to a long "
        "random string (for example: python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
        "or set DEBUG=1 for a local setup with a generated key."
    )


def filesystem_broker_options(broker_dir: Path) -> dict:
    """kombu's filesystem transport: no server, works with solo, threads and prefork workers.

    data_folder_in and data_folder_out must be the same folder (a producer writes where a
    consumer reads); the control folder carries broadcasts (ping, inspect); processed messages
    are not kept."""
    queue_dir = broker_dir / "queue"
    control_dir = broker_dir / "control"
    for folder in (queue_dir, control_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue_dir),
        "data_folder_out": str(queue_dir),
        "control_folder": str(control_dir),
        "store_processed": False,
        "polling_interval": 0.1,
    }


def redact_url(url: str) -> str:
    """Hide a password in a URL before it is printed."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"
