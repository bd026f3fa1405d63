"""Job workflows on the real database: create, claim, record, steer, retry, reconcile."""

from __future__ import annotations

import socket
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from conversions import selectors, services
from conversions.jobsettings import JobSettings
from conversions.models import Endpoint, Item, Job, Question
from conversions.preflight import check_backend_config
from conversions.results import ItemResult
from conversions.tasks import job_run_inline
from tests.jobutil import make_questions

pytestmark = pytest.mark.django_db


def rules_job(count: int = 5, **options) -> Job:
    if not Question.objects.exists():
        make_questions(count)
    return services.job_create(
        job_settings=JobSettings(backend=Job.Backend.RULES, **options),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )


def result(item: Item, status: str = Item.Status.SUCCEEDED, **fields) -> ItemResult:
    return ItemResult(item_id=item.pk, question_id=item.question_id, status=status, **fields)


# --- creating ---------------------------------------------------------------------------------


def test_a_job_gets_one_item_per_selected_question():
    make_questions(120)
    Question.objects.filter(question_id="Q-00003").update(
        conversion_state=Question.ConversionState.CONVERTED
    )
    job = rules_job()
    assert job.total_items == job.items.count() == 120
    assert set(job.items.values_list("status", flat=True)) == {Item.Status.PENDING}
    assert (job.model, job.prompt_version, job.status) == ("", "", Job.Status.QUEUED)

    assert rules_job(test_mode=True).total_items == 50
    limited = rules_job(limit=7)
    first_seven = Question.objects.order_by("id")[:7]
    assert set(limited.items.values_list("question_id", flat=True)) == {q.pk for q in first_seven}
    assert rules_job(only_unconverted=True).total_items == 119


def test_the_task_is_queued_only_after_commit(django_capture_on_commit_callbacks):
    make_questions(3)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = services.job_create(
            job_settings=JobSettings(backend=Job.Backend.RULES),
            questions=Question.objects.all(),
            selection={},
        )
        assert OrmQ.objects.count() == 0
    assert len(callbacks) == 1
    assert OrmQ.objects.count() == 1
    assert job.status == Job.Status.QUEUED


def test_an_llm_job_with_high_concurrency_is_spread_over_parallel_tasks(
    settings, llm, django_capture_on_commit_callbacks
):
    make_questions(3)
    settings.MATHCONV_CONCURRENCY_PER_TASK = 25
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 4}

    def queued(**options) -> tuple[int, int]:
        OrmQ.objects.all().delete()
        with django_capture_on_commit_callbacks(execute=True):
            job = services.job_create(
                job_settings=JobSettings(**options), questions=Question.objects.all(), selection={}
            )
        return services.job_parallel_tasks(job=job), OrmQ.objects.count()

    assert queued(backend="openai", max_concurrent=50) == (2, 2)
    assert queued(backend="hybrid", max_concurrent=200) == (4, 4)  # one per worker at most
    assert queued(backend="openai", max_concurrent=10) == (1, 1)
    assert queued(backend="rules", max_concurrent=50) == (1, 1)
    job = Job.objects.get(backend="openai", max_concurrent=50)
    assert services.task_concurrency(job=job, share=2) == 25


def test_llm_backends_are_checked_before_any_work(settings, llm):
    make_questions(3)
    settings.OPENAI_API_KEY = ""
    with pytest.raises(services.ConfigurationError, match="OPENAI_API_KEY is not set"):
        services.job_create(
            job_settings=JobSettings(backend=Job.Backend.OPENAI),
            questions=Question.objects.all(),
            selection={},
        )
    assert not Job.objects.exists()

    settings.OPENAI_API_KEY = "test-key"
    with pytest.raises(services.ConfigurationError, match="Unknown model gpt-0-nope"):
        check_backend_config(backend="hybrid", model="gpt-0-nope")
    check_backend_config(backend="openai", model="gpt-4.1-mini")

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(services.ConfigurationError, match="Cannot reach the API"):
        check_backend_config(
            backend="openai",
            model="gpt-4.1-mini",
            endpoint=Endpoint.objects.create(
                name="closed", base_url=f"http://127.0.0.1:{closed}/v1", key_env="OPENAI_API_KEY"
            ),
        )
    check_backend_config(backend="rules", model="")  # no key needed


