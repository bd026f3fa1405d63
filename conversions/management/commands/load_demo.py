"""Load the demo question bank; running it again changes nothing."""

from django.core.management.base import BaseCommand, CommandError

from conversions.demo_data import QUESTION_COUNT, demo_questions
from conversions.importing import import_records


class Command(BaseCommand):
    help = (
        "Load the demo K-12 question bank (Korean subjects and grades, varied MathML) "
        "through the regular import: idempotent, keyed on question_id."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--count",
            type=int,
            default=QUESTION_COUNT,
            help="How many demo questions (the first N of the same fixed sequence).",
        )

    def handle(self, *args, **options):
        count = options["count"]
        report = import_records(lambda: demo_questions(count), label="demo bank")
        if not report.ok:
            raise CommandError("\n".join(report.lines()))
        self.stdout.write("\n".join(report.lines()))
