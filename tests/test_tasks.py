"""Jobs run by the task code in this process, over real HTTP to the fake OpenAI server."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from django.utils import translation
from django_q.models import OrmQ

from conversions import exporting, selectors, services, tasks
from conversions.converters import mathml_to_latex
from conversions.joblog import log_path
from conversions.jobsettings import JobSettings
from conversions.models import Endpoint, Item, Job, Question
from tests.jobutil import calls, fraction, make_questions, tagged

pytestmark = pytest.mark.django_db


def create(backend: str = Job.Backend.OPENAI, check_config: bool = True, **options) -> Job:
    options.setdefault("max_concurrent", 4)
    return services.job_create(
        job_settings=JobSettings(backend=backend, **options),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
        check_config=check_config,
    )


def items_by_ref(job: Job) -> dict[str, Item]:
    return {i.question.question_id: i for i in job.items.select_related("question")}


def test_a_rules_job_converts_records_exports_and_logs(settings):
    settings.OPENAI_API_KEY = ""  # the rules backend needs none
    make_questions(25)
    job = create(Job.Backend.RULES, batch_size=10)
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED and job.last_batch_no == 3
    assert set(job.items.values_list("status", "route")) == {("succeeded", "rules")}
    assert not Question.objects.exclude(conversion_state="converted").exists()
    assert Question.objects.get(question_id="Q-00007").latex == mathml_to_latex(fraction(7))

    exports = exporting.export_dir(job_id=job.pk)
    stats = json.loads((exports / "stats.json").read_text())
    assert (stats["done"], stats["counts"], stats["routes"]) == (
        25,
        {"succeeded": 25},
        {"rules": 25},
    )
    batches = sorted((exports / "batches").glob("batch-*.json"))
    assert [p.name for p in batches] == [f"batch-00000{n}.json" for n in (1, 2, 3)]
    rows = [r for p in batches for r in json.loads(p.read_text())["results"]]
    assert sorted(r["question_id"] for r in rows) == [f"Q-{n:05d}" for n in range(1, 26)]

    lines = log_path(job.pk).read_text().splitlines()
    item_lines = [line for line in lines if "item=Q-" in line]
    assert len(item_lines) == 25
    assert all(f"job={job.pk} batch=" in line for line in lines)
    assert f"job={job.pk} batch=3 item=Q-00025 succeeded route=rules" in item_lines[-1]


def test_5xx_is_retried_and_400_is_not(llm):
    make_questions(6)
    flaky = Question.objects.create(question_id="flaky", mathml=tagged(1, "fake:status=503*2"))
    bad = Question.objects.create(question_id="bad", mathml=tagged(2, "fake:status=400"))
    job = create()
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED_WITH_ERRORS
    items = items_by_ref(job)

    assert (items["flaky"].status, items["flaky"].api_calls, items["flaky"].retries) == (
        "succeeded",
        3,
        2,
    )
    assert calls(llm, flaky.mathml) == 3
    retries = [line for line in log_path(job.pk).read_text().splitlines() if "(flaky)" in line]
    assert len(retries) == 2 and f"job={job.pk} " in retries[0]
    assert "attempt 1/4 failed (api_error): HTTP 503" in retries[0]
    assert (items["bad"].status, items["bad"].error_category, items["bad"].api_calls) == (
        "failed",
        "api_error",
        1,
    )
    assert "HTTP 400" in items["bad"].error_message
    assert calls(llm, bad.mathml) == 1
    for n in range(1, 7):
        assert items[f"Q-{n:05d}"].status == "succeeded"
        assert calls(llm, fraction(n)) == 1
    stats = selectors.job_stats(job=job)
    assert stats["api_calls"] == 6 + 3 + 1 and stats["retries"] == 2
    assert stats["failures"]["api_error"]["count"] == 1
    assert stats["cost_usd"] > 0 and stats["tokens_in"] > 0


def test_429_answers_are_retried_until_every_item_succeeds(llm):
    # Two requests per half-second window: a pool of 4 is told to slow down (429 with
    # Retry-After) again and again, and still every item gets its answer.
    llm.configure(rpm=240, window=0.5)
    make_questions(12)
    job = create(max_concurrent=4)
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    served = llm.stats()
    assert served["rate_limited"] > 0
    assert served["ok"] == 12
    items = list(job.items.all())
    assert {i.status for i in items} == {"succeeded"}
    # Every 429 became a retry of its item, in the engine's one retry layer.
    assert sum(i.retries for i in items) == served["rate_limited"]
    assert sum(i.api_calls for i in items) == served["requests"]


def test_wrong_answers_go_to_review_not_onto_the_question(llm):
    make_questions(3)
    wrong = Question.objects.create(question_id="wrong", mathml=tagged(3, "fake:wrong"))
    job = create()
    tasks.job_run_inline(job)
    item = items_by_ref(job)["wrong"]
    assert (item.status, item.error_category) == ("needs_review", "validation_failed")
    assert item.validation_score < 1 and item.result_latex
    wrong.refresh_from_db()
    assert (wrong.latex, wrong.conversion_state) == ("", "needs_review")
    assert job.items.filter(status="succeeded").count() == 3


def test_a_paused_job_hands_its_items_back_and_resumes_without_calling_twice(llm):
    llm.configure(latency=0.05)
    make_questions(100)
    job = create(batch_size=10, max_concurrent=2)
    stop = threading.Event()
    assert tasks.job_run_inline(job, stop=stop, on_progress=lambda _job: stop.set()) == "paused"
    job.refresh_from_db()
    counts = selectors.job_stats(job=job)["counts"]
    assert job.status == Job.Status.PAUSED
    assert "running" not in counts and counts["pending"] > 0 and counts["succeeded"] > 0

    assert services.job_resume(job=job)
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    assert job.items.filter(status="succeeded").count() == 100
    assert llm.stats()["requests"] == 100  # nothing was called twice
    assert all(calls(llm, fraction(n)) == 1 for n in range(1, 101))


def test_a_cancelled_job_stops_calling(llm):
    llm.configure(latency=0.05)
    make_questions(100)
    job = create(batch_size=10, max_concurrent=2)
    assert tasks.job_run_inline(job, on_progress=lambda j: services.job_cancel(job=j)) == (
        "cancelled"
    )
    job.refresh_from_db()
    counts = selectors.job_stats(job=job)["counts"]
    assert job.status == Job.Status.CANCELLED
    assert set(counts) == {"succeeded", "cancelled"}
    cancelled = job.items.filter(status="cancelled")
    # No call started after the cancel: every request is a succeeded item's one call or
    # a call that was in flight at the cancel (at most max_concurrent, abandoned).
    stats = llm.stats()
    reached = [i for i in cancelled.select_related("question") if calls(llm, i.question.mathml)]
    assert len(reached) <= job.max_concurrent
    assert stats["requests"] == counts["succeeded"] + len(reached)
    assert set(cancelled.values_list("error_category", flat=True)) == {"cancelled"}
    # The cancelled items can be retried: the job runs again for them only.
    assert services.items_retry(job=job) == counts["cancelled"]
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    assert job.items.filter(status="succeeded").count() == 100


def test_a_task_past_its_time_budget_queues_a_continuation(
    llm, settings, django_capture_on_commit_callbacks
):
    llm.configure(latency=0.05)
    settings.MATHCONV_TASK_BUDGET_SECONDS = 0.3
    make_questions(30)
    job = create(batch_size=5, max_concurrent=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.job_run(job.pk) == "more work"
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and OrmQ.objects.count() == 1
    assert not job.items.filter(status="running").exists()  # handed back for the next task
    runs = 1
    while tasks.job_run(job.pk) == "more work":
        runs += 1
    assert runs > 1
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert llm.stats()["requests"] == 30


def test_near_the_end_a_task_sharing_a_job_claims_smaller_batches(llm):
    # Two tasks share this job (4 calls each); at its end a task takes only its share
    # of what is left, down to half its pool, so neither idles while the other works
    # through a full batch.
    make_questions(30)
    job = create(batch_size=10, max_concurrent=8)
    assert tasks.job_run(job.pk, 2) == Job.Status.COMPLETED
    sizes = Counter(job.items.values_list("batch_no", flat=True))
    assert [sizes[n] for n in sorted(sizes)] == [10, 10, 5, 3, 2]
    assert llm.stats()["requests"] == 30


def test_a_job_on_a_missing_key_fails_with_a_clear_message(settings):
    make_questions(2)
    job = create(check_config=False)
    settings.OPENAI_API_KEY = ""
    assert tasks.job_run_inline(job) == "failed"
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "OPENAI_API_KEY is not set" in job.error_message
    assert not job.items.exclude(status="pending").exists()


def test_an_endpoint_refusing_every_call_fails_the_job_and_loses_nothing(llm):
    make_questions(40)
    job = create(model="gpt-retired", check_config=False, max_concurrent=2)
    assert tasks.job_run_inline(job) == "failed"
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "refused 10 calls in a row: HTTP 404" in job.error_message
    assert "gpt-retired" in job.error_message
    # Nothing was recorded as failed: the items wait, and the job resumes once fixed.
    assert set(job.items.values_list("status", flat=True)) == {"pending"}
    assert llm.stats()["requests"] < 20
    Job.objects.filter(pk=job.pk).update(model="gpt-4.1-mini")
    assert services.job_resume(job=job)
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED


def closed_port() -> int:
    """A local TCP port with nothing listening on it (connections are refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "base_url, cause",
    [
        (f"http://127.0.0.1:{closed_port()}/v1", "ConnectionRefusedError"),
        ("http://no-such-endpoint.invalid/v1", "gaierror"),
    ],
    ids=["refused", "dns"],
)
def test_an_unreachable_endpoint_pauses_the_job_with_its_items_left_pending(
    llm, settings, base_url, cause
):
    make_questions(40)
    job = create(check_config=False, max_concurrent=2, batch_size=10)
    Endpoint.objects.filter(pk=job.endpoint_id).update(base_url=base_url)  # the job's own
    with translation.override("ko"):
        assert tasks.job_run_inline(job) == Job.Status.PAUSED
    job.refresh_from_db()
    assert job.status == Job.Status.PAUSED
    # stored language-neutrally (the source text, English), shown in the reader's language
    assert base_url in job.error_message and cause in job.error_message
    with translation.override("ko"):
        assert "엔드포인트" in job.error_text and base_url in job.error_text
    # Not one item failed: a few items' calls found the endpoint gone, and the job
    # stopped there, without trying the other items.
    assert set(job.items.values_list("status", flat=True)) == {"pending"}
    assert job.items.filter(attempts__gt=0).count() < 15

    Endpoint.objects.filter(pk=job.endpoint_id).update(base_url=llm.base_url)  # fixed
    assert services.job_resume(job=job)
    assert not Job.objects.get(pk=job.pk).error_message
    assert Job.objects.get(pk=job.pk).error_reason is None
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    assert job.items.filter(status="succeeded").count() == 40


def test_a_small_job_on_an_unreachable_endpoint_pauses_too(llm, settings):
    """Fewer items than it takes to call the endpoint down: once nothing else is in
    flight and no call ever reached it, the job pauses all the same."""
    make_questions(3)
    job = create(check_config=False, max_concurrent=2)
    Endpoint.objects.filter(pk=job.endpoint_id).update(
        base_url=f"http://127.0.0.1:{closed_port()}/v1"
    )
    assert tasks.job_run_inline(job) == Job.Status.PAUSED
    job.refresh_from_db()
    assert "ConnectionRefusedError" in job.error_message
    assert set(job.items.values_list("status", flat=True)) == {"pending"}
