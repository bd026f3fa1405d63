"""Azure OpenAI's URL scheme and api-version, checked against the openai SDK's own
AzureOpenAI client: a job on an Azure endpoint and the SDK's client for the same
deployment both talk to the fake server, which records the path, query and
authentication it received. No HTTP client is mocked."""

from __future__ import annotations

import openai
import pytest

from conversions import services, tasks
from conversions.engine.prompts import ConversionTask
from conversions.engine.types import WorkItem
from conversions.jobsettings import JobSettings
from conversions.models import Endpoint, Item, Job, Question
from tests.jobutil import API_KEY, make_questions

pytestmark = pytest.mark.django_db

DEPLOYMENT = "mathconv-prod"
API_VERSION = "2024-10-21"


def chat_requests(server) -> list[dict]:
    return [r for r in server.stats()["recent"] if r["path"].endswith("/chat/completions")]


def test_an_azure_job_sends_what_the_sdks_azure_client_sends(llm, other_fake_openai, monkeypatch):
    server = other_fake_openai
    server.configure(models=[DEPLOYMENT])
    monkeypatch.setenv("MC_AZURE_KEY", API_KEY)
    endpoint = Endpoint.objects.create(
        name="azure",
        kind="azure",
        base_url=server.root_url,  # the resource URL, https://NAME.openai.azure.com
        key_env="MC_AZURE_KEY",
        api_version=API_VERSION,
    )
    make_questions(3)
    job = services.job_create(
        job_settings=JobSettings(
            backend=Job.Backend.OPENAI, model=DEPLOYMENT, endpoint=endpoint, use_cache=False
        ),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )
    assert tasks.job_run_inline(job) == Job.Status.COMPLETED
    assert job.items.filter(status=Item.Status.SUCCEEDED).count() == 3
    ours = chat_requests(server)
    assert len(ours) == 3
    # The launch check asked Azure's model list with the SDK's AzureOpenAI (preflight.py).
    checks = [r for r in server.stats()["recent"] if r["path"] == "/openai/models"]
    assert checks == [
        {
            "method": "GET",
            "path": "/openai/models",
            "query": f"api-version={API_VERSION}",
            "auth": "api-key",
        }
    ]

    # The SDK's own Azure client, same resource, deployment, version and key.
    server.reset()
    sdk = openai.AzureOpenAI(
        azure_endpoint=server.root_url, api_version=API_VERSION, api_key=API_KEY, max_retries=0
    )
    try:
        messages = ConversionTask().build_messages(
            WorkItem(item_id=1, ref="x", mathml=Question.objects.first().mathml)
        )
        answer = sdk.chat.completions.create(
            model=DEPLOYMENT,
            messages=messages,
            response_format=ConversionTask().response_format(),
        )
    finally:
        sdk.close()
    assert answer.choices[0].message.content
    (theirs,) = chat_requests(server)

    expected = {
        "method": "POST",
        "path": f"/openai/deployments/{DEPLOYMENT}/chat/completions",
        "query": f"api-version={API_VERSION}",
        "auth": "api-key",
    }
    assert theirs == expected
    assert all(request == expected for request in ours)


def test_an_azure_endpoint_without_api_version_is_refused_by_the_server(other_fake_openai):
    server = other_fake_openai
    server.configure(models=[DEPLOYMENT])
    sdk = openai.OpenAI(base_url=server.root_url + "/openai", api_key=API_KEY, max_retries=0)
    try:
        with pytest.raises(openai.NotFoundError):
            sdk.post(
                f"/deployments/{DEPLOYMENT}/chat/completions",
                body={"messages": [{"role": "user", "content": "x"}]},
                cast_to=object,
            )
    finally:
        sdk.close()
