"""The Batch API without Django: JSONL request lines from an LLMTask, Outcomes from the
result files, and the remote calls (the openai SDK's `files` and `batches` resources).

Shapes (OpenAI's Batch API guide; the SDK's types/batch.py and types/file_object.py):

- a request line: {"custom_id": str, "method": "POST", "url": "/v1/chat/completions",
  "body": <a chat completion request>}; on Azure OpenAI the url is "/chat/completions"
  and the body's model names the Global-Batch deployment;
- a result line (output or error file, in any order): {"id", "custom_id",
  "response": {"status_code", "request_id", "body"} | null,
  "error": {"code", "message"} | null}; a request left over when the batch expired has
  error.code "batch_expired", one left over by a cancel "batch_cancelled".

A result line becomes an Outcome read the way the realtime engine reads an answer
(runner.read_choice, the task's parse, retry.classify_status), so what an item records
does not depend on how its request travelled (conversions/batchapi.py records it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import openai

from conversions.engine.capabilities import adapt_options
from conversions.engine.redact import redact
from conversions.engine.retry import Failure, InvalidOutput, classify_status
from conversions.engine.runner import LLMTask, cached_prompt_tokens, read_choice
from conversions.engine.types import Endpoint, ErrorCategory, Outcome, WorkItem

OPENAI_URL = "/v1/chat/completions"
AZURE_URL = "/chat/completions"
COMPLETION_WINDOW: Final = "24h"
PURPOSE: Final = "batch"
EXPIRED = "batch_expired"
CANCELLED = "batch_cancelled"
# OpenAI's limits per input file; settings.MATHCONV_BATCH_MAX_* may set lower ones.
MAX_REQUESTS = 50_000
MAX_BYTES = 200_000_000
EXCERPT_CHARS = 1000
# Error codes of a result line worth sending again in a follow-up batch.
RETRYABLE_CODES = frozenset({EXPIRED, CANCELLED, "server_error", "rate_limit_exceeded", "timeout"})
# Remote statuses (types/batch.py) after which nothing more will change.
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
# Answers to GET /batches from a server that has no Batch API.
UNSUPPORTED_STATUSES = frozenset({404, 405, 501})


def batch_url(endpoint: Endpoint) -> str:
    """The url of every request line (and the batch's endpoint) for this server."""
    return AZURE_URL if endpoint.api_version else OPENAI_URL


def request_body(*, task: LLMTask, endpoint: Endpoint, item: WorkItem, model: str) -> dict:
    """The chat completion request of one item, as the realtime engine would send it.

    model: the job's model, or on Azure the batch deployment. Raises InvalidInput when
    the item cannot be sent at all (task.build_messages).
    """
    messages = task.build_messages(item)
    request_options = getattr(task, "request_options", None)
    options = adapt_options(request_options(item) if request_options else {}, endpoint)
    return {
        "model": model,
        "messages": messages,
        "response_format": task.response_format(),
        **options,
    }


def request_line(*, custom_id: str, url: str, body: dict) -> bytes:
    """One line of the input file, newline included (UTF-8 JSON)."""
    line = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def request_excerpt(body: dict, chars: int = EXCERPT_CHARS) -> str:
    """The last message's text, as the realtime engine keeps it on the item."""
    messages = body.get("messages") or [{}]
    return str(messages[-1].get("content", ""))[:chars]


@dataclass(frozen=True)
class LineResult:
    """What one result line says about one request (custom_id)."""

    custom_id: str
    outcome: Outcome  # item_id 0: the caller knows which item custom_id names
    retryable: bool  # worth sending again: 5xx, 429, expired, cancelled, an unreadable answer
    code: str = ""  # the error code of a line without a response (batch_expired, ...)


def read_result_line(
    raw: bytes | str,
    *,
    task: LLMTask,
    secrets: tuple[str, ...] = (),
    latency_s: float = 0.0,
) -> LineResult | None:
    """A result line as an Outcome; None for a line that is not a result (no custom_id).

    latency_s: what to record as the call's time (the batch's turnaround). Token counts
    come from the answer's usage; api_calls is 1 for every line, as one request was made.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("custom_id"), str):
        return None
    custom_id = data["custom_id"]
    response = data.get("response")
    error = data.get("error")
    common = {"item_id": 0, "latency_s": latency_s, "api_calls": 1}
    if isinstance(response, dict) and response.get("status_code") == 200:
        return _answer(custom_id, response.get("body"), task, secrets, common)
    if isinstance(response, dict) and isinstance(response.get("status_code"), int):
        body = response.get("body")
        failure = classify_status(response["status_code"], body)
        outcome = _failed(failure, secrets, common, http_status=failure.status)
        return LineResult(custom_id, outcome, failure.retryable)
    code = str((error or {}).get("code") or "") if isinstance(error, dict) else ""
    message = str((error or {}).get("message") or "") if isinstance(error, dict) else ""
    if code == EXPIRED:
        text = f"the batch expired before this request ran ({code})"
        failure = Failure(ErrorCategory.TIMEOUT, text, True)
    elif code == CANCELLED:
        failure = Failure(ErrorCategory.CANCELLED, f"the batch was cancelled ({code})", True)
    else:
        text = f"{message or 'the request failed'} ({code or 'no code'})"
        failure = Failure(ErrorCategory.API_ERROR, text, code in RETRYABLE_CODES)
    return LineResult(custom_id, _failed(failure, secrets, common), failure.retryable, code)


def _answer(
    custom_id: str, completion: object, task: LLMTask, secrets: tuple[str, ...], common: dict
) -> LineResult:
    usage = completion.get("usage") if isinstance(completion, dict) else None
    tokens: dict[str, Any] = {}
    if isinstance(usage, dict):
        tokens = {
            "tokens_in": int(usage.get("prompt_tokens") or 0),
            "tokens_out": int(usage.get("completion_tokens") or 0),
            "tokens_cached": cached_prompt_tokens(usage),
        }
    content, failure = read_choice(completion)
    excerpt = redact((content or "")[:EXCERPT_CHARS], secrets)
    if failure is None:
        assert content is not None  # no failure: a text (read_choice)
        try:
            value = task.parse(WorkItem(item_id=0, ref=custom_id), content)
        except InvalidOutput as exc:
            failure = Failure(ErrorCategory.INVALID_OUTPUT, redact(str(exc), secrets), True)
        else:
            outcome = Outcome(ok=True, value=value, response_excerpt=excerpt, **tokens, **common)
            return LineResult(custom_id, outcome, False)
    outcome = _failed(failure, secrets, {**common, **tokens}, response_excerpt=excerpt)
    return LineResult(custom_id, outcome, failure.retryable)


def _failed(
    failure: Failure,
    secrets: tuple[str, ...],
    common: dict,
    *,
    http_status: int | None = None,
    response_excerpt: str = "",
) -> Outcome:
    return Outcome(
        ok=False,
        error_category=failure.category,
        error_message=redact(failure.message, secrets),
        http_status=http_status,
        refused=failure.refused,
        response_excerpt=response_excerpt or redact(failure.response_excerpt, secrets),
        **common,
    )


def result_lines(path: Path) -> Iterator[bytes]:
    """The non-empty lines of a downloaded result file."""
    with path.open("rb") as fp:
        for line in fp:
            if line.strip():
                yield line


def batch_errors(remote: object) -> str:
    """The reasons a remote batch failed as a whole (Batch.errors.data), one line each."""
    errors = getattr(getattr(remote, "errors", None), "data", None) or []
    parts = []
    for error in errors[:10]:
        where = f" (line {error.line})" if getattr(error, "line", None) else ""
        parts.append(f"{error.code or 'error'}{where}: {error.message or ''}".strip())
    return "; ".join(parts)


class BatchClient:
    """The files and batches resources of one endpoint, through a sync openai client
    (OpenAI or AzureOpenAI, whose URLs the SDK builds). Errors are the SDK's."""

    def __init__(self, client: openai.OpenAI, *, url: str) -> None:
        self.client = client
        self.url = url

    def close(self) -> None:
        self.client.close()

    def supported(self) -> bool:
        """Whether the server has the Batch API: GET /batches?limit=1 answers (a 404,
        405 or 501 says it has none; other errors are raised)."""
        try:
            self.client.batches.list(limit=1)
        except openai.APIStatusError as exc:
            if exc.status_code in UNSUPPORTED_STATUSES:
                return False
            raise
        return True

    def upload(self, path: Path, *, name: str) -> openai.types.FileObject:
        with path.open("rb") as fp:
            return self.client.files.create(file=(name, fp, "application/jsonl"), purpose=PURPOSE)

    def create(self, *, input_file_id: str, metadata: dict[str, str]) -> openai.types.Batch:
        return self.client.batches.create(
            input_file_id=input_file_id,
            endpoint=self.url,  # type: ignore[arg-type]  # Azure's "/chat/completions"
            completion_window=COMPLETION_WINDOW,
            metadata=metadata,
        )

    def retrieve(self, remote_id: str) -> openai.types.Batch:
        return self.client.batches.retrieve(remote_id)

    def cancel(self, remote_id: str) -> openai.types.Batch:
        return self.client.batches.cancel(remote_id)

    def find(self, *, key: str, value: str, since: float) -> openai.types.Batch | None:
        """The newest remote batch whose metadata[key] == value, created at `since` (Unix
        seconds) or later: how a batch created by a process killed before it could store
        the id is found again. Reads the list newest first and stops at `since`."""
        for remote in self.client.batches.list(limit=100):
            if remote.created_at < since:
                return None
            if (remote.metadata or {}).get(key) == value:
                return remote
        return None

    def download(self, file_id: str, dest: BinaryIO) -> int:
        """Stream a file's content into dest; returns the bytes written."""
        written = 0
        with self.client.files.with_streaming_response.content(file_id) as response:
            for chunk in response.iter_bytes():
                dest.write(chunk)
                written += len(chunk)
        return written
