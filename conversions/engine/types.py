"""Data in and out of the engine: frozen dataclasses, errors as data.

This module is the contract between the engine (conversions/engine/) and the one
bridge to the ORM (conversions/worker.py and results.py). Nothing here imports Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ErrorCategory(StrEnum):
    """Why an item failed: the engine's and the database's one list (Item.error_category
    takes its choices from here)."""

    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    API_ERROR = "api_error"
    INVALID_INPUT = "invalid_input"
    INVALID_OUTPUT = "invalid_output"
    VALIDATION_FAILED = "validation_failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class WorkItem:
    item_id: int
    ref: str  # the question's external id, for log lines
    mathml: str = ""
    text: str = ""
    hint: str = ""  # e.g. the rules converter's LaTeX, offered to the LLM in hybrid mode
    batch_no: int = 0


@dataclass(frozen=True)
class Endpoint:
    base_url: str | None
    api_key: str = field(repr=False)
    model: str
    timeout_s: float = 60.0
    rpm: int | None = None
    tpm: int | None = None
    # Which server this is (conversions.models.Endpoint): the name keys its rate budget;
    # api_version set means Azure OpenAI (deployment URLs, api-version query).
    name: str = ""
    api_version: str = ""
    # What the model accepts (EndpointModel): parameters it rejects are never sent.
    accepts_temperature: bool = True
    max_tokens_param: str = "max_completion_tokens"  # | "max_tokens" | "none"
    prompt_cache_key: bool = False  # the server takes OpenAI's prompt_cache_key


@dataclass(frozen=True)
class Outcome:
    item_id: int
    ok: bool
    value: dict | None = None  # {"latex": ...} for conversion, the labels for labeling
    error_category: ErrorCategory | None = None
    error_message: str = ""
    # The HTTP status of the last failed call (None: no answer, or no failure), and
    # whether that answer refused the call itself (401/403/404: key, access, model).
    http_status: int | None = None
    refused: bool = False
    # Every call of this item failed to connect (refused, DNS, TLS): the endpoint is
    # unreachable, which says nothing about the item.
    unreachable: bool = False
    latency_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0  # of tokens_in, read from usage.prompt_tokens_details
    api_calls: int = 0
    retries: int = 0
    request_excerpt: str = ""
    response_excerpt: str = ""
