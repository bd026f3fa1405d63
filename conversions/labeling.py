"""Labeling on the Django side: schemas, storing labels, reviewer corrections, CSV columns.

The engine part (the strict JSON schema of a request and the check of an answer) is in
conversions/engine/labeling.py and works on plain data; this module turns LabelSchema
rows into that data and writes what comes back. Model output (Question.labels, with its
provenance in Question.labels_meta) and reviewer corrections (Question.labels_corrected,
Item.reviewed_labels) are kept apart: a later job rewrites the first, never the second,
unless the operator asks for it (job.overwrite_reviewed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TypeGuard, TypeVar

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from conversions.engine.labeling import (
    FIELD_TYPES,
    InvalidLabels,
    LabelSpec,
    LabelTask,
    check_labels,
)
from conversions.engine.types import Outcome
from conversions.models import Item, Job, LabelSchema, Question, ReviewEvent
from conversions.rowwrite import rows_update

DEFAULT_SCHEMA_NAME = "default"
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
# "title" is the field's display name on the review form (the name is its key in the
# JSON answer and the CSV column label_<name>, so it stays ASCII).
FIELD_KEYS = {
    "choice": {"name", "title", "type", "choices", "description"},
    "integer": {"name", "title", "type", "min", "max", "description"},
    "keywords": {"name", "title", "type", "max_items", "description"},
    "text": {"name", "title", "type", "description"},
}
MAX_CHOICES = 500
MAX_CHOICE_CHARS = 100


# --- schemas ---------------------------------------------------------------------------


def label_fields_errors(fields: object) -> list[str]:
    """Everything wrong with a schema's fields JSON, readable; [] when it is usable."""
    if not isinstance(fields, list) or not fields:
        return [_("Fields must be a non-empty JSON list of field objects.")]
    errors: list[str] = []
    seen: set[str] = set()
    for number, field in enumerate(fields, start=1):
        where = _("Field %(n)d") % {"n": number}
        if not isinstance(field, dict):
            errors.append(_("%(where)s is not a JSON object.") % {"where": where})
            continue
        name = field.get("name")
        if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
            errors.append(
                _("%(where)s: name must be lower-case letters, digits and _ (max 40).")
                % {"where": where}
            )
        elif name in seen:
            errors.append(
                _("%(where)s: name %(name)r is used twice.") % {"where": where, "name": name}
            )
        else:
            seen.add(name)
            where = f"{where} ({name})"
        kind = field.get("type")
        if kind not in FIELD_TYPES:
            errors.append(
                _("%(where)s: type must be one of %(types)s.")
                % {"where": where, "types": ", ".join(FIELD_TYPES)}
            )
            continue
        unknown = sorted(set(field) - FIELD_KEYS[kind])
        if unknown:
            errors.append(
                _("%(where)s: unknown keys for a %(type)s field: %(keys)s.")
                % {"where": where, "type": kind, "keys": ", ".join(unknown)}
            )
        if "title" in field and not isinstance(field["title"], str):
            errors.append(_("%(where)s: title must be text.") % {"where": where})
        if "description" in field and not isinstance(field["description"], str):
            errors.append(_("%(where)s: description must be text.") % {"where": where})
        errors += _type_errors(where, kind, field)
    return errors


def _type_errors(where: str, kind: str, field: dict) -> list[str]:
    def is_int(value: object) -> TypeGuard[int]:
        return isinstance(value, int) and not isinstance(value, bool)

    if kind == "choice":
        choices = field.get("choices")
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, str) and c.strip() for c in choices)
        ):
            return [_("%(where)s: choices must be a non-empty list of texts.") % {"where": where}]
        if len(set(choices)) != len(choices):
            return [_("%(where)s: choices contain a value twice.") % {"where": where}]
        if len(choices) > MAX_CHOICES or any(len(c) > MAX_CHOICE_CHARS for c in choices):
            return [
                _("%(where)s: at most %(n)d choices of at most %(chars)d characters.")
                % {"where": where, "n": MAX_CHOICES, "chars": MAX_CHOICE_CHARS}
            ]
    if kind == "integer":
        low, high = field.get("min"), field.get("max")
        if not is_int(low) or not is_int(high) or low > high:
            return [
                _("%(where)s: min and max must be whole numbers with min <= max.")
                % {"where": where}
            ]
    if kind == "keywords" and "max_items" in field:
        max_items = field["max_items"]
        if not is_int(max_items) or not 1 <= max_items <= 50:
            return [
                _("%(where)s: max_items must be a whole number from 1 to 50.") % {"where": where}
            ]
    return []


def validate_label_fields(fields: object) -> None:
    errors = label_fields_errors(fields)
    if errors:
        raise ValidationError(errors)


def label_spec(schema: LabelSchema) -> LabelSpec:
    return LabelSpec(
        name=schema.name,
        version=schema.version,
        instructions=schema.instructions,
        fields=tuple(schema.fields),
    )


