"""`manage.py label` over real HTTP (the fake OpenAI server) on the real database."""

from __future__ import annotations

import csv
import importlib
import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from conversions import labeling
from conversions.engine.labeling import LabelTask, check_labels
from conversions.engine.types import WorkItem
from conversions.models import Item, Job, LabelSchema, Question
from mathconv_dev.fakeopenai import input_key
from tests.settings import subprocess_env

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-key-for-the-fake-server"


def write_csv(path: Path, rows: int, *, encoding: str = "utf-8") -> list[tuple[str, str]]:
    """A plain id + text CSV like the old pooled_data.csv (Korean text)."""
    data = [
        (f"P{n:04d}", f"문서 {n}: 삼각형의 넓이가 {n + 3} 일 때 높이를 구하시오.")
        for n in range(rows)
    ]
    with path.open("w", encoding=encoding, newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["id", "text"])
        writer.writerows(data)
    return data


def ensure_default_schema() -> LabelSchema:
    """The shipped default schema (a transactional test before this one may have flushed it)."""
    shipped = importlib.import_module("conversions.migrations.0005_default_label_schema")
    schema, _ = LabelSchema.objects.get_or_create(
        name="default", defaults={"instructions": shipped.INSTRUCTIONS, "fields": shipped.FIELDS}
    )
    return schema


def request_key(text: str) -> str:
    """The fake server's per-input key of the labeling request for this row."""
    task = LabelTask(labeling.label_spec(LabelSchema.objects.get(name="default")))
    return input_key(task.build_messages(WorkItem(item_id=0, ref="", text=text))[1]["content"])


