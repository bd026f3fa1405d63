"""Pages a person reads in a real browser: the review screen never sticks, formulas are
drawn, the question and job lists fit 1280 px, and the Korean admin has no English
project string. Screenshots: artifacts/browser/*.png.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django_q.models import Schedule
from playwright.sync_api import expect

from conversions.models import Item, Question, RecurringJob, ReviewEvent
from tests.adminutil import make_job, set_items, staff_user
from tests.browser.conftest import WIDE
from tests.jobutil import fraction, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

KEYBOARD_SINK_FOCUSED = """(() => {
    const active = document.getElementById('mc-edit').shadowRoot.activeElement;
    return Boolean(active && active.classList.contains('ML__keyboard-sink'));
})()"""


def queue_of(n: int) -> list[Item]:
    questions = [
        Question.objects.create(question_id=f"S-{k}", mathml=fraction(k), text=f"q{k}")
        for k in range(1, n + 1)
    ]
    job = make_job(questions, name="skip after edit")
    ids = []
    for k in range(1, n + 1):
        ids += set_items(
            job,
            1,
            status="needs_review",
            result_latex=f"\\frac{{{k}}}{{x}}",
            validation_score=k / 10,
        )
    return [Item.objects.get(pk=pk) for pk in ids]


def edit_value(page) -> str:
    return page.evaluate("document.getElementById('mc-edit').value")


def test_skip_after_typing_in_the_editor_leaves_the_next_items_editable(open_session):
    staff_user("rita", "reviewers")
    first, second, third = queue_of(3)
    s = open_session("rita", WIDE)
    page = s.page
    s.goto(reverse("admin:conversions_item_review"))
    wait_until(lambda: edit_value(page) == "\\frac{1}{x}", 15)

    # The editor spans the panel's width, not a third of it.
    editor = page.locator("#mc-edit").bounding_box()
    panel = page.locator("#mc-panel").bounding_box()
    assert editor["width"] > 0.9 * panel["width"], (editor, panel)
    s.shot("review-wide")

    # Type in the editor (a backslash puts MathLive in its LaTeX mode), then press Skip
    # with the mouse.
    page.click("#mc-edit")
    wait_until(lambda: page.evaluate(KEYBOARD_SINK_FOCUSED), 10)
    page.keyboard.press("Control+a")
    page.keyboard.type("7y\\alpha")
    assert page.evaluate("document.getElementById('mc-edit').mode") == "latex"
    page.click("#mc-skip")
    expect(page.locator("#mc-question-link")).to_have_text("S-2")

    # The next item's editor holds its LaTeX, drawn by MathLive (not raw text).
    wait_until(lambda: edit_value(page) == "\\frac{2}{x}", 10)
    assert page.inner_text("#mc-edit-latex") == "\\frac{2}{x}"
    assert page.evaluate("Boolean(document.getElementById('mc-edit').shadowRoot)")
    assert page.locator("#mc-edit").inner_text().strip() == ""  # no raw LaTeX as light DOM

    # Skip again with the keyboard, after editing and leaving the editor with Esc.
    page.click("#mc-edit")
    wait_until(lambda: page.evaluate(KEYBOARD_SINK_FOCUSED), 10)
    page.keyboard.type("+1")
    page.keyboard.press("Escape")
    page.keyboard.press("s")
    expect(page.locator("#mc-question-link")).to_have_text("S-3")
    wait_until(lambda: edit_value(page) == "\\frac{3}{x}", 10)

    # Save edit and approve works on the third item without a reload.
    page.click("#mc-edit")
    wait_until(lambda: page.evaluate(KEYBOARD_SINK_FOCUSED), 10)
    page.keyboard.press("Control+a")
    page.keyboard.type("5z\\pi")
    assert page.evaluate("document.getElementById('mc-edit').mode") == "latex"
    page.click("#mc-edit-approve")
    page.wait_for_selector("#mc-empty:not([hidden])")
    assert "empty" not in page.inner_text("#mc-flash").lower()
    question = Question.objects.get(question_id="S-3")
    assert (question.latex, question.latex_locked) == ("5z\\pi", True)
    assert ReviewEvent.objects.filter(item=third, action="edit").exists()
    assert s.errors == []


KOREAN_TEXT = (
    "다음 식을 간단히 하시오. 분모와 분자를 각각 인수분해한 뒤 공통인수를 약분하고, "
    "그 결과를 가장 간단한 꼴로 나타내시오."
)


def no_horizontal_overflow(page) -> dict:
    return page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth,
            table: document.querySelector('#result_list').getBoundingClientRect().right,
            filter: document.querySelector('#changelist-filter')?.getBoundingClientRect().left,
            viewport: window.innerWidth,
        })"""
    )


