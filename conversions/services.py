"""Write-side workflows for jobs: create, claim, record, pause/resume/cancel, retry, export.

Plain sync ORM code, keyword-only. The rules that keep a job correct under crashes and
duplicate task deliveries live here (DESIGN invariants 1, 5 and 8):

- an Item is claimed with a lease by a conditional UPDATE (only pending items, or
  running ones whose lease expired), so two workers never hold the same item;
- a result is written only WHERE status=running AND lease_owner=<the claimer>, so a
  finished item never gets a second result, and a worker that lost its lease cannot
  overwrite the worker that took over;
- results go onto the Question only when validated, and never over a locked (approved
  or hand-edited) result unless the job says overwrite_reviewed.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from conversions.cache import CachedResult, cache_count_hits, cache_store
from conversions.models import Item, Job, LabelSchema, ModelPrice, Question

log = logging.getLogger("conversions.jobs")

TEST_MODE_ITEMS = 50
CREATE_CHUNK = 2000
LLM_BACKENDS = (Job.Backend.OPENAI, Job.Backend.HYBRID)
RETRYABLE_STATUSES = (Item.Status.FAILED, Item.Status.CANCELLED)
RUNNABLE_STATUSES = (Job.Status.QUEUED, Job.Status.RUNNING)


class ConfigurationError(Exception):
    """A job cannot run as configured; the message says what to fix."""


# --- configuration -----------------------------------------------------------------


def check_backend_config(*, backend: str, model: str, base_url: str | None = None) -> None:
    """Fail before any work when an LLM backend cannot work: no key, no server, no model."""
    if backend not in Job.Backend.values:
        raise ConfigurationError(_("Unknown backend %(backend)s.") % {"backend": backend})
    if backend not in LLM_BACKENDS:
        return
    import openai

    base_url = base_url or settings.OPENAI_BASE_URL
    where = base_url or "https://api.openai.com/v1"
    if not settings.OPENAI_API_KEY:
        raise ConfigurationError(
            _(
                "OPENAI_API_KEY is not set: the %(backend)s backend needs an API key in the "
                "environment. Use the rules backend to convert without one."
            )
            % {"backend": backend}
        )
    client = openai.OpenAI(
        api_key=settings.OPENAI_API_KEY, base_url=base_url, timeout=10.0, max_retries=0
    )
    try:
        available = {m.id for m in client.models.list()}
    except openai.AuthenticationError:
        raise ConfigurationError(
            _("The API key was rejected by %(url)s (401).") % {"url": where}
        ) from None
    except (openai.APIConnectionError, openai.APITimeoutError):
        raise ConfigurationError(
            _("Cannot reach the API at %(url)s: check OPENAI_BASE_URL and the network.")
            % {"url": where}
        ) from None
    except openai.APIStatusError as exc:
        raise ConfigurationError(
            _("The API at %(url)s answered %(status)s to GET /models.")
            % {"url": where, "status": exc.status_code}
        ) from None
    finally:
        client.close()
    if model not in available:
        raise ConfigurationError(
            _("Unknown model %(model)s at %(url)s (available: %(available)s).")
            % {"model": model, "url": where, "available": ", ".join(sorted(available)[:20])}
        )


def default_model(*, kind: str, backend: str) -> str:
    if backend not in LLM_BACKENDS:
        return ""
    if kind == Job.Kind.LABEL:
        return settings.MATHCONV_DEFAULT_LABEL_MODEL
    return settings.MATHCONV_DEFAULT_CONVERT_MODEL


def prompt_version_for(*, kind: str, backend: str) -> str:
    if backend not in LLM_BACKENDS:
        return ""
    if kind == Job.Kind.LABEL:
        from conversions.engine.labeling import LABEL_PROMPT_VERSION

        return LABEL_PROMPT_VERSION
    from conversions.engine.prompts import CONVERT_PROMPT_VERSION

    return CONVERT_PROMPT_VERSION


# --- creating and steering jobs ----------------------------------------------------


def job_create(
    *,
    kind: str = Job.Kind.CONVERT,
    questions: QuerySet[Question],
    selection: dict,
    backend: str,
    model: str = "",
    batch_size: int = 100,
    max_concurrent: int = 10,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    test_mode: bool = False,
    only_unconverted: bool = False,
    use_cache: bool = True,
    overwrite_reviewed: bool = False,
    label_schema: LabelSchema | None = None,
    created_by=None,
    name: str = "",
    enqueue: bool = True,
    limit: int | None = None,
    check_config: bool = True,
) -> Job:
    """A job with one Item per selected question, queued on django-q2 after commit.

    test_mode keeps the first 50 questions (by id), limit the first N; only_unconverted
    keeps questions that have no accepted result yet (not converted, or failed).
    """
    model = model or default_model(kind=kind, backend=backend)
    if batch_size < 1 or max_concurrent < 1:
        raise ConfigurationError(_("Batch size and concurrency must be at least 1."))
    if check_config:
        check_backend_config(backend=backend, model=model)
    if kind == Job.Kind.LABEL and label_schema is None:
        raise ConfigurationError(_("A labeling job needs a label schema."))
    if kind == Job.Kind.LABEL and backend != Job.Backend.OPENAI:
        raise ConfigurationError(_("Labeling jobs run on the openai backend."))

    questions = questions.order_by("id")
    if only_unconverted and kind == Job.Kind.CONVERT:
        questions = questions.filter(
            conversion_state__in=[
                Question.ConversionState.UNCONVERTED,
                Question.ConversionState.FAILED,
            ]
        )
    if test_mode:
        limit = min(limit or TEST_MODE_ITEMS, TEST_MODE_ITEMS)
    question_ids = questions.values_list("id", flat=True)
    if limit:
        question_ids = question_ids[:limit]

    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            name=name,
            backend=backend,
            model=model,
            prompt_version=prompt_version_for(kind=kind, backend=backend),
            label_schema=label_schema,
            batch_size=batch_size,
            max_concurrent=max_concurrent,
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
            test_mode=test_mode,
            only_unconverted=only_unconverted,
            use_cache=use_cache,
            overwrite_reviewed=overwrite_reviewed,
            selection=selection,
            created_by=created_by,
        )
        total = 0
        chunk: list[Item] = []
        for question_id in question_ids.iterator(chunk_size=CREATE_CHUNK):
            chunk.append(Item(job=job, question_id=question_id))
            if len(chunk) >= CREATE_CHUNK:
                Item.objects.bulk_create(chunk)
                total += len(chunk)
                chunk = []
        Item.objects.bulk_create(chunk)
        total += len(chunk)
        job.total_items = total
        job.save(update_fields=["total_items", "updated_at"])
        if enqueue:
            job_enqueue(job=job)
    _outputs_clear(job_id=job.pk)
    log.info("job=%s created: %s items, backend %s", job.pk, total, backend)
    return job


def _outputs_clear(*, job_id: int) -> None:
    """Remove the log and exports of an earlier job with this id (from a database since
    reset), so that they are not taken for this job's."""
    from conversions.joblog import log_path

    shutil.rmtree(export_dir(job_id=job_id), ignore_errors=True)
    log_path(job_id).unlink(missing_ok=True)


