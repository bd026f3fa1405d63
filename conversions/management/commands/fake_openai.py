"""`manage.py fake_openai`: the local OpenAI-compatible server (conversions/fakeopenai.py)."""

import asyncio
import sys

from django.core.management.base import BaseCommand

from conversions.apps import freeze_loaded_objects
from conversions.fakeopenai import DEFAULT_MODELS, FakeOptions, serve_forever


class Command(BaseCommand):
    help = (
        "Serve a local OpenAI-compatible API (chat completions, models) for tests, "
        "benchmarks and demos, with configurable latency, rate limits and faults."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
        parser.add_argument(
            "--port", type=int, default=8001, help="Port to listen on (0: any free port)."
        )
        parser.add_argument("--latency", type=float, default=0.0, help="Seconds per answer.")
        parser.add_argument(
            "--jitter", type=float, default=0.0, help="Extra random latency, up to S seconds."
        )
        parser.add_argument(
            "--rpm", type=int, default=None, help="Requests per minute before answering 429."
        )
        parser.add_argument(
            "--tpm", type=int, default=None, help="Tokens per minute before answering 429."
        )
        parser.add_argument(
            "--window",
            type=float,
            default=60.0,
            help="Sliding window in seconds for --rpm/--tpm (scaled: rpm*window/60 per window).",
        )
        parser.add_argument(
            "--error-rate", type=float, default=0.0, help="Share of requests answered 500/503."
        )
        parser.add_argument(
            "--timeout-rate",
            type=float,
            default=0.0,
            help="Share of requests that hang (longer than any sane client timeout).",
        )
        parser.add_argument(
            "--hang", type=float, default=600.0, help="Seconds a hanging request hangs."
        )
        parser.add_argument(
            "--wrong-rate",
            type=float,
            default=0.0,
            help="Share of answers that are valid JSON but wrong.",
        )
        parser.add_argument(
            "--garbage-rate",
            type=float,
            default=0.0,
            help="Share of answers whose content is malformed JSON.",
        )
        parser.add_argument(
            "--truncate-rate",
            type=float,
            default=0.0,
            help="Share of answers whose HTTP body is cut off halfway (connection closed).",
        )
        parser.add_argument(
            "--storm-every",
            type=float,
            default=0.0,
            help="Seconds between the starts of 429 storms (0: no storms).",
        )
        parser.add_argument(
            "--storm-length",
            type=float,
            default=0.0,
            help="Seconds each 429 storm lasts: every request is answered 429 meanwhile.",
        )
        parser.add_argument(
            "--seed", type=int, default=0, help="Seed of the per-input fault decisions."
        )
        parser.add_argument(
            "--retry-after",
            type=float,
            default=1.0,
            help='Seconds a forced 429 (an input carrying "fake:status=429") asks to wait.',
        )
        parser.add_argument(
            "--no-ratelimit-headers",
            action="store_true",
            help="Do not send x-ratelimit-* headers.",
        )
        parser.add_argument(
            "--models",
            default=",".join(DEFAULT_MODELS),
            help="Comma-separated model ids the server knows.",
        )

    def handle(self, *args, **opts):
        options = FakeOptions(
            latency=opts["latency"],
            jitter=opts["jitter"],
            rpm=opts["rpm"],
            tpm=opts["tpm"],
            window=opts["window"],
            error_rate=opts["error_rate"],
            timeout_rate=opts["timeout_rate"],
            hang=opts["hang"],
            wrong_rate=opts["wrong_rate"],
            garbage_rate=opts["garbage_rate"],
            truncate_rate=opts["truncate_rate"],
            storm_every=opts["storm_every"],
            storm_length=opts["storm_length"],
            seed=opts["seed"],
            retry_after=opts["retry_after"],
            ratelimit_headers=not opts["no_ratelimit_headers"],
            models=tuple(m.strip() for m in opts["models"].split(",") if m.strip()),
        )

        # Everything loaded so far out of the garbage collector's sight: a full
        # collection would otherwise pause every response in flight for ~50 ms.
        freeze_loaded_objects()

        def ready(url: str) -> None:
            self.stdout.write(f"fake_openai listening on {url}")
            sys.stdout.flush()

        asyncio.run(serve_forever(options, opts["host"], opts["port"], ready))
