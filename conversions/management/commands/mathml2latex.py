"""Convert a JSON-lines file of MathML to LaTeX with the rules converter, streaming."""

from __future__ import annotations

import io
import json
import signal
import sys
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from types import FrameType
from typing import Any, Literal, TextIO

from django.core.management.base import BaseCommand, CommandError

from conversions.converters import ConversionError, InvalidMathML, mathml_to_latex
from conversions.converters.document import convert_document, is_document


class Command(BaseCommand):
    help = (
        'Convert lines {"id", "mathml"} to lines {"id", "latex", "error"} (error null on '
        "success) with the deterministic converter, one line at a time, so that the converter "
        "can be measured from outside the application. A whole question stem (HTML or text "
        'with formulas) gives {"id", "latex": null, "document", "formulas": [{"latex", '
        '"error"}, ...], "error"}, each formula written \\(...\\) or \\[...\\] in the document.'
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument(
            "input", help='JSON lines with "id" and "mathml"; - for standard input.'
        )
        parser.add_argument("output", help="JSON lines with the results; - for standard output.")

    def handle(self, *args, **options):
        with ExitStack() as stack:
            stop = stack.enter_context(_StopFlag())
            source = self._open_input(options["input"], options.get("stdin"), stack)
            if options["output"] == "-":
                target = self.stdout
                target.ending = ""
                report = self.stderr
            else:
                target = stack.enter_context(_open(options["output"], "w"))
                report = self.stdout
            converted, failed = convert_lines(source, target, stop=stop)
        stopped = " (stopped by a signal)" if stop.set else ""
        report.write(f"{converted} converted, {failed} failed{stopped}")

    def _open_input(self, path: str, stdin: TextIO | None, stack: ExitStack) -> Iterable[str]:
        if path != "-":
            return stack.enter_context(_open(path, "r"))
        if stdin is not None:
            return stdin
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")


def _open(path: str, mode: Literal["r", "w"]) -> TextIO:
    try:
        return open(path, mode, encoding="utf-8", newline="\n" if mode == "w" else None)  # noqa: SIM115
    except OSError as exc:
        raise CommandError(f"cannot open {path}: {exc.strerror}") from None


# What signal.signal takes and returns.
_Handler = Callable[[int, FrameType | None], Any] | int | None


class _StopFlag:
    """Set by SIGTERM/SIGINT while active: the loop finishes the current line and ends."""

    def __init__(self) -> None:
        self.set = False
        self._previous: dict[int, _Handler] = {}

    def __enter__(self) -> _StopFlag:
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._stop)
        except ValueError:  # not the main thread: signals cannot be caught here
            pass
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _stop(self, signum, frame) -> None:
        self.set = True


def convert_line(line: str, number: int) -> dict:
    """The result line for one input line."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"id": None, "latex": None, "error": f"line {number}: not JSON ({exc.msg})"}
    if not isinstance(row, dict):
        return {"id": None, "latex": None, "error": f"line {number}: not a JSON object"}
    mathml = row.get("mathml")
    if not isinstance(mathml, str):
        return {"id": row.get("id"), "latex": None, "error": 'no "mathml" string'}
    if is_document(mathml):
        return _document_line(row.get("id"), mathml)
    try:
        return {"id": row.get("id"), "latex": mathml_to_latex(mathml), "error": None}
    except InvalidMathML as exc:
        return {"id": row.get("id"), "latex": None, "error": f"invalid MathML: {exc}"}
    except ConversionError as exc:
        return {"id": row.get("id"), "latex": None, "error": str(exc)}


def _document_line(row_id, text: str) -> dict:
    result = convert_document(text)
    return {
        "id": row_id,
        "latex": None,
        "document": result.document,
        "formulas": [{"latex": f.latex, "error": f.error} for f in result.formulas],
        "error": result.error,
    }


def convert_lines(lines: Iterable[str], out, *, stop: _StopFlag | None = None) -> tuple[int, int]:
    """Convert each non-blank JSON line and write one result line for it; (converted, failed)."""
    converted = failed = 0
    for number, line in enumerate(lines, start=1):
        if stop is not None and stop.set:
            break
        if not line.strip():
            continue
        result = convert_line(line, number)
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        if result["error"] is None:
            converted += 1
        else:
            failed += 1
        if number % 256 == 0:
            out.flush()
    out.flush()
    return converted, failed
