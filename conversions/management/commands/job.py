"""`manage.py job pause|resume|cancel|retry|stats|export|poll JOB`: steer a job from the CLI.

poll takes one step on a Batch API job now, as the poller does (conversions/batchapi.py).
Every line it prints is translated (gettext): LANGUAGE_CODE=ko prints Korean.
"""

from __future__ import annotations

import json

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversions import batchapi, exporting, selectors, services
from conversions.endpoints import endpoint_option
from conversions.management.commands._report import (
    TranslatedCommand,
    format_stats,
    quiet_console,
    status_label,
)
from conversions.models import Item, Job

ACTIONS = ("pause", "resume", "cancel", "retry", "stats", "export", "poll")


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Pause, resume, cancel or retry a job, print its stats, export its results, or poll "
        "a Batch API job's remote batches now."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=ACTIONS, help=_("What to do with the job."))
        parser.add_argument("job", type=int, help=_("Job id."))
        parser.add_argument(
            "--category",
            choices=Item.ErrorCategory.values,
            help=_(
                "retry: only items with this error category (validation_failed includes "
                "items waiting for review)."
            ),
        )
        parser.add_argument(
            "--backend",
            choices=[Job.Backend.HYBRID, Job.Backend.OPENAI],
            help=_(
                "retry: retry the failed items with the LLM in a new job on this backend "
                "(for items the rules converter refused); without it they run again on "
                "the job's own backend."
            ),
        )
        parser.add_argument("--model", default="", help=_("retry --backend: the model."))
        parser.add_argument(
            "--endpoint",
            default="",
            help=_(
                "retry --backend: the endpoint (see `manage.py endpoints list`); default: "
                "the one built from OPENAI_BASE_URL / OPENAI_API_KEY."
            ),
        )
        parser.add_argument("--json", action="store_true", help=_("stats: print JSON."))

    def handle(self, *args, **opts):
        with quiet_console():
            return self.handle_quietly(**opts)

    def handle_quietly(self, **opts):
        try:
            job = Job.objects.get(pk=opts["job"])
        except Job.DoesNotExist:
            raise CommandError(_("Job %s does not exist.") % opts["job"]) from None
        action = opts["action"]
        if action in ("pause", "resume", "cancel"):
            change = {
                "pause": services.job_pause,
                "resume": services.job_resume,
                "cancel": services.job_cancel,
            }[action]
            was = job.status
            if not change(job=job):
                refused = {
                    "pause": _(
                        "Job %(job)s is %(status)s: only a queued or running job can be paused."
                    ),
                    "resume": _(
                        "Job %(job)s is %(status)s: only a paused or failed job can be resumed."
                    ),
                    "cancel": _("Job %(job)s is %(status)s: it has already ended."),
                }[action]
                raise CommandError(refused % {"job": job.pk, "status": status_label(was)})
            self.stdout.write(
                _("Job %(job)s: %(was)s -> %(now)s.")
                % {"job": job.pk, "was": status_label(was), "now": status_label(job.status)}
            )
        elif action == "retry" and opts["backend"]:
            try:
                new = services.job_retry_with(
                    job=job,
                    backend=opts["backend"],
                    model=opts["model"],
                    endpoint=endpoint_option(opts["endpoint"]),
                )
            except services.ConfigurationError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                _("Job %(new)s (%(name)s) retries %(n)s failed item(s) of job %(job)s.")
                % {"new": new.pk, "name": new.name, "n": new.total_items, "job": job.pk}
            )
        elif action == "retry":
            count = services.items_retry(job=job, category=opts["category"])
            job.refresh_from_db()
            self.stdout.write(
                _("Job %(job)s: %(n)s item(s) queued again; job is %(status)s.")
                % {"job": job.pk, "n": count, "status": status_label(job.status)}
            )
        elif action == "poll":
            if not job.batch_api:
                raise CommandError(_("Job %(job)s is not a Batch API job.") % {"job": job.pk})
            outcome = batchapi.job_step(job.pk)
            self.stdout.write(_("Job %(job)s: %(outcome)s") % {"job": job.pk, "outcome": outcome})
        elif action == "stats":
            stats = selectors.job_stats(job=job)
            if opts["json"]:
                self.stdout.write(json.dumps(stats, indent=2, ensure_ascii=False))
            else:
                self.stdout.write(format_stats(stats))
        else:
            paths = exporting.job_export(job=job)
            self.stdout.write(_("Job %(job)s: wrote %(path)s") % {"job": job.pk, "path": paths[0]})
            if len(paths) > 1:
                self.stdout.write(
                    _("and %(n)s batch file(s) in %(dir)s")
                    % {"n": len(paths) - 1, "dir": paths[1].parent}
                )
