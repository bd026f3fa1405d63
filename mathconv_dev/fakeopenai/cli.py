"""The command line shared by `manage.py fake_openai` and `python -m mathconv_dev.fakeopenai`."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import sys

from mathconv_dev.fakeopenai.options import FakeOptions
from mathconv_dev.fakeopenai.server import serve_forever

READY = "fake_openai listening on "  # then the base URL (ending in /v1), on stdout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    parser.add_argument(
        "--port", type=int, default=8001, help="Port to listen on (0: any free port)."
    )
    FakeOptions.add_arguments(parser)


def run(arguments: dict) -> None:
    """Serve until SIGTERM/SIGINT; print READY + base URL once listening."""
    options = FakeOptions.from_arguments(arguments)

    # Everything loaded so far out of the garbage collector's sight: a full collection
    # would otherwise pause every response in flight for ~50 ms.
    gc.collect()
    gc.freeze()

    def ready(url: str) -> None:
        sys.stdout.write(READY + url + "\n")
        sys.stdout.flush()

    host, port = arguments["host"], arguments["port"]
    try:
        asyncio.run(serve_forever(options, host, port, ready))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Not a traceback: a second `fake_openai --port 8001` while `make demo` serves.
        sys.stderr.write(
            f"fake_openai: port {port} on {host} is in use (another server, e.g. the one "
            "`make demo` starts, may already answer there); nothing was started.\n"
        )
        raise SystemExit(1) from None
