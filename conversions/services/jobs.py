"""Job workflows: create, queue, steer (pause, resume, cancel), retry, start, finish, reconcile.

Plain sync ORM code, keyword-only. A job's tasks are queued on django-q2 only once the
transaction that made them runnable commits.
"""

from __future__ import annotations

import logging
import math
import shutil

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.tasks import async_task

from conversions import selectors
from conversions.converters.messages import error_fields
from conversions.exporting import export_dir
from conversions.joblog import log_path
from conversions.jobsettings import JobSettings
from conversions.models import (
    Endpoint,
    Item,
    ItemQuerySet,
    Job,
    JobNotification,
    JobRun,
    Question,
    QuestionQuerySet,
)
from conversions.preflight import ConfigurationError, check_backend_config
from conversions.services.items import items_mark_cancelled, lease_duration
from conversions.services.notifications import notifications_create, notifications_requeue_due

log = logging.getLogger("conversions.jobs")

CREATE_CHUNK = 2000


def job_create(
    *,
    job_settings: JobSettings,
    questions: QuestionQuerySet,
    selection: dict,
    created_by=None,
    enqueue: bool = True,
    check_config: bool = True,
) -> Job:
    """A job with one Item per selected question, queued on django-q2 after commit.

    selection is kept on the job for the record ({"ids": [...]}, an admin filter, or
    what a command was given). Raises ConfigurationError before writing anything when
    the settings cannot work (check_config: also asks the endpoint, preflight.py).
    """
    chosen = job_settings.resolved()
    kind, backend = chosen.kind, chosen.backend
    if chosen.batch_size < 1 or chosen.max_concurrent < 1:
        raise ConfigurationError(_("Batch size and concurrency must be at least 1."))
    if chosen.batch_api and backend not in Job.LLM_BACKENDS:
        raise ConfigurationError(
            _(
                "Batch API mode sends requests to a model: choose the openai or hybrid "
                "backend (the rules backend makes no API calls)."
            )
        )
    if check_config:
        check_backend_config(
            backend=backend,
            model=chosen.model,
            endpoint=chosen.endpoint,
            batch_api=chosen.batch_api,
        )
    if kind == Job.Kind.LABEL and chosen.label_schema is None:
        raise ConfigurationError(_("A labeling job needs a label schema."))
    if kind == Job.Kind.LABEL and backend != Job.Backend.OPENAI:
        raise ConfigurationError(_("Labeling jobs run on the openai backend."))

    questions = questions.order_by("id")
    if kind == Job.Kind.CONVERT:
        questions = questions.with_mathml()  # text-only questions have nothing to convert
    if chosen.only_unconverted and kind == Job.Kind.CONVERT:
        questions = questions.unconverted()
    question_ids = questions.values_list("id", flat=True)
    if limit := chosen.item_limit():
        question_ids = question_ids[:limit]

    with transaction.atomic():
        job = Job.objects.create(**chosen.job_fields(), selection=selection, created_by=created_by)
        total = 0
        chunk: list[Item] = []
        for question_id in question_ids.iterator(chunk_size=CREATE_CHUNK):
            chunk.append(Item(job=job, question_id=question_id))
            if len(chunk) >= CREATE_CHUNK:
                Item.objects.bulk_create(chunk)
                total += len(chunk)
                chunk = []
        Item.objects.bulk_create(chunk)
        total += len(chunk)
        job.total_items = total
        job.name = job.name or job_default_name(job)
        job.save(update_fields=["total_items", "name", "updated_at"])
        if enqueue:
            job_enqueue(job=job)
    _outputs_clear(job_id=job.pk)
    log.info(
        "job=%s created: %s items, backend %s, endpoint %s",
        job.pk,
        total,
        backend,
        chosen.endpoint or "-",
    )
    return job


