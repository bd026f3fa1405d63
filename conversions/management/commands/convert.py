"""`manage.py convert`: create a conversion job and queue it (the old scripts' options).

With --wait the command stays until the job ends, with a progress bar, and prints the
stats. Where the work runs then: if a django-q2 cluster is alive (see
selectors.cluster_alive), the job is queued and watched; if none is, the job runs in
this process (same code path as a cluster worker), so `convert --wait` works on a fresh
checkout with no cluster, in `make demo` and in tests. Ctrl-C pauses an in-process job
(resume it with `manage.py job resume N`) and only stops watching a queued one.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversions import selectors, services
from conversions.endpoints import endpoint_option
from conversions.jobsettings import JobSettings
from conversions.management.commands._report import (
    TranslatedCommand,
    format_stats,
    progress_line,
    quiet_console,
)
from conversions.models import Job, Question
from conversions.tasks import job_run_inline

WATCH_INTERVAL_S = 0.5
FALLBACK_AFTER_S = 20.0


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Create a MathML -> LaTeX conversion job over the question bank and queue it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--backend",
            choices=Job.Backend.values,
            default=Job.Backend.RULES,
            help=_(
                "rules (deterministic converter, no API key), openai (the LLM), or hybrid "
                "(rules first, the LLM only where the rules result fails validation). "
                "Default: rules."
            ),
        )
        parser.add_argument(
            "--model",
            default="",
            help=_("LLM model for openai/hybrid (default: MATHCONV_DEFAULT_CONVERT_MODEL)."),
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=100,
            help=_("Items claimed per batch (default 100)."),
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=None,
            help=_("Convert only the first N questions (by id)."),
        )
        parser.add_argument(
            "--max-concurrent",
            type=int,
            default=10,
            help=_("Concurrent API requests of the job (default 10)."),
        )
        parser.add_argument(
            "--rpm",
            type=int,
            default=None,
            help=_("Requests per minute allowed on the endpoint."),
        )
        parser.add_argument(
            "--tpm",
            type=int,
            default=None,
            help=_("Tokens per minute allowed on the endpoint."),
        )
        parser.add_argument(
            "--test", action="store_true", help=_("Test mode: the first 50 questions only.")
        )
        # One default with the admin's launch page (ConvertForm.only_unconverted): on.
        only = parser.add_mutually_exclusive_group()
        only.add_argument(
            "--only-unconverted",
            dest="only_unconverted",
            action="store_true",
            default=True,
            help=_(
                "Convert only questions with no accepted result yet (never converted, or "
                "failed). This is the default, as on the admin's launch page."
            ),
        )
        only.add_argument(
            "--all",
            dest="only_unconverted",
            action="store_false",
            help=_("Convert every selected question, also those with an accepted result."),
        )
        parser.add_argument(
            "--no-cache",
            action="store_true",
            help=_("Do not reuse cached results: call the backend for every item."),
        )
        parser.add_argument(
            "--overwrite-reviewed",
            action="store_true",
            help=_("Let results replace LaTeX that a reviewer approved or edited."),
        )
        parser.add_argument(
            "--few-shot",
            action=argparse.BooleanOptionalAction,
            default=settings.MATHCONV_FEW_SHOT,
            help=_(
                "Put the team's reviewed results in the prompt as worked examples (the "
                "current few-shot set, see `manage.py fewshot`); default: MATHCONV_FEW_SHOT."
            ),
        )
        parser.add_argument("--name", default="", help=_("A name for the job."))
        parser.add_argument(
            "--endpoint",
            default="",
            help=_(
                "The endpoint (see `manage.py endpoints list`) the job runs on; default: "
                "the one built from OPENAI_BASE_URL / OPENAI_API_KEY."
            ),
        )
        parser.add_argument(
            "--batch-api",
            action="store_true",
            help=_(
                "Batch API mode: send the requests as Batch API files (half the price, "
                "results within 24 hours) instead of one call each. Needs an endpoint "
                "with the Batch API and the openai or hybrid backend."
            ),
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help=_(
                "Stay until the job ends, with a progress bar, then print its stats. Runs "
                "the job in this process when no django-q2 cluster is alive."
            ),
        )

    def handle(self, *args, **opts):
        with quiet_console():
            return self.handle_quietly(**opts)

    def handle_quietly(self, **opts):
        inline = opts["wait"] and not selectors.cluster_alive()
        job = create_job(opts, enqueue=not inline)
        self.stdout.write(created_line(job))
        if job.batch_api:
            self.stdout.write(
                _(
                    "Batch API mode: the requests go out as Batch API files (results within "
                    "24 hours); the job page lists its remote batches."
                )
            )
        if not opts["wait"]:
            self.stdout.write(
                _(
                    "Queued. Watch it with `python manage.py monitor %(job)s` "
                    "(a `python manage.py qcluster` must be running)."
                )
                % {"job": job.pk}
            )
            return
        if inline:
            self.stdout.write(_("No django-q2 cluster is running: working in this process."))
            run_with_progress(job, self.stderr)
        else:
            self.stdout.write(
                _("Queued on the django-q2 cluster; watching (Ctrl-C stops watching).")
            )
            if not watch(job, self.stderr, self.stdout):
                return
        job.refresh_from_db()
        self.stdout.write(format_stats(selectors.job_stats(job=job)))
        if job.status == Job.Status.FAILED:
            raise CommandError(
                _("Job %(job)s failed: %(error)s") % {"job": job.pk, "error": job.error_text}
            )


def created_line(job: Job) -> str:
    """ "Job 3 created: 364 items, backend rules." (with the model and endpoint of an
    LLM job)."""
    parts = {"job": job.pk, "n": job.total_items, "backend": job.backend}
    if job.endpoint:
        return _(
            "Job %(job)s created: %(n)s items, backend %(backend)s, model %(model)s, "
            "endpoint %(endpoint)s (%(url)s)."
        ) % {**parts, "model": job.model, "endpoint": job.endpoint.name, "url": job.endpoint.url}
    if job.model:
        return _("Job %(job)s created: %(n)s items, backend %(backend)s, model %(model)s.") % {
            **parts,
            "model": job.model,
        }
    return _("Job %(job)s created: %(n)s items, backend %(backend)s.") % parts


def create_job(opts: dict, *, enqueue: bool) -> Job:
    selection = {
        "source": "cli",
        "limit": opts["limit"],
        "test": opts["test"],
        "only_unconverted": opts["only_unconverted"],
    }
    try:
        return services.job_create(
            job_settings=job_settings(opts),
            questions=Question.objects.all(),
            selection=selection,
            enqueue=enqueue,
        )
    except services.ConfigurationError as exc:
        raise CommandError(str(exc)) from None


def job_settings(opts: dict) -> JobSettings:
    """The command's options as job settings."""
    return JobSettings(
        kind=Job.Kind.CONVERT,
        backend=opts["backend"],
        model=opts["model"],
        batch_size=opts["batch_size"],
        max_concurrent=opts["max_concurrent"],
        rpm_limit=opts["rpm"],
        tpm_limit=opts["tpm"],
        test_mode=opts["test"],
        only_unconverted=opts["only_unconverted"],
        use_cache=not opts["no_cache"],
        overwrite_reviewed=opts["overwrite_reviewed"],
        name=opts["name"],
        limit=opts["limit"],
        endpoint=endpoint_option(opts.get("endpoint") or ""),
        batch_api=opts.get("batch_api", False),
        few_shot=bool(opts.get("few_shot")),
    )