# --- claiming and recording -------------------------------------------------------------------


def test_claims_take_pending_items_under_a_lease_and_new_batch_numbers():
    job = rules_job(5, batch_size=2)
    first = services.items_claim(job=job, owner="a", limit=2)
    second = services.items_claim(job=job, owner="b", limit=2)
    assert (first.batch_no, second.batch_no) == (1, 2)
    assert {i.pk for i in first.items}.isdisjoint({i.pk for i in second.items})
    item = Item.objects.get(pk=first.items[0].pk)
    assert (item.status, item.lease_owner, item.attempts) == (Item.Status.RUNNING, "a", 1)
    assert item.lease_expires_at > timezone.now()
    assert len(services.items_claim(job=job, owner="c", limit=10).items) == 1
    assert services.items_claim(job=job, owner="c", limit=10) is None


def test_a_task_sharing_a_job_claims_its_share_of_what_is_left():
    job = rules_job(10)
    sizes = [
        len(services.items_claim(job=job, owner="a", limit=4, share=2, floor=2).items)
        for _ in range(4)
    ]
    # 10 left: a full 4; 6 left: 3; 3 left: 2; 1 left: 1 (the floor cannot make more).
    assert sizes == [4, 3, 2, 1]
    assert services.items_claim(job=job, owner="a", limit=4, share=2) is None


def test_an_expired_lease_is_claimed_again_and_the_old_owner_cannot_write():
    job = rules_job(2)
    batch = services.items_claim(job=job, owner="dead", limit=2)
    Item.objects.filter(job=job).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    again = services.items_claim(job=job, owner="alive", limit=2)
    assert {i.pk for i in again.items} == {i.pk for i in batch.items}
    assert again.items[0].attempts == 2

    late = [result(i, latex="x") for i in batch.items]
    assert services.outcomes_record(job=job, owner="dead", results=late) == []
    written = services.outcomes_record(
        job=job, owner="alive", results=[result(i, latex="y") for i in again.items]
    )
    assert sorted(written) == sorted(i.pk for i in again.items)
    # A finished item is never claimed again and never gets a second result.
    assert services.items_claim(job=job, owner="other", limit=2) is None
    twice = [result(i, latex="z") for i in again.items]
    assert services.outcomes_record(job=job, owner="alive", results=twice) == []
    assert set(job.items.values_list("result_latex", flat=True)) == {"y"}


def test_results_go_onto_questions_unless_locked_by_review():
    job = rules_job(4)
    locked = Question.objects.get(question_id="Q-00002")
    locked.latex, locked.latex_locked = "\\text{approved}", True
    locked.conversion_state = Question.ConversionState.APPROVED
    locked.save()
    batch = services.items_claim(job=job, owner="w", limit=4)
    by_ref = {i.question.question_id: i for i in batch.items}
    services.outcomes_record(
        job=job,
        owner="w",
        results=[
            result(by_ref["Q-00001"], latex="a", tokens_in=10, cost_usd=Decimal("0.001")),
            result(by_ref["Q-00002"], latex="b"),
            result(by_ref["Q-00003"], Item.Status.NEEDS_REVIEW, latex="c", validation_score=0.2),
            result(by_ref["Q-00004"], Item.Status.FAILED, error_category="api_error"),
        ],
    )
    state = dict(Question.objects.values_list("question_id", "conversion_state"))
    latex = dict(Question.objects.values_list("question_id", "latex"))
    assert state == {
        "Q-00001": "converted",
        "Q-00002": "approved",
        "Q-00003": "needs_review",
        "Q-00004": "failed",
    }
    assert (latex["Q-00001"], latex["Q-00002"], latex["Q-00003"]) == ("a", "\\text{approved}", "")
    assert services.job_finish_if_done(job=job) == Job.Status.COMPLETED_WITH_ERRORS

    overwrite = rules_job(overwrite_reviewed=True)
    batch = services.items_claim(job=overwrite, owner="w", limit=4)
    services.outcomes_record(
        job=overwrite, owner="w", results=[result(i, latex="new") for i in batch.items]
    )
    locked.refresh_from_db()
    assert (locked.latex, locked.latex_locked, locked.conversion_state) == (
        "new",
        False,
        "converted",
    )