def label_task(schema: LabelSchema | None) -> LabelTask:
    """The engine task for a labeling job on this schema (validated before it runs).

    A labeling job always has a schema (job_create refuses one without): None is a bug.
    """
    if schema is None:
        raise ValueError("a labeling job without a label schema")
    validate_label_fields(schema.fields)
    return LabelTask(label_spec(schema))


def label_schema_get(name: str = DEFAULT_SCHEMA_NAME) -> LabelSchema:
    try:
        return LabelSchema.objects.get(name=name)
    except LabelSchema.DoesNotExist:
        known = ", ".join(LabelSchema.objects.values_list("name", flat=True)) or "-"
        raise ValidationError(
            _("There is no label schema %(name)r (known: %(known)s).")
            % {"name": name, "known": known}
        ) from None


def label_schema_save(*, schema: LabelSchema, changed: Iterable[str] = ()) -> LabelSchema:
    """Save an edited schema; new instructions or fields make a new version.

    Labels record the schema version they were made with, so an answer made under old
    rules can be told apart from one made under the new.
    """
    validate_label_fields(schema.fields)
    if schema.pk is not None and {"instructions", "fields"} & set(changed):
        schema.version += 1
    schema.save()
    return schema


# --- storing model output ----------------------------------------------------------------


def label_result_fields(outcome: Outcome) -> dict:
    """What a labeling outcome means for its item (results.outcome_result calls this).

    Labels that passed the schema check succeed. An answer outside the schema was asked
    again once by the engine (EngineConfig.invalid_output_retries); if it is still
    invalid the item is left for review, with no labels: an invalid value is never stored.
    """
    if outcome.ok:
        return {"status": Item.Status.SUCCEEDED, "labels": outcome.value}
    category = str(outcome.error_category)
    status = (
        Item.Status.NEEDS_REVIEW
        if category == Item.ErrorCategory.INVALID_OUTPUT
        else Item.Status.FAILED
    )
    return {
        "status": status,
        "labels": None,
        "error_category": category,
        "error_message": outcome.error_message,
    }


def labels_meta(*, job: Job, item_id: int, labeled_at=None) -> dict:
    schema = job.label_schema
    return {
        "schema": schema.name if schema else "",
        "schema_version": schema.version if schema else None,
        "model": job.model,
        "prompt_version": job.prompt_version,
        "job": job.pk,
        "item": item_id,
        "labeled_at": (labeled_at or timezone.now()).isoformat(),
    }


def questions_labels_store(*, job: Job, results: Sequence[tuple[int, int, dict]]) -> int:
    """Write checked labels onto their questions: results are (question_id, item_id, labels).

    The labels must have passed check_labels (the engine's LabelTask.parse does that); a
    reviewer's correction stays and keeps winning unless job.overwrite_reviewed is set.
    """
    if not results:
        return 0
    now = timezone.now()
    by_question = {question_id: (item_id, labels) for question_id, item_id, labels in results}
    questions = list(
        Question.objects.filter(pk__in=by_question).only("id", "labels_corrected", "labels_meta")
    )
    fields = ["labels", "labels_meta", "updated_at"]
    if job.overwrite_reviewed:
        fields.append("labels_corrected")
    for question in questions:
        item_id, labels = by_question[question.pk]
        question.labels = labels
        meta = labels_meta(job=job, item_id=item_id, labeled_at=now)
        if question.labels_corrected is not None and not job.overwrite_reviewed:
            # The reviewer's labels stay in effect, and so does their credit.
            meta = {**question.labels_meta, "model_labels": meta}
        question.labels_meta = meta
        question.labels_corrected = None  # written only when the job overwrites reviews
        question.updated_at = now
    rows_update(questions, fields)  # one executemany (bulk_update: a CASE WHEN per row)
    return len(questions)


def questions_labeled(questions: QuerySet[Question], *, schema: LabelSchema) -> QuerySet[Question]:
    """The questions that already have labels from this schema, or a reviewer's labels."""
    return questions.filter(Q(labels_meta__schema=schema.name) | Q(labels_corrected__isnull=False))


_Questions = TypeVar("_Questions", bound="QuerySet[Question]")


def questions_unlabeled(questions: _Questions, *, schema: LabelSchema) -> _Questions:
    return questions.exclude(pk__in=questions_labeled(questions, schema=schema).values("pk"))


# --- review ----------------------------------------------------------------------------


def labels_checked(*, question: Question, labels: object, item: Item | None = None) -> dict:
    """A reviewer's labels checked against the schema, or ValidationError with the reason.

    The schema is the item's job's, else the one the question was labeled with, else the
    default.
    """
    schema = _schema_for(question=question, item=item)
    try:
        return check_labels(label_spec(schema), labels)
    except InvalidLabels as exc:
        raise ValidationError(
            _("The labels do not fit schema %(name)s: %(reason)s")
            % {"name": schema.name, "reason": exc}
        ) from exc


