"""Reviewing a whole question stem: both drawings of it, and a fix to one formula.

A stem's item (conversions/stems.py) holds one entry per formula. The review page shows
the source stem (sanitised HTML with its MathML, drawn by the browser) next to the
converted stem (sanitised HTML whose `\\(...\\)` / `\\[...\\]` MathLive's
renderMathInElement draws), and a reviewer fixes one formula at a time:
`item_formula_edit` checks the new LaTeX like any reviewer's LaTeX (forbidden commands,
missing arguments), validates it against that formula's MathML, renders the stem again
and approves the item with it (a ReviewEvent "edit"); Question.formulas keeps the
entries with the fixed one marked route "review".
"""

from __future__ import annotations

import nh3
from django.conf import settings
from django.utils.translation import gettext as _

from conversions import reviews
from conversions.converters import split_document
from conversions.converters.commands import argument_problems, forbidden_commands
from conversions.converters.document import ALLOWED_ATTRIBUTES, ALLOWED_TAGS
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


def stem_payload(item: Item) -> dict | None:
    """What the review page needs for a stem's item, None for a bare formula's."""
    question = item.question
    formulas = item.result_formulas
    if formulas is None:
        if not is_stem(question.mathml):
            return None
        formulas = []
    return {
        "source_html": stem_source_html(question.mathml),
        "result_html": stem_result_html(item.result_latex),
        "formulas": [
            {
                "latex": f.get("latex") or "",
                "display": bool(f.get("display")),
                "error": f.get("error") or "",
                "score": f.get("score"),
                "reasons": [str(r) for r in f.get("reasons") or []][:10],
            }
            for f in formulas
        ],
    }


def item_formula_edit(
    *, item: Item, user, index: object, latex: str, comment: str = ""
) -> ReviewEvent:
    """Fix formula `index` (0-based) of a stem's item and approve the stem rendered again.

    Raises reviews.InvalidReview for a bad index, empty or too long LaTeX, a forbidden
    command or a missing argument, or while another formula still has no LaTeX;
    reviews.ReviewConflict when the item was reviewed meanwhile.
    """
    formulas = list(item.result_formulas or [])
    if not isinstance(index, int) or not 0 <= index < len(formulas):
        raise reviews.InvalidReview(_("There is no such formula in this stem."))
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
    old = formulas[index]
    formulas[index] = entry(old["mathml"], bool(old.get("display")), latex, REVIEW_ROUTE)
    empty = [str(i + 1) for i, f in enumerate(formulas) if f.get("latex") is None]
    if empty:
        raise reviews.InvalidReview(
            _("Formula(s) %(numbers)s of this stem have no LaTeX yet; fix them first.")
            % {"numbers": ", ".join(empty)}
        )
    stem = split_document(item.question.mathml)
    document = render(stem, formulas)
    event = reviews.item_document_edit(item=item, user=user, document=document, comment=comment)
    # The item keeps what the job produced; the question keeps what was accepted.
    Question.objects.filter(pk=item.question_id).update(formulas=formulas)
    return event
