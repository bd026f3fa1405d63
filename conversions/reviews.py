"""Review workflows: a reviewer's decision on one result, and bulk approval.

Every decision is recorded as a ReviewEvent (who, what, when, LaTeX before and
after). Approved LaTeX goes onto the Question and is locked there, so later jobs leave
it alone unless the operator explicitly asks to overwrite reviewed results (DESIGN
invariant 8).

A decision is taken with a conditional UPDATE on the item's review status: when two
reviewers open the same item, exactly one decision lands and the other gets
ReviewConflict instead of silently overwriting it.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from conversions.converters.commands import argument_problems, forbidden_commands
from conversions.models import Item, Job, Question, ReviewEvent

REVIEWABLE_STATUSES = Item.REVIEWABLE_STATUSES
OPEN_REVIEW_STATUSES = Item.OPEN_REVIEW_STATUSES
MAX_LATEX_CHARS = 20_000
BULK_CHUNK = 500
_ACCEPTING = (ReviewEvent.Action.APPROVE, ReviewEvent.Action.EDIT)


class ReviewConflict(Exception):
    """The item was decided by someone else (or is not open for review)."""


class InvalidReview(ValueError):
    """The submitted LaTeX cannot be accepted."""


def review_queue(
    *, job: Job | None = None, include_skipped: bool = False, max_score: float | None = None
) -> QuerySet[Item]:
    """Conversion results waiting for a reviewer, worst validation score first."""
    # The job filter is a subquery, not a join: with a join SQLite gives up walking the
    # (review_status, validation_score, id) index in order and sorts the whole queue.
    items = Item.objects.open_for_review(include_skipped=include_skipped).filter(
        job_id__in=Job.objects.filter(kind=Job.Kind.CONVERT).values("pk")
    )
    if job is not None:
        items = items.filter(job=job)
    if max_score is not None:
        items = items.filter(validation_score__lt=max_score)
    return items.order_by("validation_score", "id")


def item_approve(*, item: Item, user, comment: str = "") -> ReviewEvent:
    if not item.result_latex:
        # a failed stem: its formulas are written one at a time (stem_reviews.py)
        raise InvalidReview(_("There is no LaTeX to approve yet."))
    return _decide(
        item=item,
        user=user,
        action=ReviewEvent.Action.APPROVE,
        review_status=Item.ReviewStatus.APPROVED,
        latex=item.result_latex,
        comment=comment,
    )


def item_edit_approve(*, item: Item, user, latex: str, comment: str = "") -> ReviewEvent:
    if item.result_formulas is not None:
        raise InvalidReview(_("A stem is fixed one formula at a time."))
    latex = latex.strip()
    if not latex:
        raise InvalidReview(_("The LaTeX is empty."))
    if len(latex) > MAX_LATEX_CHARS:
        raise InvalidReview(
            _("The LaTeX is longer than %(max)d characters.") % {"max": MAX_LATEX_CHARS}
        )
    # A reviewer's LaTeX is untrusted like any other (DESIGN invariant 11).
    forbidden = forbidden_commands(latex)
    if forbidden:
        raise InvalidReview(
            _("The LaTeX uses %(commands)s, which may link, style or script; remove it.")
            % {"commands": ", ".join(forbidden)}
        )
    missing = argument_problems(latex)
    if missing:
        raise InvalidReview("; ".join(missing))
    if latex == item.result_latex:  # "edited" back to what the job produced
        return item_approve(item=item, user=user, comment=comment)
    return _decide(
        item=item,
        user=user,
        action=ReviewEvent.Action.EDIT,
        review_status=Item.ReviewStatus.EDITED,
        latex=latex,
        comment=comment,
    )


def item_document_edit(*, item: Item, user, document: str, comment: str = "") -> ReviewEvent:
    """Approve a stem's item with its document rendered again after a reviewer fixed one
    formula (conversions/stem_reviews.py checks that formula's LaTeX before this)."""
    return _decide(
        item=item,
        user=user,
        action=ReviewEvent.Action.EDIT,
        review_status=Item.ReviewStatus.EDITED,
        latex=document,
        comment=comment,
    )


def item_reject(*, item: Item, user, comment: str = "") -> ReviewEvent:
    return _decide(
        item=item,
        user=user,
        action=ReviewEvent.Action.REJECT,
        review_status=Item.ReviewStatus.REJECTED,
        latex="",
        comment=comment,
    )


def item_skip(*, item: Item, user) -> ReviewEvent:
    return _decide(
        item=item,
        user=user,
        action=ReviewEvent.Action.SKIP,
        review_status=Item.ReviewStatus.SKIPPED,
        latex="",
        comment="",
    )


def _decide(*, item, user, action, review_status, latex, comment) -> ReviewEvent:
    now = timezone.now()
    with transaction.atomic():
        taken = Item.objects.filter(
            Item.reviewable_q(), pk=item.pk, review_status__in=OPEN_REVIEW_STATUSES
        ).update(
            review_status=review_status,
            reviewed_latex=latex if action in _ACCEPTING else "",
            reviewed_by=user,
            reviewed_at=now,
        )
        if taken != 1:
            raise ReviewConflict(_("This result has already been reviewed."))
        question = Question.objects.select_for_update().get(pk=item.question_id)
        latex_before = question.latex
        if action in _ACCEPTING:
            _question_accept(question, latex=latex, user=user, now=now)
        elif action == ReviewEvent.Action.REJECT:
            _question_reject(question, rejected_latex=item.result_latex)
        event = ReviewEvent.objects.create(
            item_id=item.pk,
            question=question,
            user=user,
            action=action,
            latex_before=latex_before,
            latex_after=question.latex,
            comment=comment,
        )
    item.refresh_from_db()
    return event


def _question_accept(question: Question, *, latex: str, user, now) -> None:
    question.latex = latex
    question.latex_locked = True
    question.conversion_state = Question.ConversionState.APPROVED
    question.latex_accepted_by = user
    question.latex_accepted_at = now
    question.save(
        update_fields=[
            "latex",
            "latex_locked",
            "conversion_state",
            "latex_accepted_by",
            "latex_accepted_at",
            "updated_at",
        ]
    )


def _question_reject(question: Question, *, rejected_latex: str) -> None:
    # A locked question holds an earlier reviewer's decision; a rejection of another
    # job's result does not undo it. Otherwise the rejected LaTeX must not stay on the
    # question as if it were accepted.
    if question.latex_locked:
        return
    if question.latex == rejected_latex:
        question.latex = ""
    question.conversion_state = Question.ConversionState.FAILED
    question.save(update_fields=["latex", "conversion_state", "updated_at"])


def items_bulk_approve(*, items: QuerySet[Item], min_score: float, user) -> int:
    """Approve every open result in `items` whose validation score is >= min_score."""
    candidates = (
        items.filter(
            review_status=Item.ReviewStatus.UNREVIEWED,
            status__in=REVIEWABLE_STATUSES,
            validation_score__gte=min_score,
            review_formulas__isnull=True,  # a stem a reviewer is fixing is left to them
        )
        .exclude(result_latex="")
        .order_by("id")
    )
    approved = 0
    while ids := list(candidates.values_list("id", flat=True)[:BULK_CHUNK]):
        approved += _bulk_approve_chunk(ids, user=user)
    return approved


def _bulk_approve_chunk(ids: list[int], *, user) -> int:
    now = timezone.now()
    with transaction.atomic():
        Item.objects.filter(id__in=ids, review_status=Item.ReviewStatus.UNREVIEWED).update(
            review_status=Item.ReviewStatus.APPROVED,
            reviewed_latex=F("result_latex"),
            reviewed_by=user,
            reviewed_at=now,
        )
        # The rows this call changed, and no others: a reviewer deciding one of them
        # in between keeps their own decision and their own event.
        mine = list(
            Item.objects.filter(id__in=ids, reviewed_by=user, reviewed_at=now).values_list(
                "id", "question_id", "result_latex"
            )
        )
        questions = Question.objects.in_bulk([question_id for _, question_id, _ in mine])
        events = []
        for item_id, question_id, latex in mine:
            question = questions[question_id]
            events.append(
                ReviewEvent(
                    item_id=item_id,
                    question_id=question_id,
                    user=user,
                    action=ReviewEvent.Action.APPROVE,
                    latex_before=question.latex,
                    latex_after=latex,
                    comment=_("bulk approval"),
                )
            )
            question.latex = latex
            question.latex_locked = True
            question.conversion_state = Question.ConversionState.APPROVED
            question.latex_accepted_by = user
            question.latex_accepted_at = now
            question.updated_at = now
        Question.objects.bulk_update(
            questions.values(),
            [
                "latex",
                "latex_locked",
                "conversion_state",
                "latex_accepted_by",
                "latex_accepted_at",
                "updated_at",
            ],
        )
        ReviewEvent.objects.bulk_create(events)
    # Every id of the chunk has left the candidate set now (approved here or decided by
    # someone else in between), so the caller's loop always advances.
    return len(mine)