def test_question_list_at_1280_draws_formulas_and_gives_the_text_room(open_session):
    from django.contrib.auth.models import User

    User.objects.create_superuser("root", password="correct-horse-battery-staple")
    for k in range(1, 6):
        Question.objects.create(
            question_id=f"KO-{k}",
            mathml=fraction(k),
            text=KOREAN_TEXT,
            subject="수학",
            grade="중2",
            latex=f"\\frac{{{k}}}{{x}}",
            latex_locked=k == 1,
        )
    Question.objects.create(question_id="TEXT-ONLY", mathml="", text="글만", latex="x^2")
    s = open_session("root", WIDE)
    page = s.page
    s.goto(reverse("admin:conversions_question_changelist"))
    page.wait_for_selector("#result_list")
    s.shot("question-list")

    # Formulas are drawn: the browser's MathML for a source, MathLive for LaTeX only.
    drawn = page.locator("#result_list td.field-formula math mfrac")
    assert drawn.count() == 5
    assert drawn.first.bounding_box()["width"] > 0
    text_only = page.locator("#result_list tr:has-text('TEXT-ONLY') td.field-formula math-field")
    wait_until(lambda: text_only.evaluate("e => Boolean(e.shadowRoot && e.value === 'x^2')"), 15)

    # The text column has room, the table fits the viewport, no nav sidebar is in the way.
    text_width = page.locator("#result_list td.field-text_excerpt").first.bounding_box()["width"]
    assert text_width > 200, text_width
    sizes = no_horizontal_overflow(page)
    assert sizes["page"] <= sizes["viewport"] and sizes["table"] <= sizes["viewport"], sizes
    # Not under the filter bar either (within a pixel: layout widths are fractional).
    assert sizes["table"] <= sizes["filter"] + 1, sizes
    assert not page.locator("#nav-sidebar").is_visible()

    # The lock shows only where there is one: no red crosses.
    locks = page.locator("#result_list td.field-locked_mark")
    assert [t.strip() for t in locks.all_inner_texts()].count("") == 5
    assert (
        "locked"
        in page.locator("#result_list tr:has-text('KO-1') td.field-locked_mark").inner_text()
    )
    assert page.locator("#result_list img[src*='icon-no']").count() == 0

    # The question page draws its formula and its LaTeX, the raw text one click away.
    question = Question.objects.get(question_id="KO-2")
    s.goto(reverse("admin:conversions_question_change", args=[question.pk]))
    assert page.locator(".field-mathml_drawn math mfrac").count() == 1
    latex = page.locator(".field-latex_drawn math-field")
    wait_until(lambda: latex.evaluate("e => e.value") == "\\frac{2}{x}", 15)
    assert page.locator(".field-latex_drawn details pre").text_content() == "\\frac{2}{x}"
    s.shot("question-page")
    assert s.errors == []


def test_job_list_fits_1280(open_session):
    from django.contrib.auth.models import User

    User.objects.create_superuser("root", password="correct-horse-battery-staple")
    questions = [Question.objects.create(question_id=f"J-{k}", mathml=fraction(k)) for k in (1, 2)]
    for name in ("중2 분수 변환 (2026-11-30 오후)", "a job with a rather long name to wrap"):
        make_job(questions, name=name)
    s = open_session("root", WIDE)
    s.goto(reverse("admin:conversions_job_changelist"))
    s.page.wait_for_selector("#result_list")
    s.shot("job-list")
    sizes = no_horizontal_overflow(s.page)
    assert sizes["page"] <= sizes["viewport"] and sizes["table"] <= sizes["viewport"], sizes
    # Not under the filter bar either (within a pixel: layout widths are fractional).
    assert sizes["table"] <= sizes["filter"] + 1, sizes


