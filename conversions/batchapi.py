"""Batch API mode: a job's requests go out as JSONL files of remote batches, at the Batch
API's prices, and their answers come back within its 24 h window (issue 14).

A *step* (job_step) does whatever can be done for a job now and returns; it never waits
for the remote side. Steps run as the job's django-q2 task (job_run, when the job is
queued, resumed or cancelled) and from the poller (batches_poll: the "mathconv: poll
remote batches" schedule every minute, and every qcluster every
MATHCONV_BATCH_POLL_SECONDS when that is shorter). One step works on a job at a time
(services.batch_lock). Everything a step knows is in the database, so a step killed at
any point (web server or qcluster restarted) leaves the next one what to do, and a
duplicate step finds nothing to do twice. A step, in order:

1. launches remote batches that a killed step filled but did not create: one whose
   create call went out is found again by its metadata (BatchClient.find), any other
   is uploaded (again) and created;
2. asks the remote side about every open remote batch (cancelling those of a cancelled
   job) and collects every ended one: downloads its output and error files and records
   each result by custom_id, in whatever order they come, through the realtime result
   path (results.outcome_result, stems, services.outcomes_record: validation,
   accounting, cost at the Batch API prices, cache). Requests that failed with 5xx/429 or
   expired go back to pending for a follow-up batch, at most MAX_ATTEMPTS submissions
   per item (an unreadable answer is asked again once, as in realtime); an item with a
   result is never sent again;
3. while the job is queued or running: claims its pending items (services.items_claim),
   routes them as the realtime worker does (conversions/batchroute.py: reviewer-locked
   questions skipped, hybrid rules first, cache hits, one request per identical input,
   one request per stem formula) and writes the rest into input files of at most
   MATHCONV_BATCH_MAX_REQUESTS requests and MATHCONV_BATCH_MAX_BYTES bytes, one model
   per file. A file's RemoteBatch
   row holds its items before the file is uploaded, and the remote id is stored the
   moment the batch exists, before anything waits;
4. finishes the job once none of its items is pending or running.

custom_id is the item's id; a stem formula's is "<item id>#<n>" (n counts from 1).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import openai
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django_q.tasks import async_task, fetch

from conversions import exporting, selectors, services
from conversions.batchroute import Partial, Planned, Record, Requeue, Router
from conversions.cache import CachedResult
from conversions.converters.messages import Message
from conversions.endpoints import endpoint_default
from conversions.engine import batch as remote_api
from conversions.joblog import JobLog
from conversions.models import Item, Job, RemoteBatch
from conversions.preflight import (
    ConfigurationError,
    batch_api_missing_message,
    batch_client,
    endpoint_api_key,
)
from conversions.pricing import prices_for
from conversions.results import ItemResult, cached_result, failed_result
from conversions.services.batches import (
    batch_lock,
    batch_lock_renew,
    batch_unlock,
    remote_batch_assign,
    remote_batch_created,
    remote_batch_new,
    remote_batch_save,
    remote_batches_open,
    remote_item_stem_partial,
    remote_items,
    remote_items_cancel,
    remote_items_release,
    remote_items_requeue,
)
from conversions.services.items import CLAIM_FIELDS, items_mark_cancelled
from conversions.worker import worker_id

CLAIM_CHUNK = 1000  # items claimed, routed and written per round of a submission
COLLECT_CHUNK = 500  # items read and recorded per transaction of a collection
# How often `convert --wait` / `label` ask about a Batch API job at most.
INLINE_POLL_S = 10.0
METADATA_KEY = "mathconv_batch"  # how a remote batch is found again (BatchClient.find)
SCHEDULE_SECONDS = 60  # the poller schedule's interval (migration 0013)

log = logging.getLogger("conversions.batchapi")


class LockLost(Exception):
    """Another step took the job's lock (this one was too slow to renew it)."""


