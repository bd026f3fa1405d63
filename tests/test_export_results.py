"""export_results: approved (or all successful) results to files, to the old scripts'
per-batch JSON files, and back into a second PostgreSQL database."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from conversions.exporting import tabular_columns
from conversions.importing import import_records
from conversions.models import Question
from tests.jobutil import make_questions

pytestmark = pytest.mark.django_db

PG_SERVER = os.environ.get("MATHCONV_TEST_PG_SERVER", "postgres://postgres@127.0.0.1:5432")
APPROVED, CONVERTED = Question.ConversionState.APPROVED, Question.ConversionState.CONVERTED


def run(*args) -> str:
    out = io.StringIO()
    call_command("export_results", *args, stdout=out)
    return out.getvalue()


def bank() -> dict[str, Question]:
    """Q-00001..Q-00006 in every state an export must tell apart."""
    questions = {q.question_id: q for q in make_questions(6)}
    states = {
        "Q-00001": (APPROVED, "\\frac{1}{x}+y^{2}"),
        "Q-00002": (APPROVED, "-2"),
        "Q-00003": (CONVERTED, "\\frac{3}{x}+y^{2}"),
        "Q-00004": (Question.ConversionState.NEEDS_REVIEW, "\\frac{4}{x}"),
        "Q-00005": (Question.ConversionState.FAILED, ""),
    }
    for question_id, (state, latex) in states.items():
        Question.objects.filter(question_id=question_id).update(conversion_state=state, latex=latex)
    return questions


def test_approved_results_go_to_a_csv_with_the_export_columns(tmp_path):
    bank()
    out = tmp_path / "results.csv"
    assert run(str(out)) == f"Exported 2 results to {out} (csv).\n"
    rows = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0] == tabular_columns()
    latex = rows[0].index("latex")
    assert [(r[0], r[latex]) for r in rows[1:]] == [
        ("Q-00001", "\\frac{1}{x}+y^{2}"),
        ("Q-00002", "-2"),  # exact: no formula guard on LaTeX
    ]
    run(str(tmp_path / "all.json"), "--all-successful")
    records = json.loads((tmp_path / "all.json").read_text())
    assert [r["question_id"] for r in records] == ["Q-00001", "Q-00002", "Q-00003"]
    run(str(tmp_path / "all.xlsx"), "--all-successful", "--subject", "none")
    assert (tmp_path / "all.xlsx").exists()


def test_split_writes_the_old_scripts_batch_files_and_stats(tmp_path):
    bank()
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "conversion_results_batch_007.json").write_text("[]")  # from an older run
    (folder / "notes.txt").write_text("mine")
    output = run(str(folder), "--split", "2", "--all-successful")
    assert output == f"Wrote 2 result files and conversion_stats.json in {folder}.\n"
    assert sorted(p.name for p in folder.iterdir()) == [
        "conversion_results_batch_001.json",
        "conversion_results_batch_002.json",
        "conversion_stats.json",
        "notes.txt",
    ]
    first = json.loads((folder / "conversion_results_batch_001.json").read_text())
    second = json.loads((folder / "conversion_results_batch_002.json").read_text())
    assert [r["question_id"] for r in first + second] == ["Q-00001", "Q-00002", "Q-00003"]
    assert first[1]["latex"] == "-2"
    stats = json.loads((folder / "conversion_stats.json").read_text())
    assert stats["exported"] == 3 and stats["questions"] == 6 and stats["per_file"] == 2
    assert stats["selection"] == "successful"
    assert stats["files"] == [f"conversion_results_batch_00{n}.json" for n in (1, 2)]
    assert stats["by_state"] == {
        "approved": 2,
        "converted": 1,
        "needs_review": 1,
        "failed": 1,
        "unconverted": 1,
    }
    # converted + approved of converted + approved + needs_review + failed
    assert stats["success"]["text"] == "60.0 % (3/5)"
    assert stats["generated_at"].endswith("+09:00")


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "Give an output file, or --to-db URL --table T."),
        (["out.txt"], "Unknown format 'txt'"),
        (["out", "--split", "2", "--format", "csv"], "--split writes JSON files only"),
        (["out", "--split", "0"], "at least 1"),
        (["--to-db", "postgres://x/y"], "--to-db needs --table."),
        (["out.csv", "--to-db", "postgres://x/y", "--table", "t"], "give no output file"),
    ],
)
def test_bad_options_are_refused_with_a_message(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_the_import_keeps_the_sources_own_latex_and_an_empty_cell_changes_nothing():
    def records(latex):
        return lambda: [{"question_id": "S-1", "mathml": "<math><mn>1</mn></math>", **latex}]

    assert import_records(records({"source_latex": "1"}), label="t").created == 1
    assert Question.objects.get().source_latex == "1"
    report = import_records(records({"source_latex": ""}), label="t")
    assert report.skipped == 1 and Question.objects.get().source_latex == "1"
    assert import_records(records({}), label="t").skipped == 1
    assert import_records(records({"source_latex": "\\frac12"}), label="t").updated == 1
    assert Question.objects.get().source_latex == "\\frac12"


# --- write-back into a second PostgreSQL database ----------------------------------------


@pytest.fixture
def target_db():
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_SERVER} ({exc}): write-back not tested")
    name = f"mathconv_wb_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_SERVER}/{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            'CREATE TABLE "Bank Questions" (question_id text PRIMARY KEY, mathml text,'
            " latex text, touched int DEFAULT 0)"
        )
        conn.execute(
            'INSERT INTO "Bank Questions" (question_id, mathml, latex) VALUES'
            " ('Q-00001', '<math><mn>1</mn></math>', NULL),"
            " ('Q-00002', '<math><mn>2</mn></math>', ''),"
            " ('Q-00003', '<math><mn>3</mn></math>', NULL),"
            " ('Q-00004', '<math><mn>4</mn></math>', 'old 4'),"
            " ('Q-00005', '<math><mn>5</mn></math>', 'old 5'),"
            " ('Q-00006', '<math><mn>6</mn></math>', NULL)"
        )
        # Every row an UPDATE reaches counts it: "touched" tells which rows were written.
        conn.execute(
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN NEW.touched := OLD.touched + 1; RETURN NEW; END $$"
        )
        conn.execute(
            'CREATE TRIGGER touch BEFORE UPDATE ON "Bank Questions"'
            " FOR EACH ROW EXECUTE FUNCTION touch()"
        )
    try:
        yield url
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def table(url: str, name: str = '"Bank Questions"') -> dict[str, tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT question_id, latex, touched FROM {name}").fetchall()
    return {key: (latex, touched) for key, latex, touched in rows}


def imported_bank(url: str) -> None:
    """The questions imported from the target with its LaTeX as source_latex, then given
    results: Q-1, Q-2, Q-4 approved, Q-3 converted (not approved), Q-5 approved with a
    forbidden command, Q-9 approved but not in the target table."""
    call_command(
        "import_questions",
        "--from-db",
        url,
        "--query",
        'SELECT question_id, mathml, latex AS source_latex FROM "Bank Questions"',
        stdout=io.StringIO(),
    )
    Question.objects.create(question_id="Q-00009", mathml="<math><mn>9</mn></math>")
    results = {
        "Q-00001": (APPROVED, "\\frac{1}{2}"),
        "Q-00002": (APPROVED, "-2"),
        "Q-00003": (CONVERTED, "3"),
        "Q-00004": (APPROVED, "4^{2}"),
        "Q-00005": (APPROVED, "\\href{javascript:alert(1)}{5}"),
        "Q-00009": (APPROVED, "9"),
    }
    for question_id, (state, latex) in results.items():
        Question.objects.filter(question_id=question_id).update(conversion_state=state, latex=latex)


def to_db(url: str, *args: str) -> str:
    return run("--to-db", url, "--table", "Bank Questions", *args)


def test_write_back_updates_exactly_the_approved_rows_after_a_dry_run_that_changes_nothing(
    target_db,
):
    imported_bank(target_db)
    assert Question.objects.get(question_id="Q-00004").source_latex == "old 4"
    assert Question.objects.get(question_id="Q-00001").source_latex == ""  # NULL there
    before = table(target_db)
    known_before = dict(Question.objects.values_list("question_id", "source_latex"))

    dry = to_db(target_db, "--dry-run", "--batch-size", "2")
    assert table(target_db) == before  # nothing changed there ...
    assert dict(Question.objects.values_list("question_id", "source_latex")) == known_before
    assert dry.splitlines() == [
        f"Dry run on 127.0.0.1/{target_db.rsplit('/', 1)[1]} Bank Questions.latex: 5 results; "
        "would update 3 rows, 0 already hold the result, 0 changed there since the import, "
        "1 not found. Nothing was changed.",
        "Sample of the changes (value there -> result):",
        '  Q-00001: NULL -> "\\frac{1}{2}"',
        '  Q-00002: "" -> "-2"',
        '  Q-00004: "old 4" -> "4^{2}"',
        "No row there for: Q-00009",
        "Not written, LaTeX with a command that links, styles or scripts: Q-00005",
    ]

    output = to_db(target_db, "--batch-size", "2")
    assert "updated 3 rows in 3 batch(es)" in output
    after = table(target_db)
    assert after == {
        "Q-00001": ("\\frac{1}{2}", 1),
        "Q-00002": ("-2", 1),
        "Q-00003": (None, 0),  # converted, not approved
        "Q-00004": ("4^{2}", 1),
        "Q-00005": ("old 5", 0),  # withheld
        "Q-00006": (None, 0),  # no result
    }
    assert Question.objects.get(question_id="Q-00001").source_latex == "\\frac{1}{2}"

    again = to_db(target_db)
    assert "updated 0 rows in 1 batch(es), 3 already held the result" in again
    assert table(target_db) == after  # rows holding the result are not written again

    everything = to_db(target_db, "--all-successful")
    assert "updated 1 rows" in everything
    assert table(target_db)["Q-00003"] == ("3", 1)


def test_a_row_changed_there_since_the_import_is_left_alone_and_reported_unless_forced(
    target_db,
):
    imported_bank(target_db)
    import psycopg

    with psycopg.connect(target_db, autocommit=True) as conn:
        conn.execute('ALTER TABLE "Bank Questions" DISABLE TRIGGER touch')  # someone else
        conn.execute(
            "UPDATE \"Bank Questions\" SET latex = 'fixed by hand' WHERE question_id = 'Q-00004'"
        )
        conn.execute(
            "UPDATE \"Bank Questions\" SET latex = 'typed there' WHERE question_id = 'Q-00001'"
        )
        conn.execute('ALTER TABLE "Bank Questions" ENABLE TRIGGER touch')
    output = to_db(target_db)
    assert "updated 1 rows in 1 batch(es)" in output
    assert "2 changed there since the import" in output
    assert '  Q-00001: "typed there" -> "\\frac{1}{2}"' in output
    assert '  Q-00004: "fixed by hand" -> "4^{2}"' in output
    rows = table(target_db)
    assert rows["Q-00001"] == ("typed there", 0) and rows["Q-00004"] == ("fixed by hand", 0)
    assert rows["Q-00002"] == ("-2", 1)
    assert Question.objects.get(question_id="Q-00004").source_latex == "old 4"  # unchanged

    forced = to_db(target_db, "--force")
    assert "updated 2 rows" in forced
    assert "2 of them had been changed there since the import (--force)." in forced
    rows = table(target_db)
    assert rows["Q-00001"] == ("\\frac{1}{2}", 1) and rows["Q-00004"] == ("4^{2}", 1)


def test_a_batch_the_target_refuses_is_rolled_back_whole_and_the_row_is_named(target_db):
    import psycopg

    with psycopg.connect(target_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE numbered (id integer PRIMARY KEY, latex varchar(12))")
        conn.execute("INSERT INTO numbered VALUES (1, NULL), (2, NULL), (3, NULL), (4, NULL)")
    for question_id, latex in [("1", "a"), ("2", "b"), ("x3", "c"), ("4", "d")]:
        Question.objects.create(
            question_id=question_id, mathml="<math/>", conversion_state=APPROVED, latex=latex
        )

    def rows():
        with psycopg.connect(target_db) as conn:
            return dict(conn.execute("SELECT id, latex FROM numbered").fetchall())

    args = ["--to-db", target_db, "--table", "numbered", "--key-column", "id", "--batch-size", "2"]
    with translation.override("ko"), pytest.raises(CommandError) as refused:
        run(*args)
    message = str(refused.value)
    assert "x3" in message and "invalid input syntax for type integer" in message
    assert "앞선 배치 1개에서 2행은 이미 썼습니다" in message
    assert rows() == {1: "a", 2: "b", 3: None, 4: None}  # batch 1 written, batch 2 not at all

    Question.objects.filter(question_id="x3").update(question_id="3", latex="c" * 13)
    with pytest.raises(CommandError, match="question 3: its LaTeX has 13 characters, column"):
        run(*args)
    assert rows() == {1: "a", 2: "b", 3: None, 4: None}  # refused before any batch


def test_a_key_longer_than_a_bounded_key_column_matches_no_shorter_key(target_db):
    import psycopg

    with psycopg.connect(target_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE short (id char(5) PRIMARY KEY, latex text)")
        conn.execute("INSERT INTO short VALUES ('Q-000', NULL), ('Q-1', NULL)")
    for question_id in ("Q-00001", "Q-1"):
        Question.objects.create(
            question_id=question_id, mathml="<math/>", conversion_state=APPROVED, latex="x"
        )
    output = run("--to-db", target_db, "--table", "short", "--key-column", "id")
    assert "updated 1 rows" in output and "No row there for: Q-00001" in output
    with psycopg.connect(target_db) as conn:
        rows = dict(conn.execute("SELECT id, latex FROM short").fetchall())
    assert rows == {"Q-000": None, "Q-1  ": "x"}  # char(5) pads; never cut the key short


@pytest.mark.parametrize(
    "args, message",
    [
        (["--table", "nowhere"], "table nowhere does not exist there"),
        (
            ["--table", "Bank Questions", "--column", "tex"],
            r"has no column tex \(it has: latex, mathml, question_id, touched\)",
        ),
        (["--table", "Bank Questions", "--column", "touched"], "of type integer; LaTeX is"),
    ],
)
def test_a_wrong_table_or_column_is_named_before_anything_is_written(target_db, args, message):
    Question.objects.create(
        question_id="Q-00001", mathml="<math/>", conversion_state=APPROVED, latex="1"
    )
    with pytest.raises(CommandError, match=message):
        run("--to-db", target_db, *args)
    assert table(target_db)["Q-00001"] == (None, 0)


def test_the_url_can_come_from_the_environment_and_a_bad_one_is_named(target_db, monkeypatch):
    monkeypatch.setenv("TARGET_DB", target_db)
    bank()
    assert "not found" in to_db("env:TARGET_DB", "--dry-run")
    with pytest.raises(CommandError, match="cannot connect"):
        to_db(target_db.rsplit("/", 1)[0] + "/no_such_database_here")
