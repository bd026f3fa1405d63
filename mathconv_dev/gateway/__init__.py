"""An OpenAI-compatible gateway the project did not write: the LiteLLM proxy, for tests.

`make gateway` installs it into var/gateway-venv, its own environment, never the
project's: litellm[proxy] at the exact version LITELLM_VERSION, its wheel checked
against LITELLM_SHA256 (PyPI's published hash), every dependency at the version in
constraints.txt beside this file. Versions 1.82.7 and 1.82.8 were a supply-chain
compromise (March 2026, a credential stealer in a .pth file); 1.80.10 predates it, and
the install step refuses any .pth file but setuptools' own.

    with Gateway(upstream="http://127.0.0.1:PORT/v1", models=["gpt-4.1-mini"]) as gw:
        ...  # an OpenAI client on gw.base_url with the key gw.master_key

The proxy forwards every model to the upstream (our fake server) as an OpenAI provider,
with its own retries off, so the engine's requests, headers, errors and usage parsing
meet LiteLLM's own implementation on the way. No database, no telemetry, no model-cost
download (LITELLM_LOCAL_MODEL_COST_MAP).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "var" / "gateway-venv"
LITELLM = VENV / "bin" / "litellm"
LITELLM_VERSION = "1.80.10"  # the Makefile's LITELLM_VERSION says the same
MASTER_KEY = "sk-gateway-test-not-secret"


def installed() -> bool:
    """Whether `make gateway` has installed the proxy (var/gateway-venv)."""
    return LITELLM.exists() and (VENV / f".installed-{LITELLM_VERSION}").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gateway:
    """A LiteLLM proxy process on a free port in front of one upstream; stop() ends it."""

    def __init__(
        self, *, upstream: str, models: Sequence[str], upstream_key: str = "not-needed"
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.master_key = MASTER_KEY
        config = {
            "model_list": [
                {
                    "model_name": model,
                    "litellm_params": {
                        "model": f"openai/{model}",
                        "api_base": upstream,
                        "api_key": upstream_key,
                    },
                }
                for model in models
            ],
            "litellm_settings": {"num_retries": 0, "request_timeout": 30, "telemetry": False},
            "general_settings": {"master_key": MASTER_KEY},
        }
        handle, name = tempfile.mkstemp(prefix="litellm-", suffix=".json")
        with os.fdopen(handle, "w") as file:
            json.dump(config, file)
        self.config_path = Path(name)
        handle, name = tempfile.mkstemp(prefix="litellm-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)
        self.process: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        """A bare environment: no DATABASE_URL (the proxy would open it), no keys."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_LOG="ERROR",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, timeout: float = 120.0) -> Gateway:
        """Start the proxy and wait until it answers; RuntimeError with its log if not."""
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    str(LITELLM),
                    "--config",
                    str(self.config_path),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--num_workers",
                    "1",
                ],
                cwd=tempfile.gettempdir(),
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/health/liveliness", timeout=2
                ) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.25)
        log_text = self.log_path.read_text(errors="replace")[-4000:]
        self.stop()
        raise RuntimeError(f"the LiteLLM proxy did not start:\n{log_text}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.config_path.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
