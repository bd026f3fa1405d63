"""Whole question stems through jobs, import and export (conversions/stems.py)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import translation

from conversions import exporting, reviews, services, tasks
from conversions.importing.rows import stem_problems
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, Question
from tests.adminutil import login, staff_user
from tests.jobutil import calls

pytestmark = pytest.mark.django_db

# Three formulas in Korean text: one inline fraction, one display equation, and one the
# rules converter refuses (<mglyph> is an image), which hybrid sends to the LLM.
F1 = "<math><mfrac><mn>1</mn><mn>2</mn></mfrac></math>"
F2 = '<math display="block"><msup><mi>x</mi><mn>2</mn></msup><mo>=</mo><mn>4</mn></math>'
F3 = '<math><mi>y</mi><mo>+</mo><mn>3</mn><mglyph src="s.png" alt="star"/></math>'
STEM = f"<p>넓이는 {F1}이고, 다음 식 {F2}을 만족하는 값은 {F3}이다.</p>"
KOREAN = ("넓이는", "이고, 다음 식", "을 만족하는 값은", "이다.")


def run(backend: str, mathml: str = STEM) -> Item:
    Question.objects.update_or_create(question_id="S-1", defaults={"mathml": mathml})
    job = services.job_create(
        job_settings=JobSettings(backend=backend, max_concurrent=2),
        questions=Question.objects.filter(question_id="S-1"),
        selection={"test": True},
        enqueue=False,
    )
    tasks.job_run_inline(job)
    return job.items.get()


def test_rules_converts_each_formula_and_keeps_the_text_but_fails_on_the_refused_one():
    item = run(Job.Backend.RULES, STEM.replace(F3, "<math><mi>y</mi></math>"))
    assert item.status == Item.Status.SUCCEEDED, item.error_message
    assert item.result_latex == (
        "<p>넓이는 \\(\\frac{1}{2}\\)이고, 다음 식 \\[x^2=4\\]을 만족하는 값은 \\(y\\)이다.</p>"
    )
    assert [f["latex"] for f in item.result_formulas] == ["\\frac{1}{2}", "x^2=4", "y"]
    assert [f["display"] for f in item.result_formulas] == [False, True, False]
    assert item.question.latex == item.result_latex
    assert item.question.formulas == item.result_formulas

    failed = run(Job.Backend.RULES)
    assert (failed.status, failed.error_category) == ("failed", "invalid_output")
    assert failed.error_message.startswith("formula 3/3: rules: ")
    with translation.override("ko"):
        assert failed.error_text.startswith("수식 3/3: 규칙 변환기: ")
    assert failed.result_latex == ""
    assert [f["latex"] is None for f in failed.result_formulas] == [False, False, True]


def test_hybrid_sends_only_the_formula_the_rules_cannot_convert(llm):
    item = run(Job.Backend.HYBRID)
    assert llm.stats()["requests"] == 1
    assert calls(llm, F3) == 1
    assert item.status == Item.Status.SUCCEEDED, item.error_message
    assert [f["route"] for f in item.result_formulas] == ["rules", "rules", "llm"]
    assert item.route == "llm" and item.api_calls == 1
    for text in KOREAN:
        assert text in item.result_latex
    assert item.result_latex.count("\\(") == 2 and item.result_latex.count("\\[") == 1


def test_openai_sends_one_request_per_formula_and_the_cache_serves_them_next_time(llm):
    item = run(Job.Backend.OPENAI)
    assert llm.stats()["requests"] == 3
    assert [calls(llm, f) for f in (F1, F2, F3)] == [1, 1, 1]
    assert item.status == Item.Status.SUCCEEDED, item.error_message
    assert item.api_calls == 3 and item.tokens_in > 0

    again = run(Job.Backend.OPENAI)
    assert llm.stats()["requests"] == 3  # not one more
    assert (again.status, again.route, again.cached) == ("succeeded", "cache", True)
    assert again.result_latex == item.result_latex


def test_a_batch_of_stems_looks_up_the_cache_once(llm):
    for n in range(4):
        Question.objects.create(question_id=f"S-{n}", mathml=STEM.replace("넓이는", f"넓이 {n}:"))
    Question.objects.create(question_id="F-1", mathml=F2)

    def job_lookups() -> tuple[Job, int]:
        job = services.job_create(
            job_settings=JobSettings(backend=Job.Backend.OPENAI, max_concurrent=4),
            questions=Question.objects.all(),
            selection={"test": True},
            enqueue=False,
        )
        lookups = []

        def count(execute, sql, params, many, context):
            if sql.startswith("SELECT") and '"conversions_cacheentry"' in sql:
                lookups.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            tasks.job_run_inline(job)
        return job, len(lookups)

    first, lookups = job_lookups()
    assert lookups == 1  # one batch: its plain formula's key and every stem's formulas' keys
    assert llm.stats()["requests"] == 4 * 3 + 1  # a stem's formulas are not shared in flight
    again, lookups = job_lookups()
    assert lookups == 1 and llm.stats()["requests"] == 13
    assert set(again.items.values_list("status", "cached")) == {("succeeded", True)}


def test_a_formula_answer_that_drops_content_makes_the_stem_need_review(llm):
    dropping = '<math><mi>z</mi><mglyph src="s.png" alt="s"/><mtext>fake:drop</mtext></math>'
    item = run(Job.Backend.HYBRID, STEM.replace(F3, dropping))
    assert (item.status, item.error_category) == ("needs_review", "validation_failed")
    assert item.error_message.startswith("formula 3/3: ")
    with translation.override("ko"):
        assert item.error_text.startswith("수식 3/3: ")
        assert any("결과에 빠졌습니다" in r for r in item.reasons_text)
    assert item.question.latex == ""  # not accepted


def test_import_accepts_stems_and_refuses_scripts_in_them(tmp_path):
    assert stem_problems(STEM) == []
    assert stem_problems(STEM.replace("<p>", '<p onclick="steal()">')) == [
        'MathML holds onclick="steal()", which is not maths and could run in a page'
    ]
    assert stem_problems(STEM + "<script>alert(1)</script>") == [
        "MathML holds <script>, which is not maths and could run in a page"
    ]
    path = tmp_path / "stems.csv"
    with path.open("w", newline="", encoding="utf-8") as fp:
        csv.writer(fp).writerows([["question_id", "mathml"], ["S-1", STEM]])
    call_command("import_questions", str(path), stdout=io.StringIO())
    assert Question.objects.get(question_id="S-1").mathml == STEM


def test_exports_carry_the_converted_stem():
    item = run(Job.Backend.RULES, STEM.replace(F3, "<math><mi>y</mi></math>"))
    data = json.loads(exporting.export_bytes(Question.objects.all(), "json"))
    record = next(r for r in (data if isinstance(data, list) else data["questions"]))
    assert record["latex"] == item.result_latex
    assert [f["latex"] for f in record["formulas"]] == ["\\frac{1}{2}", "x^2=4", "y"]
    rows = list(
        csv.reader(
            io.StringIO(exporting.export_bytes(Question.objects.all(), "csv").decode("utf-8-sig"))
        )
    )
    assert rows[1][rows[0].index("latex")] == item.result_latex


def decide(client, item: Item, body: dict):
    url = reverse("admin:conversions_item_review_decide", args=[item.pk])
    return client.post(url, json.dumps(body), content_type="application/json")


def test_a_reviewer_fixes_one_formula_and_the_stem_is_rendered_again_and_approved(client, llm):
    reviewer = staff_user("rita", "reviewers")
    login(client, reviewer)
    wrong = '<math><mi>y</mi><mglyph src="s.png" alt="s"/><mtext>fake:wrong</mtext></math>'
    item = run(Job.Backend.HYBRID, STEM.replace(F3, wrong))
    assert item.status == Item.Status.NEEDS_REVIEW

    page = client.get(reverse("admin:conversions_item_review"))
    stem = page.context["initial"]["item"]["stem"]
    assert stem["source_html"].count("<math") == 3 and "mglyph" not in stem["source_html"]
    assert "넓이는" in stem["result_html"] and stem["result_html"].count("\\(") == 2
    assert [bool(f["error"]) for f in stem["formulas"]] == [False, False, True]

    for body, message in (
        ({"action": "formula", "index": 3, "latex": "y"}, "There is no such formula"),
        ({"action": "formula", "index": "2", "latex": "y"}, "There is no such formula"),
        ({"action": "formula", "index": 2, "latex": "\\href{x}{y}"}, "\\href"),
        ({"action": "formula", "index": 2, "latex": "\\frac{1}"}, "argument"),
        ({"action": "formula", "index": 2, "latex": "  "}, "empty"),
    ):
        answer = decide(client, item, body)
        assert answer.status_code == 400, body
        assert message in answer.json()["error"], (body, answer.json())
    assert Question.objects.get(pk=item.question_id).latex == ""

    answer = decide(client, item, {"action": "formula", "index": 2, "latex": "y"})
    assert answer.status_code == 200 and answer.json()["ok"], answer.json()
    question = Question.objects.get(pk=item.question_id)
    assert question.latex == (
        "<p>넓이는 \\(\\frac{1}{2}\\)이고, 다음 식 \\[x^2=4\\]을 만족하는 값은 \\(y\\)이다.</p>"
    )
    assert question.latex_locked
    assert [f["route"] for f in question.formulas] == ["rules", "rules", "review"]
    assert question.formulas[2]["reasons"]  # the fix is validated: y alone loses the glyph
    item.refresh_from_db()
    assert item.review_status == Item.ReviewStatus.EDITED
    assert item.result_formulas[2]["route"] == "llm"  # the job's own result is kept


# Two formulas the rules converter refuses (images), between Korean text and a fraction.
G2 = '<math><mi>p</mi><mglyph src="p.png" alt="p"/></math>'
G3 = '<math display="block"><mi>q</mi><mglyph src="q.png" alt="q"/></math>'
TWO_FAILING = f"<p>넓이는 {F1}이고, {G2}와 {G3}이다.</p>"


def test_a_reviewer_fixes_two_failed_formulas_one_after_the_other(client):
    reviewer = staff_user("rita", "reviewers")
    login(client, reviewer)
    item = run(Job.Backend.RULES, TWO_FAILING)
    assert (item.status, item.result_latex) == ("failed", "")
    assert [f["latex"] is None for f in item.result_formulas] == [False, True, True]
    # the stem waits in the review queue; its formulas can be fixed there
    page = client.get(reverse("admin:conversions_item_review"))
    assert page.context["initial"]["item"]["id"] == item.pk
    stem = page.context["initial"]["item"]["stem"]
    assert [f["resolved"] for f in stem["formulas"]] == [True, False, False]
    # nothing can be approved while formulas have no LaTeX
    answer = decide(client, item, {"action": "approve"})
    assert answer.status_code == 400 and "2, 3" in answer.json()["error"], answer.json()

    # formula 2 first: saved, the stem stays open on the same item
    answer = decide(client, item, {"action": "formula", "index": 1, "latex": "p"})
    assert answer.status_code == 200 and answer.json()["ok"], answer.json()
    shown = answer.json()["item"]
    assert shown["id"] == item.pk
    assert [f["resolved"] for f in shown["stem"]["formulas"]] == [True, True, False]
    assert "\\(p\\)" in shown["stem"]["result_html"]
    question = Question.objects.get(pk=item.question_id)
    assert (question.latex, question.latex_locked) == ("", False)
    item.refresh_from_db()
    assert item.review_status == Item.ReviewStatus.UNREVIEWED
    assert item.reviewed_latex == ""

    # then formula 3: the stem is complete, rendered and approved
    answer = decide(client, item, {"action": "formula", "index": 2, "latex": "q"})
    assert answer.status_code == 200 and answer.json()["ok"], answer.json()
    question = Question.objects.get(pk=item.question_id)
    assert question.latex == "<p>넓이는 \\(\\frac{1}{2}\\)이고, \\(p\\)와 \\[q\\]이다.</p>"
    assert question.latex_locked
    assert [f["route"] for f in question.formulas] == ["rules", "review", "review"]
    item.refresh_from_db()
    assert item.review_status == Item.ReviewStatus.EDITED
    assert item.reviewed_latex == question.latex
    assert [e.action for e in item.review_events.order_by("id")] == ["formula", "edit"]
    assert not reviews.review_queue().filter(pk=item.pk).exists()


def test_two_wrong_formulas_are_both_fixed_before_the_stem_is_approved(client, llm):
    reviewer = staff_user("rita", "reviewers")
    login(client, reviewer)
    wrong2 = '<math><mi>p</mi><mglyph src="p.png" alt="p"/><mtext>fake:wrong</mtext></math>'
    wrong3 = '<math><mi>q</mi><mglyph src="q.png" alt="q"/><mtext>fake:wrong</mtext></math>'
    item = run(Job.Backend.HYBRID, f"<p>{F1}, {wrong2}, {wrong3}</p>")
    assert item.status == Item.Status.NEEDS_REVIEW
    assert [bool(f["error"]) for f in item.result_formulas] == [False, True, True]
    # bulk approval leaves a stem alone once a reviewer is fixing it
    decide(client, item, {"action": "formula", "index": 1, "latex": "p"})
    assert reviews.items_bulk_approve(items=Item.objects.all(), min_score=0.0, user=reviewer) == 0
    item.refresh_from_db()
    assert item.review_status == Item.ReviewStatus.UNREVIEWED  # formula 3 is still wrong
    decide(client, item, {"action": "formula", "index": 2, "latex": "q"})
    question = Question.objects.get(pk=item.question_id)
    assert question.latex == "<p>\\(\\frac{1}{2}\\), \\(p\\), \\(q\\)</p>"
    assert [f["route"] for f in question.formulas] == ["rules", "review", "review"]


def test_approving_a_stem_with_a_saved_fix_approves_the_fix_too(client, llm):
    reviewer = staff_user("rita", "reviewers")
    login(client, reviewer)
    wrong2 = '<math><mi>p</mi><mglyph src="p.png" alt="p"/><mtext>fake:wrong</mtext></math>'
    wrong3 = '<math><mi>q</mi><mglyph src="q.png" alt="q"/><mtext>fake:wrong</mtext></math>'
    item = run(Job.Backend.HYBRID, f"<p>{F1}, {wrong2}, {wrong3}</p>")
    third = item.result_formulas[2]["latex"]
    decide(client, item, {"action": "formula", "index": 1, "latex": "p"})
    answer = decide(client, item, {"action": "approve"})
    assert answer.status_code == 200 and answer.json()["ok"], answer.json()
    question = Question.objects.get(pk=item.question_id)
    assert question.latex == f"<p>\\(\\frac{{1}}{{2}}\\), \\(p\\), \\({third}\\)</p>"
    assert question.latex_locked
