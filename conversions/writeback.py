"""Writing results back into an external PostgreSQL table (`export_results --to-db`).

Each question's LaTeX goes into `column` of the row whose `key_column` is its
question_id, in batches; each batch is one transaction on the target, with its rows
locked (SELECT ... FOR UPDATE) between the comparison and the UPDATE, so a batch is
written whole or not at all. Identifiers are quoted with psycopg.sql; values are
parameters.

A row is left alone, and reported, when its value there is no longer the one mathconv
last knew (Question.source_latex: read at import from a `source_latex` column, or
written by an earlier write-back), i.e. it was changed there since; when mathconv never
knew a value, only an empty (NULL or '') value there is overwritten. `force` writes
such rows too. Rows that already hold the result are not written again. LaTeX carrying
a command that links, styles or scripts (DESIGN invariant 11) is never written.

A dry run reads in READ ONLY transactions and changes nothing, here or there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

import psycopg
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from psycopg import sql

from conversions.converters.commands import forbidden_commands
from conversions.models import Question

DEFAULT_BATCH_SIZE = 500
LISTED = 20  # conflicts, missing keys, ... named in the report
SHOWN_CHARS = 80


class WriteBackError(Exception):
    """The write-back cannot go on; the message names the table, column or question.
    Batches before the one that failed stay written: `report` says how many."""

    def __init__(self, message: str, report: WriteBackReport | None = None):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Target:
    url: str
    table: str  # "questions" or "schema.questions"
    key_column: str = "question_id"
    column: str = "latex"

    @property
    def label(self) -> str:
        """Host, database and table, never the password."""
        parsed = urlparse(self.url)
        where = f"{parsed.hostname or 'localhost'}{parsed.path}" if parsed.scheme else "database"
        return f"{where} {self.table}.{self.column}"

    def table_sql(self) -> sql.Composable:
        return sql.Identifier(*self.table.split(".", 1))


@dataclass(frozen=True)
class Change:
    question_id: str
    there: str | None  # the value in the target now
    ours: str

    def __str__(self) -> str:
        return f"{self.question_id}: {_shown(self.there)} -> {_shown(self.ours)}"


def _shown(value: str | None) -> str:
    """A value for a terminal: quoted, cut to SHOWN_CHARS, control characters escaped
    (the value there comes from another system)."""
    if value is None:
        return "NULL"
    text = value if len(value) <= SHOWN_CHARS else value[: SHOWN_CHARS - 1] + "…"
    return '"' + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text) + '"'


@dataclass
class WriteBackReport:
    target: str
    dry_run: bool
    force: bool
    selected: int = 0
    written: int = 0  # rows updated there (dry run: would be)
    overwritten: int = 0  # of those, changed there since the import (force)
    unchanged: int = 0  # already held the result
    batches: int = 0  # committed (dry run: read)
    samples: list[Change] = field(default_factory=list)
    conflicts: list[Change] = field(default_factory=list)
    conflict_count: int = 0
    missing: list[str] = field(default_factory=list)
    missing_count: int = 0
    duplicates: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        counts = {
            "target": self.target,
            "n": self.selected,
            "w": self.written,
            "u": self.unchanged,
            "c": self.conflict_count,
            "m": self.missing_count,
            "b": self.batches,
        }
        if self.dry_run:
            lines = [
                _(
                    "Dry run on %(target)s: %(n)d results; would update %(w)d rows, %(u)d "
                    "already hold the result, %(c)d changed there since the import, %(m)d "
                    "not found. Nothing was changed."
                )
                % counts
            ]
            if self.samples:
                lines.append(_("Sample of the changes (value there -> result):"))
                lines += [f"  {change}" for change in self.samples]
        else:
            lines = [
                _(
                    "%(target)s: %(n)d results; updated %(w)d rows in %(b)d batch(es), %(u)d "
                    "already held the result, %(c)d changed there since the import, %(m)d "
                    "not found."
                )
                % counts
            ]
        if self.overwritten:
            lines.append(
                _("%(n)d of them had been changed there since the import (--force).")
                % {"n": self.overwritten}
            )
        if self.conflicts:
            lines.append(
                _(
                    "Left alone, changed there since the import (value there -> result; "
                    "--force overwrites them):"
                )
            )
            lines += [f"  {change}" for change in self.conflicts]
            lines += _more(self.conflict_count, len(self.conflicts))
        if self.missing:
            lines.append(_("No row there for: %(ids)s") % {"ids": ", ".join(self.missing)})
            lines += _more(self.missing_count, len(self.missing))
        if self.duplicates:
            lines.append(
                _("Left alone, more than one row there: %(ids)s")
                % {"ids": ", ".join(self.duplicates)}
            )
        if self.withheld:
            lines.append(
                _("Not written, LaTeX with a command that links, styles or scripts: %(ids)s")
                % {"ids": ", ".join(self.withheld)}
            )
        return lines


def _more(total: int, shown: int) -> list[str]:
    return [_("  ... and %(n)d more") % {"n": total - shown}] if total > shown else []


@dataclass(frozen=True)
class _Row:
    pk: int
    question_id: str
    latex: str
    source_latex: str


def write_back(
    questions: QuerySet[Question],
    target: Target,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    force: bool = False,
    sample: int = 5,
) -> WriteBackReport:
    """Write the questions' LaTeX into the target table; see the module docstring.

    Raises WriteBackError (connection, a missing table or column, a column that does not
    hold text, a key or value the target refuses, naming the question) with the batches
    before it committed; report.batches in the exception's report attribute.
    """
    report = WriteBackReport(target=target.label, dry_run=dry_run, force=force)
    try:
        conn = psycopg.connect(target.url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise WriteBackError(_("cannot connect: %(exc)s") % {"exc": _first_line(exc)}) from exc
    with conn:
        columns = _check_columns(conn, target)
        _check_lengths(questions, target, columns.max_chars)
        for batch in _batches(questions, batch_size):
            try:
                _batch(conn, target, columns.key_type, batch, report, sample=sample)
            except WriteBackError as exc:
                exc.report = report
                raise
    return report


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class _Columns:
    key_type: sql.Composable  # the key column's type, to cast our keys to
    max_chars: int | None  # varchar(n) / char(n): n; None: any length


def _check_columns(conn: psycopg.Connection, target: Target) -> _Columns:
    """Check that the table and both columns exist and that the value column holds text
    (a string type: text, varchar, char); the key column's type and the value's bound."""
    quoted = target.table_sql().as_string(conn)
    # The key's type by its qualified name, without its modifier: a cast to varchar(5)
    # or char(n) would cut a longer key short and match another row.
    found = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory,"
        " t.typname, a.atttypmod, format('%%I.%%I', n.nspname, t.typname)"
        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        [quoted],
    ).fetchall()
    if not found:
        raise WriteBackError(
            _("table %(table)s does not exist there (or has no columns)") % {"table": target.table}
        )
    columns = {row[0]: row[1:] for row in found}
    for name in (target.key_column, target.column):
        if name not in columns:
            raise WriteBackError(
                _("table %(table)s has no column %(column)s (it has: %(columns)s)")
                % {"table": target.table, "column": name, "columns": ", ".join(sorted(columns))}
            )
    value_type, category, base, typmod, _name = columns[target.column]
    if category != "S":
        raise WriteBackError(
            _("column %(column)s is of type %(type)s; LaTeX is written only into a text column")
            % {"column": target.column, "type": value_type}
        )
    # varchar(n) and char(n) store n + 4 in atttypmod; -1 means no bound.
    bounded = base in ("varchar", "bpchar") and typmod > 4
    return _Columns(
        key_type=sql.SQL(columns[target.key_column][4]),
        max_chars=typmod - 4 if bounded else None,
    )


def _check_lengths(questions: QuerySet[Question], target: Target, max_chars: int | None) -> None:
    """Refuse before writing anything when a result is longer than the column holds."""
    if max_chars is None:
        return
    for batch in _batches(questions, DEFAULT_BATCH_SIZE):
        for row in batch:
            if len(row.latex) > max_chars:
                raise WriteBackError(
                    _(
                        "question %(id)s: its LaTeX has %(n)d characters, column %(column)s "
                        "holds at most %(max)d; nothing was written"
                    )
                    % {
                        "id": row.question_id,
                        "n": len(row.latex),
                        "column": target.column,
                        "max": max_chars,
                    }
                )


def _batches(questions: QuerySet[Question], size: int) -> Iterator[list[_Row]]:
    values = questions.order_by("pk").values_list("pk", "question_id", "latex", "source_latex")
    last = 0
    while chunk := list(values.filter(pk__gt=last)[:size]):
        yield [_Row(*row) for row in chunk]
        last = chunk[-1][0]


def _batch(conn, target: Target, key_type, batch: list[_Row], report, *, sample: int) -> None:
    report.selected += len(batch)
    writable = []
    for row in batch:
        if forbidden_commands(row.latex):
            _note(report.withheld, row.question_id)
        else:
            writable.append(row)
    if not writable:
        return
    keys = [row.question_id for row in writable]
    counted = (report.written, report.overwritten)
    try:
        with conn.transaction():
            if report.dry_run:
                conn.execute("SET TRANSACTION READ ONLY")
            there = _read(conn, target, key_type, keys, lock=not report.dry_run)
            updates, same = _classify(writable, there, report, sample=sample)
            if updates and not report.dry_run:
                _update(conn, target, key_type, updates)
    except psycopg.Error as exc:
        report.written, report.overwritten = counted  # the batch was rolled back
        if not isinstance(exc, psycopg.DataError):
            raise WriteBackError(
                _("the target refused the batch starting at question %(id)s: %(exc)s")
                % {"id": keys[0], "exc": _first_line(exc)}
            ) from exc
        blamed = _blame(conn, target, key_type, writable, exc, dry_run=report.dry_run)
        raise WriteBackError(blamed) from exc
    except WriteBackError:
        report.written, report.overwritten = counted
        raise
    report.batches += 1
    if not report.dry_run:
        _remember(updates + same)


def _note(names: list[str], name: str) -> None:
    if len(names) < LISTED:
        names.append(name)


def _read(conn, target: Target, key_type, keys: list[str], *, lock: bool) -> dict:
    """{question_id: [value there, ...]} for the rows whose key is one of keys."""
    query = sql.SQL(
        "SELECT k.ours, t.{column} FROM unnest(%s::text[]) AS k(ours)"
        " JOIN {table} AS t ON t.{key} = CAST(k.ours AS {key_type}){lock}"
    ).format(
        column=sql.Identifier(target.column),
        table=target.table_sql(),
        key=sql.Identifier(target.key_column),
        key_type=key_type,
        lock=sql.SQL(" FOR UPDATE OF t" if lock else ""),
    )
    found: dict[str, list[str | None]] = defaultdict(list)
    for key, value in conn.execute(query, [keys]):
        found[key].append(value)
    return found


def _classify(
    rows: list[_Row], there: dict, report: WriteBackReport, *, sample: int
) -> tuple[list[_Row], list[_Row]]:
    """(rows to write, rows that already hold the result), counting the rest."""
    updates, same = [], []
    for row in rows:
        values = there.get(row.question_id, [])
        if not values:
            report.missing_count += 1
            _note(report.missing, row.question_id)
            continue
        if len(values) > 1:
            _note(report.duplicates, row.question_id)
            continue
        value = values[0]
        if value == row.latex:
            report.unchanged += 1
            same.append(row)
            continue
        change = Change(row.question_id, value, row.latex)
        # What mathconv last knew there; never known: only an empty value is free.
        changed_there = (value or "") != row.source_latex
        if changed_there and not report.force:
            report.conflict_count += 1
            if len(report.conflicts) < LISTED:
                report.conflicts.append(change)
            continue
        report.written += 1
        report.overwritten += changed_there
        if len(report.samples) < sample:
            report.samples.append(change)
        updates.append(row)
    return updates, same


def _update(conn, target: Target, key_type, updates: list[_Row]) -> None:
    query = sql.SQL(
        "UPDATE {table} AS t SET {column} = v.val"
        " FROM unnest(%s::text[], %s::text[]) AS v(k, val)"
        " WHERE t.{key} = CAST(v.k AS {key_type})"
    ).format(
        table=target.table_sql(),
        column=sql.Identifier(target.column),
        key=sql.Identifier(target.key_column),
        key_type=key_type,
    )
    cursor = conn.execute(query, [[r.question_id for r in updates], [r.latex for r in updates]])
    if cursor.rowcount != len(updates):
        raise WriteBackError(
            _("the batch starting at question %(id)s updated %(n)d rows instead of %(m)d")
            % {"id": updates[0].question_id, "n": cursor.rowcount, "m": len(updates)}
        )


def _remember(rows: list[_Row]) -> None:
    """After the batch committed there: what the target now holds for these rows (the
    result, written now or before) becomes the value mathconv knows there."""
    known = [Question(pk=row.pk, source_latex=row.latex) for row in rows]
    Question.objects.bulk_update(known, ["source_latex"], batch_size=500)


def _blame(
    conn, target: Target, key_type, rows: list[_Row], exc: psycopg.Error, *, dry_run: bool
) -> str:
    """The message for a batch the target refused as bad data, naming the first question
    whose key (or, writing, value) it refuses on its own, each tried in a savepoint of a
    transaction that is rolled back (read only in a dry run)."""
    if dry_run:
        probe = sql.SQL("SELECT CAST(%s::text AS {key_type})").format(key_type=key_type)
    else:
        probe = sql.SQL(
            "UPDATE {table} SET {column} = %s WHERE {key} = CAST(%s::text AS {key_type})"
        ).format(
            table=target.table_sql(),
            column=sql.Identifier(target.column),
            key=sql.Identifier(target.key_column),
            key_type=key_type,
        )
    culprit, reason = rows[0].question_id, _first_line(exc)
    try:
        with conn.transaction():
            if dry_run:
                conn.execute("SET TRANSACTION READ ONLY")
            for row in rows:
                try:
                    with conn.transaction():
                        params = [row.question_id] if dry_run else [row.latex, row.question_id]
                        conn.execute(probe, params)
                except psycopg.DataError as row_exc:
                    culprit, reason = row.question_id, _first_line(row_exc)
                    break
            raise psycopg.Rollback
    except psycopg.Error:
        pass
    return _("question %(id)s: the target refused it (%(reason)s); this batch was not written") % {
        "id": culprit,
        "reason": reason,
    }
