"""django-import-export glue for questions: the admin's file formats and QuestionResource.

The admin imports with the same readers and the same row validation as import_questions
(conversions.importing), and all or nothing: QuestionResource.import_data validates the
whole dataset first and, if any row is bad, returns every bad row with its row number
and touches nothing; only a fully valid dataset goes through the library's row machinery
(dry run for the preview, then the confirmed import in one transaction).
"""

from __future__ import annotations

import io
import json

import tablib
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from import_export import exceptions, fields, resources, widgets
from import_export.formats import base_formats
from import_export.instance_loaders import CachedInstanceLoader
from import_export.results import Result, RowResult

from conversions import exporting
from conversions.importing import (
    QUESTION_FIELDS,
    Limits,
    QuestionRecord,
    RowError,
    RowValidator,
    Table,
    cell_text,
    csv_table,
    json_table,
    question_apply,
    xlsx_table,
)
from conversions.models import Question


class NumberedDataset(tablib.Dataset):
    """A dataset that remembers each row's number in the source file, blank rows included."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.row_numbers: list[int] = []
        self.header_row: int | None = None


def admin_limits() -> Limits:
    # The admin holds an upload's rows in memory for its preview: fewer rows than the CLI.
    return Limits.from_settings(rows=settings.MATHCONV_ADMIN_IMPORT_MAX_ROWS)


def table_dataset(table: Table) -> NumberedDataset:
    rows = list(table.rows)
    headers = table.headers
    if headers is None:  # JSON records: the union of their keys, absent keys as None
        headers = list(dict.fromkeys(key for _n, record in rows for key in record))
        admin_limits().check_columns(len(headers), None)
    dataset = NumberedDataset(headers=headers)
    for number, record in rows:
        dataset.append([record.get(h) for h in headers])
        dataset.row_numbers.append(number)
    dataset.header_row = table.header_row
    return dataset


class _BinaryInput:
    """The admin hands binary formats the uploaded bytes untouched: we read them ourselves."""

    def is_binary(self) -> bool:
        return True

    def get_read_mode(self) -> str:
        return "rb"


class QuestionCSV(_BinaryInput, base_formats.CSV):
    # Binary so that the encoding (UTF-8, UTF-8 with BOM, CP949) is detected, not assumed.
    def create_dataset(self, in_stream, **kwargs):
        return table_dataset(csv_table(io.BytesIO(_as_bytes(in_stream)), limits=admin_limits()))


class QuestionXLSX(base_formats.XLSX):
    def create_dataset(self, in_stream, **kwargs):
        return table_dataset(xlsx_table(io.BytesIO(_as_bytes(in_stream)), limits=admin_limits()))


class QuestionJSON(_BinaryInput, base_formats.JSON):
    def create_dataset(self, in_stream, **kwargs):
        return table_dataset(json_table(io.BytesIO(_as_bytes(in_stream)), limits=admin_limits()))


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


IMPORT_FORMATS = [QuestionCSV, QuestionXLSX, QuestionJSON]
EXPORT_FORMATS = {base_formats.CSV: "csv", base_formats.XLSX: "xlsx", base_formats.JSON: "json"}


class JSONTextWidget(widgets.JSONWidget):
    def render(self, value, obj=None, **kwargs):
        return json.dumps(value, ensure_ascii=False) if value else ""


class QuestionResource(resources.ModelResource):
    """Questions keyed on question_id; re-importing updates changed rows, skips the rest.

    Row numbers come from the dataset the admin's formats build (NumberedDataset); for a
    plain tablib dataset they are counted as in a spreadsheet, the header being row 1.
    """

    metadata = fields.Field(attribute="metadata", column_name="metadata", widget=JSONTextWidget())

    class Meta:
        model = Question
        fields = ("question_id", *QUESTION_FIELDS)
        import_id_fields = ("question_id",)
        instance_loader_class = CachedInstanceLoader
        skip_unchanged = True
        report_skipped = True
        use_transactions = True

    def __init__(self, *, allow_empty_mathml: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.allow_empty_mathml = allow_empty_mathml
        self.records: dict[str, QuestionRecord] = {}

    def import_data(self, dataset, dry_run=False, raise_errors=False, **kwargs):
        errors = self.validate_dataset(dataset)
        if errors:
            if raise_errors:
                raise exceptions.ImportError(ValidationError([str(e) for e in errors]))
            return self.rejected_result(dataset, errors)
        kwargs.update(use_transactions=True, rollback_on_validation_errors=True)
        return super().import_data(
            self.normalised_dataset(), dry_run=dry_run, raise_errors=raise_errors, **kwargs
        )

    def validate_dataset(self, dataset: tablib.Dataset) -> list[RowError]:
        """The whole dataset through the shared validator; keeps the good records."""
        self.records = {}
        validator = RowValidator(allow_empty_mathml=self.allow_empty_mathml)
        header_row = getattr(dataset, "header_row", 1)
        if header_row is not None:
            problems = validator.header_problems(list(dataset.headers or []))
            if problems:
                return [RowError(header_row, p) for p in problems]
        errors = []
        for number, raw in _numbered_rows(dataset):
            record, problems = validator.record(number, raw)
            if problems:
                id_key = validator.layout(tuple(raw)).fields.get("question_id")
                question_id = cell_text(raw.get(id_key)).strip()
                errors.append(RowError(number, "; ".join(problems), question_id))
            elif record is not None:
                self.records[record.question_id] = record
        return errors

    def normalised_dataset(self) -> tablib.Dataset:
        dataset = tablib.Dataset(headers=["question_id", *QUESTION_FIELDS])
        for record in self.records.values():
            dataset.append([record.question_id, *(getattr(record, f) for f in QUESTION_FIELDS)])
        return dataset

    def rejected_result(self, dataset: tablib.Dataset, errors: list[RowError]) -> Result:
        result = self.get_result_class()()
        result.diff_headers = ["question_id", "mathml", "text"]
        result.total_rows = len(dataset)
        shown = dict(_numbered_rows(dataset))
        for error in errors:
            raw = shown.get(error.row, {})
            values = {"question_id": error.question_id, **_display(raw)}
            result.append_invalid_row(error.row, values, ValidationError(error.message))
            result.totals[RowResult.IMPORT_TYPE_INVALID] += 1
        return result

    def init_instance(self, row=None):
        return Question(question_id=row["question_id"], mathml="")

    def import_instance(self, instance, row, **kwargs):
        # The same field rules as import_questions: absent fields stay, a new MathML
        # resets the stale LaTeX.
        question_apply(instance, self.records[row["question_id"]])

    # Export through the library (its `export` command, Resource.export) gets the same
    # columns and formula neutralisation as the admin and import_questions.
    # The library may write the dataset to any format, so text cells get the CSV guard
    # (LaTeX and MathML are exact, as everywhere).
    def get_export_headers(self, selected_fields=None):
        return exporting.tabular_columns()

    def export(self, queryset=None, **kwargs):
        queryset = self.get_queryset() if queryset is None else queryset
        columns = exporting.tabular_columns()
        dataset = tablib.Dataset(headers=columns)
        for record in exporting.question_records(queryset):
            row = exporting.tabular_row(record, columns)
            dataset.append(exporting.csv_cells(columns, row))
        return dataset


def _numbered_rows(dataset: tablib.Dataset):
    numbers = getattr(dataset, "row_numbers", None) or range(2, len(dataset) + 2)
    headers = list(dataset.headers or [])
    for number, values in zip(numbers, dataset, strict=False):
        yield number, {h: v for h, v in zip(headers, values, strict=False) if v is not None}


def _display(raw: dict) -> dict:
    validator = RowValidator()
    layout = validator.layout(tuple(raw))
    return {
        name: cell_text(raw.get(key))[:200]
        for name, key in layout.fields.items()
        if name in ("mathml", "text")
    }


def rejection_message(result: Result) -> str:
    rows = ", ".join(str(row.number) for row in result.invalid_rows)
    details = "; ".join(
        _("row %(row)s: %(error)s") % {"row": row.number, "error": " ".join(row.error.messages)}
        for row in result.invalid_rows
    )
    return _("Nothing was imported: bad rows %(rows)s. %(details)s") % {
        "rows": rows,
        "details": details,
    }
