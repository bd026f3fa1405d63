"""Jobs on a real django-q2 cluster (a `manage.py qcluster` subprocess on the test database)."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command

from conversions import services
from conversions.fakeopenai import input_key
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, Question
from tests import jobutil
from tests.jobutil import API_KEY, Cluster, make_questions, wait_until

llm = jobutil.llm  # the fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LEASE_S = 3


def cluster(server, workers: int = 2) -> Cluster:
    return Cluster(
        OPENAI_BASE_URL=server.base_url,
        OPENAI_API_KEY=API_KEY,
        MATHCONV_LEASE_SECONDS=str(LEASE_S),
        Q_WORKERS=str(workers),
    ).start()


def create(**options) -> Job:
    return services.job_create(
        job_settings=JobSettings(backend=Job.Backend.OPENAI, **options),
        questions=Question.objects.all(),
        selection={"test": True},
    )


def finished(job: Job) -> int:
    return job.items.filter(status__in=Item.FINISHED_STATUSES).count()


def test_a_job_survives_a_killed_cluster_with_one_result_per_item(llm, settings):
    settings.MATHCONV_LEASE_SECONDS = LEASE_S
    llm.configure(latency=0.05)
    make_questions(300)
    running = cluster(llm)
    try:
        job = create(batch_size=20, max_concurrent=4)
        services.job_enqueue(job=job)  # a second delivery of the task is harmless
        wait_until(lambda: finished(job) >= 60)
        running.kill()  # SIGKILL to sentinel, pusher and workers at once

        done_before = dict(
            job.items.filter(status__in=Item.FINISHED_STATUSES).values_list("pk", "finished_at")
        )
        held_at_kill = set(job.items.filter(status="running").values_list("pk", flat=True))
        calls_before = llm.stats()["per_input"]
        assert 60 <= len(done_before) < 300 and held_at_kill

        running = cluster(llm)
        # The reconciler (a django-q2 schedule, every minute; called here to save the wait)
        # queues the job again once the dead workers' leases have expired.
        wait_until(services.jobs_reconcile, timeout=30, interval=0.5)
        wait_until(lambda: Job.objects.get(pk=job.pk).is_final, timeout=120, interval=0.5)
    finally:
        running.stop()

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    items = list(job.items.select_related("question"))
    assert len(items) == 300
    assert all(i.status == "succeeded" and i.result_latex for i in items)
    calls_after = llm.stats()["per_input"]
    called_twice = set()
    for item in items:
        key = input_key(item.question.mathml)
        if item.pk in done_before:  # finished before the kill: never called or written again
            assert calls_after[key] == calls_before[key] == 1
            assert item.finished_at == done_before[item.pk]
        assert calls_after[key] >= 1
        if calls_after[key] > 1:
            called_twice.add(item.pk)
    # Only calls in flight at the kill were lost and made again.
    assert called_twice <= held_at_kill
    assert {i.attempts for i in items if i.pk in held_at_kill} == {2}


def test_pause_resume_cancel_and_retry_on_the_cluster(llm):
    llm.configure(latency=0.05)
    make_questions(150)
    running = cluster(llm, workers=1)
    try:
        job = create(batch_size=10, max_concurrent=2)
        wait_until(lambda: finished(job) >= 20)
        assert services.job_pause(job=job)
        # The worker lets its calls in flight finish and hands the rest back.
        wait_until(lambda: not job.items.filter(status="running").exists())
        requests = llm.stats()["requests"]
        paused = finished(job)
        time.sleep(1.5)
        assert llm.stats()["requests"] == requests and finished(job) == paused < 150
        assert Job.objects.get(pk=job.pk).status == Job.Status.PAUSED

        assert services.job_resume(job=job)
        wait_until(lambda: finished(job) >= paused + 30)
        assert services.job_cancel(job=job)
        wait_until(lambda: not job.items.filter(status__in=["pending", "running"]).exists())
        job.refresh_from_db()
        assert job.status == Job.Status.CANCELLED
        cancelled = set(job.items.filter(status="cancelled").values_list("pk", flat=True))
        assert cancelled
        assert set(job.items.values_list("status", flat=True)) == {"succeeded", "cancelled"}
        assert max(llm.stats()["per_input"].values()) == 1

        assert services.items_retry(job=job) == len(cancelled)
        wait_until(lambda: Job.objects.get(pk=job.pk).is_final)

        # With a cluster alive, `convert --wait` queues the job and watches it.
        out = StringIO()
        call_command("convert", "--backend", "openai", "--limit", "20", "--wait", stdout=out)
        watched = Job.objects.latest("id")
        assert out.getvalue().startswith(
            f"Job {watched.pk} created: 20 items, backend openai, model gpt-4.1-mini, "
            f"endpoint default ({llm.base_url}).\n"
            "Queued on the django-q2 cluster; watching (Ctrl-C stops watching).\n"
            f"Job {watched.pk} (Conversion #{watched.pk}): completed"
        )
    finally:
        running.stop()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert job.items.filter(status="succeeded").count() == 150
    per_input = llm.stats()["per_input"]
    for item in job.items.select_related("question"):
        # Called once, or twice if the cancel abandoned its call in flight.
        assert per_input[input_key(item.question.mathml)] <= (2 if item.pk in cancelled else 1)
