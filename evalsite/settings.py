"""Django settings. Every value can be set from the environment (see the README's table)."""

from __future__ import annotations

import os
from pathlib import Path

import environ
from csp.constants import NONCE

from evalsite.env import BASE_DIR, filesystem_broker_options, resolve_secret_key

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env.str("EVALSITE_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = resolve_secret_key(env.str("SECRET_KEY", default=""), DEBUG, VAR_DIR)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "evalsite.core",
    "evalsite.catalog",
    "evalsite.answering",
    "evalsite.annotation",
    "evalsite.crowd",
    "evalsite.judging",
    "evalsite.dashboard",
    "evalsite.finetune",
    "evalsite.arena",
    "evalsite.pipeline",
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "evalsite.urls"
WSGI_APPLICATION = "evalsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'evalsite.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Without IMMEDIATE transactions and a busy timeout, a worker and the web server writing at
    # the same time fail with "database is locked". WAL lets readers go on during a write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"  # the site's own login, not the admin's "Logged out" page
LOGIN_MAX_FAILURES = env.int("LOGIN_MAX_FAILURES", default=5)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=600)
# Every login form (the site's and the admin's) authenticates through the limit (core/login.py).
AUTHENTICATION_BACKENDS = ["evalsite.core.login.RateLimitedModelBackend"]
# Addresses (or networks) of the reverse proxies in front of the site: only from them is
# X-Forwarded-For believed for the client's address.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
# "open": logins go on when the cache is unreachable (logged); "closed": they are all refused.
LOGIN_LIMIT_WHEN_CACHE_DOWN = env.str("LOGIN_LIMIT_WHEN_CACHE_DOWN", default="open")
# How often (at most, per web process and study) a claim first returns expired claims to the pool.
CLAIM_SWEEP_SECONDS = env.int("CLAIM_SWEEP_SECONDS", default=10)
# On PostgreSQL, an annotator's next item is picked, taken and recorded in one SQL statement;
# off, claiming takes the portable path (a few ORM queries) that other databases use.
CLAIM_IN_ONE_STATEMENT = env.bool("CLAIM_IN_ONE_STATEMENT", default=True)
# Likewise an answer: the assignment closed, the judgment written and the votes counted at once.
SUBMIT_IN_ONE_STATEMENT = env.bool("SUBMIT_IN_ONE_STATEMENT", default=True)
# The login rate limit and other counters; use Redis (redis://HOST:6379/1) with several web processes.
CACHES = {
    "default": env.cache("CACHE_URL", default="locmemcache://"),
    # what each web process may keep to itself for a few seconds (a study's size, its last id,
    # when it last swept expired claims): no network round trip on the annotators' hot path
    "process": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "process"},
}
# Sessions are read from the cache (saving a query on every request) when the cache is shared by
# every web process (CACHE_URL=redis://...); a per-process cache would keep logged-out sessions
# alive in the other processes, so with it they are read from the database.
SHARED_CACHE = not CACHES["default"]["BACKEND"].endswith(("LocMemCache", "DummyCache"))
# evalsite.core.sessions is Django's cached_db that falls back to the database while the cache is down.
SESSION_ENGINE = env.str(
    "SESSION_ENGINE",
    default="evalsite.core.sessions" if SHARED_CACHE else "django.contrib.sessions.backends.db",
)
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="evaluation@localhost")
# how new studies hand out items (uniform or adaptive), and how often adaptive assignment looks
# again at which baseline is known least well (per web process)
STUDY_DEFAULT_ASSIGNMENT = env.str("STUDY_DEFAULT_ASSIGNMENT", default="uniform")
ADAPTIVE_REFRESH_SECONDS = env.float("ADAPTIVE_REFRESH_SECONDS", default=10.0)
# who hears that a study with a target precision has enough votes (comma-separated addresses)
STUDY_ENOUGH_EMAILS = env.list("STUDY_ENOUGH_EMAILS", default=[])
# the fastest anyone reads a comparison's prompt and two answers (words a minute; fast skimming is
# about 600, careful reading 250): an annotator whose median time is below what the words on their
# pages take at this speed is flagged, whatever their gold score
READING_WORDS_PER_MINUTE = env.float("READING_WORDS_PER_MINUTE", default=600.0)
# new crowd participants one client address may make on a link per window (anyone who sees a link
# can make up well-formed platform ids; `crowd reconcile` checks them against the platform)
CROWD_NEW_PARTICIPANTS_PER_ADDRESS = env.int("CROWD_NEW_PARTICIPANTS_PER_ADDRESS", default=10)
CROWD_ARRIVAL_WINDOW_SECONDS = env.int("CROWD_ARRIVAL_WINDOW_SECONDS", default=3600)
# where people reach the site: the base of every printed or mailed link (one-time logins, crowd
# links); unset, the demo's address (DEMO_PORT, 8000 by default; `manage.py demo --port` too)
DEMO_PORT = env.int("DEMO_PORT", default=8000)
# set by `manage.py demo` for its own web server: one machine by design (SQLite, the filesystem
# broker, DEBUG off so annotators see the site's error pages), so the checks that warn a deployment
# about those (core.W001, core.W002) stay quiet for it
ONE_MACHINE = env.bool("EVALSITE_ONE_MACHINE", default=False)
SITE_URL = env.str("SITE_URL", default=f"http://127.0.0.1:{DEMO_PORT}")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# behind HTTPS in production (README, "Running on PostgreSQL + Redis"): browsers told to come back
# over HTTPS only (HSTS, in seconds; start small), and plain HTTP sent to HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # a load balancer's plain-HTTP health check

