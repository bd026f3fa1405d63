#!/usr/bin/env python
"""Import benchmark: a 100,000-row CSV through `manage.py import_questions`.

Writes a CSV of N questions (demo-bank MathML and Korean text, unique ids), imports it
with import_questions in a subprocess into a fresh database, and prints rows/second and
the peak resident memory (ru_maxrss of that subprocess). It then re-imports the same file
(every row unchanged: skipped), and imports a file a tenth the size into another fresh
database, to show how memory grows with the rows: the import streams, so 10x the rows
should cost far less than 10x the memory.

    .venv/bin/python bench/import_questions.py                  # SQLite, 100,000 rows
    .venv/bin/python bench/import_questions.py --rows 20000
    .venv/bin/python bench/import_questions.py --postgres postgres://postgres@127.0.0.1:5432

With --postgres a scratch database is created on that server and dropped afterwards.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conversions.demo_data import demo_questions  # noqa: E402  (no Django needed)


def write_csv(path: Path, rows: int, prefix: str) -> int:
    with path.open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["question_id", "mathml", "text", "subject", "grade", "source"])
        for number, q in enumerate(demo_questions(rows), start=1):
            text = f"{q['text']} ({number})"
            writer.writerow(
                [f"{prefix}{number:07d}", q["mathml"], text, q["subject"], q["grade"], "bench"]
            )
    return path.stat().st_size


def manage(env: dict, *args: str) -> tuple[float, float, str]:
    """Run manage.py; return (seconds, peak RSS in MB, output)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = process.stdout.read().decode()
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{output}")
    return seconds, usage.ru_maxrss / 1024, output  # ru_maxrss is in KiB on Linux


class Database:
    """A fresh SQLite file in the work directory, or a scratch PostgreSQL database."""

    def __init__(self, workdir: Path, name: str, postgres: str | None):
        self.postgres = postgres
        self.name = f"mathconv_bench_{uuid.uuid4().hex[:8]}_{name}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mathconv.settings",
            "SECRET_KEY": "bench-only-secret-key",
            "DEBUG": "",
            "MATHCONV_VAR_DIR": str(workdir / name),
            "LOG_LEVEL": "WARNING",
        }
        if postgres:
            import psycopg

            with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            self.env["DATABASE_URL"] = f"{postgres}/{self.name}"
        else:
            self.env.pop("DATABASE_URL", None)
        manage(self.env, "migrate", "--noinput", "-v0")

    def drop(self) -> None:
        if self.postgres:
            import psycopg

            with psycopg.connect(f"{self.postgres}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="Rows in the big CSV.")
    parser.add_argument(
        "--postgres",
        metavar="SERVER_URL",
        help="Run on PostgreSQL: a server URL without database name, e.g. "
        "postgres://postgres@127.0.0.1:5432 (default: SQLite).",
    )
    args = parser.parse_args()
    small_rows = max(1, args.rows // 10)
    engine = "PostgreSQL" if args.postgres else "SQLite"

    with tempfile.TemporaryDirectory(prefix="mathconv-bench-import-") as tmp:
        workdir = Path(tmp)
        big, small = workdir / "big.csv", workdir / "small.csv"
        size = write_csv(big, args.rows, "B")
        write_csv(small, small_rows, "S")

        databases = []
        try:
            databases.append(db := Database(workdir, "big", args.postgres))
            base_s, base_mb, _ = manage(db.env, "check", "-v0")
            first_s, first_mb, first_out = manage(db.env, "import_questions", str(big))
            again_s, again_mb, again_out = manage(db.env, "import_questions", str(big))
            databases.append(db_small := Database(workdir, "small", args.postgres))
            _small_s, small_mb, _ = manage(db_small.env, "import_questions", str(small))
        finally:
            for database in databases:
                database.drop()

    print(f"import_questions on {engine}: a {args.rows:,}-row CSV ({size / 1e6:.1f} MB)")
    print(f"  {first_out.strip().splitlines()[-1]}")
    print(
        f"  first import: {args.rows / first_s:,.0f} rows/s ({first_s:.1f} s), "
        f"peak RSS {first_mb:.0f} MB"
    )
    print(f"  {again_out.strip().splitlines()[-1]}")
    print(
        f"  re-import (all unchanged): {args.rows / again_s:,.0f} rows/s ({again_s:.1f} s), "
        f"peak RSS {again_mb:.0f} MB"
    )
    print(f"  Django loaded, no import (manage.py check): peak RSS {base_mb:.0f} MB")
    print(
        f"  memory growth: {small_rows:,} rows -> peak RSS {small_mb:.0f} MB; "
        f"{args.rows:,} rows -> {first_mb:.0f} MB: {args.rows / small_rows:.0f}x the rows "
        f"cost {first_mb / small_mb:.2f}x the memory "
        f"({(first_mb - base_mb) / max(small_mb - base_mb, 1):.1f}x above the baseline)"
    )


if __name__ == "__main__":
    main()
