"""The local server's files and batches API: OpenAI's Batch API in memory, in fast time.

    POST /v1/files (multipart: file, purpose)      GET /v1/files/{id}   GET /v1/files/{id}/content
    POST /v1/batches   GET /v1/batches/{id}   POST /v1/batches/{id}/cancel
    GET /v1/batches?limit=&after=                  (newest first, as the API lists them)

Shapes as the openai SDK reads them (types/file_object.py, types/batch.py). A batch is
checked when it is created: its input file must have purpose "batch", every line a
unique custom_id, method POST, the batch's url and the same model (one model per file),
and there may be at most --batch-max-requests lines; otherwise the batch is "failed"
with the reasons in `errors`. Each request line is then answered as POST
/v1/chat/completions would answer it (the same checks, answers, faults such as
--wrong-rate or an input's "fake:" directive, and per-input counters), except that:

- --batch-failure-rate of the requests fail (a 500 in the error file) and
  --batch-expiry-rate never run: a batch with such requests ends "expired", and they are
  in its error file with error.code "batch_expired";
- the other requests finish evenly over --batch-delay seconds, after which the batch is
  completed; its output file lists the answers in shuffled order (output order is not
  input order);
- a cancel leaves the batch "cancelling" for --batch-cancel-delay seconds; requests that
  finished by then are in the output file, the rest in the error file
  ("batch_cancelled").

Counters (GET /_stats): files_uploaded, batches_created, batch_requests (lines received;
per_input counts them like requests), batch_ok (answers delivered in output files;
per_input_ok counts them), batch_failed, batch_expired, batch_cancelled.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mathconv_dev.fakeopenai.answers import seeded
from mathconv_dev.fakeopenai.protocol import ApiError, bad_request

if TYPE_CHECKING:
    from mathconv_dev.fakeopenai.server import FakeOpenAI

BATCH_URLS = ("/v1/chat/completions", "/chat/completions")  # OpenAI; Azure OpenAI
WINDOW_S = 24 * 3600
ACTIVE = ("validating", "in_progress", "finalizing")


@dataclass
class _File:
    id: str
    content: bytes
    filename: str
    purpose: str
    created_at: int

    def json(self) -> dict:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class _Line:
    custom_id: str
    key: str  # input_key of the request's input
    done_at: float  # when it finishes (inf: never, it expires)
    response: dict | None  # {"status_code", "request_id", "body"}
    error: dict | None = None  # {"code", "message"}: a line without a response

    @property
    def ok(self) -> bool:
        return self.response is not None and self.response["status_code"] == 200


@dataclass
class _Batch:
    id: str
    endpoint: str
    input_file_id: str
    metadata: dict | None
    created: float
    delay: float
    model: str | None = None
    lines: list[_Line] = field(default_factory=list)
    status: str = "validating"
    errors: list[dict] = field(default_factory=list)
    times: dict[str, int] = field(default_factory=dict)
    cancelling_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0

    def json(self) -> dict:
        times = self.times
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created),
            "in_progress_at": times.get("in_progress_at"),
            "expires_at": int(self.created) + WINDOW_S,
            "finalizing_at": times.get("finalizing_at"),
            "completed_at": times.get("completed_at"),
            "failed_at": times.get("failed_at"),
            "expired_at": times.get("expired_at"),
            "cancelling_at": times.get("cancelling_at"),
            "cancelled_at": times.get("cancelled_at"),
            "request_counts": {
                "total": len(self.lines),
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": self.metadata,
            "model": self.model,
        }


class BatchService:
    """The files and the batches of one server, and its batch counters."""

    def __init__(self, server: FakeOpenAI) -> None:
        self.server = server
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}

    # -- files --------------------------------------------------------------------------

    def upload(self, form) -> dict:
        upload = form.get("file") if form is not None else None
        purpose = form.get("purpose") if form is not None else None
        if upload is None or not hasattr(upload, "file"):
            raise bad_request("Missing required parameter: 'file'.", "file")
        if not purpose:
            raise bad_request("Missing required parameter: 'purpose'.", "purpose")
        content = upload.file.read()
        created = self._file(content, upload.filename or "upload", str(purpose))
        self.server.counters["files_uploaded"] += 1
        return created.json()

    def _file(self, content: bytes, filename: str, purpose: str) -> _File:
        created = _File(
            f"file-{uuid.uuid4().hex[:24]}", content, filename, purpose, int(time.time())
        )
        self.files[created.id] = created
        return created

    def file(self, file_id: str) -> _File:
        found = self.files.get(file_id)
        if found is None:
            raise ApiError(404, f"No such File object: {file_id}", "invalid_request_error")
        return found

    # -- batches ------------------------------------------------------------------------

    def create(self, request: object) -> dict:
        if not isinstance(request, dict):
            raise bad_request("The request body must be a JSON object.")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not request.get(name):
                raise bad_request(f"Missing required parameter: '{name}'.", name)
        if request["completion_window"] != "24h":
            raise bad_request(
                "Invalid value for 'completion_window': only '24h' is supported.",
                "completion_window",
            )
        if request["endpoint"] not in BATCH_URLS:
            raise bad_request(
                f"Invalid value for 'endpoint': {request['endpoint']} is not supported.",
                "endpoint",
            )
        source = self.file(request["input_file_id"])
        if source.purpose != "batch":
            raise bad_request("The input file must be uploaded with purpose 'batch'.")
        options = self.server.options
        now = time.time()
        batch = _Batch(
            id=f"batch_{uuid.uuid4().hex[:24]}",
            endpoint=request["endpoint"],
            input_file_id=source.id,
            metadata=request.get("metadata"),
            created=now,
            delay=options.batch_delay,
        )
        self.batches[batch.id] = batch
        self.server.counters["batches_created"] += 1
        requests = self._validate(batch, source.content)
        if batch.errors:
            batch.status = "failed"
            batch.times["failed_at"] = int(now)
            return batch.json()
        batch.times["in_progress_at"] = int(now)
        for index, (custom_id, body) in enumerate(requests):
            done_at = now + options.batch_delay * (index + 1) / len(requests)
            batch.lines.append(self._answer(custom_id, body, done_at))
        return batch.json()  # "validating" once; "in_progress" from the next look on

    def _validate(self, batch: _Batch, content: bytes) -> list[tuple[str, dict]]:
        """The (custom_id, body) of every line, or errors on the batch."""
        requests: list[tuple[str, dict]] = []
        seen: set[str] = set()
        models: set[str] = set()
        for number, raw in enumerate(content.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                batch.errors.append(_error("invalid_json_line", "This line is not JSON.", number))
                continue
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            body = line.get("body") if isinstance(line, dict) else None
            if not isinstance(custom_id, str) or not isinstance(body, dict):
                batch.errors.append(_error("invalid_request", "custom_id and body needed.", number))
            elif custom_id in seen:
                batch.errors.append(
                    _error("duplicate_custom_id", f"custom_id {custom_id} repeats.", number)
                )
            elif line.get("method") != "POST" or line.get("url") != batch.endpoint:
                batch.errors.append(
                    _error("invalid_url", f"The url must be {batch.endpoint}, POST.", number)
                )
            else:
                seen.add(custom_id)
                models.add(str(body.get("model")))
                requests.append((custom_id, body))
        limit = self.server.options.batch_max_requests
        if not requests and not batch.errors:
            batch.errors.append(_error("empty_file", "The input file has no requests.", None))
        if len(requests) > limit:
            batch.errors.append(
                _error("too_many_requests", f"At most {limit} requests per batch.", None)
            )
        if len(models) > 1:
            batch.errors.append(
                _error("mixed_models", "Every request of a batch must name the same model.", None)
            )
        batch.model = next(iter(models)) if len(models) == 1 else None
        return requests

    def _answer(self, custom_id: str, body: dict, done_at: float) -> _Line:
        """One request line answered as a chat completion would be, plus the batch faults."""
        server, options = self.server, self.server.options
        server.counters["batch_requests"] += 1
        try:
            chat = server._chat_request(body)
        except ApiError as error:
            server.counters["bad_requests"] += 1
            return _Line(custom_id, "", done_at, _response(error.status, error.body))
        key = chat.key
        server.per_input[key] += 1
        try:
            server._check_temperature(chat)
        except ApiError as error:
            server.counters["bad_requests"] += 1
            return _Line(custom_id, key, done_at, _response(error.status, error.body))
        attempt = server.attempts[key]
        server.attempts[key] += 1
        decision = server._decide(key, attempt, chat.user_text)
        draw = seeded(options.seed, key, attempt, "batch").random()
        if draw < options.batch_failure_rate or decision == "truncate":
            decision = 500
        elif draw < options.batch_failure_rate + options.batch_expiry_rate or decision == "hang":
            return _Line(custom_id, key, float("inf"), None, _expired())
        if isinstance(decision, int):
            message = (
                "The server had an error while processing your request. Sorry about that!"
                if decision >= 500
                else f"Forced failure {decision} for this input."
            )
            kind = "server_error" if decision >= 500 else "invalid_request_error"
            body = ApiError(decision, message, kind).body
            return _Line(custom_id, key, done_at, _response(decision, body))
        return _Line(
            custom_id, key, done_at, _response(200, server._completion(chat, decision, attempt))
        )

    def batch(self, batch_id: str) -> dict:
        return self._refreshed(self._get(batch_id)).json()

    def _get(self, batch_id: str) -> _Batch:
        found = self.batches.get(batch_id)
        if found is None:
            raise ApiError(404, f"No batch found with id '{batch_id}'.", "invalid_request_error")
        return found

    def cancel(self, batch_id: str) -> dict:
        batch = self._refreshed(self._get(batch_id))
        if batch.status in ACTIVE:
            now = time.time()
            batch.status = "cancelling"
            batch.cancelling_at = now
            batch.times["cancelling_at"] = int(now)
        elif batch.status != "cancelling":
            raise ApiError(
                409,
                f"Cannot cancel a batch with status '{batch.status}'.",
                "invalid_request_error",
            )
        return batch.json()

    def listing(self, query) -> dict:
        ordered = sorted(self.batches.values(), key=lambda b: b.created, reverse=True)
        after = query.get("after")
        if after:
            ids = [b.id for b in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        limit = max(1, min(100, int(query.get("limit") or 20)))
        page = [self._refreshed(b).json() for b in ordered[:limit]]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(ordered) > limit,
        }

    def _refreshed(self, batch: _Batch) -> _Batch:
        """The batch at this moment: in progress, or ended with its files written."""
        now = time.time()
        if batch.status == "validating":
            batch.status = "in_progress"
        if batch.status == "cancelling":
            cancelling_at = batch.cancelling_at if batch.cancelling_at is not None else now
            end = cancelling_at + self.server.options.batch_cancel_delay
            if now >= end:
                self._finish(batch, "cancelled", end)
        elif batch.status == "in_progress" and now >= batch.created + batch.delay:
            expired = any(line.done_at == float("inf") for line in batch.lines)
            self._finish(batch, "expired" if expired else "completed", now)
        return batch

    def _finish(self, batch: _Batch, status: str, end: float) -> None:
        counters, server = self.server.counters, self.server
        output, errors = [], []
        for line in batch.lines:
            if line.done_at <= end and line.ok:
                output.append(_result(line.custom_id, line.response, None))
                counters["batch_ok"] += 1
                server.per_input_ok[line.key] += 1
            elif line.done_at <= end:
                errors.append(_result(line.custom_id, line.response, line.error))
                counters["batch_failed"] += 1
            elif status == "cancelled":
                errors.append(_result(line.custom_id, None, _cancelled()))
                counters["batch_cancelled"] += 1
            else:
                errors.append(_result(line.custom_id, None, line.error or _expired()))
                counters["batch_expired"] += 1
        rng = seeded(self.server.options.seed, batch.id, "order")
        rng.shuffle(output)
        rng.shuffle(errors)
        if output:
            batch.output_file_id = self._jsonl(output, f"{batch.id}_output.jsonl").id
        if errors:
            batch.error_file_id = self._jsonl(errors, f"{batch.id}_error.jsonl").id
        batch.completed, batch.failed = len(output), len(errors)
        batch.status = status
        stamp = int(end)
        batch.times["finalizing_at"] = stamp
        batch.times[f"{status}_at"] = stamp

    def _jsonl(self, lines: list[dict], name: str) -> _File:
        content = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        return self._file(content.encode(), name, "batch_output")

    def reset(self) -> None:
        self.files.clear()
        self.batches.clear()


def _response(status: int, body: dict) -> dict:
    return {"status_code": status, "request_id": f"req_{uuid.uuid4().hex[:24]}", "body": body}


def _result(custom_id: str, response: dict | None, error: dict | None) -> dict:
    return {
        "id": f"batch_req_{uuid.uuid4().hex[:24]}",
        "custom_id": custom_id,
        "response": response,
        "error": error,
    }


def _error(code: str, message: str, line: int | None) -> dict:
    return {"code": code, "message": message, "param": None, "line": line}


def _expired() -> dict:
    return {
        "code": "batch_expired",
        "message": "This request could not be executed before the completion window expired.",
    }


def _cancelled() -> dict:
    return {
        "code": "batch_cancelled",
        "message": "This request was not executed because the batch was cancelled.",
    }
