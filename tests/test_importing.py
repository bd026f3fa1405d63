import json
import os
import uuid
from dataclasses import replace
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversions.converters import parse_mathml
from conversions.demo_data import demo_questions
from conversions.importing import (
    DatabaseSource,
    QuestionRecord,
    import_file,
    import_records,
    import_source,
    question_new,
)
from conversions.models import Question
from conversions.rowwrite import rows_insert

FIXTURES = Path(__file__).parent / "fixtures"
PG_SERVER = os.environ.get("MATHCONV_TEST_PG_SERVER", "postgres://postgres@127.0.0.1:5432")
HEADER = "question_id,mathml,text,subject,grade\n"

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("import_questions", *[str(a) for a in args], stdout=out)
    return out.getvalue().strip()


def rejected(*args) -> list[str]:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return str(caught.value).splitlines()


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def snapshot() -> list[tuple]:
    return list(
        Question.objects.order_by("question_id").values_list(
            "question_id", "mathml", "text", "subject", "grade", "metadata", "updated_at"
        )
    )


def test_three_good_two_bad_rows_are_rejected_as_a_whole():
    Question.objects.create(question_id="Q-002", mathml="<math><mn>0</mn></math>", text="old")
    before = snapshot()

    lines = rejected(FIXTURES / "questions_mixed.csv")

    assert lines[:2] == [
        "questions_mixed.csv [csv] (utf-8): 5 rows",
        "Rejected: 2 bad rows. Nothing was written; fix them and import again.",
    ]
    assert lines[2].startswith("  row 4 (Q-003): invalid MathML: not well-formed XML")
    assert lines[3] == "  row 6 (Q-001): duplicate question_id 'Q-001' (first seen in row 2)"
    assert len(lines) == 4
    assert snapshot() == before


def test_import_creates_then_skips_unchanged_then_updates_changed(tmp_path):
    good = FIXTURES / "questions_good.csv"
    assert run(good) == (
        "questions_good.csv [csv] (utf-8): 3 rows\nCreated 3, updated 0, skipped 0 (unchanged)."
    )
    q101 = Question.objects.get(question_id="Q-101")
    assert q101.text == "다음 식을 전개하시오."
    assert q101.metadata == {"source": "교과서", "difficulty": "2"}
    assert Question.objects.get(question_id="Q-102").metadata == {"difficulty": "1"}

    assert run(good).splitlines()[1] == "Created 0, updated 0, skipped 3 (unchanged)."

    # A reviewer approved Q-103's LaTeX, and Q-102 has a converted result.
    Question.objects.filter(question_id="Q-103").update(
        latex=r"\sqrt{3}", conversion_state="approved", latex_locked=True
    )
    Question.objects.filter(question_id="Q-102").update(
        latex="y=2x+1", conversion_state="converted"
    )
    changed = good.read_text().replace("기울기를", "y절편을")
    changed = changed.replace("<msqrt><mn>3</mn></msqrt>", "<msqrt><mn>5</mn></msqrt>")
    lines = run(write(tmp_path, "changed.csv", changed)).splitlines()

    assert lines[1:] == [
        "Created 0, updated 2, skipped 1 (unchanged).",
        "1 questions got a new MathML: their LaTeX was reset to be converted again.",
    ]
    q102 = Question.objects.get(question_id="Q-102")
    assert (q102.text, q102.latex, q102.conversion_state) == (
        "일차함수의 y절편을 구하시오.",
        "y=2x+1",
        "converted",
    )
    q103 = Question.objects.get(question_id="Q-103")
    assert q103.mathml == "<math><msqrt><mn>5</mn></msqrt></math>"
    assert (q103.latex, q103.conversion_state, q103.latex_locked) == ("", "unconverted", False)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp949"])
def test_csv_encoding_is_detected(tmp_path, encoding):
    path = write(
        tmp_path,
        "k.csv",
        HEADER + "K-1,<math><mi>x</mi></math>,다음 식을 간단히 하시오.,확률과 통계,고3\n",
        encoding,
    )
    assert run(path).splitlines()[0] == f"k.csv [csv] ({encoding}): 1 rows"
    question = Question.objects.get(question_id="K-1")
    assert (question.text, question.subject, question.grade) == (
        "다음 식을 간단히 하시오.",
        "확률과 통계",
        "고3",
    )


