"""A real job through a server the project did not write: the LiteLLM proxy (PyPI,
pinned, in its own venv: `make gateway`, which `make test` runs), in front of our fake
server. The engine's requests, headers, error handling and usage parsing meet LiteLLM's
own implementation of the API on the way.

Skipped only where `make gateway` has not been run (the inner loop, `make test-fast`).
"""

from __future__ import annotations

import pytest

from conversions import services, tasks
from conversions.engine.prompts import ConversionTask
from conversions.engine.types import WorkItem
from conversions.jobsettings import JobSettings
from conversions.models import Endpoint, EndpointModel, Item, Job, Question
from conversions.preflight import ConfigurationError
from mathconv_dev import gateway
from mathconv_dev.fakeopenai import FakeOptions, FakeServer, expected_latex
from mathconv_dev.fakeopenai.process import MANAGE_COMMAND
from mathconv_dev.fakeopenai.protocol import count_tokens
from tests.jobutil import make_questions, tagged
from tests.settings import subprocess_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    # Its own proxy (and upstream): what it adds to the other job tests is LiteLLM's side
    # of the HTTP, the same on any database, so it runs once (the SQLite run).
    pytest.mark.own_services,
    pytest.mark.skipif(
        not gateway.installed(), reason="the LiteLLM gateway is not installed: `make gateway`"
    ),
]

MODEL = "gpt-4.1-mini"
CACHED = 7


@pytest.fixture(scope="module")
def upstream():
    server = FakeServer(
        FakeOptions(cached_tokens=CACHED), command=MANAGE_COMMAND, env=subprocess_env()
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(upstream):
    with gateway.Gateway(upstream=upstream.base_url, models=[MODEL]) as running:
        yield running


@pytest.fixture
def through(upstream, proxy, monkeypatch):
    """An endpoint on the proxy (its master key in the environment), upstream reset."""
    upstream.restore()
    monkeypatch.setenv("MC_GATEWAY_KEY", proxy.master_key)
    endpoint = Endpoint.objects.create(
        name="litellm", kind="compatible", base_url=proxy.base_url, key_env="MC_GATEWAY_KEY"
    )
    yield endpoint
    upstream.restore()


def create(endpoint: Endpoint, **options) -> Job:
    return services.job_create(
        job_settings=JobSettings(
            backend=Job.Backend.OPENAI,
            model=MODEL,
            endpoint=endpoint,
            use_cache=False,
            max_concurrent=2,
            **options,
        ),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )


def prompt_tokens(mathml: str) -> int:
    """What the fake server counts for the engine's prompt (ceil(len/4) + 4 a message)."""
    messages = ConversionTask().build_messages(WorkItem(item_id=0, ref="", mathml=mathml))
    return sum(count_tokens(m["content"]) + 4 for m in messages)


def test_a_job_through_the_litellm_proxy_gets_results_and_usage(through, upstream):
    # The proxy takes prompt_cache_key (it forwards OpenAI parameters): tell the endpoint.
    EndpointModel.objects.create(endpoint=through, model=MODEL, prompt_cache_key=True)
    questions = make_questions(8)
    job = create(through)
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED

    items = {i.question_id: i for i in job.items.all()}
    for question in questions:
        item = items[question.pk]
        assert item.status == Item.Status.SUCCEEDED
        assert item.result_latex == expected_latex(question.mathml)
        # Usage, cached tokens included, read from LiteLLM's re-encoded response.
        assert (item.tokens_in, item.tokens_cached) == (prompt_tokens(question.mathml), CACHED)
        assert item.tokens_out > 0 and (item.api_calls, item.retries) == (1, 0)
    stats = upstream.stats()
    assert stats["ok"] == 8 and stats["with_temperature"] == 8
    assert stats["prompt_cache_keys"] == {"mathconv-convert-v1": 8}


def test_errors_through_the_proxy_a_429_is_retried_a_400_fails_its_item(through, upstream):
    make_questions(3)
    Question.objects.create(question_id="RL", mathml=tagged(1, "fake:status=429*1"))
    Question.objects.create(question_id="BAD", mathml=tagged(2, "fake:status=400"))
    job = create(through)
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED_WITH_ERRORS

    limited = job.items.get(question__question_id="RL")
    # LiteLLM answers the upstream's 429 with its own 429 (without Retry-After): the
    # engine backs off and asks again.
    assert (limited.status, limited.api_calls, limited.retries) == (Item.Status.SUCCEEDED, 2, 1)
    bad = job.items.get(question__question_id="BAD")
    assert (bad.status, bad.error_category, bad.api_calls) == (Item.Status.FAILED, "api_error", 1)
    assert "Forced failure 400 for this input" in bad.error_message
    assert bad.error_message.startswith("HTTP 400: litellm.BadRequestError")
    assert job.items.filter(status=Item.Status.SUCCEEDED).count() == 4
    assert upstream.stats()["rate_limited"] == 1


def test_an_unsupported_parameter_through_the_proxy_stops_the_job_once(through, upstream):
    upstream.configure(reject_temperature=True)
    make_questions(20)
    job = create(through, batch_size=5)
    assert tasks.job_run_inline(job) == Job.Status.FAILED
    job.refresh_from_db()
    # LiteLLM rewraps the upstream's 400 ("litellm.BadRequestError: OpenAIException -
    # Unsupported parameter: 'temperature' ..."): still one clear message, no item failed.
    assert "does not accept temperature" in job.error_message
    assert not job.items.filter(status=Item.Status.FAILED).exists()
    assert upstream.stats()["bad_requests"] <= 4


def test_a_wrong_gateway_key_is_refused_before_any_work(through, upstream, monkeypatch):
    monkeypatch.setenv("MC_GATEWAY_KEY", "sk-not-the-master-key")
    make_questions(2)
    with pytest.raises(ConfigurationError) as refused:
        create(through)
    # LiteLLM without a database cannot check a key other than its master key: it says
    # so with a 400, which the refusal quotes.
    assert "answered 400 to GET /models: No connected db." in str(refused.value)
    assert not Job.objects.exists() and upstream.stats()["requests"] == 0
