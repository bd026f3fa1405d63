"""`manage.py fake_openai`: the local OpenAI-compatible server (mathconv_dev/fakeopenai/)."""

from django.core.management.base import BaseCommand

from mathconv_dev.fakeopenai.cli import add_arguments, run


class Command(BaseCommand):
    help = (
        "Serve a local OpenAI-compatible API (chat completions, models) for tests, "
        "benchmarks and demos, with configurable latency, rate limits and faults."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, **options):
        run(options)
