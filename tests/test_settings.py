import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from mathconv.settings import database_from_url

ROOT = Path(__file__).resolve().parent.parent


def test_postgres_url_is_parsed():
    db = database_from_url("postgres://app:s%40cret@db.example:6543/bank?sslmode=require")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "app",
        "s@cret",
        "db.example",
        "6543",
        "bank",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_sqlite_default_uses_wal_and_immediate_transactions():
    db = database_from_url("sqlite:////tmp/x.sqlite3")
    assert str(db["NAME"]) == "/tmp/x.sqlite3"
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]


def test_queue_timeout_is_below_retry():
    assert settings.Q_CLUSTER["timeout"] < settings.Q_CLUSTER["retry"]
    assert settings.Q_CLUSTER["max_attempts"] >= 1


def test_missing_secret_key_is_refused_when_debug_is_off():
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    result = subprocess.run(
        [sys.executable, "-c", "import django; from django.conf import settings; settings.DEBUG"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "mathconv.settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