def job_retry_with(
    *,
    job: Job,
    backend: str,
    model: str = "",
    endpoint: Endpoint | None = None,
    items: QuerySet[Item] | None = None,
    created_by=None,
    enqueue: bool = True,
) -> Job:
    """Retry a job's failed items with another backend ("retry with the LLM"): a new job
    over their questions, so that an item the rules converter refused is sent to hybrid
    or openai instead of failing the same way again. The failed items stay as the record
    of the first attempt; the new job's cost is its own.

    items: a subset of the job's items (the failures page's group or category, the item
    list's selection); default every failed item of the job. model "" and endpoint None:
    the defaults of a new job. Raises ConfigurationError (no key, unknown model, an
    endpoint that does not answer, nothing failed) before writing anything.
    """
    if backend not in (Job.Backend.HYBRID, Job.Backend.OPENAI) or job.kind != Job.Kind.CONVERT:
        raise ConfigurationError(
            _("Retry with the LLM runs a conversion job's failures on hybrid or openai.")
        )
    chosen = Item.objects.filter(job_id=job.pk) if items is None else items.filter(job_id=job.pk)
    question_ids = chosen.filter(status=Item.Status.FAILED).values("question_id")
    questions = Question.objects.filter(pk__in=question_ids)
    if not questions.exists():
        raise ConfigurationError(_("Job %(job)s has no failed items to retry.") % {"job": job.pk})
    return job_create(
        job_settings=JobSettings(
            kind=Job.Kind.CONVERT,
            backend=backend,
            model=model,
            endpoint=endpoint,
            only_unconverted=False,
            overwrite_reviewed=job.overwrite_reviewed,
            name=_("Retry of job %(job)s with %(backend)s") % {"job": job.pk, "backend": backend},
        ),
        questions=questions,
        selection={"source": "retry", "job": job.pk},
        created_by=created_by,
        enqueue=enqueue,
    )


def job_default_name(job: Job) -> str:
    """A name a person can find again, for a job started without one: kind, backend,
    model, local start time and size ("변환 rules 2026-11-30 21:03 · 364문항")."""
    model = f" {job.model}" if job.model else ""
    return _("%(kind)s %(backend)s%(model)s %(time)s · %(n)s questions") % {
        "kind": job.get_kind_display(),
        "backend": job.backend,
        "model": model,
        "time": timezone.localtime(job.created_at).strftime("%Y-%m-%d %H:%M"),
        "n": job.total_items,
    }


def _outputs_clear(*, job_id: int) -> None:
    """Remove the log and exports of an earlier job with this id (from a database since
    reset), so that they are not taken for this job's."""
    shutil.rmtree(export_dir(job_id=job_id), ignore_errors=True)
    log_path(job_id).unlink(missing_ok=True)


def job_parallel_tasks(*, job: Job) -> int:
    """How many tasks work on an LLM job side by side, each with its share of concurrency.

    One Python process spends most of a core on HTTP and validation at a few hundred
    requests a second, so a job with high concurrency is spread over several workers
    (processes, possibly machines); the endpoint budget is shared between them anyway.
    At most one task per worker of the running clusters (selectors.cluster_workers), not
    per worker this process would have: the web process that queues a job runs none.
    """
    if job.backend not in Job.LLM_BACKENDS or job.batch_api:
        return 1  # a Batch API job's one step at a time writes files, it does not call
    per_task = max(1, settings.MATHCONV_CONCURRENCY_PER_TASK)
    workers = max(1, selectors.cluster_workers())
    return max(1, min(workers, math.ceil(job.max_concurrent / per_task)))


def task_concurrency(*, job: Job, share: int) -> int:
    return max(1, math.ceil(job.max_concurrent / max(1, share)))


def job_enqueue(*, job: Job, tasks: int | None = None, hops: int = 0) -> None:
    """Queue the job's tasks (or `tasks` of them) once the current transaction commits.

    hops: how many times this task was handed on already (job_run_place).
    """
    job_id = job.pk
    share = job_parallel_tasks(job=job)
    for _copy in range(tasks or share):
        transaction.on_commit(
            lambda: async_task(
                "conversions.tasks.job_run",
                job_id,
                share,
                hops,
                task_name=f"job-{job_id}",
                group=f"job-{job_id}",
            )
        )


def job_run_place(*, job: Job, owner: str, cluster: str, may_move: bool) -> bool:
    """Register a task about to work on the job; False: hand it on to another cluster.

    A broker hands tasks to whichever cluster asks first, so both tasks of a job often
    landed on one cluster, and one SIGKILL stopped all work on the job until the leases
    expired (hole 10 of issue 13). With may_move (another cluster is alive, and the task
    was not handed on too often already), a task whose job already has a live run on
    this cluster is not run here. The job row is locked, so two tasks starting at once
    on one cluster see each other.
    """
    now = timezone.now()
    with transaction.atomic():
        list(Job.objects.select_for_update().filter(pk=job.pk).values_list("pk"))
        live = JobRun.objects.filter(job_id=job.pk, heartbeat_at__gte=now - lease_duration())
        if may_move and live.filter(cluster=cluster).exists():
            return False
        JobRun.objects.create(job_id=job.pk, owner=owner, cluster=cluster, heartbeat_at=now)
    return True


