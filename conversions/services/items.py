"""Item workflows of a running job: claim under a lease, renew, release, cancel, record.

The rules that keep a job correct under crashes and duplicate task deliveries
(DESIGN invariants 1, 5 and 8):

- an Item is claimed with a lease by a conditional UPDATE (only pending items, or
  running ones whose lease expired), so two workers never hold the same item;
- a result is written only WHERE status=running AND lease_owner=<the claimer>, so a
  finished item never gets a second result, and a worker that lost its lease cannot
  overwrite the worker that took over;
- results go onto the Question only when validated, and never over LaTeX a reviewer
  locked (Question.locked_for).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_noop

from conversions.cache import cache_count_hits, cache_store
from conversions.converters.messages import Message, error_fields, message_data
from conversions.labeling import questions_labels_store
from conversions.models import Item, Job, JobRun, Question
from conversions.results import ItemResult
from conversions.rowwrite import rows_update, values_update


@dataclass(frozen=True)
class Batch:
    batch_no: int
    items: list[Item]


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.MATHCONV_LEASE_SECONDS)


def items_claim(
    *, job: Job, owner: str, limit: int, share: int = 1, floor: int = 1
) -> Batch | None:
    """Take up to `limit` pending (or lease-expired) items of the job under a new batch no.

    share > 1: that many tasks work on the job, so near its end take only a share of
    the pending items left (at least `floor`): a task that took a full batch when little
    is left would still be working on it while the others, with nothing left to claim,
    idle (at the end of a 1,000-item job, a tenth of the run).
    """
    now = timezone.now()
    with transaction.atomic():
        # The job row first, as job_cancel does: a claim and a cancel then queue on it
        # instead of deadlocking on each other's item rows (PostgreSQL). A job paused or
        # cancelled since the worker last looked gets no new claims.
        this_job = Job.objects.filter(pk=job.pk)
        if connection.features.has_select_for_update:
            this_job = this_job.select_for_update()
        if this_job.values_list("status", flat=True).first() not in Job.ACTIVE_STATUSES:
            return None
        expired = Item.objects.filter(
            job_id=job.pk, status=Item.Status.RUNNING, lease_expires_at__lt=now
        )
        pending = Item.objects.filter(job_id=job.pk, status=Item.Status.PENDING)
        if share > 1:
            # Counted up to limit * share only: a claim never counts a whole 100k job.
            left = pending.order_by().values("pk")[: limit * share].count()
            limit = min(limit, max(floor, math.ceil(left / share)))
        if connection.features.has_select_for_update_skip_locked:
            # PostgreSQL: concurrent claimers skip each other's rows instead of waiting.
            expired = expired.select_for_update(skip_locked=True)
            pending = pending.select_for_update(skip_locked=True)
        ids = list(expired.order_by("id").values_list("id", flat=True)[:limit])
        if len(ids) < limit:
            ids += pending.order_by("id").values_list("id", flat=True)[: limit - len(ids)]
        if not ids:
            return None
        Job.objects.filter(pk=job.pk).update(last_batch_no=F("last_batch_no") + 1)
        batch_no = Job.objects.values_list("last_batch_no", flat=True).get(pk=job.pk)
        claimed = (
            Item.objects.filter(pk__in=ids)
            .filter(
                Q(status=Item.Status.PENDING)
                | Q(status=Item.Status.RUNNING, lease_expires_at__lt=now)
            )
            .update(
                status=Item.Status.RUNNING,
                lease_owner=owner,
                lease_expires_at=now + lease_duration(),
                batch_no=batch_no,
                attempts=F("attempts") + 1,
                started_at=now,
            )
        )
        if not claimed:
            return None
        items = list(
            Item.objects.filter(
                pk__in=ids, status=Item.Status.RUNNING, lease_owner=owner, batch_no=batch_no
            )
            .select_related("question")
            .only(*CLAIM_FIELDS)
            .order_by("id")
        )
    return Batch(batch_no=batch_no, items=items)


CLAIM_FIELDS = [
    "id",
    "job",
    "question",
    "attempts",
    "batch_no",
    "question__id",
    "question__question_id",
    "question__mathml",
    "question__text",
    "question__latex",
    "question__latex_locked",
    "result_formulas",  # a stem's formulas answered by an earlier remote batch
]


def items_renew_lease(*, job: Job, owner: str) -> int:
    """Extend the lease of everything this worker holds; also the job's heartbeat."""
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(heartbeat_at=now)
    JobRun.objects.filter(owner=owner).update(heartbeat_at=now)
    return Item.objects.filter(job_id=job.pk, status=Item.Status.RUNNING, lease_owner=owner).update(
        lease_expires_at=now + lease_duration()
    )


