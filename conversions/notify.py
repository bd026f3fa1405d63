"""What a job notification says, and sending it: e-mail and Slack-compatible webhooks.

The outbox rows, claims and retries are services/notifications.py; this module only
writes the message from the job's stats (selectors.job_stats, the success rate of
selectors.success_rate) and hands it to one channel, raising DeliveryError when the
channel refuses it. E-mail goes through Django's mail settings (EMAIL_*), the webhook
through httpx2 (a POST of {"text": ...}, which Slack, Mattermost and Rocket.Chat accept).

The job's name and error message come from people and endpoints: the e-mail is plain
text, and the webhook text escapes &, < and > (Slack's own rule) so that a name cannot
add a link or a mention such as <!channel>.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx2
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import override

from conversions import selectors
from conversions.engine.redact import redact
from conversions.models import Item, Job, JobNotification

COUNT_ORDER = ("succeeded", "needs_review", "failed", "cancelled", "skipped", "pending", "running")
ERROR_CHARS = 500


class DeliveryError(Exception):
    """The channel did not take the message; the text names why (secrets redacted)."""


@dataclass(frozen=True)
class Message:
    subject: str
    lines: tuple[str, ...]  # the body, each line plain text
    url: str  # the job page

    def text(self) -> str:
        return "\n".join(self.lines)


def channels() -> list[str]:
    """The channels this process's settings configure (MATHCONV_NOTIFY_EMAILS,
    MATHCONV_SLACK_WEBHOOK_URL), in a fixed order; [] when none."""
    found: list[str] = []
    if settings.MATHCONV_NOTIFY_EMAILS:
        found.append(JobNotification.Channel.EMAIL)
    if settings.MATHCONV_SLACK_WEBHOOK_URL:
        found.append(JobNotification.Channel.WEBHOOK)
    return found


def job_url(job: Job) -> str:
    """The job's admin page under MATHCONV_BASE_URL."""
    return settings.MATHCONV_BASE_URL + reverse("admin:conversions_job_change", args=[job.pk])


def message_for(job: Job, event: str) -> Message:
    """The job's summary in MATHCONV_NOTIFY_LANGUAGE: status, item counts, success rate
    (selectors.success_rate), cost in USD, duration, the error if any, the page's URL."""
    with override(settings.MATHCONV_NOTIFY_LANGUAGE):
        stats = selectors.job_stats(job=job)
        status = job.get_status_display()
        if event == JobNotification.Event.PAUSED:
            status = _("Paused")
        name = " ".join(str(job).split())  # no line breaks in a mail header
        subject = _("[mathconv] Job %(job)s %(status)s: %(name)s — %(rate)s") % {
            "job": job.pk,
            "status": status,
            "name": name[:120],
            "rate": stats["success"]["text"],
        }
        counts = ", ".join(
            f"{Item.Status(name_).label} {stats['counts'][name_]:,}"
            for name_ in COUNT_ORDER
            if stats["counts"].get(name_)
        )
        lines = [
            _("Job: %(name)s (#%(job)s)") % {"name": name, "job": job.pk},
            _("Kind: %(kind)s · backend %(backend)s%(model)s")
            % {
                "kind": job.get_kind_display(),
                "backend": job.backend,
                "model": f" · {job.model}" if job.model else "",
            },
            _("Status: %(status)s") % {"status": status},
            _("Items: %(total)s (%(counts)s)")
            % {"total": f"{stats['total']:,}", "counts": counts or "-"},
            _("Success rate: %(rate)s") % {"rate": stats["success"]["text"]},
            _("Cost: $%(cost).4f") % {"cost": stats["cost_usd"]},
            _("Duration: %(seconds)s s") % {"seconds": f"{stats['elapsed_s']:,.0f}"},
        ]
        if job.error_message:
            lines.append(_("Error: %(error)s") % {"error": job.error_text[:ERROR_CHARS]})
        url = job_url(job)
        lines.append(_("Job page: %(url)s") % {"url": url})
    return Message(subject=subject, lines=tuple(lines), url=url)


def slack_escape(text: str) -> str:
    """Slack's escaping of message text: &, < and > as entities, so that no part of it
    is read as a link, a mention or a command."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(message: Message) -> dict:
    """{"text": ...}: the subject in bold, the body, and the page as a Slack link."""
    body = [slack_escape(line) for line in message.lines[:-1]]
    link = f"<{message.url}|{slack_escape(message.lines[-1])}>"
    return {"text": "\n".join([f"*{slack_escape(message.subject)}*", *body, link])}


def send(channel: str, message: Message) -> None:
    """Deliver the message on one channel; DeliveryError when it is refused or fails."""
    if channel == JobNotification.Channel.EMAIL:
        _send_email(message)
    elif channel == JobNotification.Channel.WEBHOOK:
        _post_webhook(message)
    else:
        raise DeliveryError(f"unknown channel {channel!r}")


def _send_email(message: Message) -> None:
    recipients = settings.MATHCONV_NOTIFY_EMAILS
    if not recipients:
        raise DeliveryError("MATHCONV_NOTIFY_EMAILS is empty")
    try:
        send_mail(message.subject, message.text(), None, recipients, fail_silently=False)
    except Exception as exc:  # smtplib, socket and header errors alike
        raise DeliveryError(
            redact(f"{type(exc).__name__}: {exc}", (settings.EMAIL_HOST_PASSWORD,))
        ) from exc


def _post_webhook(message: Message) -> None:
    url = settings.MATHCONV_SLACK_WEBHOOK_URL
    if not url:
        raise DeliveryError("MATHCONV_SLACK_WEBHOOK_URL is not set")
    try:
        response = httpx2.post(
            url, json=webhook_payload(message), timeout=settings.MATHCONV_NOTIFY_TIMEOUT
        )
    except httpx2.HTTPError as exc:
        # The URL is the webhook's secret: never in a message that is stored or logged.
        raise DeliveryError(redact(f"{type(exc).__name__}: {exc}", (url,))) from exc
    if response.status_code >= 300:
        raise DeliveryError(redact(f"HTTP {response.status_code}: {response.text[:200]}", (url,)))
