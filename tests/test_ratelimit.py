"""The per-endpoint budget shared between processes: database (SQLite or PostgreSQL,
whichever DATABASE_URL picks) and Redis. Two limiter instances with their own threads
and connections stand for two worker processes."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from conversions.engine.limiter import TokenBucketLimiter
from conversions.engine.prompts import ConversionTask
from conversions.engine.runner import BatchRunner, EngineConfig
from conversions.engine.types import Endpoint, WorkItem
from conversions.models import RateLimitWindow
from conversions.ratelimit import (
    DatabaseWindowStore,
    RedisWindowStore,
    SharedRateLimiter,
    endpoint_key,
    endpoint_limiter,
)

REDIS_URL = "redis://127.0.0.1:6379/15"
WINDOW_S = 0.25


def redis_available() -> bool:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception:
        return False
    return True


def db_counts(key: str, window_s: float) -> dict[int, tuple[int, int]]:
    return {
        round(row.window_start.timestamp() / window_s): (row.requests, row.tokens)
        for row in RateLimitWindow.objects.filter(endpoint=key)
    }


@pytest.fixture(params=["database", "redis"])
def store_kind(request):
    if request.param == "redis" and not redis_available():
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    return request.param


def make_store(kind: str, window_s: float = WINDOW_S):
    return (
        DatabaseWindowStore(window_s)
        if kind == "database"
        else RedisWindowStore(REDIS_URL, window_s)
    )


def stored_counts(kind: str, key: str, windows) -> dict[int, tuple[int, int]]:
    if kind == "database":
        return db_counts(key, WINDOW_S)
    store = RedisWindowStore(REDIS_URL, WINDOW_S)
    try:
        return {window: store.counts(key, window) for window in windows}
    finally:
        store.close()


def grant_all(limiters, total: int, tokens: int = 10, workers_each: int = 3) -> Counter:
    """Acquire `total` grants from the limiters together; count grants per (window)."""
    per_window: Counter = Counter()
    per_limiter: Counter = Counter()
    remaining = [total]

    async def worker(index: int, limiter: SharedRateLimiter) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await limiter.acquire(tokens)
            per_window[limiter.last_window] += 1
            per_limiter[index] += 1

    async def main() -> None:
        await asyncio.gather(
            *(
                worker(index, limiter)
                for index, limiter in enumerate(limiters)
                for _ in range(workers_each)
            )
        )

    asyncio.run(main())
    assert all(per_limiter[index] > 0 for index in range(len(limiters)))
    return per_window


@pytest.mark.django_db(transaction=True)
def test_two_processes_stay_within_one_request_budget(store_kind):
    key = f"test-{uuid.uuid4().hex[:10]}"
    limiters = [
        SharedRateLimiter(key, rpm=2400, store=make_store(store_kind), window_s=WINDOW_S)
        for _ in range(2)
    ]
    try:
        per_window = grant_all(limiters, total=70)
    finally:
        for limiter in limiters:
            limiter.close()

    budget = limiters[0].request_budget
    stored = stored_counts(store_kind, key, per_window)
    assert sum(per_window.values()) == 70
    for window, granted in per_window.items():
        assert granted <= budget(window), (window, granted, budget(window))
        assert granted <= stored[window][0] <= budget(window)
    # The limit was what held the workers back: some window was filled to its budget.
    assert any(stored[window][0] == budget(window) for window in per_window)
    # Chunked reservations: fewer store round trips than grants.
    assert sum(limiter.round_trips for limiter in limiters) < 70


@pytest.mark.django_db(transaction=True)
def test_token_budget_and_a_request_bigger_than_one_window(store_kind):
    key = f"test-{uuid.uuid4().hex[:10]}"
    limiter = SharedRateLimiter(key, tpm=24_000, store=make_store(store_kind), window_s=WINDOW_S)
    try:
        per_window = grant_all([limiter], total=12, tokens=30, workers_each=2)

        async def big_then_small() -> tuple[int, int]:
            await limiter.acquire(250)  # more than a window's ~98 tokens
            big = limiter.last_window
            await limiter.acquire(30)
            return big, limiter.last_window

        first_big, after = asyncio.run(big_then_small())
    finally:
        limiter.close()

    token_budget = limiter.token_budget
    for window, granted in per_window.items():
        assert granted * 30 <= token_budget(window)
    # The excess of the big request was charged to the windows after it.
    assert after >= first_big + 2
    stored = stored_counts(store_kind, key, range(first_big, after + 1))
    assert stored[first_big + 1][1] >= token_budget(first_big + 1)
    assert sum(stored[w][1] for w in range(first_big, after + 1)) == 250 + 30


@pytest.mark.django_db(transaction=True)
def test_settle_charges_tokens_beyond_the_estimate():
    key = f"test-{uuid.uuid4().hex[:10]}"
    limiter = SharedRateLimiter(key, tpm=600_000, store=DatabaseWindowStore(1.0), window_s=1.0)
    try:
        asyncio.run(limiter.acquire(100))
        limiter.settle(estimated=100, actual=400)  # 300 more than reserved
        limiter.settle(estimated=100, actual=50)  # unused tokens are not given back
    finally:
        limiter.close()  # waits for the limiter's thread to write
    stored = sum(tokens for _, tokens in db_counts(key, 1.0).values())
    assert stored == limiter.reserved_tokens + 300


def test_endpoint_limiter_picks_its_store(settings):
    plain = Endpoint(base_url="http://x/v1", api_key="k", model="m")
    assert isinstance(endpoint_limiter(plain), TokenBucketLimiter)

    limited = Endpoint(base_url="http://x/v1/", api_key="k", model="m", rpm=100)
    settings.REDIS_URL = ""
    db_limiter = endpoint_limiter(limited)
    assert isinstance(db_limiter.store, DatabaseWindowStore)
    assert db_limiter.key == endpoint_key(limited) == "http://x/v1#m"
    db_limiter.close()
    if redis_available():
        settings.REDIS_URL = REDIS_URL
        redis_limiter = endpoint_limiter(limited)
        assert isinstance(redis_limiter.store, RedisWindowStore)
        redis_limiter.close()


@pytest.mark.django_db(transaction=True)
def test_old_windows_are_forgotten():
    store = DatabaseWindowStore(1.0)
    for window in (100, 200):
        assert store.reserve("k", window, 1, 0, 5, None, False)
    store.forget_before("k", 150)
    assert list(RateLimitWindow.objects.values_list("window_start", flat=True)) == [
        datetime.fromtimestamp(200, tz=UTC)
    ]


@pytest.mark.django_db(transaction=True)
def test_two_runners_sharing_the_database_budget_stay_under_the_servers_limit(fake_openai):
    """End to end: two engines, one DB budget, a server that allows 20 requests a second."""
    fake_openai.configure(rpm=1200, window=1.0, latency=0.01)
    endpoint = Endpoint(
        base_url=fake_openai.base_url, api_key="test-key", model="gpt-4.1-mini", rpm=1200
    )
    key = f"test-{uuid.uuid4().hex[:10]}"
    config = EngineConfig(max_concurrent=10, max_attempts=10, backoff_base_s=0.05)
    limiters = [SharedRateLimiter(key, rpm=1200, period_s=1.0, window_s=WINDOW_S) for _ in range(2)]
    runners = [
        BatchRunner(endpoint=endpoint, task=ConversionTask(), config=config, limiter=limiter)
        for limiter in limiters
    ]
    outcomes = []
    try:
        for runner in runners:
            runner.start()
        for n in range(40):
            mathml = f"<math><mn>{n}</mn></math>"
            assert runners[n % 2].submit(WorkItem(item_id=n, ref=str(n), mathml=mathml), 10)
        for runner in runners:
            outcomes += runner.finish()
    finally:
        for limiter in limiters:
            limiter.close()
    assert len(outcomes) == 40 and all(o.ok for o in outcomes)
    stats = fake_openai.stats()
    assert stats["rate_limited"] == 0
    assert stats["requests"] == 40
    assert all(limiter.granted > 0 for limiter in limiters)
