"""One request/token budget per endpoint, shared by every worker process and job.

Two qclusters on two machines that call the same endpoint must together stay under its
limits, so the count lives outside the process: in the RateLimitWindow table, or in
Redis when REDIS_URL is set. Time is cut into short windows (1 s by default) on the wall
clock, and each window gets an equal share of the per-minute limit, reduced so that any
60 s span, which touches at most 61 windows, stays under the limit. A process takes
small chunks of a window's budget with one conditional UPDATE (or one Lua script), and
hands them out to its workers without further round trips; what it does not use by the
end of the window is lost, which is why the chunks are small.

The ORM is only called from the limiter's own thread (one per limiter), never on the
event loop (DESIGN invariant 4). Clocks of the machines are assumed NTP-synchronised.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Protocol

import redis
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest

from conversions.engine.limiter import TokenBucketLimiter
from conversions.engine.types import Endpoint
from conversions.models import RateLimitWindow

log = logging.getLogger("conversions.ratelimit")

SAFETY = 0.99
MAX_CHUNK = 16
KEEP_WINDOWS_S = 600.0  # rows older than this are deleted now and then


class WindowStore(Protocol):
    """Where the per-window counts live. Sync; called from the limiter's thread only."""

    def reserve(
        self,
        key: str,
        window: int,
        requests: int,
        tokens: int,
        max_requests: int | None,
        max_tokens: int | None,
        oversize: bool,
    ) -> bool: ...

    def charge(self, key: str, window: int, tokens: int) -> None: ...

    def forget_before(self, key: str, window: int) -> None: ...

    def close(self) -> None: ...


class DatabaseWindowStore:
    """RateLimitWindow rows, one per (endpoint, window), updated conditionally."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s

    def _start(self, window: int) -> datetime:
        return datetime.fromtimestamp(window * self.window_s, tz=UTC)

    def reserve(self, key, window, requests, tokens, max_requests, max_tokens, oversize) -> bool:
        if max_requests is not None and requests > max_requests:
            return False
        if max_tokens is not None and tokens > max_tokens and not oversize:
            return False
        start = self._start(window)
        rows = RateLimitWindow.objects.filter(endpoint=key, window_start=start)
        if max_requests is not None:
            rows = rows.filter(requests__lte=max_requests - requests)
        if max_tokens is not None and tokens:
            fits = Q(tokens__lte=max_tokens - tokens)
            rows = rows.filter(fits | Q(tokens=0) if oversize else fits)
        for _ in range(2):
            if rows.update(requests=F("requests") + requests, tokens=F("tokens") + tokens):
                return True
            try:
                with transaction.atomic():
                    RateLimitWindow.objects.create(
                        endpoint=key, window_start=start, requests=requests, tokens=tokens
                    )
                return True
            except IntegrityError:
                continue  # the row exists: full, or just created by another process
        return False

    def charge(self, key, window, tokens) -> None:
        start = self._start(window)
        rows = RateLimitWindow.objects.filter(endpoint=key, window_start=start)
        if rows.update(tokens=Greatest(F("tokens") + tokens, Value(0))):
            return
        try:
            with transaction.atomic():
                RateLimitWindow.objects.create(
                    endpoint=key, window_start=start, requests=0, tokens=max(0, tokens)
                )
        except IntegrityError:
            rows.update(tokens=Greatest(F("tokens") + tokens, Value(0)))

    def forget_before(self, key, window) -> None:
        RateLimitWindow.objects.filter(endpoint=key, window_start__lt=self._start(window)).delete()

    def close(self) -> None:
        connection.close()


_RESERVE_LUA = """
local r = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
local t = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local n, tk = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_r, max_t, oversize = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
if max_r >= 0 and r + n > max_r then return 0 end
if max_t >= 0 and t + tk > max_t and not (oversize and t == 0) then return 0 end
redis.call('HINCRBY', KEYS[1], 'r', n)
redis.call('HINCRBY', KEYS[1], 't', tk)
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""

_CHARGE_LUA = """
local t = tonumber(redis.call('HGET', KEYS[1], 't') or '0') + tonumber(ARGV[1])
if t < 0 then t = 0 end
redis.call('HSET', KEYS[1], 't', t)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return t
"""


class RedisWindowStore:
    """One Redis hash per (endpoint, window), changed atomically by Lua scripts."""

    def __init__(self, url: str, window_s: float) -> None:
        self.client = redis.Redis.from_url(url)
        self.ttl = max(60, math.ceil(window_s * 120))
        self._reserve = self.client.register_script(_RESERVE_LUA)
        self._charge = self.client.register_script(_CHARGE_LUA)

    @staticmethod
    def _key(key: str, window: int) -> str:
        return f"mathconv:ratelimit:{key}:{window}"

    def reserve(self, key, window, requests, tokens, max_requests, max_tokens, oversize) -> bool:
        args = [
            requests,
            tokens,
            -1 if max_requests is None else max_requests,
            -1 if max_tokens is None else max_tokens,
            "1" if oversize else "0",
            self.ttl,
        ]
        return bool(self._reserve(keys=[self._key(key, window)], args=args))

    def charge(self, key, window, tokens) -> None:
        self._charge(keys=[self._key(key, window)], args=[tokens, self.ttl])

    def forget_before(self, key, window) -> None:
        pass  # keys expire by themselves

    def close(self) -> None:
        self.client.close()

    def counts(self, key: str, window: int) -> tuple[int, int]:
        values = self.client.hgetall(self._key(key, window))
        return int(values.get(b"r", 0)), int(values.get(b"t", 0))


