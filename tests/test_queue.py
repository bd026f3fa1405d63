"""Jobs on a real django-q2 cluster (a `manage.py qcluster` subprocess on the test database)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django_q.brokers import get_broker
from django_q.models import Task
from django_q.status import Stat

from conversions import selectors, services
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, Question
from mathconv_dev.fakeopenai import input_key
from tests.jobutil import API_KEY, Cluster, make_questions, queue_state, wait_until

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
        # The worker lets its calls in flight finish, hands the rest back and its task
        # returns without queueing a continuation: django-q2 records the task's result
        # and has nothing left in the queue, so nothing works on the job any more.
        wait_until(lambda: Task.objects.filter(group=f"job-{job.pk}").exists())
        wait_until(lambda: get_broker().queue_size() == 0)
        assert not job.items.filter(status="running").exists()
        paused = finished(job)
        assert 20 <= paused < 150
        assert Job.objects.get(pk=job.pk).status == Job.Status.PAUSED
        assert llm.stats()["requests"] == paused  # one call per finished item, none since

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
        call_command(
            "convert", "--backend", "openai", "--all", "--limit", "20", "--wait", stdout=out
        )
        watched = Job.objects.latest("id")
        assert out.getvalue().startswith(
            f"Job {watched.pk} created: 20 items, backend openai, model gpt-4.1-mini, "
            f"endpoint default ({llm.base_url}).\n"
            "Queued on the django-q2 cluster; watching (Ctrl-C stops watching).\n"
            f"Job {watched.pk} ({watched.name}): completed"
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


def test_calls_in_flight_when_a_cluster_is_killed_are_counted_as_sent(llm, settings):
    settings.MATHCONV_LEASE_SECONDS = LEASE_S
    llm.configure(latency=0.5)
    make_questions(200)
    running = cluster(llm)
    try:
        job = create(batch_size=20, max_concurrent=8)
        wait_until(lambda: finished(job) >= 30)
        running.kill()  # calls in flight: the server got them, no answer is recorded
    finally:
        running.stop()
    job.refresh_from_db()
    received = llm.stats()["requests"]
    recorded = sum(job.items.values_list("api_calls", flat=True))
    assert recorded < received
    # Counted before they were sent, in blocks of twice the task's concurrency: never
    # fewer than the server got, and at most one unused block more.
    assert received <= job.requests_sent <= received + 2 * 8
    stats = selectors.job_stats(job=job)
    assert (stats["requests_sent"], stats["requests_unrecorded"]) == (
        job.requests_sent,
        job.requests_sent - recorded,
    )


def test_a_jobs_tasks_run_on_two_clusters_and_one_kill_does_not_stop_the_job(llm, settings):
    lease_s = 8
    settings.MATHCONV_LEASE_SECONDS = lease_s
    settings.MATHCONV_CONCURRENCY_PER_TASK = 2  # max_concurrent 4: two tasks
    llm.configure(latency=0.1)
    make_questions(240)
    env = {
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": API_KEY,
        "MATHCONV_LEASE_SECONDS": str(lease_s),
        "MATHCONV_CONCURRENCY_PER_TASK": "2",
        "Q_WORKERS": "2",
    }
    clusters = [Cluster(**env).start(), Cluster(**env).start()]
    try:
        wait_until(lambda: len(Stat.get_all()) == 2, timeout=120, interval=0.5)
        job = create(batch_size=10, max_concurrent=4)
        runs = wait_until(lambda: len(r := list(job.runs.all())) == 2 and r, interval=0.05)
        # Spread: before, a broker handed both tasks to whichever cluster asked first.
        assert runs[0].cluster != runs[1].cluster
        wait_until(lambda: finished(job) >= 40)
        sentinel_of = {c.proc.pid: c for c in clusters}
        victim = next(
            r for r in runs if parent_pid(int(r.cluster.rsplit(":", 1)[1])) in sentinel_of
        )
        sentinel_of[parent_pid(int(victim.cluster.rsplit(":", 1)[1]))].kill()
        done_at_kill = finished(job)
        held = set(job.items.filter(lease_owner=victim.owner).values_list("pk", flat=True))
        # The other cluster's task goes on while the dead task's items are still leased.
        wait_until(lambda: finished(job) >= done_at_kill + 20, timeout=60)
        assert job.items.filter(pk__in=held, status="running", lease_owner=victim.owner).exists()
        wait_until(
            lambda: Job.objects.get(pk=job.pk).is_final,
            timeout=180,
            interval=0.5,
            explain=lambda: queue_state(job, clusters),
        )
    finally:
        for running in clusters:
            running.stop()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert job.items.filter(status="succeeded").count() == 240
    per_input = llm.stats()["per_input"]
    for item in job.items.select_related("question"):
        calls = per_input[input_key(item.question.mathml)]
        assert calls == 1 or (calls == 2 and item.pk in held)


def parent_pid(pid: int) -> int:
    """The parent of a process (from /proc): a worker's sentinel is a child of qcluster."""
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])