def test_recording_results_costs_the_same_queries_for_any_number_of_them():
    # One read of the held items, one write each for items and questions, whatever the
    # results say: a question that only changes state used to be re-read field by field.
    def record(count: int) -> int:
        Question.objects.all().delete()
        job = rules_job(count)
        items = services.items_claim(job=job, owner="w", limit=count).items
        statuses = [Item.Status.SUCCEEDED, Item.Status.NEEDS_REVIEW, Item.Status.FAILED]
        results = [
            result(item, statuses[n % 3], latex="x" if n % 3 < 2 else "")
            for n, item in enumerate(items)
        ]
        with CaptureQueriesContext(connection) as queries:
            assert len(services.outcomes_record(job=job, owner="w", results=results)) == count
        states = Counter(Question.objects.values_list("conversion_state", flat=True))
        assert states == {
            "converted": len(range(0, count, 3)),
            "needs_review": len(range(1, count, 3)),
            "failed": len(range(2, count, 3)),
        }
        return len(queries)

    assert record(3) == record(30)


def test_tokens_and_cost_add_up_over_attempts():
    job = rules_job(1)
    item = services.items_claim(job=job, owner="w", limit=1).items[0]
    services.outcomes_record(
        job=job,
        owner="w",
        results=[
            result(
                item,
                Item.Status.FAILED,
                tokens_in=100,
                api_calls=4,
                retries=3,
                cost_usd=Decimal("0.01"),
                error_category="rate_limit",
            )
        ],
    )
    assert services.items_retry(job=job) == 1
    item = services.items_claim(job=job, owner="w", limit=1).items[0]
    services.outcomes_record(
        job=job,
        owner="w",
        results=[result(item, tokens_in=50, api_calls=1, cost_usd=Decimal("0.005"), latex="x")],
    )
    item.refresh_from_db()
    assert (item.tokens_in, item.api_calls, item.retries, item.attempts) == (150, 5, 3, 2)
    assert item.cost_usd == Decimal("0.015")
    assert (item.status, item.error_category) == (Item.Status.SUCCEEDED, "")


# --- steering ---------------------------------------------------------------------------------


def test_pause_resume_cancel_follow_the_job_states(django_capture_on_commit_callbacks):
    job = rules_job(3)
    assert services.job_pause(job=job) and job.status == Job.Status.PAUSED
    assert not services.job_pause(job=job)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_resume(job=job) and job.status == Job.Status.QUEUED
    assert OrmQ.objects.count() == 1  # resuming queues a task
    batch = services.items_claim(job=job, owner="w", limit=1)
    assert services.job_cancel(job=job) and job.status == Job.Status.CANCELLED
    # Items not started are cancelled at once; the live worker cancels what it holds.
    statuses = dict(job.items.values_list("pk", "status"))
    assert statuses.pop(batch.items[0].pk) == Item.Status.RUNNING
    assert set(statuses.values()) == {Item.Status.CANCELLED}
    assert not services.job_resume(job=job) and not services.job_cancel(job=job)


def test_retry_puts_back_failed_items_only(django_capture_on_commit_callbacks):
    job = rules_job(4)
    batch = services.items_claim(job=job, owner="w", limit=4)
    a, b, c, d = batch.items
    services.outcomes_record(
        job=job,
        owner="w",
        results=[
            result(a, latex="ok"),
            result(b, Item.Status.FAILED, error_category="timeout", error_message="slow"),
            result(c, Item.Status.FAILED, error_category="api_error", error_message="500"),
            result(d, Item.Status.NEEDS_REVIEW, error_category="validation_failed"),
        ],
    )
    assert services.job_finish_if_done(job=job) == Job.Status.COMPLETED_WITH_ERRORS
    with django_capture_on_commit_callbacks(execute=True):
        assert services.items_retry(job=job, category="timeout") == 1
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and OrmQ.objects.count() == 1
    assert dict(job.items.values_list("pk", "status")) == {
        a.pk: "succeeded",
        b.pk: "pending",
        c.pk: "failed",
        d.pk: "needs_review",
    }
    assert services.items_retry(job=job) == 1  # the other failure; never the succeeded one
    assert services.items_retry(job=job, category="validation_failed") == 1
    assert job.items.get(pk=a.pk).result_latex == "ok"


