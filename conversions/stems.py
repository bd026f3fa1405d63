"""Whole question stems through a job: one result per formula, one document per item.

A Question whose `mathml` is a stem (HTML or text with formulas: converters.is_document)
is converted formula by formula. Each formula is converted, validated and accounted for
on its own (results.checked), by the rules converter, the cache or the LLM; the item's
result is the stem with every formula written back (Stem.render: `\\(...\\)` inline,
`\\[...\\]` for display="block") plus one entry per formula, stored in
Item.result_formulas and Question.formulas:

    {"mathml": str, "display": bool, "latex": str | None, "error": Reason | None,
     "score": float | None, "reasons": [Reason], "route": "rules" | "llm" | "cache"}

"error" and "reasons" are stored language-neutrally (converters/messages.py: a Reason is
a message id with its params, or plain text in entries from before issue 12) and shown
in the reader's language (stem_reviews.stem_payload).

The item succeeds only when every formula does; a formula that validated low makes the
item needs_review (the document is still rendered, for the reviewer); a formula with no
LaTeX at all makes it failed, with the failed formulas named ("formula 2/3: ...", "수식
2/3: ..." in Korean).
Plain functions over plain data, like conversions/results.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.utils.translation import gettext_noop

from conversions.converters import ConversionError, Stem, is_document, split_document
from conversions.converters.document import formula_reason, unreadable_document
from conversions.converters.errors import InvalidMathML
from conversions.converters.evidence import trusted_author_latex
from conversions.converters.mathml import mathml_to_latex
from conversions.converters.messages import Message, joined, message_data
from conversions.models import Item
from conversions.results import ItemResult, checked, rules_refusal


def is_stem(mathml: str) -> bool:
    """The rule for what is converted as a document: converters.is_document, except for
    XML documents (an XML declaration or DOCTYPE first), which are one formula's MathML
    and get the MathML parser's checks and messages."""
    if mathml.lstrip().startswith(("<?", "<!")):
        return False
    return is_document(mathml)


def entry(
    mathml: str, display: bool, latex: str | None, route: str, error: str | None = None
) -> dict:
    """One formula's result, ready to store as JSON; LaTeX is validated and accounted for
    against its MathML. `error` (why there is no LaTeX) a Message or plain text."""
    if latex is None:
        return {
            "mathml": mathml,
            "display": display,
            "latex": None,
            "error": message_data(error) if error else "",
            "score": None,
            "reasons": [],
            "route": route,
        }
    ok, score, reasons = checked(mathml, latex)
    problem = joined(reasons) if reasons else Message(gettext_noop("validation failed"))
    return {
        "mathml": mathml,
        "display": display,
        "latex": latex,
        "error": None if ok else message_data(problem),
        "score": score,
        "reasons": message_data(reasons),
        "route": route,
    }


def entry_ok(formula: dict) -> bool:
    return formula["latex"] is not None and not formula["error"]


def rules_entry(mathml: str, display: bool) -> tuple[dict, bool]:
    """The rules converter on one formula: (entry, whether the input itself is unreadable).

    Where the converter's LaTeX fails the checks, the author's LaTeX shipped with the
    formula (converters.evidence) is used instead if it passes them."""
    try:
        latex = mathml_to_latex(mathml)
    except ConversionError as exc:
        return entry(mathml, display, None, Item.Route.RULES, rules_refusal(exc)), isinstance(
            exc, InvalidMathML
        )
    result = entry(mathml, display, latex, Item.Route.RULES)
    if not entry_ok(result):
        # the author's LaTeX shipped with the formula, where it passes every check
        author = trusted_author_latex(mathml)
        if author is not None and author != latex:
            result = entry(mathml, display, author, Item.Route.RULES)
    return result, False


def render(stem: Stem, formulas: list[dict]) -> str:
    """The stem with each formula's LaTeX put back (an entry without LaTeX is empty)."""
    return stem.render([f["latex"] or "" for f in formulas])