def _share(rate: float, window: int) -> int:
    """Window `window`'s whole-number share of a fractional per-window rate."""
    return math.floor(rate * (window + 1)) - math.floor(rate * window)


class SharedRateLimiter:
    """The Limiter for an endpoint whose budget is shared between processes.

    rpm/tpm are the endpoint's limits per minute; period_s is the span the endpoint
    measures them over (60 s for OpenAI). In front of the shared budget sits an
    in-process TokenBucketLimiter without limits of its own: it holds the pool-wide
    pause on a 429 or on exhausted x-ratelimit-remaining-* headers, and the learned
    slower pace after a 429.

    settle() charges tokens used beyond the estimate to the current window; it does not
    give back tokens estimated but unused, because endpoints count the estimate (prompt
    plus max output) against the limit too.
    """

    def __init__(
        self,
        key: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        store: WindowStore | None = None,
        window_s: float = 1.0,
        period_s: float = 60.0,
        safety: float = SAFETY,
    ) -> None:
        if not rpm and not tpm:
            raise ValueError("a shared limiter needs rpm or tpm")
        self.key = endpoint_key_text(key)
        self.window_s = window_s
        self.store = store or DatabaseWindowStore(window_s)
        windows_per_period = period_s / window_s
        # Any span of one period touches windows_per_period + 1 windows.
        spread = windows_per_period + 1
        self.request_rate: float | None
        if rpm:
            limit = rpm * period_s / 60
            self.request_rate = max(limit * safety - 1, limit * 0.5) / spread
        else:
            self.request_rate = None
        self.token_rate = (tpm * period_s / 60) * safety / spread if tpm else None
        self.local = TokenBucketLimiter(period_s=period_s)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ratelimit")
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._window = -1
        self._requests_left = 0
        self._tokens_left = 0
        self._exhausted_window = -1
        self._debt = 0
        self._debt_lock = threading.Lock()
        self._flush_pending = False
        self._last_cleanup = 0
        self._closed = False
        # Counters for tests and logs.
        self.granted = 0
        self.last_window = -1  # the window the latest grant came from
        self.round_trips = 0
        self.reserved_requests = 0
        self.reserved_tokens = 0

    # -- budgets ------------------------------------------------------------------------

    def request_budget(self, window: int) -> int | None:
        return None if self.request_rate is None else _share(self.request_rate, window)

    def token_budget(self, window: int) -> int | None:
        return None if self.token_rate is None else _share(self.token_rate, window)

    def current_window(self) -> int:
        return math.floor(time.time() / self.window_s)

    # -- the Limiter protocol -----------------------------------------------------------

    async def acquire(self, tokens: int) -> None:
        await self.local.acquire(tokens)
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            # One lock per event loop: a limiter may outlive one BatchRunner's loop.
            self._lock, self._lock_loop = asyncio.Lock(), loop
        tokens = max(1, int(tokens))
        while True:
            window = self.current_window()
            if self._take(window, tokens):
                return
            async with self._lock:
                window = self.current_window()
                if self._take(window, tokens):
                    return
                if window != self._exhausted_window:
                    reserved = await loop.run_in_executor(
                        self._executor,
                        self._reserve_sync,
                        window,
                        tokens,
                        self._requests_left,
                        self._tokens_left,
                    )
                    if reserved is None:  # the store failed; it was logged
                        await asyncio.sleep(min(1.0, 2 * self.window_s))
                        continue
                    if reserved:
                        if window == self._window:
                            self._requests_left += reserved[0]
                            self._tokens_left += reserved[1]
                        continue
                    self._exhausted_window = window
            # Wait for the next window, spread a little so processes do not all call
            # the store in the same millisecond.
            next_start = (window + 1) * self.window_s
            delay = next_start - time.time() + random.uniform(0, self.window_s * 0.05)
            await asyncio.sleep(max(0.001, delay))

    def settle(self, estimated: int, actual: int) -> None:
        if actual <= estimated or self._closed:
            return
        with self._debt_lock:
            self._debt += actual - estimated
            flush = not self._flush_pending
            self._flush_pending = True
        if flush:  # rare (the estimate includes the output limit), so one write each
            self._executor.submit(self._flush_debt_sync)

    def slow_down(self, retry_after_s: float | None) -> None:
        self.local.slow_down(retry_after_s)

    def observe_headers(self, headers) -> None:
        self.local.observe_headers(headers)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.submit(self.store.close).result()
        self._executor.shutdown(wait=True)

    # -- internals ----------------------------------------------------------------------

    def _take(self, window: int, tokens: int) -> bool:
        """Use this process's reservation for the window, if it covers the request."""
        if window != self._window:
            self._window, self._requests_left, self._tokens_left = window, 0, 0
        if self.request_rate is not None and self._requests_left < 1:
            return False
        if self.token_rate is not None and self._tokens_left < tokens:
            return False
        self._requests_left -= 1
        self._tokens_left -= tokens
        self.granted += 1
        self.last_window = window
        return True

    def _reserve_sync(
        self, window: int, tokens: int, requests_left: int, tokens_left: int
    ) -> tuple[int, int] | tuple[()] | None:
        """Runs in the limiter's thread: reserve a chunk of this window's budget.

        Returns the (requests, tokens) reserved, enough for at least one request of
        `tokens`; () when the window is full; None when the store failed. The caller
        adds them to the local reservation on the loop's thread.
        """
        max_requests = self.request_budget(window)
        max_tokens = self.token_budget(window)
        chunk = MAX_CHUNK
        if self.request_rate is not None:
            chunk = max(1, min(MAX_CHUNK, int(self.request_rate // 4)))
        if self.token_rate is not None:
            chunk = max(1, min(chunk, int(self.token_rate // 4 // tokens)))
        need_requests = 0 if self.request_rate is None or requests_left >= 1 else 1
        need_tokens = 0 if self.token_rate is None else max(0, tokens - tokens_left)
        attempts = [(need_requests and chunk, need_tokens and max(need_tokens, chunk * tokens))]
        if chunk > 1 or attempts[0][1] != need_tokens:
            attempts.append((need_requests, need_tokens))
        try:
            close_old_connections()
            self._flush_debt(window)
            for requests, token_count in attempts:
                self.round_trips += 1
                oversize = requests <= 1 and token_count == need_tokens
                if self.store.reserve(
                    self.key, window, requests, token_count, max_requests, max_tokens, oversize
                ):
                    self.reserved_requests += requests
                    self.reserved_tokens += token_count
                    self._charge_oversize(window, token_count, max_tokens)
                    self._cleanup(window)
                    return requests, token_count
            return ()
        except Exception:
            log.exception("rate limit store failed for %s", self.key)
            connection.close()
            return None

    def _flush_debt(self, window: int) -> None:
        with self._debt_lock:
            debt, self._debt = self._debt, 0
            self._flush_pending = False
        if debt:
            self.store.charge(self.key, window, debt)

    def _flush_debt_sync(self) -> None:
        try:
            close_old_connections()
            self._flush_debt(self.current_window())
        except Exception:
            log.exception("rate limit store failed for %s", self.key)
            connection.close()

    def _charge_oversize(self, window: int, tokens: int, max_tokens: int | None) -> None:
        # A request bigger than a window's token budget went into an empty window; the
        # excess is spread over the following windows, so the minute still adds up.
        if max_tokens is None or tokens <= max_tokens:
            return
        excess = tokens - max_tokens
        self.store.charge(self.key, window, -excess)
        ahead = window + 1
        while excess > 0:
            part = min(excess, self.token_budget(ahead) or excess)
            self.store.charge(self.key, ahead, part)
            excess -= part
            ahead += 1

    def _cleanup(self, window: int) -> None:
        keep = math.ceil(KEEP_WINDOWS_S / self.window_s)
        if window - self._last_cleanup >= keep:
            self._last_cleanup = window
            self.store.forget_before(self.key, window - keep)


def endpoint_key_text(text: str) -> str:
    """A key that fits RateLimitWindow.endpoint (200 characters)."""
    if len(text) <= 200:
        return text
    return text[:150] + "#" + hashlib.sha256(text.encode()).hexdigest()[:32]


def endpoint_key(endpoint: Endpoint) -> str:
    """Which budget an endpoint draws from: the server and the model (limits are per model).

    A named endpoint (conversions.models.Endpoint) is keyed on its name, so two names for
    one URL (two keys, two quotas) keep two budgets.
    """
    if endpoint.name:
        return endpoint_key_text(f"endpoint:{endpoint.name}#{endpoint.model}")
    base = (endpoint.base_url or "https://api.openai.com/v1").rstrip("/")
    return endpoint_key_text(f"{base}#{endpoint.model}")


def endpoint_limiter(
    endpoint: Endpoint, *, window_s: float = 1.0, period_s: float = 60.0
) -> SharedRateLimiter | TokenBucketLimiter:
    """The Limiter for a job's endpoint: shared (DB or Redis) when it has rpm or tpm.

    Without limits there is nothing to share; the in-process limiter still pauses the
    pool on a 429. Call close() on a SharedRateLimiter when the job is done with it.
    """
    if not endpoint.rpm and not endpoint.tpm:
        return TokenBucketLimiter(period_s=period_s)
    redis_url = getattr(settings, "REDIS_URL", "")
    store: WindowStore = (
        RedisWindowStore(redis_url, window_s) if redis_url else DatabaseWindowStore(window_s)
    )
    return SharedRateLimiter(
        endpoint_key(endpoint),
        rpm=endpoint.rpm,
        tpm=endpoint.tpm,
        store=store,
        window_s=window_s,
        period_s=period_s,
    )
