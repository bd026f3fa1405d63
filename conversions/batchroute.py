"""Batch API mode's routing: which claimed items need requests and what each request is
(Router.plan, at submission), and what an item records from its result lines
(Router.collect, once its remote batch ended). conversions/batchapi.py drives it.

It is the realtime worker's routing (conversions/worker.py) with the requests written to
a file instead of sent: questions a reviewer locked are skipped, hybrid sends only what
the rules could not convert, cache hits and identical inputs send nothing more, a stem's
formulas are one request each ("<item id>#<n>"). What comes back goes through the same
pure steps as a realtime answer (results.outcome_result, stems.entry / StemWork): the
validation, the accounting and the cost (at the Batch API prices) do not depend on how the
request travelled. Queries only for the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from conversions import labeling
from conversions.cache import CachedResult, cache_key, cache_lookup
from conversions.converters.messages import Message
from conversions.endpoints import engine_endpoint, model_settings
from conversions.engine import batch as remote_api
from conversions.engine.capabilities import unsupported_parameter
from conversions.engine.prompts import ConversionTask
from conversions.engine.retry import InvalidInput
from conversions.engine.runner import EngineConfig
from conversions.engine.types import ErrorCategory, Outcome, WorkItem
from conversions.models import Item, Job
from conversions.pricing import Prices
from conversions.results import (
    ItemResult,
    cached_result,
    failed_result,
    needs_llm,
    outcome_result,
    rules_result,
    skipped_result,
)
from conversions.stems import StemWork, entry, entry_ok, is_stem, rules_entry
from conversions.worker import unsupported_parameter_message

# Submissions of one item, as the realtime engine's calls (EngineConfig.max_attempts);
# an unreadable answer is asked again only EngineConfig.invalid_output_retries times.
MAX_ATTEMPTS = EngineConfig.max_attempts
INVALID_OUTPUT_ATTEMPTS = 1 + EngineConfig.invalid_output_retries


@dataclass
class Request:
    custom_id: str
    line: bytes


@dataclass
class Planned:
    """A claimed item that needs requests: one for a formula, one per stem formula."""

    item: Item
    requests: list[Request]
    key: str = ""  # a bare conversion's cache key: identical inputs share one request


@dataclass
class Record:
    result: ItemResult


@dataclass
class Requeue:
    sent: bool = True  # the item's own request failed (False: it followed another's)


@dataclass
class Partial:
    """A stem some of whose formulas came back: keep them, send the others again."""

    formulas: list
    calls: list[ItemResult]


@dataclass
class Refused:
    message: str  # the endpoint refused the request itself: the job stops


class Router:
    """The realtime worker's routing (conversions/worker.py) for Batch API mode: which
    claimed items are answered here and now, which need requests (plan), and what an
    item records from its result lines (collect). Plain results.py / stems.py steps."""

    def __init__(self, *, job: Job, api_key: str, prices: Prices | None) -> None:
        self.job = job
        self.prices = prices
        self.task = (
            labeling.label_task(job.label_schema)
            if job.kind == Job.Kind.LABEL
            else ConversionTask()
        )
        self.endpoint = engine_endpoint(job=job, api_key=api_key)
        assert job.endpoint is not None  # engine_endpoint raises without one
        row = model_settings(endpoint=job.endpoint, model=job.model)
        # Azure: the Global-Batch deployment; elsewhere the job's model. One per file.
        self.model = (row.batch_deployment if row else "") or job.model
        self.url = remote_api.batch_url(self.endpoint)
        self.convert = job.kind == Job.Kind.CONVERT
        self.use_cache = job.use_cache and self.convert
        self.hybrid = job.backend == Job.Backend.HYBRID

    def key(self, mathml: str) -> str:
        if not self.use_cache:
            return ""
        job = self.job
        return cache_key(
            kind=job.kind,
            backend=job.backend,
            model=job.model,
            prompt_version=job.prompt_version,
            mathml=mathml,
        )

    def request(self, custom_id: str, item: WorkItem) -> Request:
        """A request line (raises InvalidInput when the item cannot be sent)."""
        body = remote_api.request_body(
            task=self.task, endpoint=self.endpoint, item=item, model=self.model
        )
        return Request(
            custom_id, remote_api.request_line(custom_id=custom_id, url=self.url, body=body)
        )

    def work_item(self, item: Item, *, hint: str = "") -> WorkItem:
        question = item.question
        return WorkItem(
            item_id=item.pk,
            ref=question.question_id,
            mathml=question.mathml,
            text=question.text,
            hint=hint,
            batch_no=item.batch_no,
        )

    # -- plan: at submission ------------------------------------------------------------

    def plan(self, items: Sequence[Item]) -> tuple[list[ItemResult], list[Planned]]:
        """(results to record now, items that need requests), for claimed items."""
        results: list[ItemResult] = []
        bare: list[tuple[Item, str, str]] = []  # (item, hint, cache key)
        stems: list[tuple[Item, StemWork, list]] = []
        for item in items:
            question = item.question
            if question.locked_for(self.job):
                results.append(skipped_result(item_id=item.pk, question_id=item.question_id))
            elif self.convert and is_stem(question.mathml):
                work = StemWork.start(
                    item_id=item.pk, question_id=item.question_id, mathml=question.mathml
                )
                if isinstance(work, ItemResult):
                    results.append(work)
                else:
                    stems.append((item, work, self._local_entries(item, work)))
            elif self.hybrid:
                rules = rules_result(
                    item_id=item.pk, question_id=item.question_id, mathml=question.mathml
                )
                if needs_llm(rules):
                    bare.append((item, rules.latex, self.key(question.mathml)))
                else:
                    results.append(rules)
            else:
                hint = question.latex if not self.convert else ""
                bare.append((item, hint, self.key(question.mathml)))
        keys = [key for _item, _hint, key in bare if key]
        keys += [f[1] for _i, _w, local in stems for f in local if isinstance(f, tuple)]
        hits = cache_lookup(keys=keys) if keys else {}
        planned: list[Planned] = []
        for item, hint, key in bare:
            if key in hits:
                results.append(
                    cached_result(
                        item_id=item.pk,
                        question_id=item.question_id,
                        mathml=item.question.mathml,
                        hit=hits[key],
                    )
                )
                continue
            try:
                request = self.request(str(item.pk), self.work_item(item, hint=hint))
            except InvalidInput as exc:
                results.append(self._invalid(item, str(exc)))
                continue
            planned.append(Planned(item, [request], key))
        for item, work, local in stems:
            requests = self._stem_requests(item, work, local, hits)
            if work.done:
                results.append(work.result())
            else:
                planned.append(Planned(item, requests))
        return results, planned

    def _local_entries(self, item: Item, work: StemWork) -> list:
        """Per formula: a finished entry from an earlier batch or the rules (hybrid), or
        (hint, cache key) for a formula that needs the LLM unless the cache has it."""
        prior = item.result_formulas if isinstance(item.result_formulas, list) else []
        local: list = []
        for index, formula in enumerate(work.stem.formulas):
            earlier = prior[index] if index < len(prior) else None
            if (
                isinstance(earlier, dict)
                and earlier.get("latex") is not None
                and earlier.get("mathml") == formula.mathml
            ):
                local.append(earlier)  # answered before: never sent again
                continue
            hint = ""
            if self.hybrid:
                rules, _unreadable = rules_entry(formula.mathml, formula.display)
                if entry_ok(rules):
                    local.append(rules)
                    continue
                hint = rules["latex"] or ""
            local.append((hint, self.key(formula.mathml)))
        return local

    def _stem_requests(
        self, item: Item, work: StemWork, local: list, hits: dict[str, CachedResult]
    ) -> list[Request]:
        requests = []
        for index, formula in enumerate(work.stem.formulas):
            found = local[index]
            if isinstance(found, dict):
                work.formulas[index] = found
                continue
            hint, key = found
            hit = hits.get(key) if key else None
            if hit is not None:
                cached = entry(formula.mathml, formula.display, hit.latex, Item.Route.CACHE)
                if entry_ok(cached):
                    work.formulas[index] = cached
                    work.cost_saved_usd += hit.cost_usd
                    continue
            work_item = WorkItem(
                item_id=item.pk,
                ref=f"{item.question.question_id}#{index + 1}",
                mathml=formula.mathml,
                text=item.question.text,
                hint=hint,
                batch_no=item.batch_no,
            )
            try:
                requests.append(self.request(f"{item.pk}#{index + 1}", work_item))
            except InvalidInput as exc:
                work.formulas[index] = entry(
                    formula.mathml, formula.display, None, Item.Route.LLM, str(exc)
                )
        return requests

    def _invalid(self, item: Item, message: str) -> ItemResult:
        return failed_result(
            item_id=item.pk,
            question_id=item.question_id,
            category=Item.ErrorCategory.INVALID_INPUT,
            message=message,
            route=Item.Route.LLM,
            seconds=0.0,
        )

    # -- collect: once the remote batch ended -------------------------------------------

    def collect(
        self,
        item: Item,
        lines: dict[str, remote_api.LineResult],
        *,
        cancelled: bool,
        latency_s: float,
    ) -> Record | Requeue | Partial | Refused:
        """What the item records from its result lines (custom_id -> LineResult): its
        result, back to pending for a follow-up batch, a stem's answered formulas kept,
        or the endpoint's refusal. `cancelled`: the job was; nothing is sent again."""
        if self.convert and is_stem(item.question.mathml):
            return self._collect_stem(item, lines, cancelled=cancelled, latency_s=latency_s)
        outcome, retryable = self._line(lines, str(item.pk), latency_s, cancelled)
        if refused := self._refusal(outcome):
            return Refused(refused)
        if not outcome.ok and retryable and not cancelled and self._may_retry(item, outcome):
            return Requeue(sent=True)
        result = outcome_result(
            outcome,
            item_id=item.pk,
            question_id=item.question_id,
            mathml=item.question.mathml,
            labeling_job=not self.convert,
            prices=self.prices,
            batch=True,
            cache_key=self.key(item.question.mathml),
        )
        if cancelled and not outcome.ok and retryable:
            as_cancelled(result)
        return Record(result)

    def _line(
        self, lines: dict, custom_id: str, latency_s: float, cancelled: bool
    ) -> tuple[Outcome, bool]:
        found = lines.get(custom_id)
        if found is not None:
            return found.outcome, found.retryable
        # In neither file: never silently dropped; sent again like a failed request.
        missing = Outcome(
            item_id=0,
            ok=False,
            error_category=ErrorCategory.CANCELLED if cancelled else ErrorCategory.API_ERROR,
            error_message="the remote batch returned no result for this request",
            latency_s=latency_s,
            api_calls=1,
        )
        return missing, True

    def _may_retry(self, item: Item, outcome: Outcome) -> bool:
        if outcome.error_category == ErrorCategory.INVALID_OUTPUT:
            return item.attempts < INVALID_OUTPUT_ATTEMPTS
        return item.attempts < MAX_ATTEMPTS

    def _refusal(self, outcome: Outcome) -> str:
        """The message the job stops with when the endpoint refused the request itself
        (401/403/404, or a parameter the model does not take); "" otherwise."""
        param = unsupported_parameter(
            outcome.http_status, f"{outcome.error_message} {outcome.response_excerpt}"
        )
        if param is not None:
            return unsupported_parameter_message(job=self.job, param=param)
        if outcome.refused:
            return Message(
                gettext_noop("The endpoint refused the Batch API requests: %(error)s"),
                {"error": outcome.error_message},
            )
        return ""

    def _collect_stem(
        self, item: Item, lines: dict, *, cancelled: bool, latency_s: float
    ) -> Record | Partial | Refused:
        question = item.question
        work = StemWork.start(item_id=item.pk, question_id=item.question_id, mathml=question.mathml)
        if isinstance(work, ItemResult):
            return Record(work)
        local = self._local_entries(item, work)
        keys = [f[1] for i, f in enumerate(local) if isinstance(f, tuple) and f[1]]
        hits = cache_lookup(keys=keys) if keys else {}
        pending: list[int] = []
        final_failure = cut_by_cancel = False
        for index, formula in enumerate(work.stem.formulas):
            custom_id = f"{item.pk}#{index + 1}"
            found = local[index]
            if custom_id not in lines:
                if isinstance(found, dict):
                    work.formulas[index] = found
                    continue
                hit = hits.get(found[1]) if found[1] else None
                if hit is not None:
                    cached = entry(formula.mathml, formula.display, hit.latex, Item.Route.CACHE)
                    if entry_ok(cached):
                        work.formulas[index] = cached
                        work.cost_saved_usd += hit.cost_usd
                        continue
            outcome, retryable = self._line(lines, custom_id, latency_s, cancelled)
            if refused := self._refusal(outcome):
                return Refused(refused)
            call = outcome_result(
                outcome,
                item_id=item.pk,
                question_id=item.question_id,
                mathml=formula.mathml,
                labeling_job=False,
                prices=self.prices,
                batch=True,
                cache_key=found[1] if isinstance(found, tuple) else "",
            )
            work.calls.append(call)
            retry_later = not outcome.ok and retryable
            if retry_later and not cancelled and self._may_retry(item, outcome):
                pending.append(index)
                continue
            cut_by_cancel = cut_by_cancel or (retry_later and cancelled)
            if call.status == Item.Status.FAILED:
                final_failure = True
                work.formulas[index] = entry(
                    formula.mathml, formula.display, None, Item.Route.LLM, call.error_message
                )
            else:
                work.formulas[index] = entry(
                    formula.mathml, formula.display, call.latex, Item.Route.LLM
                )
        if pending and not final_failure:
            return Partial(formulas=list(work.formulas), calls=work.calls)
        for index in pending:  # another formula failed for good: the item fails now
            formula = work.stem.formulas[index]
            work.formulas[index] = entry(
                formula.mathml,
                formula.display,
                None,
                Item.Route.LLM,
                _("not sent again: another formula of the stem failed"),
            )
        result = work.result()
        if cut_by_cancel:
            as_cancelled(result)
        return Record(result)


def as_cancelled(result: ItemResult) -> None:
    """A result whose request the cancel left unanswered: cancelled, what it cost kept."""
    result.status = Item.Status.CANCELLED
    result.error_category = Item.ErrorCategory.CANCELLED
    result.error_message = Message(gettext_noop("The job was cancelled before this item finished."))
    result.latex = ""
