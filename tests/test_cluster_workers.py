"""A job is spread over the workers of the running cluster, not of the process that queues it.

The web process that queues a job runs no worker: its Q_CLUSTER["workers"] says nothing
about the cluster that will run the job (issue 12). A real `manage.py qcluster` here runs
with more workers than this process's setting.
"""

from __future__ import annotations

import pytest
from django_q.status import Stat

from conversions import selectors, services
from conversions.jobsettings import JobSettings
from conversions.models import Job, Question
from tests.jobutil import API_KEY, Cluster, make_questions, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_parallel_tasks_follow_the_workers_of_the_running_cluster(llm, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 1}
    settings.MATHCONV_CONCURRENCY_PER_TASK = 10
    make_questions(3)
    job = services.job_create(
        job_settings=JobSettings(backend=Job.Backend.OPENAI, max_concurrent=100),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )
    # No cluster reports: this process's setting is all there is.
    assert selectors.cluster_workers() == 1
    assert services.job_parallel_tasks(job=job) == 1

    running = Cluster(OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY=API_KEY, Q_WORKERS="3").start()
    try:
        stats = wait_until(
            lambda: [s for s in Stat.get_all() if s.workers], timeout=120, interval=0.2
        )
        assert [len(s.workers) for s in stats] == [3]
        assert selectors.cluster_workers() == 3
        assert services.job_parallel_tasks(job=job) == 3  # not 1 (this process), not 10
    finally:
        running.stop()

    # Stopped (its last status expires after about three seconds): back to the setting.
    wait_until(lambda: not Stat.get_all(), timeout=30, interval=0.2)
    assert selectors.cluster_workers() == 1