def test_the_reconciler_requeues_jobs_without_a_live_worker(settings):
    settings.MATHCONV_LEASE_SECONDS = 60
    assert Schedule.objects.filter(func="conversions.tasks.jobs_reconcile", minutes=1).exists()
    stale = timezone.now() - timedelta(minutes=5)
    lost = rules_job(2)
    Job.objects.filter(pk=lost.pk).update(status=Job.Status.RUNNING, heartbeat_at=stale)
    busy = rules_job()
    Job.objects.filter(pk=busy.pk).update(status=Job.Status.RUNNING, heartbeat_at=stale)
    services.items_claim(job=busy, owner="alive", limit=1)  # holds a live lease
    fresh = rules_job()
    Job.objects.filter(pk=fresh.pk).update(heartbeat_at=timezone.now())

    assert services.jobs_reconcile() == [lost.pk]
    # The heartbeat it set keeps it from being queued again every minute.
    assert services.jobs_reconcile() == []


def test_the_reconciler_leaves_jobs_whose_task_waits_for_a_worker(
    settings, django_capture_on_commit_callbacks
):
    settings.MATHCONV_LEASE_SECONDS = 60
    stale = timezone.now() - timedelta(minutes=5)
    make_questions(2)
    with django_capture_on_commit_callbacks(execute=True):
        waiting = services.job_create(
            job_settings=JobSettings(backend=Job.Backend.RULES),
            questions=Question.objects.all(),
            selection={},
        )
    Job.objects.filter(pk=waiting.pk).update(updated_at=stale)
    assert services.jobs_reconcile() == []  # its task is in the queue: a worker will come
    # A worker took the task (the broker locks it until its retry time) and died.
    OrmQ.objects.update(lock=timezone.now() + timedelta(minutes=20))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_reconcile() == [waiting.pk]
    assert OrmQ.objects.count() == 2


# --- stats ------------------------------------------------------------------------------------


def test_job_stats_count_what_the_items_say(django_assert_max_num_queries):
    job = rules_job(6)
    Job.objects.filter(pk=job.pk).update(model="gpt-4.1-mini", backend=Job.Backend.HYBRID)
    job.refresh_from_db()
    batch = services.items_claim(job=job, owner="w", limit=5)
    a, b, c, d, e = batch.items
    common = {"route": Item.Route.LLM, "api_calls": 1}
    services.job_start(job=job)
    services.outcomes_record(
        job=job,
        owner="w",
        results=[
            result(a, latex="x", latency_ms=100, cost_usd=Decimal("0.002"), **common),
            result(b, latex="x", latency_ms=300, cost_usd=Decimal("0.004"), **common),
            result(c, route=Item.Route.RULES, latex="y", latency_ms=1),
            result(
                d,
                route=Item.Route.CACHE,
                latex="x",
                cached=True,
                cost_saved_usd=Decimal("0.003"),
            ),
            result(
                e,
                Item.Status.FAILED,
                error_category="api_error",
                error_message="HTTP 400",
                **common,
            ),
        ],
    )
    # Six queries whatever the job's size (its page polls this every two seconds): the
    # job row, one pass for every count and sum, failures (2), latency percentiles (2).
    with django_assert_max_num_queries(6):
        stats = selectors.job_stats(job=job)
    assert (stats["total"], stats["done"]) == (6, 5)
    assert stats["counts"] == {"succeeded": 4, "failed": 1, "pending": 1}
    assert stats["success_rate"] == 0.8
    assert stats["failures"] == {"api_error": {"count": 1, "samples": ["HTTP 400"]}}
    assert stats["latency_ms"] == {"mean": 133.7, "p50": 100, "p95": 300}
    assert stats["routes"] == {"llm": 3, "rules": 1, "cache": 1}
    assert stats["cost_usd"] == 0.006 and stats["api_calls"] == 3
    assert stats["cache"] == {"hits": 1, "hit_rate": 0.2, "saved_usd": 0.003}
    # The rules item would have cost the mean LLM item (0.002), plus the cache's 0.003.
    assert stats["saved_vs_all_llm_usd"] == 0.005
    assert stats["api_calls_per_item"] == 0.6
    assert stats["eta_s"] is not None and stats["status"] == Job.Status.RUNNING
    series = selectors.job_throughput_series(job=job, buckets=5)
    assert len(series) == 5 and sum(b["items"] for b in series) == 5

    health = selectors.queue_health()
    assert health["active_jobs"] == 1
    assert not health["cluster_alive"] and "manage.py qcluster" in health["warning"]