# Content-Security-Policy (django-csp): scripts only from this site or with the page's nonce, no
# plugins, no framing, forms post here only. Answers are sanitised HTML (core/safe_html.py); this
# is the second wall should a script ever slip through. Inline style attributes stay allowed (the
# progress bars' widths).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- Celery -----------------------------------------------------------------------------------
# The database is the source of truth for long jobs (evalsite.core.jobs); the broker only
# carries "look at job N" messages, which may be lost or repeated without harm.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport, each message written whole before a worker can see it
    CELERY_BROKER_TRANSPORT = "evalsite.core.broker:FilesystemTransport"
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(VAR_DIR / "broker")
else:
    # Redis redelivers an unacknowledged message only after this many seconds.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="django-db")
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=6 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=6 * 3600 - 60)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Jobs: a running job whose heartbeat is older than this is taken to be dead and re-enqueued.
JOB_TRANSIENT_RETRIES = env.int("JOB_TRANSIENT_RETRIES", default=5)  # database blips a job rides out in a row
# how long a running job waits for a database that went away (a restart, a failover) before its
# worker gives it up; it is re-enqueued the moment the database is back
JOB_DB_OUTAGE_SECONDS = env.float("JOB_DB_OUTAGE_SECONDS", default=90.0)
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=5.0)
JOB_STALE_AFTER_SECONDS = env.float("JOB_STALE_AFTER_SECONDS", default=60.0)
# A queued job whose message was lost (broker crash) is sent again after this long.
JOB_RESEND_QUEUED_AFTER_SECONDS = env.float("JOB_RESEND_QUEUED_AFTER_SECONDS", default=600.0)
JOB_SWEEP_INTERVAL_SECONDS = env.float("JOB_SWEEP_INTERVAL_SECONDS", default=30.0)
STUDY_TARGET_CHECK_SECONDS = env.float("STUDY_TARGET_CHECK_SECONDS", default=60.0)
# workflows (ablations, checkpoint selection) advance when a job of theirs ends, and at this sweep
WORKFLOW_SWEEP_SECONDS = env.float("WORKFLOW_SWEEP_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-jobs": {
        "task": "core.sweep_stale_jobs",
        "schedule": JOB_SWEEP_INTERVAL_SECONDS,
        "options": {"queue": "default", "expires": JOB_SWEEP_INTERVAL_SECONDS},
    },
    "advance-workflows": {
        "task": "core.advance_workflows",
        "schedule": WORKFLOW_SWEEP_SECONDS,
        "options": {"queue": "default", "expires": WORKFLOW_SWEEP_SECONDS},
    },
    "check-study-targets": {
        "task": "dashboard.check_targets",
        "schedule": STUDY_TARGET_CHECK_SECONDS,
        "options": {"queue": "default", "expires": STUDY_TARGET_CHECK_SECONDS},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Models ------------------------------------------------------------------------------------
# Where hf_local systems and the bundled SmolLM2 live; checkpoints go under var/ by default.
MODELS_DIR = Path(env.str("EVALSITE_MODELS_DIR", default=str(VAR_DIR / "models")))
# hf_local systems with weights "int4" are converted once into this folder (generation/quantized.py)
os.environ.setdefault("EVALSITE_QUANTIZED_CACHE", str(MODELS_DIR / "quantized"))
# Training runs (their data, per-epoch checkpoints and resume state) live in one folder per run.
TRAINING_RUNS_DIR = Path(env.str("TRAINING_RUNS_DIR", default=str(MODELS_DIR / "runs")))
# Systems (names, comma-separated) a worker of the live queue loads as it starts, so that the first
# chat answer after the site starts does not wait for its model (evalsite/answering/chat.py)
CHAT_PRELOAD_SYSTEMS = env.str("CHAT_PRELOAD_SYSTEMS", default="")
# Empty: a worker trains in its own process. A command line (e.g. "accelerate launch --config_file
# training/accelerate/fsdp.yaml") runs the same training as `<launcher> -m training train ...`
# on as many GPUs and hosts as that config names; the job follows its progress file.
TRAINING_LAUNCHER = env.str("TRAINING_LAUNCHER", default="")

# --- Imports ---------------------------------------------------------------------------------
# Limits a file must stay within (a 50 MB prompt once made a 52 MB annotator page): past them the
# import is refused with the line and the limit, and nothing is kept.
IMPORT_MAX_FILE_BYTES = env.int("IMPORT_MAX_FILE_BYTES", default=512 * 2**20)
IMPORT_MAX_PROMPT_CHARS = env.int("IMPORT_MAX_PROMPT_CHARS", default=100_000)
IMPORT_MAX_RESPONSE_CHARS = env.int("IMPORT_MAX_RESPONSE_CHARS", default=200_000)

# --- The judge ---------------------------------------------------------------------------------
# Figure 2 carries a warning, with the numbers, when the judge's two orders agree less often than
# this, when the first- (or second-) shown answer wins more than this share of decided verdicts,
# or when more than this share of its verdicts cannot be read.
JUDGE_WARN_CONSISTENCY = env.float("JUDGE_WARN_CONSISTENCY", default=0.6)
JUDGE_WARN_POSITION_BIAS = env.float("JUDGE_WARN_POSITION_BIAS", default=0.75)
JUDGE_WARN_UNREADABLE = env.float("JUDGE_WARN_UNREADABLE", default=0.2)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"one_line_refusals": {"()": "evalsite.core.log_filters.OneLineRefusals"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        **{name: {"level": "WARNING"} for name in ("django.db.backends", "httpx", "httpx2", "openai")},
        "django.request": {"filters": ["one_line_refusals"]},
    },
}
