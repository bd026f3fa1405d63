"""Turning raw rows into question records: column names, required fields, validation.

Shared by import_questions and the admin import (conversions.resources), so a row is
accepted or refused, with the same message, whichever way it comes in.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import lxml.html
from django.conf import settings
from django.db import models
from django.utils.translation import gettext as _
from lxml import etree

from conversions.converters import InvalidMathML, parse_mathml, split_document
from conversions.converters.parse import default_limits
from conversions.importing.sources import cell_text, json_depth
from conversions.models import Question
from conversions.stems import is_stem

QUESTION_FIELDS = ("mathml", "text", "subject", "grade", "metadata", "source_latex")
COLUMN_ALIASES = {
    "question_id": ("question_id", "id"),
    "mathml": ("mathml",),
    "text": ("text", "question_text", "content"),
    "subject": ("subject",),
    "grade": ("grade",),
    "metadata": ("metadata",),
    # The source's own LaTeX column as it is now (from a database: `SELECT ..., latex AS
    # source_latex`): export_results --to-db later leaves rows alone whose value there
    # changed since (Question.source_latex). An empty cell is "not given".
    "source_latex": ("source_latex",),
}
# Columns an export writes that are results, not input: importing an export ignores them.
RESULT_COLUMNS = frozenset(
    {
        "latex",
        "formulas",
        "conversion_state",
        "latex_locked",
        "latex_accepted_by",
        "latex_accepted_at",
        "labels",
        "labels_model",
        "labels_corrected",
        "labels_meta",
        "created_at",
        "updated_at",
        "latest_result",
        "latest_job_id",
        "latest_status",
        "latest_result_latex",
        "latest_validation_score",
        "latest_error_category",
        "latest_error_message",
        "latest_finished_at",
    }
)
# The export's (and the label CSV's) label_<field> columns are results too.
LABEL_COLUMN_PREFIX = "label_"
ALLOW_EMPTY_MATHML_HINT = "--allow-empty-mathml"


@dataclass(frozen=True)
class RowError:
    row: int | None  # None: the source as a whole (its columns, its encoding, ...)
    message: str
    question_id: str = ""

    def __str__(self) -> str:
        where = _("row %(row)s") % {"row": self.row} if self.row is not None else _("source")
        if self.question_id:
            where = f"{where} ({self.question_id})"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class QuestionRecord:
    """One valid input row. None means "not given": the field of an existing question stays."""

    row: int
    question_id: str
    mathml: str | None = None
    text: str | None = None
    subject: str | None = None
    grade: str | None = None
    metadata: dict | None = None
    source_latex: str | None = None

    def fingerprint(self) -> bytes:
        # repr is deterministic for the same input read twice (dicts keep their order).
        values = (self.row, self.question_id, *(getattr(self, f) for f in QUESTION_FIELDS))
        return repr(values).encode()


SCRIPT_ELEMENTS = frozenset({"script", "style", "iframe", "object", "embed", "foreignobject"})
SCRIPT_URL = re.compile(r"^\s*(javascript|vbscript|data)\s*:", re.IGNORECASE)


def unsafe_mathml_part(root) -> str:
    """The first part of a parsed MathML tree that scripts or styles a page, or "".

    Such input is refused at import rather than stored: the sanitiser would drop it on
    every page anyway, and a source that carries it is not a maths question bank's.
    Links to ordinary addresses and annotations are kept (the pages drop them).
    """
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue  # comments and processing instructions
        name = element.tag.rpartition("}")[2].lower()
        if name in SCRIPT_ELEMENTS:
            return f"<{name}>"
        for attribute, value in element.attrib.items():
            attribute = attribute.rpartition("}")[2].lower()
            if attribute.startswith("on") or (
                attribute in ("href", "src") and SCRIPT_URL.match(value)
            ):
                return f'{attribute}="{value[:40]}"'
    return ""


def stem_problems(text: str) -> list[str]:
    """Why a stem (HTML or text with formulas, converters.is_document) cannot be imported:
    markup that scripts or styles a page anywhere in it, or a formula that is not MathML.
    [] for a good stem. The formulas are named by position ("formula 2")."""
    max_bytes = default_limits()[0]
    if len(text.encode()) > max_bytes:
        return [
            _("invalid MathML: %(reason)s")
            % {
                "reason": _("too big: %(size)s bytes (the limit is %(max)s)")
                % {"size": f"{len(text.encode()):,}", "max": f"{max_bytes:,}"}
            }
        ]
    unsafe = ""
    try:
        unsafe = unsafe_mathml_part(lxml.html.fragment_fromstring(text, create_parent="div"))
        formulas = split_document(text).formulas
    except (ValueError, etree.ParserError) as exc:
        return [_("the question stem cannot be read: %(reason)s") % {"reason": exc}]
    if unsafe:
        return [
            _("MathML holds %(part)s, which is not maths and could run in a page")
            % {"part": unsafe}
        ]
    problems = []
    for number, formula in enumerate(formulas, start=1):
        try:
            unsafe = unsafe_mathml_part(parse_mathml(formula.mathml))
        except InvalidMathML as exc:
            problems.append(
                _("formula %(n)d of the stem: invalid MathML: %(reason)s")
                % {"n": number, "reason": exc}
            )
            continue
        if unsafe:
            problems.append(
                _("MathML holds %(part)s, which is not maths and could run in a page")
                % {"part": unsafe}
            )
    return problems


def has_nul(*values: object) -> bool:
    """Whether a NUL character is anywhere in these values, dict keys and nested lists included."""
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return False


def _max_length(name: str) -> int:
    """The max_length of one of Question's text fields."""
    field = Question._meta.get_field(name)
    if not isinstance(field, models.CharField) or field.max_length is None:
        raise TypeError(f"Question.{name} is not a CharField with a max_length")
    return field.max_length