@dataclass
class StemWork:
    """A stem item on its way through a job: its formulas' entries, filled as they come."""

    item_id: int
    question_id: int
    stem: Stem
    formulas: list[dict | None] = field(default_factory=list)
    unreadable: bool = False  # a formula's MathML could not be read at all
    calls: list[ItemResult] = field(default_factory=list)  # the LLM calls' results
    cost_saved_usd: Decimal = Decimal("0")  # what the cache hits saved
    batch_no: int = 0

    @classmethod
    def start(cls, *, item_id: int, question_id: int, mathml: str) -> StemWork | ItemResult:
        """Split the stem; an unreadable one is a failed result straight away."""
        try:
            stem = split_document(mathml)
        except Exception as exc:  # lxml raises several types on markup it cannot read
            return ItemResult(
                item_id=item_id,
                question_id=question_id,
                status=Item.Status.FAILED,
                error_category=Item.ErrorCategory.INVALID_INPUT,
                error_message=unreadable_document(exc),
            )
        return cls(item_id, question_id, stem, [None] * len(stem.formulas))

    @property
    def done(self) -> bool:
        return all(f is not None for f in self.formulas)

    def result(self) -> ItemResult:
        """The item's result once every formula has an entry (see the module docstring)."""
        formulas = [f for f in self.formulas if f is not None]
        count = len(formulas)
        routes = {f["route"] for f in formulas}
        route = (
            Item.Route.LLM
            if Item.Route.LLM in routes
            else Item.Route.CACHE
            if routes == {Item.Route.CACHE}
            else Item.Route.RULES
        )
        scores = [f["score"] for f in formulas if f["score"] is not None]
        reasons = [
            formula_reason(i, count, reason)
            for i, f in enumerate(formulas)
            for reason in (f["reasons"] or ([f["error"]] if f["error"] else []))
        ]
        result = ItemResult(
            item_id=self.item_id,
            question_id=self.question_id,
            status=Item.Status.SUCCEEDED,
            route=route,
            formulas=formulas,
            validation_score=min(scores) if scores else (1.0 if not count else None),
            validation_reasons=reasons,
            cached=bool(count) and routes == {Item.Route.CACHE},
        )
        result.cost_saved_usd = self.cost_saved_usd
        for call in self.calls:
            result.tokens_in += call.tokens_in
            result.tokens_out += call.tokens_out
            result.tokens_cached += call.tokens_cached
            result.cost_usd += call.cost_usd
            result.prompt_cache_saved_usd += call.prompt_cache_saved_usd
            result.api_calls += call.api_calls
            result.retries += call.retries
            result.refused = result.refused or call.refused
            result.latency_ms = max(result.latency_ms or 0, call.latency_ms or 0)
            result.request_excerpt = result.request_excerpt or call.request_excerpt
            result.response_excerpt = result.response_excerpt or call.response_excerpt
            if call.cache_key and call.status == Item.Status.SUCCEEDED:
                result.more_cache.append(call.cache_entry())
        missing = [i for i, f in enumerate(formulas) if f["latex"] is None]
        if missing:
            result.status = Item.Status.FAILED
            result.error_category = (
                Item.ErrorCategory.INVALID_INPUT
                if self.unreadable
                else Item.ErrorCategory.INVALID_OUTPUT
            )
            result.error_message = joined(
                [formula_reason(i, count, formulas[i]["error"]) for i in missing]
            )
            return result
        result.latex = render(self.stem, formulas)
        bad = [i for i, f in enumerate(formulas) if not entry_ok(f)]
        if bad:
            result.status = Item.Status.NEEDS_REVIEW
            result.error_category = Item.ErrorCategory.VALIDATION_FAILED
            result.error_message = joined(
                [formula_reason(i, count, formulas[i]["error"]) for i in bad]
            )
        return result


def rules_stem_result(*, item_id: int, question_id: int, mathml: str) -> ItemResult:
    """A stem converted with the rules converter alone (the rules backend)."""
    work = StemWork.start(item_id=item_id, question_id=question_id, mathml=mathml)
    if isinstance(work, ItemResult):
        return work
    for i, formula in enumerate(work.stem.formulas):
        work.formulas[i], unreadable = rules_entry(formula.mathml, formula.display)
        work.unreadable = work.unreadable or unreadable
    return work.result()
