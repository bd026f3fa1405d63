"""A fake server in a process of its own, and its control endpoints, for tests and benchmarks.

    with FakeServer(FakeOptions(latency=0.2)) as server:
        ...  # OPENAI_BASE_URL = server.base_url
        server.configure(rpm=600)       # POST /_config
        server.count(mathml)            # requests received for one input
        server.stats()                  # every counter

The server is a real process on a real socket (port 0: a free one), so an SDK client goes
over real HTTP. By default it runs as `python -m mathconv_dev.fakeopenai`, which needs no
Django settings; MANAGE_COMMAND runs it as `manage.py fake_openai` instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from mathconv_dev.fakeopenai.answers import input_key
from mathconv_dev.fakeopenai.cli import READY
from mathconv_dev.fakeopenai.options import FakeOptions

ROOT = Path(__file__).resolve().parents[2]
MODULE_COMMAND = (sys.executable, "-m", "mathconv_dev.fakeopenai")
MANAGE_COMMAND = (sys.executable, str(ROOT / "manage.py"), "fake_openai")


class FakeServer:
    """A fake_openai process, started by start() or `with`; stop() ends it.

    env: the child's environment (default: this one); log_path: where its stderr goes
    (default: a temporary file, removed at stop()).
    """

    def __init__(
        self,
        options: FakeOptions | None = None,
        *,
        port: int = 0,
        command: Sequence[str] = MODULE_COMMAND,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.argv = [*command, "--port", str(port), *(options or FakeOptions()).to_argv()]
        self.env = {**(env if env is not None else os.environ), "PYTHONUNBUFFERED": "1"}
        self.keep_log = log_path is not None
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="fake_openai-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.base_url = ""  # http://127.0.0.1:PORT/v1
        self.root_url = ""  # http://127.0.0.1:PORT, where the control endpoints are
        self.initial_options: dict = {}

    def start(self, timeout: float = 30.0) -> FakeServer:
        """Start the process and wait until it listens; RuntimeError with its log if not."""
        if self.process is not None:
            return self
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True
            )
        line = self._first_line(timeout)
        if READY not in line:
            log_text = self.log_text()
            self.stop()
            raise RuntimeError(f"fake_openai did not start: {line!r}\n{log_text}")
        self.base_url = line.rsplit(READY, 1)[1].strip()
        self.root_url = self.base_url.removesuffix("/v1")
        self.initial_options = self.configure()
        return self

    def _first_line(self, timeout: float) -> str:
        result: list[str] = []
        assert self.process is not None and self.process.stdout is not None  # start(): a pipe
        stdout = self.process.stdout
        reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return result[0] if result else ""

    def stop(self) -> None:
        """SIGTERM (the server logs its counters and exits), SIGKILL after 10 s."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stdout:
            self.process.stdout.close()
        if not self.keep_log:
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
        """Change FakeOptions fields on the running server; returns all of them."""
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
