"""Every file mathconv writes from the database, with each export's columns listed once.

- questions with their latest result (TABULAR_COLUMNS): CSV / XLSX for spreadsheets,
  JSON lossless; the admin, `export_questions` and the import-export resource use it;
- a job's item results (RESULT_COLUMNS): the per-batch JSON files and stats.json a
  worker writes, and the job page's CSV / XLSX / JSON download.

What leaves mathconv is what it holds:
- LaTeX and MathML columns (EXACT_COLUMNS) are data other systems read: they are written
  exactly, in every format (a LaTeX "-2" stays "-2").
- XLSX: every string is an explicit text cell (type "s", number format "@"), so a
  spreadsheet never evaluates it and every string reads back exactly. A cell longer than
  Excel's limit (XLSX_CELL_LIMIT, 32,767 characters; openpyxl would cut it silently) or
  holding a control character XLSX cannot store refuses the export with ExportError
  naming the row and the column (the JSON export holds any length).
- CSV has no cell types, so other text cells (question text, subject, labels, messages)
  are guarded only when a spreadsheet would run them as a formula (spreadsheet_formula()):
  those get a leading apostrophe, which the CSV import takes off again.
- Timestamps are in settings.TIME_ZONE (Asia/Seoul, as the pages) with their offset.
- Labels: one column per label field (label_<name>), as the `label` command's CSV.
- Error messages and validation reasons, stored language-neutrally
  (converters/messages.py), are written in LANGUAGE_CODE, whoever asks for the export.
The JSON export is lossless.

Rows are read in primary-key pages with a constant number of queries per page (the
question page, then the latest conversion item of each question on it), so exporting
100,000 questions holds one page in memory, and the writers stream to the file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell

from conversions import labeling, selectors
from conversions.converters.messages import Reason, render, shown
from conversions.models import Item, Job, Question
from conversions.sanitize import latex_for_output

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
    "source_latex",
    "conversion_state",
    "latex_locked",
    "latex_accepted_by",
    "latex_accepted_at",
    "labels",  # replaced by one label_<name> column per label field (tabular_columns)
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
# LaTeX and MathML: exported exactly, never guarded (other systems read them as data).
EXACT_COLUMNS = frozenset(
    {"mathml", "latex", "source_latex", "latest_result_latex", "result_latex", "reviewed_latex"}
)
XLSX_CELL_LIMIT = 32767  # characters in one cell: Excel's limit, where openpyxl cuts
LABELS_AT = "labels"
FORMULA_STARTS = ("=", "@", "+", "-", "\uff1d", "\uff20", "\uff0b", "\uff0d")
LEADING_BLANKS = " \t\r\n"
# A signed number: a spreadsheet reads "-2" or "+1.5e3" as a number, which runs nothing.
SIGNED_NUMBER = re.compile(r"[+\-\uff0b\uff0d]\s*(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?%?")


class ExportError(ValueError):
    """An export that would lose data (a cell over XLSX_CELL_LIMIT); the message names
    the row and the column, and nothing is written."""


def spreadsheet_formula(text: str) -> bool:
    """Would Excel or LibreOffice run this CSV cell as a formula?

    The rule (OWASP's CSV injection list, narrowed to what executes): after leading
    blanks (space, tab, CR, LF; some importers trim them), the cell starts with = or @
    (or their full-width forms), or with + or - (or full-width) that does not begin a
    plain signed number. "-2", "+1.5" and "-3%" are numbers; "-x^2", "+SUM(A1)" and
    "=1+2" are formulas; "a=1" is text.
    """
    body = text.lstrip(LEADING_BLANKS)
    if not body.startswith(FORMULA_STARTS):
        return False
    return not SIGNED_NUMBER.fullmatch(body)


def neutralise(value: object) -> object:
    """A CSV text cell with a leading ' when a spreadsheet would run it as a formula.

    Cells that already start with apostrophes before such text get one more, so
    restore_neutralised() is its exact inverse: every string comes back as it was.
    """
    if isinstance(value, str) and spreadsheet_formula(value.lstrip("'")):
        return "'" + value
    return value


def restore_neutralised(text: str) -> str:
    """Undo neutralise() on a CSV cell read back, so an export re-imports unchanged."""
    if text.startswith("'") and spreadsheet_formula(text.lstrip("'")):
        return text[1:]
    return text


def _csv_cell(column: str, value: object) -> object:
    return value if column in EXACT_COLUMNS else neutralise(value)


def csv_cells(columns: Iterable[str], row: Iterable[object]) -> list[object]:
    """A row as CSV cells: LaTeX and MathML exact, other text guarded (neutralise)."""
    return [_csv_cell(c, v) for c, v in zip(columns, row, strict=True)]


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
        # a stem's per-formula results; None for a formula
        "formulas": exported_formulas(question.formulas),
        # The source's own LaTeX as last read or written back (None: never known).
        "source_latex": latex_for_output(question.source_latex),
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
        "error_message": exported_error(item.error_message, item.error_reason),
        "route": item.route,
        "review_status": item.review_status,
        "finished_at": _iso(item.finished_at),
    }


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 in settings.TIME_ZONE with its offset ("2026-11-30T21:03:00+09:00")."""
    return timezone.localtime(value).isoformat() if value else None


def tabular_columns(label_names: Iterable[str] | None = None) -> list[str]:
    """The question export's columns: TABULAR_COLUMNS with "labels" replaced by one
    label_<name> column per label field (default: the fields of every label schema)."""
    if label_names is None:
        label_names = labeling.label_field_names()
    at = TABULAR_COLUMNS.index(LABELS_AT)
    labels = [f"label_{name}" for name in label_names]
    return [*TABULAR_COLUMNS[:at], *labels, *TABULAR_COLUMNS[at + 1 :]]


def tabular_row(record: dict, columns: list[str] | None = None) -> list[object]:
    """One spreadsheet row (unguarded values): JSON fields as JSON text, labels one
    column per field (list values joined with "; "), the latest result flattened."""
    columns = tabular_columns() if columns is None else columns
    latest = record["latest_result"] or {}
    labels = record["labels"] or {}
    flat = {
        **record,
        "metadata": _json_cell(record["metadata"]),
        "labels_meta": _json_cell(record["labels_meta"]),
        "latex_locked": "true" if record["latex_locked"] else "false",
        **{f"latest_{name}": latest.get(name) for name in LATEST_FIELDS},
    }
    for column in columns:
        if column.startswith("label_"):
            flat[column] = labeling.label_value_text(labels.get(column[len("label_") :]))
    return ["" if flat[c] is None else flat[c] for c in columns]


def _json_cell(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if value else ""


def write_csv(queryset: QuerySet[Question], fp: BinaryIO) -> int:
    columns = tabular_columns()
    return _write_csv_rows(fp, columns, _tabular_rows(queryset, columns))


def write_xlsx(queryset: QuerySet[Question], fp: BinaryIO) -> int:
    columns = tabular_columns()
    rows = _tabular_rows(queryset, columns)
    return _write_xlsx_rows(fp, "questions", columns, rows, name=_question_name)


def _question_name(row: list) -> str:
    return _("question %s") % row[0]


def _tabular_rows(queryset: QuerySet[Question], columns: list[str]) -> Iterator[list[object]]:
    return (tabular_row(record, columns) for record in question_records(queryset))


def _write_csv_rows(fp: BinaryIO, columns: list[str], rows: Iterable[list]) -> int:
    # UTF-8 with a BOM: Excel (Korean Windows included) opens it without mojibake.
    text = io.TextIOWrapper(fp, encoding="utf-8-sig", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(columns)
    count = 0
    for count, row in enumerate(rows, start=1):  # noqa: B007
        writer.writerow([_csv_cell(c, v) for c, v in zip(columns, row, strict=True)])
    text.detach()
    return count


def _write_xlsx_rows(fp: BinaryIO, sheet_name: str, columns: list[str], rows, *, name) -> int:
    """Rows as an XLSX sheet; strings as text cells, numbers as numbers.

    name: a row's name for people ("question Q-1"), used in the ExportError a cell over
    XLSX_CELL_LIMIT or with a control character raises.
    """
    book = Workbook(write_only=True)  # rows go to a temporary file, not memory
    sheet = book.create_sheet(sheet_name)
    sheet.append([_text_cell(sheet, c) for c in columns])
    count = 0
    for count, row in enumerate(rows, start=1):  # noqa: B007
        cells = []
        for column, value in zip(columns, row, strict=True):
            if isinstance(value, str):
                _xlsx_check(value, row=name(row), column=column)
                value = _text_cell(sheet, value)
            cells.append(value)
        sheet.append(cells)
    book.save(fp)
    return count


def _text_cell(sheet, value: str) -> Cell:
    # Cell() reads a leading "=" as a formula: the type is set to text after the value.
    cell = Cell(sheet, row=1, column=1, value=value)  # append() places it
    cell.data_type = "s"
    cell.number_format = "@"
    return cell


def _xlsx_check(value: str, *, row: str, column: str) -> None:
    if len(value) > XLSX_CELL_LIMIT:
        raise ExportError(
            _(
                "%(row)s: column “%(column)s” has %(n)s characters, more than the %(limit)s an "
                "XLSX cell holds. Nothing was exported; export as CSV or JSON, which hold "
                "any length."
            )
            % {
                "row": row,
                "column": column,
                "n": f"{len(value):,}",
                "limit": f"{XLSX_CELL_LIMIT:,}",
            }
        )
    if ILLEGAL_CHARACTERS_RE.search(value):
        raise ExportError(
            _(
                "%(row)s: column “%(column)s” holds a control character an XLSX file cannot "
                "store. Nothing was exported; export as CSV or JSON."
            )
            % {"row": row, "column": column}
        )


def write_json(queryset: QuerySet[Question], fp: BinaryIO) -> int:
    """A JSON array, one question per line; import_questions reads it back."""
    fp.write(b"[")
    count = 0
    for count, record in enumerate(question_records(queryset), start=1):
        fp.write(b"\n" if count == 1 else b",\n")
        fp.write(json.dumps(record, ensure_ascii=False).encode())
    fp.write(b"\n]\n")
    return count


# The old scripts' file names: results per batch, and the run's stats.
RESULTS_BATCH_NAME = "conversion_results_batch_{:03d}.json"
RESULTS_BATCH_GLOB = "conversion_results_batch_*.json"
RESULTS_STATS_NAME = "conversion_stats.json"


def export_results_split(
    queryset: QuerySet[Question], directory: Path, *, per_file: int, extra: dict | None = None
) -> list[Path]:
    """The old scripts' files in `directory`: conversion_results_batch_001.json, ... (each
    a JSON array of at most per_file question records, as write_json writes them, in
    primary-key order) and conversion_stats.json (selectors.results_stats, the files'
    names and `extra`). Returns the paths, stats first. Batch files left from an earlier
    export into the same folder are removed, so the folder holds this export only."""
    if per_file < 1:
        raise ValueError("per_file must be at least 1")
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    batch: list[dict] = []
    for record in question_records(queryset):
        batch.append(record)
        if len(batch) == per_file:
            paths.append(_write_results_batch(directory, len(paths) + 1, batch))
            batch = []
    if batch:
        paths.append(_write_results_batch(directory, len(paths) + 1, batch))
    written = {path.name for path in paths}
    for stale in directory.glob(RESULTS_BATCH_GLOB):
        if stale.name not in written:
            stale.unlink()
    stats = {
        **selectors.results_stats(exported=queryset),
        **(extra or {}),
        "per_file": per_file,
        "files": sorted(written),
        "generated_at": _iso(timezone.now()),
    }
    stats_path = directory / RESULTS_STATS_NAME
    _write_json(stats_path, stats)
    return [stats_path, *paths]


def _write_results_batch(directory: Path, number: int, records: list[dict]) -> Path:
    path = directory / RESULTS_BATCH_NAME.format(number)
    lines = ",\n".join(json.dumps(record, ensure_ascii=False) for record in records)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    tmp.replace(path)
    return path


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


def exported_error(message: str, reason: Reason) -> str:
    """An item's error as exports write it: in LANGUAGE_CODE (converters.messages.shown)."""
    if not message:
        return message
    with translation.override(settings.LANGUAGE_CODE):
        return shown(message, reason)


def exported_reasons(reasons: list | None) -> list[str]:
    """Validation reasons as exports write them: in LANGUAGE_CODE."""
    return [render(reason, settings.LANGUAGE_CODE) for reason in reasons or []]


def exported_formulas(formulas: list | None) -> list | None:
    """A stem's formula entries (conversions/stems.py) with their error and reasons in
    LANGUAGE_CODE."""
    if formulas is None:
        return None
    return [
        {
            **entry,
            "error": None
            if entry.get("error") is None
            else render(entry["error"], settings.LANGUAGE_CODE),
            "reasons": exported_reasons(entry.get("reasons")),
        }
        for entry in formulas
    ]


def result_rows(items: QuerySet[Item], *, page: int = RESULT_PAGE) -> Iterator[dict]:
    """The items as RESULT_COLUMNS rows, read in primary-key pages (any job size)."""
    columns = (*RESULT_COLUMNS, "error_reason")
    values = items.order_by("pk").values_list("pk", "question__question_id", *columns[2:])
    last = 0
    while chunk := list(values.filter(pk__gt=last)[:page]):
        for row_values in chunk:
            row = dict(zip(columns, row_values, strict=True))
            row["error_message"] = exported_error(row["error_message"], row.pop("error_reason"))
            row["validation_reasons"] = exported_reasons(row["validation_reasons"])
            row["result_latex"] = latex_for_output(row["result_latex"])
            row["reviewed_latex"] = latex_for_output(row["reviewed_latex"])
            row["finished_at"] = _iso(row["finished_at"])
            yield row
        if len(chunk) < page:
            return  # the last page: no query to find that nothing follows
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
    lines = ",\n".join(json.dumps(_json_row(row), ensure_ascii=False) for row in rows)
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
    _write_json(stats_path, selectors.job_stats(job=job))
    return [stats_path, *paths]


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


def _json_row(row: dict) -> dict:
    # cost_usd is a Decimal: JSON carries it as its exact decimal text.
    return {**row, "cost_usd": str(row["cost_usd"])}


def result_cells(row: dict) -> list[object]:
    """A result row as spreadsheet values (unguarded): JSON fields as JSON text,
    cost_usd a number (Decimal)."""
    return [_result_cell(row[c]) for c in RESULT_COLUMNS]


def _result_cell(value: object) -> object:
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


def job_results_csv_lines(job: Job) -> Iterator[str]:
    """The job's results as CSV text, a line at a time (with a BOM), for streaming."""
    out = _Echo()
    writer = csv.writer(out)
    yield "\ufeff" + writer.writerow(RESULT_COLUMNS)
    for row in result_rows(Item.objects.filter(job_id=job.pk)):
        cells = zip(RESULT_COLUMNS, result_cells(row), strict=True)
        yield writer.writerow([_csv_cell(c, v) for c, v in cells])


def job_results_json_chunks(job: Job) -> Iterator[str]:
    """The job's results as a JSON array, one result per line, for streaming."""
    yield "["
    for n, row in enumerate(result_rows(Item.objects.filter(job_id=job.pk))):
        yield ("\n" if n == 0 else ",\n") + json.dumps(_json_row(row), ensure_ascii=False)
    yield "\n]\n"


def job_results_xlsx(job: Job) -> bytes:
    buffer = io.BytesIO()
    rows = (result_cells(row) for row in result_rows(Item.objects.filter(job_id=job.pk)))
    _write_xlsx_rows(buffer, "results", list(RESULT_COLUMNS), rows, name=_item_name)
    return buffer.getvalue()


def _item_name(row: list) -> str:
    return _("item %(item)s (question %(question)s)") % {"item": row[0], "question": row[1]}


class _Echo:
    """A file that hands back what is written: csv.writer output without a buffer."""

    def write(self, value: str) -> str:
        return value