def test_explicit_encoding_is_used_and_a_wrong_one_is_reported(tmp_path):
    text = HEADER + "K-1,<math><mi>x</mi></math>,첫 문제,수학,중1\n"
    text += "K-2,<math><mi>y</mi></math>,둘째 문제,수학,중2\n"
    path = write(tmp_path, "k.csv", text, "cp949")

    assert rejected(path, "--encoding", "utf-8")[2] == (
        "  source: line 2 cannot be decoded as utf-8; is that the file's encoding?"
    )
    assert Question.objects.count() == 0
    assert run(path, "--encoding", "cp949").splitlines()[1].startswith("Created 2")
    assert Question.objects.get(question_id="K-2").text == "둘째 문제"


def test_every_kind_of_bad_row_is_reported_with_its_row_number(tmp_path, settings):
    settings.MATHCONV_MAX_MATHML_BYTES = 400
    huge = "<math>" + "<mn>1</mn>" * 60 + "</math>"
    bomb = '<!DOCTYPE math [<!ENTITY a "aaaaaaaaaa">]><math><mi>&a;</mi></math>'
    rows = [
        ",<math><mi>x</mi></math>,no id,,",  # row 2
        "B-1,,empty MathML,,",  # row 3
        "B-2,<mrow><mi>x</mi></mrow>,root is not math,,",  # row 4
        f"B-3,{bomb},entity declaration,,",  # row 5
        f"B-4,{huge},too big,,",  # row 6
        "B-5,<math><mi>x</mi></math>,fine,,",  # row 7
        f"B-6,<math><mi>x</mi></math>,subject too long,{'수' * 51},",  # row 8
        "B-5,<math><mi>y</mi></math>,duplicate,,",  # row 9
    ]
    path = write(tmp_path, "bad.csv", HEADER + "\n".join(rows) + "\n")

    lines = rejected(path)

    assert lines[1] == "Rejected: 7 bad rows. Nothing was written; fix them and import again."
    assert lines[2:] == [
        "  row 2: question_id is empty",
        "  row 3 (B-1): MathML is empty",
        "  row 4 (B-2): invalid MathML: the root element is <mrow>, not <math>",
        "  row 5 (B-3): invalid MathML: DOCTYPE with entity declarations is not allowed "
        "(possible XML bomb)",
        f"  row 6 (B-4): invalid MathML: too big: {len(huge)} bytes (the limit is 400)",
        "  row 8 (B-6): subject is longer than 50 characters",
        "  row 9 (B-5): duplicate question_id 'B-5' (first seen in row 7)",
    ]
    assert Question.objects.count() == 0


def test_missing_required_column_is_reported_on_the_header_row(tmp_path):
    path = write(tmp_path, "nomath.csv", "question_id,text\nA-1,some text\n")
    assert rejected(path)[2:] == [
        "  row 1: missing required column: mathml",
        "  row 1: rows without MathML are accepted only with --allow-empty-mathml"
        ' (in the admin: the box "Allow rows without MathML")',
    ]
    path = write(tmp_path, "noid.csv", "mathml,mathml\n<math/>,<math/>\n")
    assert rejected(path)[2:] == [
        "  row 1: missing required column: question_id",
        "  row 1: column 'mathml' appears more than once",
    ]


def test_text_only_documents_import_with_allow_empty_mathml():
    docs = FIXTURES / "labeling_documents.csv"
    assert rejected(docs)[2] == "  row 1: missing required column: mathml"

    assert run(docs, "--allow-empty-mathml").splitlines()[1] == (
        "Created 3, updated 0, skipped 0 (unchanged)."
    )
    doc = Question.objects.get(question_id="doc-2")
    assert (doc.mathml, doc.text) == ("", "두 사건 A, B가 서로 독립일 때 P(A∩B)를 구하시오.")


