"""In-process rate limiting: token buckets for requests/min and tokens/min, plus the
pool-wide brake that a 429 or an exhausted x-ratelimit-remaining-* header pulls.

One limiter is shared by all the workers of a pool, so when one request is told to
slow down, every worker slows down. The cross-process budget (several qclusters on
one endpoint) is conversions/ratelimit.py, which puts this limiter in front of it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping

log = logging.getLogger("conversions.engine")

# Safety margin below the configured limits, so clock skew between us and the server
# and a few milliseconds of scheduling jitter never push a window over.
SAFETY = 0.98

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """OpenAI's x-ratelimit-reset-* values: "1s", "6m0s", "20ms", "1h2m3.5s", or bare seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts:
        return None
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class Bucket:
    """A token bucket that lets callers go into debt: a negative level is the queue.

    take() returns how long the caller must wait for its share; callers are served in
    the order they asked, and nothing needs a lock because the event loop runs one
    coroutine at a time between awaits.
    """

    def __init__(self, capacity: float, rate_per_s: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate_per_s
        self.level = capacity
        self.stamp = now

    @classmethod
    def for_limit(cls, limit: float, period_s: float, now: float) -> Bucket:
        # A small burst (2 % of the limit, at least one request) and a refill rate low
        # enough that burst + refill over any period stays under the limit.
        capacity = max(1.0, min(limit * 0.02, limit / 2))
        rate = max(limit - capacity, 0.5) * SAFETY / period_s
        return cls(capacity, rate, now)

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, amount: float, now: float) -> float:
        self._refill(now)
        self.level -= amount
        return 0.0 if self.level >= 0 else -self.level / self.rate

    def give(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level = min(self.capacity, self.level + amount)

    def drain_burst(self, now: float) -> None:
        self._refill(now)
        self.level = min(self.level, 0.0)


class TokenBucketLimiter:
    """The Limiter of one process: rpm/tpm buckets, the pool brake, and a learned rate.

    rpm and tpm are the endpoint's limits per minute, measured by the endpoint over
    period_s (60 s for OpenAI; tests use a shorter period against a fake server that
    is configured the same way). The buckets pace requests a little below the limits;
    a log of what was sent in the last period is the hard line they never cross, even
    when a busy event loop wakes several paced requests at once. Without rpm the
    limiter still pauses the pool on a 429 and then learns a request rate from what
    went through before it (multiplicative decrease, slow increase).
    """

    cut_factor = 0.75
    recover_factor = 1.1
    default_pause_s = 1.0
    min_sample = 10
    max_pause_s = 60.0

    def __init__(
        self,
        rpm: int | None = None,
        tpm: int | None = None,
        *,
        period_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        now = clock()
        scale = period_s / 60.0
        self.requests = Bucket.for_limit(rpm * scale, period_s, now) if rpm else None
        self.tokens = Bucket.for_limit(tpm * scale, period_s, now) if tpm else None
        self._ceiling = self.requests.rate if self.requests else math.inf
        self._paused_until = 0.0
        self._last_cut = -math.inf
        self._last_raise = now
        self._admitted: deque[float] = deque()
        self.period_s = period_s
        self._request_limit = math.floor(rpm * scale) if rpm else None
        self._token_limit = math.floor(tpm * scale) if tpm else None
        self._sent: deque[tuple[float, int]] = deque()  # (time, tokens) within one period
        self._sent_tokens = 0
        # Counters for tests, logs and the benchmark.
        self.pauses = 0
        self.slowdowns = 0
        self.granted = 0

    # -- the Limiter protocol -----------------------------------------------------------

    async def acquire(self, tokens: int) -> None:
        while True:
            await self._wait_brake()
            now = self.clock()
            self._maybe_recover(now)
            wait = 0.0
            if self.requests:
                wait = self.requests.take(1, now)
            if self.tokens:
                wait = max(wait, self.tokens.take(tokens, now))
            if wait > 0:
                try:
                    await asyncio.sleep(wait)
                except asyncio.CancelledError:
                    self._give_back(tokens)
                    raise
            # The buckets plan slots; a busy loop can wake several planned slots at
            # once. The log of what was really sent holds the hard line: never more
            # than the limit in any period, counted at the time of sending.
            while (delay := self._log_wait(tokens)) > 0:
                await asyncio.sleep(delay)
            if self._paused_until > self.clock():
                continue  # paused while waiting: the slot is spent, queue up again
            now = self.clock()
            self._log_add(now, tokens)
            self._note_admitted(now)
            return

    def settle(self, estimated: int, actual: int) -> None:
        if not self.tokens or estimated == actual:
            return
        now = self.clock()
        if actual < estimated:
            self.tokens.give(estimated - actual, now)
        else:
            self.tokens.take(actual - estimated, now)

    def slow_down(self, retry_after_s: float | None) -> None:
        """A 429: pause every worker, and lower the request rate for a while."""
        now = self.clock()
        self.slowdowns += 1
        pause = self.default_pause_s if retry_after_s is None else retry_after_s
        self.pause(pause)
        # Many in-flight requests can come back 429 together; they are one signal.
        if now - self._last_cut < max(0.5, min(pause, 5.0)):
            return
        self._last_cut = now
        if self.requests is None:
            # Learn a pace only from enough traffic to measure one; a lone request
            # that met a 429 is served by the pause alone.
            if len(self._admitted) < self.min_sample:
                return
            rate = max(0.2, self._observed_rate(now) * self.cut_factor)
            self.requests = Bucket(1.0, rate, now)
            log.info("rate limited: pacing the pool at %.1f requests/s", rate)
        else:
            self.requests.rate = max(0.2, self.requests.rate * self.cut_factor)
            log.info("rate limited: pool rate lowered to %.1f requests/s", self.requests.rate)
        self.requests.drain_burst(now)

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """x-ratelimit-remaining-*/x-ratelimit-reset-*: stop before the server says 429."""
        # Read in the order that skips the most (every response comes here): the reset
        # is parsed only when the remaining budget is under the reserve.
        for kind in ("requests", "tokens"):
            remaining = _int_header(headers, f"x-ratelimit-remaining-{kind}")
            if remaining is None:
                continue
            limit = _int_header(headers, f"x-ratelimit-limit-{kind}") or 0
            reserve = max(1, int(limit * 0.01)) if kind == "requests" else max(1, limit // 100)
            if remaining >= reserve:
                continue
            reset_s = parse_reset(headers.get(f"x-ratelimit-reset-{kind}"))
            if reset_s is not None:
                self.pause(reset_s)

    # -- helpers ------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        seconds = min(max(0.0, seconds), self.max_pause_s)
        until = self.clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.clock())

    async def _wait_brake(self) -> None:
        while (delay := self._paused_until - self.clock()) > 0:
            await asyncio.sleep(delay)

    def _log_prune(self, now: float) -> None:
        sent = self._sent
        while sent and sent[0][0] <= now - self.period_s:
            self._sent_tokens -= sent.popleft()[1]

    def _log_wait(self, tokens: int) -> float:
        """Seconds until one more request of `tokens` fits in the last period's log."""
        if self._request_limit is None and self._token_limit is None:
            return 0.0
        now = self.clock()
        self._log_prune(now)
        sent = self._sent
        over_requests = self._request_limit is not None and len(sent) >= self._request_limit
        over_tokens = (
            self._token_limit is not None
            and sent
            and self._sent_tokens + tokens > self._token_limit
        )
        if not (over_requests or over_tokens):
            return 0.0
        return max(0.001, sent[0][0] + self.period_s - now)

    def _log_add(self, now: float, tokens: int) -> None:
        if self._request_limit is None and self._token_limit is None:
            return
        self._sent.append((now, tokens))
        self._sent_tokens += tokens

    def _give_back(self, tokens: int) -> None:
        now = self.clock()
        if self.requests:
            self.requests.give(1, now)
        if self.tokens:
            self.tokens.give(tokens, now)

    def _note_admitted(self, now: float) -> None:
        self.granted += 1
        self._admitted.append(now)
        while self._admitted and self._admitted[0] < now - 5.0:
            self._admitted.popleft()

    def _observed_rate(self, now: float) -> float:
        if not self._admitted:
            return 1.0
        span = max(1.0, now - self._admitted[0])
        return len(self._admitted) / span

    def _maybe_recover(self, now: float) -> None:
        # Additive-ish increase: after two quiet seconds, 10 % more per second, up to the
        # configured rate (or without bound for a learned one, which then stops binding).
        if self.requests is None or self.requests.rate >= self._ceiling:
            return
        if now - self._last_cut < 2.0 or now - self._last_raise < 1.0:
            return
        self._last_raise = now
        self.requests.rate = min(self._ceiling, self.requests.rate * self.recover_factor)
