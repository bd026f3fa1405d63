"""A local OpenAI-compatible server for tests, benchmarks and `make demo`, on aiohttp.web.

    python manage.py fake_openai --port P [--latency S] [--rpm N] [--error-rate F] ...
    python -m mathconv_dev.fakeopenai --port P ...     (the same, without Django settings)

The options are the fields of `FakeOptions` (options.py). It speaks enough of the real
API for the official SDK: POST /v1/chat/completions with response_format json_schema
(strict), GET /v1/models, usage counts, x-ratelimit-* headers, OpenAI-shaped error bodies,
401 without a bearer token, 404 model_not_found; the files and batches API (batches.py;
--no-batches-api answers 404 there). It can be told to be slow (--latency is the
response time, this server's own work included), to rate-limit (429 with Retry-After
above --rpm in a sliding window), to fail (500/503), to hang until the client gives up,
to answer with malformed JSON, or to answer wrongly.

Answers (answers.py): a conversion request (schema with a "latex" property) gets the
deterministic converter's LaTeX for the MathML between the prompt's <<<MATHML markers (or,
where the converter fails, a LaTeX derived from the MathML's tokens); any other
json_schema gets a deterministic instance of that schema chosen by a hash of the input. A
wrong answer is valid JSON that is wrong: a mutated formula, or labels that break the
schema's enums and ranges.

Fault decisions are seeded by (--seed, input, attempt number), so a test run is
reproducible. Inputs can also carry a directive that forces a fault, for tests that need
one particular item to fail: "fake:status=400", "fake:status=503*2" (the first two
attempts), "fake:hang", "fake:wrong", "fake:drop" (the last letter or
digit left out), "fake:garbage" (each with an optional *N); a forced
429 asks the client to wait --retry-after seconds.

Azure OpenAI's scheme is spoken too: POST /openai/deployments/{deployment}/chat/completions
?api-version=V, GET /openai/models?api-version=V, and the files and batches API under
/openai/files and /openai/batches, with an `api-key` header (the deployment stands for
the model; without api-version the answer is Azure's 404).

Prompt caching: every answer reports usage.prompt_tokens_details.cached_tokens, either a
fixed --cached-tokens or, with --prompt-cache, what OpenAI's cache would (the longest
prefix of at least 1024 tokens, in 128-token steps, seen before under the same
prompt_cache_key). Each request's prefix (every message but the last) is counted by its
digest, so a test can see that the bytes before the input never change.

GET /_stats returns request counters, including per-input counts keyed by input_key(),
the request fields sent (params), the prompt_cache_key values and prefix digests seen,
and the last requests' method, path,
query and authentication scheme; POST /_reset clears them; POST /_config changes options
on a running server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import random
import re
import signal
import time
import uuid
import weakref
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from mathconv_dev.fakeopenai.answers import (
    dropped_latex,
    expected_latex,
    input_key,
    is_conversion_schema,
    request_input,
    schema_instance,
    seeded,
    wrong_latex,
)
from mathconv_dev.fakeopenai.batches import BatchService
from mathconv_dev.fakeopenai.options import FakeOptions
from mathconv_dev.fakeopenai.protocol import (
    DIRECTIVE,
    ApiError,
    bad_request,
    count_tokens,
    duration,
    message_text,
    response_schema,
)

log = logging.getLogger("mathconv_dev.fakeopenai")

MAX_BODY_BYTES = 210_000_000  # a Batch API input file is up to 200 MB
RECENT_REQUESTS = 50  # how many requests GET /_stats describes ("recent")
CACHE_MIN_TOKENS = 1024  # OpenAI's prompt cache: prefixes from 1,024 tokens ...
CACHE_STEP_TOKENS = 128  # ... in steps of 128 tokens
CACHE_MAX_PREFIXES = 200_000  # the simulated cache forgets everything past this
AZURE_CHAT = re.compile(r"/openai/deployments/([^/]+)/chat/completions")
NOMINAL_LIMIT = 1_000_000  # what the x-ratelimit-limit-* headers say when no limit is set
SHUTDOWN_GRACE = 0.5  # seconds in-flight requests get at SIGTERM; hanging ones are dropped


@dataclass
class _Window:
    """A sliding window of (time, amount) for one limit."""

    entries: deque = field(default_factory=deque)
    total: int = 0

    def prune(self, now: float, window: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= now - window:
            self.total -= entries.popleft()[1]

    def add(self, now: float, amount: int) -> None:
        self.entries.append((now, amount))
        self.total += amount

    def reset_after(self, now: float, window: float) -> float:
        return max(0.0, self.entries[0][0] + window - now) if self.entries else 0.0


_TRUNCATE = "x-fake-truncate"  # an internal marker: cut this answer's body off halfway


@dataclass(frozen=True)
class _ChatRequest:
    """A checked chat completion request and what the answers are keyed on."""

    request: dict
    model: str
    schema: dict | None
    user_text: str
    source: str  # the MathML between the prompt's markers, else the user text
    key: str  # input_key(source): per-input counters and fault decisions
    prompt_tokens: int
    max_out: int


class FakeOpenAI:
    """The server's state (options, counters, rate-limit windows) and its request handler."""

    def __init__(self, options: FakeOptions | None = None) -> None:
        self.options = options or FakeOptions()
        self._connections: weakref.WeakSet = weakref.WeakSet()
        self.batches = BatchService(self)
        self.reset()

    def reset(self) -> None:
        self.counters: Counter[str] = Counter()
        self.per_input: Counter[str] = Counter()
        self.per_input_ok: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()  # requests that got past the rate limit
        self.requests_window = _Window()
        self.tokens_window = _Window()
        self.started = time.monotonic()  # 429 storms are timed from here
        self.params: Counter[str] = Counter()  # top-level request fields, per request
        self.prompt_cache_keys: Counter[str] = Counter()
        self.prefix_digests: Counter[str] = Counter()
        self.recent: deque = deque(maxlen=RECENT_REQUESTS)
        self.cached_prefixes: set[str] = set()
        self.batches.reset()

    def stats(self) -> dict:
        """Counters since the last reset; per_input and per_input_ok by input_key()."""
        return {
            **{
                name: self.counters[name]
                for name in (
                    "requests",
                    "ok",
                    "rate_limited",
                    "errors",
                    "hangs",
                    "wrong",
                    "garbage",
                    "truncated",
                    "storm_429",
                    "bad_requests",
                    "unauthorized",
                    "connections",
                    "with_temperature",
                    "with_prompt_cache_key",
                    "cached_tokens",
                    "files_uploaded",
                    "batches_created",
                    "batch_requests",
                    "batch_ok",
                    "batch_failed",
                    "batch_expired",
                    "batch_cancelled",
                )
            },
            "per_input": dict(self.per_input),
            "per_input_ok": dict(self.per_input_ok),
            "params": dict(self.params),
            "prompt_cache_keys": dict(self.prompt_cache_keys),
            "prefix_digests": dict(self.prefix_digests),
            "recent": list(self.recent),
        }

    # -- HTTP ---------------------------------------------------------------------------

    def application(self) -> web.Application:
        """The aiohttp application: every method and path goes to one handler, which answers
        unknown ones the way the API does (an OpenAI-shaped 404)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        transport = request.transport  # one per TCP connection
        if transport is not None and transport not in self._connections:
            self._connections.add(transport)
            self.counters["connections"] += 1
        form = None
        try:
            if request.content_type == "multipart/form-data":
                form = await request.post()  # a file upload
                body = b""
            else:
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            response: web.StreamResponse = web.json_response(
                {"error": {"message": "body too large"}}, status=413
            )
            response.force_close()
            return response
        if not request.path.startswith("/_"):  # not the control endpoints
            self.recent.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string,
                    "auth": _auth_scheme(request.headers),
                }
            )
        status, headers, payload = await self._dispatch(
            request.method,
            request.path,
            request.headers,
            body,
            received,
            query=request.query,
            form=form,
        )
        if isinstance(payload, bytes):  # a file's content
            return web.Response(
                status=status, body=payload, content_type="application/octet-stream"
            )
        if headers.pop(_TRUNCATE, None):
            # Content-Length promises the whole body; half of it comes, then the connection
            # closes: what a proxy dropping the connection mid-answer looks like.
            data = json.dumps(payload).encode()
            response = web.StreamResponse(status=status, headers=headers)
            response.content_type = "application/json"
            response.content_length = len(data)
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
            if request.transport is not None:
                request.transport.close()
            return response
        return web.Response(
            status=status,
            body=json.dumps(payload).encode(),
            content_type="application/json",
            headers=headers,
        )

    async def _dispatch(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        received: float,
        *,
        query: Mapping[str, str] | None = None,
        form=None,
    ) -> tuple[int, dict, object]:
        path = path.rstrip("/")
        try:
            if path.startswith("/openai/"):  # Azure OpenAI's scheme
                if not (query or {}).get("api-version"):
                    raise ApiError(404, "Resource not found", "invalid_request_error", "404")
                self._authorize(headers, azure=True)
                azure = AZURE_CHAT.fullmatch(path)
                if azure and method == "POST":
                    return await self._chat(body, received, deployment=azure.group(1))
                if path == "/openai/models" and method == "GET":
                    # Azure lists the models it offers, not the deployments
                    return (
                        200,
                        {},
                        {"object": "list", "data": [self._model(m) for m in self.options.models]},
                    )
                path = "/v1" + path.removeprefix("/openai")  # /openai/files -> /v1/files
                if path.startswith(("/v1/files", "/v1/batches")):
                    return 200, {}, self._batch_api(method, path, body, query or {}, form)
                raise ApiError(404, f"Invalid URL ({method} {path})", "invalid_request_error")
            if path == "/_stats" and method == "GET":
                return 200, {}, self.stats()
            if path == "/_reset" and method == "POST":
                self.reset()
                return 200, {}, {"ok": True}
            if path == "/_config" and method == "POST":
                self.options.update(json.loads(body or b"{}"))
                return 200, {}, dataclasses.asdict(self.options)
            if not path.startswith("/v1/"):
                raise ApiError(404, f"Invalid URL ({method} {path})", "invalid_request_error")
            self._authorize(headers)
            if path == "/v1/models" and method == "GET":
                return (
                    200,
                    {},
                    {"object": "list", "data": [self._model(m) for m in self.options.models]},
                )
            if path.startswith("/v1/models/") and method == "GET":
                return 200, {}, self._model(self._known_model(path.rsplit("/", 1)[1]))
            if path == "/v1/chat/completions" and method == "POST":
                return await self._chat(body, received)
            if path.startswith(("/v1/files", "/v1/batches")):
                return 200, {}, self._batch_api(method, path, body, query or {}, form)
            raise ApiError(404, f"Invalid URL ({method} {path})", "invalid_request_error")
        except ApiError as error:
            if error.status == 401:
                self.counters["unauthorized"] += 1
            elif error.status < 500 and error.status != 429:
                self.counters["bad_requests"] += 1
            if self.options.echo_key:
                token = headers.get("authorization", "").partition(" ")[2]
                error.body["error"]["message"] += f" (Authorization: Bearer {token})"
            extra = {"x-request-id": f"req_{uuid.uuid4().hex[:24]}", **error.headers}
            return error.status, extra, error.body
        except ValueError:
            return (
                400,
                {},
                {
                    "error": {
                        "message": "We could not parse the JSON body of your request.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )

    def _batch_api(self, method: str, path: str, body: bytes, query, form) -> object:
        """The files and batches API (batches.py); bytes for a file's content."""
        if not self.options.batches_api:
            raise ApiError(404, f"Invalid URL ({method} {path})", "invalid_request_error")
        batches = self.batches
        parts = path.split("/")[2:]  # ["files", id, "content"], ["batches", id, "cancel"]
        if parts == ["files"] and method == "POST":
            return batches.upload(form)
        if parts[0] == "files" and len(parts) == 2 and method == "GET":
            return batches.file(parts[1]).json()
        if parts[0] == "files" and parts[2:] == ["content"] and method == "GET":
            return batches.file(parts[1]).content
        if parts == ["batches"] and method == "POST":
            return batches.create(json.loads(body or b"{}"))
        if parts == ["batches"] and method == "GET":
            return batches.listing(query)
        if parts[0] == "batches" and len(parts) == 2 and method == "GET":
            return batches.batch(parts[1])
        if parts[0] == "batches" and parts[2:] == ["cancel"] and method == "POST":
            return batches.cancel(parts[1])
        raise ApiError(404, f"Invalid URL ({method} {path})", "invalid_request_error")

    def _authorize(self, headers: Mapping[str, str], *, azure: bool = False) -> None:
        if azure and headers.get("api-key", "").strip():  # Azure OpenAI's header
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                "missing_api_key",
            )

    def _model(self, name: str) -> dict:
        return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}

    def _known_model(self, name: str) -> str:
        if name not in self.options.models:
            raise ApiError(
                404,
                f"The model `{name}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        return name

    # -- chat completions ---------------------------------------------------------------

    def _chat_request(self, request: object) -> _ChatRequest:
        """A chat completion request checked as the API checks it (ApiError if not)."""
        if not isinstance(request, dict):
            raise bad_request("The request body must be a JSON object.")
        if not request.get("model"):
            raise bad_request("you must provide a model parameter", "model")
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("Missing required parameter: 'messages'.", "messages")
        if any(not isinstance(m, dict) or "role" not in m for m in messages):
            raise bad_request("Invalid 'messages': every message needs a role.", "messages")
        model = self._known_model(request["model"])
        schema = response_schema(request)
        user_texts = [message_text(m.get("content")) for m in messages if m["role"] == "user"]
        user_text = user_texts[-1] if user_texts else ""
        source = request_input(user_text)
        return _ChatRequest(
            request=request,
            model=model,
            schema=schema,
            user_text=user_text,
            source=source,
            key=input_key(source),
            prompt_tokens=sum(count_tokens(message_text(m.get("content"))) + 4 for m in messages),
            max_out=int(request.get("max_completion_tokens") or request.get("max_tokens") or 0),
        )

    def _check_temperature(self, chat: _ChatRequest) -> None:
        if "temperature" in chat.request:
            self.counters["with_temperature"] += 1
            if self.options.reject_temperature:
                raise bad_request(
                    "Unsupported parameter: 'temperature' is not supported with this model.",
                    "temperature",
                    "unsupported_parameter",
                )

    def _completion(self, chat: _ChatRequest, decision: str | int | None, attempt: int) -> dict:
        """The chat.completion body answering this request (decision: wrong, drop,
        garbage or None)."""
        options = self.options
        key, source = chat.key, chat.source
        rng = seeded(options.seed, key, "answer")
        wrong = decision == "wrong"
        answer: object
        if chat.schema is None or is_conversion_schema(chat.schema):
            latex = expected_latex(source)
            if wrong:
                latex = wrong_latex(latex, seeded(options.seed, key, attempt, "wrong"))
            elif decision == "drop":
                latex = dropped_latex(latex)
            answer = {"latex": latex}
        else:
            answer = schema_instance(chat.schema, rng, wrong=wrong)
        content = json.dumps(answer, ensure_ascii=False)
        if decision == "garbage":
            self.counters["garbage"] += 1
            content = content[: max(1, len(content) // 2)]
        elif wrong:
            self.counters["wrong"] += 1
        completion_tokens = count_tokens(content)
        finish_reason = "stop"
        if chat.max_out and completion_tokens > chat.max_out:
            completion_tokens, finish_reason = chat.max_out, "length"
        prompt_tokens = chat.prompt_tokens
        cached_tokens = min(options.cached_tokens, prompt_tokens)
        if options.prompt_cache:
            cache_key = str(chat.request.get("prompt_cache_key") or "")
            cached_tokens = min(
                prompt_tokens, cached_tokens + self._prompt_cache(chat.request, cache_key)
            )
        self.counters["cached_tokens"] += cached_tokens
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens},
            },
        }

    def _prompt_cache(self, request: dict, cache_key: str) -> int:
        """Tokens of this prompt's longest prefix an earlier request already began with.

        The prompt is the response format, then each message's role and content, at the
        server's four characters a token; prefixes count from 1,024 tokens in steps of
        128, each remembered under the request's prompt_cache_key (OpenAI's cache).
        """
        text = json.dumps(request.get("response_format"), sort_keys=True) + "".join(
            f"<|{m['role']}|>{message_text(m.get('content'))}" for m in request["messages"]
        )
        total = count_tokens(text)
        hit = 0
        if len(self.cached_prefixes) > CACHE_MAX_PREFIXES:
            self.cached_prefixes.clear()
        for tokens in range(CACHE_MIN_TOKENS, total + 1, CACHE_STEP_TOKENS):
            digest = hashlib.sha256(f"{cache_key}\x00{text[: tokens * 4]}".encode()).hexdigest()
            if digest in self.cached_prefixes:
                hit = tokens
            else:
                self.cached_prefixes.add(digest)
        return hit

    async def _chat(
        self, body: bytes, received: float, deployment: str = ""
    ) -> tuple[int, dict, object]:
        options = self.options
        request = json.loads(body)
        if deployment and isinstance(request, dict):  # Azure: the deployment is the model
            request["model"] = deployment
        chat = self._chat_request(request)
        key = chat.key
        self.counters["requests"] += 1
        self.per_input[key] += 1
        self.params.update(chat.request.keys())
        cache_key = chat.request.get("prompt_cache_key")
        if cache_key is not None:
            self.counters["with_prompt_cache_key"] += 1
            self.prompt_cache_keys[str(cache_key)] += 1
        self.prefix_digests[_digest(chat.request["messages"][:-1])] += 1
        self._check_temperature(chat)
        self._storm(received)
        limit_headers = self._rate_limit(chat.prompt_tokens + chat.max_out)

        attempt = self.attempts[key]
        self.attempts[key] += 1
        decision = self._decide(key, attempt, chat.user_text)
        delay = options.latency + (random.uniform(0, options.jitter) if options.jitter else 0)
        # --latency is the response time, this server's own work included.
        answer_at = None if decision == "hang" else received + delay
        if decision == "hang":
            self.counters["hangs"] += 1
            # Until the client gives up: aiohttp then cancels this handler.
            await asyncio.sleep(options.hang)
        elif isinstance(decision, int):
            await _sleep_until(received + delay)  # = answer_at
        if decision == 429:
            self.counters["rate_limited"] += 1
            raise ApiError(
                429,
                "Rate limit reached (forced for this input).",
                "requests",
                "rate_limit_exceeded",
                headers={
                    **limit_headers,
                    "retry-after": str(math.ceil(options.retry_after)),
                    "retry-after-ms": str(round(options.retry_after * 1000)),
                },
            )
        if isinstance(decision, int):
            self.counters["errors" if decision >= 500 else "bad_requests"] += 1
            raise ApiError(
                decision,
                "The server had an error while processing your request. Sorry about that!"
                if decision >= 500
                else f"Forced failure {decision} for this input.",
                "server_error" if decision >= 500 else "invalid_request_error",
                headers=limit_headers,
            )
        completion = self._completion(chat, decision, attempt)
        truncate = decision == "truncate"
        if truncate:
            self.counters["truncated"] += 1
        if answer_at is not None:
            await _sleep_until(answer_at)
        if not truncate:  # a cut-off body is no answer
            self.counters["ok"] += 1
            self.per_input_ok[key] += 1
        return (
            200,
            {
                "x-request-id": f"req_{uuid.uuid4().hex[:24]}",
                "openai-processing-ms": str(int(delay * 1000)),
                **limit_headers,
                **({_TRUNCATE: "1"} if truncate else {}),
            },
            completion,
        )

    def _storm(self, now: float) -> None:
        """Answer 429 to everything during a storm (storm_every / storm_length)."""
        options = self.options
        if not (options.storm_every and options.storm_length):
            return
        phase = (now - self.started) % options.storm_every
        if phase >= options.storm_length:
            return
        self.counters["rate_limited"] += 1
        self.counters["storm_429"] += 1
        wait = options.storm_length - phase
        raise ApiError(
            429,
            "Rate limit reached (a 429 storm).",
            "requests",
            "rate_limit_exceeded",
            headers={
                "retry-after": str(math.ceil(wait)),
                "retry-after-ms": str(math.ceil(wait * 1000)),
            },
        )

    def _rate_limit(self, tokens: int) -> dict:
        """Admit the request into the sliding windows or raise a 429; return the headers."""
        options = self.options
        now = time.monotonic()
        window = options.window
        requests, token_window = self.requests_window, self.tokens_window
        requests.prune(now, window)
        token_window.prune(now, window)
        request_limit = max(1, int(options.rpm * window / 60)) if options.rpm else NOMINAL_LIMIT
        token_limit = max(1, int(options.tpm * window / 60)) if options.tpm else NOMINAL_LIMIT * 100
        kind = None
        if options.rpm and requests.total + 1 > request_limit:
            kind, wait = "requests", requests.reset_after(now, window)
        elif options.tpm and token_window.total and token_window.total + tokens > token_limit:
            kind, wait = "tokens", token_window.reset_after(now, window)
        if kind is None:
            requests.add(now, 1)
            token_window.add(now, tokens)
        headers = {}
        if options.ratelimit_headers:
            headers = {
                "x-ratelimit-limit-requests": str(request_limit),
                "x-ratelimit-remaining-requests": str(max(0, request_limit - requests.total)),
                "x-ratelimit-reset-requests": duration(requests.reset_after(now, window)),
                "x-ratelimit-limit-tokens": str(token_limit),
                "x-ratelimit-remaining-tokens": str(max(0, token_limit - token_window.total)),
                "x-ratelimit-reset-tokens": duration(token_window.reset_after(now, window)),
            }
        if kind is not None:
            self.counters["rate_limited"] += 1
            wait = max(wait, 0.001)
            raise ApiError(
                429,
                f"Rate limit reached for {kind} per min (RPM): Limit {request_limit}. "
                f"Please try again in {duration(wait)}.",
                kind,
                "rate_limit_exceeded",
                headers={
                    **headers,
                    "retry-after": str(math.ceil(wait)),
                    "retry-after-ms": str(math.ceil(wait * 1000)),
                },
            )
        return headers

    def _decide(self, key: str, attempt: int, user_text: str) -> str | int | None:
        """What to do with this attempt: None (answer), an HTTP status, or a fault name."""
        directive = DIRECTIVE.search(user_text)
        if directive:
            action, status, times = directive.groups()
            if times is None or attempt < int(times):
                return int(status) if status else action
        options = self.options
        draw = seeded(options.seed, key, attempt, "fault").random()
        for threshold_name, outcome in (
            ("error_rate", 500 if draw < options.error_rate / 2 else 503),
            ("timeout_rate", "hang"),
            ("garbage_rate", "garbage"),
            ("truncate_rate", "truncate"),
            ("wrong_rate", "wrong"),
        ):
            rate = getattr(options, threshold_name)
            if draw < rate:
                return outcome
            draw -= rate
        return None


async def serve_forever(
    options: FakeOptions, host: str, port: int, ready: Callable[[str], None] | None = None
) -> None:
    """Run until SIGTERM or SIGINT; ready(url) is called once the socket listens."""
    server = FakeOpenAI(options)
    # handler_cancellation: a request whose client hung up stops there (a hanging one too).
    runner = web.AppRunner(
        server.application(),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_GRACE,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopped.set)
    if ready:
        ready(f"http://{bound_host}:{bound_port}/v1")
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()
    log.info(
        "fake_openai stopped: %s",
        json.dumps({k: v for k, v in server.stats().items() if not k.startswith("per_input")}),
    )


def _auth_scheme(headers: Mapping[str, str]) -> str:
    """How a request authenticated: "api-key" (Azure), "bearer", or "" (not at all)."""
    if headers.get("api-key"):
        return "api-key"
    scheme = headers.get("authorization", "").partition(" ")[0]
    return scheme.lower()


def _digest(messages: list) -> str:
    """A short digest of messages (a prompt's prefix), equal for equal content."""
    material = json.dumps(messages, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


async def _sleep_until(deadline: float) -> None:
    wait = deadline - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)
