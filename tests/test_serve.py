"""`make serve`: the production stack (DEBUG off, gunicorn, two qclusters) serves its own
pages, static files and MathLive, and its clusters report to a cache every process shares.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import django
import pytest

ROOT = Path(__file__).resolve().parent.parent
ADMIN_STATIC = Path(django.__file__).parent / "contrib" / "admin" / "static" / "admin"
MATHLIVE = ROOT / "static" / "vendor" / "mathlive" / "mathlive.min.js"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_env(var_dir: Path) -> dict[str, str]:
    """A local run with nothing configured: no SECRET_KEY, no DEBUG, SQLite, ORM broker."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "DEBUG", "MATHCONV_USE_TEST_DB", "STATIC_ROOT"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="mathconv.settings",
        MATHCONV_VAR_DIR=str(var_dir),
        DATABASE_URL="",
        REDIS_URL="",
    )
    return env


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read()


@pytest.mark.slow
@pytest.mark.skipif(not MATHLIVE.exists(), reason="MathLive is not vendored (make vendor)")
def test_make_serve_runs_the_production_stack_with_debug_off(tmp_path):
    port = free_port()
    env = stack_env(tmp_path / "var")
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mathconv.serve", "--port", str(port), "--web-workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                status, ctype, body = get(f"http://127.0.0.1:{port}/admin/login/")
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(1)
        assert status == 200 and ctype.startswith("text/html")
        assert b'name="csrfmiddlewaretoken"' in body

        status, ctype, body = get(f"http://127.0.0.1:{port}/static/admin/css/base.css")
        assert status == 200 and ctype.startswith("text/css")
        assert body == (ADMIN_STATIC / "css" / "base.css").read_bytes()

        status, ctype, body = get(f"http://127.0.0.1:{port}/static/vendor/mathlive/mathlive.min.js")
        assert status == 200 and "javascript" in ctype
        assert body == MATHLIVE.read_bytes()

        # DEBUG is off (a debug 404 page would name the URLconf) and the key was generated.
        try:
            get(f"http://127.0.0.1:{port}/no-such-page/")
            raise AssertionError("expected a 404")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            assert b"URLconf" not in exc.read()
        key = tmp_path / "var" / "secret_key"
        assert key.stat().st_mode & 0o777 == 0o600

        # Both clusters report through the shared cache, as `qinfo` reads it.
        probe = (
            "import django; django.setup(); from django_q.status import Stat; "
            "print(len(Stat.get_all()))"
        )
        deadline = time.monotonic() + 120
        while True:
            out = subprocess.run(
                [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
            )
            assert out.returncode == 0, out.stderr
            if out.stdout.strip() == "2":
                break
            assert time.monotonic() < deadline, f"clusters seen: {out.stdout}"
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert "Stopped." in (tmp_path / "serve.log").read_text()
