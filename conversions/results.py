"""The pure step from what a backend produced to what an item records.

Plain functions over plain data: no query, no clock but the one passed in, so tests call
them without a database. The worker (conversions/worker.py) calls them for every item and
hands the ItemResults to services.outcomes_record.

Reasons and error messages are Messages (converters/messages.py): text in the worker's
language that keeps its language-neutral form, which services.outcomes_record stores so
that each reader sees them in their own language.

- rules_result: the deterministic converter's LaTeX, validated (or a failure);
- outcome_result: an engine Outcome (conversion or labeling), validated, with its cost;
- cached_result: an earlier validated result for the same input (no call);
- skipped_result: the question's LaTeX is locked by a reviewer;
- needs_llm: the hybrid routing decision (rules first, the LLM for the rest).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.utils.translation import gettext_noop

from conversions import labeling
from conversions.cache import CachedResult
from conversions.converters import ConversionError, account, mathml_to_latex, validate
from conversions.converters.errors import InvalidMathML
from conversions.converters.evidence import trusted_author_latex
from conversions.converters.messages import Message, joined
from conversions.engine.types import Outcome
from conversions.models import Item
from conversions.pricing import Prices, cost


@dataclass
class ItemResult:
    """What a worker computed for one claimed item; services.outcomes_record writes it."""

    item_id: int
    question_id: int
    status: str
    latex: str = ""
    labels: dict | None = None
    route: str = ""
    cached: bool = False
    validation_score: float | None = None
    validation_reasons: list = field(default_factory=list)  # Messages or plain text
    error_category: str = ""
    error_message: str = ""  # a Message, or plain text (an API's words)
    latency_ms: int | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0  # of tokens_in, from the provider's prompt cache
    cost_usd: Decimal = Decimal("0")
    cost_saved_usd: Decimal = Decimal("0")
    prompt_cache_saved_usd: Decimal = Decimal("0")  # cached tokens at the cached price
    api_calls: int = 0
    retries: int = 0
    request_excerpt: str = ""
    response_excerpt: str = ""
    cache_key: str = ""  # set on fresh results to store, and on cache hits to count
    finished_at: datetime | None = None  # when the result came back (default: when written)
    refused: bool = False  # the endpoint refused the call (401/403/404): not stored
    formulas: list | None = None  # a stem's per-formula entries (conversions/stems.py)
    more_cache: list = field(default_factory=list)  # a stem's formulas' CachedResults to store

    def cache_entry(self) -> CachedResult:
        return CachedResult(
            key=self.cache_key,
            latex=self.latex,
            validation_score=self.validation_score,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=self.cost_usd,
        )


def checked(mathml: str, latex: str) -> tuple[bool, float, list[str]]:
    """(ok, score 0..1, reasons) for LaTeX against its MathML: the validator's verdict and
    the no-silent-loss check (converters.account) together; ok needs both. The reasons
    are Messages."""
    check = validate(mathml, latex)
    lost = account(mathml, latex)
    reasons = list(check.reasons)
    reasons += [r for r in lost if r not in reasons]
    return bool(check.ok) and not lost, float(check.score), reasons


def validated_result(
    *, item_id: int, question_id: int, mathml: str, latex: str, route: str
) -> ItemResult:
    """LaTeX checked against its MathML: succeeded, or needs review with the reasons.

    Every backend's LaTeX goes through here (rules, openai, hybrid, cache hits), so the
    no-silent-loss check (converters.account: every character the source draws is drawn)
    holds for all of them: anything unaccounted for is validation_failed with one reason
    per lost item, whatever the validator's score.
    """
    ok, score, reasons = checked(mathml, latex)
    problem = (
        joined(reasons)
        if reasons
        else Message(
            gettext_noop("validation score %(score)s is below the threshold"),
            {"score": f"{score:.2f}"},
        )
    )
    return ItemResult(
        item_id=item_id,
        question_id=question_id,
        status=Item.Status.SUCCEEDED if ok else Item.Status.NEEDS_REVIEW,
        latex=latex,
        route=route,
        validation_score=score,
        validation_reasons=reasons,
        error_category="" if ok else Item.ErrorCategory.VALIDATION_FAILED,
        error_message="" if ok else problem,
    )


def failed_result(
    *, item_id: int, question_id: int, category: str, message: str, route: str, seconds: float
) -> ItemResult:
    return ItemResult(
        item_id=item_id,
        question_id=question_id,
        status=Item.Status.FAILED,
        route=route,
        error_category=category,
        error_message=message,
        latency_ms=round(seconds * 1000),
    )


def skipped_result(*, item_id: int, question_id: int) -> ItemResult:
    """The result of an item whose question's LaTeX a reviewer locked (Question.locked_for)."""
    return ItemResult(
        item_id=item_id,
        question_id=question_id,
        status=Item.Status.SKIPPED,
        error_message=Message(gettext_noop("the question's LaTeX is locked by review")),
    )


def rules_refusal(exc: ConversionError) -> Message:
    """Why the rules converter gave no LaTeX: "rules: " and the converter's reason."""
    return Message(gettext_noop("rules: %(reason)s"), {"reason": exc})


