"""Read-side queries: job and overall stats, the dashboard's daily trends, failure groups,
the launch page's estimate, and the queue's health.

Everything is computed from the Item rows with a handful of aggregate queries, so the
numbers are right whichever worker wrote them and after any crash.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Avg, CharField, Count, F, Func, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.functions import Length, TruncDate
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule, Task
from django_q.status import Stat

from conversions import labeling, pricing
from conversions.converters.messages import shown
from conversions.engine.prompts import CONVERT_SYSTEM_PROMPT, ConversionTask, estimate_text_tokens
from conversions.engine.types import WorkItem
from conversions.models import Endpoint, Item, Job, LabelSchema, Question, RemoteBatch

SAMPLE_MESSAGES = 5

# --- the success rate, defined once ------------------------------------------------------

# Counted: every item a job attempted to the end. needs_review (the answer failed the
# validator) and failed count against the rate. Left out: pending and running (not done),
# cancelled (never attempted) and skipped (a reviewer's locked result was kept, nothing
# was attempted); skipped items are shown apart.
RATE_SUCCEEDED = (Item.Status.SUCCEEDED,)
RATE_COUNTED = (Item.Status.SUCCEEDED, Item.Status.NEEDS_REVIEW, Item.Status.FAILED)


def success_rate(counts: dict) -> dict:
    """The success rate from item counts by status ({"succeeded": 773, "failed": 3, ...}).

    Returns {"rate": float in [0, 1] or None when nothing was counted, "succeeded": int,
    "counted": int (succeeded + needs_review + failed), "skipped": int, "text": str}.
    This is the only definition: the dashboard, the job list and page, the CLI
    (`convert --wait`, `job stats`, `label`) and the JSON stats all use it.
    """
    succeeded = sum(counts.get(s, 0) or 0 for s in RATE_SUCCEEDED)
    counted = sum(counts.get(s, 0) or 0 for s in RATE_COUNTED)
    rate = succeeded / counted if counted else None
    return {
        "rate": rate,
        "succeeded": succeeded,
        "counted": counted,
        "skipped": counts.get(Item.Status.SKIPPED, 0) or 0,
        "text": rate_text(succeeded, counted),
    }


def rate_text(succeeded: int, counted: int) -> str:
    """ "99.6 % (773/776)", the counts beside the percentage; "–" when nothing counted.

    Rounded down to one decimal, so a rate with any failure never reads 100 % (773/776
    is 99.6 %, 99,999/100,000 is 99.9 %).
    """
    if not counted:
        return "–"
    tenths = succeeded * 1000 // counted
    return f"{tenths // 10}.{tenths % 10} % ({succeeded:,}/{counted:,})"


RECENT_WINDOW_S = 60
UNFINISHED = Item.UNFINISHED_STATUSES
TREND_DAYS = 30
GROUP_SCAN = 5000  # distinct messages read to build the failure groups
SAMPLE_CHARS = 300
ESTIMATE_SAMPLE = 200


def _money(value) -> float:
    return float(round(value or Decimal("0"), 6))


def _counts(items: QuerySet[Any], field: str) -> dict[str, int]:
    rows = items.order_by().values_list(field).annotate(n=Count("id"))
    return {key: n for key, n in rows if key}


def _failures(items: QuerySet[Item]) -> dict[str, dict]:
    """{category: {"count", "samples": up to SAMPLE_MESSAGES distinct messages}}, the
    messages in the active language (converters.messages.shown)."""
    failures = {}
    for category, n in _counts(items.exclude(error_category=""), "error_category").items():
        samples = (
            items.filter(error_category=category)
            .order_by()
            .values_list("error_message", "error_reason")
            .distinct()[:SAMPLE_MESSAGES]
        )
        failures[category] = {
            "count": n,
            "samples": [shown(message, reason) for message, reason in samples],
        }
    return failures


def _percentile(items: QuerySet[Item], n: int, share: float) -> int | None:
    if not n:
        return None
    index = min(n - 1, int(share * n))
    return items.order_by("latency_ms").values_list("latency_ms", flat=True)[index]


def _latency(items: QuerySet[Item], n: int, mean: float | None) -> dict:
    # The percentiles walk the (job, latency_ms) index: no sort, even on 100k items.
    timed = items.filter(latency_ms__isnull=False)
    return {
        "mean": round(mean, 1) if mean is not None else None,
        "p50": _percentile(timed, n, 0.50),
        "p95": _percentile(timed, n, 0.95),
    }


LLM_CALLED = Q(route=Item.Route.LLM, api_calls__gt=0)


def _llm_cost_per_item(job: Job, items: QuerySet[Item], agg: dict) -> Decimal | None:
    """What one LLM call for this job costs on average: this job's calls (agg["n"],
    agg["cost"]), else the model's calls in other jobs, else an estimate from the prompt
    and answer sizes."""
    if not agg["n"] and job.model:
        agg = Item.objects.filter(LLM_CALLED, job__model=job.model).aggregate(
            n=Count("id"), cost=Sum("cost_usd")
        )
    if agg["n"]:
        return agg["cost"] / agg["n"]
    prices = pricing.prices_for(endpoint=job.endpoint, model=job.model)
    if prices is None:
        return None
    sizes = items.aggregate(
        mathml=Avg(Length("question__mathml")), latex=Avg(Length("result_latex"))
    )
    # About four characters per token, plus the JSON wrapping of the answer.
    tokens_in = (len(CONVERT_SYSTEM_PROMPT) + (sizes["mathml"] or 0)) / 4 + 40
    tokens_out = (sizes["latex"] or 0) / 4 + 10
    return pricing.cost(
        prices, tokens_in=round(tokens_in), tokens_out=round(tokens_out), batch=job.batch_api
    ).usd


def _eta(job: Job, unfinished: int, rate_per_s: float) -> float | None:
    """Seconds to go at the current rate; None for a job that is not moving."""
    active = job.status in (Job.Status.QUEUED, Job.Status.RUNNING)
    return round(unfinished / rate_per_s, 1) if active and unfinished and rate_per_s else None


def job_stats(*, job: Job) -> dict:
    """Everything the job page, `convert --wait`, `monitor` and stats.json show."""
    job.refresh_from_db()
    items = Item.objects.filter(job_id=job.pk)
    now = timezone.now()
    # Every count and sum in one pass over the job's items: the live job page polls
    # this every two seconds, on jobs of 100k items.
    agg = items.aggregate(
        **{f"status_{s}": Count("id", filter=Q(status=s)) for s in Item.Status.values},
        **{f"route_{r}": Count("id", filter=Q(route=r)) for r in Item.Route.values},
        tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"),
        tokens_cached=Sum("tokens_cached"),
        cost=Sum("cost_usd"),
        saved=Sum("cost_saved_usd"),
        prompt_saved=Sum("prompt_cache_saved_usd"),
        calls=Sum("api_calls"),  # not "api_calls": LLM_CALLED filters on the field
        retries=Sum("retries"),
        hits=Count("id", filter=Q(cached=True)),
        last_finished=Max("finished_at"),
        recent=Count("id", filter=Q(finished_at__gte=now - timedelta(seconds=RECENT_WINDOW_S))),
        timed=Count("latency_ms"),
        latency_mean=Avg("latency_ms"),
        llm_n=Count("id", filter=LLM_CALLED),
        llm_cost=Sum("cost_usd", filter=LLM_CALLED),
    )
    counts = {s: agg[f"status_{s}"] for s in Item.Status.values if agg[f"status_{s}"]}
    routes = {r: agg[f"route_{r}"] for r in Item.Route.values if agg[f"route_{r}"]}
    total = sum(counts.values())
    unfinished = sum(counts.get(s, 0) for s in UNFINISHED)
    done = total - unfinished
    started = job.started_at
    end = job.finished_at or (agg["last_finished"] if not unfinished else None) or now
    elapsed_s = max((end - started).total_seconds(), 0.001) if started else 0.0
    finished = done - counts.get(Item.Status.CANCELLED, 0)
    rate_per_s = finished / elapsed_s if elapsed_s else 0.0
    recent = agg["recent"]
    if not job.is_final and recent:
        rate_per_s = recent / min(RECENT_WINDOW_S, elapsed_s or RECENT_WINDOW_S)
    rules_saved = None
    if job.backend == Job.Backend.HYBRID:
        per_llm_item = _llm_cost_per_item(job, items, {"n": agg["llm_n"], "cost": agg["llm_cost"]})
        rules_saved = per_llm_item * routes.get(Item.Route.RULES, 0) if per_llm_item else None
    success = success_rate(counts)
    return {
        "job": job.pk,
        "name": str(job),
        "kind": job.kind,
        "status": job.status,
        "backend": job.backend,
        "model": job.model,
        "prompt_version": job.prompt_version,
        "error": job.error_text,
        "created_at": job.created_at.isoformat(),
        "started_at": started.isoformat() if started else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "total": total,
        "done": done,
        "progress": done / total if total else 1.0,
        "counts": counts,
        "success_rate": success["rate"],
        "success": success,
        "failures": _failures(items),
        "latency_ms": _latency(items, agg["timed"], agg["latency_mean"]),
        "elapsed_s": round(elapsed_s, 1),
        "throughput_per_min": round(rate_per_s * 60, 1),
        "eta_s": _eta(job, unfinished, rate_per_s),
        "tokens_in": agg["tokens_in"] or 0,
        "tokens_out": agg["tokens_out"] or 0,
        "cost_usd": _money(agg["cost"]),
        # OpenAI's prompt cache: the share of input tokens billed at the cached price,
        # and what that saved against the full input price (conversions/pricing.py).
        "prompt_cache": {
            "tokens_cached": agg["tokens_cached"] or 0,
            "share": ((agg["tokens_cached"] or 0) / agg["tokens_in"] if agg["tokens_in"] else None),
            "saved_usd": _money(agg["prompt_saved"]),
        },
        "api_calls": agg["calls"] or 0,
        "api_calls_per_item": round((agg["calls"] or 0) / done, 3) if done else None,
        # Counted before sending, so it includes calls whose answer was never recorded
        # (in flight when a worker was killed, or abandoned by a cancel).
        "requests_sent": job.requests_sent,
        "requests_unrecorded": max(0, job.requests_sent - (agg["calls"] or 0)),
        "retries": agg["retries"] or 0,
        "cache": {
            "hits": agg["hits"],
            "hit_rate": agg["hits"] / done if done else None,
            "saved_usd": _money(agg["saved"]),
        },
        "routes": routes,
        # Hybrid: what the rules-converted items would have cost through the LLM (at
        # this job's mean LLM cost per item), plus what the cache saved.
        "saved_vs_all_llm_usd": (
            _money((rules_saved or 0) + (agg["saved"] or 0))
            if job.backend == Job.Backend.HYBRID
            else None
        ),
        "batch_api": job_batch_api(job=job, agg=agg) if job.batch_api else None,
    }


def job_batch_api(*, job: Job, agg: dict | None = None) -> dict:
    """A Batch API job's remote batches (state, request counts, when submitted and ended)
    and what it saved against realtime: the realtime price of the same tokens (cached
    ones at the cached-input price, pricing.cost) minus what the items cost at the Batch
    API prices. USD; None without a price for the model."""
    if agg is None:
        agg = Item.objects.filter(job_id=job.pk).aggregate(
            tokens_in=Sum("tokens_in"),
            tokens_out=Sum("tokens_out"),
            tokens_cached=Sum("tokens_cached"),
            cost=Sum("cost_usd"),
        )
    rows = []
    for remote in job.remote_batches.order_by("seq"):
        rows.append(
            {
                "seq": remote.seq,
                "remote_id": remote.remote_id,
                "state": remote.state,
                "state_label": str(RemoteBatch.State(remote.state).label),
                "follow_up": remote.follow_up,
                "requests": remote.requests,
                "total": remote.count_total,
                "completed": remote.count_completed,
                "failed": remote.count_failed,
                "submitted_at": _local_iso(remote.submitted_at),
                "ended_at": _local_iso(remote.ended_at),
                "submitted": _local_text(remote.submitted_at),
                "ended": _local_text(remote.ended_at),
                "collected": remote.collected_at is not None,
                "error": remote.error_message,
            }
        )
    prices = pricing.prices_for(endpoint=job.endpoint, model=job.model)
    cost = agg["cost"] or Decimal("0")
    realtime = (
        pricing.cost(
            prices,
            tokens_in=agg["tokens_in"] or 0,
            tokens_out=agg["tokens_out"] or 0,
            tokens_cached=agg["tokens_cached"] or 0,
        ).usd
        if prices is not None
        else None
    )
    return {
        "batches": rows,
        "open": sum(1 for row in rows if not row["collected"]),
        "realtime_cost_usd": _money(realtime) if realtime is not None else None,
        "saved_vs_realtime_usd": _money(realtime - cost) if realtime is not None else None,
    }


def _local_iso(value) -> str | None:
    return timezone.localtime(value).isoformat(timespec="seconds") if value else None


def _local_text(value) -> str:
    """A time as the pages show it: TIME_ZONE (Asia/Seoul), to the second."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def batch_jobs_to_poll() -> list[int]:
    """The Batch API jobs a poll takes a step on: queued or running ones, and any other
    (paused, cancelled, failed) with a remote batch whose results are not recorded."""
    open_jobs = RemoteBatch.objects.open().values("job_id")
    return list(
        Job.objects.filter(batch_api=True)
        .filter(Q(status__in=Job.ACTIVE_STATUSES) | Q(pk__in=open_jobs))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def job_progress(*, job: Job) -> dict:
    """The cheap part of job_stats, for progress bars polled every fraction of a second."""
    job.refresh_from_db()
    unfinished = Item.objects.filter(job_id=job.pk, status__in=UNFINISHED).count()
    done = job.total_items - unfinished
    now = timezone.now()
    recent = Item.objects.filter(
        job_id=job.pk, finished_at__gte=now - timedelta(seconds=RECENT_WINDOW_S)
    ).count()
    elapsed_s = (now - job.started_at).total_seconds() if job.started_at else 0.0
    window = min(RECENT_WINDOW_S, elapsed_s) if elapsed_s else RECENT_WINDOW_S
    rate_per_s = recent / window if window else 0.0
    return {
        "job": job.pk,
        "status": job.status,
        "done": done,
        "total": job.total_items,
        "throughput_per_min": round(rate_per_s * 60, 1),
        "eta_s": _eta(job, unfinished, rate_per_s),
    }


def job_throughput_series(*, job: Job, buckets: int = 30) -> list[dict]:
    """Finished items per time bucket from the job's start to its end (or now)."""
    if not job.started_at:
        return []
    end = job.finished_at or timezone.now()
    span = max((end - job.started_at).total_seconds(), 1.0)
    width = timedelta(seconds=span / buckets)
    edges = [job.started_at + width * i for i in range(buckets + 1)]
    edges[-1] = end + timedelta(seconds=1)
    agg = Item.objects.filter(job_id=job.pk).aggregate(
        **{
            f"b{i}": Count("id", filter=Q(finished_at__gte=edges[i], finished_at__lt=edges[i + 1]))
            for i in range(buckets)
        }
    )
    minutes = width.total_seconds() / 60
    return [
        {
            "start": edges[i].isoformat(),
            "items": agg[f"b{i}"],
            "per_min": round(agg[f"b{i}"] / minutes, 1),
        }
        for i in range(buckets)
    ]


def overall_stats(*, days: int = 30) -> dict:
    """Items finished in the last `days` days, over all jobs."""
    since = timezone.now() - timedelta(days=days)
    items = Item.objects.filter(finished_at__gte=since)
    agg = items.aggregate(
        n=Count("id"),
        tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"),
        cost=Sum("cost_usd"),
        saved=Sum("cost_saved_usd"),
        api_calls=Sum("api_calls"),
        hits=Count("id", filter=Q(cached=True)),
        timed=Count("latency_ms"),
        latency_mean=Avg("latency_ms"),
    )
    counts = _counts(items, "status")
    success = success_rate(counts)
    per_day = (
        items.annotate(day=TruncDate("finished_at"))
        .order_by("day")
        .values_list("day")
        .annotate(n=Count("id"), cost=Sum("cost_usd"))
    )
    return {
        "days": days,
        "jobs": _counts(Job.objects.filter(created_at__gte=since), "status"),
        "items": agg["n"],
        "counts": counts,
        "success_rate": success["rate"],
        "success": success,
        "failures": _failures(items),
        "latency_ms": _latency(items, agg["timed"], agg["latency_mean"]),
        "tokens_in": agg["tokens_in"] or 0,
        "tokens_out": agg["tokens_out"] or 0,
        "cost_usd": _money(agg["cost"]),
        "api_calls": agg["api_calls"] or 0,
        "api_calls_per_item": round((agg["api_calls"] or 0) / agg["n"], 3) if agg["n"] else None,
        "cache": {
            "hits": agg["hits"],
            "hit_rate": agg["hits"] / agg["n"] if agg["n"] else None,
            "saved_usd": _money(agg["saved"]),
        },
        "routes": _counts(items, "route"),
        "per_day": [
            {"day": day.isoformat(), "items": n, "cost_usd": _money(cost)}
            for day, n, cost in per_day
        ],
    }


def results_stats(*, exported: QuerySet[Question]) -> dict:
    """The stats an export_results run writes beside its results (conversion_stats.json):
    the question bank by conversion state, the bank's success rate (success_rate over
    the states: converted and approved succeeded, needs_review and failed did not,
    unconverted not counted), and the tokens and USD cost of every conversion item of
    the exported questions (retries and earlier jobs included)."""
    states = Question.ConversionState
    by_state = dict(
        Question.objects.order_by().values_list("conversion_state").annotate(n=Count("id"))
    )
    success = success_rate(
        {
            Item.Status.SUCCEEDED: by_state.get(states.CONVERTED, 0)
            + by_state.get(states.APPROVED, 0),
            Item.Status.NEEDS_REVIEW: by_state.get(states.NEEDS_REVIEW, 0),
            Item.Status.FAILED: by_state.get(states.FAILED, 0),
        }
    )
    agg = Item.objects.filter(
        question__in=exported.values("pk"), job__kind=Job.Kind.CONVERT
    ).aggregate(
        cost=Sum("cost_usd"),
        tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"),
        api_calls=Sum("api_calls"),
    )
    return {
        "questions": sum(by_state.values()),
        "by_state": by_state,
        "success_rate": success["rate"],
        "success": success,
        "exported": exported.count(),
        "tokens_in": agg["tokens_in"] or 0,
        "tokens_out": agg["tokens_out"] or 0,
        "api_calls": agg["api_calls"] or 0,
        "cost_usd": _money(agg["cost"]),
    }


def cluster_alive() -> bool:
    """Whether some django-q2 cluster serves this database now.

    With Redis, clusters publish their status (Stat); with the ORM broker and a per
    process cache they cannot, so the signs of life are in the database: a running
    cluster's scheduler keeps the reconciler's next run in the future (or seconds behind
    it), and its monitor saves finished tasks.
    """
    try:
        if Stat.get_all():
            return True
    except Exception:  # noqa: S110 - the cache backend is optional
        pass
    recent = timezone.now() - timedelta(seconds=60)
    return (
        Schedule.objects.filter(
            func="conversions.tasks.jobs_reconcile", next_run__gte=recent
        ).exists()
        or Task.objects.filter(stopped__gte=recent).exists()
    )


def queue_health() -> dict:
    now = timezone.now()
    alive = cluster_alive()
    oldest = (
        Job.objects.filter(status=Job.Status.QUEUED)
        .order_by("updated_at")
        .values_list("updated_at", flat=True)
        .first()
    )
    oldest_age = (now - oldest).total_seconds() if oldest else None
    active = Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).count()
    warning = ""
    if not alive and active:
        warning = _(
            "No django-q2 cluster seems to be running, and %(n)s job(s) wait for one: "
            "start it with `python manage.py qcluster`."
        ) % {"n": active}
    elif oldest_age and oldest_age > 300:
        warning = _("A job has been queued for %(s)d s: the cluster may be busy.") % {
            "s": oldest_age
        }
    return {
        "cluster_alive": alive,
        "active_jobs": active,
        "oldest_queued_age_s": round(oldest_age, 1) if oldest_age is not None else None,
        "warning": warning,
    }