def test_empty_mathml_never_erases_an_existing_one(tmp_path):
    Question.objects.create(question_id="A-1", mathml="<math><mi>x</mi></math>", text="old")
    path = write(tmp_path, "t.csv", HEADER + "A-1,,new text,,\nA-2,,,,\n")
    assert rejected(path, "--allow-empty-mathml")[2:] == [
        "  row 3 (A-2): neither MathML nor text: nothing to import"
    ]
    path = write(tmp_path, "t.csv", HEADER + "A-1,,new text,,\n")
    assert run(path, "--allow-empty-mathml").splitlines()[1].startswith("Created 0, updated 1")
    question = Question.objects.get(question_id="A-1")
    assert (question.mathml, question.text) == ("<math><mi>x</mi></math>", "new text")


def test_metadata_column_and_extra_columns_are_merged(tmp_path):
    text = (
        "Question ID,MathML,Content,unit,metadata\n"
        'M-1,<math><mn>1</mn></math>,q,함수,"{""difficulty"": 3, ""tags"": [""a""]}"\n'
        "M-2,<math><mn>2</mn></math>,q,,\n"
        'M-3,<math><mn>3</mn></math>,q,,"[1, 2]"\n'
    )
    path = write(tmp_path, "m.csv", text)
    assert rejected(path)[2:] == ["  row 4 (M-3): metadata must be a JSON object"]

    run(write(tmp_path, "m.csv", text.rsplit("M-3", 1)[0]))
    assert Question.objects.get(question_id="M-1").metadata == {
        "unit": "함수",
        "difficulty": 3,
        "tags": ["a"],
    }
    assert Question.objects.get(question_id="M-1").text == "q"
    assert Question.objects.get(question_id="M-2").metadata == {}


def test_xlsx_rows_stream_with_sheet_row_numbers(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["question_id", "mathml", "text", "grade"])
    sheet.append([1001, "<math><mn>1</mn></math>", "첫째", "중1"])
    sheet.append([None, None, None, None])
    sheet.append([1002.0, "<math><mn>2</mn></math>", None, "중2"])
    path = tmp_path / "q.xlsx"
    book.save(path)

    assert run(path).splitlines() == [
        "q.xlsx [xlsx]: 2 rows",
        "Created 2, updated 0, skipped 0 (unchanged).",
    ]
    assert Question.objects.get(question_id="1002").grade == "중2"

    sheet.append([1003, "<math><mn>3", "broken", "중3"])
    book.save(path)
    assert rejected(path)[2].startswith("  row 5 (1003): invalid MathML")


def test_json_array_and_json_lines(tmp_path):
    records = [
        {"question_id": "J-1", "mathml": "<math><mi>a</mi></math>", "metadata": {"k": [1, 2]}},
        {"question_id": "J-2", "mathml": "<math><mi>b</mi></math>", "text": "둘째", "unit": 7},
    ]
    array = tmp_path / "q.json"
    array.write_text(json.dumps(records, ensure_ascii=False))
    assert run(array).splitlines()[1] == "Created 2, updated 0, skipped 0 (unchanged)."
    assert Question.objects.get(question_id="J-1").metadata == {"k": [1, 2]}
    assert Question.objects.get(question_id="J-2").metadata == {"unit": 7}

    # Records that straddle the reader's 64 KiB chunks.
    many = [
        {"question_id": f"L-{i}", "mathml": "<math><mi>z</mi></math>", "text": "가" * 300}
        for i in range(400)
    ]
    array.write_text(json.dumps(many, ensure_ascii=False, indent=1))
    assert run(array).splitlines()[1] == "Created 400, updated 0, skipped 0 (unchanged)."
    assert Question.objects.get(question_id="L-399").text == "가" * 300

    lines = tmp_path / "q.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in records) + '\n{"question_id": "J-3"}\n[1]\n')
    assert rejected(lines)[2:] == [
        "  row 3 (J-3): missing field: mathml",
        "  row 4: each record must be a JSON object",
    ]


