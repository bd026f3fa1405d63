"""Restarts suite (issue 13): the web server and a qcluster keep working when PostgreSQL
and Redis restart under them mid-job.

The test starts its own PostgreSQL (initdb into a temporary folder, its own port, trust
auth) and its own redis-server (no persistence) on free ports, so the machine's services
are never touched; it skips when those binaries are missing. Everything Django does runs
in subprocesses (migrate, shell, convert, qcluster, runserver) on that database; the test
reads progress with psycopg directly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from tests.jobutil import API_KEY, Cluster, wait_until

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS = shutil.which("redis-server")

pytestmark = [
    pytest.mark.own_services,
    pytest.mark.skipif(
        not (PG_BIN / "initdb").exists() or not REDIS,
        reason="needs PostgreSQL 15's initdb/pg_ctl and redis-server",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres_user(command: list) -> list:
    """PostgreSQL refuses to run as root: under root, run it as the system's postgres."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *map(str, command)]
    return command


class Postgres:
    """A throw-away PostgreSQL cluster in a temporary folder, on 127.0.0.1:port only."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mathconv-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self.log = self.folder / "postgres.log"
        subprocess.run(
            as_postgres_user(
                [PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        self.start()
        with self.connect("postgres") as conn:
            conn.autocommit = True
            conn.execute("CREATE DATABASE mathconv")

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            as_postgres_user([PG_BIN / "pg_ctl", "-D", self.data, *args]),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self.pg_ctl("-o", options, "-l", str(self.log), "-w", "start")

    def restart(self) -> None:
        """A fast shutdown (every connection is cut) and a start on the same port."""
        self.pg_ctl("-m", "fast", "-w", "stop")
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def connect(self, dbname: str = "mathconv"):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/mathconv"


class Redis:
    """redis-server on its own port, nothing saved to disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _listening(self.port), timeout=20)

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def stack(tmp_path, fake_openai_factory):
    """PostgreSQL, Redis and a slow fake LLM; yields (postgres, redis, env, server)."""
    postgres = Postgres()
    redis = Redis()
    server = fake_openai_factory(latency=0.4)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "MATHCONV_", "DJANGO_", "Q_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="mathconv.settings",
        SECRET_KEY="restart-test-secret-key-not-for-production",
        DATABASE_URL=postgres.url,
        REDIS_URL=f"redis://127.0.0.1:{redis.port}/0",
        MATHCONV_VAR_DIR=str(tmp_path / "var"),
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=server.base_url,
        MATHCONV_TASK_BUDGET_SECONDS="3",  # continuations are queued through Redis often
        # A task that lost its connection leaves its items leased and its job's heartbeat
        # to go stale: the reconciler (the cluster's schedule, every 30 s) queues the job
        # again one lease after that. 10 s instead of the default 30 s.
        MATHCONV_LEASE_SECONDS="10",
        Q_WORKERS="2",
    )
    manage(env, "migrate", "-v", "0")
    try:
        yield postgres, redis, env, server
    finally:
        redis.stop()
        postgres.stop()


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def make_questions(env: dict, count: int, prefix: str, start: int) -> None:
    """`count` questions with formulas no earlier job converted (so no cache hit)."""
    manage(
        env,
        "shell",
        "-c",
        "from conversions.models import Question;"
        "from tests.jobutil import fraction;"
        f"Question.objects.bulk_create(Question(question_id=f'{prefix}-{{n}}', mathml=fraction(n))"
        f" for n in range({start}, {start + count}))",
    )


def job_state(postgres: Postgres, job_id: int) -> tuple[str, dict[str, int]]:
    """(job status, {item status: count}); retried until the database answers."""
    for _ in range(100):
        try:
            with postgres.connect() as conn:
                status = conn.execute(
                    "SELECT status FROM conversions_job WHERE id = %s", [job_id]
                ).fetchone()[0]
                counts = dict(
                    conn.execute(
                        "SELECT status, count(*) FROM conversions_item WHERE job_id = %s"
                        " GROUP BY status",
                        [job_id],
                    ).fetchall()
                )
                return status, counts
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise AssertionError("the test's PostgreSQL did not come back")


def latest_job(postgres: Postgres) -> int:
    with postgres.connect() as conn:
        return conn.execute("SELECT max(id) FROM conversions_job").fetchone()[0]


def page_status(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=30) as r:
        return r.status


def run_job_across(
    restart, postgres: Postgres, env: dict, prefix: str, start: int, count: int = 40
) -> dict:
    """Queue a convert job over `count` new questions, call restart() once a quarter of the
    items succeeded, and wait for the job to end; return its item counts."""
    make_questions(env, count, prefix, start=start)
    manage(
        env,
        "convert",
        "--backend",
        "openai",
        "--batch-size",
        "10",
        "--max-concurrent",
        "2",
        "--only-unconverted",
        "--name",
        prefix,
    )
    job_id = latest_job(postgres)
    wait_until(lambda: job_state(postgres, job_id)[1].get("succeeded", 0) >= count // 4, 120)
    before = job_state(postgres, job_id)[1]
    assert before.get("succeeded", 0) < count, "the job ended before the restart: make it longer"
    restart()
    wait_until(lambda: job_state(postgres, job_id)[0] not in ("queued", "running"), 240, 0.5)
    status, counts = job_state(postgres, job_id)
    assert (status, counts) == ("completed", {"succeeded": count})
    return counts


def test_web_and_workers_survive_postgres_and_redis_restarts_mid_job(stack):
    postgres, redis, env, server = stack
    web_port = free_port()
    web = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{web_port}", "--noreload"],
        cwd=ROOT,
        env={**env, "DEBUG": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cluster = Cluster()
    cluster.env = env
    cluster.start()
    try:
        wait_until(lambda: _listening(web_port), 60)
        assert page_status(web_port) == 200

        run_job_across(postgres.restart, postgres, env, "PG", start=1000)
        assert web.poll() is None and cluster.proc.poll() is None
        assert page_status(web_port) == 200  # the web process reconnected

        run_job_across(redis.restart, postgres, env, "RD", start=2000)
        assert web.poll() is None and cluster.proc.poll() is None
        assert page_status(web_port) == 200
    finally:
        cluster.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(web.pid, 15)
        web.wait(20)