def job_parallel_tasks(*, job: Job) -> int:
    """How many tasks work on an LLM job side by side, each with its share of concurrency.

    One Python process spends most of a core on HTTP and validation at a few hundred
    requests a second, so a job with high concurrency is spread over several workers
    (processes, possibly machines); the endpoint budget is shared between them anyway.
    """
    if job.backend not in LLM_BACKENDS:
        return 1
    per_task = max(1, settings.MATHCONV_CONCURRENCY_PER_TASK)
    workers = max(1, int(settings.Q_CLUSTER.get("workers", 1)))
    return max(1, min(workers, math.ceil(job.max_concurrent / per_task)))


def task_concurrency(*, job: Job, share: int) -> int:
    return max(1, math.ceil(job.max_concurrent / max(1, share)))


def job_enqueue(*, job: Job, tasks: int | None = None) -> None:
    """Queue the job's tasks (or `tasks` of them) once the current transaction commits."""
    from django_q.tasks import async_task

    job_id = job.pk
    share = job_parallel_tasks(job=job)
    for _copy in range(tasks or share):
        transaction.on_commit(
            lambda: async_task(
                "conversions.tasks.job_run",
                job_id,
                share,
                task_name=f"job-{job_id}",
                group=f"job-{job_id}",
            )
        )


