"""Plain-text rendering of job stats for the CLI (convert, job, monitor, label, demo).

Every word is translated (gettext), so the commands print Korean under LANGUAGE_CODE=ko;
the English text reads as before. Statuses, routes and error categories are printed as
words of the running text (lower case in English); an error category keeps its code in
brackets, since `job retry --category` takes the code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import BaseCommand
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

from conversions.exporting import export_dir
from conversions.joblog import log_path
from conversions.models import Item

# Job and item statuses as the CLI words them (the admin's labels are capitalised).
STATUS_WORDS = {
    "queued": pgettext_lazy("cli status", "queued"),
    "running": pgettext_lazy("cli status", "running"),
    "paused": pgettext_lazy("cli status", "paused"),
    "completed": pgettext_lazy("cli status", "completed"),
    "completed_with_errors": pgettext_lazy("cli status", "completed with errors"),
    "cancelled": pgettext_lazy("cli status", "cancelled"),
    "failed": pgettext_lazy("cli status", "failed"),
    "pending": pgettext_lazy("cli status", "pending"),
    "succeeded": pgettext_lazy("cli status", "succeeded"),
    "needs_review": pgettext_lazy("cli status", "needs review"),
    "skipped": pgettext_lazy("cli status", "skipped"),
}
ROUTE_WORDS = {
    "rules": pgettext_lazy("cli route", "rules"),
    "llm": pgettext_lazy("cli route", "LLM"),
    "cache": pgettext_lazy("cli route", "cache"),
}
# Loggers whose INFO lines a command's own (translated) lines already say: "job=3
# created ...", django-q2's "Enqueued ...". Their warnings still show; the job's log
# file keeps every line of a run.
CHATTY_LOGGERS = ("conversions", "django-q")


class TranslatedCommand(BaseCommand):
    """A command whose `help` is a lazy translation: argparse gets it as text, in the
    language active when the parser is built (`--help` under LANGUAGE_CODE=ko: Korean)."""

    # BaseCommand declares `help: str`; here it is a lazy string until the parser is built.
    help: str | Promise = ""  # type: ignore[assignment]

    def create_parser(self, prog_name, subcommand, **kwargs):
        self.help = str(self.help)
        return super().create_parser(prog_name, subcommand, **kwargs)


COUNT_ORDER = ["succeeded", "needs_review", "failed", "cancelled", "skipped", "running", "pending"]


def status_label(value: str) -> str:
    """A job or item status as a word of a CLI sentence ("completed", "완료")."""
    return str(STATUS_WORDS.get(value, value))


def category_label(value: str) -> str:
    """An error category as the CLI prints it: its label, then its code in brackets."""
    try:
        label = Item.ErrorCategory(value).label
    except ValueError:
        return value
    return f"{label} [{value}]"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return _("%(s)ss") % {"s": seconds}
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return _("%(m)sm%(s)ss") % {"m": minutes, "s": f"{seconds:02d}"}
    hours, minutes = divmod(minutes, 60)
    return _("%(h)sh%(m)sm") % {"h": hours, "m": f"{minutes:02d}"}


def _ms(value) -> str:
    return "-" if value is None else str(value)


def progress_bar(done: int, total: int, width: int = 30) -> str:
    share = done / total if total else 1.0
    filled = int(share * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {share * 100:5.1f}% {done}/{total}"


def progress_line(stats: dict) -> str:
    return _("%(bar)s  %(status)s  %(rate)s/min  ETA %(eta)s") % {
        "bar": progress_bar(stats["done"], stats["total"]),
        "status": status_label(stats["status"]),
        "rate": f"{stats['throughput_per_min']:.0f}",
        "eta": _duration(stats["eta_s"]),
    }


def format_stats(stats: dict, *, exports: bool = True) -> str:
    counts = stats["counts"]
    count_text = ", ".join(
        _("%(n)s %(status)s") % {"n": counts[s], "status": status_label(s)}
        for s in COUNT_ORDER
        if counts.get(s)
    )
    latency = stats["latency_ms"]
    cache = stats["cache"]
    success = stats["success"]
    model = _(", model %(model)s") % {"model": stats["model"]} if stats["model"] else ""
    lines = [
        _("Job %(job)s (%(name)s): %(status)s  [backend %(backend)s%(model)s]")
        % {
            "job": stats["job"],
            "name": stats["name"],
            "status": status_label(stats["status"]),
            "backend": stats["backend"],
            "model": model,
        },
        _("  items       %(done)s done of %(total)s: %(counts)s")
        % {"done": stats["done"], "total": stats["total"], "counts": count_text or _("none")},
        _("  success     %(rate)s") % {"rate": success["text"]}
        + (
            _("; %(n)s skipped (left out)") % {"n": success["skipped"]}
            if success["skipped"]
            else ""
        ),
        _("  routes      %(routes)s")
        % {
            "routes": ", ".join(
                f"{ROUTE_WORDS.get(k, k)} {v}" for k, v in sorted(stats["routes"].items())
            )
            or "-"
        },
        _("  latency     mean %(mean)s ms, p50 %(p50)s ms, p95 %(p95)s ms")
        % {
            "mean": _ms(latency["mean"]),
            "p50": _ms(latency["p50"]),
            "p95": _ms(latency["p95"]),
        },
        _("  throughput  %(rate)s items/min over %(elapsed)s, ETA %(eta)s")
        % {
            "rate": f"{stats['throughput_per_min']:.0f}",
            "elapsed": _duration(stats["elapsed_s"]),
            "eta": _duration(stats["eta_s"]),
        },
        _(
            "  tokens      %(tin)s in / %(tout)s out; API calls %(calls)s (%(per)s per item), "
            "sent %(sent)s, retries %(retries)s"
        )
        % {
            "tin": stats["tokens_in"],
            "tout": stats["tokens_out"],
            "calls": stats["api_calls"],
            "per": f"{stats['api_calls_per_item'] or 0:.2f}",
            "sent": stats["requests_sent"],
            "retries": stats["retries"],
        },
        _("  cost        $%(cost)s; cache hits %(hits)s (%(rate)s) saved $%(saved)s")
        % {
            "cost": f"{stats['cost_usd']:.6f}",
            "hits": cache["hits"],
            "rate": _pct(cache["hit_rate"]),
            "saved": f"{cache['saved_usd']:.6f}",
        }
        + (
            _("; saved vs all-LLM $%(saved)s") % {"saved": f"{stats['saved_vs_all_llm_usd']:.6f}"}
            if stats["saved_vs_all_llm_usd"] is not None
            else ""
        ),
    ]
    batch = stats.get("batch_api")
    if batch:
        lines.append("  " + batch_api_line(batch))
        for row in batch["batches"]:
            lines.append(
                f"    {row['seq']:>3} {row['remote_id'] or '-'}  {row['state']}"
                f"  {row['completed']}/{row['total']} done, {row['failed']} failed"
                f"  submitted {row['submitted'] or '-'}"
            )
    for category, failure in sorted(stats["failures"].items()):
        samples = " | ".join(s[:120] for s in failure["samples"][:3])
        lines.append(
            _("  failures    %(category)s %(n)s: %(samples)s")
            % {"category": category_label(category), "n": failure["count"], "samples": samples}
        )
    if stats["error"]:
        lines.append(_("  error       %(error)s") % {"error": stats["error"]})
    if exports:
        lines.append(_("  log         %(path)s") % {"path": log_path(stats["job"])})
        lines.append(_("  exports     %(path)s") % {"path": export_dir(job_id=stats["job"])})
    return "\n".join(lines)


def batch_api_line(batch: dict) -> str:
    """A Batch API job's remote batches and what they saved against realtime."""
    realtime = batch["realtime_cost_usd"]
    saved = (
        _("realtime price $%(realtime).6f, saved $%(saved).6f")
        % {"realtime": realtime, "saved": batch["saved_vs_realtime_usd"]}
        if realtime is not None
        else _("no realtime price for this model")
    )
    return _("Batch API: %(n)s remote batch(es), %(open)s open; %(saved)s") % {
        "n": len(batch["batches"]),
        "open": batch["open"],
        "saved": saved,
    }


@contextmanager
def quiet_console() -> Iterator[None]:
    """While a command runs: the chatty loggers' INFO lines stay off the terminal."""
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)
