"""Reviewing a whole question stem: both drawings of it, and fixes one formula at a time.

A stem's item (conversions/stems.py) holds one entry per formula. The review page shows
the source stem (sanitised HTML with its MathML, drawn by the browser) next to the
converted stem (sanitised HTML whose `\\(...\\)` / `\\[...\\]` MathLive's
renderMathInElement draws), and a reviewer fixes one formula at a time:
`item_formula_edit` checks the new LaTeX like any reviewer's LaTeX (forbidden commands,
missing arguments) and validates it against that formula's MathML. The fixes collect in
Item.review_formulas (a ReviewEvent "formula" each) while other formulas are still
unresolved; the fix that resolves the last one renders the stem and approves the item
with it (a ReviewEvent "edit"), and Question.formulas keeps the entries with the fixed
ones marked route "review". A formula is resolved when it has LaTeX that passed the
checks or that a reviewer wrote (a reviewer's word overrides the validator's).

A failed stem (formulas the job could not write at all) is reviewable the same way, so
a stem with several failed formulas is never stuck: fix formula 1, then formula 2.
"""

from __future__ import annotations

import contextlib

import nh3
from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from conversions import reviews
from conversions.converters import split_document
from conversions.converters.commands import argument_problems, forbidden_commands
from conversions.converters.document import ALLOWED_ATTRIBUTES, ALLOWED_TAGS
from conversions.converters.messages import render as render_reason
from conversions.models import Item, Question, ReviewEvent
from conversions.sanitize import DROPPED_WITH_CONTENT, MATHML_ATTRIBUTES, MATHML_TAGS
from conversions.stems import entry, is_stem, render

REVIEW_ROUTE = "review"


def _clean(text: str, *, mathml: bool) -> str:
    tags = set(ALLOWED_TAGS) | (set(MATHML_TAGS) if mathml else set())
    attributes = {tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()}
    if mathml:
        attributes["*"] = set(MATHML_ATTRIBUTES)
    return nh3.clean(
        text,
        tags=tags,
        attributes=attributes,
        clean_content_tags=set(DROPPED_WITH_CONTENT) | {"textarea", "title"},
        url_schemes={"http", "https", "data"},
        link_rel=None,
        strip_comments=True,
    )


def stem_source_html(text: str) -> str:
    """The source stem as safe HTML with native MathML ('' when too big to show)."""
    if not text or len(text.encode()) > settings.MATHCONV_MAX_MATHML_BYTES:
        return ""
    return _clean(text, mathml=True)


def stem_result_html(document: str) -> str:
    """The converted stem as safe HTML; its LaTeX stays text for renderMathInElement."""
    return _clean(document or "", mathml=False)


def resolved(formula: dict) -> bool:
    """A formula needs no more review: LaTeX that passed the checks, or a reviewer's."""
    if formula.get("latex") is None:
        return False
    return formula.get("route") == REVIEW_ROUTE or not formula.get("error")


def current_formulas(item: Item) -> list[dict]:
    """A stem item's formulas with the reviewer's fixes so far."""
    return list(item.review_formulas or item.result_formulas or [])


def stem_payload(item: Item) -> dict | None:
    """What the review page needs for a stem's item, None for a bare formula's."""
    question = item.question
    formulas = current_formulas(item)
    if item.result_formulas is None and not is_stem(question.mathml):
        return None
    document = item.result_latex
    if item.review_formulas is not None or not document:
        # the stem as it stands with the fixes so far (a missing formula drawn empty)
        # (ValueError: the formulas no longer match the question's stem; keep the job's)
        with contextlib.suppress(ValueError):
            document = render(split_document(question.mathml), formulas)
    return {
        "source_html": stem_source_html(question.mathml),
        "result_html": stem_result_html(document),
        "formulas": [
            {
                "latex": f.get("latex") or "",
                "display": bool(f.get("display")),
                # stored language-neutrally, shown in the request's language (issue 12)
                "error": render_reason(f.get("error") or ""),
                "score": f.get("score"),
                "reasons": [render_reason(r) for r in f.get("reasons") or []][:10],
                "resolved": resolved(f),
                "fixed": f.get("route") == REVIEW_ROUTE,
            }
            for f in formulas
        ],
    }