def label_review_queue(*, job: Job | None = None, include_labeled: bool = False) -> QuerySet[Item]:
    """Labeling items a reviewer has not decided yet: the flagged ones (invalid answers),
    and with include_labeled the labeled ones too, for spot checks."""
    statuses = [Item.Status.NEEDS_REVIEW]
    if include_labeled:
        statuses.append(Item.Status.SUCCEEDED)
    items = Item.objects.filter(
        job__kind=Job.Kind.LABEL, status__in=statuses, review_status=Item.ReviewStatus.UNREVIEWED
    )
    if job is not None:
        items = items.filter(job=job)
    return items.order_by("id")


def labels_correct(
    *, question: Question, labels: dict, user=None, item: Item | None = None, comment: str = ""
) -> dict:
    """Store a reviewer's labels apart from the model's, with a ReviewEvent on the item."""
    item = item or (
        Item.objects.filter(question=question, job__kind=Job.Kind.LABEL).order_by("-id").first()
    )
    checked = labels_checked(question=question, labels=labels, item=item)
    _labels_review(question, item, checked, user=user, approve=False, comment=comment)
    return checked


def labels_approve(*, item: Item, user=None, comment: str = "") -> dict:
    """Accept a labeled item's labels as they are. They become the reviewer's labels, so a
    later job does not replace them (DESIGN invariant 8)."""
    if item.status != Item.Status.SUCCEEDED or not item.result_labels:
        raise ValidationError(_("Only labels a job produced can be approved."))
    checked = labels_checked(question=item.question, labels=item.result_labels, item=item)
    _labels_review(item.question, item, checked, user=user, approve=True, comment=comment)
    return checked


def reviewer_labels_meta(meta: dict, *, user, at) -> dict:
    """labels_meta once a reviewer set the labels: credits the reviewer ("source",
    "reviewed_by", "reviewed_at"), keeps the schema, and keeps the model's provenance
    (model, prompt, job, item) apart under "model_labels"."""
    meta = dict(meta or {})
    model = meta.pop("model_labels", None) or {
        k: meta.pop(k)
        for k in ("model", "prompt_version", "job", "item", "labeled_at")
        if k in meta
    }
    for key in ("model", "prompt_version", "job", "item", "labeled_at"):
        meta.pop(key, None)
    return {
        **meta,
        "source": "reviewer",
        "reviewed_by": user.get_username() if user is not None else None,
        "reviewed_at": at.isoformat(),
        "model_labels": model,
    }


def _labels_review(question, item, labels: dict, *, user, approve: bool, comment: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        question.labels_corrected = labels
        question.labels_meta = reviewer_labels_meta(question.labels_meta, user=user, at=now)
        question.save(update_fields=["labels_corrected", "labels_meta", "updated_at"])
        if item is None:
            return
        item.reviewed_labels = labels
        item.review_status = Item.ReviewStatus.APPROVED if approve else Item.ReviewStatus.EDITED
        item.reviewed_by = user
        item.reviewed_at = now
        item.save(update_fields=["reviewed_labels", "review_status", "reviewed_by", "reviewed_at"])
        ReviewEvent.objects.create(
            item=item,
            question=question,
            user=user,
            action=ReviewEvent.Action.APPROVE if approve else ReviewEvent.Action.LABELS,
            labels_after=labels,
            comment=comment,
        )


def labels_correction_clear(*, question: Question) -> None:
    """Back to the model's labels (the history stays in ReviewEvent)."""
    question.labels_corrected = None
    meta = question.labels_meta or {}
    if meta.get("source") == "reviewer":  # the model's labels, with its credit, again
        base = {k: v for k, v in meta.items() if k in ("schema", "schema_version")}
        question.labels_meta = {**base, **(meta.get("model_labels") or {})}
    question.save(update_fields=["labels_corrected", "labels_meta", "updated_at"])


def _schema_for(*, question: Question, item: Item | None) -> LabelSchema:
    if item is not None and (schema := item.job.label_schema) is not None:
        return schema
    name = (question.labels_meta or {}).get("schema") or DEFAULT_SCHEMA_NAME
    return label_schema_get(name)


# --- flat columns (CSV, export) ------------------------------------------------------------


def label_value_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def label_field_names(schema: LabelSchema | None = None) -> list[str]:
    """The schema's field names; with no schema, the fields of every schema in the DB."""
    schemas = [schema] if schema is not None else LabelSchema.objects.order_by("name")
    names: dict[str, None] = {}
    for each in schemas:
        for field in each.fields:
            if isinstance(field, dict) and isinstance(field.get("name"), str):
                names.setdefault(field["name"])
    return list(names)


def label_columns(question: Question, names: Sequence[str]) -> dict[str, str]:
    """A question's effective labels (a correction wins) as flat text columns."""
    labels = question.effective_labels or {}
    return {name: label_value_text(labels.get(name)) for name in names}


def label_source(question: Question) -> str:
    if question.labels_corrected is not None:
        return "corrected"
    return "model" if question.labels else ""