def job_run_end(*, owner: str) -> None:
    JobRun.objects.filter(owner=owner).delete()


def job_runs_replace_dead(*, job: Job) -> int:
    """Queue a task in place of each run of the job that stopped beating (its worker was
    killed); returns how many. Called by the job's live runs and by the reconciler, so a
    killed cluster's share of a job comes back within about one lease."""
    stale = timezone.now() - lease_duration()
    replaced = 0
    for run in JobRun.objects.filter(job_id=job.pk, heartbeat_at__lt=stale):
        # One caller wins each dead run: the delete is conditional on its heartbeat.
        if JobRun.objects.filter(pk=run.pk, heartbeat_at__lt=stale).delete()[0]:
            replaced += 1
    if replaced and Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE_STATUSES).exists():
        job_enqueue(job=job, tasks=replaced)
        log.warning("job=%s: queued %s task(s) in place of dead runs", job.pk, replaced)
    return replaced


def job_pause(*, job: Job, reason: str = "") -> bool:
    """Stop a job's work soon; its running task hands claimed items back as pending.

    reason: why, when the job pauses itself (an unreachable endpoint); shown on the job
    page as its error until `job_resume` clears it. A Message (converters/messages.py) is
    stored language-neutrally and shown in the reader's language.
    """
    with transaction.atomic():
        changed = Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE_STATUSES).update(
            status=Job.Status.PAUSED, **error_fields(reason), updated_at=timezone.now()
        )
        if changed and reason:
            # Paused by itself (an unreachable endpoint): nobody may be watching.
            notifications_create(job=job, event=JobNotification.Event.PAUSED)
    job.refresh_from_db()
    return bool(changed)


def job_resume(*, job: Job) -> bool:
    """Queue a paused (or failed) job again; it continues with its unfinished items."""
    with transaction.atomic():
        changed = Job.objects.filter(
            pk=job.pk, status__in=[Job.Status.PAUSED, Job.Status.FAILED]
        ).update(
            status=Job.Status.QUEUED,
            error_message="",
            error_reason=None,
            finished_at=None,
            updated_at=timezone.now(),
        )
        if changed:
            job_enqueue(job=job)
    job.refresh_from_db()
    return bool(changed)


def job_cancel(*, job: Job) -> bool:
    """Cancel a job: items not started become cancelled (category cancelled).

    Items a live worker holds are its to finish or cancel; items whose worker died
    (lease expired) are cancelled here. A Batch API job's items in remote batches wait
    for them: a task is queued that cancels the remote batches and records what they
    still return (conversions/batchapi.py).
    """
    now = timezone.now()
    with transaction.atomic():
        changed = (
            Job.objects.filter(pk=job.pk)
            .exclude(status__in=Job.FINAL_STATUSES)
            .update(status=Job.Status.CANCELLED, finished_at=now, updated_at=now)
        )
        if changed:
            notifications_create(job=job)
            items_mark_cancelled(
                Item.objects.filter(job_id=job.pk).filter(
                    Q(status=Item.Status.PENDING)
                    | Q(status=Item.Status.RUNNING, lease_expires_at__lt=now)
                )
            )
            if job.batch_api:
                job_enqueue(job=job, tasks=1)
    job.refresh_from_db()
    return bool(changed)


def items_retry(
    *,
    job: Job | None = None,
    items: ItemQuerySet | None = None,
    category: str | None = None,
) -> int:
    """Put failed items back to pending and queue their jobs again; returns how many.

    The items of `job` (or among `items`) that ItemQuerySet.retryable picks: failed and
    cancelled ones, or with a category those of that category.
    """
    if items is None:
        if job is None:
            raise ValueError("items_retry needs a job or items")
        items = Item.objects.filter(job_id=job.pk)
    items = items.retryable(category=category)
    with transaction.atomic():
        job_ids = set(items.order_by().values_list("job_id", flat=True).distinct())
        count = Item.objects.filter(pk__in=items.values("pk")).update(
            status=Item.Status.PENDING,
            error_category="",
            error_message="",
            error_reason=None,
            lease_owner="",
            lease_expires_at=None,
            result_latex="",
            result_labels=None,
            validation_score=None,
            validation_reasons=[],
            route="",
            cached=False,
            finished_at=None,
        )
        now = timezone.now()
        Job.objects.filter(pk__in=job_ids, status__in=Job.FINAL_STATUSES).update(
            status=Job.Status.QUEUED,
            finished_at=None,
            error_message="",
            error_reason=None,
            updated_at=now,
        )
        for queued in Job.objects.filter(pk__in=job_ids, status__in=Job.ACTIVE_STATUSES):
            job_enqueue(job=queued)
    return count


