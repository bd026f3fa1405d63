#!/usr/bin/env python
"""Admin page times at scale: 100,000 questions and 1,000,000 items.

Fills a scratch database (questions with bulk_create, items with one INSERT ... SELECT
per job), then requests every admin page through Django's test Client in this process
and prints the server time of each (median of several requests after a warm-up) and
its query count. Every list page must stay under 300 ms.

    .venv/bin/python bench/admin.py                       # SQLite, 100k / 1M
    .venv/bin/python bench/admin.py --questions 20000 --jobs 5
    .venv/bin/python bench/admin.py --postgres postgres://postgres@127.0.0.1:5432
    .venv/bin/python bench/admin.py --keep var/bench-admin.sqlite3   # reuse a filled file

With --postgres a scratch database is created on that server and dropped afterwards
(kept, and reused next time, when --keep names it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LIST_BUDGET_MS = 300
REPEAT = 5


def configure(args, workdir: Path) -> str | None:
    """Point Django at the scratch database; return the PostgreSQL name to drop, if any."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="mathconv.settings",
        SECRET_KEY="bench-only-secret-key",  # noqa: S106 - a throwaway database
        DEBUG="",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="testserver",
        MATHCONV_VAR_DIR=str(workdir),
    )
    if args.postgres:
        import psycopg

        name = args.keep or f"mathconv_bench_admin_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = f"{args.postgres}/{name}"
        return None if args.keep else name
    path = Path(args.keep).resolve() if args.keep else workdir / "bench-admin.sqlite3"
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    return None


def drop(args, name: str | None) -> None:
    if name:
        import psycopg

        with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- filling ---------------------------------------------------------------------------


def fill_questions(count: int) -> None:
    from conversions.demo_data import demo_questions
    from conversions.models import Question

    states = ["converted", "converted", "converted", "unconverted", "needs_review", "failed"]
    batch = []
    for n, q in enumerate(demo_questions(count), start=1):
        batch.append(
            Question(
                question_id=f"B{n:07d}",
                mathml=q["mathml"],
                text=q["text"],
                subject=q["subject"],
                grade=q["grade"],
                metadata=q["metadata"],
                conversion_state=states[n % len(states)],
                latex="x" if n % 6 < 3 else "",
            )
        )
        if len(batch) == 5000:
            Question.objects.bulk_create(batch)
            batch = []
    Question.objects.bulk_create(batch)


STATUS_SQL = (
    "CASE WHEN (q.id + j.id) %% 50 = 0 THEN 'failed' "
    "WHEN (q.id + j.id) %% 50 = 1 THEN 'needs_review' ELSE 'succeeded' END"
)
CATEGORY_SQL = (
    "CASE WHEN (q.id + j.id) %% 50 = 0 THEN "
    "(CASE WHEN q.id %% 3 = 0 THEN 'timeout' WHEN q.id %% 3 = 1 THEN 'api_error' "
    "ELSE 'invalid_output' END) "
    "WHEN (q.id + j.id) %% 50 = 1 THEN 'validation_failed' ELSE '' END"
)
MESSAGE_SQL = (
    "CASE WHEN (q.id + j.id) %% 50 = 0 THEN "
    "(CASE WHEN q.id %% 3 = 0 THEN 'request timed out after 60 s' "
    "WHEN q.id %% 3 = 1 THEN 'HTTP 503: upstream overloaded' "
    "ELSE 'the answer is not JSON' END) "
    "WHEN (q.id + j.id) %% 50 = 1 THEN 'the LaTeX differs from the MathML' ELSE '' END"
)


def fill_items(jobs: int) -> None:
    """One job per pass over the questions; each pass is one INSERT ... SELECT.

    (%% is a literal %: the statement also carries query parameters.)
    """
    from django.db import connection, transaction
    from django.utils import timezone

    from conversions.models import Item, Job, Question

    now = timezone.now()
    total = Question.objects.count()
    created = Job.objects.bulk_create(
        Job(
            name=f"bench {n}",
            status=Job.Status.COMPLETED_WITH_ERRORS,
            backend=Job.Backend.HYBRID,
            model="gpt-4.1-mini",
            total_items=total,
            started_at=now - timedelta(days=jobs - n, hours=2),
            finished_at=now - timedelta(days=jobs - n),
        )
        for n in range(jobs)
    )
    overrides = {
        "job_id": "j.id",
        "question_id": "q.id",
        "status": STATUS_SQL,
        "error_category": CATEGORY_SQL,
        "error_message": MESSAGE_SQL,
        "result_latex": "'\\frac{1}{x}'",
        "route": "CASE WHEN q.id %% 4 = 0 THEN 'llm' ELSE 'rules' END",
        "validation_score": "(q.id * 7919 %% 1000) / 1000.0",
        "latency_ms": "20 + q.id %% 400",
        "tokens_in": "CASE WHEN q.id %% 4 = 0 THEN 300 ELSE 0 END",
        "tokens_out": "CASE WHEN q.id %% 4 = 0 THEN 40 ELSE 0 END",
        "cost_usd": "CASE WHEN q.id %% 4 = 0 THEN 0.000184 ELSE 0 END",
        "api_calls": "CASE WHEN q.id %% 4 = 0 THEN 1 ELSE 0 END",
        "attempts": "1",
        "batch_no": "1 + q.id / 100",
        "created_at": "j.started_at",
        "started_at": "j.started_at",
        "finished_at": "j.finished_at",
    }
    columns, expressions, params = [], [], []
    for field in Item._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.column in overrides:
            expressions.append(overrides[field.column])
        else:
            expressions.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
    sql = (
        f"INSERT INTO {Item._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(expressions)} FROM {Question._meta.db_table} q, "
        f"{Job._meta.db_table} j WHERE j.id = %s"
    )
    for job in created:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [*params, job.pk])
    with connection.cursor() as cursor:
        # What autovacuum does to a settled database: statistics, and on PostgreSQL the
        # visibility map that lets count queries stay in the index.
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


