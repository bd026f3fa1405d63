"""Export of questions with their results: CSV / XLSX for spreadsheets, JSON lossless.

Spreadsheet exports neutralise formula injection as OWASP recommends: a text cell that
begins with = + - @ (or their full-width forms), a tab or a carriage return gets a leading
apostrophe, so Excel and LibreOffice show it as text instead of evaluating it. That
alters such cells (a LaTeX "-x" reads "'-x"); the CSV/XLSX import takes the apostrophe
off again, so an exported sheet re-imports unchanged. The JSON export is lossless.

Rows are read in primary-key pages with a constant number of queries per page (the
question page, then the latest conversion item of each question on it), so exporting
100,000 questions holds one page in memory, and the writers stream to the file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO

from django.db.models import OuterRef, QuerySet, Subquery

from conversions.models import Item, Job, Question

FORMATS = ("csv", "xlsx", "json")
PAGE_SIZE = 1000

TABULAR_COLUMNS = (
    "question_id",
    "mathml",
    "text",
    "subject",
    "grade",
    "metadata",
    "latex",
    "conversion_state",
    "latex_locked",
    "latex_accepted_by",
    "latex_accepted_at",
    "labels",
    "labels_meta",
    "latest_job_id",
    "latest_status",
    "latest_result_latex",
    "latest_validation_score",
    "latest_error_category",
    "latest_error_message",
    "latest_finished_at",
    "updated_at",
)
LATEST_FIELDS = (
    "job_id",
    "status",
    "result_latex",
    "validation_score",
    "error_category",
    "error_message",
    "finished_at",
)
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def neutralise(value: object) -> object:
    """Prefix a ' to a text cell a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def restore_neutralised(text: str) -> str:
    """Undo neutralise() on a spreadsheet cell read back, so an export re-imports unchanged."""
    if text.startswith("'") and text[1:].startswith(FORMULA_TRIGGERS):
        return text[1:]
    return text


def question_records(queryset: QuerySet[Question], *, page_size: int = PAGE_SIZE) -> Iterator[dict]:
    """Each question with its results as plain JSON-ready data, in primary-key order."""
    latest = (
        Item.objects.filter(question=OuterRef("pk"), job__kind=Job.Kind.CONVERT)
        .order_by("-id")
        .values("id")[:1]
    )
    pages = (
        queryset.order_by("pk")
        .select_related("latex_accepted_by")
        .annotate(latest_item_id=Subquery(latest))
    )
    last_pk = 0
    while page := list(pages.filter(pk__gt=last_pk)[:page_size]):
        items = Item.objects.in_bulk([q.latest_item_id for q in page if q.latest_item_id])
        for question in page:
            yield question_record(question, items.get(question.latest_item_id))
        last_pk = page[-1].pk


def question_record(question: Question, latest: Item | None) -> dict:
    accepted_by = question.latex_accepted_by
    return {
        "question_id": question.question_id,
        "mathml": question.mathml,
        "text": question.text,
        "subject": question.subject,
        "grade": question.grade,
        "metadata": question.metadata,
        "latex": question.latex,
        "conversion_state": question.conversion_state,
        "latex_locked": question.latex_locked,
        "latex_accepted_by": accepted_by.get_username() if accepted_by else None,
        "latex_accepted_at": _iso(question.latex_accepted_at),
        "labels": question.effective_labels,
        "labels_model": question.labels,
        "labels_corrected": question.labels_corrected,
        "labels_meta": question.labels_meta,
        "created_at": _iso(question.created_at),
        "updated_at": _iso(question.updated_at),
        "latest_result": None if latest is None else latest_result(latest),
    }


def latest_result(item: Item) -> dict:
    return {
        "job_id": item.job_id,
        "status": item.status,
        "result_latex": item.result_latex,
        "validation_score": item.validation_score,
        "error_category": item.error_category,
        "error_message": item.error_message,
        "route": item.route,
        "review_status": item.review_status,
        "finished_at": _iso(item.finished_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def tabular_row(record: dict) -> list[object]:
    """One spreadsheet row: JSON fields as JSON text, the latest result flattened."""
    latest = record["latest_result"] or {}
    flat = {
        **record,
        "metadata": _json_cell(record["metadata"]),
        "labels": _json_cell(record["labels"]),
        "labels_meta": _json_cell(record["labels_meta"]),
        "latex_locked": "true" if record["latex_locked"] else "false",
        **{f"latest_{name}": latest.get(name) for name in LATEST_FIELDS},
    }
    return [neutralise("" if flat[c] is None else flat[c]) for c in TABULAR_COLUMNS]


def _json_cell(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if value else ""


def write_csv(queryset: QuerySet[Question], fp: BinaryIO) -> int:
    # UTF-8 with a BOM: Excel (Korean Windows included) opens it without mojibake.
    text = io.TextIOWrapper(fp, encoding="utf-8-sig", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(TABULAR_COLUMNS)
    count = 0
    for count, record in enumerate(question_records(queryset), start=1):  # noqa: B007
        writer.writerow(tabular_row(record))
    text.detach()
    return count


def write_xlsx(queryset: QuerySet[Question], fp: BinaryIO) -> int:
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook(write_only=True)  # rows go to a temporary file, not memory
    sheet = book.create_sheet("questions")
    sheet.append(TABULAR_COLUMNS)
    count = 0
    for count, record in enumerate(question_records(queryset), start=1):  # noqa: B007
        sheet.append(
            [
                ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v
                for v in tabular_row(record)
            ]
        )
    book.save(fp)
    return count


def write_json(queryset: QuerySet[Question], fp: BinaryIO) -> int:
    """A JSON array, one question per line; import_questions reads it back."""
    fp.write(b"[")
    count = 0
    for count, record in enumerate(question_records(queryset), start=1):
        fp.write(b"\n" if count == 1 else b",\n")
        fp.write(json.dumps(record, ensure_ascii=False).encode())
    fp.write(b"\n]\n")
    return count


WRITERS = {"csv": write_csv, "xlsx": write_xlsx, "json": write_json}
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}


def export_questions(queryset: QuerySet[Question], fmt: str, fp: BinaryIO) -> int:
    """Write the questions to fp in csv, xlsx or json; return how many were written."""
    return WRITERS[fmt](queryset, fp)


def export_bytes(queryset: QuerySet[Question], fmt: str) -> bytes:
    buffer = io.BytesIO()
    export_questions(queryset, fmt, buffer)
    return buffer.getvalue()
