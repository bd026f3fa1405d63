"""Backends and routing: rules needs no key, openai sends all, hybrid sends only what fails."""

from __future__ import annotations

import pytest

from conversions import selectors, services, tasks
from conversions.jobsettings import JobSettings
from conversions.models import Job, Question
from tests.jobutil import calls, fraction, make_questions

pytestmark = pytest.mark.django_db

NS = 'xmlns="http://www.w3.org/1998/Math/MathML"'


def glyph(n: int) -> str:
    """A formula the rules converter refuses (<mglyph> is an image, not mathematics)."""
    return f'<math {NS}><mi>x</mi><mo>+</mo><mn>{n}</mn><mglyph src="s{n}.png" alt="star"/></math>'


def broken(n: int) -> str:
    return f"<math {NS}><mfrac><mn>{n}</mn></mfrac></math>"


def create(backend: str) -> Job:
    return services.job_create(
        job_settings=JobSettings(backend=backend, max_concurrent=4),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )


def test_hybrid_sends_only_the_items_the_rules_cannot_do(llm):
    make_questions(8)
    make_questions(3, prefix="G", mathml=glyph)
    make_questions(2, prefix="B", mathml=broken)
    job = create(Job.Backend.HYBRID)
    tasks.job_run_inline(job)

    served = llm.stats()
    assert served["requests"] == 5
    for n in range(1, 9):
        assert calls(llm, fraction(n)) == 0
    for n in range(1, 4):
        assert calls(llm, glyph(n)) == 1
    for n in range(1, 3):
        assert calls(llm, broken(n)) == 1
    routes = dict(job.items.values_list("question__question_id", "route"))
    assert {ref for ref, route in routes.items() if route == "llm"} == {
        "G-00001",
        "G-00002",
        "G-00003",
        "B-00001",
        "B-00002",
    }
    stats = selectors.job_stats(job=job)
    assert stats["routes"] == {"rules": 8, "llm": 5}
    assert stats["api_calls"] == 5
    # The 8 rules items would each have cost what an LLM item cost here.
    llm_cost = stats["cost_usd"] / 5
    assert stats["saved_vs_all_llm_usd"] == pytest.approx(8 * llm_cost, abs=1e-6)
    assert stats["saved_vs_all_llm_usd"] > 0


def test_openai_sends_every_item_and_rules_sends_none(llm, settings):
    make_questions(6)
    make_questions(2, prefix="G", mathml=glyph)
    tasks.job_run_inline(create(Job.Backend.OPENAI))
    assert llm.stats()["requests"] == 8

    settings.OPENAI_API_KEY = ""
    job = create(Job.Backend.RULES)
    tasks.job_run_inline(job)
    assert llm.stats()["requests"] == 8  # not one more
    counts = selectors.job_stats(job=job)["counts"]
    assert counts == {"succeeded": 6, "failed": 2}
    failure = job.items.get(question__question_id="G-00001")
    assert failure.error_category == "invalid_output"
    assert "unsupported element <mglyph>" in failure.error_message


def test_every_backends_results_are_validated(llm):
    make_questions(3)
    job = create(Job.Backend.OPENAI)
    tasks.job_run_inline(job)
    for item in job.items.all():
        assert item.validation_score is not None and item.validation_score >= 0.9
        assert item.status == "succeeded"


def test_hybrid_savings_are_estimated_before_any_llm_call(llm):
    make_questions(5)
    job = create(Job.Backend.HYBRID)
    tasks.job_run_inline(job)
    stats = selectors.job_stats(job=job)
    assert llm.stats()["requests"] == 0
    assert stats["routes"] == {"rules": 5}
    # No LLM call priced yet: the saving is estimated from prompt and answer sizes.
    assert 0 < stats["saved_vs_all_llm_usd"] < 5 * 0.001


def test_retry_with_the_llm_sends_what_the_rules_refused(llm):
    from io import StringIO

    from django.core.management import call_command

    make_questions(3)
    make_questions(2, prefix="G", mathml=glyph)
    job = create(Job.Backend.RULES)
    tasks.job_run_inline(job)
    assert selectors.job_stats(job=job)["counts"]["failed"] == 2
    # Retrying on the rules again fails the same way; `--backend hybrid` sends them on.
    with pytest.raises(services.ConfigurationError, match="hybrid or openai"):
        services.job_retry_with(job=job, backend=Job.Backend.RULES)
    out = StringIO()
    call_command("job", "retry", str(job.pk), "--backend", "hybrid", stdout=out)
    retry = Job.objects.exclude(pk=job.pk).get()
    assert f"Job {retry.pk} ({retry.name}) retries 2 failed item(s) of job {job.pk}." in (
        out.getvalue()
    )
    assert (retry.backend, retry.total_items, retry.selection["job"]) == ("hybrid", 2, job.pk)
    tasks.job_run_inline(retry)
    retry.refresh_from_db()
    assert retry.status == Job.Status.COMPLETED
    assert dict(retry.items.values_list("question__question_id", "route")) == {
        "G-00001": "llm",
        "G-00002": "llm",
    }
    assert calls(llm, glyph(1)) == 1 and calls(llm, glyph(2)) == 1
    assert selectors.job_stats(job=retry)["success"]["text"] == "100.0 % (2/2)"
