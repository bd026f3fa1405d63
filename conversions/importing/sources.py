"""Reading question sources row by row: CSV, XLSX and JSON files, a PostgreSQL table.

Each source yields (row number, {column: value}) pairs and can be read twice (the import
validates in a first pass and writes in a second). Row numbers are those a spreadsheet
shows: in CSV and XLSX the header is row 1; in JSON and database sources the first
record is row 1.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import openpyxl
from django.conf import settings
from django.utils.translation import gettext as _
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.formula import ArrayFormula, DataTableFormula

from conversions.exporting import restore_neutralised

FORMATS = ("csv", "xlsx", "json")
DEFAULT_DB_QUERY = (
    "SELECT question_id, mathml, subject, grade FROM questions WHERE mathml IS NOT NULL"
)


class SourceError(Exception):
    """The source cannot be read (further): a bad encoding, broken JSON, a refused query."""

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row


@dataclass
class Table:
    """Rows of a source as (row number, {column: value}); headers is None for JSON records."""

    rows: Iterator[tuple[int, dict[str, object]]]
    headers: list[str] | None = None
    header_row: int | None = None


@dataclass(frozen=True)
class Limits:
    """How much of a source an import reads before it refuses the source (settings.py).

    Every dimension is bounded before the work that depends on it: columns when the
    header (or a JSON record's keys) is read, rows as they are counted, a cell's length
    by the CSV reader itself, a JSON record's size and nesting as it is decoded.
    """

    columns: int
    rows: int
    cell_chars: int
    json_depth: int

    @classmethod
    def from_settings(cls, *, rows: int | None = None) -> Limits:
        return cls(
            columns=settings.MATHCONV_IMPORT_MAX_COLUMNS,
            rows=rows or settings.MATHCONV_IMPORT_MAX_ROWS,
            cell_chars=settings.MATHCONV_IMPORT_MAX_CELL_CHARS,
            json_depth=settings.MATHCONV_IMPORT_MAX_JSON_DEPTH,
        )

    def check_columns(self, count: int, row: int | None) -> None:
        if count > self.columns:
            raise SourceError(
                _(
                    "%(n)d columns: at most %(max)d are accepted "
                    "(MATHCONV_IMPORT_MAX_COLUMNS); remove the columns you do not need"
                )
                % {"n": count, "max": self.columns},
                row=row,
            )

    def check_rows(self, count: int, row: int) -> None:
        if count > self.rows:
            raise SourceError(
                _(
                    "more than %(max)d rows: split the file (the limit is "
                    "MATHCONV_IMPORT_MAX_ROWS, in the admin MATHCONV_ADMIN_IMPORT_MAX_ROWS)"
                )
                % {"max": self.rows},
                row=row,
            )

    def cell_too_long(self, row: int) -> SourceError:
        return SourceError(
            _(
                "a cell is longer than %(max)d characters (MATHCONV_IMPORT_MAX_CELL_CHARS); "
                "is a quote left open?"
            )
            % {"max": self.cell_chars},
            row=row,
        )

    def check_json_depth(self, value: object, row: int) -> None:
        if json_depth(value) > self.json_depth:
            raise SourceError(
                _("nested deeper than %(max)d levels (MATHCONV_IMPORT_MAX_JSON_DEPTH)")
                % {"max": self.json_depth},
                row=row,
            )


def json_depth(value: object) -> int:
    """How deep lists and dicts nest in a decoded JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth + 1)
            stack.extend((item, depth + 1) for item in value)
    return deepest


