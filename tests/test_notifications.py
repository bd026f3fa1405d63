"""Job notifications: e-mail (Django's locmem backend) and a Slack-compatible webhook (a
real HTTP server in the test), one per finished job, retried on failure, never failing
the job; and on a live qcluster."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone, translation

from conversions import notify, services, tasks
from conversions.jobsettings import JobSettings
from conversions.models import Job, JobNotification, Question
from tests.adminutil import make_job
from tests.jobutil import Cluster, make_questions, wait_until
from tests.notifyutil import WebhookReceiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def webhook(settings):
    with WebhookReceiver() as receiver:
        settings.MATHCONV_SLACK_WEBHOOK_URL = receiver.url
        settings.MATHCONV_BASE_URL = "https://mathconv.example.org"
        settings.MATHCONV_NOTIFY_RETRY_DELAYS = [0.1, 0.1]
        yield receiver


def finished_job(n: int = 3, *, name: str = "") -> Job:
    job = make_job(make_questions(n, prefix=f"N{Job.objects.count()}"), name=name)
    tasks.job_run_inline(job)
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    return job


def deliver_all() -> list[str]:
    return [
        services.notification_deliver(notification_id=pk)
        for pk in JobNotification.objects.order_by("pk").values_list("pk", flat=True)
    ]


def test_a_finished_job_sends_one_webhook_message_with_its_summary_and_link(webhook):
    job = finished_job(3, name="nightly")
    assert deliver_all() == ["sent"]
    assert deliver_all() == ["nothing to do"]  # a second delivery of the task sends nothing
    assert webhook.delivered_jobs() == [job.pk]
    assert webhook.received[0]["path"] == WebhookReceiver.SECRET_PATH
    text = webhook.delivered()[0]["text"]
    assert f"Job {job.pk} Completed: nightly" in text
    assert "Success rate: 100.0 % (3/3)" in text
    assert "Items: 3 (Succeeded 3)" in text
    assert "Cost: $0.0000" in text
    url = f"https://mathconv.example.org/admin/conversions/job/{job.pk}/change/"
    assert f"<{url}|Job page: {url}>" in text
    row = JobNotification.objects.get()
    assert (row.channel, row.event, row.attempts, row.last_error) == ("webhook", "finished", 1, "")
    assert row.sent_at is not None


def test_the_email_goes_to_the_configured_recipients_in_the_notify_language(settings):
    settings.MATHCONV_NOTIFY_EMAILS = ["ops@example.org", "lead@example.org"]
    settings.MATHCONV_NOTIFY_LANGUAGE = "ko"
    settings.MATHCONV_BASE_URL = "https://mathconv.example.org"
    job = finished_job(2, name="야간 변환")
    assert deliver_all() == ["sent"]
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.org", "lead@example.org"]
    assert message.subject == (f"[mathconv] 작업 {job.pk} 완료: 야간 변환 — 100.0 % (2/2)")
    assert f"작업: 야간 변환 (#{job.pk})" in message.body
    assert "성공률: 100.0 % (2/2)" in message.body
    assert f"https://mathconv.example.org/admin/conversions/job/{job.pk}/change/" in message.body
    assert translation.get_language() == settings.LANGUAGE_CODE  # not left switched


def test_each_channel_gets_its_own_notification_and_nothing_without_channels(settings, webhook):
    settings.MATHCONV_NOTIFY_EMAILS = ["ops@example.org"]
    job = finished_job(1)
    assert set(job.notifications.values_list("channel", flat=True)) == {"email", "webhook"}
    assert deliver_all() == ["sent", "sent"]
    assert len(mail.outbox) == 1 and webhook.delivered_jobs() == [job.pk]

    settings.MATHCONV_NOTIFY_EMAILS = []
    settings.MATHCONV_SLACK_WEBHOOK_URL = ""
    quiet = finished_job(1)
    assert not quiet.notifications.exists()


def test_failed_cancelled_and_self_paused_jobs_notify_once_each(webhook):
    failed = make_job(make_questions(1, prefix="F"))
    assert services.job_fail(job=failed, message="boom")
    assert not services.job_fail(job=failed, message="again")  # already final: no second
    cancelled = make_job(make_questions(1, prefix="C"))
    services.job_cancel(job=cancelled)
    paused = make_job(make_questions(1, prefix="P"))
    services.job_pause(job=paused, reason="endpoint unreachable")
    operator_paused = make_job(make_questions(1, prefix="O"))
    services.job_pause(job=operator_paused)  # an operator's pause: they know already
    assert list(JobNotification.objects.order_by("pk").values_list("job", "event")) == [
        (failed.pk, "finished"),
        (cancelled.pk, "finished"),
        (paused.pk, "paused"),
    ]
    assert deliver_all() == ["sent"] * 3
    texts = [body["text"] for body in webhook.delivered()]
    assert "Error: boom" in texts[0] and "Failed" in texts[0]
    assert "Cancelled" in texts[1]
    assert "Paused" in texts[2] and "endpoint unreachable" in texts[2]


def test_a_failed_delivery_is_retried_and_the_job_stays_completed(webhook):
    webhook.statuses = [500]
    job = finished_job(2)
    assert deliver_all() == ["sent"]  # 500, a short wait inside the task, then 200
    assert [r["status"] for r in webhook.received] == [500, 200]
    assert webhook.delivered_jobs() == [job.pk]
    row = JobNotification.objects.get()
    assert row.attempts == 2 and row.sent_at is not None and row.last_error == ""
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED


def test_a_notification_that_never_goes_through_gives_up_with_the_reason(webhook, caplog):
    webhook.statuses = [500, 502, 503]
    job = finished_job(1)
    assert deliver_all() == ["gave up"]
    row = JobNotification.objects.get()
    assert row.attempts == 3 and row.sent_at is None
    assert row.last_error == "HTTP 503: server error"
    assert "not sent after 3 attempts" in caplog.text
    # The webhook URL is a secret: in no stored error and no log line.
    assert WebhookReceiver.SECRET_PATH not in caplog.text
    assert services.notification_deliver(notification_id=row.pk) == "nothing to do"
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED


def test_an_unreachable_webhook_is_an_error_without_its_url(settings):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.MATHCONV_SLACK_WEBHOOK_URL = f"http://127.0.0.1:{port}/services/T0/B0/secret-token"
    settings.MATHCONV_NOTIFY_RETRY_DELAYS = []
    finished_job(1)
    assert deliver_all() == ["gave up"]
    error = JobNotification.objects.get().last_error
    assert error.startswith("ConnectError: ")
    assert "secret-token" not in error


def test_longer_waits_are_left_to_the_reconciler_which_requeues_them_when_due(settings, webhook):
    webhook.statuses = [500]
    settings.MATHCONV_NOTIFY_RETRY_DELAYS = [3600.0]
    job = finished_job(1)
    (outcome,) = deliver_all()
    assert outcome.startswith("retry at")
    row = JobNotification.objects.get()
    assert row.sent_at is None and row.next_attempt_at > timezone.now() + timedelta(minutes=59)
    assert services.notifications_requeue_due() == []  # not due yet
    assert services.notification_deliver(notification_id=row.pk) == "nothing to do"
    JobNotification.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    assert services.notifications_requeue_due() == [row.pk]  # queued for a worker
    assert services.notification_deliver(notification_id=row.pk) == "sent"
    assert webhook.delivered_jobs() == [job.pk]


def test_names_and_errors_cannot_add_links_or_mentions_to_the_webhook_message(webhook):
    job = finished_job(1, name="<!channel> & <https://evil.example|click>")
    Job.objects.filter(pk=job.pk).update(error_message="<@U123> *bold*")
    deliver_all()
    text = webhook.delivered()[0]["text"]
    assert "<!channel>" not in text and "<https://evil.example" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in text
    assert "&lt;@U123&gt;" in text
    assert text.count("<") == 1  # only the job page's own link


def test_the_message_counts_and_rate_come_from_the_job_stats(webhook):
    job = make_job(make_questions(4, prefix="M"))
    items = list(job.items.order_by("pk"))
    statuses = ["succeeded", "succeeded", "needs_review", "failed"]
    for item, status in zip(items, statuses, strict=True):
        item.status = status
        item.cost_usd = "0.0125"
        item.save()
    assert services.job_finish_if_done(job=job) == Job.Status.COMPLETED_WITH_ERRORS
    message = notify.message_for(job, JobNotification.Event.FINISHED)
    assert "Items: 4 (Succeeded 2, Needs review 1, Failed 1)" in message.lines
    assert "Success rate: 50.0 % (2/4)" in message.lines
    assert "Cost: $0.0500" in message.lines


# --- on a live cluster ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_live_cluster_sends_exactly_one_notification_per_finished_job_despite_a_500():
    with WebhookReceiver(statuses=[500]) as receiver:
        running = Cluster(
            MATHCONV_SLACK_WEBHOOK_URL=receiver.url, MATHCONV_NOTIFY_RETRY_DELAYS="1"
        ).start()
        try:
            ids = [q.pk for q in make_questions(20, prefix="L")]
            jobs = [
                services.job_create(
                    job_settings=JobSettings(backend=Job.Backend.RULES, batch_size=5),
                    questions=Question.objects.filter(pk__in=half),
                    selection={"test": True},
                )
                for half in (ids[:10], ids[10:])
            ]
            wait_until(lambda: len(receiver.delivered()) >= 2, timeout=120, interval=0.2)
            wait_until(
                lambda: JobNotification.objects.filter(sent_at__isnull=False).count() == 2,
                timeout=30,
            )
        finally:
            running.stop()
    assert sorted(receiver.delivered_jobs()) == sorted(job.pk for job in jobs)
    assert [r["status"] for r in receiver.received] == [500, 200, 200]
    for job in jobs:
        job.refresh_from_db()
        assert job.status == Job.Status.COMPLETED
    assert sorted(JobNotification.objects.values_list("attempts", flat=True)) == [1, 2]