def job_pause(*, job: Job) -> bool:
    """Stop a job's work soon; its running task hands claimed items back as pending."""
    changed = Job.objects.filter(pk=job.pk, status__in=RUNNABLE_STATUSES).update(
        status=Job.Status.PAUSED, updated_at=timezone.now()
    )
    job.refresh_from_db()
    return bool(changed)


def job_resume(*, job: Job) -> bool:
    """Queue a paused (or failed) job again; it continues with its unfinished items."""
    with transaction.atomic():
        changed = Job.objects.filter(
            pk=job.pk, status__in=[Job.Status.PAUSED, Job.Status.FAILED]
        ).update(
            status=Job.Status.QUEUED, error_message="", finished_at=None, updated_at=timezone.now()
        )
        if changed:
            job_enqueue(job=job)
    job.refresh_from_db()
    return bool(changed)


def job_cancel(*, job: Job) -> bool:
    """Cancel a job: items not started become cancelled (category cancelled).

    Items a live worker holds are its to finish or cancel; items whose worker died
    (lease expired) are cancelled here.
    """
    now = timezone.now()
    with transaction.atomic():
        changed = (
            Job.objects.filter(pk=job.pk)
            .exclude(status__in=Job.FINAL_STATUSES)
            .update(status=Job.Status.CANCELLED, finished_at=now, updated_at=now)
        )
        if changed:
            _items_mark_cancelled(
                Item.objects.filter(job_id=job.pk).filter(
                    Q(status=Item.Status.PENDING)
                    | Q(status=Item.Status.RUNNING, lease_expires_at__lt=now)
                )
            )
    job.refresh_from_db()
    return bool(changed)


def _items_mark_cancelled(items: QuerySet[Item]) -> int:
    return items.update(
        status=Item.Status.CANCELLED,
        error_category=Item.ErrorCategory.CANCELLED,
        error_message=_("The job was cancelled before this item finished."),
        lease_owner="",
        lease_expires_at=None,
        finished_at=timezone.now(),
    )


def items_retry(
    *,
    job: Job | None = None,
    items: QuerySet[Item] | None = None,
    category: str | None = None,
) -> int:
    """Put failed items back to pending and queue their jobs again; returns how many.

    By default the failed and cancelled items of `job` (or among `items`); with a
    category, the items with that error category, including needs-review items whose
    validation failed. Succeeded items are never retried.
    """
    if items is None:
        if job is None:
            raise ValueError("items_retry needs a job or items")
        items = Item.objects.filter(job_id=job.pk)
    if category:
        items = items.filter(
            error_category=category, status__in=[*RETRYABLE_STATUSES, Item.Status.NEEDS_REVIEW]
        )
    else:
        items = items.filter(status__in=RETRYABLE_STATUSES)
    with transaction.atomic():
        job_ids = set(items.order_by().values_list("job_id", flat=True).distinct())
        count = Item.objects.filter(pk__in=items.values("pk")).update(
            status=Item.Status.PENDING,
            error_category="",
            error_message="",
            lease_owner="",
            lease_expires_at=None,
            result_latex="",
            result_labels=None,
            validation_score=None,
            validation_reasons=[],
            route="",
            cached=False,
            finished_at=None,
        )
        now = timezone.now()
        Job.objects.filter(pk__in=job_ids, status__in=Job.FINAL_STATUSES).update(
            status=Job.Status.QUEUED, finished_at=None, error_message="", updated_at=now
        )
        for queued in Job.objects.filter(pk__in=job_ids, status__in=RUNNABLE_STATUSES):
            job_enqueue(job=queued)
    return count


