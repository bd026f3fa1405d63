"""manage.py validate_latex: JSON lines of (MathML, LaTeX) in, verdicts out, streaming."""

import io
import json

from django.core.management import call_command
from django.utils import translation

X_PLUS_1 = "<math><mi>x</mi><mo>+</mo><mn>1</mn></math>"
INPUT = "\n".join(
    [
        json.dumps({"id": "right", "mathml": X_PLUS_1, "latex": "x+1"}),
        json.dumps({"id": 2, "mathml": X_PLUS_1, "latex": "x+2"}),
        "",
        "{not json",
        json.dumps({"id": "no latex", "mathml": X_PLUS_1}),
        json.dumps({"id": "link", "mathml": X_PLUS_1, "latex": "\\href{javascript:alert(1)}{x}+1"}),
    ]
)


def run(stdin_text: str, language: str = "en") -> tuple[list[dict], str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with translation.override(language):
        call_command(
            "validate_latex", "-", "-", stdin=io.StringIO(stdin_text), stdout=stdout, stderr=stderr
        )
    return [json.loads(line) for line in stdout.getvalue().splitlines()], stderr.getvalue()


def test_verdicts_line_by_line_with_bad_lines_named():
    verdicts, report = run(INPUT)
    assert verdicts == [
        {"id": "right", "ok": True, "score": 1.0, "reasons": []},
        {"id": 2, "ok": False, "score": 0.5667, "reasons": ["“2” instead of “1” after x+"]},
        {
            "id": None,
            "ok": False,
            "score": 0.0,
            "reasons": ["line 4: not JSON (Expecting property name enclosed in double quotes)"],
        },
        {
            "id": "no latex",
            "ok": False,
            "score": 0.0,
            "reasons": ['line 5: no "mathml" and "latex" strings'],
        },
        {
            "id": "link",
            "ok": False,
            "score": 0.0,
            "reasons": ["the LaTeX uses \\href, which may link, style or script"],
        },
    ]
    assert report == "1 passed, 4 failed\n"


def test_files_and_korean_reasons(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(
        json.dumps(
            {"id": "q", "mathml": "<math><msup><mi>x</mi><mn>2</mn></msup></math>", "latex": "x"}
        ),
        encoding="utf-8",
    )
    stdout = io.StringIO()
    with translation.override("ko"):
        call_command("validate_latex", str(source), str(target), stdout=stdout)
    verdict = json.loads(target.read_text(encoding="utf-8"))
    assert verdict["reasons"] == ["x의 지수 2이(가) 빠졌습니다"]
    assert stdout.getvalue() == "0 passed, 1 failed\n"
