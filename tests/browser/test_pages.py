"""Pages a person reads in a real browser: the review screen never sticks, formulas are
drawn, the question and job lists fit 1280 px, and the Korean admin has no English
project string. Screenshots: artifacts/browser/*.png.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from conversions.models import Item, Question, ReviewEvent
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