def job_count_sent(*, job: Job, calls: int) -> None:
    """Add `calls` API calls to the job's count of calls sent (negative: hand back
    calls counted in advance and never sent; worker.SentLedger)."""
    Job.objects.filter(pk=job.pk).update(requests_sent=F("requests_sent") + calls)


def items_release(*, job: Job, owner: str, item_ids: Iterable[int] | None = None) -> int:
    """Hand claimed, unfinished items back as pending (pause, time budget, shutdown)."""
    items = Item.objects.filter(job_id=job.pk, status=Item.Status.RUNNING, lease_owner=owner)
    if item_ids is not None:
        items = items.filter(pk__in=list(item_ids))
    return items.update(status=Item.Status.PENDING, lease_owner="", lease_expires_at=None)


def items_cancel(*, job: Job, owner: str, item_ids: Iterable[int] | None = None) -> int:
    items = Item.objects.filter(job_id=job.pk, status=Item.Status.RUNNING, lease_owner=owner)
    if item_ids is not None:
        items = items.filter(pk__in=list(item_ids))
    return items_mark_cancelled(items)


def items_mark_cancelled(items: QuerySet[Item]) -> int:
    return items.update(
        status=Item.Status.CANCELLED,
        error_category=Item.ErrorCategory.CANCELLED,
        **error_fields(Message(gettext_noop("The job was cancelled before this item finished."))),
        lease_owner="",
        lease_expires_at=None,
        finished_at=timezone.now(),
    )


RESULT_FIELDS = [
    "status",
    "result_latex",
    "result_labels",
    "result_formulas",
    "review_formulas",
    "route",
    "cached",
    "validation_score",
    "validation_reasons",
    "error_category",
    "error_message",
    "error_reason",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "tokens_cached",
    "cost_usd",
    "cost_saved_usd",
    "prompt_cache_saved_usd",
    "api_calls",
    "retries",
    "request_excerpt",
    "response_excerpt",
    "lease_owner",
    "lease_expires_at",
    "finished_at",
]


# An item's totals over its attempts: a result adds to them (outcomes_record).
TOTAL_FIELDS = (
    "tokens_in",
    "tokens_out",
    "tokens_cached",
    "cost_usd",
    "prompt_cache_saved_usd",
    "api_calls",
    "retries",
)


def outcomes_record(*, job: Job, owner: str, results: Sequence[ItemResult]) -> list[int]:
    """Write results of items this worker still holds; returns the ids written.

    A result for an item that is no longer running under this owner (a duplicate, or a
    lease lost to another worker) is dropped: a finished item never gets a second result.
    Tokens, cost and API calls add up over attempts, so retries show what they cost.
    The held items are read as values (their totals), not as model objects: this runs
    for every result of every job, in the thread that feeds the engine.
    """
    if not results:
        return []
    now = timezone.now()
    by_id = {r.item_id: r for r in results}
    with transaction.atomic():
        held = Item.objects.filter(pk__in=by_id, status=Item.Status.RUNNING, lease_owner=owner)
        if connection.features.has_select_for_update:
            held = held.select_for_update()
        totals = {pk: previous for pk, *previous in held.values_list("id", *TOTAL_FIELDS)}
        values_update(
            Item,
            RESULT_FIELDS,
            (_result_row(by_id[pk], previous, now) + [pk] for pk, previous in totals.items()),
        )
        written = [by_id[pk] for pk in totals]
        _questions_apply(job=job, results=written, now=now)
        cache_store(
            results=[
                r.cache_entry()
                for r in written
                if r.cache_key and not r.cached and r.status == Item.Status.SUCCEEDED
            ]
            + [entry for r in written for entry in r.more_cache],
            kind=job.kind,
        )
        cache_count_hits(keys=[r.cache_key for r in written if r.cached and r.cache_key])
        Job.objects.filter(pk=job.pk).update(heartbeat_at=now)
    return list(totals)


