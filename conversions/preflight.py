"""Pre-flight checks: fail before any work when a job cannot run as configured.

HTTP calls to the endpoint (GET /models; GET /batches for Batch API mode), so it lives
apart from the ORM workflows.
The key is read here the same way the worker reads it (endpoint_api_key), so a check
from the launch page or `convert` tells what a worker with the same environment will do.
"""

from __future__ import annotations

import os

import openai
from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from conversions.converters.messages import Message
from conversions.endpoints import endpoint_default
from conversions.engine.batch import AZURE_URL, OPENAI_URL, BatchClient
from conversions.engine.redact import redact
from conversions.models import Endpoint, Job

# What the SDK is given for a server that needs no key (it refuses an empty one).
NO_KEY = "no-key"


class ConfigurationError(Exception):
    """A job cannot run as configured; the message says what to fix."""


def endpoint_api_key(endpoint: Endpoint) -> str:
    """The endpoint's API key from this process's environment.

    OPENAI_API_KEY is read through settings (settings.py reads the environment once).
    Raises ConfigurationError naming the variable when it is unset; a blank key_env
    (a server that needs no key) gives NO_KEY.
    """
    if not endpoint.key_env:
        return NO_KEY
    if endpoint.key_env == "OPENAI_API_KEY":
        key = settings.OPENAI_API_KEY
    else:
        key = os.environ.get(endpoint.key_env, "")
    if not key:
        raise ConfigurationError(
            _(
                "%(var)s is not set: endpoint %(endpoint)s reads its API key from this "
                "environment variable. Set it in the environment of the process that runs "
                "the work (the django-q2 workers, or this command when no cluster runs), or "
                "use the rules backend to convert without one."
            )
            % {"var": endpoint.key_env, "endpoint": endpoint.name}
        )
    return key


def sdk_client(endpoint: Endpoint, *, api_key: str, timeout: float = 10.0) -> openai.OpenAI:
    """A synchronous SDK client for short checks (no retries)."""
    if endpoint.kind == Endpoint.Kind.AZURE:
        return openai.AzureOpenAI(
            api_key=api_key,
            azure_endpoint=endpoint.base_url,
            api_version=endpoint.api_version,
            timeout=timeout,
            max_retries=0,
        )
    return openai.OpenAI(
        api_key=api_key, base_url=endpoint.base_url or None, timeout=timeout, max_retries=0
    )


def batch_client(endpoint: Endpoint, *, api_key: str, timeout: float | None = None) -> BatchClient:
    """The endpoint's files and batches API (engine.batch.BatchClient; no SDK retries)."""
    client = sdk_client(endpoint, api_key=api_key, timeout=timeout or settings.OPENAI_TIMEOUT)
    url = AZURE_URL if endpoint.kind == Endpoint.Kind.AZURE else OPENAI_URL
    return BatchClient(client, url=url)


def check_batch_api(*, endpoint: Endpoint) -> None:
    """Fail unless the endpoint has the Batch API: GET /batches?limit=1 must answer (a
    generic OpenAI-compatible server answers 404). Raises ConfigurationError."""
    names = {"url": endpoint.url, "endpoint": endpoint.name}
    client = batch_client(endpoint, api_key=endpoint_api_key(endpoint), timeout=10.0)
    try:
        supported = client.supported()
    except (openai.AuthenticationError, openai.APIConnectionError) as exc:
        raise _unusable(exc, names) from None
    except openai.APIStatusError as exc:
        raise ConfigurationError(
            _("The API at %(url)s answered %(status)s to GET /batches.")
            % {"url": endpoint.url, "status": exc.status_code}
        ) from None
    finally:
        client.close()
    if not supported:
        raise ConfigurationError(batch_api_missing_message(endpoint))


def _unusable(exc: openai.OpenAIError, names: dict[str, str]) -> ConfigurationError:
    """A probe's refusal (401) or an unreachable server as the message that names the fix;
    APITimeoutError is an APIConnectionError."""
    if isinstance(exc, openai.AuthenticationError):
        message = _("The API key was rejected by %(url)s (401, endpoint %(endpoint)s).")
    else:
        message = _(
            "Cannot reach the API at %(url)s (endpoint %(endpoint)s): check its base URL "
            "and the network."
        )
    return ConfigurationError(message % names)


def batch_api_missing_message(endpoint: Endpoint) -> Message:
    """Why a Batch API job cannot run on `endpoint` (a Message: stored language-neutrally
    when the job fails with it, converters/messages.py)."""
    return Message(
        gettext_noop(
            "The endpoint %(endpoint)s (%(url)s) has no Batch API: it does not serve GET "
            "/batches. Run the job in realtime (without Batch API mode), or choose an "
            "endpoint that has the Batch API (OpenAI, or Azure OpenAI with a Global-Batch "
            "deployment)."
        ),
        {"endpoint": endpoint.name, "url": endpoint.url},
    )


def check_endpoint(*, endpoint: Endpoint, model: str) -> None:
    """Fail unless the endpoint's key is set here, the server answers and knows the model.

    Azure OpenAI does not list deployments at GET /models, so for it only the key and
    the answer are checked. Raises ConfigurationError with the fix.
    """
    api_key = endpoint_api_key(endpoint)
    where = endpoint.url
    names = {"url": where, "endpoint": endpoint.name}
    client = sdk_client(endpoint, api_key=api_key)
    try:
        available = {m.id for m in client.models.list()}
    except (openai.AuthenticationError, openai.APIConnectionError) as exc:
        raise _unusable(exc, names) from None
    except openai.APIStatusError as exc:
        raise ConfigurationError(
            _("The API at %(url)s answered %(status)s to GET /models: %(message)s")
            % {"url": where, "status": exc.status_code, "message": _server_message(exc, api_key)}
        ) from None
    finally:
        client.close()
    if endpoint.kind == Endpoint.Kind.AZURE or model in available:
        return
    raise ConfigurationError(
        _("Unknown model %(model)s at %(url)s (available: %(available)s).")
        % {"model": model, "url": where, "available": ", ".join(sorted(available)[:20])}
    )


def _server_message(exc: openai.APIStatusError, api_key: str) -> str:
    """The error's own message (OpenAI's error.message, else the SDK's), without the key,
    at most 300 characters: a gateway's 400 says why (LiteLLM: "No connected db." for a
    key it cannot check)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    message = error.get("message") if isinstance(error, dict) else None
    text = str(message or exc.message or "").strip()
    return redact(text, (api_key,))[:300] or "-"


def check_backend_config(
    *, backend: str, model: str, endpoint: Endpoint | None = None, batch_api: bool = False
) -> None:
    """Fail before any work when an LLM backend cannot work: no key, no server, no model,
    and in Batch API mode no Batch API.

    endpoint None: the default endpoint (conversions.endpoints.endpoint_default).
    """
    if backend not in Job.Backend.values:
        raise ConfigurationError(_("Unknown backend %(backend)s.") % {"backend": backend})
    if batch_api and backend not in Job.LLM_BACKENDS:
        raise ConfigurationError(
            _(
                "Batch API mode sends requests to a model: choose the openai or hybrid "
                "backend (the rules backend makes no API calls)."
            )
        )
    if backend not in Job.LLM_BACKENDS:
        return
    if endpoint is None:
        endpoint = endpoint_default()
    check_endpoint(endpoint=endpoint, model=model)
    if batch_api:
        check_batch_api(endpoint=endpoint)
