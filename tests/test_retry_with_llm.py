"""Retry with the LLM from the admin (issue 12): the rules converter refuses the same item
again, so the failures page (a group, a category, all of a job's failures) and the item
list's action send a conversion job's failed items to hybrid or openai in a new job, on a
chosen endpoint and model. Real HTTP to the local fake server, real jobs run inline."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from conversions import selectors, services, tasks
from conversions.jobsettings import JobSettings
from conversions.models import Endpoint, Item, Job, Question
from tests.adminutil import login, staff_user
from tests.jobutil import make_questions
from tests.test_routing import glyph

pytestmark = pytest.mark.django_db

FAILURES = reverse("admin:conversions_item_failures")
ITEMS = reverse("admin:conversions_item_changelist")
RETRY_LLM = reverse("admin:conversions_item_retry_llm")


@pytest.fixture
def rules_job(llm) -> Job:
    """A rules job: 3 questions converted, 2 refused (<mglyph>), 1 failed by a timeout."""
    make_questions(3)
    make_questions(2, prefix="G", mathml=glyph)
    make_questions(1, prefix="T")
    job = services.job_create(
        job_settings=JobSettings(backend=Job.Backend.RULES, name="rules run"),
        questions=Question.objects.all(),
        selection={},
        enqueue=False,
    )
    tasks.job_run_inline(job)
    # One more failure of another kind, so that a group is narrower than the job.
    Item.objects.filter(job=job, question__question_id="T-00001").update(
        status=Item.Status.FAILED, error_category="timeout", error_message="timed out"
    )
    assert selectors.job_stats(job=job)["counts"]["failed"] == 3
    return job


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_a_group_of_the_failures_page_goes_to_the_llm_and_converts(operator, rules_job, llm):
    live = operator.get(reverse("admin:conversions_job_change", args=[rules_job.pk]))
    assert f'href="{FAILURES}?job={rules_job.pk}#mc-llm-retry"' in live.content.decode()
    page = operator.get(FAILURES, {"job": rules_job.pk})
    html = page.content.decode()
    assert 'id="mc-llm-retry"' in html and "Retry all 3 failed items with the LLM" in html
    refused = next(g for g in page.context["groups"] if g["category"] != "timeout")
    assert refused["failed"] == 2
    assert f'value="{refused["scope"]}"' in html.replace("&amp;", "&")

    response = operator.post(
        RETRY_LLM,
        {"job": rules_job.pk, "backend": "hybrid", "model": "", "group": refused["scope"]},
    )
    retry = Job.objects.exclude(pk=rules_job.pk).get()
    assert response["Location"] == reverse("admin:conversions_job_change", args=[retry.pk])
    assert (retry.backend, retry.total_items, retry.selection) == (
        "hybrid",
        2,
        {"source": "retry", "job": rules_job.pk},
    )
    assert retry.created_by.username == "olga"
    assert retry.endpoint == Endpoint.objects.get(name="default")
    assert f"retries 2 failed item(s) of job {rules_job.pk}" in messages_of(response)[0]
    tasks.job_run_inline(retry)
    assert dict(retry.items.values_list("question__question_id", "route")) == {
        "G-00001": "llm",
        "G-00002": "llm",
    }
    assert selectors.job_stats(job=retry)["success"]["text"] == "100.0 % (2/2)"
    # The first job keeps its failures as the record of the first attempt.
    assert rules_job.items.filter(status="failed").count() == 3


def test_all_failures_of_a_job_on_a_chosen_endpoint_and_model(operator, rules_job, llm):
    other = Endpoint.objects.create(name="second", base_url=llm.base_url, key_env="")
    response = operator.post(
        RETRY_LLM,
        {"job": rules_job.pk, "backend": "openai", "endpoint": other.pk, "model": "gpt-4o-mini"},
    )
    retry = Job.objects.exclude(pk=rules_job.pk).get()
    assert response.status_code == 302
    assert (retry.backend, retry.endpoint, retry.model, retry.total_items) == (
        "openai",
        other,
        "gpt-4o-mini",
        3,
    )


def test_the_item_lists_action_retries_the_ticked_failures(operator, rules_job):
    failed = list(rules_job.items.filter(status="failed").order_by("pk"))
    succeeded = rules_job.items.filter(status="succeeded").first()
    ticked = [failed[0].pk, failed[1].pk, succeeded.pk]
    page = operator.post(
        ITEMS, {"action": "retry_with_llm", "_selected_action": ticked, "index": 0}
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('name="ids"') == 2  # the succeeded item is left out
    assert page.context["jobs"] == [{"job": rules_job, "n": 2}]
    assert 'name="backend"' in html and 'name="endpoint"' in html

    operator.post(RETRY_LLM, {"ids": [failed[0].pk, failed[1].pk], "backend": "hybrid"})
    retry = Job.objects.exclude(pk=rules_job.pk).get()
    assert set(retry.items.values_list("question_id", flat=True)) == {
        failed[0].question_id,
        failed[1].question_id,
    }


def test_a_configuration_error_starts_nothing_and_says_why(operator, rules_job, settings):
    settings.OPENAI_API_KEY = ""
    response = operator.post(RETRY_LLM, {"job": rules_job.pk, "backend": "openai"})
    assert response["Location"] == f"{FAILURES}?job={rules_job.pk}"
    assert "OPENAI_API_KEY is not set" in messages_of(response)[0]
    assert Job.objects.count() == 1

    nothing = operator.post(RETRY_LLM, {"backend": "hybrid"})  # no job, no ids
    assert "Choose the failed items to retry." in messages_of(nothing)[-1]
    wrong = operator.post(RETRY_LLM, {"job": rules_job.pk, "backend": "rules"})
    assert "rules" in messages_of(wrong)[-1]  # not a choice: hybrid or openai only
    assert Job.objects.count() == 1


def test_only_operators_see_and_use_it(client, rules_job):
    login(client, staff_user("vera", "viewers"))
    html = client.get(FAILURES, {"job": rules_job.pk}).content.decode()
    assert "mc-llm-retry" not in html
    assert client.post(RETRY_LLM, {"job": rules_job.pk, "backend": "hybrid"}).status_code == 403
    page = client.post(ITEMS, {"action": "retry_with_llm", "_selected_action": [1], "index": 0})
    assert page.status_code == 200 and "ids" not in page.context  # not offered: the list
    assert Job.objects.count() == 1
