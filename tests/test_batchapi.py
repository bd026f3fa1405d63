"""Batch API mode, step by step in this process: the real openai SDK over HTTP to the local
server's files and batches API, the real result path, no mocks (issue 14).

The poller's steps are called here one after another (batchapi.job_step); the test with a
real django-q2 cluster that is killed mid-batch is in test_batchapi_cluster.py.
"""

from __future__ import annotations

import importlib
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from django_q.models import OrmQ, Schedule

from conversions import batchapi, pricing, selectors, services, tasks
from conversions.batchroute import Router
from conversions.engine.batch import read_result_line
from conversions.engine.types import WorkItem
from conversions.jobsettings import JobSettings
from conversions.models import Endpoint, Item, Job, ModelPrice, Question, RemoteBatch
from conversions.preflight import ConfigurationError, batch_client
from conversions.services.batches import remote_batch_new, remote_batch_save, remote_items
from mathconv_dev.fakeopenai import input_key
from tests.adminutil import any_label_schema
from tests.jobutil import API_KEY, fraction, make_questions, tagged, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NS = 'xmlns="http://www.w3.org/1998/Math/MathML"'
MODEL = "gpt-4.1"  # $2.00 / $8.00 per 1M tokens: half of it is exact to the micro-dollar


def glyph(n: int) -> str:
    """A formula the rules converter refuses (<mglyph> is an image), so hybrid asks."""
    return f'<math {NS}><mi>x</mi><mo>+</mo><mn>{n}</mn><mglyph src="s{n}.png" alt="star"/></math>'


@pytest.fixture
def server(llm, settings):
    """The shared local server (counters, files and batches cleared), batches that take
    0.4 s, prices seeded, polls fast."""
    running = llm
    running.configure(batch_delay=0.4, batch_cancel_delay=0.5)
    settings.MATHCONV_BATCH_POLL_SECONDS = 1
    ModelPrice.objects.update_or_create(
        model=MODEL,
        defaults={"input_per_mtok": Decimal("2.00"), "output_per_mtok": Decimal("8.00")},
    )
    return running


def create(*, backend: str = Job.Backend.OPENAI, questions=None, **options) -> Job:
    return services.job_create(
        job_settings=JobSettings(backend=backend, model=MODEL, batch_api=True, **options),
        questions=questions if questions is not None else Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )


def step_until_done(job: Job, timeout: float = 60.0) -> Job:
    """Steps as the poller takes them, until the job ended and no remote batch is open."""

    def done() -> bool:
        batchapi.job_step(job.pk)
        job.refresh_from_db()
        return job.is_final and not job.remote_batches.open().exists()

    wait_until(done, timeout=timeout, interval=0.2)
    return job


def realtime_cost(tokens_in: int, tokens_out: int) -> Decimal:
    return ModelPrice.objects.get(model=MODEL).cost(tokens_in, tokens_out)


def test_a_batch_job_records_every_answer_once_at_half_the_realtime_price(server):
    server.configure(batch_failure_rate=0.1, batch_expiry_rate=0.1)
    make_questions(80)
    job = create(use_cache=False)
    assert job.batch_api
    step_until_done(job)

    assert job.status == Job.Status.COMPLETED, job.error_message
    items = list(job.items.select_related("question"))
    assert {i.status for i in items} == {"succeeded"}
    stats = server.stats()
    # Every item answered exactly once; the failed and expired requests, and only
    # they, were sent again: as many lines per input as the item had submissions.
    assert all(stats["per_input_ok"][input_key(i.question.mathml)] == 1 for i in items)
    assert (
        sum(stats["per_input"].values())
        == stats["batch_requests"]
        == sum(i.attempts for i in items)
    )
    for item in items:
        assert stats["per_input"][input_key(item.question.mathml)] == item.attempts
    assert stats["batch_failed"] + stats["batch_expired"] == sum(i.attempts - 1 for i in items) > 0
    assert stats["requests"] == 0  # not one realtime call
    remotes = list(job.remote_batches.all())
    assert stats["batches_created"] == stats["files_uploaded"] == len(remotes) >= 2
    assert remotes[0].state == "expired" and not remotes[0].follow_up
    assert all(r.follow_up for r in remotes[1:])
    assert all(r.collected_at and r.remote_id and r.submitted_at for r in remotes)
    assert job.requests_sent == stats["batch_requests"]

    # Costs at the batch rates: exactly half of what the same tokens cost in realtime.
    tokens_in = sum(i.tokens_in for i in items)
    tokens_out = sum(i.tokens_out for i in items)
    cost = sum(i.cost_usd for i in items)
    assert tokens_in > 0 and tokens_out > 0
    assert cost == realtime_cost(tokens_in, tokens_out) / 2
    batch = selectors.job_stats(job=job)["batch_api"]
    assert batch["realtime_cost_usd"] == float(round(realtime_cost(tokens_in, tokens_out), 6))
    assert batch["saved_vs_realtime_usd"] == float(round(cost, 6))
    assert [row["remote_id"] for row in batch["batches"]] == [r.remote_id for r in remotes]


