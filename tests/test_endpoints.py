"""Endpoints as data: a job runs on the endpoint and model it was created with, sends only
the parameters its model accepts, and stops at once when a model rejects one."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from conversions import services, tasks
from conversions.endpoints import endpoint_default, sends_prompt_cache_key
from conversions.engine.prompts import ConversionTask
from conversions.engine.runner import BatchRunner, EngineConfig
from conversions.engine.types import Endpoint as EngineEndpoint
from conversions.engine.types import WorkItem
from conversions.joblog import log_path
from conversions.jobsettings import JobSettings
from conversions.models import Endpoint, EndpointModel, Item, Job, Question
from conversions.pricing import Cost, tokens_cost
from conversions.worker import unsupported_parameter_message
from tests import jobutil
from tests.jobutil import make_questions
from tests.test_label_command import ensure_default_schema

pytestmark = pytest.mark.django_db


def create(**options) -> Job:
    options.setdefault("max_concurrent", 2)
    options.setdefault("model", "gpt-4.1-mini")
    return services.job_create(
        job_settings=JobSettings(backend=Job.Backend.OPENAI, use_cache=False, **options),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )


def own_endpoint(server, name: str, key_env: str = "MC_TEST_KEY", **fields) -> Endpoint:
    return Endpoint.objects.create(
        name=name, base_url=server.base_url, key_env=key_env, kind="compatible", **fields
    )


def test_a_job_runs_on_its_own_endpoint_not_on_the_workers_openai_base_url(
    llm, other_fake_openai, settings, monkeypatch
):
    other = other_fake_openai
    monkeypatch.setenv("MC_TEST_KEY", jobutil.API_KEY)
    make_questions(6)
    job = create(endpoint=own_endpoint(other, "other"))
    assert job.endpoint.name == "other"
    # The worker's own OPENAI_BASE_URL points elsewhere (the shared server): not used.
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    assert other.stats()["ok"] == 6
    assert llm.stats()["requests"] == 0


def test_the_default_endpoint_comes_from_the_environment_once(llm, settings):
    first = endpoint_default()
    assert (first.name, first.base_url, first.key_env) == (
        "default",
        llm.base_url,
        "OPENAI_API_KEY",
    )
    assert endpoint_default() == first
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    second = endpoint_default()
    assert second.name == "env http://127.0.0.1:9/v1" and second != first
    first.refresh_from_db()
    assert first.base_url == llm.base_url  # never changed under its jobs


def test_a_worker_without_the_endpoints_key_fails_the_job_naming_the_variable(
    llm, other_fake_openai, monkeypatch
):
    other = other_fake_openai
    monkeypatch.setenv("MC_TEST_KEY", jobutil.API_KEY)
    make_questions(3)
    job = create(endpoint=own_endpoint(other, "other"))
    monkeypatch.delenv("MC_TEST_KEY")
    assert tasks.job_run_inline(job) == Job.Status.FAILED
    job.refresh_from_db()
    assert "MC_TEST_KEY is not set: endpoint other reads its API key" in job.error_message
    assert "environment of the process that runs the work" in job.error_message
    assert set(job.items.values_list("status", flat=True)) == {Item.Status.PENDING}
    assert other.stats()["requests"] == 0


def test_launching_without_the_key_is_refused_before_any_work(llm, other_fake_openai):
    other = other_fake_openai
    make_questions(2)
    with pytest.raises(services.ConfigurationError, match="MC_ABSENT_KEY is not set"):
        create(endpoint=own_endpoint(other, "other", key_env="MC_ABSENT_KEY"))
    assert not Job.objects.exists()


def test_a_server_that_needs_no_key_is_accepted(llm, other_fake_openai):
    # The fake server wants some bearer token; a keyless endpoint sends a placeholder.
    other = other_fake_openai
    make_questions(2)
    job = create(endpoint=own_endpoint(other, "local", key_env=""))
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED


def test_a_model_marked_no_temperature_gets_none(llm, other_fake_openai, monkeypatch):
    other = other_fake_openai
    other.configure(reject_temperature=True)
    monkeypatch.setenv("MC_TEST_KEY", jobutil.API_KEY)
    endpoint = own_endpoint(other, "reasoning")
    EndpointModel.objects.create(endpoint=endpoint, model="gpt-4.1-mini", accepts_temperature=False)
    make_questions(5)
    job = create(endpoint=endpoint)
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    stats = other.stats()
    assert (stats["ok"], stats["with_temperature"], stats["bad_requests"]) == (5, 0, 0)


def test_an_unsupported_parameter_stops_the_job_with_one_message(
    llm, other_fake_openai, monkeypatch
):
    other = other_fake_openai
    other.configure(reject_temperature=True)
    monkeypatch.setenv("MC_TEST_KEY", jobutil.API_KEY)
    make_questions(40)
    job = create(endpoint=own_endpoint(other, "reasoning"), max_concurrent=2, batch_size=10)
    assert tasks.job_run_inline(job) == Job.Status.FAILED
    job.refresh_from_db()
    assert "does not accept temperature" in job.error_message
    assert "accepts temperature" in job.error_message and "reasoning" in job.error_message
    # No item failed one by one: they wait for the fix and `job resume`.
    assert not job.items.filter(status=Item.Status.FAILED).exists()
    assert other.stats()["bad_requests"] <= 4  # the first answers, not one per item

    EndpointModel.objects.create(
        endpoint=job.endpoint, model="gpt-4.1-mini", accepts_temperature=False
    )
    services.job_resume(job=job)
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    assert job.items.filter(status=Item.Status.SUCCEEDED).count() == 40


def test_the_endpoints_command_adds_lists_and_checks(llm, other_fake_openai, monkeypatch):
    other = other_fake_openai
    out = io.StringIO()
    call_command(
        "endpoints",
        "add",
        "gpu",
        "--base-url",
        other.base_url,
        "--key-env",
        "MC_TEST_KEY",
        "--rpm",
        "120",
        stdout=out,
    )
    call_command("endpoints", "list", stdout=out)
    text = out.getvalue()
    assert f"Endpoint gpu added ({other.base_url})." in text
    assert f"gpu\tcompatible\t{other.base_url}\tkey=MC_TEST_KEY\tapi-version=-\trpm=120" in text
    assert f"default\tcompatible\t{llm.base_url}\tkey=OPENAI_API_KEY" in text
    with pytest.raises(CommandError, match="MC_TEST_KEY is not set"):
        call_command("endpoints", "check", "gpu", stdout=out)
    monkeypatch.setenv("MC_TEST_KEY", jobutil.API_KEY)
    call_command("endpoints", "check", "gpu", "--model", "gpt-4.1-mini", stdout=out)
    assert "Endpoint gpu (" in out.getvalue() and "has gpt-4.1-mini" in out.getvalue()
    with pytest.raises(CommandError, match="No endpoint named 'nope'"):
        call_command("endpoints", "check", "nope")


def test_convert_endpoint_names_the_server(llm, other_fake_openai, monkeypatch):
    other = other_fake_openai
    monkeypatch.setenv("MC_TEST_KEY", jobutil.API_KEY)
    own_endpoint(other, "gpu")
    make_questions(3)
    out = io.StringIO()
    call_command(
        "convert",
        "--backend",
        "openai",
        "--model",
        "gpt-4.1-mini",
        "--endpoint",
        "gpu",
        "--wait",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert f"endpoint gpu ({other.base_url})" in out.getvalue()
    assert other.stats()["ok"] == 3 and llm.stats()["requests"] == 0


def test_cached_prompt_tokens_are_read_and_priced_at_the_cached_price(fake_openai):
    fake_openai.configure(cached_tokens=100)
    endpoint = EngineEndpoint(
        base_url=fake_openai.base_url, api_key=jobutil.API_KEY, model="gpt-4.1-mini"
    )
    runner = BatchRunner(endpoint=endpoint, task=ConversionTask(), config=EngineConfig())
    with runner:
        for n in range(3):
            mathml = f"<math><mn>{n}</mn></math>"
            assert runner.submit(WorkItem(item_id=n, ref=str(n), mathml=mathml), 10)
        outcomes = runner.finish()
    assert [(o.ok, o.tokens_cached) for o in outcomes] == [(True, 100)] * 3
    assert all(o.tokens_in > 100 for o in outcomes)

    prices = EndpointModel(
        model="gpt-4.1-mini",
        input_per_mtok=Decimal("0.40"),
        cached_input_per_mtok=Decimal("0.10"),
        output_per_mtok=Decimal("1.60"),
    )
    cost = tokens_cost(prices=prices, tokens_in=300, tokens_cached=100, tokens_out=50)
    # 200 * 0.40 + 100 * 0.10 + 50 * 1.60 = 170 per million tokens; saved 100 * 0.30.
    assert cost == Cost(usd=Decimal("0.00017"), saved_usd=Decimal("0.00003"))
    no_discount = EndpointModel(input_per_mtok=Decimal("0.40"), output_per_mtok=Decimal("1.60"))
    assert tokens_cost(prices=no_discount, tokens_in=300, tokens_cached=100, tokens_out=50) == Cost(
        usd=Decimal("0.0002"), saved_usd=Decimal("0")
    )


def test_the_max_tokens_parameter_follows_the_model_setting(llm, other_fake_openai, monkeypatch):
    # Ollama and older servers read max_tokens; some take no limit at all.
    monkeypatch.setenv("MC_TEST_KEY", jobutil.API_KEY)
    make_questions(3)
    sent = {}
    for setting in ("max_tokens", "none", "max_completion_tokens"):
        server = other_fake_openai
        server.restore()  # counters of this setting's job only
        endpoint = own_endpoint(server, setting)
        EndpointModel.objects.create(
            endpoint=endpoint, model="gpt-4.1-mini", max_tokens_param=setting
        )
        assert tasks.job_run_inline(create(endpoint=endpoint)) == Job.Status.COMPLETED
        params = server.stats()["params"]
        sent[setting] = (params.get("max_tokens", 0), params.get("max_completion_tokens", 0))
    assert sent == {"max_tokens": (3, 0), "none": (0, 0), "max_completion_tokens": (0, 3)}


def test_prompt_cache_key_goes_only_where_it_is_accepted(llm, other_fake_openai, monkeypatch):
    monkeypatch.setenv("MC_TEST_KEY", jobutil.API_KEY)
    make_questions(2)
    sent = {}
    # (endpoint kind, the model row's setting; None: no row)
    for kind, accepts in (("compatible", None), ("openai", None), ("compatible", True)):
        server = other_fake_openai
        server.restore()  # counters of this endpoint's job only
        endpoint = own_endpoint(server, f"{kind}-{accepts}")
        Endpoint.objects.filter(pk=endpoint.pk).update(kind=kind)
        if accepts is not None:
            EndpointModel.objects.create(
                endpoint=endpoint, model="gpt-4.1-mini", prompt_cache_key=accepts
            )
        endpoint.refresh_from_db()
        assert tasks.job_run_inline(create(endpoint=endpoint)) == Job.Status.COMPLETED
        sent[(kind, accepts)] = server.stats()["prompt_cache_keys"]
    assert sent == {
        ("compatible", None): {},  # an unknown server may refuse it: not sent
        ("openai", None): {"mathconv-convert-v1": 2},
        ("compatible", True): {"mathconv-convert-v1": 2},
    }
    # An OpenAI model row can say no, too.
    openai_endpoint = Endpoint.objects.get(name="openai-None")
    row = EndpointModel(endpoint=openai_endpoint, model="gpt-4.1-mini", prompt_cache_key=False)
    assert not sends_prompt_cache_key(openai_endpoint, row)
    assert sends_prompt_cache_key(Endpoint(kind="azure"), None)


def test_a_rejected_prompt_cache_key_names_the_setting_to_change(llm):
    job = create(endpoint=Endpoint.objects.create(name="gw", base_url=llm.base_url))
    message = unsupported_parameter_message(job=job, param="prompt_cache_key")
    assert "does not accept prompt_cache_key" in message
    assert "“accepts prompt_cache_key”" in message and "gw" in message


def test_label_endpoint_checks_and_uses_that_endpoint(
    llm, other_fake_openai, monkeypatch, settings, tmp_path
):
    other = other_fake_openai
    monkeypatch.setenv("MC_TEST_KEY", jobutil.API_KEY)
    own_endpoint(other, "gpu")
    # This shell's default endpoint is down: label --endpoint gpu must not care.
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    ensure_default_schema()
    source = tmp_path / "in.csv"
    source.write_text("id,text\nL1,두 수의 합\nL2,넓이를 구하시오\n", encoding="utf-8")
    out = io.StringIO()
    call_command(
        "label",
        "--input-csv",
        str(source),
        "--endpoint",
        "gpu",
        stdout=out,
        stderr=io.StringIO(),
    )
    job = Job.objects.get(kind=Job.Kind.LABEL)
    assert job.endpoint.name == "gpu" and job.status == Job.Status.COMPLETED
    assert other.stats()["ok"] == 2 and llm.stats()["requests"] == 0
    # The job's log names the server it ran on.
    log = log_path(job.pk).read_text()
    assert f"endpoint=gpu ({other.base_url})" in log
