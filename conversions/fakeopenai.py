"""A local OpenAI-compatible server for tests, benchmarks and `make demo`.

`python manage.py fake_openai --port P [--latency S] [--rpm N] [--error-rate F] ...`

It speaks enough of the real API for the official SDK: POST /v1/chat/completions with
response_format json_schema (strict), GET /v1/models, usage counts, x-ratelimit-*
headers, OpenAI-shaped error bodies, 401 without a bearer token, 404 model_not_found.
It can be told to be slow, to rate-limit (429 with Retry-After above --rpm in a sliding
window), to fail (500/503), to hang, to answer with malformed JSON, or to answer wrongly.

Answers: a conversion request (schema with a "latex" property) gets the deterministic
converter's LaTeX for the MathML between the prompt's <<<MATHML markers (or, where the
converter fails, a LaTeX derived from the MathML's tokens); any other json_schema gets a
deterministic instance of that schema chosen by a hash of the input. A wrong answer is
valid JSON that is wrong: a mutated formula, or labels that break the schema's enums
and ranges.

Fault decisions are seeded by (--seed, input, attempt number), so a test run is
reproducible. Inputs can also carry a directive that forces a fault, for tests that
need one particular item to fail: "fake:status=400", "fake:status=503*2" (the first two
attempts), "fake:hang", "fake:wrong", "fake:garbage" (each with an optional *N); a forced
429 asks the client to wait --retry-after seconds.

GET /_stats returns request counters, including per-input counts keyed by input_key();
POST /_reset clears them; POST /_config changes options on a running server.

Stdlib and asyncio only: one coroutine per connection with a minimal HTTP/1.1
keep-alive parser, so one process sustains a few hundred requests per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import html
import json
import logging
import math
import random
import re
import signal
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from conversions.engine.prompts import extract_block

log = logging.getLogger("conversions.fakeopenai")

DEFAULT_MODELS = (
    "gpt-4.1-mini",
    "gpt-4.1",
    "gpt-4.1-nano",
    "gpt-4o-mini",
    "gpt-4o",
)
MAX_BODY_BYTES = 8_000_000
NOMINAL_LIMIT = 1_000_000  # what the x-ratelimit-limit-* headers say when no limit is set

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class FakeOptions:
    latency: float = 0.0  # seconds before each answer
    jitter: float = 0.0  # plus uniform(0, jitter)
    rpm: int | None = None  # requests per `window` seconds, scaled: rpm * window / 60
    tpm: int | None = None
    window: float = 60.0  # the sliding window the limits are measured over
    error_rate: float = 0.0  # 500 / 503
    timeout_rate: float = 0.0  # hang for `hang` seconds (or until the client gives up)
    hang: float = 600.0
    wrong_rate: float = 0.0  # valid JSON, wrong answer
    garbage_rate: float = 0.0  # malformed JSON content
    seed: int = 0
    retry_after: float = 1.0  # seconds a forced 429 ("fake:status=429") asks to wait
    ratelimit_headers: bool = True
    models: tuple[str, ...] = DEFAULT_MODELS
    # Answer 400 unsupported_parameter to a request carrying temperature, as OpenAI's
    # reasoning models (o-series, GPT-5 line) do.
    reject_temperature: bool = False
    # Report this many prompt tokens (at most the prompt) as served from the prompt cache
    # (usage.prompt_tokens_details.cached_tokens), as OpenAI does past 1,024 tokens.
    cached_tokens: int = 0

    def update(self, values: dict) -> None:
        names = {f.name: f for f in dataclasses.fields(self)}
        for name, value in values.items():
            name = name.replace("-", "_")
            if name not in names:
                raise ValueError(f"unknown option {name!r}")
            if name == "models" and value is not None:
                value = tuple(value)
            setattr(self, name, value)


def input_key(text: str) -> str:
    """The stable key of one input in /_stats: sha256 of the stripped text, 16 hex digits."""
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def request_input(user_text: str) -> str:
    """The input a request is about: the MathML block if there is one, else the user text."""
    mathml = extract_block("MATHML", user_text)
    return mathml if mathml is not None else user_text


# -- answers ---------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"<(mi|mn|mo|mtext|ms)\b[^>]*>(.*?)</\1>", re.S)


def fallback_latex(mathml: str) -> str:
    """A deterministic LaTeX derived from the MathML's tokens, when the converter fails."""
    tokens = [html.unescape(text).strip() for _, text in _TOKEN_RE.findall(mathml)]
    latex = " ".join(token for token in tokens if token)
    return latex or "x"