def detect_encoding(fp: BinaryIO) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, or CP949 (Korean Excel's CSV)."""
    start = fp.tell()
    head = fp.read(4)
    fp.seek(start)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    utf8_line = undecodable_line(fp, "utf-8")
    if utf8_line is None:
        return "utf-8"
    if undecodable_line(fp, "cp949") is None:
        return "cp949"
    raise SourceError(
        _(
            "line %(line)d is not UTF-8 (nor is the file CP949): save the file as UTF-8, "
            "or give its encoding explicitly"
        )
        % {"line": utf8_line}
    )


def undecodable_line(fp: BinaryIO, encoding: str) -> int | None:
    """The number of the first line that does not decode, or None; fp is left where it was.

    Read in 1 MiB chunks, so a file without line breaks is not read into memory whole.
    UTF-16's newlines are two bytes: its errors are reported as line 1 of a chunk's start.
    """
    start = fp.tell()
    decoder = codecs.getincrementaldecoder(encoding)()
    # In UTF-8 and the EUC-KR family a newline byte is never part of a character.
    count_lines = not encoding.replace("_", "-").lower().startswith("utf-16")
    line = 1
    try:
        while chunk := fp.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                if count_lines:
                    # The error's offset counts from what the decoder held back, a few
                    # bytes at most; the line is the chunk's lines before the bad byte.
                    line += chunk.count(b"\n", 0, max(exc.start - len(exc.object) + len(chunk), 0))
                return line
            if count_lines:
                line += chunk.count(b"\n")
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return line
    finally:
        fp.seek(start)
    return None


def _sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", "\t", ";")}
    return max(counts, key=lambda d: (counts[d], d == ","))


def _table_rows(
    headers: list[str],
    rows: Iterable[tuple[int, Sequence[object]]],
    limits: Limits,
    *,
    guarded: bool = False,
) -> Iterator[tuple[int, dict[str, object]]]:
    """guarded: the cells may carry the CSV export's formula guard (exporting.neutralise),
    which is taken off; XLSX exports write text cells and carry no guard."""
    width = len(headers)
    for count, (number, values) in enumerate(rows, start=1):
        limits.check_rows(count, number)
        if len(values) > width and any(cell_text(v).strip() for v in values[width:]):
            raise SourceError(
                _("row has %(n)d cells but the header has %(width)d columns")
                % {"n": len(values), "width": width},
                row=number,
            )
        cells = [cell_text(v) for v in values[:width]]
        if guarded:
            cells = [restore_neutralised(cell) for cell in cells]
        cells += [""] * (width - len(cells))
        yield number, dict(zip(headers, cells, strict=True))


def csv_table(fp: BinaryIO, encoding: str | None = None, limits: Limits | None = None) -> Table:
    limits = limits or Limits.from_settings()
    encoding = encoding or detect_encoding(fp)
    bad_line = undecodable_line(fp, encoding)
    if bad_line is not None:
        raise SourceError(
            _("line %(line)d cannot be decoded as %(enc)s; is that the file's encoding?")
            % {"line": bad_line, "enc": encoding}
        )
    text = io.TextIOWrapper(fp, encoding=encoding, newline="")
    # The delimiter is guessed from the header's start: a header line is never read whole.
    first = text.readline(1 << 16)
    text.seek(0)
    reader = _BoundedReader(text, _sniff_delimiter(first), limits)
    headers = [h.strip().lstrip("\ufeff") for h in reader.next_row(1) or []]
    limits.check_columns(len(headers), 1)
    if not any(headers):
        raise SourceError(_("the file is empty: no header row"), row=1)

    def numbered() -> Iterator[tuple[int, list[str]]]:
        number = 2
        while (values := reader.next_row(number)) is not None:
            yield number, values
            number += 1

    return Table(
        rows=_table_rows(headers, numbered(), limits, guarded=True), headers=headers, header_row=1
    )


class _BoundedReader:
    """csv.reader with the cell length bounded and its errors as SourceErrors naming the row."""

    def __init__(self, text: io.TextIOBase, delimiter: str, limits: Limits):
        self.limits = limits
        self.reader = csv.reader(text, delimiter=delimiter)

    def next_row(self, number: int) -> list[str] | None:
        # field_size_limit is process-wide: set it for each row, as another import (a
        # thread of the same web process) may run with other limits.
        csv.field_size_limit(self.limits.cell_chars)
        try:
            return next(self.reader, None)
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise self.limits.cell_too_long(number) from exc
            raise SourceError(_("not readable as CSV: %(exc)s") % {"exc": exc}, row=number) from exc


def xlsx_table(fp: BinaryIO, limits: Limits | None = None) -> Table:
    """The first sheet's rows, as the values Excel saved with the file.

    The sheet is read twice side by side, once for the saved values and once for the
    formulas, so that a formula cell without a saved value (a file written by a program,
    never opened in Excel) is refused instead of read as empty.
    """

    limits = limits or Limits.from_settings()
    try:
        values_book = openpyxl.load_workbook(fp, read_only=True, data_only=True)
        fp.seek(0)
        formulas_book = openpyxl.load_workbook(fp, read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises zipfile, KeyError, ValueError, ...
        raise SourceError(
            _("not a readable XLSX file (%(exc)s); is it really an .xlsx workbook?") % {"exc": exc}
        ) from exc
    values_sheet, formulas_sheet = values_book.active, formulas_book.active
    if values_sheet is None or formulas_sheet is None:  # the active tab names no sheet
        _close(values_book, formulas_book)
        raise SourceError(
            _("not a readable XLSX file (%(exc)s); is it really an .xlsx workbook?")
            % {"exc": "no active sheet"}
        )
    sheets = [values_sheet, formulas_sheet]
    for sheet in sheets:
        # A sheet's stated dimensions can be anything: rows are read as long as they are.
        sheet.reset_dimensions()
    value_rows, formula_rows = (sheet.iter_rows(values_only=True) for sheet in sheets)

    def checked(number: int) -> list[object] | None:
        values = next(value_rows, None)
        formulas = next(formula_rows, None)
        if values is None:
            return None
        limits.check_columns(len(values), number)
        for column, (value, formula) in enumerate(zip(values, formulas or (), strict=False)):
            if value is None and _is_formula(formula):
                raise SourceError(
                    _(
                        "column %(col)s holds a formula without a saved value (%(formula)s); "
                        "open and save the file in Excel, or paste the values"
                    )
                    % {"col": _column_letter(column), "formula": str(formula)[:80]},
                    row=number,
                )
        return list(values)

    try:
        headers = [cell_text(h).strip() for h in checked(1) or ()]
    except BaseException:
        _close(values_book, formulas_book)
        raise
    while headers and not headers[-1]:
        headers.pop()

    def numbered() -> Iterator[tuple[int, list[object]]]:
        number = 2
        try:
            while (values := checked(number)) is not None:
                yield number, values
                number += 1
        finally:
            _close(values_book, formulas_book)

    return Table(rows=_table_rows(headers, numbered(), limits), headers=headers, header_row=1)


def _is_formula(value: object) -> bool:
    if isinstance(value, ArrayFormula | DataTableFormula):
        return True
    return isinstance(value, str) and value.startswith("=")


def _column_letter(index: int) -> str:
    return get_column_letter(index + 1)


def _close(*books) -> None:
    for book in books:
        book.close()


_JSON_SEPARATORS = re.compile(r"[ \t\n\r,]*")


def json_table(fp: BinaryIO, limits: Limits | None = None) -> Table:
    """A JSON array of objects, or JSON Lines, streamed object by object.

    JSON is UTF-8 (RFC 8259): a file that is not is refused first, naming its line.
    """
    limits = limits or Limits.from_settings()
    bad_line = undecodable_line(fp, "utf-8")
    if bad_line is not None:
        raise SourceError(
            _("line %(line)d is not valid UTF-8; JSON files must be UTF-8") % {"line": bad_line}
        )
    text = io.TextIOWrapper(fp, encoding="utf-8-sig")
    return Table(rows=_json_records(text, limits))


def _json_records(text: io.TextIOBase, limits: Limits) -> Iterator[tuple[int, dict[str, object]]]:
    decoder = json.JSONDecoder()
    buf, pos, eof, in_array, number = "", 0, False, None, 0
    # A record holds at most a few cells of the longest allowed length.
    max_record = limits.cell_chars * 4

    def fill() -> bool:
        nonlocal buf, pos, eof
        more = text.read(1 << 16)
        eof = not more
        buf, pos = buf[pos:] + more, 0
        return not eof

    while True:
        gap = _JSON_SEPARATORS.match(buf, pos)
        assert gap is not None  # the pattern matches the empty string too
        pos = gap.end()
        if pos == len(buf):
            if fill():
                continue
            if in_array:
                raise SourceError(_("not valid JSON: the array is not closed"), row=number + 1)
            return
        if in_array is None:
            in_array = buf[pos] == "["
            pos += in_array
            continue
        if in_array and buf[pos] == "]":
            return
        try:
            value, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            # Most likely the record goes on in the next chunk; a record far larger than
            # any valid question is refused, and is not read into memory to the end.
            if len(buf) - pos >= max_record:
                raise SourceError(
                    _(
                        "record larger than %(max)d characters (4 x "
                        "MATHCONV_IMPORT_MAX_CELL_CHARS), or a bracket or quote left open"
                    )
                    % {"max": max_record},
                    row=number + 1,
                ) from exc
            if not eof and fill():
                continue
            raise SourceError(
                _("not valid JSON: %(exc)s") % {"exc": exc.msg}, row=number + 1
            ) from exc
        except RecursionError as exc:
            raise SourceError(
                _("nested deeper than %(max)d levels (MATHCONV_IMPORT_MAX_JSON_DEPTH)")
                % {"max": limits.json_depth},
                row=number + 1,
            ) from exc
        number += 1
        limits.check_rows(number, number)
        if not isinstance(value, dict):
            raise SourceError(_("each record must be a JSON object"), row=number)
        limits.check_columns(len(value), number)
        limits.check_json_depth(value, number)
        yield number, value
        pos = end


def cell_text(value: object) -> str:
    """A cell or field as text: numbers without a spurious .0, dates in ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class FileSource:
    def __init__(self, path: str | Path, *, fmt: str | None = None, encoding: str | None = None):
        self.path = Path(path)
        self.fmt = fmt or guess_format(self.path)
        self.encoding = encoding
        if self.fmt not in FORMATS:
            raise SourceError(
                _("unknown format %(fmt)r (use one of: %(all)s)")
                % {"fmt": self.fmt, "all": ", ".join(FORMATS)}
            )
        if encoding:
            try:
                codecs.lookup(encoding)
            except LookupError as exc:
                raise SourceError(_("unknown encoding %(enc)r") % {"enc": encoding}) from exc

    @property
    def label(self) -> str:
        return f"{self.path.name} [{self.fmt}]"

    def __enter__(self) -> FileSource:
        try:
            with self.path.open("rb") as fp:
                if self.fmt == "csv" and not self.encoding:
                    self.encoding = detect_encoding(fp)
        except OSError as exc:
            raise SourceError(str(exc)) from exc
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    @contextmanager
    def table(self) -> Iterator[Table]:
        with self.path.open("rb") as fp:
            if self.fmt == "csv":
                yield csv_table(fp, self.encoding)
            elif self.fmt == "xlsx":
                yield xlsx_table(fp)
            else:
                yield json_table(fp)


def guess_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"jsonl": "json", "ndjson": "json", "tsv": "csv", "txt": "csv"}.get(suffix, suffix)


class DatabaseSource:
    """An existing PostgreSQL question table, read-only.

    Both passes run in one REPEATABLE READ, READ ONLY transaction, so they see the same
    snapshot, and whatever the query is, the server refuses to write (a data-modifying
    statement, nextval(), a function that writes). Rows stream through a server-side cursor.
    """

    def __init__(self, url: str, query: str = DEFAULT_DB_QUERY):
        self.url = url
        self.query = query
        self._passes = 0

    @property
    def label(self) -> str:
        parsed = urlparse(self.url)  # never show the password
        where = f"{parsed.hostname or 'localhost'}{parsed.path}" if parsed.scheme else "database"
        return f"{where} [query]"

    def __enter__(self) -> DatabaseSource:
        import psycopg

        try:
            self.conn = psycopg.connect(self.url, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise SourceError(_("cannot connect: %(exc)s") % {"exc": _first_line(exc)}) from exc
        self.conn.read_only = True
        self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return self

    def __exit__(self, *exc_info) -> None:
        self.conn.rollback()
        self.conn.close()

    @contextmanager
    def table(self) -> Iterator[Table]:
        import psycopg
        from psycopg.rows import dict_row

        self._passes += 1
        cursor = self.conn.cursor(name=f"mathconv_import_{self._passes}", row_factory=dict_row)
        cursor.itersize = 2000
        try:
            cursor.execute(self.query)
        except psycopg.Error as exc:
            raise SourceError(
                _("the source database refused the query: %(exc)s") % {"exc": _first_line(exc)}
            ) from exc
        headers = [column.name for column in cursor.description or []]
        limits = Limits.from_settings()
        limits.check_columns(len(headers), 1)

        def rows() -> Iterator[tuple[int, dict[str, object]]]:
            try:
                for number, row in enumerate(cursor, start=1):
                    limits.check_rows(number, number)
                    yield number, row
            except psycopg.Error as exc:
                raise SourceError(
                    _("the source database refused the query: %(exc)s") % {"exc": _first_line(exc)}
                ) from exc

        try:
            yield Table(rows=rows(), headers=headers)
        finally:
            with suppress(psycopg.Error):
                cursor.close()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class RecordsSource:
    """Plain dicts produced by a function (demo data, other apps' code)."""

    def __init__(self, records: Callable[[], Iterable[Mapping[str, object]]], label: str):
        self.records = records
        self.label = label

    def __enter__(self) -> RecordsSource:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    @contextmanager
    def table(self) -> Iterator[Table]:
        yield Table(rows=((n, dict(r)) for n, r in enumerate(self.records(), start=1)))