class LockKeeper(threading.Thread):
    """Renews a step's lock every quarter of a lease while the step works, uploads or
    downloads: a killed step's lock expires within one lease, a live one's never does.
    (One row, one statement at a time: it cannot deadlock with the step's own writes.)"""

    def __init__(self, *, job: Job, owner: str) -> None:
        super().__init__(name=f"batch-lock-{job.pk}", daemon=True)
        self.job, self.owner = job, owner
        self.lost = False
        self.done = threading.Event()
        self.every = max(0.5, settings.MATHCONV_LEASE_SECONDS / 4)

    def run(self) -> None:
        try:
            while not self.done.wait(self.every):
                if not batch_lock_renew(job=self.job, owner=self.owner):
                    self.lost = True
                    return
        finally:
            connection.close()

    def __enter__(self) -> LockKeeper:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.join()


# --- the entry points (conversions/tasks.py) ---------------------------------------------


def job_step(job_id: int, *, owner: str = "") -> str:
    """One step on a Batch API job (see the module docstring); returns what it did."""
    job = Job.objects.select_related("endpoint", "label_schema").filter(pk=job_id).first()
    if job is None or not job.batch_api:
        return f"job {job_id} is not a Batch API job"
    owner = owner or worker_id()
    if not batch_lock(job=job, owner=owner):
        return f"job {job_id}: another step is working on it"
    try:
        with JobLog(job.pk) as joblog, LockKeeper(job=job, owner=owner) as keeper:
            return BatchStep(job=job, owner=owner, log=joblog, keeper=keeper).run()
    finally:
        # Anything this step claimed and did not hand to a remote batch (an error on
        # the way) is pending again at once instead of after its lease.
        services.items_release(job=job, owner=owner)
        batch_unlock(job=job, owner=owner)


def batches_poll() -> str:
    """The poller: a step on every Batch API job that is queued or running or still has
    remote batches whose results are not recorded (paused, cancelled or failed ones).

    Steps run one after another for up to MATHCONV_TASK_BUDGET_SECONDS (collecting a
    large remote batch validates every answer); the jobs left then get a task each
    (job_run), so no poll comes near the django-q2 timeout.
    """
    deadline = time.monotonic() + settings.MATHCONV_TASK_BUDGET_SECONDS
    done = []
    for job_id in selectors.batch_jobs_to_poll():
        if time.monotonic() < deadline:
            done.append(f"job {job_id}: {job_step(job_id)}")
        elif job := Job.objects.filter(pk=job_id).first():
            services.job_enqueue(job=job, tasks=1)
            done.append(f"job {job_id}: queued")
    return "; ".join(done) or "nothing to do"


def poll_ticker(*, alive: Callable[[], bool]) -> None:
    """What each qcluster's main process does while its cluster runs (`alive()`): queue
    the poller every MATHCONV_BATCH_POLL_SECONDS when that is shorter than the schedule's
    minute and a Batch API job needs it. A poll still waiting in the queue is not queued
    again (for up to ten intervals: a task the broker lost is not waited for)."""
    every = float(settings.MATHCONV_BATCH_POLL_SECONDS)
    if not 0 < every < SCHEDULE_SECONDS:
        return
    due = time.monotonic()
    waiting: tuple[str, float] | None = None  # (task id, when queued)
    while alive():
        now = time.monotonic()
        if now >= due:
            due = now + every
            try:
                still_waiting = (
                    waiting and now - waiting[1] < 10 * every and fetch(waiting[0]) is None
                )
                if not still_waiting:
                    waiting = None
                    if selectors.batch_jobs_to_poll():
                        waiting = (async_task("conversions.tasks.batches_poll"), now)
            except Exception:  # the database may be restarting: try at the next tick
                log.exception("could not queue a poll of the remote batches")
            finally:
                close_old_connections()
        time.sleep(min(0.5, every))


def run_inline(job: Job, *, stop: threading.Event | None = None, on_progress=None) -> str:
    """Steps on a Batch API job in this process until it ends (`convert --wait` with no
    cluster, `label`). Setting `stop` stops waiting: the remote batches go on, and a
    qcluster's poller (or the same command run again) collects them."""
    stop = stop or threading.Event()
    wait_s = min(float(settings.MATHCONV_BATCH_POLL_SECONDS), INLINE_POLL_S)
    while True:
        outcome = job_step(job.pk)
        job.refresh_from_db()
        if on_progress:
            on_progress(job)
        if not remote_batches_open(job=job).exists() and job.status not in Job.ACTIVE_STATUSES:
            return outcome
        if stop.wait(wait_s):
            return "watching stopped"