def test_dry_run_counts_and_writes_nothing():
    Question.objects.create(question_id="Q-101", mathml="<math><mi>z</mi></math>")
    before = snapshot()
    assert run(FIXTURES / "questions_good.csv", "--dry-run").splitlines()[1:] == [
        "Dry run: would create 2, update 1, skip 0.",
        "Nothing was written.",
        "1 questions got a new MathML: their LaTeX was reset to be converted again.",
    ]
    assert snapshot() == before


def test_chunks_compare_and_write_with_a_bounded_number_of_queries(tmp_path):
    rows = [f"C-{i:03d},<math><mn>{i}</mn></math>,text {i},,\n" for i in range(60)]
    path = write(tmp_path, "c.csv", HEADER + "".join(rows))
    Question.objects.create(question_id="C-007", mathml="<math><mn>7</mn></math>", text="old")

    with CaptureQueriesContext(connection) as queries:
        report = import_file(path, chunk_size=10)

    assert (report.created, report.updated, report.skipped) == (59, 1, 0)
    assert Question.objects.count() == 60
    # Per chunk of 10 rows: one SELECT, one INSERT, at most one UPDATE; never one per row.
    assert len(queries) <= 6 * 3 + 4


def test_new_questions_hold_what_bulk_create_would_write():
    # The import inserts new rows with rowwrite.rows_insert, not bulk_create.
    record = QuestionRecord(
        row=2,
        question_id="N-1",
        mathml="<math><msup><mi>x</mi><mn>2</mn></msup></math>",
        text="둘째 줄",
        subject="수학",
        grade="중1",
        metadata={"source": "bank", "tags": [1, "이"]},
        source_latex="x^2",
    )
    rows_insert([question_new(record)])
    Question.objects.bulk_create([question_new(replace(record, question_id="N-2"))])
    written, created = (
        Question.objects.filter(question_id=question_id).values().get()
        for question_id in ("N-1", "N-2")
    )
    for row in (written, created):
        del row["id"], row["question_id"]
        assert row.pop("created_at") is not None and row.pop("updated_at") is not None
    assert written == created
    assert (written["metadata"], written["labels"], written["formulas"]) == (
        {"source": "bank", "tags": [1, "이"]},
        {},
        None,
    )


def test_a_source_that_changes_between_the_passes_writes_nothing():
    calls = []

    def records():
        calls.append(1)
        mathml = "<math><mn>1</mn></math>" if len(calls) == 1 else "<math><mn>2</mn></math>"
        return [{"question_id": "S-1", "mathml": mathml}]

    report = import_records(records, label="moving")
    assert [str(e) for e in report.errors] == [
        "source: the source changed while it was being imported"
    ]
    assert Question.objects.count() == 0


def test_usage_errors():
    with pytest.raises(CommandError, match="Give either FILE or --from-db URL"):
        run()
    assert rejected(FIXTURES / "questions_good.csv", "--encoding", "klingon")[2] == (
        "  source: unknown encoding 'klingon'"
    )


def test_load_demo_is_idempotent_and_realistic():
    out = StringIO()
    call_command("load_demo", stdout=out)
    assert out.getvalue().strip() == (
        "demo bank: 360 rows\nCreated 360, updated 0, skipped 0 (unchanged)."
    )
    out = StringIO()
    call_command("load_demo", stdout=out)
    assert (
        out.getvalue().strip().splitlines()[1] == "Created 0, updated 0, skipped 360 (unchanged)."
    )

    questions = list(Question.objects.all())
    assert len(questions) == 360
    assert {q.subject for q in questions} == {
        "수학",
        "수학I",
        "수학II",
        "미적분",
        "확률과 통계",
        "기하",
    }
    assert {q.grade for q in questions} == {"중1", "중2", "중3", "고1", "고2", "고3"}
    formulas = [q.mathml for q in questions]
    for mathml in set(formulas):
        parse_mathml(mathml)
    # A real bank repeats formulas across questions; the result cache is measured on it.
    assert 80 <= len(set(formulas)) <= 250
    structures = [
        "<mfrac>",
        "<msqrt>",
        "<mroot>",
        "<msup>",
        "<msub>",
        "<mtable",
        "\u2211",
        "\u222b",
        "lim",
        "log",
        "\u2220",
        "\u2322",
        "\u2192",
        "\u2264",
        "\u221e",
        "<mmultiscripts>",
        "<mo>[</mo>",
    ]
    for structure in structures:
        assert any(structure in f for f in formulas), structure
    assert [q["question_id"] for q in demo_questions(3)] == ["DEMO-0001", "DEMO-0002", "DEMO-0003"]


