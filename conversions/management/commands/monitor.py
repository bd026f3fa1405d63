"""`manage.py monitor [JOB]`: a live terminal dashboard, refreshed every 2 seconds."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversions import selectors
from conversions.management.commands._report import TranslatedCommand, format_stats, progress_line
from conversions.models import Job

RECENT_JOBS = 10


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Show live progress and stats of one job, or of the active and recent jobs."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "job", nargs="?", type=int, help=_("Job id (default: all active and recent jobs).")
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=2.0,
            help=_("Seconds between refreshes (default 2)."),
        )
        parser.add_argument("--once", action="store_true", help=_("Print once and exit."))

    def handle(self, *args, **opts):
        job_id = opts["job"]
        if job_id is not None and not Job.objects.filter(pk=job_id).exists():
            raise CommandError(_("Job %s does not exist.") % job_id)
        tty = self.stdout.isatty()
        stop = threading.Event()
        previous = {
            sig: signal.signal(sig, lambda *_: stop.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while True:
                screen, finished = render(job_id)
                self.stdout.write(("\x1b[H\x1b[2J" if tty else "") + screen)
                self.stdout.flush()
                if opts["once"] or finished or stop.wait(opts["interval"]):
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def render(job_id: int | None) -> tuple[str, bool]:
    """The dashboard text, and whether the watched job has ended."""
    health = selectors.queue_health()
    head = _("mathconv monitor  %(time)s  cluster %(alive)s  active jobs %(n)s") % {
        "time": f"{timezone.localtime():%Y-%m-%d %H:%M:%S}",
        "alive": _("alive") if health["cluster_alive"] else _("NOT RUNNING"),
        "n": health["active_jobs"],
    }
    lines = [head]
    if health["warning"]:
        lines.append(f"! {health['warning']}")
    lines.append("")
    if job_id is not None:
        job = Job.objects.get(pk=job_id)
        stats = selectors.job_stats(job=job)
        lines.append(progress_line(stats))
        lines.append(format_stats(stats))
        series = selectors.job_throughput_series(job=job, buckets=30)
        if series:
            lines.append(
                _("  per minute  %(line)s") % {"line": sparkline([b["per_min"] for b in series])}
            )
        return "\n".join(lines) + "\n", job.is_final
    jobs = Job.objects.order_by("-id")[:RECENT_JOBS]
    if not jobs:
        lines.append(_("No jobs yet. Start one with `python manage.py convert`."))
    for job in jobs:
        progress = selectors.job_progress(job=job)
        lines.append(f"#{job.pk:<5} {job.backend:<7} {progress_line(progress)}")
    overall = selectors.overall_stats(days=1)
    lines += [
        "",
        _("last 24 h: %(n)s items, success %(rate)s, cost $%(cost)s, cache hits %(hits)s")
        % {
            "n": overall["items"],
            "rate": overall["success"]["text"],
            "cost": f"{overall['cost_usd']:.4f}",
            "hits": overall["cache"]["hits"],
        },
    ]
    return "\n".join(lines) + "\n", False


def sparkline(values: list[float]) -> str:
    blocks = " ▁▂▃▄▅▆▇█"
    top = max(values) or 1.0
    line = "".join(blocks[min(8, round(v / top * 8))] for v in values)
    return line + _("  (max %(n)s/min)") % {"n": f"{top:.0f}"}
