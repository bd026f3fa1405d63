"""manage.py mathml2latex: JSON lines in, JSON lines out, streaming."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.settings import subprocess_env

ROOT = Path(__file__).resolve().parent.parent

INPUT = "\n".join(
    [
        json.dumps({"id": "q1", "mathml": "<math><mfrac><mn>1</mn><mn>2</mn></mfrac></math>"}),
        json.dumps(
            {
                "id": 2,
                "mathml": "<math><mtext>넓이</mtext><mo>=</mo>"
                "<msup><mi>r</mi><mn>2</mn></msup></math>",
            }
        ),
        "",
        "not json",
        json.dumps({"id": "q4"}),
        json.dumps({"id": "q5", "mathml": "<root><mi>x</mi></root>"}),
        json.dumps({"id": "q6", "mathml": "<math><merror><mtext>!</mtext></merror></math>"}),
        json.dumps(["a list"]),
    ]
)
EXPECTED = [
    {"id": "q1", "latex": "\\frac{1}{2}", "error": None},
    {"id": 2, "latex": "\\text{넓이}=r^2", "error": None},
    {"id": None, "latex": None, "error": "line 4: not JSON (Expecting value)"},
    {"id": "q4", "latex": None, "error": 'no "mathml" string'},
    {"id": "q5", "latex": None, "error": "invalid MathML: the root element is <root>, not <math>"},
    {"id": "q6", "latex": None, "error": "the MathML contains an error message (<merror>)"},
    {"id": None, "latex": None, "error": "line 8: not a JSON object"},
]


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_files(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(INPUT, encoding="utf-8")
    target = tmp_path / "out.jsonl"
    stdout = io.StringIO()
    call_command("mathml2latex", str(source), str(target), stdout=stdout)
    assert lines_of(target.read_text(encoding="utf-8")) == EXPECTED
    assert stdout.getvalue() == "2 converted, 5 failed\n"


def test_standard_input_and_output():
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("mathml2latex", "-", "-", stdin=io.StringIO(INPUT), stdout=stdout, stderr=stderr)
    assert lines_of(stdout.getvalue()) == EXPECTED
    assert stderr.getvalue() == "2 converted, 5 failed\n"


def test_as_a_process_on_a_pipe():
    done = subprocess.run(
        [sys.executable, "manage.py", "mathml2latex", "-", "-"],
        cwd=ROOT,
        env=subprocess_env(),
        input=INPUT.encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert lines_of(done.stdout.decode("utf-8")) == EXPECTED
    assert done.stderr.decode().strip().endswith("2 converted, 5 failed")


def test_missing_input_file(tmp_path):
    with pytest.raises(CommandError, match="cannot open .*missing.jsonl"):
        call_command("mathml2latex", str(tmp_path / "missing.jsonl"), "-", stdout=io.StringIO())


def test_a_question_stem_gives_the_document_and_each_formula(tmp_path):
    source = tmp_path / "in.jsonl"
    rows = [
        {"id": "s1", "mathml": "<p>넓이는 <math><mn>36</mn></math>이다.</p>"},
        {
            "id": "s2",
            "mathml": "<p>a&nbsp;<math><mi>x</mi></math><br>b <math><merror/></math></p>",
        },
    ]
    source.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows), "utf-8")
    target = tmp_path / "out.jsonl"
    stdout = io.StringIO()
    call_command("mathml2latex", str(source), str(target), stdout=stdout)
    assert lines_of(target.read_text(encoding="utf-8")) == [
        {
            "id": "s1",
            "latex": None,
            "document": "<p>넓이는 \\(36\\)이다.</p>",
            "formulas": [{"latex": "36", "error": None}],
            "error": None,
        },
        {
            "id": "s2",
            "latex": None,
            "document": None,
            "formulas": [
                {"latex": "x", "error": None},
                {"latex": None, "error": "the MathML contains an error message (<merror>)"},
            ],
            "error": "formula 2/2: the MathML contains an error message (<merror>)",
        },
    ]
    assert stdout.getvalue() == "1 converted, 1 failed\n"