@lru_cache(maxsize=20_000)
def expected_latex(mathml: str) -> str:
    """The correct answer the server gives for this MathML."""
    try:
        from conversions.converters import mathml_to_latex

        latex = mathml_to_latex(mathml)
    except Exception:  # the converter is allowed to fail; the fallback never does
        return fallback_latex(mathml)
    return latex.strip() or fallback_latex(mathml)


def _seeded(seed: int, *parts: object) -> random.Random:
    # random.Random(str) hashes the string with SHA-512: stable across processes.
    return random.Random(":".join(str(part) for part in (seed, *parts)))


def _balanced(text: str, start: int) -> int:
    """Index just past the {...} group that starts at text[start] == "{", or -1."""
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if char == "\\":
            continue
        if char == "{" and (index == 0 or text[index - 1] != "\\"):
            depth += 1
        elif char == "}" and text[index - 1] != "\\":
            depth -= 1
            if depth == 0:
                return index + 1
    return -1


def _swap_fraction(latex: str, rng: random.Random) -> str | None:
    at = latex.find("\\frac{")
    if at < 0:
        return None
    first_start = at + len("\\frac")
    first_end = _balanced(latex, first_start)
    if first_end < 0 or first_end >= len(latex) or latex[first_end] != "{":
        return None
    second_end = _balanced(latex, first_end)
    if second_end < 0:
        return None
    numerator, denominator = latex[first_start:first_end], latex[first_end:second_end]
    if numerator == denominator:
        return None
    return latex[:first_start] + denominator + numerator + latex[second_end:]


def _drop_exponent(latex: str, rng: random.Random) -> str | None:
    at = latex.find("^")
    if at < 0 or at + 1 >= len(latex):
        return None
    if latex[at + 1] == "{":
        end = _balanced(latex, at + 1)
        if end < 0:
            return None
    else:
        end = at + 2
    return latex[:at] + latex[end:]


def _change_digit(latex: str, rng: random.Random) -> str | None:
    digits = [index for index, char in enumerate(latex) if char.isdigit()]
    if not digits:
        return None
    index = rng.choice(digits)
    return latex[:index] + str((int(latex[index]) + 1 + rng.randrange(8)) % 10) + latex[index + 1 :]


_OPERATOR_SWAPS = (("+", "-"), ("-", "+"), ("=", "<"), ("\\times", "+"), ("\\le", "\\ge"))


def _change_operator(latex: str, rng: random.Random) -> str | None:
    for old, new in _OPERATOR_SWAPS:
        if old in latex:
            return latex.replace(old, new, 1)
    return None


def _drop_root(latex: str, rng: random.Random) -> str | None:
    at = latex.find("\\sqrt")
    if at < 0:
        return None
    cursor = at + len("\\sqrt")
    if cursor < len(latex) and latex[cursor] == "[":
        close = latex.find("]", cursor)
        if close < 0:
            return None
        cursor = close + 1
    if cursor >= len(latex) or latex[cursor] != "{":
        return None
    end = _balanced(latex, cursor)
    if end < 0:
        return None
    return latex[:at] + latex[cursor + 1 : end - 1] + latex[end:]


MUTATIONS: tuple[Callable[[str, random.Random], str | None], ...] = (
    _swap_fraction,
    _drop_exponent,
    _change_digit,
    _change_operator,
    _drop_root,
)


def wrong_latex(latex: str, rng: random.Random) -> str:
    """A plausible but wrong variant: swapped fraction, lost exponent, changed digit or
    operator, dropped root. Always differs from the input."""
    candidates = [mutated for mutate in MUTATIONS if (mutated := mutate(latex, rng))]
    candidates = [mutated for mutated in candidates if mutated != latex]
    if candidates:
        return rng.choice(candidates)
    return latex + "+1"