def _result_row(result: ItemResult, previous: Sequence, now) -> list:
    """The RESULT_FIELDS values of an item given this result and its totals so far
    (TOTAL_FIELDS order)."""
    tokens_in, tokens_out, tokens_cached, cost, cache_saved, api_calls, retries = previous
    values = {
        "status": result.status,
        "result_latex": result.latex,
        "result_labels": result.labels,
        "result_formulas": result.formulas,
        "review_formulas": None,  # a reviewer's fixes were to the previous result
        "route": result.route,
        "cached": result.cached,
        "validation_score": result.validation_score,
        # Reasons are stored language-neutrally (converters/messages.py).
        "validation_reasons": message_data(list(result.validation_reasons)),
        "error_category": result.error_category,
        **error_fields(result.error_message),
        "latency_ms": result.latency_ms,
        "tokens_in": tokens_in + result.tokens_in,
        "tokens_out": tokens_out + result.tokens_out,
        "tokens_cached": tokens_cached + result.tokens_cached,
        "cost_usd": cost + result.cost_usd,
        "cost_saved_usd": result.cost_saved_usd,
        "prompt_cache_saved_usd": cache_saved + result.prompt_cache_saved_usd,
        "api_calls": api_calls + result.api_calls,
        "retries": retries + result.retries,
        "request_excerpt": result.request_excerpt[:2000],
        "response_excerpt": result.response_excerpt[:2000],
        "lease_owner": "",
        "lease_expires_at": None,
        "finished_at": result.finished_at or now,
    }
    return [values[name] for name in RESULT_FIELDS]


def _questions_apply(*, job: Job, results: Sequence[ItemResult], now) -> None:
    """Carry results onto their questions (DESIGN invariant 8: locked results stay)."""
    if job.kind == Job.Kind.LABEL:
        questions_labels_store(
            job=job,
            results=[
                (r.question_id, r.item_id, r.labels)
                for r in results
                if r.status == Item.Status.SUCCEEDED and r.labels
            ],
        )
        return
    if job.kind != Job.Kind.CONVERT or not results:
        return
    questions = Question.objects.only("id", "latex_locked", "conversion_state").in_bulk(
        [r.question_id for r in results]
    )
    converted, state_changed = [], []
    state = Question.ConversionState
    for result in results:
        question = questions[result.question_id]
        if question.locked_for(job):
            continue
        if result.status == Item.Status.SUCCEEDED:
            question.latex = result.latex
            question.formulas = result.formulas
            question.conversion_state = state.CONVERTED
            question.latex_locked = False
            question.latex_accepted_by = None
            question.latex_accepted_at = now
            question.updated_at = now
            converted.append(question)
        elif result.status == Item.Status.NEEDS_REVIEW and question.conversion_state in (
            state.UNCONVERTED,
            state.FAILED,
        ):
            question.conversion_state = state.NEEDS_REVIEW
            question.updated_at = now
            state_changed.append(question)
        elif result.status == Item.Status.FAILED and question.conversion_state == state.UNCONVERTED:
            question.conversion_state = state.FAILED
            question.updated_at = now
            state_changed.append(question)
    # Only the fields set above are written (the others were not read: .only()).
    fields = [
        "latex",
        "formulas",
        "conversion_state",
        "latex_locked",
        "latex_accepted_by",
        "latex_accepted_at",
        "updated_at",
    ]
    # Unless the job overwrites reviewed results, a reviewer may have locked the question
    # since it was read (PostgreSQL): the write then leaves it alone.
    where, params = ("", ()) if job.overwrite_reviewed else ("latex_locked = %s", (False,))
    rows_update(converted, fields, where=where, params=params)
    rows_update(state_changed, ["conversion_state", "updated_at"], where=where, params=params)