class _Bar:
    """A progress line on a stream: redrawn in place on a terminal, a line every 5 s else."""

    def __init__(self, out) -> None:
        self.out = out
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.last = 0.0

    def draw(self, job: Job, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        line = progress_line(selectors.job_progress(job=job))
        self.out.write(f"\r{line}\x1b[K" if self.tty else line, ending="" if self.tty else "\n")
        self.out.flush()

    def end(self, job: Job) -> None:
        self.draw(job, force=True)
        if self.tty:
            self.out.write("")


class _StopOnSignal:
    """SIGINT/SIGTERM set an event instead of raising in the middle of a DB write."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __enter__(self) -> threading.Event:
        self.saved = {
            sig: signal.signal(sig, lambda *_: self.event.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        return self.event

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def run_with_progress(job: Job, out) -> str:
    bar = _Bar(out)
    with _StopOnSignal() as stop:
        outcome = job_run_inline(job, stop=stop, on_progress=bar.draw, console_level=logging.ERROR)
    bar.end(job)
    if stop.is_set() and job.batch_api:
        out.write(
            _(
                "Stopped waiting. The remote batches of job %(job)s go on: a running qcluster "
                "collects them, or run `python manage.py job poll %(job)s` later."
            )
            % {"job": job.pk}
        )
    elif stop.is_set():
        out.write(_("Paused. Resume with `python manage.py job resume %(job)s`.") % {"job": job.pk})
    return outcome


def watch(job: Job, out, stdout) -> bool:
    """Follow a queued job until it ends (True), or until Ctrl-C (False).

    If nothing picks the job up and no cluster shows signs of life, run it here.
    """
    bar = _Bar(out)
    started = time.monotonic()
    with _StopOnSignal() as stop:
        while not stop.is_set():
            job.refresh_from_db()
            if job.status not in Job.ACTIVE_STATUSES:
                break
            bar.draw(job)
            waited = time.monotonic() - started
            if (
                job.status == Job.Status.QUEUED
                and waited > FALLBACK_AFTER_S
                and not selectors.cluster_alive()
            ):
                stdout.write(_("No cluster picked the job up: working in this process."))
                break
            stop.wait(WATCH_INTERVAL_S)
    bar.end(job)
    if stop.is_set():
        out.write(
            _("Stopped watching; job %(job)s goes on (`python manage.py monitor %(job)s`).")
            % {"job": job.pk}
        )
        return False
    job.refresh_from_db()
    if job.status in Job.ACTIVE_STATUSES:
        run_with_progress(job, out)
    return True
