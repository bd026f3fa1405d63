"""django-q2 entry points, called by their dotted names (queued by services, or named by
schedules), so the names stay; the work lives in worker.py, batchapi.py, services."""

from __future__ import annotations

import logging
import signal
import threading

from django.conf import settings

from conversions import batchapi, selectors, services
from conversions.apps import freeze_loaded_objects
from conversions.engine import runner
from conversions.joblog import JobLog
from conversions.models import Job
from conversions.worker import JobWorker, cluster_id, worker_id

MAX_HOPS = 10  # hand-ons before a task runs on a cluster that runs its job (job_run_place)


def job_run(job_id: int, share: int = 1, hops: int = 0) -> str:
    """Work on a job for up to MATHCONV_TASK_BUDGET_SECONDS; share: tasks side by side on it
    (services.job_parallel_tasks), hops: how often it was handed on to another cluster."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return f"job {job_id} does not exist"
    if job.batch_api:  # one step: submit, poll, collect, cancel (batchapi.job_step)
        return batchapi.job_step(job_id)
    if job.status not in Job.ACTIVE_STATUSES:
        return f"job {job_id} is {job.status}: nothing to do"
    owner, cluster = worker_id(), cluster_id()
    may_move = share > 1 and hops < MAX_HOPS and selectors.other_cluster_alive(cluster)
    if not services.job_run_place(job=job, owner=owner, cluster=cluster, may_move=may_move):
        services.job_enqueue(job=job, tasks=1, hops=hops + 1)
        return f"job {job_id} already runs on this cluster: handed on (hop {hops + 1})"
    try:
        if not services.job_start(job=job):
            return f"job {job_id} is {job.status}: nothing to do"
        with JobLog(job.pk) as joblog:
            worker = JobWorker(
                job=job,
                log=joblog,
                budget_s=settings.MATHCONV_TASK_BUDGET_SECONDS,
                continue_=True,
                concurrency=services.task_concurrency(job=job, share=share),
                share=share,
                owner=owner,
            )
            return worker.run()
    finally:
        services.job_run_end(owner=owner)


def jobs_reconcile() -> str:
    """The every-minute schedule: re-queue active jobs that no live worker works on."""
    requeued = services.jobs_reconcile()
    return f"re-queued jobs {requeued}" if requeued else "nothing to do"


def batches_poll() -> str:
    """The remote batches' poller (a schedule, and each qcluster): batchapi.batches_poll."""
    return batchapi.batches_poll()


def notification_send(notification_id: int) -> str:
    """Deliver a job's notification (services.notification_deliver: claim, send, retry)."""
    return services.notification_deliver(notification_id=notification_id)


def recurring_job_run(recurring_id: int, scheduled_for: str = "") -> str:
    """A recurring job's schedule fired: start its job (services.recurring_job_launch)."""
    return services.recurring_job_launch(recurring_id=recurring_id, scheduled_for=scheduled_for)


def job_run_inline(
    job: Job,
    *,
    stop: threading.Event | None = None,
    on_progress=None,
    console_level: int = logging.INFO,
) -> str:
    """Run a job to its end here (`convert --wait`, `demo`); `stop` pauses (or stops waiting)."""
    if job.batch_api:
        return batchapi.run_inline(job, stop=stop, on_progress=on_progress)
    if not services.job_start(job=job):
        return f"job {job.pk} is {job.status}: nothing to do"
    with JobLog(job.pk, console_level=console_level) as joblog:
        worker = JobWorker(job=job, log=joblog, budget_s=None, stop=stop, on_progress=on_progress)
        return worker.run()


def warm_worker(sender, proc_name: str = "", **kwargs) -> None:
    """Ready a new worker: load TLS settings (~40 ms), freeze ~150k objects from the GC (~50 ms)."""
    # The sentinel that forked this worker ignores SIGTERM (our qcluster command); a
    # worker ends at once on it, as before, and its leased items are claimed again.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    runner.warm_up()
    freeze_loaded_objects()
