"""The CLI: convert, job, monitor and demo."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django_q.models import OrmQ

from conversions import services
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, Question
from conversions.results import ItemResult
from tests.jobutil import ROOT, make_questions
from tests.settings import subprocess_env


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_convert_rules_wait_on_the_demo_bank_needs_no_api_key(settings):
    settings.OPENAI_API_KEY = ""
    call_command("load_demo", stdout=StringIO())
    total = Question.objects.count()
    output = run("convert", "--backend", "rules", "--wait")
    job = Job.objects.get()
    assert output.startswith(
        f"Job {job.pk} created: {total} items, backend rules.\n"
        "No django-q2 cluster is running: working in this process.\n"
        f"Job {job.pk} ({job.name}): completed"
    )
    assert job.name.endswith(f"· {total} questions")  # a name a person finds again
    assert f"  items       {total} done of {total}: " in output
    assert "  routes      rules " in output
    assert f"job-{job.pk:06d}.log" in output
    assert job.status in (Job.Status.COMPLETED, Job.Status.COMPLETED_WITH_ERRORS)
    assert not job.items.filter(status__in=["pending", "running"]).exists()
    converted = Question.objects.filter(conversion_state="converted").count()
    assert converted == job.items.filter(status="succeeded").count() > total * 0.8


@pytest.mark.django_db
def test_convert_queues_a_job_with_the_options_given(django_capture_on_commit_callbacks):
    make_questions(80)
    with django_capture_on_commit_callbacks(execute=True):
        output = run("convert", "--test", "--batch-size", "20", "--no-cache", "--name", "t")
    job = Job.objects.get()
    assert output == (
        f"Job {job.pk} created: 50 items, backend rules.\n"
        f"Queued. Watch it with `python manage.py monitor {job.pk}` "
        "(a `python manage.py qcluster` must be running).\n"
    )
    assert (job.batch_size, job.use_cache, job.test_mode, job.name) == (20, False, True, "t")
    assert OrmQ.objects.count() == 1
    run("convert", "--limit", "7")
    assert Job.objects.order_by("-id")[0].total_items == 7


@pytest.mark.django_db
def test_convert_reports_configuration_errors_before_any_work(settings, llm):
    make_questions(3)
    settings.OPENAI_API_KEY = ""
    with pytest.raises(CommandError, match="OPENAI_API_KEY is not set"):
        run("convert", "--backend", "openai")
    settings.OPENAI_API_KEY = "k"
    with pytest.raises(CommandError, match="Unknown model no-such-model"):
        run("convert", "--backend", "hybrid", "--model", "no-such-model")
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    with pytest.raises(CommandError, match="Cannot reach the API at http://127.0.0.1:9/v1"):
        run("convert", "--backend", "openai")
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_convert_wait_with_the_llm_prints_tokens_and_cost(llm):
    make_questions(12)
    output = run("convert", "--backend", "openai", "--wait", "--max-concurrent", "3")
    assert re.search(r"  tokens      \d+ in / \d+ out; API calls 12 \(1.00 per item\)", output)
    assert re.search(
        r"  cost        \$0\.00\d{4}; cache hits 0 \(0\.0 %\) saved \$0\.000000\n", output
    )
    assert llm.stats()["requests"] == 12


@pytest.mark.django_db
def test_job_command_steers_and_reports(django_capture_on_commit_callbacks):
    make_questions(4)
    job = services.job_create(
        job_settings=JobSettings(backend="rules"),
        questions=Question.objects.all(),
        selection={},
        enqueue=False,
    )
    assert run("job", "pause", str(job.pk)) == f"Job {job.pk}: queued -> paused.\n"
    with pytest.raises(CommandError, match="is paused: only a queued or running job can be"):
        run("job", "pause", str(job.pk))
    with django_capture_on_commit_callbacks(execute=True):
        assert run("job", "resume", str(job.pk)) == f"Job {job.pk}: paused -> queued.\n"
    batch = services.items_claim(job=job, owner="w", limit=4)
    services.outcomes_record(
        job=job,
        owner="w",
        results=[
            ItemResult(
                item_id=i.pk,
                question_id=i.question_id,
                status=Item.Status.FAILED,
                error_category="timeout",
                error_message="too slow",
            )
            for i in batch.items[:2]
        ]
        + [
            ItemResult(
                item_id=i.pk, question_id=i.question_id, status=Item.Status.SUCCEEDED, latex="x"
            )
            for i in batch.items[2:]
        ],
    )
    services.job_finish_if_done(job=job)
    stats = json.loads(run("job", "stats", str(job.pk), "--json"))
    assert stats["counts"] == {"failed": 2, "succeeded": 2}
    assert stats["failures"] == {"timeout": {"count": 2, "samples": ["too slow"]}}
    text = run("job", "stats", str(job.pk))
    assert "  failures    Timeout [timeout] 2: too slow" in text

    exported = run("job", "export", str(job.pk))
    assert "stats.json" in exported and "1 batch file(s)" in exported
    assert run("job", "retry", str(job.pk)) == (
        f"Job {job.pk}: 2 item(s) queued again; job is queued.\n"
    )
    assert run("job", "cancel", str(job.pk)) == f"Job {job.pk}: queued -> cancelled.\n"
    with pytest.raises(CommandError, match="Job 999 does not exist"):
        run("job", "stats", "999")


@pytest.mark.django_db
def test_monitor_prints_a_dashboard(settings):
    settings.OPENAI_API_KEY = ""
    make_questions(5)
    run("convert", "--wait")
    job = Job.objects.get()
    screen = run("monitor", str(job.pk), "--once")
    assert "cluster NOT RUNNING" in screen
    assert f"Job {job.pk} ({job.name}): completed" in screen
    assert job.name.endswith("· 5 questions") and " rules " in job.name  # findable
    assert "[##############################] 100.0% 5/5  completed" in screen
    overview = run("monitor", "--once")
    assert f"#{job.pk:<5} rules   [####" in overview
    assert "last 24 h: 5 items, success 100.0 %" in overview
    with pytest.raises(CommandError, match="Job 999 does not exist"):
        run("monitor", "999", "--once")


@pytest.mark.django_db
def test_demo_without_serving_loads_logs_in_and_converts(settings):
    settings.OPENAI_API_KEY = ""
    first = run("demo", "--no-serve")
    password = re.search(r"Admin login: admin / (\S+)", first).group(1)
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    assert re.search(
        r"Job \d+ \(데모: 규칙 변환기, 문제 은행 전체 / demo: rules backend, whole bank\): "
        r"completed",
        first,
    )
    assert re.search(r"  repeats     \d+ of \d+ formulas", first)
    second = run("demo", "--no-serve")
    new_password = re.search(r"Admin login: admin / (\S+)", second).group(1)
    admin.refresh_from_db()
    assert new_password != password and admin.check_password(new_password)
    assert get_user_model().objects.count() == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_demo_serves_the_admin_and_stops_everything_on_ctrl_c():
    port, fake_port = free_port(), free_port()
    env = subprocess_env(DEBUG="1", OPENAI_API_KEY="", OPENAI_BASE_URL="", PYTHONUNBUFFERED="1")
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), "--fake-port", str(fake_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "mathconv is running" in line:
                break
        output = "".join(lines)
        assert re.search(r"Admin login: admin / \S+", output)
        assert re.search(
            r"Job \d+ \(데모: 규칙 변환기, 문제 은행 전체 / demo: rules backend, whole bank\): "
            r"completed",
            output,
        )
        assert f"http://127.0.0.1:{port}/admin/" in output
        assert status(f"http://127.0.0.1:{port}/admin/login/") == 200
        # The local OpenAI-compatible server is up (and, like the real one, wants a key).
        assert status(f"http://127.0.0.1:{fake_port}/v1/models") == 401
    finally:
        demo.send_signal(signal.SIGINT)
        remaining = demo.communicate(timeout=30)[0]
    assert demo.returncode == 0
    assert "Stopped." in remaining
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # the web server is gone
