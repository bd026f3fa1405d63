"""`manage.py qcluster` stops cleanly when the whole process group gets SIGTERM (systemd)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conversions import services
from conversions.jobsettings import JobSettings
from conversions.models import Job, Question
from tests.jobutil import API_KEY, make_questions, wait_until
from tests.settings import subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
LEASE_S = 3


def start_cluster(log: Path, **env: str) -> subprocess.Popen:
    """A qcluster in its own session, as systemd starts a service; its log goes to `log`."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=subprocess_env(Q_LOG_LEVEL="INFO", **env),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        start_new_session=True,
    )
    try:
        wait_until(lambda: "running." in log.read_text(), timeout=120, interval=0.2)
    except AssertionError:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(proc: subprocess.Popen) -> int | None:
    """SIGTERM to the whole group, as `systemctl stop` does; the exit code, or None if hung."""
    os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 60  # a ceiling only: a clean stop takes about a second
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    code = proc.poll()
    if code is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return code


def test_an_idle_cluster_exits_on_sigterm_to_its_process_group(tmp_path):
    for attempt in range(3):  # it hung 6 times out of 6 before the fix
        log = tmp_path / f"qcluster-{attempt}.log"
        proc = start_cluster(log)
        assert stop_group(proc) == 0, log.read_text()[-2000:]
        assert "has stopped" in log.read_text()
        wait_until(lambda pgid=proc.pid: not group_alive(pgid), timeout=30)


def test_a_busy_cluster_exits_on_sigterm_and_the_job_can_go_on(llm, tmp_path, settings):
    settings.MATHCONV_LEASE_SECONDS = LEASE_S
    # Two calls always in flight (0.2 s each): busy when the signal comes, 4 s of work.
    llm.configure(latency=0.2)
    make_questions(40)
    env = {
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": API_KEY,
        "MATHCONV_LEASE_SECONDS": str(LEASE_S),
    }
    proc = start_cluster(tmp_path / "qcluster.log", **env)
    job = services.job_create(
        questions=Question.objects.all(),
        selection={"test": True},
        job_settings=JobSettings(backend=Job.Backend.OPENAI, batch_size=5, max_concurrent=2),
    )
    services.job_enqueue(job=job)
    wait_until(lambda: job.items.filter(status="succeeded").exists(), timeout=120)

    assert stop_group(proc) == 0, (tmp_path / "qcluster.log").read_text()[-2000:]
    wait_until(lambda: not group_alive(proc.pid), timeout=30)
    assert job.items.exclude(status="succeeded").exists()  # stopped mid-job

    # The items the stopped workers held are claimed again once their lease expires.
    proc = start_cluster(tmp_path / "qcluster-2.log", **env)
    try:
        wait_until(services.jobs_reconcile, timeout=60, interval=0.5)
        wait_until(lambda: Job.objects.get(pk=job.pk).is_final, timeout=180, interval=0.5)
    finally:
        stop_group(proc)
    assert job.items.filter(status="succeeded").count() == 40


def test_a_cluster_polling_remote_batches_every_second_exits_on_sigterm_too(tmp_path):
    # Its own process then queues the remote batches' poller every second
    # (conversions.batchapi.poll_ticker) while the cluster runs.
    log = tmp_path / "qcluster.log"
    proc = start_cluster(log, MATHCONV_BATCH_POLL_SECONDS="1")
    time.sleep(2)  # a few ticks
    assert stop_group(proc) == 0, log.read_text()[-2000:]
    assert "has stopped" in log.read_text()
    wait_until(lambda: not group_alive(proc.pid), timeout=30)

    # SIGTERM to the command's process alone (a terminal's kill): the same.
    proc = start_cluster(tmp_path / "qcluster-2.log", MATHCONV_BATCH_POLL_SECONDS="1")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    wait_until(lambda: not group_alive(proc.pid), timeout=30)
