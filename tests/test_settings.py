import os
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
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


def settings_env(var_dir, **extra: str) -> dict[str, str]:
    """An environment with no project setting at all, plus `extra`."""
    drop = {"SECRET_KEY", "DEBUG", "MATHCONV_ENV", "ALLOWED_HOSTS", "MATHCONV_USE_TEST_DB"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SECURE_")}
    env.update(DJANGO_SETTINGS_MODULE="mathconv.settings", MATHCONV_VAR_DIR=str(var_dir))
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )


PRINT_KEY = "import django; from django.conf import settings; print(settings.SECRET_KEY)"


@pytest.mark.parametrize(
    "extra",
    [{"MATHCONV_ENV": "production"}, {"ALLOWED_HOSTS": "mathconv.example.org,localhost"}],
    ids=["MATHCONV_ENV", "ALLOWED_HOSTS"],
)
def test_production_without_secret_key_refuses_to_start(tmp_path, extra):
    result = run_python(PRINT_KEY, settings_env(tmp_path, **extra))
    assert result.returncode != 0
    assert "SECRET_KEY is not set, and this is a production run" in result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_local_run_generates_a_secret_key_once_into_var(tmp_path):
    first = run_python(PRINT_KEY, settings_env(tmp_path))
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.stdout.strip() == key_file.read_text().strip()
    assert len(first.stdout.strip()) >= 50
    second = run_python(PRINT_KEY, settings_env(tmp_path, ALLOWED_HOSTS="localhost"))
    assert second.stdout == first.stdout


def test_a_local_command_runs_without_any_setting(tmp_path):
    """The README's first CLI step on a fresh checkout: no DEBUG, no SECRET_KEY."""
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=settings_env(tmp_path, DATABASE_URL=""),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mathconv.sqlite3").exists()


def readme_production_env() -> dict[str, str]:
    """The variables of the README's production example (its `export` lines)."""
    text = (ROOT / "README.md").read_text()
    block = text[text.rindex("```bash", 0, text.index("export MATHCONV_ENV=production")) :]
    block = block[: block.index("```", 7)]
    env = {}
    for line in block.splitlines():
        if line.startswith("export "):
            for word in shlex.split(line[len("export ") :]):
                name, _, value = word.partition("=")
                env[name] = value
    return env


def test_check_deploy_is_clean_with_the_readme_production_settings(tmp_path):
    env = readme_production_env()
    assert env["MATHCONV_ENV"] == "production"
    env["SECRET_KEY"] = secrets.token_urlsafe(50)  # the README says how to make one
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=settings_env(tmp_path, **env),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_security_settings_follow_the_environment(tmp_path):
    code = (
        "import django; from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT,"
        " s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SECURE_PROXY_SSL_HEADER)"
    )
    production = settings_env(
        tmp_path,
        MATHCONV_ENV="production",
        SECRET_KEY="x" * 60,
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
        SECURE_HSTS_SECONDS="600",
    )
    assert run_python(code, production).stdout.split() == [
        "True",
        "600",
        "True",
        "True",
        "('HTTP_X_FORWARDED_PROTO',",
        "'https')",
    ]
    local = run_python(code, settings_env(tmp_path)).stdout.split()
    assert local == ["False", "0", "False", "False", "None"]


def test_queue_keeps_results_per_function_and_shares_its_cache():
    assert settings.Q_CLUSTER["save_limit_per"] == "func"
    cache = settings.CACHES[settings.Q_CLUSTER["cache"]]
    assert cache["BACKEND"] in {
        "django.core.cache.backends.db.DatabaseCache",
        "django.core.cache.backends.redis.RedisCache",
    }