def run_label(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("label", *args, stdout=out, stderr=err)
    return out.getvalue()


@pytest.fixture
def server(fake_openai):
    return fake_openai


@pytest.fixture
def openai_settings(settings, server):
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = API_KEY
    return settings


@pytest.mark.django_db
def test_test_mode_touches_exactly_50_rows_of_a_cp949_csv(tmp_path, server, openai_settings):
    source = tmp_path / "pooled_data.csv"
    rows = write_csv(source, 120, encoding="cp949")

    out = run_label("--input-csv", str(source), "--mode", "test")

    job = Job.objects.get()
    assert (job.kind, job.model, job.total_items, job.test_mode) == (
        "label",
        "gpt-4o-mini",
        50,
        True,
    )
    assert job.status == Job.Status.COMPLETED
    stats = server.stats()
    first_50 = {request_key(text) for _, text in rows[:50]}
    assert set(stats["per_input"]) == first_50 and stats["requests"] == 50
    labeled = set(Question.objects.exclude(labels={}).values_list("question_id", flat=True))
    assert labeled == {ref for ref, _ in rows[:50]}
    assert Question.objects.count() == 120  # every row imported, 50 labeled

    assert "pooled_data.csv [csv] (cp949): 120 rows" in out
    assert "Created 120, updated 0, skipped 0 (unchanged)." in out
    assert f"Job {job.pk} created: 50 rows to label with gpt-4o-mini (schema default v1)." in out
    assert "Labeled 50 of 50 rows; 0 left for review (invalid answers), 0 failed, " in out
    assert "Success rate: 100.0 % (50/50)." in out
    output = tmp_path / "pooled_data_labeled.csv"
    assert f"Wrote 50 rows to {output}" in out

    with output.open(encoding="utf-8-sig") as fp:
        written = list(csv.DictReader(fp))
    assert list(written[0]) == [
        "id",
        "text",
        "label_unit",
        "label_difficulty",
        "label_skill_type",
        "label_keywords",
        "label_status",
        "label_schema",
        "label_model",
        "label_error",
    ]
    assert [(r["id"], r["text"]) for r in written] == rows[:50]
    spec = labeling.label_spec(LabelSchema.objects.get(name="default"))
    for row in written:
        question = Question.objects.get(question_id=row["id"])
        assert check_labels(spec, question.labels) == question.labels
        assert row["label_unit"] == question.labels["unit"]
        assert row["label_difficulty"] == str(question.labels["difficulty"])
        assert row["label_keywords"] == "; ".join(question.labels["keywords"])
        assert (row["label_status"], row["label_schema"], row["label_model"]) == (
            "labeled",
            "default v1",
            "gpt-4o-mini",
        )


@pytest.mark.django_db
def test_skip_labeled_leaves_labeled_rows_alone(tmp_path, server, openai_settings):
    source = tmp_path / "docs.csv"
    rows = write_csv(source, 80)
    run_label("--input-csv", str(source), "--limit", "30")
    before = server.stats()["per_input"]
    assert len(before) == 30

    out = run_label(
        "--input-csv", str(source), "--skip-labeled", "--output-csv", str(tmp_path / "o.csv")
    )

    assert "Created 0, updated 0, skipped 80 (unchanged)." in out  # rows reused, not duplicated
    second = Job.objects.latest("id")
    assert second.total_items == 50
    after = server.stats()["per_input"]
    for _ref, text in rows[:30]:
        assert after[request_key(text)] == before[request_key(text)] == 1
    assert all(after[request_key(text)] == 1 for _, text in rows[30:])
    assert Question.objects.exclude(labels={}).count() == 80
    assert "Wrote 80 rows to" in out

    out = run_label(
        "--input-csv", str(source), "--skip-labeled", "--output-csv", str(tmp_path / "o.csv")
    )
    assert "Nothing to label: every row has labels already." in out
    assert server.stats()["requests"] == 80


@pytest.mark.django_db
def test_unknown_schema_and_missing_key_are_refused(tmp_path, settings):
    source = tmp_path / "docs.csv"
    write_csv(source, 3)
    with pytest.raises(CommandError, match="There is no label schema 'nope'"):
        run_label("--input-csv", str(source), "--schema", "nope")
    settings.OPENAI_API_KEY = ""
    with pytest.raises(CommandError, match="OPENAI_API_KEY is not set"):
        run_label("--input-csv", str(source))
    assert not Job.objects.exists()
    assert not Question.objects.exists()  # refused before any row was imported


@pytest.mark.django_db(transaction=True)
def test_an_interrupted_run_continues_and_labels_nothing_twice(tmp_path, server):
    ensure_default_schema()
    server.configure(latency=0.05)
    source = tmp_path / "pooled_data.csv"
    rows = write_csv(source, 150)
    env = subprocess_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=API_KEY)
    command = [sys.executable, "manage.py", "label", "--input-csv", str(source)]
    first = subprocess.Popen(
        [*command, "--max-concurrent", "4", "--batch-size", "20"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while server.stats()["requests"] < 40 and first.poll() is None:
        assert time.monotonic() < deadline, "the first run made no progress"
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert "Interrupted: run the same command again" in err

    job = Job.objects.get()
    assert job.status == Job.Status.PAUSED
    labeled = dict(Question.objects.exclude(labels={}).values_list("question_id", "text"))
    assert 30 <= len(labeled) < 150
    assert not job.items.filter(status=Item.Status.RUNNING).exists()  # handed back
    before = server.stats()["per_input"]

    second = subprocess.run(
        [*command, "--skip-labeled"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr
    assert f"Continuing job {job.pk}: {150 - len(labeled)} rows left to label." in second.stdout
    assert "Labeled 150 of 150 rows" in second.stdout

    after = server.stats()["per_input"]
    for text in labeled.values():  # no request at all for a row labeled before
        assert after[request_key(text)] == before[request_key(text)]
    assert all(after.get(request_key(text), 0) >= 1 for _, text in rows)
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED and Job.objects.count() == 1
    assert job.items.filter(status=Item.Status.SUCCEEDED).count() == 150
    for question in Question.objects.all():
        assert question.labels_meta["job"] == job.pk
