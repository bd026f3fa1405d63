"""Every file mathconv writes from the database, with each export's columns listed once.

- questions with their latest result (TABULAR_COLUMNS): CSV / XLSX for spreadsheets,
  JSON lossless; the admin, `export_questions` and the import-export resource use it;
- a job's item results (RESULT_COLUMNS): the per-batch JSON files and stats.json a
  worker writes, and the job page's CSV / XLSX / JSON download.

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
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from conversions.models import Item, Job, Question
from conversions.sanitize import latex_for_output
from conversions.selectors import job_stats

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
        "latex": latex_for_output(
            question.latex
        ),  # a stem's whole converted document (conversions/stems.py)
        "formulas": question.formulas,  # a stem's per-formula results; None for a formula
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
        "result_latex": latex_for_output(item.result_latex),
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
    return _write_csv_rows(fp, TABULAR_COLUMNS, _tabular_rows(queryset))


def write_xlsx(queryset: QuerySet[Question], fp: BinaryIO) -> int:
    return _write_xlsx_rows(fp, "questions", TABULAR_COLUMNS, _tabular_rows(queryset))


def _tabular_rows(queryset: QuerySet[Question]) -> Iterator[list[object]]:
    return (tabular_row(record) for record in question_records(queryset))


def _write_csv_rows(fp: BinaryIO, columns: Iterable[str], rows: Iterable[list]) -> int:
    # UTF-8 with a BOM: Excel (Korean Windows included) opens it without mojibake.
    text = io.TextIOWrapper(fp, encoding="utf-8-sig", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(columns)
    count = 0
    for count, row in enumerate(rows, start=1):  # noqa: B007
        writer.writerow(row)
    text.detach()
    return count


def _write_xlsx_rows(fp: BinaryIO, sheet_name: str, columns: Iterable[str], rows) -> int:
    book = Workbook(write_only=True)  # rows go to a temporary file, not memory
    sheet = book.create_sheet(sheet_name)
    sheet.append(list(columns))
    count = 0
    for count, row in enumerate(rows, start=1):  # noqa: B007
        sheet.append(
            [ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v for v in row]
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


# --- a job's item results ------------------------------------------------------------


def export_dir(*, job_id: int) -> Path:
    return Path(settings.MATHCONV_EXPORT_DIR) / f"job-{job_id:06d}"


RESULT_COLUMNS = (
    "item",
    "question_id",
    "status",
    "result_latex",
    "result_labels",
    "route",
    "cached",
    "validation_score",
    "validation_reasons",
    "error_category",
    "error_message",
    "review_status",
    "reviewed_latex",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "api_calls",
    "retries",
    "attempts",
    "finished_at",
)


RESULT_PAGE = 2000


def result_rows(items: QuerySet[Item], *, page: int = RESULT_PAGE) -> Iterator[dict]:
    """The items as RESULT_COLUMNS rows, read in primary-key pages (any job size)."""
    values = items.order_by("pk").values_list("pk", "question__question_id", *RESULT_COLUMNS[2:])
    last = 0
    while chunk := list(values.filter(pk__gt=last)[:page]):
        for row_values in chunk:
            row = dict(zip(RESULT_COLUMNS, row_values, strict=True))
            row["result_latex"] = latex_for_output(row["result_latex"])
            row["reviewed_latex"] = latex_for_output(row["reviewed_latex"])
            row["cost_usd"] = str(row["cost_usd"])
            row["finished_at"] = row["finished_at"].isoformat() if row["finished_at"] else None
            yield row
        last = chunk[-1][0]


def batch_rows(*, job: Job, batch_no: int) -> list[dict]:
    items = Item.objects.filter(job_id=job.pk, batch_no=batch_no).exclude(
        status__in=[Item.Status.PENDING, Item.Status.RUNNING]
    )
    return list(result_rows(items))


def batch_export(*, job: Job, batch_no: int) -> Path | None:
    """Write one batch's results as JSON, like the old scripts' per-batch files."""
    rows = batch_rows(job=job, batch_no=batch_no)
    if not rows:
        return None
    path = export_dir(job_id=job.pk) / "batches" / f"batch-{batch_no:06d}.json"
    # One result per line: readable, and json's C encoder (indent= would use the slow one).
    lines = ",\n".join(json.dumps(row, ensure_ascii=False, default=str) for row in rows)
    text = f'{{"job": {job.pk}, "batch": {batch_no}, "results": [\n{lines}\n]}}\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def job_export(*, job: Job, missing_only: bool = False) -> list[Path]:
    """The stats JSON and every batch's results JSON, written from the database.

    missing_only: leave batch files that exist (the worker wrote them as batches ended).
    """
    paths = []
    batch_nos = (
        Item.objects.filter(job_id=job.pk, batch_no__gt=0)
        .values_list("batch_no", flat=True)
        .distinct()
        .order_by("batch_no")
    )
    batches = export_dir(job_id=job.pk) / "batches"
    for batch_no in batch_nos:
        if missing_only and (batches / f"batch-{batch_no:06d}.json").exists():
            continue
        path = batch_export(job=job, batch_no=batch_no)
        if path:
            paths.append(path)
    stats_path = export_dir(job_id=job.pk) / "stats.json"
    _write_json(stats_path, job_stats(job=job))
    return [stats_path, *paths]


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


def result_cells(row: dict) -> list[object]:
    """A result row as spreadsheet cells: JSON fields as JSON text, formulas neutralised."""
    return [_result_cell(row[c]) for c in RESULT_COLUMNS]


def _result_cell(value: object) -> object:
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return neutralise("" if value is None else value)


def job_results_csv_lines(job: Job) -> Iterator[str]:
    """The job's results as CSV text, a line at a time (with a BOM), for streaming."""
    out = _Echo()
    writer = csv.writer(out)
    yield "\ufeff" + writer.writerow(RESULT_COLUMNS)
    for row in result_rows(Item.objects.filter(job_id=job.pk)):
        yield writer.writerow(result_cells(row))


def job_results_json_chunks(job: Job) -> Iterator[str]:
    """The job's results as a JSON array, one result per line, for streaming."""
    yield "["
    for n, row in enumerate(result_rows(Item.objects.filter(job_id=job.pk))):
        yield ("\n" if n == 0 else ",\n") + json.dumps(row, ensure_ascii=False)
    yield "\n]\n"


def job_results_xlsx(job: Job) -> bytes:
    buffer = io.BytesIO()
    rows = (result_cells(row) for row in result_rows(Item.objects.filter(job_id=job.pk)))
    _write_xlsx_rows(buffer, "results", RESULT_COLUMNS, rows)
    return buffer.getvalue()


class _Echo:
    """A file that hands back what is written: csv.writer output without a buffer."""

    def write(self, value: str) -> str:
        return value