def schema_instance(schema: dict, rng: random.Random, *, wrong: bool = False) -> object:
    """A deterministic value satisfying a JSON schema (or, when wrong, one that breaks it)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        return schema_instance(options[0] if options else {"type": "null"}, rng, wrong=wrong)
    if "enum" in schema:
        return "not-a-valid-choice" if wrong else rng.choice(schema["enum"])
    if kind == "object":
        properties = schema.get("properties", {})
        # Break one field, keep the others valid, so a validator must look at each.
        broken = rng.choice(sorted(properties)) if wrong and properties else None
        return {
            name: schema_instance(sub, rng, wrong=(name == broken))
            for name, sub in properties.items()
        }
    if kind == "array":
        low = schema.get("minItems", 1 if schema.get("items") else 0)
        high = schema.get("maxItems", max(low, 3))
        if wrong and "maxItems" in schema:
            count = high + 1
        else:
            count = rng.randint(low, max(low, min(high, low + 3)))
        return [schema_instance(schema.get("items", {}), rng) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", 0)
        high = schema.get("maximum", low + 10)
        if wrong:
            return high + 1 if kind == "integer" else high + 1.5
        return (
            rng.randint(math.ceil(low), math.floor(high))
            if kind == "integer"
            else round(rng.uniform(low, high), 2)
        )
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string":
        if wrong and "maxLength" in schema:
            return "x" * (schema["maxLength"] + 1)
        return f"value-{rng.randrange(10_000):04d}"[: schema.get("maxLength", 64)]
    return None


def is_conversion_schema(schema: dict) -> bool:
    return "latex" in (schema.get("properties") or {})


# -- request validation (enough of OpenAI's to give realistic 400s) -----------------------------


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self.headers = headers or {}


def _bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def _check_strict_schema(schema: object, path: str, name: str) -> None:
    if not isinstance(schema, dict):
        raise _bad_request(f"Invalid schema for response_format '{name}': {path} is not an object.")
    if schema.get("type") == "object":
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            raise _bad_request(
                f"Invalid schema for response_format '{name}': In context={path}, "
                "'additionalProperties' is required to be supplied and to be false.",
                "response_format",
                "invalid_json_schema",
            )
        missing = sorted(set(properties) - set(schema.get("required", [])))
        if missing:
            raise _bad_request(
                f"Invalid schema for response_format '{name}': In context={path}, 'required' "
                f"is required to be supplied and to be an array including every key in "
                f"properties. Missing '{missing[0]}'.",
                "response_format",
                "invalid_json_schema",
            )
        for key, sub in properties.items():
            _check_strict_schema(sub, f"{path}.properties.{key}", name)
    if schema.get("type") == "array" and "items" in schema:
        _check_strict_schema(schema["items"], f"{path}.items", name)


def _response_schema(request: dict) -> dict | None:
    response_format = request.get("response_format")
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or "type" not in response_format:
        raise _bad_request(
            "Invalid 'response_format': expected an object with a type.", "response_format"
        )
    if response_format["type"] == "json_object" or response_format["type"] == "text":
        return None
    if response_format["type"] != "json_schema":
        raise _bad_request(
            f"Invalid value: '{response_format['type']}'. Supported values are: 'json_object', "
            "'json_schema', and 'text'.",
            "response_format.type",
            "invalid_value",
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not spec.get("name"):
        raise _bad_request(
            "Missing required parameter: 'response_format.json_schema.name'.",
            "response_format.json_schema.name",
            "missing_required_parameter",
        )
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", spec["name"]):
        raise _bad_request(
            "Invalid 'response_format.json_schema.name'.",
            "response_format.json_schema.name",
            "invalid_value",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise _bad_request(
            "Missing required parameter: 'response_format.json_schema.schema'.",
            "response_format.json_schema.schema",
            "missing_required_parameter",
        )
    if spec.get("strict"):
        _check_strict_schema(schema, "()", spec["name"])
    return schema


def _message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _count_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _duration(seconds: float) -> str:
    """OpenAI's reset format: 20ms, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s"