def job_status(*, job_id: int) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job_id)


def cluster_workers() -> int:
    """How many workers the running django-q2 clusters have together (a count, >= 0).

    The sum over the clusters that report themselves running (idle or working; a starting
    cluster has no workers yet, a stopping one takes no new task): each cluster publishes
    its worker pids every half second in the shared "queue" cache, kept for about three
    seconds (django_q.status.Stat). When none reports (no cluster running, or no shared
    cache), this process's Q_CLUSTER["workers"]: a guess, since the process that queues a
    job (web, command) is rarely the one whose workers run it.
    """
    try:
        stats = Stat.get_all()
    except Exception:  # noqa: BLE001 - no shared cache: nothing reports
        stats = []
    started = {str(Conf.IDLE), str(Conf.WORKING)}
    running = {stat.cluster_id: len(stat.workers) for stat in stats if str(stat.status) in started}
    if running:
        return sum(running.values())
    return int(settings.Q_CLUSTER.get("workers", 1))


def items_orphaned_until(*, job: Job, owner: str, missed_s: float):
    """When the job's items held by a worker that looks dead become claimable, or None.

    Items are orphaned when another owner holds them running and has not renewed their
    lease for `missed_s` seconds (a live worker renews every lease/4 s, worker.py):
    its process was killed. Returns the earliest lease_expires_at (an aware datetime)
    among them; services.items_claim takes them once it has passed.
    """
    renewed_after = timezone.now() + timedelta(seconds=settings.MATHCONV_LEASE_SECONDS - missed_s)
    return (
        Item.objects.filter(
            job_id=job.pk, status=Item.Status.RUNNING, lease_expires_at__lt=renewed_after
        )
        .exclude(lease_owner=owner)
        .aggregate(until=Min("lease_expires_at"))["until"]
    )


