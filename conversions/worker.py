"""The run loop of one task on one job: claim, work, tick, flush, lease, continuation.

JobWorker.run() works on a job until it is done, paused or cancelled, or until its time
budget is spent (the task then queues a continuation of itself, so no task comes near
the Q_CLUSTER timeout). It claims items in batches of job.batch_size under a lease,
works them through the backend, and writes results as they come (every FLUSH_S seconds
or FLUSH_N results), never all at the end:

- rules: the deterministic converter, in this thread;
- openai: the async engine (BatchRunner, on its own event loop in a background thread);
  the next batch is claimed while the last one is still in flight, so the pool never
  drains between batches;
- hybrid: rules first; only items whose rules result failed or validated low go to the
  LLM, with the rules result as a hint (results.needs_llm).

What a result is (validation, cost, cache hits) is decided in conversions/results.py;
this module decides only when and where. A task delivered twice is harmless: the second
one claims other items or none (services.items_claim / outcomes_record).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from django.conf import settings
from django.db import reset_queries
from django.utils import timezone
from django.utils.translation import gettext_noop

from conversions import exporting, labeling, selectors, services
from conversions.cache import CachedResult, cache_key, cache_lookup
from conversions.converters.messages import Message, message_data, source_text
from conversions.endpoints import endpoint_default, engine_endpoint
from conversions.engine.capabilities import unsupported_parameter
from conversions.engine.runner import BatchRunner, EngineConfig
from conversions.engine.types import ErrorCategory, Outcome, WorkItem
from conversions.fewshot import conversion_task
from conversions.joblog import JobLog
from conversions.models import Item, Job
from conversions.preflight import ConfigurationError, endpoint_api_key
from conversions.pricing import prices_for
from conversions.ratelimit import endpoint_limiter
from conversions.results import (
    ItemResult,
    cached_result,
    needs_llm,
    outcome_result,
    rules_result,
    skipped_result,
)
from conversions.stems import StemWork, entry, entry_ok, is_stem, rules_entry, rules_stem_result

STATUS_CHECK_S = 0.5
FLUSH_S = 0.5
FLUSH_N = 200
# Consecutive refused calls (401/403/404: Outcome.refused) that stop a job.
REFUSALS_TO_STOP = 10
# Consecutive items whose every call failed to connect (refused, DNS, TLS:
# Outcome.unreachable), with no answer in between, that pause a job: 5 items of up to
# 4 calls each, instead of 4 calls for every item of the job.
UNREACHABLE_TO_STOP = 5


def cluster_id() -> str:
    """This worker's cluster: host and the pid of the sentinel that forked it."""
    return f"{socket.gethostname()}:{os.getppid()}"


def unsupported_parameter_message(*, job: Job, param: str) -> Message:
    """The one message a job stops with when its model rejects a parameter (a 400)."""
    names = {
        "model": job.model,
        "endpoint": job.endpoint.name if job.endpoint else "-",
        "param": param,
    }
    if param == "prompt_cache_key":
        return Message(
            gettext_noop(
                "The model %(model)s at endpoint %(endpoint)s does not accept "
                "prompt_cache_key: untick “accepts prompt_cache_key” for this model in the "
                "endpoint's models (admin: Endpoints), then resume the job."
            ),
            names,
        )
    if param == "temperature":
        return Message(
            gettext_noop(
                "The model %(model)s at endpoint %(endpoint)s does not accept temperature: "
                "untick “accepts temperature” for this model in the endpoint's models "
                "(admin: Endpoints), then resume the job."
            ),
            names,
        )
    return Message(
        gettext_noop(
            "The model %(model)s at endpoint %(endpoint)s does not accept the parameter "
            "%(param)s: change its “max-tokens parameter” (or the setting that sends "
            "%(param)s) in the endpoint's models (admin: Endpoints), then resume the job."
        ),
        names,
    )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SentLedger:
    """API calls counted in the database (Job.requests_sent) before they are sent.

    The engine takes one call from here before each request (runner.CallLedger); the
    worker thread keeps between `block/2` and `block` calls paid in advance, one UPDATE
    per top-up, and gives back what is left at the end. A worker killed with calls in
    flight has counted them all, plus at most `block` never sent: the job's count of
    sent calls is never below what the endpoint received (hole 9 of issue 13).
    """

    def __init__(self, block: int) -> None:
        self.block = max(2, block)
        self.lock = threading.Lock()
        self.credits = 0

    def take(self) -> bool:
        with self.lock:
            if self.credits <= 0:
                return False
            self.credits -= 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.credits += 1

    def top_up(self) -> int:
        """How many calls to count now (0: enough in hand); they are then in hand."""
        with self.lock:
            if self.credits >= self.block // 2:
                return 0
            more = self.block - self.credits
            self.credits = self.block
            return more

    def drain(self) -> int:
        with self.lock:
            left, self.credits = self.credits, 0
            return left