def test_a_second_task_of_a_job_on_one_cluster_is_handed_on_while_another_cluster_lives():
    job = rules_job()
    assert services.job_run_place(job=job, owner="a", cluster="host:1", may_move=True)
    assert not services.job_run_place(job=job, owner="b", cluster="host:1", may_move=True)
    assert services.job_run_place(job=job, owner="c", cluster="host:2", may_move=True)
    # Alone (or handed on too often already): it runs beside its sibling.
    assert services.job_run_place(job=job, owner="d", cluster="host:1", may_move=False)
    assert sorted(job.runs.values_list("owner", flat=True)) == ["a", "c", "d"]
    services.job_run_end(owner="a")
    assert services.job_run_place(job=job, owner="e", cluster="host:1", may_move=True) is False


def test_a_run_that_stopped_beating_is_replaced_once_and_its_job_reconciled(
    settings, django_capture_on_commit_callbacks
):
    settings.MATHCONV_LEASE_SECONDS = 60
    job = rules_job()
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, heartbeat_at=timezone.now())
    services.job_run_place(job=job, owner="alive", cluster="host:1", may_move=False)
    services.job_run_place(job=job, owner="killed", cluster="host:2", may_move=False)
    job.runs.filter(owner="killed").update(heartbeat_at=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_runs_replace_dead(job=job) == 1
        assert services.job_runs_replace_dead(job=job) == 0  # one replacement per dead run
    assert OrmQ.objects.count() == 1
    assert list(job.runs.values_list("owner", flat=True)) == ["alive"]
    # The reconciler does the same for a job none of whose runs replaced the dead one.
    job.runs.update(heartbeat_at=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_reconcile() == [job.pk]
    assert OrmQ.objects.count() == 2 and not job.runs.exists()


def test_the_last_live_run_takes_a_killed_workers_items_once_their_lease_expires(settings):
    # Two runs shared a job; one was SIGKILLed holding 2 items and renews nothing any
    # more. The survivor runs out of pending items first: it must not leave the job to
    # the reconciler (a minute later, or never where its schedule was lost) but wait out
    # the lease and finish the items itself.
    settings.MATHCONV_LEASE_SECONDS = 3
    job = rules_job(6)
    services.items_claim(job=job, owner="killed", limit=2)
    held = set(job.items.filter(lease_owner="killed").values_list("pk", flat=True))
    # Last renewed 2.5 s ago (a live worker renews every lease/4 s): it expires in 0.5 s.
    job.items.filter(pk__in=held).update(lease_expires_at=timezone.now() + timedelta(seconds=0.5))
    Schedule.objects.all().delete()  # no reconciler: the run alone must end the job
    assert job_run_inline(job) == Job.Status.COMPLETED
    assert job.items.filter(status=Item.Status.SUCCEEDED).count() == 6
    assert set(job.items.filter(attempts=2).values_list("pk", flat=True)) == held


def test_a_run_does_not_wait_for_items_a_live_worker_keeps_renewing(settings):
    settings.MATHCONV_LEASE_SECONDS = 30
    job = rules_job(4)
    services.items_claim(job=job, owner="alive", limit=1)  # a fresh lease, renewed just now
    assert selectors.items_orphaned_until(job=job, owner="me", missed_s=8) is None
    assert job_run_inline(job) == "done (other workers finish the job)"
    assert job.items.filter(status=Item.Status.RUNNING, lease_owner="alive").count() == 1