def other_cluster_alive(cluster: str) -> bool:
    """Whether a django-q2 cluster other than `cluster` ("host:sentinel pid") is running.

    Clusters publish their status every half second in the shared "queue" cache, for
    about three seconds (django_q.status.Stat).
    """
    try:
        stats = Stat.get_all()
    except Exception:  # noqa: BLE001 - no shared cache: as if alone
        return False
    return any(f"{stat.host}:{stat.sentinel}" != cluster for stat in stats)


def jobs_waiting_in_queue(now) -> set[int]:
    """Jobs with a task still waiting in the ORM broker's queue (not taken by a worker).

    Such a job is only waiting for a free worker: queuing it again would pile up copies
    that later run side by side. A task a worker took (its row locked until the broker's
    retry time) but whose worker shows no sign of life does not count. With Redis the
    queue cannot be read cheaply; the heartbeat alone decides.
    """
    if "orm" not in settings.Q_CLUSTER:
        return set()
    waiting = set()
    for queued in OrmQ.objects.filter(lock__lte=now):
        try:
            name = queued.name() or ""
        except Exception:  # noqa: S112 - an unreadable payload is not ours
            continue
        if name.startswith("job-") and name[4:].isdigit():
            waiting.add(int(name[4:]))
    return waiting


# --- the dashboard's daily trends ------------------------------------------------------


