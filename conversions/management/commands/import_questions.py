"""Import questions from a CSV / XLSX / JSON file or an existing PostgreSQL table."""

import os
import signal
import threading
from contextlib import contextmanager

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversions.apps import loaded_objects_frozen
from conversions.importing import (
    CHUNK_SIZE,
    DEFAULT_DB_QUERY,
    FORMATS,
    DatabaseSource,
    import_file,
    import_source,
)
from conversions.management.commands._report import TranslatedCommand


class Interrupted(Exception):
    pass


@contextmanager
def sigterm_interrupts():
    # SIGTERM unwinds the import like Ctrl-C does, so its transaction is rolled back.
    def interrupt(signum, frame):
        raise Interrupted

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Import questions keyed on question_id: new rows are created, changed rows updated, "
        "unchanged rows skipped. The whole source is validated first; if any row is bad, "
        "every bad row is reported with its row number and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help=_("CSV, XLSX or JSON (array or JSON Lines)."))
        parser.add_argument(
            "--format", choices=FORMATS, help=_("File format (default: from the file extension).")
        )
        parser.add_argument(
            "--encoding",
            help=_(
                "CSV text encoding, e.g. utf-8 or cp949 (default: detect UTF-8, UTF-8 with "
                "BOM, UTF-16 with BOM or CP949)."
            ),
        )
        parser.add_argument(
            "--dry-run", action="store_true", help=_("Validate and count; write nothing.")
        )
        parser.add_argument(
            "--allow-empty-mathml",
            action="store_true",
            help=_(
                "Accept text-only rows (e.g. documents to label with just id and text "
                "columns): the mathml column may be missing, and rows with text may have no "
                "MathML. An empty MathML never erases an existing one."
            ),
        )
        parser.add_argument(
            "--from-db",
            metavar="URL",
            help=_(
                "Read an existing PostgreSQL question table instead of a file, read-only "
                "(postgres://user:pass@host/db, or env:NAME to take the URL from an "
                "environment variable and keep the password out of the process list)."
            ),
        )
        parser.add_argument(
            "--query",
            default=DEFAULT_DB_QUERY,
            help=_("SQL for --from-db; its column names are the import columns (default: %(q)s).")
            % {"q": DEFAULT_DB_QUERY},
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=CHUNK_SIZE,
            help=_("Rows compared and written per database round trip."),
        )

    def handle(self, *args, **options):
        if bool(options["file"]) == bool(options["from_db"]):
            raise CommandError(_("Give either FILE or --from-db URL."))
        settings = {
            "dry_run": options["dry_run"],
            "allow_empty_mathml": options["allow_empty_mathml"],
            "chunk_size": max(1, options["chunk_size"]),
        }
        try:
            with sigterm_interrupts(), loaded_objects_frozen():
                if options["from_db"]:
                    source = DatabaseSource(database_url(options["from_db"]), options["query"])
                    report = import_source(source, **settings)
                else:
                    report = import_file(
                        options["file"],
                        fmt=options["format"],
                        encoding=options["encoding"],
                        **settings,
                    )
        except (Interrupted, KeyboardInterrupt) as exc:
            raise CommandError(_("Interrupted: nothing was written.")) from exc
        if not report.ok:
            raise CommandError("\n".join(report.lines()))
        self.stdout.write("\n".join(report.lines()))


def database_url(value: str) -> str:
    if value.startswith("env:"):
        url = os.environ.get(value[4:], "")
        if not url:
            raise CommandError(
                _("The environment variable %(name)s is not set.") % {"name": value[4:]}
            )
        return url
    return value