@dataclass
class _Pending:
    """A claimed item on its way through the backend."""

    item: Item
    batch_no: int
    key: str = ""
    hint: str = ""
    rules_ms: float = 0.0
    followers: list[_Pending] = field(default_factory=list)
    # One formula of a stem (conversions/stems.py): its own call, under its own id.
    stem: StemWork | None = None
    index: int = 0
    work_id: int = 0

    @property
    def mathml(self) -> str:
        if self.stem is not None:
            return self.stem.stem.formulas[self.index].mathml
        return self.item.question.mathml

    @property
    def key_id(self) -> int:
        return self.work_id or self.item.pk

    def work_item(self) -> WorkItem:
        q = self.item.question
        return WorkItem(
            item_id=self.key_id,
            ref=q.question_id if self.stem is None else f"{q.question_id}#{self.index + 1}",
            mathml=self.mathml,
            text=q.text,
            hint=self.hint,
            batch_no=self.batch_no,
        )


class JobWorker:
    """One task's run on one job (see the module docstring)."""

    def __init__(
        self,
        *,
        job: Job,
        log: JobLog,
        budget_s: float | None,
        continue_: bool = False,
        stop: threading.Event | None = None,
        on_progress=None,
        concurrency: int | None = None,
        share: int = 1,
        owner: str = "",
    ) -> None:
        self.job = job
        self.concurrency = concurrency or job.max_concurrent
        self.share = max(1, share)
        self.log = log
        self.owner = owner or worker_id()
        self.deadline = time.monotonic() + budget_s if budget_s else None
        self.continue_ = continue_
        self.stop_event = stop or threading.Event()
        self.on_progress = on_progress
        self.prices = prices_for(endpoint=job.endpoint, model=job.model)
        self.renew_every = max(0.5, settings.MATHCONV_LEASE_SECONDS / 4)
        self.stop_reason = ""  # "paused", "cancelled", ... when the job must stop
        self.results: list[ItemResult] = []
        self.batch_left: dict[int, int] = {}
        self.batch_started: dict[int, float] = {}
        self.batches_done: list[int] = []
        self.recorded = 0
        # Validated results of this run not yet flushed to the cache table, so an input
        # repeated in a later batch is not called again before the flush.
        self.fresh: dict[str, CachedResult] = {}
        self.endpoint_refusals = 0  # consecutive 401/403/404 answers
        self.formula_ids = 0  # a stem's formulas are sent under ids -1, -2, ...
        # Outcomes of items that could not reach the endpoint, held back (their items
        # stay claimed) until an answer shows the endpoint is up, or the job pauses.
        self.unreachable: list[Outcome] = []
        self.endpoint_down = False
        self.endpoint_answered = False  # some call of this run reached the endpoint
        self.ledger: SentLedger | None = None  # LLM backends: calls counted before sent
        now = time.monotonic()
        self.last_check = self.last_flush = self.last_renew = now

    # -- the run -----------------------------------------------------------------------

    def run(self) -> str:
        job = self.job
        self.log.job(
            "run %s started: backend=%s endpoint=%s model=%s batch_size=%s concurrency=%s",
            self.owner,
            job.backend,
            f"{job.endpoint.name} ({job.endpoint.url})" if job.endpoint else "-",
            job.model or "-",
            job.batch_size,
            self.concurrency,
        )
        try:
            if job.kind == Job.Kind.LABEL and job.backend != Job.Backend.OPENAI:
                raise ConfigurationError("labeling jobs run on the openai backend")
            if job.backend == Job.Backend.RULES:
                self._run_rules()
            else:
                self._run_llm()
            self._flush(final=True)
        except Exception as exc:
            self.log.exception("run %s failed", self.owner)
            if isinstance(exc, ConfigurationError):
                # Keep what came back before the endpoint started refusing; the refused
                # items go back to pending with the rest.
                self.results = [r for r in self.results if not r.refused]
                self._flush()
            services.items_release(job=job, owner=self.owner)
            services.job_fail(
                job=job,
                message=Message(
                    gettext_noop("%(kind)s: %(error)s"), {"kind": type(exc).__name__, "error": exc}
                ),
            )
            return "failed"
        return self._wrap_up()

    def _wrap_up(self) -> str:
        job = self.job
        if not self.stop_reason:
            status = selectors.job_status(job_id=job.pk)
            if status not in Job.ACTIVE_STATUSES:
                self.stop_reason = status  # paused or cancelled since the last check
        if self.stop_reason == Job.Status.CANCELLED:
            n = services.items_cancel(job=job, owner=self.owner)
            self.log.job("cancelled: %s claimed item(s) marked cancelled", n)
            return "cancelled"
        released = services.items_release(job=job, owner=self.owner)
        if self.stop_reason:
            self.log.job("stopped (%s): %s item(s) handed back", self.stop_reason, released)
            return self.stop_reason
        if self._over_budget():
            self.log.job("time budget spent: %s item(s) handed back, continuing", released)
            if self.continue_:
                services.job_enqueue(job=job, tasks=1)
            return "more work"
        final = services.job_finish_if_done(job=job)
        if final:
            paths = self._export_final()
            self.log.job("finished: %s; stats in %s", final, paths[0] if paths else "-")
            return final
        return "done (other workers finish the job)"

    def _export_final(self):
        try:
            return exporting.job_export(job=self.job, missing_only=True)
        except OSError:
            self.log.exception("could not write the exports")
            return []

    # -- steering: status, leases, flushing ---------------------------------------------

    def _over_budget(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _tick(self) -> None:
        """Periodic duties: check the job's status, renew leases, flush results."""
        now = time.monotonic()
        if self.stop_event.is_set() and not self.stop_reason:
            services.job_pause(job=self.job)
            self.stop_reason = Job.Status.PAUSED
        if now - self.last_check >= STATUS_CHECK_S and not self.stop_reason:
            self.last_check = now
            status = selectors.job_status(job_id=self.job.pk)
            if status not in Job.ACTIVE_STATUSES:
                self.stop_reason = status
                self.log.job("job is now %s: stopping", status)
        if self.ledger is not None and (more := self.ledger.top_up()):
            services.job_count_sent(job=self.job, calls=more)
        if now - self.last_renew >= self.renew_every:
            self.last_renew = now
            services.items_renew_lease(job=self.job, owner=self.owner)
            if self.continue_:  # a queued task: stand in for siblings that died
                services.job_runs_replace_dead(job=self.job)
        if self.results and (len(self.results) >= FLUSH_N or now - self.last_flush >= FLUSH_S):
            self._flush()

    def _flush(self, final: bool = False) -> None:
        self.last_flush = time.monotonic()
        # With DEBUG=1 (make demo) Django keeps the last 9,000 queries per connection;
        # bulk updates are large, so a long run would hold hundreds of MB.
        reset_queries()
        results, self.results = self.results, []
        if self.endpoint_refusals and not final:
            # Refusals in a row may yet stop the job, and then their items stay pending:
            # they wait here until an answer breaks the row (or the run ends).
            self.results = [r for r in results if r.refused]
            results = [r for r in results if not r.refused]
        if results:
            written = services.outcomes_record(job=self.job, owner=self.owner, results=results)
            self.fresh.clear()
            self.recorded += len(written)
            if len(written) < len(results):
                self.log.job(
                    "%s result(s) dropped: their items are no longer held by this worker",
                    len(results) - len(written),
                    level=logging.WARNING,
                )
            if self.on_progress:
                self.on_progress(self.job)
        for batch_no in self.batches_done:
            exporting.batch_export(job=self.job, batch_no=batch_no)
        self.batches_done = []

    def _wait_for_orphans(self) -> bool:
        """Nothing left to claim: if a killed worker's items are what keeps the job from
        ending, wait (ticking) until their lease expires and say so, so that the run
        claims them. Without this the last live run would leave, and the job would wait
        for the reconciler (up to a minute more, or forever where its schedule is gone).
        Returns False at once while the other holders renew their leases."""
        until = selectors.items_orphaned_until(
            job=self.job, owner=self.owner, missed_s=2 * self.renew_every + 1
        )
        if until is None:
            return False
        self.log.job("waiting for the lease of a stopped worker's items (until %s)", until)
        while True:
            self._tick()
            if self.stop_reason or self._over_budget():
                return False
            time.sleep(0.2)  # also between two tries when a claim found them taken
            if timezone.now() > until:
                return True

    def _claim(self) -> services.Batch | None:
        # Near the end of a job shared by several tasks, claims shrink to this task's
        # share of what is left, down to half its pool (services.items_claim).
        batch = services.items_claim(
            job=self.job,
            owner=self.owner,
            limit=self.job.batch_size,
            share=self.share,
            floor=max(1, self.concurrency // 2),
        )
        if batch is not None:
            self.batch_left[batch.batch_no] = len(batch.items)
            self.batch_started[batch.batch_no] = time.monotonic()
            first, last = batch.items[0].question, batch.items[-1].question
            self.log.batch(
                batch.batch_no,
                "claimed %s item(s) %s..%s",
                len(batch.items),
                first.question_id,
                last.question_id,
            )
        return batch

    def _add(self, batch_no: int, item: Item, result: ItemResult) -> None:
        result.finished_at = timezone.now()
        self.results.append(result)
        level = logging.DEBUG
        if result.status == Item.Status.FAILED:
            level = logging.WARNING
        self.log.item(
            batch_no,
            item.question.question_id,
            "%s route=%s%s score=%s latency=%sms tokens=%s/%s calls=%s%s",
            result.status,
            result.route or "-",
            " (cache)" if result.cached else "",
            f"{result.validation_score:.2f}" if result.validation_score is not None else "-",
            result.latency_ms if result.latency_ms is not None else "-",
            result.tokens_in,
            result.tokens_out,
            result.api_calls,
            # in the source language, as the log's other lines and Item.error_message
            f" {result.error_category}: {source_text(message_data(result.error_message))}"
            if result.error_category
            else "",
            level=level,
        )
        self.batch_left[batch_no] -= 1
        if self.batch_left[batch_no] == 0:
            self.batches_done.append(batch_no)
            took = time.monotonic() - self.batch_started.pop(batch_no)
            del self.batch_left[batch_no]
            self.log.batch(batch_no, "done in %.2f s", took)

    # -- results (the pure step: conversions/results.py) --------------------------------

    def _skip_locked(self, item: Item) -> ItemResult | None:
        if item.question.locked_for(self.job):
            return skipped_result(item_id=item.pk, question_id=item.question_id)
        return None

    def _rules(self, item: Item) -> ItemResult:
        mathml = item.question.mathml
        if is_stem(mathml):
            return rules_stem_result(item_id=item.pk, question_id=item.question_id, mathml=mathml)
        return rules_result(item_id=item.pk, question_id=item.question_id, mathml=mathml)

    def _cached(self, pending: _Pending, hit: CachedResult) -> ItemResult:
        item = pending.item
        return cached_result(
            item_id=item.pk, question_id=item.question_id, mathml=item.question.mathml, hit=hit
        )

    def _from_outcome(self, pending: _Pending, outcome: Outcome) -> ItemResult:
        item = pending.item
        return outcome_result(
            outcome,
            item_id=item.pk,
            question_id=item.question_id,
            mathml=item.question.mathml,
            labeling_job=self.job.kind == Job.Kind.LABEL,
            prices=self.prices,
            cache_key=pending.key,
            rules_ms=pending.rules_ms,
        )

    # -- rules backend ------------------------------------------------------------------

    def _run_rules(self) -> None:
        while True:
            self._tick()
            if self.stop_reason or self._over_budget():
                return
            batch = self._claim()
            if batch is None:
                if self._wait_for_orphans():
                    continue
                return
            for item in batch.items:
                result = self._skip_locked(item) or self._rules(item)
                self._add(batch.batch_no, item, result)
                self._tick()
                if self.stop_reason:
                    return
            self._flush()

    # -- LLM backends (openai, hybrid) --------------------------------------------------

    def _run_llm(self) -> None:
        job = self.job
        if job.endpoint is None:  # an LLM job from before endpoints were data
            job.endpoint = endpoint_default()
        # The job's endpoint, whatever this process's OPENAI_BASE_URL; the key from this
        # worker's environment, or the job fails at once naming the variable.
        endpoint = engine_endpoint(job=job, api_key=endpoint_api_key(job.endpoint))
        # One budget per endpoint, shared with every other worker (conversions/ratelimit.py).
        limiter = endpoint_limiter(endpoint)
        self.ledger = SentLedger(2 * self.concurrency)
        runner = BatchRunner(
            endpoint=endpoint,
            task=(
                labeling.label_task(job.label_schema)
                if job.kind == Job.Kind.LABEL
                else conversion_task(job)
            ),
            config=EngineConfig(max_concurrent=self.concurrency),
            limiter=limiter,
            log=self.log.adapter(),
            ledger=self.ledger,
        )
        self.in_flight: dict[int, _Pending] = {}  # claimed and not yet resolved
        self.leaders: dict[str, _Pending] = {}  # one call per identical input at a time
        self.backlog: deque[_Pending] = deque()  # waiting for room in the runner's queue
        try:
            with runner:
                self._drive(runner)
        finally:
            # Every call has ended: what is left in hand was counted but never sent.
            if unused := self.ledger.drain():
                services.job_count_sent(job=job, calls=-unused)
            close = getattr(limiter, "close", None)
            if close is not None:
                close()

    def _drive(self, runner) -> None:
        """Keep the runner's queue fed from claimed batches; record outcomes as they come."""
        exhausted = False
        while True:
            self._tick()
            if self.stop_reason:
                break
            if (
                not exhausted
                and not self.backlog
                and not self._over_budget()
                and len(self.in_flight) <= 2 * self.concurrency
            ):
                batch = self._claim()
                if batch is None:
                    exhausted = True
                else:
                    self._route_batch(batch)
            while self.backlog and runner.submit(self.backlog[0].work_item(), timeout=0):
                self.backlog.popleft()
            if not self.in_flight and (exhausted or self._over_budget()):
                if exhausted and not self.unreachable and self._wait_for_orphans():
                    exhausted = False
                    continue
                break
            wait = 0.02 if self.in_flight else 0.0
            for outcome in runner.poll(timeout=wait):
                self._on_outcome(outcome)
            if (
                self.unreachable
                and (exhausted or self._over_budget())
                and not self.backlog
                and runner.in_flight == 0
            ):
                # Nothing else will come: see what was delivered, then decide on the
                # items held back as unreachable (which still count as in flight).
                for outcome in runner.poll(0):
                    self._on_outcome(outcome)
                if self.unreachable:
                    self._settle_unreachable()
        if self.stop_reason:
            # A pause lets the calls in flight finish (they are paid for); a cancel
            # abandons them. Either way no new call starts.
            abandon = self.stop_reason == Job.Status.CANCELLED
            for outcome in runner.cancel(abandon=abandon):
                if outcome.error_category != ErrorCategory.CANCELLED:
                    self._on_outcome(outcome)

    def _check_endpoint(self, outcome: Outcome) -> None:
        """Stop a job whose endpoint refuses every call (key revoked, model retired).

        The job fails with the server's message and its unrecorded items go back to
        pending, instead of every remaining item failing one by one; `job resume`
        continues once the configuration is fixed.
        """
        param = unsupported_parameter(
            outcome.http_status, f"{outcome.error_message} {outcome.response_excerpt}"
        )
        if param is not None:
            raise ConfigurationError(unsupported_parameter_message(job=self.job, param=param))
        self.endpoint_refusals = self.endpoint_refusals + 1 if outcome.refused else 0
        if self.endpoint_refusals >= REFUSALS_TO_STOP:
            raise ConfigurationError(
                f"the endpoint refused {self.endpoint_refusals} calls in a row: "
                f"{outcome.error_message}"
            )

    def _route_batch(self, batch: services.Batch) -> None:
        job = self.job
        # The cache is keyed on the MathML alone: right for conversions, not for labels
        # (text-only documents would all share one key).
        use_cache = job.use_cache and job.kind == Job.Kind.CONVERT
        to_llm: list[_Pending] = []
        stems: list[tuple[Item, StemWork, list[_Pending]]] = []
        for item in batch.items:
            skipped = self._skip_locked(item)
            if skipped:
                self._add(batch.batch_no, item, skipped)
                continue
            if job.kind == Job.Kind.CONVERT and is_stem(item.question.mathml):
                planned = self._plan_stem(item, batch.batch_no, use_cache)
                if planned is not None:
                    stems.append(planned)
                continue
            pending = _Pending(item=item, batch_no=batch.batch_no)
            if job.backend == Job.Backend.HYBRID:
                started = time.perf_counter()
                result = self._rules(item)
                pending.rules_ms = (time.perf_counter() - started) * 1000
                if not needs_llm(result):
                    self._add(batch.batch_no, item, result)
                    continue
                pending.hint = result.latex
            if job.kind == Job.Kind.LABEL:
                pending.hint = item.question.latex  # formulas as LaTeX when converted
            if use_cache:
                pending.key = cache_key(
                    kind=job.kind,
                    backend=job.backend,
                    model=job.model,
                    prompt_version=job.prompt_version,
                    mathml=item.question.mathml,
                )
            to_llm.append(pending)
        hits = {}
        keys = [p.key for p in to_llm] + [p.key for _i, _w, formulas in stems for p in formulas]
        if use_cache and keys:
            # One lookup for the batch, its stems' formulas included.
            hits = cache_lookup(keys=[key for key in keys if key not in self.fresh])
            hits.update(self.fresh)
        for item, work, formulas in stems:
            self._send_stem(item, work, formulas, hits)
        for pending in to_llm:
            if pending.key in hits:
                self._add(pending.batch_no, pending.item, self._cached(pending, hits[pending.key]))
                continue
            self.in_flight[pending.key_id] = pending
            leader = self.leaders.get(pending.key) if use_cache else None
            if leader is not None:
                leader.followers.append(pending)
            else:
                self._send(pending)

    def _plan_stem(
        self, item: Item, batch_no: int, use_cache: bool
    ) -> tuple[Item, StemWork, list[_Pending]] | None:
        """A stem, formula by formula: hybrid keeps what the rules converter did right;
        the other formulas are returned, with their cache keys, for _send_stem (None: the
        stem is recorded already, as unreadable)."""
        job = self.job
        work = StemWork.start(
            item_id=item.pk, question_id=item.question_id, mathml=item.question.mathml
        )
        if isinstance(work, ItemResult):
            self._add(batch_no, item, work)
            return None
        work.batch_no = batch_no
        to_llm: list[_Pending] = []
        for index, formula in enumerate(work.stem.formulas):
            pending = _Pending(item=item, batch_no=batch_no, stem=work, index=index)
            if job.backend == Job.Backend.HYBRID:
                rules, _unreadable = rules_entry(formula.mathml, formula.display)
                if entry_ok(rules):
                    work.formulas[index] = rules
                    continue
                pending.hint = rules["latex"] or ""
            if use_cache:
                pending.key = cache_key(
                    kind=job.kind,
                    backend=job.backend,
                    model=job.model,
                    prompt_version=job.prompt_version,
                    mathml=formula.mathml,
                )
            to_llm.append(pending)
        return item, work, to_llm

    def _send_stem(
        self, item: Item, work: StemWork, to_llm: list[_Pending], hits: dict[str, CachedResult]
    ) -> None:
        """A validated cache hit is used; every other formula gets its own call."""
        for pending in to_llm:
            formula = work.stem.formulas[pending.index]
            hit = hits.get(pending.key) if pending.key else None
            if hit is not None:
                cached = entry(formula.mathml, formula.display, hit.latex, Item.Route.CACHE)
                if entry_ok(cached):
                    work.formulas[pending.index] = cached
                    work.cost_saved_usd += hit.cost_usd
                    continue
            self.formula_ids += 1
            pending.work_id = -self.formula_ids
            self.in_flight[pending.work_id] = pending
            self.backlog.append(pending)
        if work.done:
            self._add(work.batch_no, item, work.result())

    def _on_formula_outcome(self, pending: _Pending, outcome: Outcome) -> None:
        work = pending.stem
        assert work is not None  # only a stem's formulas come here (_on_outcome)
        formula = work.stem.formulas[pending.index]
        call = outcome_result(
            outcome,
            item_id=pending.item.pk,
            question_id=pending.item.question_id,
            mathml=formula.mathml,
            labeling_job=False,
            prices=self.prices,
            cache_key=pending.key,
        )
        work.calls.append(call)
        if call.status == Item.Status.FAILED:
            work.formulas[pending.index] = entry(
                formula.mathml, formula.display, None, Item.Route.LLM, call.error_message
            )
        else:
            work.formulas[pending.index] = entry(
                formula.mathml, formula.display, call.latex, Item.Route.LLM
            )
            if call.cache_key and call.status == Item.Status.SUCCEEDED:
                self.fresh[call.cache_key] = call.cache_entry()
        if work.done:
            self._add(work.batch_no, pending.item, work.result())

    def _send(self, pending: _Pending) -> None:
        self.leaders[pending.key] = pending
        self.backlog.append(pending)

    def _on_outcome(self, outcome: Outcome) -> None:
        if outcome.unreachable:
            self._on_unreachable(outcome)
            return
        if outcome.api_calls and not self.endpoint_down:
            self.endpoint_answered = True
            self._release_unreachable()  # the endpoint is there: those failed on their own
        self._record_outcome(outcome)

    def _release_unreachable(self) -> None:
        held, self.unreachable = self.unreachable, []
        for earlier in held:
            self._record_outcome(earlier)

    def _settle_unreachable(self) -> None:
        """No call is left in flight to tell whether the endpoint is there: if it answered
        at all in this run, the held items failed on their own; else it is down."""
        if self.endpoint_answered:
            self._release_unreachable()
        else:
            self._endpoint_unreachable(self.unreachable[-1])

    def _on_unreachable(self, outcome: Outcome) -> None:
        """Hold back an item that could not connect; pause the job after a run of them.

        The job pauses with the reason on it and these items stay claimed, so that
        `_wrap_up` hands them back as pending: `resume` continues once the base URL,
        the network or the certificate is fixed.
        """
        if outcome.item_id not in self.in_flight:
            return
        self.unreachable.append(outcome)
        if not self.endpoint_down and len(self.unreachable) >= UNREACHABLE_TO_STOP:
            self._endpoint_unreachable(outcome)

    def _endpoint_unreachable(self, outcome: Outcome) -> None:
        self.endpoint_down = True
        reason = Message(
            gettext_noop(
                "The endpoint %(url)s could not be reached: %(error)s. %(items)s items in a "
                "row failed to connect on every call, with no answer in between, so the job "
                "is paused and its items are left pending. Check the base URL, the network "
                "or the TLS certificate, then resume the job."
            ),
            {
                "url": self.job.endpoint.base_url if self.job.endpoint else "",
                "error": outcome.error_message,
                "items": len(self.unreachable),
            },
        )
        self.log.job("endpoint unreachable: pausing the job: %s", outcome.error_message)
        services.job_pause(job=self.job, reason=reason)
        self.stop_reason = Job.Status.PAUSED

    def _record_outcome(self, outcome: Outcome) -> None:
        pending = self.in_flight.pop(outcome.item_id, None)
        if pending is None:
            return
        self._check_endpoint(outcome)
        if pending.stem is not None:
            self._on_formula_outcome(pending, outcome)
            return
        result = self._from_outcome(pending, outcome)
        self._add(pending.batch_no, pending.item, result)
        if result.cache_key and result.status == Item.Status.SUCCEEDED:
            self.fresh[result.cache_key] = result.cache_entry()
        if self.leaders.get(pending.key) is pending:
            del self.leaders[pending.key]
        followers = pending.followers
        if not followers:
            return
        if result.status == Item.Status.SUCCEEDED and pending.key:
            hit = self.fresh[pending.key]
            for follower in followers:
                self.in_flight.pop(follower.item.pk, None)
                self._add(follower.batch_no, follower.item, self._cached(follower, hit))
        else:
            # The leader failed: the next identical input gets its own call.
            leader, *rest = followers
            leader.followers = rest
            self._send(leader)
