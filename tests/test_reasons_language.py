"""Reasons are stored language-neutrally and shown in the reader's language (issue 12).

A worker records a converter's refusal or a validator's finding once; a reviewer whose
browser asks for Korean reads it in Korean, one who asks for English in English, whatever
language the worker ran in (converters/messages.py). Exports are in LANGUAGE_CODE; the
failures page groups one reason as one group across languages; rows written before
(plain text) are shown as they are. Real database, real worker, no mocks.
"""

from __future__ import annotations

import html
import pickle

import pytest
from django.urls import reverse
from django.utils import translation

from conversions import exporting, services, tasks
from conversions.converters.messages import _, render, source_text
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, Question
from tests.adminutil import login, make_job, set_items, staff_user

pytestmark = pytest.mark.django_db

NS = 'xmlns="http://www.w3.org/1998/Math/MathML"'
REFUSED = f"<math {NS}><mfrac><mn>1</mn></mfrac></math>"  # a fraction without a denominator
REFUSAL_EN = "rules: <mfrac> needs 2 children, it has 1"
REFUSAL_KO = "규칙 변환기: <mfrac>에는 자식 요소가 2개 있어야 하는데 1개 있습니다"
FAILURES = reverse("admin:conversions_item_failures")
ITEMS = reverse("admin:conversions_item_changelist")
NEXT = reverse("admin:conversions_item_review_next")


@pytest.fixture
def reviewer(client):
    return login(client, staff_user("rita", "reviewers"))


def run_rules_job(settings, language: str, *, prefix: str, mathml: str = REFUSED) -> Job:
    """A rules job over one new question, run by a worker whose language is `language`."""
    question = Question.objects.create(question_id=f"{prefix}-1", mathml=mathml)
    job = services.job_create(
        job_settings=JobSettings(backend=Job.Backend.RULES, name=f"{language} worker"),
        questions=Question.objects.filter(pk=question.pk),
        selection={},
        enqueue=False,
    )
    settings.LANGUAGE_CODE = language
    with translation.override(language):
        tasks.job_run_inline(job)
    return job


