"""Job notifications as an outbox: written with the job's end, delivered after it.

notifications_create runs inside the transaction that gives a job its final status (or
pauses it for a reason), so a notification exists exactly when the job ended, once per
job, channel and event (a unique constraint). After commit a django-q2 task
(conversions.tasks.notification_send) delivers it through conversions/notify.py.

Delivery claims the row with a conditional UPDATE (unsent, unclaimed or claim expired,
attempts left) and records sent_at with another (still unsent): two deliveries of the
task send one message. A failure is logged and stored on the row (last_error), and the
row is tried again after MATHCONV_NOTIFY_RETRY_DELAYS[attempt]: short waits inside the
task, longer ones when the reconciler schedule (every minute) finds the row due. The job
is never touched: a notification that cannot be sent never fails a job.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from conversions import notify
from conversions.models import Job, JobNotification

log = logging.getLogger("conversions.notifications")

# A sender holds a claimed row this long: longer than one delivery can take.
CLAIM_SECONDS = 120
DUE_BATCH = 200


def max_attempts() -> int:
    return 1 + len(settings.MATHCONV_NOTIFY_RETRY_DELAYS)


def notifications_create(*, job: Job, event: str = JobNotification.Event.FINISHED) -> int:
    """One notification per configured channel (notify.channels) for this job and event,
    queued for delivery after the current transaction commits; returns how many were new.
    Call it in the transaction that ended (or paused) the job."""
    now = timezone.now()
    created = 0
    for channel in notify.channels():
        row, new = JobNotification.objects.get_or_create(
            job_id=job.pk, channel=channel, event=event, defaults={"next_attempt_at": now}
        )
        if new:
            created += 1
            notification_enqueue(notification_id=row.pk)
    return created


def notification_enqueue(*, notification_id: int) -> None:
    # robust: a broker that cannot take the task now (Redis restarting) must not break
    # the caller that just ended the job; the reconciler queues the row a minute later.
    transaction.on_commit(
        lambda: async_task(
            "conversions.tasks.notification_send",
            notification_id,
            task_name=f"notify-{notification_id}",
            group="notifications",
        ),
        robust=True,
    )


def notification_deliver(*, notification_id: int) -> str:
    """Try to deliver one notification until it is sent, or until the next retry is
    further away than MATHCONV_NOTIFY_WAIT_IN_TASK (the reconciler takes it up then).

    Returns "sent", "retry at <time>", "gave up" (every attempt failed: logged as an
    error, last_error stays on the row) or "nothing to do" (sent already, held by
    another sender, or not due yet)."""
    while True:
        outcome, wait_s = _attempt(notification_id)
        if wait_s is None or wait_s > settings.MATHCONV_NOTIFY_WAIT_IN_TASK:
            return outcome
        time.sleep(wait_s + 0.05)  # the row is due by the wall clock, not the sleep's


def _claim(notification_id: int, now) -> bool:
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    return bool(
        JobNotification.objects.filter(
            free,
            pk=notification_id,
            sent_at__isnull=True,
            next_attempt_at__lte=now,
            attempts__lt=max_attempts(),
        ).update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS), attempts=F("attempts") + 1)
    )


def _attempt(notification_id: int) -> tuple[str, float | None]:
    now = timezone.now()
    if not _claim(notification_id, now):
        return "nothing to do", None
    row = JobNotification.objects.select_related("job").get(pk=notification_id)
    try:
        notify.send(row.channel, notify.message_for(row.job, row.event))
    except Exception as exc:  # DeliveryError, or a bug in composing: never the job's fault
        return _failed(row, exc)
    JobNotification.objects.filter(pk=row.pk, sent_at__isnull=True).update(
        sent_at=timezone.now(), claimed_until=None, last_error=""
    )
    log.info("job=%s: %s notification sent (%s)", row.job_id, row.channel, row.event)
    return "sent", None


def _failed(row: JobNotification, exc: Exception) -> tuple[str, float | None]:
    error = str(exc) if isinstance(exc, notify.DeliveryError) else f"{type(exc).__name__}: {exc}"
    delays = settings.MATHCONV_NOTIFY_RETRY_DELAYS
    if row.attempts > len(delays):
        JobNotification.objects.filter(pk=row.pk).update(claimed_until=None, last_error=error)
        log.error(
            "job=%s: %s notification not sent after %s attempts: %s",
            row.job_id,
            row.channel,
            row.attempts,
            error,
        )
        return "gave up", None
    wait_s = delays[row.attempts - 1]
    next_at = timezone.now() + timedelta(seconds=wait_s)
    JobNotification.objects.filter(pk=row.pk).update(
        claimed_until=None, last_error=error, next_attempt_at=next_at
    )
    log.warning(
        "job=%s: %s notification attempt %s failed (%s); next in %.0f s",
        row.job_id,
        row.channel,
        row.attempts,
        error,
        wait_s,
    )
    return f"retry at {timezone.localtime(next_at):%H:%M:%S}", wait_s


def notifications_requeue_due() -> list[int]:
    """Queue a delivery for unsent notifications whose next attempt is due and that no
    sender holds (the reconciler calls this every minute); returns their ids."""
    now = timezone.now()
    due = list(
        JobNotification.objects.filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
            # A new row's own task is probably still in the queue: give it a minute.
            Q(attempts__gt=0) | Q(created_at__lt=now - timedelta(minutes=1)),
            sent_at__isnull=True,
            next_attempt_at__lte=now,
            attempts__lt=max_attempts(),
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:DUE_BATCH]
    )
    for notification_id in due:
        async_task(
            "conversions.tasks.notification_send",
            notification_id,
            task_name=f"notify-{notification_id}",
            group="notifications",
        )
    return due
