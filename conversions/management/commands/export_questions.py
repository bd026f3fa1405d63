"""Export questions with their results to CSV, XLSX or JSON."""

import os
import sys
import tempfile
from pathlib import Path

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversions.exporting import FORMATS, ExportError, export_questions
from conversions.management.commands._report import TranslatedCommand
from conversions.models import Question


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Export questions with their results (LaTeX, conversion state, effective labels, "
        "latest conversion result). LaTeX and MathML are exported exactly; XLSX writes "
        "every string as a text cell; CSV guards only text a spreadsheet would run as a "
        "formula. JSON is lossless. Every format can be imported again."
    )

    def add_arguments(self, parser):
        parser.add_argument("out", help=_("Output file, or - for standard output (csv, json)."))
        parser.add_argument(
            "--format", choices=FORMATS, help=_("Output format (default: from the extension).")
        )
        parser.add_argument("--subject", help=_("Only questions of this subject."))
        parser.add_argument("--grade", help=_("Only questions of this grade."))
        parser.add_argument(
            "--conversion-state",
            choices=Question.ConversionState.values,
            help=_("Only questions in this conversion state."),
        )

    def handle(self, *args, **options):
        out = options["out"]
        fmt = options["format"] or Path(out).suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise CommandError(
                _("Unknown format %(fmt)r; use --format %(formats)s.")
                % {"fmt": fmt, "formats": "|".join(FORMATS)}
            )
        queryset = questions_filtered(
            subject=options["subject"],
            grade=options["grade"],
            conversion_state=options["conversion_state"],
        )
        if out == "-":
            if fmt == "xlsx":
                raise CommandError(_("XLSX cannot go to standard output; give a file name."))
            export_questions(queryset, fmt, sys.stdout.buffer)
            return
        try:
            count = export_to_file(queryset, fmt, Path(out))
        except ExportError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            _("Exported %(count)s questions to %(out)s (%(fmt)s).")
            % {"count": count, "out": out, "fmt": fmt}
        )


def questions_filtered(*, subject=None, grade=None, conversion_state=None):
    filters = {"subject": subject, "grade": grade, "conversion_state": conversion_state}
    return Question.objects.filter(**{k: v for k, v in filters.items() if v is not None})


def export_to_file(queryset, fmt: str, path: Path) -> int:
    # Written next to the target and renamed at the end, so a half-written export never
    # stands where a complete one is expected.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fp:
            count = export_questions(queryset, fmt, fp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
