import csv
import io
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openpyxl import load_workbook

from conversions.exporting import (
    export_bytes,
    neutralise,
    restore_neutralised,
    tabular_columns,
)
from conversions.importing import RESULT_COLUMNS, import_file
from conversions.models import Item, Job, Question
from conversions.resources import QuestionResource

pytestmark = pytest.mark.django_db

# Question texts a spreadsheet would run as formulas (the CSV guard's rule:
# exporting.spreadsheet_formula), and texts it reads as numbers or text.
DANGEROUS = ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\t=x", "\r+y", "\uff1dHYPERLINK()", "-x^2"]
HARMLESS = ["-2", "+1.5", "-3%", "\tx", "a=1", "'x", "수학", ""]


@pytest.fixture
def bank():
    plain = Question.objects.create(
        question_id="E-1",
        mathml="<math><mi>x</mi><mo>&lt;</mo><mn>1</mn></math>",
        text="부등식을 푸시오.",
        subject="수학",
        grade="중2",
        metadata={"unit": "부등식", "tags": ["a", "b"], "n": 1.5},
        latex=r"-x^{2}",
        conversion_state=Question.ConversionState.APPROVED,
        latex_locked=True,
        labels={"difficulty": 2},
        labels_corrected={"difficulty": 3},
    )
    hostile = [
        Question.objects.create(
            question_id=f"E-{i + 2}",
            mathml="<math><mn>1</mn></math>",
            text=value,
            subject="=cmd|' /C calc'!A0" if i == 0 else "수학",
        )
        for i, value in enumerate(DANGEROUS)
    ]
    old = Job.objects.create(kind=Job.Kind.CONVERT)
    new = Job.objects.create(kind=Job.Kind.CONVERT)
    label = Job.objects.create(kind=Job.Kind.LABEL)
    Item.objects.create(job=old, question=plain, status="failed", error_category="timeout")
    Item.objects.create(
        job=new,
        question=plain,
        status="succeeded",
        result_latex="-x^2",
        validation_score=0.75,
    )
    Item.objects.create(job=label, question=plain, status="succeeded", result_labels={"a": 1})
    return plain, hostile, new


def csv_rows(data: bytes) -> list[dict]:
    assert data.startswith(b"\xef\xbb\xbf")  # a BOM, so Excel reads the Korean text right
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def test_neutralise_guards_only_what_a_spreadsheet_would_run():
    assert [neutralise(v) for v in DANGEROUS] == ["'" + v for v in DANGEROUS]
    assert [neutralise(v) for v in [*HARMLESS, 3, -1.5, None]] == [*HARMLESS, 3, -1.5, None]
    # An apostrophe already in front of a formula gets one more, so the guard is undone
    # exactly on import.
    assert neutralise("'=x") == "''=x"
    for value in [*DANGEROUS, *HARMLESS, "'=x", "''-y"]:
        assert restore_neutralised(neutralise(value)) == value


def test_csv_export_keeps_latex_exact_and_guards_only_formulas(bank):
    plain, hostile, new_job = bank
    rows = csv_rows(export_bytes(Question.objects.all(), "csv"))

    assert list(rows[0]) == tabular_columns()
    assert "labels" not in rows[0] and "label_difficulty" in rows[0]
    first = rows[0]
    assert first["question_id"] == "E-1"
    assert first["text"] == "부등식을 푸시오."
    assert first["latex"] == "-x^{2}"  # LaTeX is data: never guarded
    assert first["conversion_state"] == "approved"
    assert first["latex_locked"] == "true"
    assert first["label_difficulty"] == "3"  # the reviewer's correction wins
    assert json.loads(first["metadata"]) == plain.metadata
    assert first["latest_job_id"] == str(new_job.pk)
    assert first["latest_result_latex"] == "-x^2"
    assert first["latest_status"] == "succeeded"
    assert first["latest_validation_score"] == "0.75"
    assert [row["text"] for row in rows[1:]] == ["'" + v for v in DANGEROUS]
    assert rows[1]["subject"] == "'=cmd|' /C calc'!A0"


