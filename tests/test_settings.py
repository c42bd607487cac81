"""Settings come from the environment; a bad configuration is reported clearly."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_manage(args, tmp_path, **env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG")}
    env.update({"EVALSITE_VAR_DIR": str(tmp_path / "var")}, **env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_secret_key_is_required_when_debug_is_off(tmp_path):
    result = run_manage(["check"], tmp_path, DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set and DEBUG is off" in result.stderr


def test_a_development_secret_key_is_generated_once_into_var(tmp_path):
    assert run_manage(["check"], tmp_path, DEBUG="1").returncode == 0
    key_file = tmp_path / "var" / "secret_key"
    first = key_file.read_text()
    assert len(first) >= 50 and oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert run_manage(["check"], tmp_path, DEBUG="1").returncode == 0
    assert key_file.read_text() == first


def test_the_embedded_default_uses_sqlite_and_a_serverless_broker_under_var(tmp_path):
    code = (
        "from django.conf import settings as s; d = s.DATABASES['default']; "
        "print(d['ENGINE'], d['NAME'], d['OPTIONS']['transaction_mode'], d['OPTIONS']['timeout']); "
        "print(s.CELERY_BROKER_URL, s.CELERY_BROKER_TRANSPORT_OPTIONS['data_folder_in'], "
        "s.CELERY_BROKER_TRANSPORT_OPTIONS['store_processed'])"
    )
    result = run_manage(["shell", "--no-imports", "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    db_line, broker_line = result.stdout.split("\n")[:2]
    var = tmp_path / "var"
    assert db_line == f"django.db.backends.sqlite3 {var / 'evalsite.sqlite3'} IMMEDIATE 30"
    assert broker_line == f"filesystem://localhost// {var / 'broker' / 'queue'} False"


def test_an_unknown_broker_scheme_fails_the_system_check(tmp_path):
    result = run_manage(["check"], tmp_path, CELERY_BROKER_URL="rabbit://nowhere")
    assert result.returncode != 0
    assert "core.E001" in result.stderr and "unknown scheme 'rabbit'" in result.stderr


def test_a_heartbeat_too_slow_for_the_stale_limit_fails_the_check(tmp_path):
    result = run_manage(["check"], tmp_path, JOB_HEARTBEAT_SECONDS="30", JOB_STALE_AFTER_SECONDS="60")
    assert result.returncode != 0 and "core.E003" in result.stderr


def test_doctor_reports_an_unreachable_broker(tmp_path):
    assert run_manage(["migrate", "-v0"], tmp_path).returncode == 0
    result = run_manage(["doctor"], tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 1
    assert "broker     FAIL redis://127.0.0.1:1/0" in result.stdout
    assert "1 check(s) failed" in result.stderr


def test_doctor_reports_a_database_it_cannot_reach(tmp_path):
    result = run_manage(["doctor"], tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:1/nope")
    assert result.returncode == 1
    assert "database   FAIL postgresql nope" in result.stdout


@pytest.mark.parametrize("url", ["postgres://postgres@127.0.0.1:5432/evalsite", "redis://127.0.0.1:6379/3"])
def test_production_urls_are_read_from_the_environment(tmp_path, url):
    var = "DATABASE_URL" if url.startswith("postgres") else "CELERY_BROKER_URL"
    code = "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)"
    result = run_manage(["shell", "--no-imports", "-c", code], tmp_path, **{var: url})
    assert result.returncode == 0, result.stderr
    if var == "DATABASE_URL":
        assert result.stdout.startswith("django.db.backends.postgresql ")
    else:
        assert result.stdout.strip().endswith(url)


@pytest.mark.parametrize(
    "cache_url, engine",
    [
        ("", "django.contrib.sessions.backends.db"),
        ("locmemcache://", "django.contrib.sessions.backends.db"),
        ("redis://127.0.0.1:6379/3", "evalsite.core.sessions"),  # cached_db, falling back to the database
    ],
)
def test_sessions_are_read_from_the_cache_only_when_every_web_process_shares_it(tmp_path, cache_url, engine):
    code = "from django.conf import settings as s; print(s.SESSION_ENGINE)"
    overrides = {"CACHE_URL": cache_url} if cache_url else {}
    result = run_manage(["shell", "--no-imports", "-c", code], tmp_path, **overrides)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == engine


def test_the_wsgi_app_loads_its_views_then_freezes_them_out_of_full_collections(tmp_path):
    """A full collection over the ~90,000 objects of a loaded Django app stalls every thread of a
    web worker for tens of milliseconds; what exists once the app is loaded is frozen instead."""
    code = (
        "import gc, sys, time; import evalsite.wsgi; "
        "print(gc.get_freeze_count(), 'evalsite.annotation.views' in sys.modules, len(gc.get_objects()))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["EVALSITE_VAR_DIR"] = str(tmp_path / "var")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    frozen, views_loaded, still_tracked = result.stdout.split()
    assert views_loaded == "True" and int(frozen) > 20_000 and int(still_tracked) < int(frozen) / 10


def test_the_demos_own_server_is_not_warned_about_being_one_machine(tmp_path):
    """With DEBUG off on SQLite and the filesystem broker a deployment is warned (core.W001,
    core.W002); the demo's web server runs that way on purpose and starts without them."""
    from evalsite.pipeline.serve import web_environment

    (tmp_path / "var").mkdir()
    deployed = run_manage(["check"], tmp_path, DEBUG="0", SECRET_KEY="x" * 50)
    assert deployed.returncode == 0
    assert "core.W001" in deployed.stderr and "core.W002" in deployed.stderr
    demo = web_environment()
    assert demo["EVALSITE_ONE_MACHINE"] == "1" and demo["DEBUG"] == "0"
    quiet = run_manage(["check"], tmp_path, DEBUG="0", SECRET_KEY="x" * 50, EVALSITE_ONE_MACHINE="1")
    assert quiet.returncode == 0 and "core.W00" not in quiet.stderr + quiet.stdout
