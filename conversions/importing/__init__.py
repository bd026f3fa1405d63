"""The question import workflow shared by the CLI (import_questions), the admin and load_demo.

A source (CSV / XLSX / JSON file, an existing PostgreSQL table, or plain records) is read
twice. The first pass validates every row and keeps only each question_id's first row
number and a digest of the normalised rows; if any row is bad, the report lists every bad
row and nothing is written. The second pass streams the rows again and writes them in
chunks, comparing each chunk with the rows already in the database, all inside one
transaction: a file is imported completely or not at all, in memory bounded by the chunk
size (plus one dict entry per question_id).

Row numbers are what the operator sees in a spreadsheet: in CSV and XLSX the header is
row 1 and the first question is row 2; in JSON and database sources the first record is
row 1.

Columns (header names are matched case-insensitively, spaces and dashes count as "_"):
question_id (alias: id), mathml, text (aliases: question_text, content), subject, grade,
metadata (a JSON object), source_latex (the source's own LaTeX now, which export_results
--to-db compares before writing back; empty: not given). Any other column goes into
metadata. The result columns an
export writes (latex, labels, ...) are ignored, and the apostrophe a spreadsheet export
puts before a formula-like cell is taken off, so an export can be imported again. A
column absent from the file leaves that field of existing questions unchanged.

Text-only rows (labeling documents such as a CSV with only id and text columns) are
accepted with allow_empty_mathml (`import_questions --allow-empty-mathml`, a checkbox in
the admin): the mathml column may then be missing, and a row may have an empty MathML
when it has text. An empty MathML never erases the MathML of an existing question.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversions.importing.rows import (
    ALLOW_EMPTY_MATHML_HINT,
    COLUMN_ALIASES,
    QUESTION_FIELDS,
    RESULT_COLUMNS,
    Layout,
    QuestionRecord,
    RowError,
    RowValidator,
    layout_for,
    missing_columns,
    normalise_column,
)
from conversions.importing.sources import (
    DEFAULT_DB_QUERY,
    FORMATS,
    DatabaseSource,
    FileSource,
    Limits,
    RecordsSource,
    SourceError,
    Table,
    cell_text,
    csv_table,
    detect_encoding,
    guess_format,
    json_table,
    xlsx_table,
)
from conversions.models import Question
from conversions.rowwrite import rows_insert, rows_update

__all__ = [
    "ALLOW_EMPTY_MATHML_HINT",
    "CHUNK_SIZE",
    "COLUMN_ALIASES",
    "DEFAULT_DB_QUERY",
    "FORMATS",
    "QUESTION_FIELDS",
    "RESULT_COLUMNS",
    "DatabaseSource",
    "FileSource",
    "ImportReport",
    "Limits",
    "Layout",
    "QuestionRecord",
    "RecordsSource",
    "RowError",
    "RowValidator",
    "SourceError",
    "Table",
    "cell_text",
    "csv_table",
    "import_file",
    "import_records",
    "import_source",
    "guess_format",
    "detect_encoding",
    "json_table",
    "layout_for",
    "missing_columns",
    "normalise_column",
    "question_apply",
    "question_new",
    "xlsx_table",
]

CHUNK_SIZE = 1000
MAX_REPORTED_ERRORS = 1000


class SourceChanged(Exception):
    """The second pass did not read what the first pass validated."""


@dataclass
class ImportReport:
    source: str
    dry_run: bool = False
    encoding: str | None = None
    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    mathml_changed: int = 0
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.errors

    def add_error(self, error: RowError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)

    def lines(self) -> list[str]:
        head = self.source if not self.encoding else f"{self.source} ({self.encoding})"
        lines = [_("%(source)s: %(rows)d rows") % {"source": head, "rows": self.rows}]
        if not self.ok:
            lines.append(
                _("Rejected: %(bad)d bad rows. Nothing was written; fix them and import again.")
                % {"bad": self.rejected}
            )
            lines += [f"  {error}" for error in self.errors]
            if self.rejected > len(self.errors):
                lines.append(_("  ... and %(n)d more") % {"n": self.rejected - len(self.errors)})
            return lines
        counts = {"c": self.created, "u": self.updated, "s": self.skipped}
        if self.dry_run:
            lines.append(_("Dry run: would create %(c)d, update %(u)d, skip %(s)d.") % counts)
            lines.append(_("Nothing was written."))
        else:
            lines.append(_("Created %(c)d, updated %(u)d, skipped %(s)d (unchanged).") % counts)
        if self.mathml_changed:
            lines.append(
                _("%(n)d questions got a new MathML: their LaTeX was reset to be converted again.")
                % {"n": self.mathml_changed}
            )
        if self.ignored_columns:
            lines.append(
                _("Not imported (result or unnamed columns): %(cols)s")
                % {"cols": ", ".join(sorted(self.ignored_columns))}
            )
        return lines


def question_new(record: QuestionRecord) -> Question:
    question = Question(question_id=record.question_id, mathml="")
    question_apply(question, record)
    return question


def question_apply(question: Question, record: QuestionRecord) -> list[str]:
    """Copy the record's given fields onto the question; return the names that changed.

    A new MathML makes the stored LaTeX stale, so it is cleared and the question goes back
    to "not converted", lock included; the old results stay in the job items' history.
    """
    changed = []
    for name in QUESTION_FIELDS:
        value = getattr(record, name)
        if value is not None and getattr(question, name) != value:
            setattr(question, name, value)
            changed.append(name)
    if "mathml" in changed and question.pk is not None:
        question.latex = ""
        question.conversion_state = Question.ConversionState.UNCONVERTED
        question.latex_locked = False
        question.latex_accepted_by = None
        question.latex_accepted_at = None
        changed += [
            "latex",
            "conversion_state",
            "latex_locked",
            "latex_accepted_by",
            "latex_accepted_at",
        ]
    return changed


def _write_chunk(records: list[QuestionRecord], report: ImportReport, *, dry_run: bool) -> None:
    existing = {
        q.question_id: q
        for q in Question.objects.filter(question_id__in=[r.question_id for r in records]).only(
            "id", "question_id", *QUESTION_FIELDS
        )
    }
    creates, updates, fields = [], [], {"updated_at"}
    now = timezone.now()
    for record in records:
        question = existing.get(record.question_id)
        if question is None:
            creates.append(question_new(record))
            continue
        changed = question_apply(question, record)
        if not changed:
            report.skipped += 1
            continue
        report.mathml_changed += "mathml" in changed
        question.updated_at = now
        updates.append(question)
        fields.update(changed)
    report.created += len(creates)
    report.updated += len(updates)
    if dry_run:
        return
    # bulk_create's and bulk_update's rows, without their per-value SQL compiling.
    rows_insert(creates)
    rows_update(updates, sorted(fields))


def _validate(source, report: ImportReport, validator: RowValidator) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    try:
        with source.table() as table:
            if table.headers is not None:
                for problem in validator.header_problems(table.headers):
                    report.add_error(RowError(table.header_row, problem))
                if not report.ok:
                    return digest.digest()
            for number, raw in table.rows:
                record, problems = validator.record(number, raw)
                if problems:
                    report.rows += 1
                    question_id = cell_text(raw.get(_id_key(validator, raw))).strip()
                    report.add_error(RowError(number, "; ".join(problems), question_id))
                elif record is not None:
                    report.rows += 1
                    digest.update(record.fingerprint())
    except SourceError as exc:
        report.add_error(RowError(exc.row, str(exc)))
    if report.ok and not report.rows:
        report.add_error(RowError(None, _("no question rows: the source is empty")))
    report.ignored_columns = validator.ignored
    return digest.digest()


def _id_key(validator: RowValidator, raw: Mapping[str, object]) -> str:
    return validator.layout(tuple(raw)).fields.get("question_id", "")


def _write(source, report: ImportReport, expected: bytes, *, allow_empty_mathml, chunk_size):
    validator = RowValidator(allow_empty_mathml=allow_empty_mathml, check=False)
    digest = hashlib.blake2b(digest_size=16)
    chunk: list[QuestionRecord] = []
    try:
        with source.table() as table:
            for number, raw in table.rows:
                record, _problems = validator.record(number, raw)
                if record is None:
                    continue
                digest.update(record.fingerprint())
                chunk.append(record)
                if len(chunk) >= chunk_size:
                    _write_chunk(chunk, report, dry_run=report.dry_run)
                    chunk = []
    except SourceError as exc:
        raise SourceChanged(str(exc)) from exc
    if chunk:
        _write_chunk(chunk, report, dry_run=report.dry_run)
    if digest.digest() != expected:
        raise SourceChanged(_("the source changed while it was being imported"))


def import_source(
    source,
    *,
    dry_run: bool = False,
    allow_empty_mathml: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> ImportReport:
    """Validate the whole source, then write all of it in one transaction, or nothing."""
    report = ImportReport(source=source.label, dry_run=dry_run)
    try:
        with source:
            report.encoding = getattr(source, "encoding", None)
            validator = RowValidator(allow_empty_mathml=allow_empty_mathml)
            expected = _validate(source, report, validator)
            if not report.ok:
                return report
            del validator  # the id -> row map is the first pass's only sizeable state
            try:
                with transaction.atomic():
                    _write(
                        source,
                        report,
                        expected,
                        allow_empty_mathml=allow_empty_mathml,
                        chunk_size=chunk_size,
                    )
                    if dry_run:
                        transaction.set_rollback(True)
            except SourceChanged as exc:
                report.created = report.updated = report.skipped = 0
                report.add_error(RowError(None, str(exc)))
    except SourceError as exc:
        report.add_error(RowError(exc.row, str(exc)))
    return report


def import_file(path: str | Path, *, fmt=None, encoding=None, **options) -> ImportReport:
    try:
        source = FileSource(path, fmt=fmt, encoding=encoding)
    except SourceError as exc:
        report = ImportReport(source=str(path), dry_run=options.get("dry_run", False))
        report.add_error(RowError(None, str(exc)))
        return report
    return import_source(source, **options)


def import_records(
    records: Callable[[], Iterable[Mapping[str, object]]], *, label: str, **options
) -> ImportReport:
    return import_source(RecordsSource(records, label), **options)