def normalise_column(name: object) -> str:
    return re.sub(r"[\s\-]+", "_", cell_text(name).strip().lower())


@dataclass(frozen=True)
class Layout:
    """Where each question field comes from in one header (or one JSON record's keys)."""

    fields: dict[str, str]
    extra: tuple[str, ...]
    ignored: tuple[str, ...]


def layout_for(keys: Iterable[str]) -> Layout:
    fields: dict[str, str] = {}
    extra, ignored = [], []
    by_name: dict[str, str] = {}
    for key in keys:
        by_name.setdefault(normalise_column(key), key)
    used = set()
    for canonical, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in by_name:
                fields[canonical] = by_name[alias]
                used.add(alias)
                break
    for name, key in by_name.items():
        if name in used:
            continue
        if not name or name in RESULT_COLUMNS or str(name).startswith(LABEL_COLUMN_PREFIX):
            ignored.append(cell_text(key) or "(unnamed)")
        else:
            extra.append(key)
    return Layout(fields=fields, extra=tuple(extra), ignored=tuple(ignored))


def missing_columns(layout: Layout, *, allow_empty_mathml: bool) -> list[str]:
    missing = [] if "question_id" in layout.fields else ["question_id"]
    if "mathml" not in layout.fields:
        if not allow_empty_mathml:
            missing.append("mathml")
        elif "text" not in layout.fields:
            missing.append("mathml / text")
    return missing