# --- the worker's side: start, claim, record, finish -------------------------------


@dataclass(frozen=True)
class Batch:
    batch_no: int
    items: list[Item]


@dataclass
class ItemResult:
    """What a worker computed for one claimed item; outcomes_record writes it."""

    item_id: int
    question_id: int
    status: str
    latex: str = ""
    labels: dict | None = None
    route: str = ""
    cached: bool = False
    validation_score: float | None = None
    validation_reasons: list = field(default_factory=list)
    error_category: str = ""
    error_message: str = ""
    latency_ms: int | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal("0")
    cost_saved_usd: Decimal = Decimal("0")
    api_calls: int = 0
    retries: int = 0
    request_excerpt: str = ""
    response_excerpt: str = ""
    cache_key: str = ""  # set on fresh results to store, and on cache hits to count
    finished_at: datetime | None = None  # when the result came back (default: when written)


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.MATHCONV_LEASE_SECONDS)


def job_start(*, job: Job) -> bool:
    """Mark the job running for a task that is about to work on it; False: leave it be."""
    now = timezone.now()
    changed = Job.objects.filter(pk=job.pk, status__in=RUNNABLE_STATUSES).update(
        status=Job.Status.RUNNING, heartbeat_at=now, updated_at=now
    )
    Job.objects.filter(pk=job.pk, started_at__isnull=True).update(started_at=now)
    job.refresh_from_db()
    return bool(changed)


def job_is_runnable(*, job_id: int) -> bool:
    return Job.objects.filter(pk=job_id, status__in=RUNNABLE_STATUSES).exists()


def job_status(*, job_id: int) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job_id)


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
        if this_job.values_list("status", flat=True).first() not in RUNNABLE_STATUSES:
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


# What a worker reads of a claimed item and its question (not the labels or metadata).
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
]


def items_renew_lease(*, job: Job, owner: str) -> int:
    """Extend the lease of everything this worker holds; also the job's heartbeat."""
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(heartbeat_at=now)
    return Item.objects.filter(job_id=job.pk, status=Item.Status.RUNNING, lease_owner=owner).update(
        lease_expires_at=now + lease_duration()
    )


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
    return _items_mark_cancelled(items)


RESULT_FIELDS = [
    "status",
    "result_latex",
    "result_labels",
    "route",
    "cached",
    "validation_score",
    "validation_reasons",
    "error_category",
    "error_message",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "cost_saved_usd",
    "api_calls",
    "retries",
    "request_excerpt",
    "response_excerpt",
    "lease_owner",
    "lease_expires_at",
    "finished_at",
]


def outcomes_record(*, job: Job, owner: str, results: Sequence[ItemResult]) -> list[int]:
    """Write results of items this worker still holds; returns the ids written.

    A result for an item that is no longer running under this owner (a duplicate, or a
    lease lost to another worker) is dropped: a finished item never gets a second result.
    Tokens, cost and API calls add up over attempts, so retries show what they cost.
    """
    if not results:
        return []
    now = timezone.now()
    by_id = {r.item_id: r for r in results}
    with transaction.atomic():
        held = Item.objects.filter(pk__in=by_id, status=Item.Status.RUNNING, lease_owner=owner)
        if connection.features.has_select_for_update:
            held = held.select_for_update()
        items = list(
            held.only(
                "id", "question_id", "tokens_in", "tokens_out", "cost_usd", "api_calls", "retries"
            )
        )
        for item in items:
            _apply_result(item, by_id[item.pk], now)
        _update_rows(items, RESULT_FIELDS)
        written = [by_id[item.pk] for item in items]
        _questions_apply(job=job, results=written, now=now)
        cache_store(
            results=[
                CachedResult(
                    key=r.cache_key,
                    latex=r.latex,
                    validation_score=r.validation_score,
                    tokens_in=r.tokens_in,
                    tokens_out=r.tokens_out,
                    cost_usd=r.cost_usd,
                )
                for r in written
                if r.cache_key and not r.cached and r.status == Item.Status.SUCCEEDED
            ],
            kind=job.kind,
        )
        cache_count_hits(keys=[r.cache_key for r in written if r.cached and r.cache_key])
        Job.objects.filter(pk=job.pk).update(heartbeat_at=now)
    return [item.pk for item in items]