def test_files_are_split_at_the_request_limit_and_one_model_per_file(server, settings):
    settings.MATHCONV_BATCH_MAX_REQUESTS = 40
    server.configure(batch_max_requests=40)  # the server refuses a larger file
    make_questions(100)
    job = create(use_cache=False)
    step_until_done(job)
    assert job.status == Job.Status.COMPLETED, job.error_message
    remotes = list(job.remote_batches.all())
    assert [r.requests for r in remotes] == [40, 40, 20]
    assert {r.state for r in remotes} == {"completed"}
    assert {r.model for r in remotes} == {MODEL}
    assert server.stats()["batch_requests"] == 100


def test_files_are_split_at_the_byte_limit(server, settings):
    make_questions(30)
    job = create(use_cache=False)
    router = Router(job=job, api_key=API_KEY, prices=None)
    work = WorkItem(item_id=1, ref="1", mathml=fraction(10))
    line = len(router.request("1000", work).line)  # the same size as every line here
    settings.MATHCONV_BATCH_MAX_BYTES = 10 * line + line // 2  # ten lines per file
    step_until_done(job)
    assert job.status == Job.Status.COMPLETED, job.error_message
    assert [r.requests for r in job.remote_batches.all()] == [10, 10, 10]
    assert all(r.input_bytes <= settings.MATHCONV_BATCH_MAX_BYTES for r in job.remote_batches.all())


