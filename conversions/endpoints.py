"""Endpoints as data: the default one from the environment, and what a worker runs on.

A job records its endpoint (Job.endpoint) and model when it is created; every worker
builds its client from that row, whatever its own OPENAI_BASE_URL (DESIGN invariant 10).
Keys stay in the environment: Endpoint.key_env names the variable (preflight.py reads it).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError
from django.db import transaction
from django.utils.translation import gettext as _

from conversions.engine import types
from conversions.models import Endpoint, EndpointModel, Job

DEFAULT_NAME = "default"


def endpoint_default() -> Endpoint:
    """The endpoint a job uses when none is named: OPENAI_BASE_URL / OPENAI_API_KEY.

    Created on first use as "default". When this process's OPENAI_BASE_URL differs from
    every endpoint built from the environment, a new one named after the URL is created
    (never an existing row changed under the jobs that use it), so the job records the
    server the launching shell asked for and the job page names it.
    """
    base_url = settings.OPENAI_BASE_URL or ""
    with transaction.atomic():
        found = endpoint_from_environment()
        if found is not None:
            return found
        name = DEFAULT_NAME
        if Endpoint.objects.filter(name=name).exists():
            name = f"env {base_url or 'api.openai.com'}"[:100]
        endpoint, _ = Endpoint.objects.get_or_create(
            name=name,
            defaults={
                "kind": Endpoint.Kind.OPENAI if not base_url else Endpoint.Kind.COMPATIBLE,
                "base_url": base_url,
                "key_env": "OPENAI_API_KEY",
            },
        )
    return endpoint


def endpoint_from_environment() -> Endpoint | None:
    """The endpoint endpoint_default would return, if it exists already (read only: the
    launch page's estimate looks it up without creating it)."""
    return (
        Endpoint.objects.filter(base_url=settings.OPENAI_BASE_URL or "", key_env="OPENAI_API_KEY")
        .order_by("id")
        .first()
    )


def endpoint_named(name: str) -> Endpoint | None:
    """The endpoint called name, or None."""
    return Endpoint.objects.filter(name=name).first()


def endpoint_option(name: str) -> Endpoint | None:
    """The endpoint a command's --endpoint names (None for ""); CommandError if unknown."""
    if not name:
        return None
    endpoint = endpoint_named(name)
    if endpoint is None:
        known = ", ".join(Endpoint.objects.values_list("name", flat=True)) or "-"
        raise CommandError(
            _("No endpoint named %(name)r (known: %(known)s).") % {"name": name, "known": known}
        )
    return endpoint


def model_settings(*, endpoint: Endpoint, model: str) -> EndpointModel | None:
    """The endpoint's row for model, or for the longest listed prefix (dated snapshots)."""
    rows = {m.model: m for m in endpoint.models.all()}
    if model in rows:
        return rows[model]
    prefixes = [name for name in rows if model.startswith(name)]
    return rows[max(prefixes, key=len)] if prefixes else None


def engine_endpoint(*, job: Job, api_key: str) -> types.Endpoint:
    """What the engine needs to call the job's endpoint (plain data, no Django).

    rpm/tpm: the job's own limits, else the endpoint's.
    """
    endpoint = job.endpoint
    if endpoint is None:  # the worker gives an old job the default endpoint first
        raise ValueError(f"job {job.pk} has no endpoint")
    caps = model_settings(endpoint=endpoint, model=job.model)
    return types.Endpoint(
        base_url=endpoint.base_url or None,
        api_key=api_key,
        model=job.model,
        timeout_s=settings.OPENAI_TIMEOUT,
        rpm=job.rpm_limit or endpoint.rpm_limit,
        tpm=job.tpm_limit or endpoint.tpm_limit,
        name=endpoint.name,
        api_version=endpoint.api_version if endpoint.kind == Endpoint.Kind.AZURE else "",
        accepts_temperature=caps.accepts_temperature if caps else True,
        max_tokens_param=caps.max_tokens_param if caps else "max_completion_tokens",
        prompt_cache_key=sends_prompt_cache_key(endpoint, caps),
    )


def sends_prompt_cache_key(endpoint: Endpoint, caps: EndpointModel | None) -> bool:
    """Whether requests carry prompt_cache_key: the model row's setting, else by kind
    (OpenAI and Azure OpenAI take it; an unknown server may answer 400 to it)."""
    if caps is not None and caps.prompt_cache_key is not None:
        return caps.prompt_cache_key
    return endpoint.kind in (Endpoint.Kind.OPENAI, Endpoint.Kind.AZURE)