def _apply_result(item: Item, result: ItemResult, now) -> None:
    item.status = result.status
    item.result_latex = result.latex
    item.result_labels = result.labels
    item.route = result.route
    item.cached = result.cached
    item.validation_score = result.validation_score
    item.validation_reasons = result.validation_reasons
    item.error_category = result.error_category
    item.error_message = result.error_message[:2000]
    item.latency_ms = result.latency_ms
    item.tokens_in += result.tokens_in
    item.tokens_out += result.tokens_out
    item.cost_usd += result.cost_usd
    item.cost_saved_usd = result.cost_saved_usd
    item.api_calls += result.api_calls
    item.retries += result.retries
    item.request_excerpt = result.request_excerpt[:2000]
    item.response_excerpt = result.response_excerpt[:2000]
    item.lease_owner = ""
    item.lease_expires_at = None
    item.finished_at = result.finished_at or now


def _questions_apply(*, job: Job, results: Sequence[ItemResult], now) -> None:
    """Carry results onto their questions (DESIGN invariant 8: locked results stay)."""
    if job.kind == Job.Kind.LABEL:
        from conversions.labeling import questions_labels_store

        succeeded = [r for r in results if r.status == Item.Status.SUCCEEDED and r.labels]
        questions_labels_store(
            job=job, results=[(r.question_id, r.item_id, r.labels) for r in succeeded]
        )
        return
    if job.kind != Job.Kind.CONVERT or not results:
        return
    questions = Question.objects.only("id", "latex_locked", "conversion_state").in_bulk(
        [r.question_id for r in results]
    )
    changed = []
    state = Question.ConversionState
    for result in results:
        question = questions[result.question_id]
        if question.latex_locked and not job.overwrite_reviewed:
            continue
        if result.status == Item.Status.SUCCEEDED:
            question.latex = result.latex
            question.conversion_state = state.CONVERTED
            question.latex_locked = False
            question.latex_accepted_by = None
            question.latex_accepted_at = now
        elif result.status == Item.Status.NEEDS_REVIEW and question.conversion_state in (
            state.UNCONVERTED,
            state.FAILED,
        ):
            question.conversion_state = state.NEEDS_REVIEW
        elif result.status == Item.Status.FAILED and question.conversion_state == state.UNCONVERTED:
            question.conversion_state = state.FAILED
        else:
            continue
        question.updated_at = now
        changed.append(question)
    fields = [
        "latex",
        "conversion_state",
        "latex_locked",
        "latex_accepted_by",
        "latex_accepted_at",
        "updated_at",
    ]
    if job.overwrite_reviewed:
        _update_rows(changed, fields)
    else:  # a reviewer may have locked it since it was read (PostgreSQL)
        _update_rows(changed, fields, where="latex_locked = %s", params=(False,))


_PLAIN_FIELDS = {
    "CharField",
    "TextField",
    "BooleanField",
    "IntegerField",
    "PositiveIntegerField",
    "FloatField",
    "ForeignKey",
}


