"""Error classification and the backoff policy: the engine's single retry layer.

The SDK's own retries are off (max_retries=0); everything about when to try again lives
here, so there is one place that decides and one budget per item (DESIGN invariant 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import random
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx2
import openai

from conversions.engine.types import ErrorCategory


class InvalidOutput(Exception):
    """The model answered, but not with what the task's schema asks for."""


class InvalidInput(Exception):
    """The item cannot be sent at all (empty or unusable input); never retried."""


# Answers that mean the configuration is wrong, not the item: a bad or revoked key, no
# access to the model, a model or URL that does not exist.
REFUSAL_STATUSES = frozenset({401, 403, 404})


@dataclass(frozen=True)
class Failure:
    category: ErrorCategory
    message: str
    retryable: bool
    status: int | None = None
    retry_after_s: float | None = None
    response_excerpt: str = ""
    # No connection could be made at all (refused, DNS, TLS): the endpoint, not the item.
    unreachable: bool = False

    @property
    def rate_limited(self) -> bool:
        return self.status == 429

    @property
    def refused(self) -> bool:
        """The endpoint refused the call itself (key, permission, model), not the item."""
        return self.status in REFUSAL_STATUSES


def retry_after_from_headers(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait: retry-after-ms, then retry-after (seconds or date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with full jitter; a server-given Retry-After is a floor.

    attempt is the number of calls already made for the item (1 after the first).
    """
    uniform = rng.uniform if rng is not None else random.uniform
    if retry_after_s is not None:
        # The server said when; a little jitter keeps the waiting workers from all
        # coming back in the same millisecond.
        return retry_after_s + uniform(0, min(base_s, max_s))
    ceiling = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return uniform(0, ceiling)


def _error_text(exc: openai.APIStatusError) -> str:
    return _body_error_text(exc.body) or exc.message


def _body_error_text(body: object) -> str:
    """The message (and code) of an OpenAI-shaped error body, "" when there is none."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            code = inner.get("code") or inner.get("type")
            return f"{inner['message']} ({code})" if code else str(inner["message"])
    return ""


def _body_excerpt(body: object, limit: int = 500) -> str:
    if body is None:
        return ""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)
    return text[:limit]


def _body_error_code(body: object) -> str:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            return str(inner.get("code") or "")
    return ""


def _connection_failure(exc: BaseException) -> ConnectionError | None:
    """The OS-level connection error (refused, reset) behind an API error, if any."""
    if not isinstance(exc, openai.APIConnectionError):
        return None
    seen = 0
    cause = exc.__cause__ or exc.__context__
    while cause is not None and seen < 10:
        if isinstance(cause, ConnectionError):
            return cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


def _connect_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [
        ConnectionRefusedError,
        socket.gaierror,
        ssl.SSLError,
        httpx2.ConnectError,
    ]
    # The aiohttp transport (openai[aiohttp]) reports DNS, refused and TLS as this.
    with contextlib.suppress(ImportError):
        types.append(importlib.import_module("aiohttp").ClientConnectorError)
    return tuple(types)


CONNECT_ERRORS = _connect_error_types()


def _unreachable_cause(exc: BaseException) -> BaseException | None:
    """Why no connection could be made (refused, DNS, TLS), if that is what happened.

    A call that connected and then failed (a timeout waiting for the answer, a body cut
    short, a reset mid-answer) is not this: the endpoint is there.
    """
    if not isinstance(exc, openai.APIConnectionError):
        return None
    seen, cause = 0, exc.__cause__ or exc.__context__
    found = None
    while cause is not None and seen < 10:
        if isinstance(cause, CONNECT_ERRORS):
            found = cause  # keep walking: the innermost names the reason best
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return found


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def classify_status(
    status: int, body: object, *, message: str = "", retry_after_s: float | None = None
) -> Failure:
    """An HTTP error answer as data (a call's exception, or a Batch API result line's
    response): 429 rate limit, 408 timeout, 409 and 5xx retryable API errors, any other
    status an API error that is not retried. body is the parsed error body."""
    message = f"HTTP {status}: {message or _body_error_text(body) or 'error'}"
    excerpt = _body_excerpt(body)
    if status == 429:
        # An exhausted quota is not going to come back by waiting a few seconds.
        retryable = _body_error_code(body) != "insufficient_quota"
        return Failure(ErrorCategory.RATE_LIMIT, message, retryable, status, retry_after_s, excerpt)
    if status == 408:
        return Failure(ErrorCategory.TIMEOUT, message, True, status, retry_after_s, excerpt)
    if status == 409 or status >= 500:
        return Failure(ErrorCategory.API_ERROR, message, True, status, retry_after_s, excerpt)
    return Failure(ErrorCategory.API_ERROR, message, False, status, None, excerpt)


def classify(exc: BaseException) -> Failure:
    """Turn an exception from one API call into data: category, message, retry or not."""
    unreachable = _unreachable_cause(exc)
    if unreachable is not None:
        # Checked first: the aiohttp transport reports these as a connect *timeout*.
        return Failure(
            ErrorCategory.API_ERROR,
            f"could not connect: {_describe(unreachable)}",
            True,
            unreachable=True,
        )
    refused = _connection_failure(exc)
    if refused is not None:
        # Checked first: the aiohttp transport reports a refused connection as a
        # connect *timeout*, which would send the operator looking in the wrong place.
        return Failure(ErrorCategory.API_ERROR, f"connection error: {type(refused).__name__}", True)
    if isinstance(exc, openai.APITimeoutError | asyncio.TimeoutError | TimeoutError):
        return Failure(ErrorCategory.TIMEOUT, "request timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f": {type(cause).__name__}" if cause else ""
        return Failure(ErrorCategory.API_ERROR, f"connection error{detail}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        headers = exc.response.headers if exc.response is not None else None
        return classify_status(
            exc.status_code,
            exc.body,
            message=_error_text(exc),
            retry_after_s=retry_after_from_headers(headers),
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return Failure(ErrorCategory.INVALID_OUTPUT, f"unreadable response: {exc}", True)
    if isinstance(exc, openai.APIError):
        return Failure(ErrorCategory.API_ERROR, f"{type(exc).__name__}: {exc}", False)
    return Failure(ErrorCategory.API_ERROR, f"{type(exc).__name__}: {exc}", False)