def _missing(formulas: list[dict]) -> list[str]:
    return [str(i + 1) for i, f in enumerate(formulas) if f.get("latex") is None]


def item_formula_edit(
    *, item: Item, user, index: object, latex: str, comment: str = ""
) -> ReviewEvent:
    """Fix formula `index` (0-based) of a stem's item.

    While another formula is unresolved the fix is kept on the item (Item.review_formulas,
    a ReviewEvent "formula") and the item stays open; the fix that resolves the last
    formula renders the stem again and approves the item with it (a ReviewEvent "edit").
    Raises reviews.InvalidReview for a bad index, empty or too long LaTeX, a forbidden
    command or a missing argument; reviews.ReviewConflict when the item was decided (or
    run again) meanwhile.
    """
    latex = (latex or "").strip()
    if not latex:
        raise reviews.InvalidReview(_("The LaTeX is empty."))
    if len(latex) > reviews.MAX_LATEX_CHARS:
        raise reviews.InvalidReview(
            _("The LaTeX is longer than %(max)d characters.") % {"max": reviews.MAX_LATEX_CHARS}
        )
    forbidden = forbidden_commands(latex)
    if forbidden:
        raise reviews.InvalidReview(
            _("The LaTeX uses %(commands)s, which may link, style or script; remove it.")
            % {"commands": ", ".join(forbidden)}
        )
    missing = argument_problems(latex)
    if missing:
        raise reviews.InvalidReview("; ".join(missing))
    with transaction.atomic():
        # One reviewer's fix at a time on this item: a second one reads the first's.
        locked = Item.objects.select_for_update().filter(pk=item.pk).first()
        if locked is None or not locked.can_review:
            raise reviews.ReviewConflict(_("This result has already been reviewed."))
        if locked.result_formulas is None:
            raise reviews.InvalidReview(_("There is no such formula in this stem."))
        formulas = current_formulas(locked)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(formulas):
            raise reviews.InvalidReview(_("There is no such formula in this stem."))
        old = formulas[index]
        formulas[index] = entry(old["mathml"], bool(old.get("display")), latex, REVIEW_ROUTE)
        Item.objects.filter(pk=item.pk).update(review_formulas=formulas)
        if not all(resolved(f) for f in formulas):
            return ReviewEvent.objects.create(
                item_id=item.pk,
                question_id=item.question_id,
                user=user,
                action=ReviewEvent.Action.FORMULA,
                latex_before=old.get("latex") or "",
                latex_after=latex,
                comment=_("formula %(number)d of %(count)d")
                % {
                    "number": index + 1,
                    "count": len(formulas),
                }
                + (f": {comment}" if comment else ""),
            )
        return _approve_stem(item=item, user=user, formulas=formulas, comment=comment)


def item_approve(*, item: Item, user, comment: str = "") -> ReviewEvent:
    """Approve an item. A stem with fixes saved so far is approved as it stands with them
    (its unresolved formulas as the job wrote them); one with formulas that have no
    LaTeX raises reviews.InvalidReview naming them."""
    if item.result_formulas is None:
        return reviews.item_approve(item=item, user=user, comment=comment)
    formulas = current_formulas(item)
    empty = _missing(formulas)
    if empty:
        raise reviews.InvalidReview(
            _("Formula(s) %(numbers)s of this stem have no LaTeX yet; fix them first.")
            % {"numbers": ", ".join(empty)}
        )
    if item.review_formulas is None:
        return reviews.item_approve(item=item, user=user, comment=comment)
    return _approve_stem(item=item, user=user, formulas=formulas, comment=comment)


def _approve_stem(*, item: Item, user, formulas: list[dict], comment: str) -> ReviewEvent:
    """Render the stem with `formulas` (each with LaTeX) and approve the item with it."""
    document = render(split_document(item.question.mathml), formulas)
    event = reviews.item_document_edit(item=item, user=user, document=document, comment=comment)
    # The item keeps what the job produced; the question keeps what was accepted.
    Question.objects.filter(pk=item.question_id).update(formulas=formulas)
    return event
