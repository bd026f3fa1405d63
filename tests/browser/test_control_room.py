"""The control room in a real browser: import, launch, watch, triage, review, roles, XSS.

Flows run at 1280 px (operator, viewer) and 390 px (reviewer); the XSS sweep visits
every page at both widths. Screenshots: artifacts/browser/*.png.
"""

from __future__ import annotations

import csv
import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from conversions.models import Item, Job, Question, ReviewEvent
from tests.adminutil import make_job, set_items, staff_user
from tests.browser.conftest import NARROW, WIDE
from tests.jobutil import API_KEY, Cluster, fraction, tagged, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cluster(llm):
    worker = Cluster(OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY=API_KEY).start()
    yield worker
    worker.stop()


def write_csv(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fp:
        writer = csv.writer(fp)
        writer.writerow(["question_id", "mathml", "text", "subject", "grade"])
        writer.writerows(rows)


def test_operator_imports_launches_watches_and_retries_a_failure(open_session, cluster, tmp_path):
    staff_user("olga", "operators")
    rows = [
        (f"B-{n:02d}", fraction(n), "식을 간단히 하시오.", "browser", "중2") for n in range(1, 8)
    ]
    rows.append(("B-FAIL", tagged(8, "fake:status=400*1"), "fails once", "browser", "중2"))
    rows += [(f"B-WRONG-{n}", tagged(n, "fake:wrong"), "wrong", "browser", "중2") for n in (9, 10)]
    rows.append(("OTHER-1", fraction(11), "not in the filter", "other", "중1"))
    source = tmp_path / "questions.csv"
    write_csv(source, rows)

    s = open_session("olga")
    page = s.page

    # Import the CSV: preview, then confirm.
    s.goto(reverse("admin:conversions_question_import"))
    page.set_input_files("#id_import_file", str(source))
    page.select_option("#id_format", label="csv")
    page.click(".submit-row input[type=submit]")
    page.wait_for_selector("input[name=confirm]")
    s.shot("import-preview")
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist .success")
    assert Question.objects.count() == 11

    # Launch on everything matching the filter, without ticking a box.
    s.goto(reverse("admin:conversions_question_changelist") + "?subject=browser")
    page.click("#mc-convert-all")
    page.wait_for_selector("#mc-launch-form")
    assert page.inner_text("#mc-selected") == "10"
    page.select_option("#id_backend", "openai")
    page.fill("#id_max_concurrent", "4")
    page.click("#mc-estimate")
    assert page.inner_text("#mc-est-cost").startswith("$")
    s.shot("launch")
    page.click("#mc-launch")
    page.wait_for_selector("#mc-job")
    job = Job.objects.get()
    assert job.selection == {"filter": {"subject": ["browser"]}}
    assert job.total_items == 10

    # Progress reaches 100 % on the same page: the marker survives, so no reload.
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#mc-percent")).to_have_text("100%", timeout=90_000)
    assert page.evaluate("window.__sameDocument") is True
    counts = page.inner_text("#mc-counts-body")
    assert re.search(r"Succeeded\s+7", counts), counts
    assert re.search(r"Failed\s+1", counts), counts
    assert re.search(r"Needs review\s+2", counts), counts
    expect(page.locator("#mc-throughput rect").first).to_be_attached()
    s.shot("job-done")

    # Open the failure from the job page, and retry it from its own page.
    page.click("#mc-failures-body a:text('API error')")
    page.wait_for_selector("#result_list")
    page.click("#result_list tbody tr th a")
    page.wait_for_selector("#mc-item-retry")
    assert "B-FAIL" in page.inner_text("#content-main")
    s.shot("failure")
    page.click("#mc-item-retry")
    page.wait_for_selector(".messagelist .success")
    failed = Item.objects.get(question__question_id="B-FAIL")
    wait_until(lambda: Item.objects.get(pk=failed.pk).status == Item.Status.SUCCEEDED, timeout=60)
    page.reload()
    assert page.locator("#mc-item-retry").count() == 0
    s.shot("failure-retried")


KEYBOARD_SINK_FOCUSED = """(() => {
    const active = document.getElementById('mc-edit').shadowRoot.activeElement;
    return Boolean(active && active.classList.contains('ML__keyboard-sink'));
})()"""


def review_fixture() -> list[Item]:
    questions = [
        Question.objects.create(question_id="R-1", mathml=fraction(1), text="first"),
        Question.objects.create(question_id="R-2", mathml=fraction(2), text="second"),
    ]
    job = make_job(questions, name="to review")
    items = []
    for score in (0.2, 0.4):
        items += set_items(
            job, 1, status="needs_review", result_latex="\\frac{9}{x}", validation_score=score
        )
    return [Item.objects.get(pk=pk) for pk in items]


def test_reviewer_edits_and_approves_in_mathlive_and_cannot_launch(open_session):
    staff_user("rita", "reviewers")
    first, second = review_fixture()
    s = open_session("rita", NARROW)
    page = s.page

    s.goto(reverse("admin:conversions_item_review"))
    wait_until(lambda: page.evaluate("document.getElementById('mc-rendered').value"), 15)
    assert page.inner_text("#mc-question-link") == "R-1"
    assert page.evaluate("document.getElementById('mc-rendered').value") == "\\frac{9}{x}"
    assert page.locator("#mc-mathml math mfrac").count() == 1  # the browser renders MathML
    s.shot("review")

    page.evaluate("window.__sameDocument = true")
    page.click("#mc-edit")
    # MathLive moves the focus to its keyboard sink a moment after the click.
    wait_until(lambda: page.evaluate(KEYBOARD_SINK_FOCUSED), 10)
    page.keyboard.press("Control+a")
    page.keyboard.type("3y+1")
    assert page.evaluate("document.getElementById('mc-edit').value") == "3y+1"
    page.keyboard.press("Control+Enter")
    expect(page.locator("#mc-question-link")).to_have_text("R-2")
    assert page.evaluate("window.__sameDocument") is True
    assert "R-1" in page.inner_text("#mc-flash")

    question = Question.objects.get(question_id="R-1")
    assert (question.latex, question.latex_locked) == ("3y+1", True)
    event = ReviewEvent.objects.get(item=first)
    assert (event.action, event.user.username) == ("edit", "rita")
    s.shot("review-next")

    # Keyboard shortcut: "a" approves the next one; the queue is then empty.
    page.keyboard.press("a")
    page.wait_for_selector("#mc-empty:not([hidden])")
    assert Item.objects.get(pk=second.pk).review_status == Item.ReviewStatus.APPROVED

    # A reviewer cannot launch jobs: no buttons, no actions, and the page refuses.
    s.goto(reverse("admin:conversions_question_changelist"))
    assert page.locator("#mc-convert-all").count() == 0
    assert page.locator("option[value=convert_questions]").count() == 0
    response = s.goto(reverse("admin:conversions_question_launch", args=["convert"]))
    assert response.status == 403
    s.shot("reviewer-launch-refused")
    assert Job.objects.count() == 1


def test_viewer_sees_but_cannot_change_anything(open_session):
    staff_user("vera", "viewers")
    first, _second = review_fixture()
    s = open_session("vera", WIDE)
    page = s.page

    s.goto(reverse("admin:conversions_question_change", args=[first.question_id]))
    assert page.locator("input[name=_save]").count() == 0
    s.goto(reverse("admin:conversions_job_change", args=[first.job_id]))
    page.wait_for_selector("#mc-progress")
    assert page.locator("#mc-pause, #mc-cancel, #mc-retry, #mc-resume").count() == 0
    s.shot("viewer-job")
    for url in (
        reverse("admin:conversions_item_review"),
        reverse("admin:conversions_question_import"),
        reverse("admin:conversions_question_launch", args=["convert"]),
    ):
        assert s.goto(url).status == 403, url
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', headers: {
            'X-CSRFToken': document.cookie.match(/csrftoken=([^;]+)/)[1]}})).status""",
        reverse("admin:conversions_job_control", args=[first.job_id, "cancel"]),
    )
    assert status == 403
    assert Job.objects.get().status == Job.Status.QUEUED

    # The language follows the browser: a Korean browser gets the Korean admin.
    korean = open_session("vera", WIDE, locale="ko-KR")
    korean.goto(reverse("admin:conversions_job_dashboard"))
    expect(korean.page.locator("h1")).to_have_text("관제실")
    korean.shot("dashboard-ko")


PAYLOAD = (
    '<math xmlns="http://www.w3.org/1998/Math/MathML"><semantics><mrow>'
    '<mi href="javascript:alert(1)" onclick="alert(2)" style="color:red">x</mi>'
    "<script>alert(3)</script>"
    '<mtext><img src="x" onerror="alert(4)"></mtext>'
    "</mrow>"
    '<annotation-xml encoding="text/html"><img src="x" onerror="alert(5)">'
    "<script>alert(6)</script></annotation-xml>"
    "</semantics></math>"
)


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280", "390"])
def test_a_mathml_payload_executes_nothing_on_any_page(open_session, viewport):
    from django.contrib.auth.models import User

    User.objects.create_superuser("root", password="correct-horse-battery-staple")
    question = Question.objects.create(
        question_id="XSS-1",
        mathml=PAYLOAD,
        text='<img src=x onerror="alert(7)">',
        subject="<script>alert(8)</script>",
    )
    job = make_job([question], name='<img src=x onerror="alert(9)">')
    item_id = set_items(
        job,
        1,
        status="needs_review",
        result_latex="\\href{javascript:alert(10)}{x}",
        validation_score=0.1,
        error_category="validation_failed",
        error_message='<img src=x onerror="alert(11)">',
        response_excerpt="<script>alert(12)</script>",
    )[0]
    pages = {
        "questions": reverse("admin:conversions_question_changelist"),
        "question": reverse("admin:conversions_question_change", args=[question.pk]),
        "launch": reverse("admin:conversions_question_launch", args=["convert"]),
        "jobs": reverse("admin:conversions_job_changelist"),
        "job": reverse("admin:conversions_job_change", args=[job.pk]),
        "dashboard": reverse("admin:conversions_job_dashboard"),
        "items": reverse("admin:conversions_item_changelist"),
        "item": reverse("admin:conversions_item_change", args=[item_id]),
        "failures": reverse("admin:conversions_item_failures"),
        "review": reverse("admin:conversions_item_review"),
    }
    s = open_session("root", viewport)
    for name, url in pages.items():
        assert s.goto(url).status == 200, name
        s.page.wait_for_timeout(300)  # give a payload's onerror time to fire
        s.shot(f"xss-{name}")
        assert s.page.evaluate("window.__xss") == [], name
        assert s.dialogs == [], name
        assert s.errors == [], (name, s.errors)
        injected = s.page.evaluate(
            """() => document.querySelectorAll(
                'math script, math img, math [href], math [onclick], math [style],'
                + ' annotation-xml, #content img[onerror]').length"""
        )
        assert injected == 0, name
    assert s.page.locator("#mc-mathml math mi").count() == 1  # the formula itself still shows
    assert s.page.is_visible("#mc-not-rendered")  # \href LaTeX is shown as text only