def _local_day():
    """The local calendar day of finished_at, as an SQL expression."""
    if connection.vendor == "sqlite":
        # TruncDate calls a Python function per row on SQLite (seconds for a million
        # rows); SQLite's own date() with the zone's offset does the same in C.
        offset = int(timezone.localtime().utcoffset().total_seconds())
        return Func(
            F("finished_at"),
            Value(f"{offset:+d} seconds"),
            function="date",
            output_field=CharField(),
        )
    return TruncDate("finished_at")


def daily_trends(*, days: int = TREND_DAYS) -> dict:
    """Per day and in total over the window: items, success rate, tokens and cost."""
    since = timezone.now() - timedelta(days=days)
    rows: list[Mapping[str, Any]] = list(
        Item.objects.filter(finished_at__gte=since)
        .annotate(day=_local_day())
        .order_by("day")
        .values("day")
        .annotate(
            items=Count("pk"),
            succeeded=Count("pk", filter=Q(status__in=RATE_SUCCEEDED)),
            counted=Count("pk", filter=Q(status__in=RATE_COUNTED)),
            skipped=Count("pk", filter=Q(status=Item.Status.SKIPPED)),
            hits=Count("pk", filter=Q(cached=True)),
            tokens_in=Sum("tokens_in"),
            tokens_out=Sum("tokens_out"),
            api_calls=Sum("api_calls"),
            cost=Sum("cost_usd"),
            saved=Sum("cost_saved_usd"),
        )
    )
    total = {key: sum(row[key] or 0 for row in rows) for key in _SUMMED}
    return {
        "days": days,
        "daily": [
            {
                "day": str(row["day"]),
                "items": row["items"],
                "success_rate": _rate(row["succeeded"], row["counted"]),
                "success_text": rate_text(row["succeeded"], row["counted"]),
                "cost_usd": float(row["cost"] or 0),
            }
            for row in rows
        ],
        "totals": {
            "days": days,
            "items": total["items"],
            "success_rate": _rate(total["succeeded"], total["counted"]),
            "success_text": rate_text(total["succeeded"], total["counted"]),
            "success": {
                "rate": _rate(total["succeeded"], total["counted"]),
                "succeeded": total["succeeded"],
                "counted": total["counted"],
                "skipped": total["skipped"],
                "text": rate_text(total["succeeded"], total["counted"]),
            },
            "tokens_in": total["tokens_in"],
            "tokens_out": total["tokens_out"],
            "api_calls": total["api_calls"],
            "cache_hits": total["hits"],
            "cost_usd": float(total["cost"]),
            "saved_usd": float(total["saved"]),
        },
        "computed_at": timezone.now().isoformat(),
    }