# --- one input file being filled -----------------------------------------------------------


@dataclass
class FileWriter:
    """An input file being written, and the remote batch row that holds its items."""

    remote: RemoteBatch
    path: Path
    max_requests: int
    max_bytes: int
    requests: int = 0
    size: int = 0
    leaders: dict[str, str] = field(default_factory=dict)  # cache key -> custom_id
    unassigned: list[int] = field(default_factory=list)
    followers: dict[str, str] = field(default_factory=dict)

    def fits(self, requests: int, size: int) -> bool:
        return self.requests + requests <= self.max_requests and self.size + size <= self.max_bytes

    def add(self, planned: Planned) -> None:
        with self.path.open("ab") as fp:
            for request in planned.requests:
                fp.write(request.line)
                self.size += len(request.line)
        self.requests += len(planned.requests)
        self.unassigned.append(planned.item.pk)
        if planned.key:
            self.leaders[planned.key] = planned.requests[0].custom_id

    def follow(self, item_id: int, custom_id: str) -> None:
        self.unassigned.append(item_id)
        self.followers[str(item_id)] = custom_id

    def assign(self, owner: str) -> None:
        """Hand the items written so far to the remote batch row (before any upload)."""
        if self.unassigned:
            remote_batch_assign(
                remote=self.remote, owner=owner, item_ids=self.unassigned, followers=self.followers
            )
        self.unassigned, self.followers = [], {}
        remote_batch_save(self.remote, requests=self.requests, input_bytes=self.size)


def _new_file() -> Path:
    """An empty temporary file for an input or a downloaded result file."""
    with tempfile.NamedTemporaryFile(prefix="mathconv-batch-", suffix=".jsonl", delete=False) as f:
        return Path(f.name)


def _when(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, tz=UTC) if timestamp else None


# --- one step -------------------------------------------------------------------------------