def _update_rows(objs: Sequence, fields: Sequence[str], *, where: str = "", params=()) -> None:
    """Save these fields of these rows: one parametrised UPDATE per row, executemany.

    Django's bulk_update builds one CASE WHEN per field and row; at our width that costs
    some 20 ms of Python per row, far more than the database's work.
    """
    if not objs:
        return
    meta = objs[0]._meta
    quote = connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    sql = (
        f"UPDATE {quote(meta.db_table)} SET "
        + ", ".join(f"{quote(c.column)} = %s" for c in columns)
        + f" WHERE {quote(meta.pk.column)} = %s"
        + (f" AND {where}" if where else "")
    )
    # Plain columns go as they are; JSON, decimals and datetimes need the backend's form.
    prepare = [
        None
        if c.get_internal_type() in _PLAIN_FIELDS
        else (lambda value, c=c: c.get_db_prep_save(value, connection))
        for c in columns
    ]
    rows = []
    for obj in objs:
        row = [getattr(obj, c.attname) for c in columns]
        for n, convert in enumerate(prepare):
            if convert is not None:
                row[n] = convert(row[n])
        rows.append([*row, obj.pk, *params])
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def job_finish_if_done(*, job: Job) -> str | None:
    """Give the job its final status once no item is pending or running; else None."""
    with transaction.atomic():
        unfinished = Item.objects.filter(
            job_id=job.pk, status__in=[Item.Status.PENDING, Item.Status.RUNNING]
        )
        if unfinished.exists():
            return None
        with_errors = Item.objects.filter(job_id=job.pk, status__in=RETRYABLE_STATUSES).exists()
        final = Job.Status.COMPLETED_WITH_ERRORS if with_errors else Job.Status.COMPLETED
        now = timezone.now()
        changed = Job.objects.filter(pk=job.pk, status__in=RUNNABLE_STATUSES).update(
            status=final, finished_at=now, updated_at=now
        )
    job.refresh_from_db()
    return final if changed else None


def job_fail(*, job: Job, message: str) -> bool:
    now = timezone.now()
    changed = (
        Job.objects.filter(pk=job.pk)
        .exclude(status__in=Job.FINAL_STATUSES)
        .update(
            status=Job.Status.FAILED, error_message=message[:2000], finished_at=now, updated_at=now
        )
    )
    job.refresh_from_db()
    return bool(changed)


def jobs_reconcile() -> list[int]:
    """Queue a task again for active jobs that no live worker is working on.

    A task can be lost (Redis broker, a killed worker) or still be waiting in the queue;
    either way its job's heartbeat grows old and nothing it holds has a live lease. The
    heartbeat is set here too, so a job is re-queued at most once per lease period, and a
    second delivery is harmless anyway. Also cancels leftovers of cancelled jobs.
    """
    now = timezone.now()
    stale = now - lease_duration()
    requeued = []
    candidates = Job.objects.filter(status__in=RUNNABLE_STATUSES).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, updated_at__lt=stale)
    )
    waiting = _jobs_waiting_in_queue(now) if candidates else set()
    for job in candidates:
        live = Item.objects.filter(
            job_id=job.pk, status=Item.Status.RUNNING, lease_expires_at__gte=now
        ).exists()
        if live or job.pk in waiting:
            continue
        with transaction.atomic():
            if Job.objects.filter(pk=job.pk, status__in=RUNNABLE_STATUSES).update(heartbeat_at=now):
                job_enqueue(job=job)
                requeued.append(job.pk)
    _items_mark_cancelled(
        Item.objects.filter(
            job__status=Job.Status.CANCELLED,
            status__in=[Item.Status.PENDING, Item.Status.RUNNING],
            lease_expires_at__lt=now,
        )
    )
    if requeued:
        log.warning("reconciler re-queued jobs %s (no live worker)", requeued)
    return requeued


def _jobs_waiting_in_queue(now) -> set[int]:
    """Jobs with a task still waiting in the ORM broker's queue (not taken by a worker).

    Such a job is only waiting for a free worker: queuing it again would pile up copies
    that later run side by side. A task a worker took (its row locked until the broker's
    retry time) but whose worker shows no sign of life does not count. With Redis the
    queue cannot be read cheaply; the heartbeat alone decides.
    """
    if "orm" not in settings.Q_CLUSTER:
        return set()
    from django_q.models import OrmQ

    waiting = set()
    for queued in OrmQ.objects.filter(lock__lte=now):
        try:
            name = queued.name() or ""
        except Exception:  # noqa: S112 - an unreadable payload is not ours
            continue
        if name.startswith("job-") and name[4:].isdigit():
            waiting.add(int(name[4:]))
    return waiting


