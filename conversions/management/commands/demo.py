"""`manage.py demo`: what `make demo` runs after migrate.

1. loads the demo question bank (load_demo);
2. creates the admin login `admin` with a fresh random password, printed once (run it
   again to get a new one);
3. runs the main conversion job on the embedded default, the rules backend, in this
   process, and prints its stats;
4. starts, in the foreground, a local OpenAI-compatible server (so hybrid and openai jobs
   can be launched from the admin without a key), the web server and a django-q2
   cluster; Ctrl-C stops all three.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from conversions import selectors, services
from conversions.cache import repeated_share
from conversions.jobsettings import JobSettings
from conversions.management.commands._report import format_stats
from conversions.models import Job, Question
from conversions.tasks import job_run_inline

ADMIN_USERNAME = "admin"
FAKE_API_KEY = "local-fake-server-key"  # noqa: S105 - only ever sent to our own local server


class Command(BaseCommand):
    help = (
        "Load the demo bank, create an admin login, run a conversion job, then serve the "
        "admin with a django-q2 cluster and a local OpenAI-compatible server."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--port", type=int, default=8000, help="Port of the web server (default 8000)."
        )
        parser.add_argument(
            "--fake-port",
            type=int,
            default=None,
            help="Port of the local OpenAI-compatible server (default: --port + 1).",
        )
        parser.add_argument(
            "--no-serve",
            action="store_true",
            help="Stop after the conversion job (do not start the servers and the cluster).",
        )

    def handle(self, *args, **opts):
        fake_port = opts["fake_port"] or opts["port"] + 1
        if not opts["no_serve"]:
            for name, port in (("web server", opts["port"]), ("fake OpenAI server", fake_port)):
                if port_in_use(port):
                    raise CommandError(
                        f"Port {port} for the {name} is in use: choose others, e.g. "
                        f"`make demo PORT={opts['port'] + 10}` (or --port/--fake-port)."
                    )
        self.stdout.write("Loading the demo question bank ...")
        call_command("load_demo", stdout=self.stdout, stderr=self.stderr)
        password = admin_login_reset()
        self.stdout.write(
            f"Admin login: {ADMIN_USERNAME} / {password}  (printed once; `make demo` again "
            "sets a new one)"
        )
        self.run_main_job()
        if opts["no_serve"]:
            return
        serve(
            port=opts["port"],
            fake_port=fake_port,
            out=self.stdout,
            password=password,
        )

    def run_main_job(self) -> Job:
        try:
            job = services.job_create(
                job_settings=JobSettings(backend=Job.Backend.RULES, name=demo_job_name()),
                questions=Question.objects.all(),
                selection={"source": "demo"},
                enqueue=False,
            )
        except services.ConfigurationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Converting {job.total_items} questions with the rules backend ...")
        job_run_inline(job, console_level=logging.WARNING)
        self.stdout.write(format_stats(selectors.job_stats(job=job)))
        repeated, total = repeated_share(Question.objects.values_list("mathml", flat=True))
        if total:
            self.stdout.write(
                f"  repeats     {repeated} of {total} formulas ({repeated / total * 100:.1f} %) "
                "repeat an earlier one: an LLM job takes these from the cache."
            )
        return job


def demo_job_name() -> str:
    """The demo job's name in Korean and English, so that either UI finds it."""
    names = []
    for language in ("ko", "en"):
        with translation.override(language):
            names.append(str(_("demo: rules backend, whole bank")))
    return " / ".join(dict.fromkeys(names))


def admin_login_reset() -> str:
    """Create the demo superuser, or give it a new password; returns the password."""
    user_model = get_user_model()
    password = secrets.token_urlsafe(12)
    user, _ = user_model.objects.get_or_create(
        username=ADMIN_USERNAME, defaults={"email": "admin@example.invalid"}
    )
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    return password


def child_env(fake_url: str) -> dict[str, str]:
    """The children's environment: the local fake server unless an endpoint is configured."""
    env = dict(os.environ)
    if not settings.OPENAI_BASE_URL:
        env["OPENAI_BASE_URL"] = fake_url
        env["OPENAI_API_KEY"] = FAKE_API_KEY
    return env


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, child: subprocess.Popen, timeout: float = 30.0) -> bool:
    """Wait until the child listens on the port; False if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if port_in_use(port):
            return True
        time.sleep(0.2)
    return False


def serve(*, port: int, fake_port: int, out, password: str) -> None:
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
    fake_url = f"http://127.0.0.1:{fake_port}/v1"
    env = child_env(fake_url)
    commands = {
        "fake OpenAI server": [
            *manage,
            "fake_openai",
            "--port",
            str(fake_port),
            "--latency",
            "0.3",
            "--jitter",
            "0.2",
        ],
        "web server": [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
        "django-q2 cluster": [*manage, "qcluster"],
    }
    children: dict[str, subprocess.Popen] = {}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name, command in commands.items():
            children[name] = subprocess.Popen(command, env=env, cwd=settings.BASE_DIR)
        for name, listening in (("web server", port), ("fake OpenAI server", fake_port)):
            if not wait_for_port(listening, children[name]):
                raise CommandError(f"The {name} did not start on port {listening}.")
        endpoint = "local fake server " + fake_url if not settings.OPENAI_BASE_URL else "configured"
        out.write(
            f"\nmathconv is running: http://127.0.0.1:{port}/admin/  "
            f"(login {ADMIN_USERNAME} / {password})\n"
            f"LLM endpoint for openai/hybrid jobs: {endpoint}. Ctrl-C stops everything."
        )
        out.flush()
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    out.write(f"The {name} exited ({child.returncode}); stopping the rest.")
                    stopping = True
                    break
            time.sleep(0.3)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        out.write("Stopped.")
