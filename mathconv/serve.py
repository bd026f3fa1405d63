"""`make serve`: the production stack on one machine, in the foreground until Ctrl-C.

    python -m mathconv.serve [--port 8000] [--host 127.0.0.1] [--web-workers 2] [--clusters 2]

It runs what a production deployment runs, with DEBUG off: `collectstatic`, `migrate`,
gunicorn (static files served by WhiteNoise from the same process) and two django-q2
clusters. The database and the broker are chosen before Django starts:

- DATABASE_URL and REDIS_URL are used as they are when set (set one to an empty string
  to keep SQLite or the ORM broker);
- otherwise PostgreSQL at 127.0.0.1:5432 (user postgres, database `mathconv`, created if
  missing) and Redis at 127.0.0.1:6379 are used when they answer;
- otherwise SQLite under var/ and django-q2's ORM broker.

The run is local (http, a secret key generated into var/) unless the environment says
production (MATHCONV_ENV=production, or ALLOWED_HOSTS naming a real domain: see
mathconv/settings.py), in which case SECRET_KEY must be set and HTTPS is enforced.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL_PG = "postgres://postgres@127.0.0.1:5432/mathconv"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts a TCP connection on host:port within `timeout` s."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_postgres_database(url: str) -> bool:
    """Create the database of a postgres:// URL if it is missing; False if unusable."""
    import psycopg
    from psycopg import sql

    base, _, name = url.rpartition("/")
    try:
        with psycopg.connect(f"{base}/postgres", connect_timeout=3, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        print(f"PostgreSQL at {base} is not usable ({exc}); using SQLite.", flush=True)
        return False
    return True


def stack_env(environ: dict[str, str]) -> dict[str, str]:
    """The environment of every process of the stack: DEBUG off, database and broker chosen.

    Variables already set are kept (an empty DATABASE_URL or REDIS_URL means SQLite or the
    ORM broker); unset ones are filled with the local PostgreSQL and Redis when reachable.
    """
    env = dict(environ)
    env["DEBUG"] = "0"
    env.setdefault("DJANGO_SETTINGS_MODULE", "mathconv.settings")
    if "DATABASE_URL" not in env:
        use_pg = reachable("127.0.0.1", 5432) and ensure_postgres_database(LOCAL_PG)
        env["DATABASE_URL"] = LOCAL_PG if use_pg else ""
    if "REDIS_URL" not in env:
        env["REDIS_URL"] = LOCAL_REDIS if reachable("127.0.0.1", 6379) else ""
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="web port (8000)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--clusters", type=int, default=2, help="qcluster processes (2)")
    args = parser.parse_args(argv)

    if reachable(args.host if args.host != "0.0.0.0" else "127.0.0.1", args.port):  # noqa: S104
        print(f"Port {args.port} is in use: choose another, e.g. `make serve PORT=8100`.")
        return 2
    env = stack_env(dict(os.environ))
    python = sys.executable
    manage = [python, str(ROOT / "manage.py")]
    database = env["DATABASE_URL"] or "SQLite under var/"
    broker = env["REDIS_URL"] or "the database (ORM broker)"
    print(f"database: {database.split('@')[-1]}\nbroker:   {broker}", flush=True)
    for step in (["collectstatic", "--noinput", "-v", "0"], ["migrate", "--noinput", "-v", "0"]):
        print("manage.py " + " ".join(step[:1]), flush=True)
        subprocess.run([*manage, *step], env=env, cwd=ROOT, check=True)

    children: dict[str, subprocess.Popen] = {}

    def stop() -> None:
        # Each child leads its own process group (so that Ctrl-C reaches only this
        # process, which stops them in order); what has not exited after 30 s is killed
        # with its whole group, worker processes included.
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()

    def on_signal(signum, _frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        children["gunicorn"] = subprocess.Popen(
            [
                python,
                "-m",
                "gunicorn",
                "mathconv.wsgi",
                "--bind",
                f"{args.host}:{args.port}",
                "--workers",
                str(args.web_workers),
                "--timeout",
                "120",
                "--access-logfile",
                "-",
            ],
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        for n in range(1, args.clusters + 1):
            children[f"qcluster {n}"] = subprocess.Popen(
                [*manage, "qcluster"], env=env, cwd=ROOT, start_new_session=True
            )
        print(
            f"\nmathconv (DEBUG off) is running: http://{args.host}:{args.port}/admin/  "
            f"gunicorn x{args.web_workers}, {args.clusters} qclusters. Ctrl-C stops it.",
            flush=True,
        )
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited ({child.returncode}); stopping the rest.", flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
