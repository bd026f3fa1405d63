"""One settings file, read from the environment, with defaults that run a fresh checkout.

SQLite under var/ and django-q2's ORM broker need no set-up; DATABASE_URL and REDIS_URL
switch to PostgreSQL and Redis for production.
"""

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MATHCONV_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def database_from_url(url: str) -> dict:
    """Turn postgres://user:pass@host:port/name or sqlite:///path into a DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if path.startswith("//"):  # sqlite:////abs/path
            path = path[1:]
        elif path.startswith("/"):
            path = path[1:] if not Path(path).is_absolute() else path
        return sqlite_database(Path(path) if path else VAR_DIR / "mathconv.sqlite3")
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        options = dict(parse_qsl(parsed.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
            "TEST": {"NAME": os.environ.get("TEST_DATABASE_NAME") or None},
        }
    raise ImproperlyConfigured(f"DATABASE_URL scheme {parsed.scheme!r} is not supported")


def sqlite_database(path: Path) -> dict:
    # WAL lets readers (the admin) work while a worker writes; IMMEDIATE transactions take
    # the write lock at BEGIN, so two workers queue on busy_timeout instead of failing
    # with "database is locked" when both try to upgrade a read lock.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA busy_timeout=30000;"
                "PRAGMA foreign_keys=ON;"
            ),
        },
        "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
    }


DEBUG = env_bool("DEBUG", False)

ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
    if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

# Local or production. A run is production when MATHCONV_ENV=production, or when DEBUG is
# off and ALLOWED_HOSTS names any host other than this machine's own names (a server that
# answers for a real domain). Everything else is a local run: a checkout on a laptop,
# `make demo`, `make serve`, the CLI. MATHCONV_ENV=local forces a local run.
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", ".localhost", "testserver"}
MATHCONV_ENV = os.environ.get("MATHCONV_ENV", "").strip().lower()
if MATHCONV_ENV not in {"", "local", "production"}:
    raise ImproperlyConfigured(
        f"MATHCONV_ENV={MATHCONV_ENV!r}: use 'production', 'local' or leave it unset."
    )
PRODUCTION = MATHCONV_ENV == "production" or (
    MATHCONV_ENV != "local" and not DEBUG and any(h not in LOCAL_HOSTS for h in ALLOWED_HOSTS)
)


def local_secret_key(path: Path) -> str:
    """The secret key of a local run, generated once into `path` (mode 0600) and reused.

    Several processes may start at once (`make serve`): the key is written to a temporary
    file and linked into place, so that every process reads the same complete key.
    """
    from django.core.management.utils import get_random_secret_key

    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(get_random_secret_key() + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set, and this is a production run (MATHCONV_ENV=production, "
            "or ALLOWED_HOSTS names hosts other than localhost). Set SECRET_KEY in the "
            "environment, e.g. to the output of: python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = local_secret_key(VAR_DIR / "secret_key")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before django_q: its qcluster command replaces django-q2's (it stops on a SIGTERM
    # to the whole process group; see conversions/management/commands/qcluster.py).
    "conversions",
    "django_q",
    "import_export",
    # Development tooling: only the `fake_openai` command (no models, no URLs).
    "mathconv_dev",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mathconv.urls"
WSGI_APPLICATION = "mathconv.wsgi.application"
ASGI_APPLICATION = "mathconv.asgi.application"

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

DATABASES = {
    "default": (
        database_from_url(os.environ["DATABASE_URL"])
        if os.environ.get("DATABASE_URL")
        else sqlite_database(VAR_DIR / "mathconv.sqlite3")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# The UI follows the browser's Accept-Language (LocaleMiddleware); LANGUAGE_CODE is the
# fallback and can be set to "ko" for a Korean team.
LANGUAGE_CODE = os.environ.get("LANGUAGE_CODE", "en")
LANGUAGES = [("en", _("English")), ("ko", _("Korean"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("TIME_ZONE", "Asia/Seoul")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
# WhiteNoise serves static files from the WSGI process itself, DEBUG or not: from
# STATIC_ROOT after `collectstatic` (production), and also straight from the app and
# project folders on a local run, so that a checkout needs no collectstatic.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", not PRODUCTION)
if WHITENOISE_USE_FINDERS:
    # WhiteNoise warns at start-up about a missing STATIC_ROOT even when it serves from
    # the finders; before any collectstatic that folder is simply empty.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

DATA_UPLOAD_MAX_NUMBER_FIELDS = 20000

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_HTTPONLY = False
    X_FRAME_OPTIONS = "DENY"
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"

# --- HTTPS (production) ------------------------------------------------------------
# On by default in production, off on a local run (plain http://127.0.0.1); each can be
# set from the environment. SECURE_PROXY_SSL_HEADER is for a TLS-terminating proxy that
# sets the header on every request (and strips it from clients): "HTTP_X_FORWARDED_PROTO,https".
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
_proxy_header = os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip()
if _proxy_header:
    _name, _comma, _value = _proxy_header.partition(",")
    if not _value.strip():
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER must be 'HEADER,value', e.g. 'HTTP_X_FORWARDED_PROTO,https'"
        )
    SECURE_PROXY_SSL_HEADER = (_name.strip(), _value.strip())

# --- the LLM endpoint -------------------------------------------------------------
# The key is read from the environment only; it is never stored in the database,
# written to a log line or shown on a page.
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "") or None
OPENAI_TIMEOUT = float(os.environ.get("OPENAI_TIMEOUT", "60"))
MATHCONV_DEFAULT_CONVERT_MODEL = os.environ.get("MATHCONV_DEFAULT_CONVERT_MODEL", "gpt-4.1-mini")
MATHCONV_DEFAULT_LABEL_MODEL = os.environ.get("MATHCONV_DEFAULT_LABEL_MODEL", "gpt-4o-mini")
# Few-shot conversion prompts from the team's reviewed results (conversions/fewshot.py):
# the default of `convert --few-shot` and of the launch form's checkbox. Off by default.
MATHCONV_FEW_SHOT = env_bool("MATHCONV_FEW_SHOT", False)

# --- input limits -------------------------------------------------------------------
MATHCONV_MAX_MATHML_BYTES = env_int("MATHCONV_MAX_MATHML_BYTES", 200_000)
MATHCONV_MAX_MATHML_DEPTH = env_int("MATHCONV_MAX_MATHML_DEPTH", 100)
# Imports (import_questions and the admin) refuse a source beyond these bounds before
# reading further, with a message naming the limit and the row (README: Importing).
MATHCONV_IMPORT_MAX_COLUMNS = env_int("MATHCONV_IMPORT_MAX_COLUMNS", 200)
MATHCONV_IMPORT_MAX_ROWS = env_int("MATHCONV_IMPORT_MAX_ROWS", 1_000_000)
MATHCONV_IMPORT_MAX_CELL_CHARS = env_int("MATHCONV_IMPORT_MAX_CELL_CHARS", 1_000_000)
MATHCONV_IMPORT_MAX_JSON_DEPTH = env_int("MATHCONV_IMPORT_MAX_JSON_DEPTH", 20)
# The admin holds an upload's rows in memory for its preview: bigger files go through
# import_questions.
MATHCONV_ADMIN_IMPORT_MAX_ROWS = env_int("MATHCONV_ADMIN_IMPORT_MAX_ROWS", 50_000)
MATHCONV_ADMIN_IMPORT_MAX_BYTES = env_int("MATHCONV_ADMIN_IMPORT_MAX_BYTES", 50_000_000)
# The admin's uploads between preview and confirmation (conversions.importing.uploads):
# a folder every web process can read; on several machines, a shared disk.
IMPORT_EXPORT_TMP_STORAGE_CLASS = "conversions.importing.uploads.UploadStorage"
MATHCONV_UPLOAD_DIR = Path(os.environ.get("MATHCONV_UPLOAD_DIR", VAR_DIR / "uploads"))
MATHCONV_UPLOAD_MAX_AGE_SECONDS = env_int("MATHCONV_UPLOAD_MAX_AGE_SECONDS", 6 * 3600)
MATHCONV_LOG_DIR = Path(os.environ.get("MATHCONV_LOG_DIR", VAR_DIR / "logs"))
MATHCONV_EXPORT_DIR = Path(os.environ.get("MATHCONV_EXPORT_DIR", VAR_DIR / "exports"))

# --- jobs ---------------------------------------------------------------------------
# A worker holds its claimed items for MATHCONV_LEASE_SECONDS and renews the lease every
# quarter of it while it lives; items of a killed worker are claimed again once their
# lease expires, and a live task of the same job (or the reconciler) queues a task in
# place of the dead one then: a short lease is a short stall after a kill. A task
# works for at most MATHCONV_TASK_BUDGET_SECONDS (well under Q_CLUSTER timeout), then
# enqueues a continuation of itself.
MATHCONV_LEASE_SECONDS = env_int("MATHCONV_LEASE_SECONDS", 30)
MATHCONV_TASK_BUDGET_SECONDS = env_int("MATHCONV_TASK_BUDGET_SECONDS", 600)
# An LLM job with max_concurrent C runs as ceil(C / this) tasks side by side (at most one
# per cluster worker), so that one process's CPU does not cap its throughput.
MATHCONV_CONCURRENCY_PER_TASK = env_int("MATHCONV_CONCURRENCY_PER_TASK", 25)
# Batch API mode (conversions/batchapi.py): open remote batches are polled by the
# "mathconv: poll remote batches" schedule every minute and, when this is shorter, by
# every qcluster every MATHCONV_BATCH_POLL_SECONDS; a file holds at most this many
# requests and bytes (OpenAI's limits: 50,000 requests, 200 MB), larger jobs are split.
MATHCONV_BATCH_POLL_SECONDS = env_int("MATHCONV_BATCH_POLL_SECONDS", 60)
MATHCONV_BATCH_MAX_REQUESTS = env_int("MATHCONV_BATCH_MAX_REQUESTS", 50_000)
MATHCONV_BATCH_MAX_BYTES = env_int("MATHCONV_BATCH_MAX_BYTES", 200_000_000)

# --- notifications ------------------------------------------------------------------
# When a job ends (or pauses itself), a message goes to each configured channel: e-mail
# to MATHCONV_NOTIFY_EMAILS (through Django's mail settings below) and a Slack-compatible
# incoming webhook at MATHCONV_SLACK_WEBHOOK_URL (a secret: read from the environment
# only, never stored or logged). The message links to the job page under MATHCONV_BASE_URL.
MATHCONV_NOTIFY_EMAILS = [
    a.strip() for a in os.environ.get("MATHCONV_NOTIFY_EMAILS", "").split(",") if a.strip()
]
MATHCONV_SLACK_WEBHOOK_URL = os.environ.get("MATHCONV_SLACK_WEBHOOK_URL", "").strip()
MATHCONV_BASE_URL = os.environ.get("MATHCONV_BASE_URL", "").strip().rstrip("/") or (
    f"https://{ALLOWED_HOSTS[0].lstrip('.')}"
    if PRODUCTION and ALLOWED_HOSTS
    else f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
)
MATHCONV_NOTIFY_LANGUAGE = os.environ.get("MATHCONV_NOTIFY_LANGUAGE", "") or LANGUAGE_CODE
MATHCONV_NOTIFY_TIMEOUT = float(os.environ.get("MATHCONV_NOTIFY_TIMEOUT", "10"))
# Seconds before each retry of a failed delivery; its length is the number of retries.
# Waits up to MATHCONV_NOTIFY_WAIT_IN_TASK happen inside the sending task, longer ones
# through the reconciler schedule (every minute).
MATHCONV_NOTIFY_RETRY_DELAYS = [
    float(s)
    for s in os.environ.get("MATHCONV_NOTIFY_RETRY_DELAYS", "2,10,60,300,1800,3600").split(",")
    if s.strip()
]
MATHCONV_NOTIFY_WAIT_IN_TASK = float(os.environ.get("MATHCONV_NOTIFY_WAIT_IN_TASK", "15"))
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "mathconv@localhost")

# --- the queue ----------------------------------------------------------------------
# django-q2's ORM broker re-delivers a task `retry` seconds after a worker prefetched
# it, so timeout < retry keeps a still-running task from being handed to a second
# worker, and a small queue_limit keeps prefetched (not yet running) tasks few. Tasks
# are written so that a duplicate delivery is harmless anyway: items are claimed with a
# lease, and a finished item is never claimed again.
REDIS_URL = os.environ.get("REDIS_URL", "")
Q_CLUSTER: dict[str, Any] = {
    # The queue's name (and Redis key prefix): every web and worker process of one site
    # uses the same; two sites sharing a Redis use two names.
    "name": os.environ.get("Q_NAME", "mathconv"),
    "workers": env_int("Q_WORKERS", 2),
    "recycle": 200,
    "timeout": env_int("Q_TIMEOUT", 900),
    "retry": env_int("Q_RETRY", 1200),
    "max_attempts": 3,
    "queue_limit": env_int("Q_QUEUE_LIMIT", 4),
    "bulk": 1,
    "ack_failures": True,
    "catch_up": False,
    # Keep the last 1000 successes per function, so that the reconciler's run every minute
    # does not push the conversion tasks' results out of the admin's "Successful tasks".
    "save_limit": 1000,
    "save_limit_per": "func",
    # Cluster and worker stats (qinfo, qmonitor, the dashboard's "clusters alive") go
    # through a cache that every process shares: Redis with REDIS_URL, else the database.
    "cache": "queue",
    "label": _("Task queue (django-q2)"),
}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "queue": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": Q_CLUSTER["name"],
        }
        if REDIS_URL
        else {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "mathconv_cache",
        }
    ),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
if env_bool("Q_SYNC", False):
    Q_CLUSTER["sync"] = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        "django_q": {"level": os.environ.get("Q_LOG_LEVEL", "WARNING")},
    },
}
