"""The async batch engine: a fixed pool of workers fed by a bounded queue.

Plain asyncio and the openai SDK, no Django. Items go in as WorkItem, results come out
as Outcome; every failure is data. The SDK's retries are off, the retry policy is in
retry.py, and one Limiter per endpoint paces all workers (limiter.py, or the shared
budget in conversions/ratelimit.py).

Two ways in:
- run_items(): an async generator for code already on an event loop;
- BatchRunner: a sync facade that runs the engine on its own loop in a background
  thread, so a django-q2 task can feed it items from the ORM and record outcomes
  without ever touching the ORM on the loop (DESIGN invariant 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib.util
import logging
import queue
import random
import ssl
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import httpx2
import openai

from conversions.engine.capabilities import adapt_options
from conversions.engine.limiter import TokenBucketLimiter
from conversions.engine.redact import redact
from conversions.engine.retry import (
    Failure,
    InvalidInput,
    InvalidOutput,
    backoff_delay,
    classify,
)
from conversions.engine.types import Endpoint, ErrorCategory, Outcome, WorkItem

__all__ = [
    "BatchRunner",
    "CallLedger",
    "EngineConfig",
    "InvalidInput",
    "InvalidOutput",
    "LLMTask",
    "Limiter",
    "make_client",
    "run_items",
]

default_log = logging.getLogger("conversions.engine")

Logger = logging.Logger | logging.LoggerAdapter


@dataclass(frozen=True)
class EngineConfig:
    max_concurrent: int = 10
    max_attempts: int = 4  # per item, the single retry layer (SDK max_retries=0)
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    queue_size: int = 0  # 0 -> 2 * max_concurrent (bounded input queue)
    invalid_output_retries: int = 1  # a malformed answer is asked again this many times
    excerpt_chars: int = 1000

    @property
    def queue_capacity(self) -> int:
        return self.queue_size or 2 * self.max_concurrent


@runtime_checkable
class LLMTask(Protocol):
    """What to ask and how to read the answer.

    Optional: request_options(item) -> dict of extra create() arguments (for example
    max_completion_tokens, temperature).
    """

    kind: str  # "convert" | "label"
    prompt_version: str

    def build_messages(self, item: WorkItem) -> list[dict]: ...  # may raise InvalidInput

    def response_format(self) -> dict: ...

    def parse(self, item: WorkItem, content: str) -> dict: ...  # raises InvalidOutput(msg)

    def estimate_tokens(self, item: WorkItem) -> int: ...


@runtime_checkable
class Limiter(Protocol):
    """The shared request/token budget of one endpoint.

    Optional: observe_headers(headers) to read x-ratelimit-* from every response.
    """

    async def acquire(self, tokens: int) -> None: ...

    def settle(self, estimated: int, actual: int) -> None: ...

    def slow_down(self, retry_after_s: float | None) -> None: ...


@runtime_checkable
class CallLedger(Protocol):
    """Calls paid for in advance: take() one before each call (False: none left yet),
    give_back() one that was taken but not used. The caller records what it hands out
    before the calls go (the worker writes it to the database), so a process killed
    with calls in flight has still counted them."""

    def take(self) -> bool: ...

    def give_back(self) -> None: ...


def make_client(endpoint: Endpoint, max_concurrent: int = 10) -> openai.AsyncOpenAI:
    """The SDK client for an endpoint: our timeout, no SDK retries, a pool sized to the run.

    The transport is aiohttp (the SDK's `openai[aiohttp]` option) when it is installed:
    it costs about a third less CPU per call than httpx, which is what bounds one
    process at a few hundred calls per second.
    """
    timeout = httpx2.Timeout(endpoint.timeout_s, connect=min(endpoint.timeout_s, 10.0))
    limits = httpx2.Limits(
        max_connections=max(10, max_concurrent),
        max_keepalive_connections=max(10, max_concurrent),
    )
    http_class = openai.DefaultAioHttpClient if _have_aiohttp() else openai.DefaultAsyncHttpxClient
    http_client = http_class(timeout=timeout, limits=limits, verify=_tls_context())
    if endpoint.api_version:
        # Azure OpenAI: the SDK's own client builds /openai/deployments/{model}/... URLs
        # and adds ?api-version=; the deployment name is the job's model.
        return openai.AsyncAzureOpenAI(
            api_key=endpoint.api_key,
            azure_endpoint=endpoint.base_url or "",
            api_version=endpoint.api_version,
            timeout=timeout,
            max_retries=0,
            http_client=http_client,
        )
    return openai.AsyncOpenAI(
        api_key=endpoint.api_key,
        base_url=endpoint.base_url,
        timeout=timeout,
        max_retries=0,
        http_client=http_client,
    )


def warm_up() -> None:
    """Pay the per-process costs of the first client now (a worker process at start)."""
    _tls_context()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS settings every client of this process shares (the SDK's defaults).

    Building them loads the CA bundle, about 40 ms of CPU: once per process instead of
    once per task, where it delayed every job's first call.
    """
    return httpx2.create_ssl_context()


def cached_prompt_tokens(usage: dict) -> int:
    """usage.prompt_tokens_details.cached_tokens (OpenAI's prompt cache), 0 when absent."""
    details = usage.get("prompt_tokens_details")
    if not isinstance(details, dict):
        return 0
    try:
        return max(0, int(details.get("cached_tokens") or 0))
    except (TypeError, ValueError):
        return 0


def _have_aiohttp() -> bool:
    """Whether openai's aiohttp transport can be used (the openai[aiohttp] extra)."""
    return importlib.util.find_spec("aiohttp") is not None


@dataclass
class _Progress:
    """What one item has cost so far; read when the item ends in any way."""

    api_calls: int = 0
    retries: int = 0
    tokens_cached: int = 0  # of tokens_in, served from the provider's prompt cache
    call_time_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    request_excerpt: str = ""
    response_excerpt: str = ""
    last_failure: Failure | None = field(default=None)
    unreachable_calls: int = 0  # calls that could not connect at all


class _Pool:
    """The workers and what one worker does with one item."""

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        task: LLMTask,
        config: EngineConfig,
        limiter: Limiter,
        client: openai.AsyncOpenAI,
        stop: asyncio.Event,
        log: Logger,
        on_abandoned: Callable[[Outcome], None] | None = None,
        ledger: CallLedger | None = None,
    ) -> None:
        self.ledger = ledger
        self.endpoint = endpoint
        self.task = task
        self.config = config
        self.limiter = limiter
        self.client = client
        self.stop = stop
        self.log = log
        self.on_abandoned = on_abandoned
        self.rng = random.Random()
        self.observe_headers = getattr(limiter, "observe_headers", None)
        self.request_options = getattr(task, "request_options", None)
        self.secrets = (endpoint.api_key,)
        self._stopped: asyncio.Future | None = None  # _stop_waiter

    async def run(
        self,
        get: Callable[[], Awaitable[WorkItem | None]],
        put: Callable[[Outcome], Awaitable[None]],
    ) -> None:
        workers = [
            asyncio.create_task(self._worker(get, put), name=f"engine-worker-{n}")
            for n in range(self.config.max_concurrent)
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if self._stopped is not None:
                self._stopped.cancel()
                await asyncio.gather(self._stopped, return_exceptions=True)

    async def _worker(self, get, put) -> None:
        while (item := await get()) is not None:
            outcome = await self.process(item)
            try:
                await put(outcome)
            except asyncio.CancelledError:
                if self.on_abandoned is not None:  # finished, but nobody took it
                    self.on_abandoned(outcome)
                raise

    async def process(self, item: WorkItem) -> Outcome:
        progress = _Progress()
        try:
            return await self._process(item, progress)
        except asyncio.CancelledError:
            if self.on_abandoned is not None:
                message = (
                    f"abandoned in flight after {progress.api_calls} API call(s)"
                    if progress.api_calls
                    else "cancelled before any API call"
                )
                self.on_abandoned(self._outcome(item, progress, ErrorCategory.CANCELLED, message))
            raise
        except Exception as exc:  # a bug must cost one item, not the whole pool
            self.log.exception("%s: internal error", _where(item))
            message = redact(f"internal error: {type(exc).__name__}: {exc}", self.secrets)
            return self._outcome(item, progress, ErrorCategory.API_ERROR, message)

    async def _process(self, item: WorkItem, progress: _Progress) -> Outcome:
        if self.stop.is_set():
            return self._outcome(
                item, progress, ErrorCategory.CANCELLED, "cancelled before any API call"
            )
        try:
            messages = self.task.build_messages(item)
            response_format = self.task.response_format()
            estimate = max(1, int(self.task.estimate_tokens(item)))
            options = self.request_options(item) if self.request_options else {}
            options = adapt_options(options, self.endpoint)
        except InvalidInput as exc:
            return self._outcome(item, progress, ErrorCategory.INVALID_INPUT, str(exc))
        progress.request_excerpt = self._excerpt(str(messages[-1].get("content", "")))
        invalid_outputs = 0

        while True:
            if not await self._take_call():
                return self._cancelled(item, progress)
            if not await self._acquire(estimate):
                if self.ledger is not None:
                    self.ledger.give_back()
                return self._cancelled(item, progress)
            progress.api_calls += 1
            failure, value = await self._attempt(
                item, messages, response_format, options, estimate, progress
            )
            if failure is None:
                return self._outcome(item, progress, value=value)
            if failure.category == ErrorCategory.INVALID_OUTPUT and failure.retryable:
                invalid_outputs += 1
                if invalid_outputs > self.config.invalid_output_retries:
                    failure = _not_retryable(failure)
            progress.last_failure = failure
            if not failure.retryable or progress.api_calls >= self.config.max_attempts:
                break
            if (failure.retry_after_s or 0) > self.config.backoff_max_s:
                failure = _not_retryable(
                    failure,
                    f"{failure.message} (the server asked to wait "
                    f"{failure.retry_after_s:.0f} s, more than the retry budget allows)",
                )
                progress.last_failure = failure
                break
            delay = backoff_delay(
                progress.api_calls,
                base_s=self.config.backoff_base_s,
                max_s=self.config.backoff_max_s,
                retry_after_s=failure.retry_after_s,
                rng=self.rng,
            )
            self.log.info(
                "%s: attempt %d/%d failed (%s): %s; retrying in %.2f s",
                _where(item),
                progress.api_calls,
                self.config.max_attempts,
                failure.category,
                failure.message,
                delay,
            )
            progress.retries += 1
            if await self._sleep_unless_stopped(delay):
                return self._cancelled(item, progress)

        self.log.warning(
            "%s: failed after %d call(s) (%s): %s",
            _where(item),
            progress.api_calls,
            failure.category,
            failure.message,
        )
        return self._outcome(item, progress, failure.category, failure.message, failure=failure)

    async def _attempt(
        self,
        item: WorkItem,
        messages: list[dict],
        response_format: dict,
        options: dict,
        estimate: int,
        progress: _Progress,
    ) -> tuple[Failure | None, dict | None]:
        started = time.monotonic()
        try:
            # The SDK's generic post() rather than chat.completions.create(): the typed
            # method deep-transforms every request and builds a pydantic model of every
            # response, about 1 ms of CPU per call, a quarter of a core at 250 calls/s.
            # Errors, auth, timeouts and the base URL handling are the same SDK code.
            response = await self.client.post(
                "/chat/completions",
                cast_to=httpx2.Response,
                body={
                    "model": self.endpoint.model,
                    "messages": messages,
                    "response_format": response_format,
                    **options,
                },
            )
        except asyncio.CancelledError:
            progress.call_time_s += time.monotonic() - started
            raise
        except Exception as exc:
            progress.call_time_s += time.monotonic() - started
            failure = classify(exc)
            failure = dataclasses.replace(
                failure,
                message=redact(failure.message, self.secrets),
                response_excerpt=redact(failure.response_excerpt, self.secrets),
            )
            if failure.unreachable:
                progress.unreachable_calls += 1
            progress.response_excerpt = self._excerpt(failure.response_excerpt)
            self.limiter.settle(estimate, 0)
            error_response = getattr(exc, "response", None)
            if self.observe_headers and error_response is not None:
                self.observe_headers(error_response.headers)
            if failure.rate_limited:
                self.limiter.slow_down(failure.retry_after_s)
            return failure, None

        progress.call_time_s += time.monotonic() - started
        if self.observe_headers:
            self.observe_headers(response.headers)
        try:
            completion = response.json()
        except ValueError:
            self.limiter.settle(estimate, estimate)
            progress.response_excerpt = self._excerpt(response.text)
            return Failure(ErrorCategory.INVALID_OUTPUT, "the response is not JSON", True), None
        usage = completion.get("usage") if isinstance(completion, dict) else None
        if isinstance(usage, dict):
            used_in = int(usage.get("prompt_tokens") or 0)
            used_out = int(usage.get("completion_tokens") or 0)
            progress.tokens_in += used_in
            progress.tokens_out += used_out
            progress.tokens_cached += cached_prompt_tokens(usage)
            self.limiter.settle(estimate, used_in + used_out)
        else:
            self.limiter.settle(estimate, estimate)

        content, unusable = read_choice(completion)
        progress.response_excerpt = self._excerpt(content or "")
        if unusable is not None:
            return unusable, None
        assert content is not None  # no failure: a text (read_choice)
        try:
            return None, self.task.parse(item, content)
        except InvalidOutput as exc:
            message = redact(str(exc), self.secrets)
            return Failure(ErrorCategory.INVALID_OUTPUT, message, retryable=True), None

    async def _take_call(self) -> bool:
        """Wait for a paid-in-advance call from the ledger, unless stopped. True: go."""
        if self.ledger is None:
            return True
        while not self.ledger.take():
            if self.stop.is_set():
                return False
            await asyncio.sleep(0.005)
        return True

    async def _acquire(self, estimate: int) -> bool:
        """Wait for the limiter, unless the stop event comes first. True: go ahead."""
        if self.stop.is_set():
            return False
        acquire = asyncio.ensure_future(self.limiter.acquire(estimate))
        try:
            await asyncio.wait({acquire, self._stop_waiter()}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not acquire.done():
                acquire.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
        if acquire.cancelled():
            return False
        acquire.result()  # a limiter error is a bug worth seeing
        if self.stop.is_set():
            self.limiter.settle(estimate, 0)
            return False
        return True

    def _stop_waiter(self) -> asyncio.Future:
        """One future for the pool that ends when stop is set: every call waits on it
        beside the limiter (a task of its own per call was made and cancelled)."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self.stop.wait())
        return self._stopped

    async def _sleep_unless_stopped(self, delay: float) -> bool:
        """Sleep for delay seconds; True if the stop event was set meanwhile."""
        if self.stop.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=delay)
        return self.stop.is_set()

    def _cancelled(self, item: WorkItem, progress: _Progress) -> Outcome:
        message = "cancelled before any API call"
        if progress.last_failure is not None:
            message = (
                f"cancelled while waiting to retry; last error: {progress.last_failure.message}"
            )
        return self._outcome(item, progress, ErrorCategory.CANCELLED, message)

    def _outcome(
        self,
        item: WorkItem,
        progress: _Progress,
        category: ErrorCategory | None = None,
        message: str = "",
        value: dict | None = None,
        failure: Failure | None = None,
    ) -> Outcome:
        return Outcome(
            item_id=item.item_id,
            ok=category is None,
            value=value,
            error_category=category,
            error_message=message,
            http_status=failure.status if failure else None,
            refused=failure.refused if failure else False,
            unreachable=category is not None
            and progress.api_calls > 0
            and progress.unreachable_calls == progress.api_calls,
            latency_s=round(progress.call_time_s, 4),
            tokens_in=progress.tokens_in,
            tokens_out=progress.tokens_out,
            tokens_cached=progress.tokens_cached,
            api_calls=progress.api_calls,
            retries=progress.retries,
            request_excerpt=progress.request_excerpt,
            response_excerpt=progress.response_excerpt,
        )

    def _excerpt(self, text: str) -> str:
        return redact(text[: self.config.excerpt_chars], self.secrets)


def _where(item: WorkItem) -> str:
    return f"batch {item.batch_no} item {item.item_id} ({item.ref})"


def _not_retryable(failure: Failure, message: str | None = None) -> Failure:
    return dataclasses.replace(failure, message=message or failure.message, retryable=False)


def read_choice(completion: object) -> tuple[str | None, Failure | None]:
    """The first choice's content from a chat.completion body, or why there is none."""
    choices = completion.get("choices") if isinstance(completion, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return None, Failure(ErrorCategory.INVALID_OUTPUT, "the answer has no choices", True)
    choice = choices[0]
    message = choice.get("message") or {}
    content = message.get("content")
    if message.get("refusal"):
        return None, Failure(
            ErrorCategory.INVALID_OUTPUT, f"the model refused: {message['refusal']}", False
        )
    if choice.get("finish_reason") == "length":
        return content, Failure(
            ErrorCategory.INVALID_OUTPUT, "the answer was cut off at the output token limit", False
        )
    if not content or not isinstance(content, str):
        return None, Failure(ErrorCategory.INVALID_OUTPUT, "the answer is empty", True)
    return content, None


# -- run_items: the async entry point ------------------------------------------------------

_END = None


async def run_items(
    items: AsyncIterable[WorkItem] | Iterable[WorkItem],
    *,
    endpoint: Endpoint,
    task: LLMTask,
    config: EngineConfig,
    limiter: Limiter | None = None,
    stop: asyncio.Event | None = None,
    client: openai.AsyncOpenAI | None = None,
    log: Logger | None = None,
    on_abandoned: Callable[[Outcome], None] | None = None,
) -> AsyncIterator[Outcome]:
    """Run every item through the endpoint; yield outcomes as they finish.

    Memory is O(config.queue_capacity + max_concurrent): items are pulled from the
    iterable only as workers free up, and outcomes wait in a bounded queue for the
    caller. When stop is set, no new call starts: queued items and items waiting to
    retry come out as cancelled, calls already in flight finish. Closing the generator
    early abandons in-flight calls (on_abandoned gets a cancelled outcome for each).

    Outcome.latency_s is the time spent in API calls (all attempts), not the time the
    item waited in the queue, for the limiter or between retries.
    """
    stop = stop or asyncio.Event()
    limiter = limiter or TokenBucketLimiter(endpoint.rpm, endpoint.tpm)
    own_client = client is None
    client = client or make_client(endpoint, config.max_concurrent)
    pool = _Pool(
        endpoint=endpoint,
        task=task,
        config=config,
        limiter=limiter,
        client=client,
        stop=stop,
        log=log or default_log,
        on_abandoned=on_abandoned,
    )
    inbox: asyncio.Queue[WorkItem | None] = asyncio.Queue(maxsize=config.queue_capacity)
    outbox: asyncio.Queue[Outcome | None] = asyncio.Queue(maxsize=config.queue_capacity)

    async def feed() -> None:
        try:
            # Every item taken from the input comes out as an outcome (a cancelled one
            # once stop is set), so the caller can account for all it handed over.
            if isinstance(items, AsyncIterable):
                async for item in items:
                    await inbox.put(item)
                    if stop.is_set():
                        break
            else:
                for item in items:
                    await inbox.put(item)
                    if stop.is_set():
                        break
        except asyncio.CancelledError:
            raise
        except BaseException:
            # The input failed: let the workers finish what they have, then the caller
            # gets the error from `await feeder` below.
            await inbox.put(_END)
            raise
        # One end marker is enough: a worker that sees it puts it back for the next.
        await inbox.put(_END)

    async def get() -> WorkItem | None:
        item = await inbox.get()
        if item is _END:
            inbox.put_nowait(_END)
        return item

    async def work() -> None:
        try:
            await pool.run(get, outbox.put)
        finally:
            await outbox.put(None)

    feeder = asyncio.create_task(feed(), name="engine-feeder")
    workers = asyncio.create_task(work(), name="engine-pool")
    try:
        while (outcome := await outbox.get()) is not None:
            yield outcome
        await workers
        await feeder
    finally:
        for running in (feeder, workers):
            running.cancel()
        await asyncio.gather(feeder, workers, return_exceptions=True)
        if own_client:
            await client.close()


# -- BatchRunner: the sync facade -----------------------------------------------------------


class BatchRunner:
    """The engine on its own event loop in a background thread, driven from sync code.

    submit() blocks while the bounded input queue is full; poll() returns outcomes
    finished since the last poll; finish() waits for everything submitted; cancel()
    stops new calls at once and abandons the ones in flight. Item ids must be unique
    among the items submitted to one runner. With a ledger, every call waits for one
    paid-in-advance call from it (CallLedger).
    """

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        task: LLMTask,
        config: EngineConfig | None = None,
        limiter: Limiter | None = None,
        client_factory: Callable[[], openai.AsyncOpenAI] | None = None,
        log: Logger | None = None,
        ledger: CallLedger | None = None,
    ) -> None:
        self.ledger = ledger
        self.endpoint = endpoint
        self.task = task
        self.config = config or EngineConfig()
        self.limiter = limiter
        self.client_factory = client_factory
        self.log = log or default_log
        self._slots = threading.BoundedSemaphore(self.config.queue_capacity)
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        # Made on the engine's thread by _main, before start() returns.
        self._loop: asyncio.AbstractEventLoop
        self._inbox: asyncio.Queue[WorkItem | None]
        self._stop: asyncio.Event
        self._work: asyncio.Task
        self._closed = False
        self._error: BaseException | None = None
        self._limiter_in_use: Limiter | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> BatchRunner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.cancel()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("a BatchRunner starts once")
        self._thread = threading.Thread(target=self._thread_main, name="engine-loop", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError("the engine failed to start") from self._error

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller by submit/finish
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._stop = asyncio.Event()
        limiter = self.limiter or TokenBucketLimiter(self.endpoint.rpm, self.endpoint.tpm)
        self._limiter_in_use = limiter
        factory = self.client_factory or (
            lambda: make_client(self.endpoint, self.config.max_concurrent)
        )
        client = factory()
        pool = _Pool(
            endpoint=self.endpoint,
            task=self.task,
            config=self.config,
            limiter=limiter,
            client=client,
            stop=self._stop,
            log=self.log,
            on_abandoned=self._deliver,
            ledger=self.ledger,
        )
        self._work = asyncio.create_task(pool.run(self._get, self._put))
        self._ready.set()
        try:
            await self._work
        except asyncio.CancelledError:
            pass
        finally:
            await client.close()

    async def _get(self) -> WorkItem | None:
        item = await self._inbox.get()
        if item is _END:
            self._inbox.put_nowait(_END)
            return None
        self._slots.release()
        return item

    async def _put(self, outcome: Outcome) -> None:
        self._deliver(outcome)

    def _deliver(self, outcome: Outcome) -> None:
        # Queued before it stops counting as in flight: in_flight == 0 means that every
        # outcome can be polled.
        self._outcomes.put(outcome)
        with self._lock:
            self._pending.discard(outcome.item_id)

    # -- the sync API -------------------------------------------------------------------

    def submit(self, item: WorkItem, timeout: float | None = None) -> bool:
        """Queue an item; False if the queue stayed full for timeout seconds."""
        if self._closed or self._thread is None:
            raise RuntimeError("the runner is not accepting items")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.2 if deadline is None else min(0.2, max(0.0, deadline - time.monotonic()))
            if self._slots.acquire(timeout=wait):
                break
            if not self._thread.is_alive():
                raise RuntimeError("the engine stopped") from self._error
            if deadline is not None and time.monotonic() >= deadline:
                return False
        with self._lock:
            self._pending.add(item.item_id)
        self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)
        return True

    def poll(self, timeout: float = 0.0) -> list[Outcome]:
        """Outcomes finished since the last poll (waits up to timeout for the first)."""
        outcomes: list[Outcome] = []
        try:
            outcomes.append(
                self._outcomes.get(timeout=timeout) if timeout > 0 else self._outcomes.get_nowait()
            )
        except queue.Empty:
            return outcomes
        while True:
            try:
                outcomes.append(self._outcomes.get_nowait())
            except queue.Empty:
                return outcomes

    def finish(self, timeout: float | None = None) -> list[Outcome]:
        """No more input: wait for queued and in-flight items, return the remaining outcomes."""
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, _END)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("the engine did not finish in time")
        return self._drain()

    def cancel(self, abandon: bool = True) -> list[Outcome]:
        """Stop new calls at once; return finished outcomes plus cancelled ones for the rest.

        abandon=True drops in-flight calls (their outcomes say so); abandon=False lets
        them finish first.
        """
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._cancel_on_loop, abandon)
            self._thread.join()
        outcomes = self._drain()
        with self._lock:
            never_run, self._pending = sorted(self._pending), set()
        outcomes.extend(
            Outcome(
                item_id=item_id,
                ok=False,
                error_category=ErrorCategory.CANCELLED,
                error_message="cancelled before any API call",
            )
            for item_id in never_run
        )
        return outcomes

    def _cancel_on_loop(self, abandon: bool) -> None:
        self._stop.set()
        if abandon:
            self._work.cancel()
        else:
            self._inbox.put_nowait(_END)

    def _drain(self) -> list[Outcome]:
        return self.poll(0.0)

    @property
    def in_flight(self) -> int:
        """Items submitted whose outcome has not come out yet (queued or being called)."""
        with self._lock:
            return len(self._pending)

    @property
    def limiter_in_use(self) -> Limiter | None:
        """The limiter the pool paces itself with (a TokenBucketLimiter unless one was given)."""
        return self._limiter_in_use