# --- measuring -------------------------------------------------------------------------


def pages() -> list[tuple[str, str, bool]]:
    """(label, url, is a list page)."""
    from django.urls import reverse

    from conversions.models import Item, Job, Question

    job = Job.objects.order_by("-id").first()
    question = Question.objects.order_by("id").first()
    failed = Item.objects.filter(job=job, status="failed").order_by("id").first()
    q = reverse("admin:conversions_question_changelist")
    items = reverse("admin:conversions_item_changelist")
    return [
        ("questions", q, True),
        ("questions ?conversion_state=failed", f"{q}?conversion_state__exact=failed", True),
        (
            "questions ?subject=...&grade=...",
            f"{q}?subject={question.subject}&grade={question.grade}",
            True,
        ),
        ("questions ?q=<question id>", f"{q}?q=B0050000", True),
        ("questions ?q=<text, no match>", f"{q}?q=zzzz", True),
        ("questions, a page in the middle", f"{q}?p={Question.objects.count() // 100}", True),
        ("jobs", reverse("admin:conversions_job_changelist"), True),
        ("items", items, True),
        ("items ?job=", f"{items}?job={job.pk}", True),
        ("items ?status=failed", f"{items}?status__exact=failed", True),
        (
            "items ?error_category=timeout&job=",
            f"{items}?error_category__exact=timeout&job={job.pk}",
            True,
        ),
        ("items ?q=<question id>", f"{items}?q=B0050000", True),
        ("items page 50", f"{items}?p=50", True),
        ("review events", reverse("admin:conversions_reviewevent_changelist"), True),
        ("admin index", reverse("admin:index"), False),
        ("dashboard", reverse("admin:conversions_job_dashboard"), False),
        ("dashboard data.json", reverse("admin:conversions_job_dashboard_data"), False),
        ("job page", reverse("admin:conversions_job_change", args=[job.pk]), False),
        ("job stats.json", reverse("admin:conversions_job_stats", args=[job.pk]), False),
        ("failures (all jobs)", reverse("admin:conversions_item_failures"), False),
        ("failures ?job=", reverse("admin:conversions_item_failures") + f"?job={job.pk}", False),
        ("item page", reverse("admin:conversions_item_change", args=[failed.pk]), False),
        ("question page", reverse("admin:conversions_question_change", args=[question.pk]), False),
        ("review page", reverse("admin:conversions_item_review"), False),
        ("review next.json", reverse("admin:conversions_item_review_next"), False),
        (
            "launch (all, filtered)",
            reverse("admin:conversions_question_launch", args=["convert"])
            + f"?subject={question.subject}",
            False,
        ),
    ]


def measure(client, url: str) -> tuple[float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up: templates, caches
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")
    times = []
    for _ in range(REPEAT):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            client.get(url)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100_000, help="Questions to create.")
    parser.add_argument(
        "--jobs", type=int, default=10, help="Jobs over all questions (items = jobs x questions)."
    )
    parser.add_argument(
        "--postgres",
        metavar="SERVER_URL",
        help="Run on PostgreSQL: a server URL without database name, e.g. "
        "postgres://postgres@127.0.0.1:5432 (default: SQLite).",
    )
    parser.add_argument(
        "--keep",
        metavar="SQLITE_FILE_OR_PG_NAME",
        help="SQLite file (or, with --postgres, database name) to fill and keep; filled "
        "only if empty, so a second run reuses it.",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mathconv-bench-admin-") as tmp:
        pg_name = configure(args, Path(tmp))
        try:
            run(args)
        finally:
            from django.db import connections

            connections.close_all()
            drop(args, pg_name)


def run(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from conversions.models import Item, Question

    call_command("migrate", verbosity=0)
    engine = connection.vendor
    if not Question.objects.exists():
        started = time.perf_counter()
        fill_questions(args.questions)
        questions_s = time.perf_counter() - started
        started = time.perf_counter()
        fill_items(args.jobs)
        items_s = time.perf_counter() - started
        print(f"filled in {questions_s:.0f} s (questions) + {items_s:.0f} s (items)")

    from django.contrib.auth.models import User

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", password=None
    )
    client = Client()
    client.force_login(user)

    n_questions, n_items = Question.objects.count(), Item.objects.count()
    print(f"admin pages on {engine}: {n_questions:,} questions, {n_items:,} items")
    print(
        f"server time, median of {REPEAT} after a warm-up (budget for lists: {LIST_BUDGET_MS} ms)"
    )
    print(f"  {'page':<40} {'median':>8} {'max':>8} {'queries':>8}")
    slow = []
    for label, url, is_list in pages():
        median, worst, queries = measure(client, url)
        verdict = ""
        if is_list:
            verdict = "ok" if median < LIST_BUDGET_MS else "OVER BUDGET"
            if median >= LIST_BUDGET_MS:
                slow.append(label)
        print(f"  {label:<40} {median:>6.0f}ms {worst:>6.0f}ms {queries:>8}  {verdict}")
    from django.core.cache import cache
    from django.urls import reverse

    cache.clear()
    started = time.perf_counter()
    client.get(reverse("admin:conversions_job_dashboard"))
    first_ms = (time.perf_counter() - started) * 1000
    print(f"  {'dashboard, trends not cached (1st load)':<40} {first_ms:>6.0f}ms")
    lists = sum(1 for _label, _url, is_list in pages() if is_list)
    print(f"list pages under {LIST_BUDGET_MS} ms: {lists - len(slow)}/{lists}")
    if slow:
        print("over budget: " + ", ".join(slow))


if __name__ == "__main__":
    main()