def test_item_import_preview_and_label_review_draw_formulas(open_session, tmp_path):
    import csv

    from django.contrib.auth.models import User

    from conversions.models import Job, LabelSchema

    User.objects.create_superuser("root", password="correct-horse-battery-staple")
    question = Question.objects.create(
        question_id="F-1", mathml=fraction(4), text="분수를 간단히 하시오.", latex="\\frac{4}{x}"
    )
    item_id = set_items(
        make_job([question]), 1, status="succeeded", result_latex="\\frac{4}{x}+y^2"
    )[0]
    schema = LabelSchema.objects.create(
        name="pages",
        fields=[
            {"name": "unit", "type": "choice", "choices": ["분수", "소수"], "title": "단원"},
            {"name": "keywords", "type": "keywords", "max_items": 3},
        ],
    )
    label_job = make_job([question], kind=Job.Kind.LABEL)
    Job.objects.filter(pk=label_job.pk).update(label_schema=schema)
    label_item = label_job.items.get()
    label_item.status = Item.Status.SUCCEEDED
    label_item.result_labels = {"unit": "분수", "keywords": ["약분", "통분"]}
    label_item.save()

    s = open_session("root", WIDE)
    page = s.page

    # Item page: the source drawn by the browser, the result by MathLive.
    s.goto(reverse("admin:conversions_item_change", args=[item_id]))
    assert page.locator(".field-source_mathml math mfrac").count() == 1
    result = page.locator(".field-latex_preview math-field")
    wait_until(lambda: result.evaluate("e => e.value") == "\\frac{4}{x}+y^2", 15)
    s.shot("item-page")

    # Label review: formula drawn, the model's labels as a table, the JSON kept.
    s.goto(reverse("admin:conversions_label_review_item", args=[label_item.pk]))
    assert page.locator("#mc-label-mathml math mfrac").count() == 1
    latex = page.locator("#mc-label-latex math-field")
    wait_until(lambda: latex.evaluate("e => e.value") == "\\frac{4}{x}", 15)
    labels = page.inner_text("#mc-model-labels table")
    assert "단원" in labels and "약분, 통분" in labels
    assert "통분" in page.locator("#mc-model-labels details pre").text_content()
    s.shot("label-review")

    # Import preview: each row's formula drawn, the MathML source in a <details>.
    source = tmp_path / "questions.csv"
    with open(source, "w", newline="", encoding="utf-8") as fp:
        writer = csv.writer(fp)
        writer.writerow(["question_id", "mathml", "text"])
        writer.writerows([(f"P-{k}", fraction(k), "식") for k in (1, 2)])
    s.goto(reverse("admin:conversions_question_import"))
    page.set_input_files("#id_import_file", str(source))
    page.select_option("#id_format", label="csv")
    page.click(".submit-row input[type=submit]")
    page.wait_for_selector("input[name=confirm]")
    assert page.locator("#mc-import-preview td.mc-preview-formula math mfrac").count() == 2
    assert "<mfrac>" in page.locator("#mc-import-preview details").first.text_content()
    s.shot("import-preview-drawn")
    assert s.errors == []


def english_msgids() -> list[str]:
    """The project's English msgids whose Korean differs (from the compiled catalogue),
    without the ones that are only a format string or a single character."""
    import gettext
    from pathlib import Path

    mo = Path(__file__).resolve().parents[2] / "locale" / "ko" / "LC_MESSAGES" / "django.mo"
    with open(mo, "rb") as fp:
        catalog = gettext.GNUTranslations(fp)._catalog
    found = set()
    for key, value in catalog.items():
        msgid = key[0] if isinstance(key, tuple) else key
        if not msgid or "\x04" in msgid or msgid == value:
            continue
        for part in re.split(r"%\(\w+\)[sd]|%[sd]|\{\w*\}", msgid):
            part = part.strip(" .:,;·–-()")
            if len(part) > 2 and re.search(r"[A-Za-z]{2}", part):
                found.add(part)
    return sorted(found, key=len, reverse=True)