def job_start(*, job: Job) -> bool:
    """Mark the job running for a task that is about to work on it; False: leave it be."""
    now = timezone.now()
    changed = Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE_STATUSES).update(
        status=Job.Status.RUNNING, heartbeat_at=now, updated_at=now
    )
    Job.objects.filter(pk=job.pk, started_at__isnull=True).update(started_at=now)
    job.refresh_from_db()
    return bool(changed)


def job_finish_if_done(*, job: Job) -> str | None:
    """Give the job its final status once no item is pending or running; else None."""
    with transaction.atomic():
        unfinished = Item.objects.filter(
            job_id=job.pk, status__in=[Item.Status.PENDING, Item.Status.RUNNING]
        )
        if unfinished.exists():
            return None
        with_errors = Item.objects.filter(job_id=job.pk).retryable().exists()
        final = Job.Status.COMPLETED_WITH_ERRORS if with_errors else Job.Status.COMPLETED
        now = timezone.now()
        changed = Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE_STATUSES).update(
            status=final, finished_at=now, updated_at=now
        )
        if changed:
            notifications_create(job=job)
    job.refresh_from_db()
    return final if changed else None


def job_fail(*, job: Job, message: str) -> bool:
    """Fail a job that is not final yet, with `message` (a Message is stored
    language-neutrally, as job_pause's reason)."""
    now = timezone.now()
    with transaction.atomic():
        changed = (
            Job.objects.filter(pk=job.pk)
            .exclude(status__in=Job.FINAL_STATUSES)
            .update(
                status=Job.Status.FAILED,
                **error_fields(message),
                finished_at=now,
                updated_at=now,
            )
        )
        if changed:
            notifications_create(job=job)
    job.refresh_from_db()
    return bool(changed)


def jobs_reconcile() -> list[int]:
    """Queue a task again for active jobs that no live worker is working on.

    A task can be lost (Redis broker, a killed worker) or still be waiting in the queue;
    either way its job's heartbeat grows old and nothing it holds has a live lease. The
    heartbeat is set here too, so a job is re-queued at most once per lease period, and a
    second delivery is harmless anyway. Also cancels leftovers of cancelled jobs.
    """
    now = timezone.now()
    stale = now - lease_duration()
    requeued = []
    # Batch API jobs are driven by the remote batches' poller (batchapi.batches_poll).
    candidates = Job.objects.filter(status__in=Job.ACTIVE_STATUSES, batch_api=False).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, updated_at__lt=stale)
    )
    waiting = selectors.jobs_waiting_in_queue(now) if candidates else set()
    for job in candidates:
        live = Item.objects.filter(
            job_id=job.pk, status=Item.Status.RUNNING, lease_expires_at__gte=now
        ).exists()
        if live or job.pk in waiting:
            continue
        with transaction.atomic():
            if Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE_STATUSES).update(
                heartbeat_at=now
            ):
                JobRun.objects.filter(job_id=job.pk, heartbeat_at__lt=stale).delete()
                job_enqueue(job=job)
                requeued.append(job.pk)
    # Jobs that still have a live run but lost others (a killed cluster): their live
    # runs replace the dead ones themselves; this catches what they have not yet.
    partly_dead = (
        JobRun.objects.filter(
            heartbeat_at__lt=stale, job__status__in=Job.ACTIVE_STATUSES, job__batch_api=False
        )
        .values_list("job_id", flat=True)
        .distinct()
    )
    for job in Job.objects.filter(pk__in=list(partly_dead)):
        if job_runs_replace_dead(job=job):
            requeued.append(job.pk)
    JobRun.objects.filter(heartbeat_at__lt=stale).exclude(
        job__status__in=Job.ACTIVE_STATUSES
    ).delete()
    items_mark_cancelled(
        Item.objects.filter(
            job__status=Job.Status.CANCELLED,
            status__in=[Item.Status.PENDING, Item.Status.RUNNING],
            lease_expires_at__lt=now,
        )
    )
    if requeued:
        log.warning("reconciler re-queued jobs %s (no live worker)", requeued)
    notifications_requeue_due()
    return requeued