_SUMMED = (
    "items",
    "succeeded",
    "counted",
    "skipped",
    "hits",
    "tokens_in",
    "tokens_out",
    "api_calls",
    "cost",
    "saved",
)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --- failure groups (the failures page) -------------------------------------------------

_VARIABLE_PARTS = re.compile(r"'[^']*'|\"[^\"]*\"|\b0x[0-9a-f]+\b|\d+(?:\.\d+)?", re.IGNORECASE)


def message_pattern(message: str) -> str:
    """A message with its variable parts (numbers, quoted values) blanked out."""
    pattern = _VARIABLE_PARTS.sub("…", message)
    return Truncator(" ".join(pattern.split())).chars(200)


def failure_groups(items) -> list[dict]:
    """Failed items grouped by category and message pattern, largest group first.

    Each group: {"category", "category_label", "pattern", "sample", "prefix" (the
    messages' common start, for the item list's filter), "count" (items with the
    category: failed, waiting for review or cancelled), "failed" (of them, status
    failed: what a retry with the LLM takes)}.

    Groups are made from error_message, the reason's source-language text (English;
    converters/messages.py), so one reason is one group whatever language the workers
    ran in, and "prefix" filters the same items in every language; "sample" and
    "pattern" are shown in the active language (the request's). Rows from before
    issue 12 hold their text in the worker's language and group by it.
    """
    rows = (
        items.exclude(error_category="")
        .order_by()
        .values_list("error_category", "error_message", "error_reason")
        .annotate(n=Count("pk"), failed=Count("pk", filter=Q(status=Item.Status.FAILED)))
        .order_by("-n")[:GROUP_SCAN]
    )
    groups: dict[tuple[str, str], dict] = {}
    for category, message, reason, n, failed in rows:
        key = (category, message_pattern(message))
        group = groups.get(key)
        if group is None:
            sample = shown(message, reason)
            groups[key] = {
                "category": category,
                "category_label": str(Item.ErrorCategory(category).label),
                "pattern": message_pattern(sample),
                "sample": Truncator(sample).chars(SAMPLE_CHARS),
                "prefix": message[:100],
                "count": n,
                "failed": failed,
            }
        else:
            group["count"] += n
            group["failed"] += failed
            group["prefix"] = os.path.commonprefix([group["prefix"], message])
    return sorted(groups.values(), key=lambda g: -g["count"])


