"""A whole question stem in a real browser: CSV import, rules and hybrid jobs, review of
one formula in MathLive, and the export that carries the stem back whole."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from conversions import exporting, services, tasks
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, Question, ReviewEvent
from tests.adminutil import staff_user
from tests.browser.conftest import WIDE
from tests.jobutil import calls, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


F1 = "<math><mfrac><mn>1</mn><mn>2</mn></mfrac></math>"
F2 = "<math><msup><mi>x</mi><mn>2</mn></msup><mo>=</mo><mn>4</mn></math>"
F3_RULES = "<math><mi>y</mi><mo>+</mo><mn>3</mn></math>"
# <mglyph> is an image the rules converter refuses, so hybrid sends this formula to the
# LLM; the fake server answers it wrongly, so the stem waits for review.
F3_LLM = (
    '<math><mi>y</mi><mo>+</mo><mn>3</mn><mglyph src="s.png" alt="별"/>'
    "<mtext>fake:wrong</mtext></math>"
)
TEXT = ("<p>넓이는 ", "이고, 다음 식 ", "을 만족하는 값은 ", "이다.</p>")
KOREAN = ("넓이는", "이고, 다음 식", "을 만족하는 값은", "이다.")


def stem(third: str) -> str:
    return f"{TEXT[0]}{F1}{TEXT[1]}{F2}{TEXT[2]}{third}{TEXT[3]}"


def run(backend: str, question_id: str) -> Item:
    job = services.job_create(
        job_settings=JobSettings(backend=backend, max_concurrent=2),
        questions=Question.objects.filter(question_id=question_id),
        selection={"test": True},
        enqueue=False,
    )
    tasks.job_run_inline(job)
    return job.items.get()


def exported_stems() -> dict[str, str]:
    data = exporting.export_bytes(Question.objects.all(), "csv").decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(data)))
    header = rows[0]
    return {row[0]: row[header.index("latex")] for row in rows[1:]}


def assert_whole(document: str, third: str) -> None:
    for text in KOREAN:
        assert text in document, (text, document)
    formulas = re.findall(r"\\\((.*?)\\\)", document)
    assert formulas == ["\\frac{1}{2}", "x^2=4", third], document


def test_a_stem_comes_back_whole_through_import_rules_hybrid_review_and_export(
    open_session, llm, tmp_path
):
    staff_user("olga", "operators")
    staff_user("rita", "reviewers")
    source = tmp_path / "stems.csv"
    with source.open("w", newline="", encoding="utf-8") as fp:
        writer = csv.writer(fp)
        writer.writerow(["question_id", "mathml", "text", "subject", "grade"])
        writer.writerow(["S-RULES", stem(F3_RULES), "", "stem", "중2"])
        writer.writerow(["S-HYBRID", stem(F3_LLM), "", "stem", "중2"])

    # Import the CSV in the admin: preview, then confirm.
    s = open_session("olga", WIDE)
    page = s.page
    s.goto(reverse("admin:conversions_question_import"))
    page.set_input_files("#id_import_file", str(source))
    page.select_option("#id_format", label="csv")
    page.click(".submit-row input[type=submit]")
    page.wait_for_selector("input[name=confirm]")
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist .success")
    assert Question.objects.get(question_id="S-HYBRID").mathml == stem(F3_LLM)

    # Rules: every formula converted on its own, the text kept.
    rules = run(Job.Backend.RULES, "S-RULES")
    assert rules.status == Item.Status.SUCCEEDED, rules.error_message
    # Hybrid: only the formula the rules cannot do goes to the fake server.
    hybrid = run(Job.Backend.HYBRID, "S-HYBRID")
    assert llm.stats()["requests"] == 1 and calls(llm, F3_LLM) == 1
    assert (hybrid.status, hybrid.error_category) == ("needs_review", "validation_failed")
    assert [f["route"] for f in hybrid.result_formulas] == ["rules", "rules", "llm"]

    # Review: both drawings of the stem, and a fix of the third formula in MathLive.
    r = open_session("rita", WIDE)
    page = r.page
    r.goto(reverse("admin:conversions_item_review"))
    page.wait_for_selector("#mc-stem:not([hidden])")
    assert page.locator("#mc-stem-source math").count() == 3  # drawn natively
    expect(page.locator("#mc-mathml")).to_be_hidden()  # the one-formula cards give way
    assert page.locator("#mc-stem-source math mglyph").count() == 0  # sanitised
    source_text = page.inner_text("#mc-stem-source")
    for text in KOREAN:
        assert text in source_text
    # renderMathInElement turned the three \(...\) into MathLive's markup.
    wait_until(lambda: "\\(" not in page.inner_text("#mc-stem-result"), 15)
    assert page.locator("#mc-stem-result .ML__latex").count() == 3
    assert page.input_value("#mc-stem-index") == "2"  # the formula that failed
    r.shot("review-stem")

    page.click("#mc-stem-edit")
    page.wait_for_timeout(300)  # MathLive moves the focus to its keyboard sink
    page.keyboard.press("Control+a")
    page.keyboard.type("y+3")
    assert page.evaluate("document.getElementById('mc-stem-edit').value") == "y+3"
    page.click("#mc-stem-save")
    # The queue moves on to the rules stem (succeeded results wait for review too).
    expect(page.locator("#mc-question-link")).to_have_text("S-RULES")
    assert "S-HYBRID" in page.inner_text("#mc-flash")
    assert r.errors == [] and r.dialogs == []

    question = Question.objects.get(question_id="S-HYBRID")
    assert question.latex_locked
    assert [f["route"] for f in question.formulas] == ["rules", "rules", "review"]
    assert ReviewEvent.objects.get(item=hybrid).action == "edit"

    # Export: both stems come back whole, with their Korean text and three formulas.
    stems = exported_stems()
    assert_whole(stems["S-RULES"], "y+3")
    assert_whole(stems["S-HYBRID"], "y+3")


def test_a_reviewer_fixes_two_failed_formulas_of_a_stem_one_after_the_other(open_session):
    staff_user("rita", "reviewers")
    second = '<math><mi>p</mi><mglyph src="p.png" alt="p"/></math>'
    third = '<math><mi>q</mi><mglyph src="q.png" alt="q"/></math>'
    Question.objects.create(
        question_id="S-TWO", mathml=f"<p>넓이는 {F1}이고, {second}와 {third}</p>"
    )
    failed = run(Job.Backend.RULES, "S-TWO")
    assert failed.status == Item.Status.FAILED  # two formulas the rules cannot write

    r = open_session("rita", WIDE)
    page = r.page
    r.goto(reverse("admin:conversions_item_review"))
    page.wait_for_selector("#mc-stem:not([hidden])")
    expect(page.locator("#mc-question-link")).to_have_text("S-TWO")
    assert page.input_value("#mc-stem-index") == "1"  # the first formula to fix
    for index, latex in (("1", "p"), ("2", "q")):
        expect(page.locator("#mc-stem-index")).to_have_value(index)
        page.click("#mc-stem-edit")
        page.wait_for_timeout(300)
        page.keyboard.press("Control+a")
        page.keyboard.type(latex)
        page.click("#mc-stem-save")
        if index == "1":
            # saved; the same stem stays, its second fix still to do
            expect(page.locator("#mc-stem-index option").nth(1)).to_have_text(re.compile("✎"))
            expect(page.locator("#mc-question-link")).to_have_text("S-TWO")
    expect(page.locator("#mc-empty")).to_be_visible()  # the queue is done
    assert r.errors == [] and r.dialogs == []

    question = Question.objects.get(question_id="S-TWO")
    assert question.latex_locked
    assert [f["latex"] for f in question.formulas] == ["\\frac{1}{2}", "p", "q"]
    assert re.findall(r"\\\((.*?)\\\)", question.latex) == ["\\frac{1}{2}", "p", "q"]
    assert "넓이는" in question.latex