def page(client, url: str, language: str, **params) -> str:
    response = client.get(url, params, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return response.content.decode()


def test_a_refusal_recorded_by_an_english_worker_is_korean_for_a_korean_reader(operator, settings):
    job = run_rules_job(settings, "en", prefix="EN")
    item = job.items.get()
    assert (item.status, item.error_category) == (Item.Status.FAILED, "invalid_output")
    # stored once: the source text, and the message ids with their params
    assert item.error_message == REFUSAL_EN
    assert item.error_reason == {
        "msgid": "rules: %(reason)s",
        "params": {
            "reason": {
                "msgid": "<%(name)s> needs %(count)d children, it has %(found)d",
                "params": {"name": "mfrac", "count": 2, "found": 1},
            }
        },
    }
    detail = reverse("admin:conversions_item_change", args=[item.pk])
    korean = page(operator, detail, "ko")
    assert html.escape(REFUSAL_KO) in korean and "needs 2 children" not in korean
    english = page(operator, detail, "en")
    assert html.escape(REFUSAL_EN) in english and "자식 요소" not in english
    # the item list's message column, and the job page's failure samples
    assert html.escape(REFUSAL_KO) in page(operator, ITEMS, "ko", job=job.pk)
    stats = reverse("admin:conversions_job_stats", args=[job.pk])
    failures = operator.get(stats, HTTP_ACCEPT_LANGUAGE="ko").json()["stats"]["failures"]
    assert failures["invalid_output"]["samples"] == [REFUSAL_KO]
    failures = operator.get(stats, HTTP_ACCEPT_LANGUAGE="en").json()["stats"]["failures"]
    assert failures["invalid_output"]["samples"] == [REFUSAL_EN]


def test_validator_reasons_follow_the_readers_language_on_the_item_and_the_review_screen(
    client, llm, settings
):
    settings.LANGUAGE_CODE = "en"
    Question.objects.create(
        question_id="drop",
        mathml=f"<math {NS}><mi>x</mi><mo>+</mo><mn>7</mn><mtext>fake:drop</mtext></math>",
    )
    job = services.job_create(
        job_settings=JobSettings(backend=Job.Backend.OPENAI, max_concurrent=1),
        questions=Question.objects.all(),
        selection={},
        enqueue=False,
    )
    with translation.override("en"):
        tasks.job_run_inline(job)
    item = job.items.get()
    assert item.status == Item.Status.NEEDS_REVIEW
    assert all(isinstance(reason, dict) for reason in item.validation_reasons)  # neutral
    lost_en = "'p' is missing from the result (1 in the source, 0 in the result)"
    lost_ko = "'p'이(가) 결과에 빠졌습니다 (원본 1개, 결과 0개)"
    assert lost_en in item.reasons_text

    login(client, staff_user("rita", "reviewers"))
    shown = client.get(NEXT, HTTP_ACCEPT_LANGUAGE="ko").json()["item"]
    assert shown["id"] == item.pk and lost_ko in shown["reasons"]
    assert not any("missing" in reason for reason in shown["reasons"])
    shown = client.get(NEXT, HTTP_ACCEPT_LANGUAGE="en").json()["item"]
    assert lost_en in shown["reasons"]

    login(client, staff_user("olga", "operators"))
    detail = reverse("admin:conversions_item_change", args=[item.pk])
    assert html.escape(lost_ko) in page(client, detail, "ko")
    assert html.escape(lost_en) in page(client, detail, "en")


def test_a_stems_formula_reasons_on_the_review_screen_are_in_the_readers_language(
    reviewer, settings
):
    stem = f"<p>넓이는 <math {NS}><mn>36</mn></math>이고 {REFUSED}이다.</p>"
    job = run_rules_job(settings, "en", prefix="STEM", mathml=stem)
    item = job.items.get()
    assert item.status == Item.Status.FAILED
    assert item.error_message == "formula 2/2: " + REFUSAL_EN
    for language, refusal, where in (
        ("ko", REFUSAL_KO, "수식 2/2: "),
        ("en", REFUSAL_EN, "formula 2/2: "),
    ):
        shown = reviewer.get(NEXT, HTTP_ACCEPT_LANGUAGE=language).json()["item"]
        assert shown["id"] == item.pk
        assert [f["error"] for f in shown["stem"]["formulas"]] == ["", refusal]
        detail = reverse("admin:conversions_item_change", args=[item.pk])
        assert html.escape(where + refusal) in page(reviewer, detail, language)


def test_one_reason_is_one_failure_group_whatever_language_the_workers_ran_in(operator, settings):
    korean_worker = run_rules_job(settings, "ko", prefix="KO").items.get()
    english_worker = run_rules_job(settings, "en", prefix="EN").items.get()
    assert korean_worker.error_message == english_worker.error_message == REFUSAL_EN
    assert korean_worker.error_reason == english_worker.error_reason

    settings.LANGUAGE_CODE = "en"
    for language, sample in (("ko", REFUSAL_KO), ("en", REFUSAL_EN)):
        response = operator.get(FAILURES, HTTP_ACCEPT_LANGUAGE=language)
        groups = response.context["groups"]
        assert [(g["category"], g["count"], g["sample"]) for g in groups] == [
            ("invalid_output", 2, sample)
        ]
        assert html.escape(sample) in response.content.decode()
        # the group's link lists both items, in either language
        listing = operator.get(
            ITEMS,
            {
                "error_category__exact": "invalid_output",
                "error_message__startswith": groups[0]["prefix"],
            },
            HTTP_ACCEPT_LANGUAGE=language,
        )
        assert listing.context["cl"].result_count == 2


def test_rows_from_before_are_shown_as_they_are_and_a_stale_reason_is_not_shown(operator):
    job = make_job(
        [Question.objects.create(question_id=f"OLD-{n}", mathml="<math/>") for n in (1, 2)]
    )
    old, stale = set_items(
        job,
        2,
        status=Item.Status.NEEDS_REVIEW,
        error_category="validation_failed",
        error_message="옛 워커가 남긴 메시지",
        validation_reasons=["옛 이유 <b>하나</b>"],
        result_latex="x",
    )
    # a writer that changed error_message alone: the stored reason no longer says it
    Item.objects.filter(pk=stale).update(
        error_reason={"msgid": "rules: %(reason)s", "params": {"reason": "other"}}
    )
    for language in ("ko", "en"):
        for pk in (old, stale):
            shown = page(operator, reverse("admin:conversions_item_change", args=[pk]), language)
            assert "옛 워커가 남긴 메시지" in shown
            assert html.escape("옛 이유 <b>하나</b>") in shown  # text, never markup
            assert "rules: other" not in shown and "규칙 변환기: other" not in shown
    groups = operator.get(FAILURES, HTTP_ACCEPT_LANGUAGE="ko").context["groups"]
    assert [(g["count"], g["sample"]) for g in groups] == [(2, "옛 워커가 남긴 메시지")]


def test_exports_write_reasons_in_language_code_whoever_asks(settings):
    job = run_rules_job(settings, "en", prefix="EX")
    for language_code, refusal in (("en", REFUSAL_EN), ("ko", REFUSAL_KO)):
        settings.LANGUAGE_CODE = language_code
        with translation.override("ko" if language_code == "en" else "en"):  # the reader's
            (row,) = exporting.result_rows(job.items.all())
            item = job.items.select_related("question").get()
            question = exporting.question_record(item.question, item)
        assert row["error_message"] == refusal
        assert question["latest_result"]["error_message"] == refusal


def test_a_message_is_its_text_and_keeps_its_form_for_any_language():
    with translation.override("ko"):
        refusal = _("unsupported element <%(name)s>") % {"name": "mglyph"}
        reason = _("rules: %(reason)s") % {"reason": refusal}
    assert reason == "규칙 변환기: 지원하지 않는 요소 <mglyph>"  # the text when it was made
    with pytest.raises(TypeError):  # a message is filled in once
        reason % {"reason": "again"}
    copied = pickle.loads(pickle.dumps(reason))  # noqa: S301 - our own data
    assert copied.data == reason.data  # made again: in the language active now
    assert copied == "rules: unsupported element <mglyph>"
    assert source_text(reason.data) == "rules: unsupported element <mglyph>"
    assert render(reason.data, "en") == "rules: unsupported element <mglyph>"


def test_stored_data_that_no_longer_fits_its_translation_is_still_shown():
    unknown = {"msgid": "a message removed since: %(n)s", "params": {"n": 3}}
    assert render(unknown, "ko") == "a message removed since: 3"
    wrong = {"msgid": "formula %(number)d/%(count)d: %(reason)s", "params": {"number": 1}}
    assert render(wrong, "ko") == "formula %(number)d/%(count)d: %(reason)s"
    assert render(["plain", {"msgid": "a line break"}], "ko") == "plain; 줄바꿈"
    assert render(None) == "" and render("옛 텍스트", "en") == "옛 텍스트"
