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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from django.conf import settings
from django.utils.translation import gettext as _

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


def allow_large_csv_fields() -> None:
    # The csv module refuses fields over 128 KiB; let MathML up to the configured limit
    # through so that parse_mathml reports "too large" with the row number instead.
    limit = max(settings.MATHCONV_MAX_MATHML_BYTES * 4, 1 << 20)
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)


def detect_encoding(fp: BinaryIO) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, or CP949 (Korean Excel's CSV)."""
    start = fp.tell()
    head = fp.read(4)
    fp.seek(start)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "cp949"):
        if undecodable_line(fp, encoding) is None:
            return encoding
    raise SourceError(
        _("could not detect the text encoding (tried UTF-8 and CP949); give it explicitly")
    )


def undecodable_line(fp: BinaryIO, encoding: str) -> int | None:
    """The number of the first line that does not decode, or None; fp is left where it was."""
    start = fp.tell()
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 0
    try:
        if encoding.replace("_", "-").lower().startswith("utf-16"):
            while chunk := fp.read(1 << 20):  # its newlines are two bytes: no line numbers
                decoder.decode(chunk)
        else:
            # In UTF-8 and the EUC-KR family a newline byte is never part of a character.
            for line, data in enumerate(fp, start=1):  # noqa: B007
                decoder.decode(data)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return max(line, 1)
    finally:
        fp.seek(start)
    return None


def _sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", "\t", ";")}
    return max(counts, key=lambda d: (counts[d], d == ","))


def _table_rows(
    headers: list[str], rows: Iterable[tuple[int, list[object]]]
) -> Iterator[tuple[int, dict[str, object]]]:
    width = len(headers)
    for number, values in rows:
        if len(values) > width and any(cell_text(v).strip() for v in values[width:]):
            raise SourceError(
                _("row has %(n)d cells but the header has %(width)d columns")
                % {"n": len(values), "width": width},
                row=number,
            )
        cells = [restore_neutralised(cell_text(v)) for v in values[:width]]
        cells += [""] * (width - len(cells))
        yield number, dict(zip(headers, cells, strict=True))


def csv_table(fp: BinaryIO, encoding: str | None = None) -> Table:
    allow_large_csv_fields()
    encoding = encoding or detect_encoding(fp)
    bad_line = undecodable_line(fp, encoding)
    if bad_line is not None:
        raise SourceError(
            _("line %(line)d cannot be decoded as %(enc)s; is that the file's encoding?")
            % {"line": bad_line, "enc": encoding}
        )
    text = io.TextIOWrapper(fp, encoding=encoding, newline="")
    first = text.readline()
    text.seek(0)
    reader = csv.reader(text, delimiter=_sniff_delimiter(first))
    number = 1
    try:
        headers = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
    except csv.Error as exc:
        raise SourceError(str(exc), row=1) from exc

    def numbered() -> Iterator[tuple[int, list[object]]]:
        nonlocal number
        try:
            for number, values in enumerate(reader, start=2):  # noqa: B007
                yield number, values
        except csv.Error as exc:
            raise SourceError(str(exc), row=number + 1) from exc

    return Table(rows=_table_rows(headers, numbered()), headers=headers, header_row=1)


def xlsx_table(fp: BinaryIO) -> Table:
    import openpyxl

    try:
        book = openpyxl.load_workbook(fp, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError, ValueError, ...
        raise SourceError(_("not a readable XLSX file: %(exc)s") % {"exc": exc}) from exc
    rows = book.active.iter_rows(values_only=True)
    headers = [cell_text(h).strip() for h in next(rows, ())]
    while headers and not headers[-1]:
        headers.pop()

    def numbered() -> Iterator[tuple[int, list[object]]]:
        try:
            for number, values in enumerate(rows, start=2):
                yield number, list(values)
        finally:
            book.close()

    return Table(rows=_table_rows(headers, numbered()), headers=headers, header_row=1)


_JSON_SEPARATORS = re.compile(r"[ \t\n\r,]*")


def json_table(fp: BinaryIO) -> Table:
    """A JSON array of objects, or JSON Lines, streamed object by object."""
    return Table(rows=_json_records(io.TextIOWrapper(fp, encoding="utf-8-sig")))


def _json_records(text: io.TextIOBase) -> Iterator[tuple[int, dict[str, object]]]:
    decoder = json.JSONDecoder()
    buf, pos, eof, in_array, number = "", 0, False, None, 0
    max_record = max(settings.MATHCONV_MAX_MATHML_BYTES * 8, 8 << 20)

    def fill() -> bool:
        nonlocal buf, pos, eof
        try:
            more = text.read(1 << 16)
        except UnicodeDecodeError as exc:
            raise SourceError(str(exc), row=number + 1) from exc
        eof = not more
        buf, pos = buf[pos:] + more, 0
        return not eof

    while True:
        pos = _JSON_SEPARATORS.match(buf, pos).end()
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
            # any valid question is broken JSON, and is not read into memory to the end.
            if not eof and len(buf) - pos < max_record and fill():
                continue
            raise SourceError(
                _("not valid JSON: %(exc)s") % {"exc": exc.msg}, row=number + 1
            ) from exc
        number += 1
        if not isinstance(value, dict):
            raise SourceError(_("each record must be a JSON object"), row=number)
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

        def rows() -> Iterator[tuple[int, dict[str, object]]]:
            try:
                yield from enumerate(cursor, start=1)
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
