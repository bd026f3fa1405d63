"""No silent loss through the worker: an answer that drops content is never a success."""

from __future__ import annotations

import pytest
from django.utils import translation

from conversions import services, tasks
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, Question
from tests import jobutil

pytestmark = pytest.mark.django_db

NS = 'xmlns="http://www.w3.org/1998/Math/MathML"'


def test_an_answer_of_the_fake_server_that_drops_a_token_needs_review_with_the_reason(llm):
    # "fake:drop": the fake server answers the right LaTeX less its last letter or digit.
    Question.objects.create(
        question_id="drop",
        mathml=f"<math {NS}><mi>x</mi><mo>+</mo><mn>7</mn><mtext>fake:drop</mtext></math>",
    )
    Question.objects.create(question_id="fine", mathml=jobutil.fraction(3))
    job = services.job_create(
        job_settings=JobSettings(backend=Job.Backend.OPENAI, max_concurrent=2),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )
    tasks.job_run_inline(job)
    dropped = job.items.get(question__question_id="drop")
    assert (dropped.status, dropped.error_category) == (
        Item.Status.NEEDS_REVIEW,
        Item.ErrorCategory.VALIDATION_FAILED,
    )
    assert dropped.result_latex.endswith("\\text{fake:dro}")
    assert "'p' is missing from the result (1 in the source, 0 in the result)" in (
        dropped.reasons_text
    )
    with translation.override("ko"):
        assert "'p'이(가) 결과에 빠졌습니다 (원본 1개, 결과 0개)" in dropped.reasons_text
    assert dropped.question.latex == ""  # not written as the question's LaTeX
    assert job.items.get(question__question_id="fine").status == Item.Status.SUCCEEDED