class BatchStep:
    """One step on one Batch API job, under its lock (see the module docstring)."""

    def __init__(self, *, job: Job, owner: str, log: JobLog, keeper: LockKeeper) -> None:
        self.job = job
        self.owner = owner
        self.log = log
        self.keeper = keeper
        self.stop_message = ""  # the endpoint refused requests: the job fails with this
        self.counts = {"recorded": 0, "requeued": 0, "cancelled": 0}

    def run(self) -> str:
        job = self.job
        if job.endpoint is None:  # an LLM job from before endpoints were data
            job.endpoint = endpoint_default()
        try:
            api_key = endpoint_api_key(job.endpoint)
        except ConfigurationError as exc:
            services.job_fail(job=job, message=str(exc))
            return "failed"
        self.client = batch_client(job.endpoint, api_key=api_key)
        self.secrets = (api_key,)
        self.router = Router(
            job=job, api_key=api_key, prices=prices_for(endpoint=job.endpoint, model=job.model)
        )
        try:
            if job.status in Job.ACTIVE_STATUSES:
                services.job_start(job=job)
            for remote in remote_batches_open(job=job).filter(remote_id=""):
                self._launch(remote, path=None)
            for remote in remote_batches_open(job=job).exclude(remote_id=""):
                self._poll(remote)
            if not self.stop_message and self._active():
                self._submit()
            return self._wrap_up()
        except (openai.PermissionDeniedError, openai.AuthenticationError) as exc:
            # A key revoked or without access: the job stops until it is fixed (resume);
            # its remote batches stay where they are, and are polled again then.
            message = self._refusal_message(f"HTTP {exc.status_code}: {exc.message}")
            self.log.job("%s", message, level=logging.ERROR)
            services.job_fail(job=job, message=message)
            return "failed"
        except (openai.APIConnectionError, openai.APIStatusError) as exc:
            # The endpoint did not answer this time: the state is in the database, and
            # the next step (the poller) continues from there.
            self.log.job(
                "remote side unavailable: %s: %s", type(exc).__name__, exc, level=logging.WARNING
            )
            return f"remote side unavailable ({type(exc).__name__}); the next poll continues"
        except LockLost:
            self.log.job("step lock lost to another step: stopping", level=logging.WARNING)
            return "lock lost"
        except Exception:
            self.log.exception("step %s failed", self.owner)
            raise
        finally:
            self.client.close()

    def _active(self) -> bool:
        return selectors.job_status(job_id=self.job.pk) in Job.ACTIVE_STATUSES

    def _refusal_message(self, error: str) -> Message:
        return Message(
            gettext_noop("The endpoint refused the Batch API requests: %(error)s"),
            {"error": error},
        )

    def _renew(self) -> None:
        """Stop before writing anything more once another step has the job's lock."""
        if self.keeper.lost:
            raise LockLost

    # -- 3. submission ----------------------------------------------------------------------

    def _submit(self) -> None:
        job = self.job
        claimable = Q(status=Item.Status.PENDING) | Q(
            status=Item.Status.RUNNING, lease_expires_at__lt=timezone.now()
        )
        if not job.items.filter(claimable).exists():
            return
        # Refused before any work: a server without the Batch API answers 404.
        if not self.client.supported():
            assert job.endpoint is not None  # run() set it
            message = batch_api_missing_message(job.endpoint)
            self.log.job("%s", message, level=logging.ERROR)
            services.job_fail(job=job, message=message)
            return
        writer: FileWriter | None = None
        max_requests = max(1, settings.MATHCONV_BATCH_MAX_REQUESTS)
        max_bytes = max(1, settings.MATHCONV_BATCH_MAX_BYTES)
        while not self.stop_message and self._active():
            self._renew()
            # What this step claimed and has not yet handed to a remote batch.
            services.items_renew_lease(job=job, owner=self.owner)
            claimed = services.items_claim(job=job, owner=self.owner, limit=CLAIM_CHUNK)
            if claimed is None:
                break
            results, planned = self.router.plan(claimed.items)
            too_large = []
            for plan in planned:
                if plan.key and writer is not None and plan.key in writer.leaders:
                    writer.follow(plan.item.pk, writer.leaders[plan.key])
                    continue
                size = sum(len(r.line) for r in plan.requests)
                if len(plan.requests) > max_requests or size > max_bytes:
                    too_large.append(plan.item)
                    continue
                if writer is not None and not writer.fits(len(plan.requests), size):
                    self._send(writer)
                    writer = None
                if writer is None:
                    remote = remote_batch_new(job=job, model=self.router.model)
                    writer = FileWriter(remote, _new_file(), max_requests, max_bytes)
                writer.add(plan)
            results += [self._too_large(item, max_requests, max_bytes) for item in too_large]
            self._record(results, owner=self.owner)
            if writer is not None:
                writer.assign(self.owner)
        if writer is None:
            return
        if selectors.job_status(job_id=job.pk) == Job.Status.CANCELLED:
            writer.assign(self.owner)  # cancelled meanwhile: its items are not sent
            remote_items_cancel(remote=writer.remote)
            writer.remote.delete()
            writer.path.unlink(missing_ok=True)
            return
        self._send(writer)

    def _too_large(self, item: Item, max_requests: int, max_bytes: int) -> ItemResult:
        return failed_result(
            item_id=item.pk,
            question_id=item.question_id,
            category=Item.ErrorCategory.INVALID_INPUT,
            message=_(
                "Its requests do not fit in one Batch API file (at most %(requests)s "
                "requests and %(bytes)s bytes): convert it in realtime."
            )
            % {"requests": max_requests, "bytes": max_bytes},
            route=Item.Route.LLM,
            seconds=0.0,
        )

    def _send(self, writer: FileWriter) -> None:
        writer.assign(self.owner)
        try:
            self._launch(writer.remote, path=writer.path)
        finally:
            writer.path.unlink(missing_ok=True)

    def _launch(self, remote: RemoteBatch, *, path: Path | None) -> None:
        """Upload the remote batch's file and create the batch; store the id at once.

        path None: a batch a killed step left (its file is rebuilt from the items it
        holds). One whose create call went out is looked for first, by its metadata.
        """
        self._renew()
        tag = f"{self.job.pk}/{remote.pk}/{int(remote.created_at.timestamp() * 1000)}"
        created = None
        if remote.create_attempted_at is not None:
            since = remote.create_attempted_at.timestamp() - 600
            created = self.client.find(key=METADATA_KEY, value=tag, since=since)
        if created is None and selectors.job_status(job_id=self.job.pk) == Job.Status.CANCELLED:
            remote_items_cancel(remote=remote)  # never sent: nothing to wait for
            remote.delete()
            return
        if created is None and not remote.input_file_id:
            rebuilt = path is None
            if rebuilt:
                path = self._rebuild(remote)
                if path is None:
                    return
            assert path is not None  # written or rebuilt above
            try:
                uploaded = self.client.upload(
                    path, name=f"mathconv-job{self.job.pk}-batch{remote.seq}.jsonl"
                )
            finally:
                if rebuilt:
                    path.unlink(missing_ok=True)
            remote_batch_save(remote, input_file_id=uploaded.id, input_bytes=uploaded.bytes)
        if created is None:
            remote_batch_save(remote, create_attempted_at=timezone.now())
            try:
                created = self.client.create(
                    input_file_id=remote.input_file_id,
                    metadata={METADATA_KEY: tag, "mathconv_job": str(self.job.pk)},
                )
            except openai.APIStatusError as exc:
                if exc.status_code >= 500 or exc.status_code in (408, 409, 429):
                    raise
                self._refused_batch(remote, f"HTTP {exc.status_code}: {exc.message}")
                return
        remote_batch_created(
            remote=remote, remote_id=created.id, state=created.status, **self._counts(created)
        )
        self.log.job(
            "remote batch %s (%s/%s): %s request(s), %s item(s), file %s",
            created.id,
            self.job.pk,
            remote.seq,
            remote.requests,
            remote_items(remote).count(),
            remote.input_file_id,
        )

    def _rebuild(self, remote: RemoteBatch) -> Path | None:
        """The input file of a remote batch a killed step filled, from the items it holds
        (followers send nothing); None when it holds no item any more."""
        path = _new_file()
        requests = size = 0
        followers = set(remote.followers)
        for items in self._held(remote):
            results, planned = self.router.plan(
                [item for item in items if str(item.pk) not in followers]
            )
            self._record(results, owner=remote.lease_owner)
            with path.open("ab") as fp:
                for plan in planned:
                    for request in plan.requests:
                        fp.write(request.line)
                        requests += 1
                        size += len(request.line)
        if not requests:  # nothing left to send: no remote batch is needed
            path.unlink(missing_ok=True)
            remote_items_release(remote=remote)
            remote.delete()
            return None
        remote_batch_save(remote, requests=requests, input_bytes=size)
        return path

    def _refused_batch(self, remote: RemoteBatch, message: str) -> None:
        """The remote side will not run this batch (a 4xx on create, or a batch that
        failed validation): its items are pending again and the job fails with why."""
        if self.job.status == Job.Status.CANCELLED:
            remote_items_cancel(remote=remote)
        else:
            remote_items_release(remote=remote)
        remote_batch_save(
            remote,
            state=RemoteBatch.State.FAILED,
            error_message=message[:2000],
            collected_at=timezone.now(),
        )
        self.log.job("remote batch %s refused: %s", remote.seq, message, level=logging.ERROR)
        self.stop_message = Message(
            gettext_noop(
                "The Batch API refused remote batch %(seq)s: %(error)s. Its items are pending "
                "again; fix the cause, then resume the job."
            ),
            {"seq": remote.seq, "error": message},
        )

    # -- 2. polling and collecting ------------------------------------------------------------

    def _counts(self, remote) -> dict:
        counts = remote.request_counts
        return {
            "count_total": counts.total if counts else 0,
            "count_completed": counts.completed if counts else 0,
            "count_failed": counts.failed if counts else 0,
            "output_file_id": remote.output_file_id or "",
            "error_file_id": remote.error_file_id or "",
        }

    def _poll(self, remote: RemoteBatch) -> None:
        self._renew()
        try:
            state = self.client.retrieve(remote.remote_id)
        except openai.NotFoundError as exc:  # deleted, or another server or account
            self._refused_batch(remote, f"HTTP 404: {exc.message}")
            return
        cancelled = self.job.status == Job.Status.CANCELLED
        if (
            cancelled
            and state.status in RemoteBatch.CANCELLABLE_STATES
            and remote.cancel_requested_at is None
        ):
            try:
                state = self.client.cancel(remote.remote_id)
            except openai.APIStatusError as exc:  # it ended meanwhile
                if exc.status_code >= 500:
                    raise
                state = self.client.retrieve(remote.remote_id)
            remote_batch_save(remote, cancel_requested_at=timezone.now())
            self.log.job("remote batch %s: cancel requested", remote.remote_id)
        ended = state.completed_at or state.failed_at or state.expired_at or state.cancelled_at
        remote_batch_save(
            remote,
            state=state.status,
            ended_at=_when(ended) if state.status in remote_api.ENDED else None,
            error_message=remote_api.batch_errors(state)[:2000],
            **self._counts(state),
        )
        if remote.ended:
            self._collect(remote, state)

    def _collect(self, remote: RemoteBatch, state) -> None:
        if remote.state == RemoteBatch.State.FAILED:
            self._refused_batch(remote, remote.error_message or "failed")
            return
        cancelled = self.job.status == Job.Status.CANCELLED
        before = dict(self.counts)
        ended = remote.ended_at or timezone.now()
        latency_s = max(0.0, (ended - (remote.submitted_at or ended)).total_seconds())
        lines = self._download(remote, latency_s)
        followers = remote.followers
        # The answers that followers take: the cache entry of a succeeded leader.
        wanted = set(followers.values())
        leader_hits: dict[str, CachedResult | None] = {}
        stopped: list[int] = []
        for items in self._held(remote):
            results = []
            for item in items:
                if str(item.pk) in followers:
                    continue
                decision = self.router.collect(
                    item, lines, cancelled=cancelled, latency_s=latency_s
                )
                if isinstance(decision, Record):
                    results.append(decision.result)
                    if str(item.pk) in wanted:
                        leader_hits[str(item.pk)] = (
                            decision.result.cache_entry()
                            if decision.result.status == Item.Status.SUCCEEDED
                            and decision.result.cache_key
                            else None
                        )
                elif isinstance(decision, Requeue):
                    self.counts["requeued"] += remote_items_requeue(
                        remote=remote, item_ids=[item.pk], sent=decision.sent
                    )
                elif isinstance(decision, Partial):
                    self._partial(remote, item, decision)
                else:
                    stopped.append(item.pk)
                    self.stop_message = self.stop_message or decision.message
            self._record(results, owner=remote.lease_owner)
        self._collect_followers(remote, followers, leader_hits, cancelled)
        if stopped:
            remote_items_release(remote=remote, item_ids=stopped)
        leftover = remote_items(remote).count()  # none unless a bug: never left running
        if leftover:
            self.log.job(
                "remote batch %s: %s item(s) without a decision, pending again",
                remote.remote_id,
                leftover,
                level=logging.ERROR,
            )
            remote_items_release(remote=remote)
        remote_batch_save(remote, collected_at=timezone.now())
        self.log.job(
            "remote batch %s %s: %s line(s) read; recorded %s, to send again %s, cancelled %s",
            remote.remote_id,
            remote.state,
            len(lines),
            *(self.counts[k] - before[k] for k in ("recorded", "requeued", "cancelled")),
        )

    def _collect_followers(self, remote, followers: dict, hits: dict, cancelled: bool) -> None:
        ids = sorted(int(pk) for pk in followers)
        for start in range(0, len(ids), COLLECT_CHUNK):
            chunk = ids[start : start + COLLECT_CHUNK]
            items = self._items(remote_items(remote).filter(pk__in=chunk))
            results, requeue = [], []
            for item in items:
                hit = hits.get(followers[str(item.pk)])
                if hit is not None:
                    results.append(
                        cached_result(
                            item_id=item.pk,
                            question_id=item.question_id,
                            mathml=item.question.mathml,
                            hit=hit,
                        )
                    )
                else:
                    requeue.append(item.pk)
            self._record(results, owner=remote.lease_owner)
            if cancelled:
                self.counts["cancelled"] += remote_items_cancel(remote=remote, item_ids=requeue)
            else:
                self.counts["requeued"] += remote_items_requeue(
                    remote=remote, item_ids=requeue, sent=False
                )

    def _partial(self, remote: RemoteBatch, item: Item, partial: Partial) -> None:
        calls = partial.calls
        remote_item_stem_partial(
            remote=remote,
            item_id=item.pk,
            formulas=partial.formulas,
            tokens_in=sum(c.tokens_in for c in calls),
            tokens_out=sum(c.tokens_out for c in calls),
            cost_usd=sum((c.cost_usd for c in calls), start=Decimal("0")),
            api_calls=sum(c.api_calls for c in calls),
            cache=[
                c.cache_entry() for c in calls if c.cache_key and c.status == Item.Status.SUCCEEDED
            ],
        )
        self.counts["requeued"] += 1

    def _download(self, remote: RemoteBatch, latency_s: float) -> dict[str, remote_api.LineResult]:
        lines: dict[str, remote_api.LineResult] = {}
        for file_id in (remote.output_file_id, remote.error_file_id):
            if not file_id:
                continue
            self._renew()
            path = _new_file()
            try:
                with path.open("wb") as fp:
                    self.client.download(file_id, fp)
                for raw in remote_api.result_lines(path):
                    found = remote_api.read_result_line(
                        raw, task=self.router.task, secrets=self.secrets, latency_s=latency_s
                    )
                    if found is not None:
                        lines[found.custom_id] = found
            finally:
                path.unlink(missing_ok=True)
        return lines

    def _held(self, remote: RemoteBatch) -> Iterator[list[Item]]:
        """The items the remote batch holds, in chunks by id (any batch size)."""
        last = 0
        while True:
            self._renew()
            chunk = self._items(remote_items(remote).filter(pk__gt=last).order_by("pk"))[
                :COLLECT_CHUNK
            ]
            chunk = list(chunk)
            if not chunk:
                return
            yield chunk
            last = chunk[-1].pk

    def _items(self, items):
        return items.select_related("question").only(*CLAIM_FIELDS).order_by("pk")

    def _record(self, results: list[ItemResult], *, owner: str) -> None:
        if not results:
            return
        now = timezone.now()
        for result in results:
            result.finished_at = now
        written = services.outcomes_record(job=self.job, owner=owner, results=results)
        self.counts["recorded"] += len(written)

    # -- 4. the end -----------------------------------------------------------------------------

    def _wrap_up(self) -> str:
        job = self.job
        if self.stop_message:
            services.job_fail(job=job, message=self.stop_message)
        status = selectors.job_status(job_id=job.pk)
        still_open = remote_batches_open(job=job).count()
        if status == Job.Status.CANCELLED:
            if still_open:
                return f"cancelling: {still_open} remote batch(es) still open"
            n = services.items_cancel(job=job, owner=self.owner)
            n += items_mark_cancelled(
                job.items.filter(status__in=[Item.Status.PENDING, Item.Status.RUNNING])
            )
            return f"cancelled ({n} item(s) marked cancelled)"
        if status not in Job.ACTIVE_STATUSES:
            return f"{status}: {still_open} remote batch(es) open"
        final = services.job_finish_if_done(job=job)
        if final:
            try:
                exporting.job_export(job=job, missing_only=True)
            except OSError:
                self.log.exception("could not write the exports")
            self.log.job("finished: %s", final)
            return final
        return f"waiting for {still_open} remote batch(es)"
