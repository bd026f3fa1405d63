"""Security suite (issue 13): CSRF on every state-changing view, the API key never stored
or shown anywhere, and no forbidden LaTeX command leaving through an export or the JSON
endpoints. The permission matrix is in tests/test_permissions.py, stored XSS in
tests/browser/test_xss.py, production HTTPS settings in tests/test_settings.py."""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_q.models import OrmQ, Task
from django_q.signing import SignedPackage

from conversions import exporting, sanitize, services, tasks
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, Question, ReviewEvent
from tests import test_permissions as perms
from tests.adminutil import PASSWORD
from tests.jobutil import make_questions, tagged
from tests.test_permissions import admin_url_names, url_for

world = perms.world
everything = perms.everything

pytestmark = pytest.mark.django_db


# --- CSRF ---------------------------------------------------------------------------------


def test_every_admin_view_refuses_a_post_without_a_csrf_token(everything):
    """Every named admin URL (the resolver's list, as in the matrix), POSTed by a superuser
    without a token: 403 from the CSRF middleware, and nothing changed."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", password=PASSWORD))
    job = Job.objects.get(pk=everything["conversions_job"])
    bodies = {
        "conversions_item_review_decide": json.dumps({"action": "approve"}),
        "conversions_item_review_bulk": {"min_score": "0"},
        "conversions_item_retry_category": {"category": "timeout"},
    }
    answered = {}
    for name in admin_url_names():
        url = url_for(name, everything)
        body = bodies.get(name, {})
        if isinstance(body, str):
            response = client.post(url, body, content_type="application/json")
        else:
            response = client.post(url, body)
        answered[name] = response.status_code
    assert answered == {name: 403 for name in admin_url_names()}
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert Item.objects.get(pk=everything["review_item"]).review_status == "unreviewed"
    assert Item.objects.get(pk=everything["conversions_item"]).status == "failed"
    assert Question.objects.filter(pk=everything["conversions_question"]).exists()


def test_with_the_token_the_same_post_goes_through(everything):
    """The check above can fail: with the CSRF token a state-changing POST is served."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", password=PASSWORD))
    job = everything["conversions_job"]
    client.get(reverse("admin:conversions_job_change", args=[job]))
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(
        reverse("admin:conversions_job_control", args=[job, "pause"]),
        {"csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert Job.objects.get(pk=job).status == Job.Status.PAUSED


# --- the API key --------------------------------------------------------------------------


def every_stored_text() -> str:
    """Every row of every table of the database, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def decoded_task_arguments() -> str:
    """The args/kwargs of every queued (OrmQ) and finished (Task) django-q task."""
    out = [repr(SignedPackage.loads(q.payload)) for q in OrmQ.objects.exclude(key="probe")]
    out += [repr((t.func, t.args, t.kwargs, t.result)) for t in Task.objects.all()]
    return "\n".join(out)


def test_the_api_key_is_nowhere_even_when_the_server_echoes_it(
    llm, settings, everything, caplog, django_capture_on_commit_callbacks
):
    """A recognisable key, a server that repeats it in every error body, a job with items
    that fail on 400, succeed after 503s and a second job whose model the endpoint refuses
    (404): the key is in no table, no decoded task payload, no log file or record, no admin page and
    no export."""
    key = "sk-test-" + secrets.token_hex(20)
    secret_part = key[len("sk-test-") :]
    settings.OPENAI_API_KEY = key
    llm.configure(echo_key=True)
    make_questions(3, prefix="K")
    Question.objects.create(question_id="K-bad", mathml=tagged(1, "fake:status=400"))
    Question.objects.create(question_id="K-flaky", mathml=tagged(2, "fake:status=503*2"))
    Question.objects.create(question_id="K-limit", mathml=tagged(3, "fake:status=429*1"))
    keyed = Question.objects.filter(question_id__startswith="K")

    def create(**options):
        return services.job_create(
            job_settings=JobSettings(backend=Job.Backend.OPENAI, max_concurrent=2, **options),
            questions=keyed,
            selection={"ids": list(keyed.values_list("pk", flat=True))},
            enqueue=True,
            check_config=False,
        )

    with django_capture_on_commit_callbacks(execute=True):
        job = create()
        refused = create(model="gpt-retired")
    tasks_text = decoded_task_arguments()
    assert str(job.pk) in tasks_text  # the decoding works: the job's id is in there
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED_WITH_ERRORS
    assert tasks.job_run_inline(refused) == Job.Status.COMPLETED_WITH_ERRORS
    items = {i.question.question_id: i for i in job.items.select_related("question")}
    assert items["K-bad"].status == "failed" and "HTTP 400" in items["K-bad"].error_message
    assert items["K-flaky"].status == "succeeded"
    refused_errors = set(refused.items.values_list("error_message", flat=True))
    assert all("HTTP 404" in e for e in refused_errors), refused_errors
    assert llm.stats()["bad_requests"] >= 2  # the server did answer errors (with the key)

    leaks = {}
    leaks["database"] = every_stored_text()
    leaks["tasks"] = tasks_text + decoded_task_arguments()
    leaks["log records"] = "\n".join(r.getMessage() for r in caplog.records)
    leaks["log files"] = "\n".join(
        p.read_text(errors="replace")
        for p in Path(settings.MATHCONV_LOG_DIR).rglob("*")
        if p.is_file()
    )
    leaks["export files"] = "\n".join(
        p.read_bytes().decode("utf-8", "replace")
        for p in Path(settings.MATHCONV_EXPORT_DIR).rglob("*")
        if p.is_file()
    )
    client = Client()
    client.force_login(User.objects.create_superuser("root", password=PASSWORD))
    pages = [url_for(name, everything) for name in admin_url_names() if name != "logout"]
    for j in (job, refused):
        pages += [
            reverse("admin:conversions_job_change", args=[j.pk]),
            reverse("admin:conversions_job_stats", args=[j.pk]),
            *(
                reverse("admin:conversions_job_export", args=[j.pk, f])
                for f in ("csv", "xlsx", "json")
            ),
        ]
    pages += [reverse("admin:conversions_item_change", args=[i.pk]) for i in items.values()]
    bodies = []
    for page in pages:
        response = client.get(page)
        assert response.status_code in (200, 302, 403, 404, 405), page
        content = b"".join(response.streaming_content) if response.streaming else response.content
        bodies.append(content.decode("utf-8", "replace"))
    leaks["pages"] = "\n".join(bodies)
    for where, text in leaks.items():
        assert secret_part not in text, f"the API key leaked into {where}"
    assert "[redacted]" in leaks["database"]  # the echoed body was stored, key redacted


# --- forbidden LaTeX never leaves ---------------------------------------------------------

EVIL = r"x+\href{javascript:alert(1)}{y}"


def test_exports_and_json_endpoints_withhold_stored_latex_with_forbidden_commands(everything):
    """An old row stored before the validator refused \\href (question LaTeX, a result, a
    reviewed LaTeX and a review event): every export (CSV, XLSX, JSON, the batch files, the
    question exports) and every JSON endpoint carries the marker instead, naming the
    command; a clean LaTeX next to it goes out unchanged."""
    job = Job.objects.get(pk=everything["conversions_job"])
    evil_item = Item.objects.get(pk=everything["review_item"])
    Item.objects.filter(pk=evil_item.pk).update(
        result_latex=EVIL, reviewed_latex=EVIL, status="needs_review", batch_no=1
    )
    Item.objects.filter(pk=everything["conversions_item"]).update(
        status="succeeded", result_latex=r"\frac{1}{x}", batch_no=1
    )
    Question.objects.filter(pk=evil_item.question_id).update(latex=EVIL)
    ReviewEvent.objects.create(
        item=evil_item, question=evil_item.question, action="edit", latex_after=EVIL
    )
    marker = sanitize.withheld_latex([r"\href"])
    exporting.job_export(job=job)

    outputs = {
        "question csv": exporting.export_bytes(Question.objects.all(), "csv").decode("utf-8"),
        "question json": exporting.export_bytes(Question.objects.all(), "json").decode("utf-8"),
        "question xlsx": xlsx_text(exporting.export_bytes(Question.objects.all(), "xlsx")),
        "job csv": "".join(exporting.job_results_csv_lines(job)),
        "job json": "".join(exporting.job_results_json_chunks(job)),
        "job xlsx": xlsx_text(exporting.job_results_xlsx(job)),
        "batch files": "\n".join(
            p.read_text() for p in (exporting.export_dir(job_id=job.pk) / "batches").glob("*")
        ),
    }
    client = Client()
    client.force_login(User.objects.create_superuser("root", password=PASSWORD))
    for name in (
        "conversions_job_dashboard_data",
        "conversions_job_stats",
        "conversions_item_review_next",
    ):
        # the review queue also holds the clean item: leave it out to get the withheld one
        exclude = {"exclude": everything["conversions_item"]}
        response = client.get(url_for(name, everything), exclude)
        assert response.status_code == 200, name
        outputs[name] = json.dumps(response.json())
    for where, text in outputs.items():
        left = text.replace(json.dumps(marker)[1:-1], "").replace(marker, "")
        assert "href" not in left, where
    for where in ("question csv", "question json", "job csv", "job json", "batch files"):
        text = outputs[where]
        assert marker in text or json.dumps(marker)[1:-1] in text, where
        assert r"\frac{1}{x}" in text or r"\\frac{1}{x}" in text or where.startswith("question")
    review = json.loads(outputs["conversions_item_review_next"])["item"]
    assert review["latex"] == marker and review["renderable"] is False
    assert review["question_latex"] == marker
    assert marker in [h["latex"] for h in review["history"]]


def xlsx_text(data: bytes) -> str:
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(data), read_only=True).active
    return "\n".join(str(c) for row in sheet.iter_rows(values_only=True) for c in row)