_DIRECTIVE = re.compile(r"fake:(status=(\d{3})|hang|wrong|garbage)(?:\*(\d+))?")


# -- the server -------------------------------------------------------------------------------


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


class FakeOpenAI:
    def __init__(self, options: FakeOptions | None = None) -> None:
        self.options = options or FakeOptions()
        self.writers: set[asyncio.StreamWriter] = set()
        self.reset()

    def close_connections(self) -> None:
        """Drop every open connection (hanging requests included), for a quick stop."""
        for writer in list(self.writers):
            writer.close()

    def reset(self) -> None:
        self.counters: Counter[str] = Counter()
        self.per_input: Counter[str] = Counter()
        self.per_input_ok: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()  # requests that got past the rate limit
        self.requests_window = _Window()
        self.tokens_window = _Window()

    def stats(self) -> dict:
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
                    "bad_requests",
                    "unauthorized",
                    "connections",
                    "with_temperature",
                )
            },
            "per_input": dict(self.per_input),
            "per_input_ok": dict(self.per_input_ok),
        }

    # -- HTTP ---------------------------------------------------------------------------

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
        return await asyncio.start_server(self._connection, host, port, backlog=1024, limit=1 << 20)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters["connections"] += 1
        self.writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it
                body = await self._read_body(reader, headers)
                if body is None:
                    await self._write(
                        writer, 413, {}, {"error": {"message": "body too large"}}, keep_alive=False
                    )
                    return
                keep_alive = (
                    version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                )
                status, extra, payload = await self._dispatch(method, target, headers, body, reader)
                if status == 0:  # the client gave up on a hanging request
                    return
                await self._write(writer, status, extra, payload, keep_alive)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict) -> bytes | None:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            size_total = 0
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(chunks)
                size_total += size
                if size_total > MAX_BODY_BYTES:
                    return None
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return await reader.readexactly(length) if length else b""

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        extra: dict,
        payload: object,
        keep_alive: bool,
    ) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            f"connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        head.extend(f"{name}: {value}" for name, value in extra.items())
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    async def _dispatch(
        self, method: str, target: str, headers: dict, body: bytes, reader: asyncio.StreamReader
    ) -> tuple[int, dict, object]:
        path = target.split("?", 1)[0].rstrip("/")
        try:
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
                return await self._chat(body, reader)
            raise ApiError(404, f"Invalid URL ({method} {path})", "invalid_request_error")
        except ApiError as error:
            if error.status == 401:
                self.counters["unauthorized"] += 1
            elif error.status < 500 and error.status != 429:
                self.counters["bad_requests"] += 1
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

    def _authorize(self, headers: dict) -> None:
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

    async def _chat(self, body: bytes, reader: asyncio.StreamReader) -> tuple[int, dict, object]:
        received = time.monotonic()
        options = self.options
        request = json.loads(body)
        if not isinstance(request, dict):
            raise _bad_request("The request body must be a JSON object.")
        if not request.get("model"):
            raise _bad_request("you must provide a model parameter", "model")
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad_request("Missing required parameter: 'messages'.", "messages")
        if any(not isinstance(m, dict) or "role" not in m for m in messages):
            raise _bad_request("Invalid 'messages': every message needs a role.", "messages")
        model = self._known_model(request["model"])
        schema = _response_schema(request)

        user_texts = [_message_text(m.get("content")) for m in messages if m["role"] == "user"]
        user_text = user_texts[-1] if user_texts else ""
        source = request_input(user_text)
        key = input_key(source)
        prompt_tokens = sum(_count_tokens(_message_text(m.get("content"))) + 4 for m in messages)
        max_out = int(request.get("max_completion_tokens") or request.get("max_tokens") or 0)

        self.counters["requests"] += 1
        self.per_input[key] += 1
        if "temperature" in request:
            self.counters["with_temperature"] += 1
            if options.reject_temperature:
                self.counters["bad_requests"] += 1
                raise _bad_request(
                    "Unsupported parameter: 'temperature' is not supported with this model.",
                    "temperature",
                    "unsupported_parameter",
                )
        limit_headers = self._rate_limit(prompt_tokens + max_out)

        attempt = self.attempts[key]
        self.attempts[key] += 1
        decision = self._decide(key, attempt, user_text)
        delay = options.latency + (random.uniform(0, options.jitter) if options.jitter else 0)
        # --latency is the response time, this server's own work included.
        answer_at = None if decision == "hang" else received + delay
        if decision == "hang":
            self.counters["hangs"] += 1
            if not await self._hang(reader, options.hang):
                return 0, {}, None
        elif isinstance(decision, int):
            await _sleep_until(answer_at)
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

        rng = _seeded(options.seed, key, "answer")
        wrong = decision == "wrong"
        if schema is None or is_conversion_schema(schema):
            latex = expected_latex(source)
            if wrong:
                latex = wrong_latex(latex, _seeded(options.seed, key, attempt, "wrong"))
            answer = {"latex": latex}
        else:
            answer = schema_instance(schema, rng, wrong=wrong)
        content = json.dumps(answer, ensure_ascii=False)
        if decision == "garbage":
            self.counters["garbage"] += 1
            content = content[: max(1, len(content) // 2)]
        elif wrong:
            self.counters["wrong"] += 1
        completion_tokens = _count_tokens(content)
        finish_reason = "stop"
        if max_out and completion_tokens > max_out:
            completion_tokens, finish_reason = max_out, "length"
        if answer_at is not None:
            await _sleep_until(answer_at)
        self.counters["ok"] += 1
        self.per_input_ok[key] += 1
        return (
            200,
            {
                "x-request-id": f"req_{uuid.uuid4().hex[:24]}",
                "openai-processing-ms": str(int(delay * 1000)),
                **limit_headers,
            },
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
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
                    "prompt_tokens_details": {
                        "cached_tokens": min(options.cached_tokens, prompt_tokens)
                    },
                },
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
                "x-ratelimit-reset-requests": _duration(requests.reset_after(now, window)),
                "x-ratelimit-limit-tokens": str(token_limit),
                "x-ratelimit-remaining-tokens": str(max(0, token_limit - token_window.total)),
                "x-ratelimit-reset-tokens": _duration(token_window.reset_after(now, window)),
            }
        if kind is not None:
            self.counters["rate_limited"] += 1
            wait = max(wait, 0.001)
            raise ApiError(
                429,
                f"Rate limit reached for {kind} per min (RPM): Limit {request_limit}. "
                f"Please try again in {_duration(wait)}.",
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
        directive = _DIRECTIVE.search(user_text)
        if directive:
            action, status, times = directive.groups()
            if times is None or attempt < int(times):
                return int(status) if status else action
        options = self.options
        draw = _seeded(options.seed, key, attempt, "fault").random()
        for threshold_name, outcome in (
            ("error_rate", 500 if draw < options.error_rate / 2 else 503),
            ("timeout_rate", "hang"),
            ("garbage_rate", "garbage"),
            ("wrong_rate", "wrong"),
        ):
            rate = getattr(options, threshold_name)
            if draw < rate:
                return outcome
            draw -= rate
        return None

    async def _hang(self, reader: asyncio.StreamReader, seconds: float) -> bool:
        """Hang until the client disconnects (False) or `seconds` pass (True)."""
        try:
            data = await asyncio.wait_for(reader.read(1), timeout=seconds)
        except TimeoutError:
            return True
        except ConnectionError:
            return False
        return bool(data)


async def serve_forever(
    options: FakeOptions, host: str, port: int, ready: Callable[[str], None] | None = None
) -> None:
    """Run until SIGTERM or SIGINT; ready(url) is called once the socket listens."""
    app = FakeOpenAI(options)
    server = await app.serve(host, port)
    bound = server.sockets[0].getsockname()
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopped.set)
    if ready:
        ready(f"http://{bound[0]}:{bound[1]}/v1")
    async with server:
        await stopped.wait()
        app.close_connections()
    log.info(
        "fake_openai stopped: %s",
        json.dumps({k: v for k, v in app.stats().items() if not k.startswith("per_input")}),
    )


async def _sleep_until(deadline: float) -> None:
    wait = deadline - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)
