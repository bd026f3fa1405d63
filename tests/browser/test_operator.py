"""The operator's day in a real browser (issue 12): exports that come back exactly, label
columns included; a cancelled job's page that settles; the label launch page's first
estimate and the "start a job" entries; import errors listed row by row.
Screenshots: artifacts/browser/*.png.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook
from playwright.sync_api import expect

from conversions import services, tasks
from conversions.exporting import restore_neutralised
from conversions.importing import import_file
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, LabelSchema, Question
from tests.adminutil import make_job, set_items, staff_user
from tests.jobutil import make_questions, seed_prices
from tests.test_routing import glyph

pytestmark = pytest.mark.django_db(transaction=True)

# Strings a spreadsheet or a careless writer would change: formulas, signs, numbers,
# leading blanks and apostrophes, Korean.
TRICKY = ["-2", "=1+2", "+x", "@SUM(A1)", "\t-y", "'=quoted", "-x^{2}", "수학 -1", "0012", "1e5"]
FIELDS = [
    {"name": "unit", "type": "text"},
    {"name": "difficulty", "type": "integer", "min": 1, "max": 5},
    {"name": "keywords", "type": "keywords", "max_items": 5},
]


def bank() -> dict[str, dict[str, str]]:
    """Questions whose text, LaTeX and labels are tricky; returns, per question id, the
    strings each exported column must hold (labels: the effective ones, a correction
    wins; lists joined with "; ")."""
    LabelSchema.objects.create(name="round-trip", instructions="x", fields=FIELDS)
    expected = {}
    for n, value in enumerate(TRICKY):
        keywords = [value, "함수", f"-k{n}"]
        model = {"unit": value, "difficulty": n % 5 + 1, "keywords": keywords}
        corrected = (
            {"unit": f"={n}", "difficulty": 5, "keywords": ["@x", value]} if n % 3 == 0 else None
        )
        question = Question.objects.create(
            question_id=f"R-{n:02d}",
            mathml=f"<math><mn>{n}</mn></math>",
            text=value,
            latex=value,
            labels=model,
            labels_meta={"schema": "round-trip", "schema_version": 1, "model": "m"},
            labels_corrected=corrected,
        )
        labels = corrected or model
        expected[question.question_id] = {
            "text": value,
            "latex": value,
            "label_unit": labels["unit"],
            "label_difficulty": str(labels["difficulty"]),
            "label_keywords": "; ".join(labels["keywords"]),
        }
    return expected


def download(session, fmt: str) -> bytes:
    page = session.page
    session.goto(reverse("admin:conversions_question_export"))
    page.select_option("#id_format", label=fmt)
    with page.expect_download() as info:
        page.click("input[type=submit]")
    path = info.value.path()
    with open(path, "rb") as fp:
        return fp.read()


def test_export_from_the_admin_comes_back_identical_labels_included(open_session, tmp_path):
    staff_user("olga", "operators")
    expected = bank()
    columns = ["text", "latex", "label_unit", "label_difficulty", "label_keywords"]
    s = open_session("olga")

    data = download(s, "xlsx")
    sheet = load_workbook(io.BytesIO(data)).active
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    # One column per label field (of every schema), together where "labels" was.
    label_columns = [h for h in header if h.startswith("label_")]
    assert {"label_unit", "label_difficulty", "label_keywords"} <= set(label_columns)
    at = header.index(label_columns[0])
    assert header[at : at + len(label_columns)] == label_columns
    assert "labels" not in header
    from_xlsx = {
        row[header.index("question_id")]: {c: row[header.index(c)] for c in columns}
        for row in rows[1:]
    }
    assert from_xlsx == expected  # strings, exactly: no "'=1+2", no number 2, no 12
    cells = list(sheet.iter_rows(min_row=2))
    assert all(row[header.index(c)].data_type == "s" for row in cells for c in columns)

    data = download(s, "csv")
    assert data.startswith(b"\xef\xbb\xbf")
    reader = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    # LaTeX exactly; text and label cells guarded only where a spreadsheet runs them, and
    # the guard comes off again (what the CSV import does).
    assert {r["question_id"]: r["latex"] for r in reader} == {
        k: v["latex"] for k, v in expected.items()
    }
    from_csv = {
        r["question_id"]: {
            c: (r[c] if c == "latex" else restore_neutralised(r[c])) for c in columns
        }
        for r in reader
    }
    assert from_csv == expected
    assert next(r for r in reader if r["question_id"] == "R-01")["text"] == "'=1+2"

    # Re-imported, each file gives the stored strings back.
    for name, payload in (("back.xlsx", download(s, "xlsx")), ("back.csv", data)):
        path = tmp_path / name
        path.write_bytes(payload)
        Question.objects.update(text="changed", latex="")
        report = import_file(path)
        assert report.ok, report.lines()
        assert dict(Question.objects.values_list("question_id", "text")) == {
            k: v["text"] for k, v in expected.items()
        }
    s.shot("export-round-trip")


def test_a_cancelled_job_s_page_settles_once_the_worker_lets_go(open_session):
    staff_user("olga", "operators")
    job = make_job(make_questions(10), name="busy")
    set_items(job, 2, status=Item.Status.SUCCEEDED, result_latex="x", finished_at=timezone.now())
    set_items(
        job,
        3,
        status=Item.Status.RUNNING,
        lease_owner="w",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, started_at=timezone.now())
    s = open_session("olga")
    page = s.page
    page.clock.install()  # time flows as usual; fast_forward() skips a poll's interval
    s.goto(reverse("admin:conversions_job_change", args=[job.pk]))
    counts = page.locator("#mc-counts-body")
    expect(counts).to_contain_text("Running3")
    page.evaluate("window.confirm = () => true")  # the operator agrees to cancel
    page.click("#mc-cancel")
    expect(page.locator("#mc-status")).to_have_text("Cancelled")
    # The worker still holds 3 items: shown as stopping, not as running.
    expect(counts).to_contain_text("Stopping3")
    expect(counts).not_to_contain_text("Running")
    # Its next check cancels them (worker.py); the page, still polling, follows.
    services.items_cancel(job=job, owner="w")
    page.clock.fast_forward(2_000)  # the page's next poll (every 2 s) now
    expect(counts).to_contain_text("Cancelled8", timeout=10_000)
    expect(counts).not_to_contain_text("Stopping")
    expect(page.locator("#mc-done")).to_have_text("10")


def test_start_a_labeling_job_from_the_home_page_with_its_estimate_shown(open_session):
    staff_user("olga", "operators")
    seed_prices()
    make_questions(6)
    LabelSchema.objects.create(name="default", instructions="Label it.", fields=FIELDS)
    s = open_session("olga")
    s.goto(reverse("admin:index"))
    s.page.click("#mc-start-label")
    expect(s.page.locator("h1")).to_have_text("Start a labeling job")
    expect(s.page.locator("#mc-count")).to_have_text("6")
    tokens = s.page.locator("#mc-est-tokens-in")
    expect(tokens).not_to_have_text("0")
    expect(s.page.locator("#mc-est-cost")).to_contain_text("$")
    s.shot("label-launch-first-load")
    s.goto(reverse("admin:conversions_job_changelist"))
    s.page.click("#mc-start-convert")
    expect(s.page.locator("h1")).to_have_text("Start a conversion job")


def test_import_errors_show_each_bad_row_with_its_number_and_reason(open_session, tmp_path):
    staff_user("olga", "operators")
    source = tmp_path / "bad.csv"
    source.write_text(
        "question_id,mathml\n"
        "OK-1,<math><mn>1</mn></math>\n"
        ",<math><mn>2</mn></math>\n"
        "OK-1,<math><mn>3</mn></math>\n"
        "BAD,<math><mi>x</mi>\n",
        encoding="utf-8",
    )
    for locale, heading in (
        ("en-US", "Nothing was imported"),
        ("ko-KR", "아무것도 가져오지 않았습니다"),
    ):
        s = open_session("olga", locale=locale)
        s.goto(reverse("admin:conversions_question_import"))
        s.page.set_input_files("#id_import_file", str(source))
        s.page.select_option("#id_format", label="csv")
        s.page.click("input[type=submit]")
        table = s.page.locator("#mc-import-errors")
        expect(table).to_be_visible()
        expect(s.page.locator("#content h2").first).to_contain_text(heading)
        rows = table.locator("tbody tr")
        expect(rows).to_have_count(3)
        numbers = [rows.nth(i).locator(".mc-import-row").inner_text() for i in range(3)]
        assert numbers == ["3", "4", "5"]
        reasons = [rows.nth(i).locator(".mc-import-reason").inner_text() for i in range(3)]
        assert all(reason.strip() for reason in reasons), reasons
        if locale == "ko-KR":
            assert "question_id가 비어 있습니다" in reasons[0]
            assert "중복된 question_id" in reasons[1]
        else:
            assert "question_id is empty" in reasons[0]
            assert "duplicate question_id 'OK-1' (first seen in row 2)" in reasons[1]
        # Visible as text on the page, not behind a badge's hover.
        expect(table).to_contain_text(reasons[1])
        s.shot(f"import-errors-{locale}")
    assert not Question.objects.exists()


def test_a_failure_group_goes_to_the_llm_from_the_failures_page(open_session, llm):
    staff_user("olga", "operators")
    make_questions(2)
    make_questions(2, prefix="G", mathml=glyph)
    job = services.job_create(
        job_settings=JobSettings(backend=Job.Backend.RULES, name="rules run"),
        questions=Question.objects.all(),
        selection={},
        enqueue=False,
    )
    tasks.job_run_inline(job)
    s = open_session("olga")
    s.goto(reverse("admin:conversions_job_change", args=[job.pk]))
    s.page.click("#mc-retry-llm")
    expect(s.page.locator("#mc-llm-retry")).to_be_visible()
    s.page.select_option("#mc-llm-retry select[name=backend]", "openai")
    s.shot("failures-retry-llm")
    # The group's own button submits the form above the table (form="mc-llm-retry").
    s.page.locator("button.mc-llm-retry-group").first.click()
    expect(s.page.locator("#mc-status")).to_be_visible()
    retry = Job.objects.exclude(pk=job.pk).get()
    assert s.page.url.endswith(reverse("admin:conversions_job_change", args=[retry.pk]))
    assert (retry.backend, retry.total_items) == ("openai", 2)
    expect(s.page.locator(".messagelist")).to_contain_text(f"of job {job.pk}")
