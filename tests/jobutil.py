"""Helpers for the job tests: questions, prices, the fake server, a qcluster subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from django.db.models import Count
from django.utils import timezone
from django_q.models import OrmQ

from conversions.models import Job, ModelPrice, Question
from mathconv_dev.fakeopenai import FakeServer
from tests.settings import subprocess_env

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-key-not-secret"


def fraction(n: int) -> str:
    """A distinct, simple formula per n that the rules converter handles."""
    return (
        '<math xmlns="http://www.w3.org/1998/Math/MathML"><mfrac><mn>'
        f"{n}</mn><mi>x</mi></mfrac><mo>+</mo><msup><mi>y</mi><mn>2</mn></msup></math>"
    )


def tagged(n: int, directive: str) -> str:
    """A formula carrying a fake-server directive (fake:status=503*2, fake:wrong, ...)."""
    return (
        '<math xmlns="http://www.w3.org/1998/Math/MathML"><msqrt><mn>'
        f"{n}</mn></msqrt><mtext>{directive}</mtext></math>"
    )


def make_questions(count: int, *, prefix: str = "Q", mathml=fraction, start: int = 1) -> list:
    return Question.objects.bulk_create(
        Question(question_id=f"{prefix}-{n:05d}", mathml=mathml(n))
        for n in range(start, start + count)
    )


def seed_prices() -> None:
    # Transactional tests flush the seeded rows, so tests that price calls seed them.
    ModelPrice.objects.get_or_create(
        model="gpt-4.1-mini",
        defaults={"input_per_mtok": Decimal("0.40"), "output_per_mtok": Decimal("1.60")},
    )
    ModelPrice.objects.get_or_create(
        model="gpt-4o-mini",
        defaults={"input_per_mtok": Decimal("0.15"), "output_per_mtok": Decimal("0.60")},
    )


def calls(server: FakeServer, mathml: str) -> int:
    """How many requests the fake server received for this input."""
    return server.count(mathml)


class Cluster:
    """A real `manage.py qcluster` on this run's test database, in its own process group."""

    def __init__(self, **env: str) -> None:
        self.env = subprocess_env(**env)
        self.proc: subprocess.Popen | None = None
        # Its log, so that a failing test can say what the cluster did (log_tail).
        fd, self.log_path = tempfile.mkstemp(prefix="mathconv-cluster-", suffix=".log")
        os.close(fd)

    def start(self) -> Cluster:
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except FileNotFoundError:
            return "(stopped: log removed)"
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole cluster (sentinel, pusher, workers) like a crashed machine."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM to the qcluster command (it stops its processes), then reap the group."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        if self.proc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log_path)


def wait_until(condition, timeout: float = 60.0, interval: float = 0.1, explain=None):
    """Poll until condition() is truthy; return its value, or fail after timeout.

    explain: a callable whose text (the state, the clusters' logs) the failure carries.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    detail = f"\n{explain()}" if explain else ""
    raise AssertionError(f"condition not met within {timeout} s{detail}")


def queue_state(job, clusters=()) -> str:
    """What a stuck queue test needs to be understood: the job, its items, runs and
    queued tasks, and the tail of each cluster's log."""
    job = Job.objects.get(pk=job.pk)
    lines = [
        f"now={timezone.now():%H:%M:%S.%f} job status={job.status} heartbeat={job.heartbeat_at}",
        f"items: {dict(job.items.values_list('status').annotate(n=Count('id')))}",
        "running: "
        + "; ".join(
            f"{owner} until {until:%H:%M:%S} x{n}"
            for owner, until, n in job.items.filter(status="running")
            .values_list("lease_owner", "lease_expires_at")
            .annotate(n=Count("id"))
        ),
        "runs: "
        + "; ".join(f"{r.owner}@{r.cluster} {r.heartbeat_at:%H:%M:%S}" for r in job.runs.all()),
        f"queued tasks: {OrmQ.objects.count()}",
    ]
    for n, cluster in enumerate(clusters):
        lines += [f"--- cluster {n} log ---", cluster.log_tail()]
    return "\n".join(lines)
