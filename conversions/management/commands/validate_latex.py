"""Check a JSON-lines file of (MathML, LaTeX) pairs with the validator, streaming."""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import ExitStack

from django.core.management.base import BaseCommand

from conversions.converters import validate
from conversions.management.commands.mathml2latex import Command as Mathml2Latex
from conversions.management.commands.mathml2latex import _open, _StopFlag


class Command(BaseCommand):
    help = (
        'Validate lines {"id", "mathml", "latex"} and write lines {"id", "ok", "score", '
        '"reasons"}, one line at a time; a line that cannot be read gets ok false and a reason '
        "naming its line number. Reasons follow LANGUAGE_CODE (ko for Korean)."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument(
            "input", help='JSON lines with "id", "mathml" and "latex"; - for standard input.'
        )
        parser.add_argument("output", help="JSON lines with the verdicts; - for standard output.")

    def handle(self, *args, **options):
        with ExitStack() as stack:
            stop = stack.enter_context(_StopFlag())
            source = Mathml2Latex._open_input(self, options["input"], options.get("stdin"), stack)
            if options["output"] == "-":
                target = self.stdout
                target.ending = ""
                report = self.stderr
            else:
                target = stack.enter_context(_open(options["output"], "w"))
                report = self.stdout
            passed, failed = validate_lines(source, target, stop=stop)
        stopped = " (stopped by a signal)" if stop.set else ""
        report.write(f"{passed} passed, {failed} failed{stopped}")


def validate_line(line: str, number: int) -> dict:
    """The verdict line for one input line."""

    def refused(reason: str, row_id=None) -> dict:
        return {"id": row_id, "ok": False, "score": 0.0, "reasons": [reason]}

    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return refused(f"line {number}: not JSON ({exc.msg})")
    if not isinstance(row, dict):
        return refused(f"line {number}: not a JSON object")
    mathml, latex = row.get("mathml"), row.get("latex")
    if not isinstance(mathml, str) or not isinstance(latex, str):
        return refused(f'line {number}: no "mathml" and "latex" strings', row.get("id"))
    check = validate(mathml, latex)
    return {
        "id": row.get("id"),
        "ok": check.ok,
        "score": check.score,
        "reasons": [str(reason) for reason in check.reasons],
    }


def validate_lines(lines: Iterable[str], out, *, stop: _StopFlag | None = None) -> tuple[int, int]:
    """Validate each non-blank JSON line and write one verdict line for it; (passed, failed)."""
    passed = failed = 0
    for number, line in enumerate(lines, start=1):
        if stop is not None and stop.set:
            break
        if not line.strip():
            continue
        verdict = validate_line(line, number)
        out.write(json.dumps(verdict, ensure_ascii=False) + "\n")
        if verdict["ok"]:
            passed += 1
        else:
            failed += 1
        if number % 256 == 0:
            out.flush()
    out.flush()
    return passed, failed