class RowValidator:
    """Turns raw rows into QuestionRecords, or into the reasons they are rejected."""

    def __init__(self, *, allow_empty_mathml: bool = False, check: bool = True):
        self.allow_empty_mathml = allow_empty_mathml
        self.check = check  # False in the write pass: the rows were validated already
        self.first_row: dict[str, int] = {}
        self._layouts: dict[tuple, Layout] = {}
        self.ignored: set[str] = set()
        self._limits = {name: _max_length(name) for name in ("question_id", "subject", "grade")}
        # The MathML limits (MATHCONV_MAX_MATHML_BYTES / _DEPTH), read once per import.
        self._max_bytes, self._max_depth = default_limits()

    def layout(self, keys: tuple) -> Layout:
        layout = self._layouts.get(keys)
        if layout is None:
            layout = self._layouts[keys] = layout_for(keys)
            self.ignored.update(layout.ignored)
        return layout

    def header_problems(self, headers: list[str]) -> list[str]:
        layout = self.layout(tuple(headers))
        missing = missing_columns(layout, allow_empty_mathml=self.allow_empty_mathml)
        problems = [_("missing required column: %(col)s") % {"col": col} for col in missing]
        if "mathml" in missing and not self.allow_empty_mathml and "text" in layout.fields:
            problems.append(
                _(
                    "rows without MathML are accepted only with %(flag)s "
                    '(in the admin: the box "Allow rows without MathML")'
                )
                % {"flag": ALLOW_EMPTY_MATHML_HINT}
            )
        # Counted in one pass: a wide header must cost time linear in its width.
        counts = Counter(name for name in map(normalise_column, headers) if name)
        for name in sorted(name for name, count in counts.items() if count > 1):
            problems.append(_("column %(col)r appears more than once") % {"col": name})
        return problems

    def record(
        self, number: int, raw: Mapping[str, object]
    ) -> tuple[QuestionRecord | None, list[str]]:
        """(record, []) for a good row, (None, reasons) for a bad one, (None, []) for a blank."""
        if all(cell_text(v).strip() == "" for v in raw.values()):
            return None, []
        layout = self.layout(tuple(raw))
        if self.check:
            # Tables were checked once by their header; JSON records bring their own keys.
            missing = missing_columns(layout, allow_empty_mathml=self.allow_empty_mathml)
            if missing:
                return None, [_("missing field: %(col)s") % {"col": col} for col in missing]
            nul_columns = [cell_text(key) for key, value in raw.items() if has_nul(key, value)]
            if nul_columns:
                # PostgreSQL stores no NUL in text or JSON; SQLite would, and the row
                # would then break every later export to PostgreSQL.
                return None, [
                    _(
                        "%(cols)s: contains a NUL character (byte 0), which cannot be "
                        "stored; remove it from the file"
                    )
                    % {"cols": ", ".join(nul_columns)}
                ]
        get = {name: raw.get(key) for name, key in layout.fields.items()}
        question_id = cell_text(get.get("question_id")).strip()
        values: dict[str, Any] = {}  # QuestionRecord's fields
        # Identifiers and categories are trimmed; text and MathML are kept exactly as given.
        for name in ("subject", "grade"):
            if get.get(name) is not None:
                values[name] = cell_text(get[name]).strip()
        if get.get("text") is not None:
            values["text"] = cell_text(get["text"])
        mathml = cell_text(get.get("mathml"))
        if mathml.strip():
            values["mathml"] = mathml
        source_latex = cell_text(get.get("source_latex"))
        if source_latex.strip():
            values["source_latex"] = source_latex
        metadata, metadata_problem = self._metadata(raw, layout, get.get("metadata"))
        if metadata is not None:
            values["metadata"] = metadata
        if not self.check:
            return QuestionRecord(row=number, question_id=question_id, **values), []
        problems = self._problems(number, question_id, mathml, values)
        if metadata_problem:
            problems.append(metadata_problem)
        if problems:
            return None, problems
        return QuestionRecord(row=number, question_id=question_id, **values), []

    def _problems(self, number, question_id, mathml, values) -> list[str]:
        problems = []
        if not question_id:
            problems.append(_("question_id is empty"))
        elif len(question_id) > self._limits["question_id"]:
            problems.append(
                _("question_id is longer than %(n)d characters")
                % {"n": self._limits["question_id"]}
            )
        elif question_id in self.first_row:
            problems.append(
                _("duplicate question_id %(id)r (first seen in row %(row)d)")
                % {"id": question_id, "row": self.first_row[question_id]}
            )
        else:
            self.first_row[question_id] = number
        if mathml.strip() and is_stem(mathml):
            problems.extend(stem_problems(mathml))
        elif mathml.strip():
            try:
                root = parse_mathml(mathml, max_bytes=self._max_bytes, max_depth=self._max_depth)
                unsafe = unsafe_mathml_part(root)
            except InvalidMathML as exc:
                problems.append(_("invalid MathML: %(reason)s") % {"reason": exc})
            else:
                if unsafe:
                    problems.append(
                        _("MathML holds %(part)s, which is not maths and could run in a page")
                        % {"part": unsafe}
                    )
        elif not self.allow_empty_mathml:
            problems.append(_("MathML is empty"))
        elif not values.get("text", "").strip():
            problems.append(_("neither MathML nor text: nothing to import"))
        for name in ("subject", "grade"):
            if len(values.get(name) or "") > self._limits[name]:
                problems.append(
                    _("%(field)s is longer than %(n)d characters")
                    % {"field": name, "n": self._limits[name]}
                )
        return problems

    def _metadata(self, raw, layout, given) -> tuple[dict | None, str | None]:
        if "metadata" not in layout.fields and not layout.extra:
            return None, None
        metadata: dict = {}
        for key in layout.extra:
            value = raw.get(key)
            if isinstance(value, str):
                value = value.strip()
            if value not in (None, ""):
                metadata[cell_text(key).strip()] = value
        if isinstance(given, dict):
            return {**metadata, **given}, None
        if given is None and not layout.extra:
            return None, None  # a JSON null: not given
        given_text = cell_text(given).strip()
        if not given_text:
            return metadata, None
        try:
            parsed = json.loads(given_text)
        except json.JSONDecodeError as exc:
            return None, _("metadata is not valid JSON: %(exc)s") % {"exc": exc.msg}
        except RecursionError:
            return None, self._too_deep()
        if json_depth(parsed) > settings.MATHCONV_IMPORT_MAX_JSON_DEPTH:
            return None, self._too_deep()
        if not isinstance(parsed, dict):
            return None, _("metadata must be a JSON object")
        return {**metadata, **parsed}, None

    @staticmethod
    def _too_deep() -> str:
        return _(
            "metadata is nested deeper than %(max)d levels (MATHCONV_IMPORT_MAX_JSON_DEPTH)"
        ) % {"max": settings.MATHCONV_IMPORT_MAX_JSON_DEPTH}