def untranslated_on(text: str, msgids: list[str]) -> list[str]:
    return [
        msgid
        for msgid in msgids
        if re.search(rf"(?<![A-Za-z]){re.escape(msgid)}(?![A-Za-z])", text)
    ]


def test_the_korean_admin_shows_no_english_project_string(open_session):
    from django.contrib.auth.models import User

    from conversions.models import Job

    User.objects.create_superuser("root", password="correct-horse-battery-staple")
    questions = [
        Question.objects.create(
            question_id=f"한-{k}", mathml=fraction(k), text=KOREAN_TEXT, subject="수학"
        )
        for k in (1, 2, 3)
    ]
    job = make_job(questions, name="중2 분수 변환")
    set_items(job, 1, status="needs_review", result_latex="\\frac{1}{x}", validation_score=0.3)
    set_items(job, 1, status="succeeded", result_latex="\\frac{2}{x}", validation_score=1.0)
    set_items(job, 1, status="failed", error_category="api_error", error_message="HTTP 500")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING)

    msgids = english_msgids()
    assert "Review queue" in msgids and "Save edit and approve" in msgids  # the check can fail
    assert {"Waiting for review", "Skip"} <= set(
        untranslated_on("Waiting for review: 3 · Skip S", msgids)
    )
    assert untranslated_on("검수 대기: 3 · Skipping", msgids) == []
    s = open_session("root", WIDE, locale="ko-KR")
    page = s.page
    # Time flows as usual; fast_forward() below jumps over a poll's interval.
    page.clock.install()
    pages = {
        "home": reverse("admin:index"),
        "questions": reverse("admin:conversions_question_changelist"),
        "jobs": reverse("admin:conversions_job_changelist"),
        "job": reverse("admin:conversions_job_change", args=[job.pk]),
        "review": reverse("admin:conversions_item_review"),
        "dashboard": reverse("admin:conversions_job_dashboard"),
    }
    found = {}
    for name, url in pages.items():
        if name in ("job", "dashboard"):
            # Their scripts rewrite the numbers from JSON: read the page after one answer.
            # Their first poll comes one interval (2 s, 5 s) after the load: moved to now.
            assert s.goto(url).status == 200, name
            with page.expect_response(lambda r: ".json" in r.url and r.status == 200):
                page.clock.fast_forward(5_000)
            page.wait_for_timeout(300)  # the answer drawn
        else:
            assert s.goto(url).status == 200, name
        assert page.evaluate("document.documentElement.lang") == "ko", name
        s.shot(f"ko-{name}")
        english = untranslated_on(page.inner_text("body"), msgids)
        if english:
            found[name] = english
    assert found == {}
    assert s.errors == []


def test_an_operator_schedules_a_nightly_job_in_the_korean_admin(open_session):
    staff_user("olga", "operators")
    s = open_session("olga", WIDE, locale="ko-KR")
    page = s.page
    s.goto(reverse("admin:conversions_recurringjob_add"))
    expect(page.locator("h1")).to_contain_text("반복 작업")
    page.fill("#id_name", "야간 변환")
    page.fill("#id_daily_at", "02:00")
    page.select_option("#id_backend", "hybrid")
    page.fill("#id_limit", "5000")
    s.shot("recurring-job-add")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_be_visible()
    made = RecurringJob.objects.get()
    assert made.job_settings["backend"] == "hybrid" and made.job_settings["limit"] == 5000
    assert Schedule.objects.get(pk=made.schedule_id).cron == "0 2 * * *"
    s.shot("recurring-job-list")
    assert "0 2 * * *" in page.locator("#result_list").inner_text()
    assert s.errors == []
