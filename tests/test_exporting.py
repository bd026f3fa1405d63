import csv
import io
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openpyxl import load_workbook

from conversions.exporting import TABULAR_COLUMNS, export_bytes, neutralise
from conversions.importing import RESULT_COLUMNS, import_file
from conversions.models import Item, Job, Question
from conversions.resources import QuestionResource

pytestmark = pytest.mark.django_db

DANGEROUS = ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\ry", "\uff1dHYPERLINK()"]


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


def test_neutralise_prefixes_only_formula_triggers():
    assert [neutralise(v) for v in DANGEROUS] == ["'" + v for v in DANGEROUS]
    assert [neutralise(v) for v in ["a=1", "'=x", "수학", "", 3, -1.5, None]] == [
        "a=1",
        "'=x",
        "수학",
        "",
        3,
        -1.5,
        None,
    ]


def test_csv_export_neutralises_formulas_and_carries_results(bank):
    plain, hostile, new_job = bank
    rows = csv_rows(export_bytes(Question.objects.all(), "csv"))

    assert list(rows[0]) == list(TABULAR_COLUMNS)
    first = rows[0]
    assert first["question_id"] == "E-1"
    assert first["text"] == "부등식을 푸시오."
    assert first["latex"] == "'-x^{2}"
    assert first["conversion_state"] == "approved"
    assert first["latex_locked"] == "true"
    assert json.loads(first["labels"]) == {"difficulty": 3}  # the reviewer's correction wins
    assert json.loads(first["metadata"]) == plain.metadata
    assert first["latest_job_id"] == str(new_job.pk)
    assert first["latest_result_latex"] == "'-x^2"
    assert first["latest_status"] == "succeeded"
    assert first["latest_validation_score"] == "0.75"
    assert [row["text"] for row in rows[1:]] == ["'" + v for v in DANGEROUS]
    assert rows[1]["subject"] == "'=cmd|' /C calc'!A0"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r", "\uff1d"))


def test_xlsx_export_has_no_formula_cells(bank):
    book = load_workbook(io.BytesIO(export_bytes(Question.objects.all(), "xlsx")))
    sheet = book.active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == TABULAR_COLUMNS
    assert [cell.data_type for row in sheet.iter_rows() for cell in row].count("f") == 0
    first = dict(zip(TABULAR_COLUMNS, rows[1], strict=True))
    assert [r[2] for r in rows[2:]] == ["'" + v for v in DANGEROUS]
    assert first["latex"] == "'-x^{2}"
    assert first["latest_validation_score"] == 0.75  # numbers stay numbers


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
    assert (report.created, report.updated, report.skipped) == (0, 0, 8)
    assert list(Question.objects.order_by("pk").values()) == before


def test_every_export_column_is_imported_or_a_known_result_column():
    importable = {"question_id", "mathml", "text", "subject", "grade", "metadata"}
    assert set(TABULAR_COLUMNS) - importable <= RESULT_COLUMNS
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
    assert dataset.headers == list(TABULAR_COLUMNS)
    assert dataset["text"][1:] == ["'" + v for v in DANGEROUS]