def test_a_server_without_the_batch_api_is_refused_before_any_work(server):
    server.configure(batches_api=False)
    make_questions(5)
    with translation.override("ko"), pytest.raises(ConfigurationError) as refused:
        create()
    assert "Batch API가 없습니다" in str(refused.value)
    assert not Job.objects.exists()

    # A job made without the check (as from an older launch) fails at its first step,
    # its items untouched and nothing uploaded.
    job = services.job_create(
        job_settings=JobSettings(backend=Job.Backend.OPENAI, model=MODEL, batch_api=True),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
        check_config=False,
    )
    batchapi.job_step(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "GET /batches" in job.error_message
    assert set(job.items.values_list("status", flat=True)) == {"pending"}
    assert not job.remote_batches.exists()
    stats = server.stats()
    assert stats["files_uploaded"] == stats["batch_requests"] == stats["requests"] == 0


def test_batch_mode_needs_an_llm_backend(server):
    make_questions(2)
    with pytest.raises(ConfigurationError):
        create(backend=Job.Backend.RULES)


def test_hybrid_sends_only_what_the_rules_cannot_convert_and_a_stem_one_request_per_formula(
    server,
):
    make_questions(6)
    make_questions(3, prefix="G", mathml=glyph)
    f1 = "<math><mfrac><mn>1</mn><mn>2</mn></mfrac></math>"
    f3 = '<math><mi>y</mi><mo>+</mo><mn>3</mn><mglyph src="s.png" alt="star"/></math>'
    f4 = '<math><mi>z</mi><mo>-</mo><mn>4</mn><mglyph src="t.png" alt="moon"/></math>'
    stem = f"<p>넓이는 {f1}이고, {f3} 그리고 {f4}이다.</p>"
    Question.objects.create(question_id="S-1", mathml=stem)
    job = create(backend=Job.Backend.HYBRID, use_cache=False)
    step_until_done(job)

    assert job.status == Job.Status.COMPLETED, job.error_message
    stats = server.stats()
    assert stats["batch_requests"] == 3 + 2  # three glyphs, the stem's two refused formulas
    assert all(stats["per_input"].get(input_key(fraction(n)), 0) == 0 for n in range(1, 7))
    assert [stats["per_input"][input_key(glyph(n))] for n in range(1, 4)] == [1, 1, 1]
    assert stats["per_input"][input_key(f3)] == stats["per_input"][input_key(f4)] == 1
    routes = dict(job.items.values_list("question__question_id", "route"))
    assert sorted(r for r, route in routes.items() if route == "llm") == [
        "G-00001",
        "G-00002",
        "G-00003",
        "S-1",
    ]
    item = job.items.get(question__question_id="S-1")
    assert [f["route"] for f in item.result_formulas] == ["rules", "llm", "llm"]
    assert item.api_calls == 2 and item.status == "succeeded"
    assert "넓이는" in item.result_latex


def test_a_stem_formula_that_failed_is_sent_again_alone(server):
    f1 = "<math><mfrac><mn>1</mn><mn>2</mn></mfrac></math>"
    f2 = tagged(7, "fake:status=503*1")  # its first request fails with a 503
    Question.objects.create(question_id="S-2", mathml=f"<p>{f1} 그리고 {f2}</p>")
    job = create(use_cache=False)
    step_until_done(job)
    item = job.items.get()
    assert item.status == "succeeded", item.error_message
    stats = server.stats()
    assert stats["per_input"][input_key(f1)] == 1  # answered the first time: not sent again
    assert stats["per_input"][input_key(f2)] == 2
    assert item.api_calls == 3 and item.retries == 1 and item.attempts == 2
    assert item.tokens_in > 0 and [f["route"] for f in item.result_formulas] == ["llm", "llm"]
    assert item.cost_usd == realtime_cost(item.tokens_in, item.tokens_out) / 2


def test_identical_inputs_share_one_request_and_the_cache_serves_the_next_job(server):
    make_questions(5)
    make_questions(5, prefix="R")  # the same five formulas again
    job = create()
    step_until_done(job)
    assert job.status == Job.Status.COMPLETED, job.error_message
    assert server.stats()["batch_requests"] == 5
    assert job.items.filter(cached=True).count() == 5
    assert job.remote_batches.get().followers  # the repeats took the first ones' answers

    again = create()
    step_until_done(again)
    assert server.stats()["batch_requests"] == 5  # not one more
    assert set(again.items.values_list("route", flat=True)) == {"cache"}
    assert not again.remote_batches.exists()


def test_cancel_records_what_the_cancelled_batch_still_returned(server):
    server.configure(batch_delay=3.0, batch_cancel_delay=1.0)
    make_questions(40)
    job = create(use_cache=False)
    batchapi.job_step(job.pk)  # submits: the remote batch is in progress
    remote = job.remote_batches.get()
    assert remote.remote_id and remote.state in ("validating", "in_progress")
    assert set(job.items.values_list("status", flat=True)) == {"running"}
    assert services.job_cancel(job=job)
    # The items in the remote batch wait for it: a cancel does not drop them.
    assert set(job.items.values_list("status", flat=True)) == {"running"}
    batchapi.job_step(job.pk)
    remote.refresh_from_db()
    assert remote.state == "cancelling" and remote.cancel_requested_at
    step_until_done(job)

    remote.refresh_from_db()
    assert remote.state == "cancelled" and remote.collected_at
    statuses = list(job.items.values_list("status", flat=True))
    assert job.status == Job.Status.CANCELLED
    assert set(statuses) == {"succeeded", "cancelled"}
    answered = statuses.count("succeeded")
    assert 0 < answered < 40  # the answers that came back while it was cancelling
    stats = server.stats()
    assert stats["batch_ok"] == answered and stats["batch_cancelled"] == 40 - answered
    assert max(stats["per_input"].values()) == 1
    cancelled = job.items.filter(status="cancelled")
    assert {i.error_category for i in cancelled} == {"cancelled"}
    assert sum(i.cost_usd for i in job.items.all()) > 0


def test_a_step_killed_after_creating_the_batch_is_found_again_not_created_twice(server):
    """A step killed between the create call and storing the remote id leaves a preparing
    row whose batch exists remotely: the next step finds it by its metadata."""
    make_questions(12)
    job = create(use_cache=False)
    owner = "killed-step"
    claimed = services.items_claim(job=job, owner=owner, limit=100)
    router = Router(job=job, api_key=API_KEY, prices=None)
    remote = remote_batch_new(job=job, model=router.model)
    results, planned = router.plan(claimed.items)
    assert not results
    path = batchapi._new_file()
    writer = batchapi.FileWriter(remote, path, 100, 10**9)
    for plan in planned:
        writer.add(plan)
    writer.assign(owner)
    # What the killed step sent before it died: the upload, and the create call.
    client = batch_client(job.endpoint, api_key=API_KEY)
    uploaded = client.upload(path, name="x.jsonl")
    remote_batch_save(remote, input_file_id=uploaded.id, create_attempted_at=timezone.now())
    tag = f"{job.pk}/{remote.pk}/{int(remote.created_at.timestamp() * 1000)}"
    client.create(input_file_id=uploaded.id, metadata={batchapi.METADATA_KEY: tag})
    client.close()
    path.unlink()

    step_until_done(job)
    assert job.status == Job.Status.COMPLETED, job.error_message
    stats = server.stats()
    assert stats["batches_created"] == 1 and stats["files_uploaded"] == 1
    assert stats["batch_requests"] == 12 and max(stats["per_input"].values()) == 1
    assert job.remote_batches.get().remote_id


def test_a_filled_batch_whose_step_died_before_the_upload_is_rebuilt_and_sent_once(server):
    make_questions(12)
    job = create(use_cache=False)
    owner = "killed-step"
    claimed = services.items_claim(job=job, owner=owner, limit=100)
    router = Router(job=job, api_key=API_KEY, prices=None)
    remote = remote_batch_new(job=job, model=router.model)
    results, planned = router.plan(claimed.items)
    writer = batchapi.FileWriter(remote, batchapi._new_file(), 100, 10**9)
    for plan in planned:
        writer.add(plan)
    writer.assign(owner)
    writer.path.unlink()  # the killed step's temporary file is gone

    step_until_done(job)
    assert job.status == Job.Status.COMPLETED, job.error_message
    stats = server.stats()
    assert stats["batches_created"] == 1 and stats["batch_requests"] == 12
    assert max(stats["per_input"].values()) == 1


def test_the_job_page_shows_the_remote_batches_and_the_saving(server, admin_user):
    make_questions(10)
    job = create(use_cache=False)
    step_until_done(job)
    client = Client()
    client.force_login(admin_user)
    page = client.get(
        f"/admin/conversions/job/{job.pk}/change/", HTTP_ACCEPT_LANGUAGE="ko"
    ).content.decode()
    remote = job.remote_batches.get()
    assert remote.remote_id in page
    assert "Batch API" in page and "실시간 대비 절약" in page
    data = client.get(f"/admin/conversions/job/{job.pk}/stats.json").json()
    assert data["stats"]["batch_api"]["batches"][0]["state"] == "completed"
    assert data["stats"]["batch_api"]["saved_vs_realtime_usd"] > 0


def test_convert_batch_api_on_the_command_line(server, capsys):
    make_questions(6)
    call_command("convert", "--backend", "openai", "--model", MODEL, "--batch-api", "--wait")
    job = Job.objects.get()
    assert job.batch_api and job.status == Job.Status.COMPLETED
    assert server.stats()["batch_requests"] == 6
    assert "Batch API" in capsys.readouterr().out


def test_label_batch_api_on_the_command_line(server, tmp_path):
    any_label_schema()  # the migration's, or one like it after a transactional flush
    csv = tmp_path / "docs.csv"
    csv.write_text("id,text\nD1,삼각형의 넓이를 구하시오.\nD2,이차방정식을 푸시오.\n")
    call_command("label", "--input-csv", str(csv), "--model", "gpt-4o-mini", "--batch-api")
    job = Job.objects.get()
    assert job.batch_api and job.kind == Job.Kind.LABEL
    assert job.status == Job.Status.COMPLETED, job.error_message
    assert server.stats()["batch_requests"] == 2 and server.stats()["requests"] == 0
    assert (tmp_path / "docs_labeled.csv").exists()
    assert all(i.result_labels for i in job.items.all())


def test_an_azure_endpoint_names_its_batch_deployment(server, monkeypatch):
    monkeypatch.setenv("MC_AZURE_KEY", API_KEY)
    server.configure(models=[MODEL, "my-batch-deployment"])
    endpoint = Endpoint.objects.create(
        name="azure",
        kind=Endpoint.Kind.AZURE,
        base_url=server.root_url,
        key_env="MC_AZURE_KEY",
        api_version="2024-10-21",
    )
    endpoint.models.create(model=MODEL, batch_deployment="my-batch-deployment")
    make_questions(4)
    job = create(endpoint=endpoint, use_cache=False)
    step_until_done(job)
    assert job.status == Job.Status.COMPLETED, job.error_message
    remote = job.remote_batches.get()
    assert remote.model == "my-batch-deployment"
    assert server.stats()["batch_requests"] == 4
    assert set(job.items.values_list("status", flat=True)) == {Item.Status.SUCCEEDED}


def test_the_poller_takes_open_remote_batches_and_the_reconciler_leaves_them(server, settings):
    migration = importlib.import_module("conversions.migrations.0016_batch_api")
    migration.create_schedule(apps, None)  # a transactional test's flush removed the row
    schedule = Schedule.objects.get(name=migration.POLL_SCHEDULE)
    assert (schedule.func, schedule.minutes) == ("conversions.tasks.batches_poll", 1)
    assert tasks.batches_poll() == "nothing to do"

    make_questions(3)
    job = create(use_cache=False)
    assert tasks.job_run(job.pk).startswith("waiting for 1 remote batch")
    assert selectors.batch_jobs_to_poll() == [job.pk]
    assert RemoteBatch.objects.open().count() == 1
    # Long quiet while the remote side works: the realtime reconciler leaves it alone.
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert services.jobs_reconcile() == []
    # A poll past its time budget hands the jobs left to tasks of their own.
    settings.MATHCONV_TASK_BUDGET_SECONDS = 0
    assert tasks.batches_poll() == f"job {job.pk}: queued"
    assert OrmQ.objects.count() == 1
    settings.MATHCONV_TASK_BUDGET_SECONDS = 600
    wait_until(lambda: "completed" in tasks.batches_poll(), timeout=30, interval=0.3)
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert selectors.batch_jobs_to_poll() == []


def test_a_collection_cut_short_is_finished_by_the_next_step_without_a_second_result(server):
    make_questions(30)
    job = create(use_cache=False)
    batchapi.job_step(job.pk)
    remote = job.remote_batches.get()
    client = batch_client(job.endpoint, api_key=API_KEY)
    ended = wait_until(
        lambda: (state := client.retrieve(remote.remote_id)).status == "completed" and state
    )
    # What a step killed after recording its first chunk had done: downloaded the output,
    # recorded ten results; its lock is left behind (expired).
    router = Router(job=job, api_key=API_KEY, prices=None)
    output = io.BytesIO()
    client.download(ended.output_file_id, output)
    client.close()
    lines = {}
    for raw in output.getvalue().splitlines():
        line = read_result_line(raw, task=router.task)
        lines[line.custom_id] = line
    first = list(remote_items(remote).select_related("question").order_by("pk")[:10])
    results = [router.collect(item, lines, cancelled=False, latency_s=1.0).result for item in first]
    services.outcomes_record(job=job, owner=remote.lease_owner, results=results)
    Job.objects.filter(pk=job.pk).update(
        batch_lock_owner="killed", batch_lock_until=timezone.now() - timedelta(seconds=1)
    )
    recorded = dict(job.items.filter(status="succeeded").values_list("pk", "finished_at"))
    assert len(recorded) == 10

    step_until_done(job)
    assert job.status == Job.Status.COMPLETED, job.error_message
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    for pk, finished_at in recorded.items():  # not written a second time
        assert job.items.get(pk=pk).finished_at == finished_at
    stats = server.stats()
    assert stats["batches_created"] == 1 and stats["batch_requests"] == 30
    assert max(stats["per_input"].values()) == 1
    assert set(job.items.values_list("api_calls", flat=True)) == {1}


def test_batch_prices_come_from_the_endpoint_model_else_half_the_realtime_price(server):
    endpoint = Endpoint.objects.create(name="priced", base_url=server.base_url)

    def batch_prices(model: str = MODEL) -> tuple[Decimal, Decimal]:
        prices = pricing.prices_for(endpoint=endpoint, model=model)
        assert prices is not None
        return prices.batch_input, prices.batch_output

    # ModelPrice's $2 / $8 times its batch factor, 0.5
    assert batch_prices() == (Decimal("1.00"), Decimal("4.00"))
    ModelPrice.objects.filter(model=MODEL).update(batch_discount=Decimal("0.6"))
    assert batch_prices()[0] == Decimal("1.2")
    row = endpoint.models.create(
        model=MODEL, input_per_mtok=Decimal("3.00"), output_per_mtok=Decimal("12.00")
    )
    # the endpoint's realtime prices times the model's factor
    assert batch_prices() == (Decimal("1.8"), Decimal("7.2"))
    row.batch_input_per_mtok, row.batch_output_per_mtok = Decimal("1.10"), Decimal("4.40")
    row.save()
    assert batch_prices() == (Decimal("1.10"), Decimal("4.40"))
    realtime = pricing.prices_for(endpoint=endpoint, model=MODEL)
    assert realtime is not None
    assert (realtime.input, realtime.output) == (Decimal("3.00"), Decimal("12.00"))
    assert pricing.prices_for(endpoint=endpoint, model="unpriced-model") is None


def test_the_launch_page_starts_a_batch_api_job_and_estimates_at_the_batch_price(
    server, admin_user
):
    questions = make_questions(4)
    client = Client()
    client.force_login(admin_user)
    launch = reverse("admin:conversions_question_launch", args=["convert"])
    form = {
        "ids": [q.pk for q in questions],
        "backend": "openai",
        "model": MODEL,
        "batch_size": 100,
        "max_concurrent": 10,
        "batch_api": "on",
    }
    estimate = client.post(launch, {**form, "_estimate": "1"}, HTTP_ACCEPT_LANGUAGE="ko")
    price = ModelPrice.objects.get(model=MODEL)
    numbers = estimate.context["estimate"]
    assert numbers["batch_api"] is True
    assert numbers["cost_usd"] == price.cost(numbers["tokens_in"], numbers["tokens_out"]) / 2
    assert "Batch API 가격" in estimate.content.decode()

    server.configure(batches_api=False)
    refused = client.post(launch, {**form, "_launch": "1"}, HTTP_ACCEPT_LANGUAGE="ko")
    assert refused.status_code == 200 and "Batch API가 없습니다" in refused.content.decode()
    assert not Job.objects.exists()

    server.configure(batches_api=True)
    started = client.post(launch, {**form, "_launch": "1"})
    job = Job.objects.get()
    assert started["Location"] == reverse("admin:conversions_job_change", args=[job.pk])
    assert job.batch_api and job.total_items == 4
