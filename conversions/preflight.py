"""Pre-flight checks: fail before any work when a job cannot run as configured.

An HTTP call to the endpoint (GET /models), so it lives apart from the ORM workflows.
"""

from __future__ import annotations

import openai
from django.conf import settings
from django.utils.translation import gettext as _

from conversions.models import Job


class ConfigurationError(Exception):
    """A job cannot run as configured; the message says what to fix."""


def check_backend_config(*, backend: str, model: str, base_url: str | None = None) -> None:
    """Fail before any work when an LLM backend cannot work: no key, no server, no model."""
    if backend not in Job.Backend.values:
        raise ConfigurationError(_("Unknown backend %(backend)s.") % {"backend": backend})
    if backend not in Job.LLM_BACKENDS:
        return
    base_url = base_url or settings.OPENAI_BASE_URL
    where = base_url or "https://api.openai.com/v1"
    if not settings.OPENAI_API_KEY:
        raise ConfigurationError(
            _(
                "OPENAI_API_KEY is not set: the %(backend)s backend needs an API key in the "
                "environment. Use the rules backend to convert without one."
            )
            % {"backend": backend}
        )
    client = openai.OpenAI(
        api_key=settings.OPENAI_API_KEY, base_url=base_url, timeout=10.0, max_retries=0
    )
    try:
        available = {m.id for m in client.models.list()}
    except openai.AuthenticationError:
        raise ConfigurationError(
            _("The API key was rejected by %(url)s (401).") % {"url": where}
        ) from None
    except (openai.APIConnectionError, openai.APITimeoutError):
        raise ConfigurationError(
            _("Cannot reach the API at %(url)s: check OPENAI_BASE_URL and the network.")
            % {"url": where}
        ) from None
    except openai.APIStatusError as exc:
        raise ConfigurationError(
            _("The API at %(url)s answered %(status)s to GET /models.")
            % {"url": where, "status": exc.status_code}
        ) from None
    finally:
        client.close()
    if model not in available:
        raise ConfigurationError(
            _("Unknown model %(model)s at %(url)s (available: %(available)s).")
            % {"model": model, "url": where, "available": ", ".join(sorted(available)[:20])}
        )