def test_xlsx_export_writes_every_string_as_a_text_cell(bank):
    book = load_workbook(io.BytesIO(export_bytes(Question.objects.all(), "xlsx")))
    sheet = book.active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == tabular_columns()
    strings = [cell for row in sheet.iter_rows() for cell in row if isinstance(cell.value, str)]
    assert strings and all(c.data_type == "s" and c.number_format == "@" for c in strings)
    first = dict(zip(rows[0], rows[1], strict=True))
    assert [r[2] for r in rows[2:]] == DANGEROUS  # exactly, as text cells
    assert first["latex"] == "-x^{2}"
    assert first["latest_validation_score"] == 0.75  # numbers stay numbers
    assert first["updated_at"].endswith("+09:00")  # Asia/Seoul, as the pages


def test_json_export_is_lossless(bank):
    plain, hostile, new_job = bank
    records = json.loads(export_bytes(Question.objects.all(), "json"))

    assert [r["question_id"] for r in records] == ["E-1", *(q.question_id for q in hostile)]
    first = records[0]
    assert first["metadata"] == {"unit": "부등식", "tags": ["a", "b"], "n": 1.5}
    assert first["latex"] == r"-x^{2}"
    assert (first["labels"], first["labels_model"], first["labels_corrected"]) == (
        {"difficulty": 3},
        {"difficulty": 2},
        {"difficulty": 3},
    )
    assert first["latest_result"]["job_id"] == new_job.pk
    assert first["latest_result"]["result_latex"] == "-x^2"
    assert first["latest_result"]["validation_score"] == 0.75
    assert [r["text"] for r in records[1:]] == DANGEROUS
    assert records[1]["latest_result"] is None


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_an_export_imports_back_unchanged(bank, tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    path.write_bytes(export_bytes(Question.objects.all(), fmt))
    before = list(Question.objects.order_by("pk").values())

    report = import_file(path)

    assert report.ok, report.lines()
    assert (report.created, report.updated, report.skipped) == (0, 0, 1 + len(DANGEROUS))
    assert list(Question.objects.order_by("pk").values()) == before


def test_every_export_column_is_imported_or_a_known_result_column():
    importable = {"question_id", "mathml", "text", "subject", "grade", "metadata", "source_latex"}
    labels = {c for c in tabular_columns() if c.startswith("label_")}
    assert labels  # the default schema's fields, one column each
    assert set(tabular_columns()) - importable - labels <= RESULT_COLUMNS
    record_keys = {"labels_model", "labels_corrected", "labels_meta", "created_at"}
    assert record_keys | {"latest_result"} <= RESULT_COLUMNS


def test_export_reads_a_constant_number_of_queries(bank):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            export_bytes(Question.objects.all(), "csv")
        return len(queries)

    few = count()
    for i in range(30):
        question = Question.objects.create(question_id=f"X-{i}", mathml="<math/>")
        Item.objects.create(job=bank[2], question=question, status="succeeded")
    assert count() == few


def test_export_pages_through_all_questions(bank):
    from conversions.exporting import question_records

    ids = [r["question_id"] for r in question_records(Question.objects.all(), page_size=3)]
    assert ids == ["E-1", *(f"E-{i + 2}" for i in range(len(DANGEROUS)))]


def test_export_questions_command(bank, tmp_path):
    out = StringIO()
    target = tmp_path / "sub" / "questions.csv"
    call_command("export_questions", str(target), "--subject", "수학", stdout=out)
    assert out.getvalue().strip() == f"Exported {len(DANGEROUS)} questions to {target} (csv)."
    assert [r["question_id"] for r in csv_rows(target.read_bytes())][0] == "E-1"

    out = StringIO()
    target = tmp_path / "q.data"
    call_command("export_questions", str(target), "--format", "json", stdout=out)
    assert len(json.loads(target.read_text())) == 1 + len(DANGEROUS)
    assert list(tmp_path.glob(".*part")) == []


def test_the_librarys_own_export_path_is_neutralised_too(bank):
    dataset = QuestionResource().export(Question.objects.all())
    assert dataset.headers == tabular_columns()
    assert dataset["text"][1:] == ["'" + v for v in DANGEROUS]


# --- what leaves mathconv is what it holds (issue 12, issue 13 hole 5) -------------------

TRICKY = [
    "-2",
    "=1+2",
    "+x",
    "@SUM(A1)",
    "\t-y",
    "\r=z",
    "'=quoted",
    "''-twice",
    "-x^{2}+\\frac{1}{2}",
    "수학 -1",
    " =spaced",
    "\uff1dfull",
    "0012",
    "1e5",
    "TRUE",
    "3/4",
]


@pytest.fixture
def tricky():
    for n, value in enumerate(TRICKY):
        Question.objects.create(
            question_id=f"T-{n:02d}", mathml=f"<math><mn>{n}</mn></math>", text=value, latex=value
        )
    return Question.objects.order_by("question_id")


def test_csv_round_trip_gives_identical_strings(tricky, tmp_path):
    path = tmp_path / "out.csv"
    call_command("export_questions", str(path), stdout=StringIO())
    rows = csv_rows(path.read_bytes())
    # LaTeX columns carry exactly what is stored, with no guard.
    assert [r["latex"] for r in rows] == TRICKY
    # Question text is guarded only where a spreadsheet would run it; taking the guard off
    # (what the import does) gives back every string exactly.
    assert [restore_neutralised(r["text"]) for r in rows] == TRICKY
    assert rows[0]["text"] == "-2" and rows[1]["text"] == "'=1+2"
    Question.objects.update(text="changed")
    report = import_file(path)
    assert report.ok, report.lines()
    assert list(tricky.values_list("text", flat=True)) == TRICKY


def test_xlsx_round_trip_gives_identical_strings(tricky, tmp_path):
    path = tmp_path / "out.xlsx"
    call_command("export_questions", str(path), stdout=StringIO())
    sheet = load_workbook(path).active
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    text, latex = header.index("text"), header.index("latex")
    assert [r[text] for r in rows[1:]] == TRICKY  # not "'=1+2", not the number 2, ...
    assert [r[latex] for r in rows[1:]] == TRICKY
    assert all(c.data_type == "s" for row in sheet.iter_rows(min_row=2) for c in row[:3])
    Question.objects.update(text="changed")
    report = import_file(path)
    assert report.ok, report.lines()
    assert list(tricky.values_list("text", flat=True)) == TRICKY


def test_xlsx_export_refuses_a_cell_longer_than_excel_holds(tricky, tmp_path):
    from django.core.management.base import CommandError

    from conversions.exporting import XLSX_CELL_LIMIT, ExportError

    long = "가" * (XLSX_CELL_LIMIT + 1)
    Question.objects.filter(question_id="T-03").update(text=long)
    with pytest.raises(ExportError, match="question T-03: column “text” has 32,768 characters"):
        export_bytes(Question.objects.all(), "xlsx")
    target = tmp_path / "out.xlsx"
    with pytest.raises(CommandError, match="T-03"):
        call_command("export_questions", str(target), stdout=StringIO())
    assert list(tmp_path.iterdir()) == []  # nothing partial left
    # At the limit it fits, and CSV and JSON hold any length.
    Question.objects.filter(question_id="T-03").update(text=long[:XLSX_CELL_LIMIT])
    sheet = load_workbook(io.BytesIO(export_bytes(Question.objects.all(), "xlsx"))).active
    assert sheet.cell(row=5, column=3).value == long[:XLSX_CELL_LIMIT]
    Question.objects.filter(question_id="T-03").update(text=long)
    assert csv_rows(export_bytes(Question.objects.all(), "csv"))[3]["text"] == long
    assert json.loads(export_bytes(Question.objects.all(), "json"))[3]["text"] == long


def test_xlsx_limit_message_is_korean(tricky):
    from django.utils import translation

    from conversions.exporting import XLSX_CELL_LIMIT, ExportError

    Question.objects.filter(question_id="T-01").update(latex="x" * (XLSX_CELL_LIMIT + 5))
    with translation.override("ko"), pytest.raises(ExportError) as caught:
        export_bytes(Question.objects.all(), "xlsx")
    assert "T-01" in str(caught.value) and "latex" in str(caught.value)
    assert "32,767" in str(caught.value) and "내보내지" in str(caught.value)