def rules_result(*, item_id: int, question_id: int, mathml: str) -> ItemResult:
    """Convert with the deterministic converter and validate; latency_ms is the whole step.

    Unreadable MathML fails as invalid_input, a converter gap as invalid_output. Where
    the converter's LaTeX fails the checks (or it refuses: mathml_to_latex), the author's
    LaTeX shipped with the formula (a TeX annotation, MathJax's data-latex) is used if it
    passes them (converters.evidence); a stale one is ignored.
    """
    started = time.perf_counter()
    try:
        latex = mathml_to_latex(mathml)
    except ConversionError as exc:
        category = (
            Item.ErrorCategory.INVALID_INPUT
            if isinstance(exc, InvalidMathML)
            else Item.ErrorCategory.INVALID_OUTPUT
        )
        return failed_result(
            item_id=item_id,
            question_id=question_id,
            category=category,
            message=rules_refusal(exc),
            route=Item.Route.RULES,
            seconds=time.perf_counter() - started,
        )
    result = validated_result(
        item_id=item_id, question_id=question_id, mathml=mathml, latex=latex, route=Item.Route.RULES
    )
    if result.status != Item.Status.SUCCEEDED:
        # the author's LaTeX shipped with the formula, where it passes every check
        author = trusted_author_latex(mathml)
        if author is not None and author != latex:
            result = validated_result(
                item_id=item_id,
                question_id=question_id,
                mathml=mathml,
                latex=author,
                route=Item.Route.RULES,
            )
    result.latency_ms = round((time.perf_counter() - started) * 1000)
    return result


def needs_llm(rules: ItemResult) -> bool:
    """Hybrid routing: only a rules result that did not validate goes on to the LLM (with
    the rules LaTeX as a hint); a validated one is final."""
    return rules.status != Item.Status.SUCCEEDED


def cached_result(*, item_id: int, question_id: int, mathml: str, hit: CachedResult) -> ItemResult:
    """An earlier result for the same input, validated again against this item's MathML.

    cost_saved_usd is what the call that produced it cost.
    """
    result = validated_result(
        item_id=item_id,
        question_id=question_id,
        mathml=mathml,
        latex=hit.latex,
        route=Item.Route.CACHE,
    )
    result.cached = True
    result.cache_key = hit.key
    result.cost_saved_usd = hit.cost_usd
    return result


def call_cost(
    prices: Prices | None, tokens_in: int, tokens_out: int, tokens_cached: int = 0
) -> Decimal:
    """USD for these tokens at these prices (cached ones at the cached-input price), to
    the micro-dollar; 0 with no prices (conversions/pricing.py)."""
    return (
        cost(prices, tokens_in=tokens_in, tokens_out=tokens_out, tokens_cached=tokens_cached)
        .quantized()
        .usd
    )


def outcome_result(
    outcome: Outcome,
    *,
    item_id: int,
    question_id: int,
    mathml: str,
    labeling_job: bool,
    prices: Prices | None,
    batch: bool = False,
    cache_key: str = "",
    rules_ms: float = 0.0,
) -> ItemResult:
    """What an engine Outcome means for its item: validated LaTeX, labels, or a failure.

    latency_ms adds the rules step that came before the call (hybrid), cost_usd the
    tokens at `prices` (cached input at the cached price, pricing.cost; a Batch API
    answer, batch=True: the Batch API prices) and prompt_cache_saved_usd what the cached
    ones saved; cache_key is kept on a succeeded conversion so it gets stored. Realtime
    and Batch API answers both come here.
    """
    if labeling_job:
        result = ItemResult(
            item_id=item_id,
            question_id=question_id,
            route=Item.Route.LLM,
            **labeling.label_result_fields(outcome),
        )
    elif outcome.ok:
        assert outcome.value is not None  # an ok outcome carries its answer
        result = validated_result(
            item_id=item_id,
            question_id=question_id,
            mathml=mathml,
            latex=outcome.value["latex"],
            route=Item.Route.LLM,
        )
        if result.status == Item.Status.SUCCEEDED:
            result.cache_key = cache_key
    else:
        result = failed_result(
            item_id=item_id,
            question_id=question_id,
            category=str(outcome.error_category),
            message=outcome.error_message,
            route=Item.Route.LLM,
            seconds=0.0,
        )
    result.refused = outcome.refused
    result.latency_ms = round(outcome.latency_s * 1000 + rules_ms)
    result.tokens_in = outcome.tokens_in
    result.tokens_out = outcome.tokens_out
    result.tokens_cached = outcome.tokens_cached
    priced = cost(
        prices,
        tokens_in=outcome.tokens_in,
        tokens_out=outcome.tokens_out,
        tokens_cached=outcome.tokens_cached,
        batch=batch,
    ).quantized()
    result.cost_usd = priced.usd
    result.prompt_cache_saved_usd = priced.saved_usd
    result.api_calls = outcome.api_calls
    result.retries = outcome.retries
    result.request_excerpt = outcome.request_excerpt
    result.response_excerpt = outcome.response_excerpt
    return result