# --- cost ---------------------------------------------------------------------------


def price_for(*, model: str) -> ModelPrice | None:
    """The price row of a model, or of the longest priced prefix (dated snapshots)."""
    if not model:
        return None
    prices = {p.model: p for p in ModelPrice.objects.all()}
    if model in prices:
        return prices[model]
    prefixes = [name for name in prices if model.startswith(name)]
    return prices[max(prefixes, key=len)] if prefixes else None


# --- exports ------------------------------------------------------------------------


def export_dir(*, job_id: int) -> Path:
    return Path(settings.MATHCONV_EXPORT_DIR) / f"job-{job_id:06d}"


# One item's result as a plain row: the per-batch JSON files and the job results export
# (admin, CSV/XLSX/JSON) write the same columns.
RESULT_COLUMNS = (
    "item",
    "question_id",
    "status",
    "result_latex",
    "result_labels",
    "route",
    "cached",
    "validation_score",
    "validation_reasons",
    "error_category",
    "error_message",
    "review_status",
    "reviewed_latex",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "api_calls",
    "retries",
    "attempts",
    "finished_at",
)
RESULT_PAGE = 2000


def result_rows(items: QuerySet[Item], *, page: int = RESULT_PAGE) -> Iterator[dict]:
    """The items as RESULT_COLUMNS rows, read in primary-key pages (any job size)."""
    values = items.order_by("pk").values_list("pk", "question__question_id", *RESULT_COLUMNS[2:])
    last = 0
    while chunk := list(values.filter(pk__gt=last)[:page]):
        for row_values in chunk:
            row = dict(zip(RESULT_COLUMNS, row_values, strict=True))
            row["cost_usd"] = str(row["cost_usd"])
            row["finished_at"] = row["finished_at"].isoformat() if row["finished_at"] else None
            yield row
        last = chunk[-1][0]


def batch_rows(*, job: Job, batch_no: int) -> list[dict]:
    items = Item.objects.filter(job_id=job.pk, batch_no=batch_no).exclude(
        status__in=[Item.Status.PENDING, Item.Status.RUNNING]
    )
    return list(result_rows(items))


def batch_export(*, job: Job, batch_no: int) -> Path | None:
    """Write one batch's results as JSON, like the old scripts' per-batch files."""
    rows = batch_rows(job=job, batch_no=batch_no)
    if not rows:
        return None
    path = export_dir(job_id=job.pk) / "batches" / f"batch-{batch_no:06d}.json"
    # One result per line: readable, and json's C encoder (indent= would use the slow one).
    lines = ",\n".join(json.dumps(row, ensure_ascii=False, default=str) for row in rows)
    text = f'{{"job": {job.pk}, "batch": {batch_no}, "results": [\n{lines}\n]}}\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def job_export(*, job: Job, missing_only: bool = False) -> list[Path]:
    """The stats JSON and every batch's results JSON, written from the database.

    missing_only: leave batch files that exist (the worker wrote them as batches ended).
    """
    from conversions.selectors import job_stats

    paths = []
    batch_nos = (
        Item.objects.filter(job_id=job.pk, batch_no__gt=0)
        .values_list("batch_no", flat=True)
        .distinct()
        .order_by("batch_no")
    )
    batches = export_dir(job_id=job.pk) / "batches"
    for batch_no in batch_nos:
        if missing_only and (batches / f"batch-{batch_no:06d}.json").exists():
            continue
        path = batch_export(job=job, batch_no=batch_no)
        if path:
            paths.append(path)
    stats_path = export_dir(job_id=job.pk) / "stats.json"
    _write_json(stats_path, job_stats(job=job))
    return [stats_path, *paths]


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)
