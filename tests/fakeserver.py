"""Start `manage.py fake_openai` for a test and talk to its control endpoints.

The fixtures in tests/conftest.py wrap this:

- fake_openai_server (session): one server with default options for the whole run;
- fake_openai (function): that server, reset and back to default options, for one test;
  a test changes options with fake_openai.configure(latency=0.2, rpm=600, ...);
- fake_openai_factory (function): start(**options) a dedicated server (own process),
  stopped at the end of the test; for tests that need a clean process or a fixed port.

FakeServer("--latency", "0.05", rpm=600) starts one directly (CLI flags and/or options);
stop() it when done, or use it as a context manager.

The server is a real process on a real socket, so the SDK goes over real HTTP. Use
server.base_url as OPENAI_BASE_URL / Endpoint.base_url; server.count(mathml) tells how
many requests the server received for one input, server.stats() has all counters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

from conversions.fakeopenai import input_key
from tests.settings import subprocess_env

ROOT = Path(__file__).resolve().parent.parent


def _flags(options: dict) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        if name == "ratelimit_headers":
            if not value:
                args.append("--no-ratelimit-headers")
        elif value is not None:
            args += ["--" + name.replace("_", "-"), str(value)]
    return args


class FakeServer:
    """A `manage.py fake_openai --port 0` process; started by the constructor."""

    def __init__(self, *args: str, start: bool = True, **options: object) -> None:
        self.args = [*args, *_flags(options)]
        self.process: subprocess.Popen | None = None
        self.base_url = ""
        self.root_url = ""
        self.initial_options: dict = {}
        handle, name = tempfile.mkstemp(prefix="fake_openai-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        if start:
            self.start()

    def start(self, timeout: float = 30.0) -> FakeServer:
        if self.process is not None:
            return self
        command = [sys.executable, "manage.py", "fake_openai", "--port", "0", *self.args]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=subprocess_env(PYTHONUNBUFFERED="1"),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        line = self._first_line(timeout)
        if "listening on " not in line:
            log = self.log_text()
            self.stop()
            raise RuntimeError(f"fake_openai did not start: {line!r}\n{log}")
        self.base_url = line.rsplit("listening on ", 1)[1].strip()
        self.root_url = self.base_url.removesuffix("/v1")
        self.initial_options = self.configure()
        return self

    def _first_line(self, timeout: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()))
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        return result[0] if result else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stdout:
            self.process.stdout.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- control endpoints ----------------------------------------------------------------

    def _call(self, path: str, payload: dict | None = None) -> dict:
        """GET path, or POST payload to it."""
        data = json.dumps(payload).encode() if payload is not None else None
        method = "GET" if payload is None else "POST"
        request = urllib.request.Request(self.root_url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._call("/_stats")

    def reset(self) -> None:
        """Clear the counters, the rate-limit windows and the per-input attempt numbers."""
        self._call("/_reset", {})

    def configure(self, **options: object) -> dict:
        """Change options on the running server; returns all of them."""
        return self._call("/_config", options)

    def restore(self) -> None:
        """Back to the options the server started with, counters cleared."""
        self.configure(**self.initial_options)
        self.reset()

    def counts(self) -> dict[str, int]:
        """Requests received per input key (including ones answered 429)."""
        return self.stats()["per_input"]

    def count(self, text: str, stats: dict | None = None) -> int:
        """Requests received for one input: its MathML (or, for other prompts, user text)."""
        return (stats or self.stats())["per_input"].get(input_key(text), 0)

    def count_ok(self, text: str, stats: dict | None = None) -> int:
        """Requests answered 200 for one input."""
        return (stats or self.stats())["per_input_ok"].get(input_key(text), 0)


FakeOpenAIServer = FakeServer