# --- --from-db against a real PostgreSQL ---------------------------------------------------


@pytest.fixture
def source_db():
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("PostgreSQL is not reachable")
    name = f"mathconv_src_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_SERVER}/{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE questions (question_id text, mathml text, subject text, grade text,"
            " chapter text)"
        )
        conn.execute(
            "INSERT INTO questions VALUES"
            " ('P-1', '<math><mn>1</mn></math>', '수학', '중1', '1단원'),"
            " ('P-2', '<math><mfrac><mn>1</mn><mn>2</mn></mfrac></math>', '수학I', '고2', NULL),"
            " ('P-3', '<math><mi>x</mi></math>', '기하', '고3', NULL),"
            " ('P-4', NULL, '수학', '중2', NULL)"
        )
        conn.execute("CREATE SEQUENCE counter")
        conn.execute(
            "CREATE FUNCTION wipe() RETURNS int LANGUAGE plpgsql AS"
            " $$ BEGIN DELETE FROM questions; RETURN 1; END $$"
        )
    try:
        yield url
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def source_count(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM questions").fetchone()[0]


def test_from_db_reads_the_default_query_then_a_custom_one(source_db):
    lines = run("--from-db", source_db).splitlines()
    assert lines[0].endswith(" [query]: 3 rows")
    assert "@" not in lines[0] and "postgres://" not in lines[0]
    assert lines[1] == "Created 3, updated 0, skipped 0 (unchanged)."
    assert Question.objects.get(question_id="P-2").subject == "수학I"

    query = (
        "SELECT question_id, mathml, grade, chapter AS unit FROM questions"
        " WHERE chapter IS NOT NULL"
    )
    assert run("--from-db", source_db, "--query", query).splitlines()[1] == (
        "Created 0, updated 1, skipped 0 (unchanged)."
    )
    assert Question.objects.get(question_id="P-1").metadata == {"unit": "1단원"}


def test_from_db_is_read_only(source_db):
    for query in (
        "DELETE FROM questions",
        "SELECT question_id, mathml, nextval('counter') AS n FROM questions",
        "SELECT question_id, mathml, wipe() AS w FROM questions",
    ):
        lines = rejected("--from-db", source_db, "--query", query)
        assert lines[2].startswith("  source: the source database refused the query"), lines
    assert "read-only transaction" in "\n".join(lines)
    assert source_count(source_db) == 4
    assert Question.objects.count() == 0


def test_from_db_url_can_come_from_the_environment(source_db, monkeypatch):
    monkeypatch.setenv("MATHCONV_TEST_SOURCE_URL", source_db)
    assert run("--from-db", "env:MATHCONV_TEST_SOURCE_URL", "--dry-run").splitlines()[1] == (
        "Dry run: would create 3, update 0, skip 0."
    )
    with pytest.raises(CommandError, match="MATHCONV_TEST_NOT_SET is not set"):
        run("--from-db", "env:MATHCONV_TEST_NOT_SET")


def test_from_db_rows_are_validated_like_a_file(source_db):
    query = "SELECT question_id, coalesce(mathml, '<math><mi>') AS mathml FROM questions ORDER BY 1"
    lines = rejected("--from-db", source_db, "--query", query)
    assert len(lines) == 3
    assert lines[2].startswith("  row 4 (P-4): invalid MathML: not well-formed XML")
    report = import_source(DatabaseSource(source_db), dry_run=True)
    assert (report.created, report.rows) == (3, 3)
