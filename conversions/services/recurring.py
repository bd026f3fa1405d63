"""Recurring jobs: their django-q2 schedules, and the job each firing starts.

recurring_job_sync keeps one CRON Schedule per enabled RecurringJob (created, changed,
or deleted when the recurring job is disabled); the admin calls it on every save and
recurring_job_delete on delete. Each firing calls conversions.tasks.recurring_job_run,
which calls recurring_job_launch: the job is created by services.job_create with the
recurring job's JobSettings, exactly as the launch page, `convert` and `label` create
theirs.

A firing starts at most one job, even when the task is delivered twice (the firing's
time is claimed on the row), and none while the previous run's job is still unfinished
(its questions would be sent twice). A firing whose settings cannot work leaves a failed
job with the reason, so that it is seen (and notified) like any job that failed.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from croniter import croniter
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.models import Schedule

from conversions import labeling
from conversions.jobsettings import JobSettings
from conversions.models import Job, Question, QuestionQuerySet, RecurringJob
from conversions.preflight import ConfigurationError
from conversions.services.jobs import job_create, job_fail

log = logging.getLogger("conversions.recurring")

TASK = "conversions.tasks.recurring_job_run"
# django-q2 passes the firing's planned time to the task under this keyword.
SCHEDULED_FOR = "scheduled_for"


def schedule_name(recurring: RecurringJob) -> str:
    return f"mathconv: recurring job {recurring.pk}"[:100]


def next_run(cron: str) -> datetime:
    """The next time the cron expression fires after now, read in TIME_ZONE (as django-q2
    reads it)."""
    return croniter(cron, timezone.localtime()).get_next(datetime)


def recurring_job_sync(*, recurring: RecurringJob) -> Schedule | None:
    """Create, update or delete the recurring job's Schedule to match it: enabled with a
    cron expression (or a daily time) -> one CRON schedule calling TASK with its id;
    disabled -> no schedule. Returns the schedule (None when there is none)."""
    with transaction.atomic():
        schedule = Schedule.objects.filter(pk=recurring.schedule_id).first()
        cron = recurring.cron_expression
        if not recurring.enabled or not cron:
            if schedule is not None:
                schedule.delete()
            RecurringJob.objects.filter(pk=recurring.pk).update(schedule=None)
            recurring.schedule = None
            return None
        if schedule is None:
            schedule = Schedule(func=TASK)
        if schedule.pk is None or schedule.cron != cron:
            schedule.next_run = next_run(cron)
        schedule.name = schedule_name(recurring)
        schedule.func = TASK
        schedule.args = repr(recurring.pk)
        schedule.schedule_type = Schedule.CRON
        schedule.cron = cron
        schedule.repeats = -1
        schedule.intended_date_kwarg = SCHEDULED_FOR
        schedule.save()
        RecurringJob.objects.filter(pk=recurring.pk).update(schedule=schedule)
        recurring.schedule = schedule
    return schedule


def recurring_job_delete(*, recurring: RecurringJob) -> None:
    """Delete the recurring job and its schedule."""
    with transaction.atomic():
        Schedule.objects.filter(pk=recurring.schedule_id).delete()
        recurring.delete()


def recurring_questions(recurring: RecurringJob, job_settings: JobSettings) -> QuestionQuerySet:
    """The questions a run works on: the subject and grade filter, then for "pending"
    those with no accepted LaTeX (conversion) or no labels from the schema (labeling)."""
    questions: QuestionQuerySet = Question.objects.all()
    if recurring.subject:
        questions = questions.filter(subject=recurring.subject)
    if recurring.grade:
        questions = questions.filter(grade=recurring.grade)
    if recurring.questions == RecurringJob.Questions.PENDING:
        if recurring.kind == Job.Kind.LABEL and job_settings.label_schema is not None:
            questions = labeling.questions_unlabeled(questions, schema=job_settings.label_schema)
        elif recurring.kind == Job.Kind.CONVERT:
            questions = questions.unconverted()
    return questions


def recurring_job_launch(*, recurring_id: int, scheduled_for: str = "") -> str:
    """Start the recurring job's run: a job over recurring_questions, created and queued
    by job_create. scheduled_for: the firing's planned time (from django-q2); a firing
    already claimed starts nothing. Returns what happened, also kept in last_message."""
    with transaction.atomic():
        recurring = RecurringJob.objects.select_for_update().filter(pk=recurring_id).first()
        if recurring is None:
            return f"recurring job {recurring_id} does not exist"
        if not recurring.enabled:
            return _record(recurring, _("Disabled: nothing started."))
        if scheduled_for and recurring.last_scheduled_for == scheduled_for:
            return f"the firing of {scheduled_for} already ran"
        recurring.last_scheduled_for = scheduled_for
        previous = recurring.last_job
        if previous is not None and not previous.is_final:
            return _record(
                recurring,
                _("Job %(job)s of the previous run is still %(status)s: nothing started.")
                % {"job": previous.pk, "status": previous.get_status_display()},
            )
        return _launch(recurring)


def _launch(recurring: RecurringJob) -> str:
    now = timezone.localtime()
    name = f"{recurring.name} · {now:%Y-%m-%d %H:%M}"
    selection = {
        "source": "recurring",
        "recurring_job": recurring.pk,
        "questions": recurring.questions,
        "subject": recurring.subject,
        "grade": recurring.grade,
    }
    try:
        job_settings = JobSettings.from_mapping(recurring.job_settings)
        job_settings = replace(job_settings, kind=recurring.kind, name=name)
        questions = recurring_questions(recurring, job_settings)
        if not questions.exists():
            return _record(recurring, _("No questions to work on: nothing started."))
        job = job_create(job_settings=job_settings, questions=questions, selection=selection)
    except ConfigurationError as exc:
        job = _failed_job(recurring, name=name, selection=selection, reason=str(exc))
        log.error("recurring job %s: could not start a job: %s", recurring.pk, exc)
        return _record(
            recurring, _("Job %(job)s failed to start: %(reason)s") % {"job": job.pk, "reason": exc}
        )
    return _record(
        recurring,
        _("Job %(job)s started with %(n)s item(s).") % {"job": job.pk, "n": job.total_items},
        job=job,
    )


def _failed_job(recurring: RecurringJob, *, name: str, selection: dict, reason: str) -> Job:
    """A job with no items, failed with the reason: listed, and notified, like any failure."""
    backend = (recurring.job_settings or {}).get("backend") or Job.Backend.RULES
    job = Job.objects.create(
        kind=recurring.kind,
        backend=backend if backend in Job.Backend.values else Job.Backend.RULES,
        name=name,
        selection=selection,
    )
    job_fail(job=job, message=reason)
    recurring.last_job = job
    return job


def _record(recurring: RecurringJob, message: str, *, job: Job | None = None) -> str:
    recurring.last_run_at = timezone.now()
    recurring.last_message = message
    if job is not None:
        recurring.last_job = job
    recurring.save(update_fields=["last_scheduled_for", "last_run_at", "last_message", "last_job"])
    log.info("recurring job %s: %s", recurring.pk, message)
    return message
