"""`manage.py export_results`: hand the results on, to files or back into the source table.

Approved results (a reviewer approved or edited them), or with --all-successful every
result a job converted and validated too. To a file (CSV, XLSX, JSON: the columns of
export_questions, conversions/exporting.py), to the old scripts' files (--split N: a
folder of conversion_results_batch_NNN.json and conversion_stats.json), or into a
PostgreSQL table (--to-db, conversions/writeback.py).
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversions.exporting import FORMATS, ExportError, export_results_split
from conversions.management.commands._report import TranslatedCommand
from conversions.management.commands.export_questions import export_to_file
from conversions.management.commands.import_questions import database_url
from conversions.models import Question
from conversions.writeback import DEFAULT_BATCH_SIZE, Target, WriteBackError, write_back


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Export approved results (or, with --all-successful, every successful result) to "
        "a CSV / XLSX / JSON file, to the old scripts' per-batch JSON files (--split), or "
        "back into a PostgreSQL table (--to-db), leaving rows changed there since the "
        "import alone unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "out",
            nargs="?",
            help="Output file (csv, xlsx, json), or with --split a folder. Not with --to-db.",
        )
        parser.add_argument(
            "--format", choices=FORMATS, help="Output format (default: from the extension)."
        )
        parser.add_argument(
            "--all-successful",
            action="store_true",
            help="Also results no reviewer approved yet that a job converted and validated "
            "(conversion state converted); default: approved results only.",
        )
        parser.add_argument("--subject", help="Only questions of this subject.")
        parser.add_argument("--grade", help="Only questions of this grade.")
        parser.add_argument(
            "--split",
            type=int,
            metavar="N",
            help="JSON only: write the folder OUT with conversion_results_batch_001.json, "
            "... (N results each) and conversion_stats.json, like the old scripts.",
        )
        parser.add_argument(
            "--to-db",
            metavar="URL",
            help="Write into a PostgreSQL table instead of a file (postgres://user:pass@host/db,"
            " or env:NAME to read the URL from an environment variable).",
        )
        parser.add_argument("--table", help="With --to-db: the table (schema.table allowed).")
        parser.add_argument(
            "--key-column",
            default="question_id",
            help="With --to-db: the column that holds the question_id (default question_id).",
        )
        parser.add_argument(
            "--column",
            default="latex",
            help="With --to-db: the text column the LaTeX goes into (default latex).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"With --to-db: rows per transaction (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="With --to-db: show the count and a sample of the changes; change nothing.",
        )
        parser.add_argument(
            "--sample",
            type=int,
            default=5,
            help="With --dry-run: how many changes to show (default 5).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="With --to-db: also overwrite rows whose value there changed since the import.",
        )

    def handle(self, *args, **opts):
        questions = Question.objects.results(all_successful=opts["all_successful"])
        for name in ("subject", "grade"):
            if opts[name] is not None:
                questions = questions.filter(**{name: opts[name]})
        if opts["to_db"]:
            self._to_db(questions, opts)
        elif opts["split"] is not None:
            self._split(questions, opts)
        else:
            self._to_file(questions, opts)

    def _to_file(self, questions, opts) -> None:
        if not opts["out"]:
            raise CommandError(_("Give an output file, or --to-db URL --table T."))
        out = Path(opts["out"])
        fmt = opts["format"] or out.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise CommandError(
                _("Unknown format %(fmt)r; use --format %(formats)s.")
                % {"fmt": fmt, "formats": "|".join(FORMATS)}
            )
        try:
            count = export_to_file(questions, fmt, out)
        except ExportError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            _("Exported %(count)s results to %(out)s (%(fmt)s).")
            % {"count": count, "out": out, "fmt": fmt}
        )

    def _split(self, questions, opts) -> None:
        if not opts["out"]:
            raise CommandError(_("--split writes into a folder: give it as OUT."))
        if (opts["format"] or "json") != "json":
            raise CommandError(_("--split writes JSON files only (--format json)."))
        if opts["split"] < 1:
            raise CommandError(_("--split needs a number of results per file of at least 1."))
        selection = "successful" if opts["all_successful"] else "approved"
        paths = export_results_split(
            questions, Path(opts["out"]), per_file=opts["split"], extra={"selection": selection}
        )
        self.stdout.write(
            _("Wrote %(n)d result files and %(stats)s in %(out)s.")
            % {"n": len(paths) - 1, "stats": paths[0].name, "out": opts["out"]}
        )

    def _to_db(self, questions, opts) -> None:
        if opts["out"] or opts["split"] is not None:
            raise CommandError(_("--to-db writes into a table: give no output file or --split."))
        if not opts["table"]:
            raise CommandError(_("--to-db needs --table."))
        if opts["batch_size"] < 1:
            raise CommandError(_("--batch-size must be at least 1."))
        target = Target(
            url=database_url(opts["to_db"]),
            table=opts["table"],
            key_column=opts["key_column"],
            column=opts["column"],
        )
        try:
            report = write_back(
                questions,
                target,
                batch_size=opts["batch_size"],
                dry_run=opts["dry_run"],
                force=opts["force"],
                sample=max(0, opts["sample"]),
            )
        except WriteBackError as error:
            done = error.report
            before = (
                _(" %(n)d rows in %(b)d earlier batches were written.")
                % {"n": done.written, "b": done.batches}
                if done is not None and done.batches and not done.dry_run
                else ""
            )
            raise CommandError(
                _("Write-back to %(target)s stopped: %(error)s.%(before)s")
                % {"target": target.label, "error": error, "before": before}
            ) from error
        self.stdout.write("\n".join(report.lines()))