# --- the launch page's estimate ----------------------------------------------------------


def _task(kind: str, schema: LabelSchema | None):
    if kind == Job.Kind.LABEL:
        return labeling.label_task(schema) if schema else None
    return ConversionTask()


def _typical_output_tokens(kind: str, mathml: str) -> int:
    # LaTeX is roughly a twentieth of its MathML's length; labels are a short JSON object.
    if kind == Job.Kind.LABEL:
        return 80
    return 12 + len(mathml) // 25


def launch_estimate(
    questions: QuerySet[Question],
    *,
    kind: str,
    backend: str,
    model: str,
    schema=None,
    count: int,
    batch_api: bool = False,
    endpoint: Endpoint | None = None,
) -> dict:
    """Tokens and cost of running `count` questions, from a sample of them.

    Priced as the job will be (pricing.prices_for: the endpoint's own model prices, else
    ModelPrice), in Batch API mode at the batch prices. "price" is the pricing.Prices
    used, or None (then cost_usd and cost_max_usd are None: nothing prices the model).
    """
    llm = backend in Job.LLM_BACKENDS
    estimate: dict[str, Any] = {"count": count, "llm": llm, "hybrid": backend == Job.Backend.HYBRID}
    estimate["batch_api"] = batch_api and llm
    estimate.update(model=model, price=None, tokens_in=0, tokens_out=0, tokens_out_max=0)
    estimate.update(cost_usd=None, cost_max_usd=None)
    task = _task(kind, schema)
    if not llm or not count or task is None:
        return estimate
    sample = list(
        questions.order_by()[:ESTIMATE_SAMPLE].values_list("question_id", "mathml", "text")
    )
    tokens_in = tokens_out = tokens_out_max = 0
    for ref, mathml, text in sample:
        item = WorkItem(item_id=0, ref=ref, mathml=mathml, text=text)
        try:
            prompt = task.build_messages(item)
        except Exception:  # noqa: S112 - an invalid question fails without a call
            continue
        tokens_in += estimate_text_tokens(*(m["content"] for m in prompt))
        tokens_out += _typical_output_tokens(kind, mathml)
        cap = task.request_options(item).get("max_completion_tokens", 0)
        tokens_out_max += cap
    scale = count / len(sample) if sample else 0
    estimate.update(
        tokens_in=round(tokens_in * scale),
        tokens_out=round(tokens_out * scale),
        tokens_out_max=round(tokens_out_max * scale),
    )
    prices = pricing.prices_for(endpoint=endpoint, model=model)
    if prices is not None:
        batch = estimate["batch_api"]
        estimate["price"] = prices
        estimate["price_in"] = prices.batch_input if batch else prices.input
        estimate["price_out"] = prices.batch_output if batch else prices.output
        for key, out in (("cost_usd", "tokens_out"), ("cost_max_usd", "tokens_out_max")):
            estimate[key] = pricing.cost(
                prices, tokens_in=estimate["tokens_in"], tokens_out=estimate[out], batch=batch
            ).usd
    return estimate
