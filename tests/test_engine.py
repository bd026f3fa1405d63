"""The async engine over real HTTP against the fake server: no database, no mocks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import socket
import time

import pytest

from conversions.engine.limiter import TokenBucketLimiter, parse_reset
from conversions.engine.prompts import ConversionTask, extract_block
from conversions.engine.redact import redact
from conversions.engine.retry import backoff_delay, retry_after_from_headers
from conversions.engine.runner import BatchRunner, EngineConfig, run_items
from conversions.engine.types import Endpoint, ErrorCategory, Outcome, WorkItem
from mathconv_dev.fakeopenai import expected_latex

KEY = "sk-test-0123456789abcdef"
FAST = EngineConfig(max_concurrent=4, max_attempts=4, backoff_base_s=0.01, backoff_max_s=1.0)


def endpoint(server, *, timeout_s: float = 10.0, model: str = "gpt-4.1-mini", **kw) -> Endpoint:
    return Endpoint(base_url=server.base_url, api_key=KEY, model=model, timeout_s=timeout_s, **kw)


def formula(n: int, directive: str = "") -> str:
    extra = f"<mtext>{directive}</mtext>" if directive else ""
    return f"<math><mfrac><mn>{n}</mn><mi>x</mi></mfrac>{extra}</math>"


def items(count: int, directive: str = "", start: int = 0) -> list[WorkItem]:
    return [
        WorkItem(item_id=n, ref=f"Q{n}", mathml=formula(n, directive), batch_no=1)
        for n in range(start, start + count)
    ]


def run(work, server=None, *, ep: Endpoint | None = None, config=FAST, task=None, **kw):
    async def collect() -> list[Outcome]:
        return [
            outcome
            async for outcome in run_items(
                work,
                endpoint=ep or endpoint(server),
                task=task or ConversionTask(),
                config=config,
                **kw,
            )
        ]

    return asyncio.run(collect())


def by_id(outcomes: list[Outcome]) -> dict[int, Outcome]:
    return {outcome.item_id: outcome for outcome in outcomes}


# -- results ----------------------------------------------------------------------------------


def test_converts_every_item_once_with_usage(fake_openai):
    work = items(12)
    outcomes = run(work, fake_openai)
    assert sorted(by_id(outcomes)) == list(range(12))
    stats = fake_openai.stats()
    for item in work:
        outcome = by_id(outcomes)[item.item_id]
        assert outcome.ok, outcome
        assert outcome.value == {"latex": expected_latex(item.mathml)}
        assert (outcome.api_calls, outcome.retries) == (1, 0)
        assert outcome.tokens_in > 0 and outcome.tokens_out > 0
        assert "<<<MATHML" in outcome.request_excerpt
        assert fake_openai.count(item.mathml, stats) == 1
    assert stats["requests"] == 12


def test_prompt_markers_and_hint():
    item = WorkItem(item_id=1, ref="a", mathml="<math><mn>1</mn></math>", hint="1")
    user = ConversionTask().build_messages(item)[-1]["content"]
    assert extract_block("MATHML", user) == item.mathml
    assert extract_block("HINT", user) == "1"
    assert ConversionTask().parse(item, '{"latex": "$x^2$"}') == {"latex": "x^2"}


def test_empty_input_is_invalid_input_without_a_call(fake_openai):
    outcomes = run([WorkItem(item_id=1, ref="empty", mathml="  ")], fake_openai)
    assert outcomes[0].error_category == ErrorCategory.INVALID_INPUT
    assert outcomes[0].api_calls == 0
    assert fake_openai.stats()["requests"] == 0


# -- retries ----------------------------------------------------------------------------------


def test_a_forced_429_is_retried(fake_openai):
    fake_openai.configure(retry_after=0.1)
    work = items(1, "fake:status=429*2")
    (outcome,) = run(work, fake_openai)
    assert outcome.ok, outcome
    assert (outcome.api_calls, outcome.retries) == (3, 2)
    assert fake_openai.count(work[0].mathml) == 3


def test_a_429_is_retried_only_after_the_retry_after_the_server_gave(fake_openai):
    # One request per sliding 2 s, and no x-ratelimit-* headers to pace by: of two items
    # sent together, one is answered and the other refused with a retry-after of up to
    # 2 s. A retry before that time is refused again, since the window is still full;
    # one after it is answered. Backoff alone (base 0.01 s) or the pool's default pause
    # (1 s) would come back too early. So one 429 and three calls in all prove the wait.
    fake_openai.configure(rpm=30, window=2.0, ratelimit_headers=False)
    config = dataclasses.replace(FAST, backoff_max_s=5.0)  # a 2 s wait is within budget
    outcomes = run(items(2), fake_openai, config=config)
    assert all(outcome.ok for outcome in outcomes), outcomes
    assert sorted(outcome.api_calls for outcome in outcomes) == [1, 2]
    stats = fake_openai.stats()
    assert (stats["requests"], stats["rate_limited"], stats["ok"]) == (3, 1, 2)


def test_5xx_is_retried_until_it_succeeds(fake_openai):
    work = items(1, "fake:status=503*2")
    (outcome,) = run(work, fake_openai)
    assert outcome.ok and outcome.api_calls == 3
    assert fake_openai.count(work[0].mathml) == 3


def test_retries_stop_at_max_attempts(fake_openai):
    work = items(1, "fake:status=500")
    (outcome,) = run(work, fake_openai, config=EngineConfig(max_attempts=3, backoff_base_s=0.01))
    assert outcome.error_category == ErrorCategory.API_ERROR
    assert "HTTP 500" in outcome.error_message
    assert (outcome.api_calls, outcome.retries) == (3, 2)
    assert fake_openai.count(work[0].mathml) == 3


def test_random_server_errors_cost_exactly_the_calls_reported(fake_openai):
    fake_openai.configure(error_rate=0.3, seed=5)
    work = items(30)
    outcomes = run(
        work,
        fake_openai,
        config=EngineConfig(max_concurrent=8, max_attempts=10, backoff_base_s=0.01),
    )
    assert all(outcome.ok for outcome in outcomes)
    stats = fake_openai.stats()
    assert stats["errors"] > 0
    assert stats["errors"] == sum(outcome.api_calls for outcome in outcomes) - 30
    for item in work:
        assert fake_openai.count(item.mathml, stats) == by_id(outcomes)[item.item_id].api_calls


def test_400_is_not_retried(fake_openai):
    work = items(1, "fake:status=400")
    (outcome,) = run(work, fake_openai)
    assert outcome.error_category == ErrorCategory.API_ERROR
    assert outcome.api_calls == 1 and outcome.retries == 0
    assert "HTTP 400" in outcome.error_message
    assert fake_openai.count(work[0].mathml) == 1


class LooseSchemaTask(ConversionTask):
    def response_format(self) -> dict:
        spec = super().response_format()
        del spec["json_schema"]["schema"]["additionalProperties"]
        return spec


def test_a_rejected_request_and_an_unknown_model_are_not_retried(fake_openai):
    (bad_schema,) = run(items(1), fake_openai, task=LooseSchemaTask())
    assert bad_schema.api_calls == 1 and "additionalProperties" in bad_schema.error_message
    (no_model,) = run(items(1, start=1), ep=endpoint(fake_openai, model="gpt-0-retired"))
    assert no_model.api_calls == 1 and "model_not_found" in no_model.error_message
    stats = fake_openai.stats()
    assert stats["bad_requests"] == 2 and stats["requests"] == 0


def test_timeouts_are_classified_and_retried(fake_openai):
    ep = endpoint(fake_openai, timeout_s=0.3)
    config = EngineConfig(max_concurrent=2, max_attempts=2, backoff_base_s=0.01)
    once = items(1, "fake:hang*1")
    always = items(1, "fake:hang", start=1)
    outcomes = by_id(run(once + always, ep=ep, config=config))
    assert outcomes[0].ok and outcomes[0].api_calls == 2
    assert outcomes[1].error_category == ErrorCategory.TIMEOUT
    assert outcomes[1].api_calls == 2
    assert not outcomes[1].unreachable  # it connected: a slow endpoint is not a gone one
    assert fake_openai.stats()["hangs"] == 3


def test_connection_errors_are_retried_and_reported():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ep = Endpoint(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, model="m")
    (outcome,) = run(items(1), ep=ep, config=EngineConfig(max_attempts=2, backoff_base_s=0.01))
    assert outcome.error_category == ErrorCategory.API_ERROR
    assert outcome.error_message.startswith("could not connect: ConnectionRefusedError")
    assert outcome.api_calls == 2
    assert outcome.unreachable  # every call failed to connect: the endpoint, not the item


def test_malformed_output_is_invalid_output_after_one_retry(fake_openai):
    once = items(1, "fake:garbage*1")
    always = items(1, "fake:garbage", start=1)
    outcomes = by_id(
        run(once + always, fake_openai, config=EngineConfig(max_attempts=5, backoff_base_s=0.01))
    )
    assert outcomes[0].ok and outcomes[0].api_calls == 2
    assert outcomes[1].error_category == ErrorCategory.INVALID_OUTPUT
    assert outcomes[1].api_calls == 2  # retried once, not up to max_attempts
    assert "not JSON" in outcomes[1].error_message
    assert outcomes[1].response_excerpt


def test_wrong_answers_come_back_as_results(fake_openai):
    """Judging an answer is validation's job (jobs side); the engine hands it over."""
    fake_openai.configure(wrong_rate=1.0)
    (outcome,) = run(items(1), fake_openai)
    assert outcome.ok and outcome.value["latex"] != expected_latex(formula(0))


# -- cancellation and bounded memory ------------------------------------------------------------


def test_stop_event_stops_new_calls_and_lets_in_flight_finish(fake_openai):
    fake_openai.configure(latency=0.3)
    work = items(40)
    pulled = []

    def source():
        for item in work:
            pulled.append(item.item_id)
            yield item

    async def main() -> list[Outcome]:
        stop = asyncio.Event()
        outcomes = []
        async for outcome in run_items(
            source(),
            endpoint=endpoint(fake_openai),
            task=ConversionTask(),
            config=FAST,
            stop=stop,
        ):
            outcomes.append(outcome)
            if len(outcomes) == 4:
                stop.set()
        return outcomes

    outcomes = asyncio.run(main())
    stats = fake_openai.stats()
    assert sorted(o.item_id for o in outcomes) == sorted(pulled)
    assert len(pulled) < len(work)
    finished = {o.item_id for o in outcomes if o.ok}
    cancelled = [o for o in outcomes if not o.ok]
    assert all(o.error_category == ErrorCategory.CANCELLED for o in cancelled)
    assert cancelled and all(o.api_calls == 0 for o in cancelled)
    # Exactly the items whose call had started were finished, each with one call: the
    # four before the stop and those in flight at it; nothing else reached the server.
    called = {n for n in pulled if fake_openai.count(formula(n), stats) > 0}
    assert finished == called
    assert stats["requests"] == stats["ok"] == len(finished)


def test_run_items_pulls_input_only_as_workers_free_up(fake_openai):
    fake_openai.configure(latency=0.1)
    config = EngineConfig(max_concurrent=2, queue_size=2)
    pulled = 0

    def source():
        nonlocal pulled
        for item in items(200):
            pulled += 1
            yield item

    async def main() -> int:
        stream = run_items(
            source(), endpoint=endpoint(fake_openai), task=ConversionTask(), config=config
        )
        received = 0
        async for _ in stream:
            received += 1
            if received == 6:
                break
        await stream.aclose()
        return received

    received = asyncio.run(main())
    # consumed + outcome queue (2) + workers (2) + input queue (2) + the feeder's hand (1)
    assert pulled <= received + 2 + 2 + 2 + 1
    assert fake_openai.stats()["requests"] < 20


def test_batch_runner_submit_blocks_while_the_queue_is_full(fake_openai):
    fake_openai.configure(latency=1.0)
    config = EngineConfig(max_concurrent=2, queue_size=2)
    accepted = 0
    with BatchRunner(
        endpoint=endpoint(fake_openai), task=ConversionTask(), config=config
    ) as runner:
        for item in items(10):
            if not runner.submit(item, timeout=0.2):
                break
            accepted += 1
        assert accepted == 4  # two being called, two waiting in the queue
        assert runner.in_flight == 4
        outcomes = runner.finish()
    assert len(outcomes) == 4 and all(o.ok for o in outcomes)
    assert runner.in_flight == 0


def test_batch_runner_poll_and_finish(fake_openai):
    work = items(25)
    outcomes: list[Outcome] = []
    runner = BatchRunner(endpoint=endpoint(fake_openai), task=ConversionTask(), config=FAST)
    with runner:
        for item in work:
            while not runner.submit(item, timeout=0.5):
                outcomes += runner.poll()
            outcomes += runner.poll()
        outcomes += runner.finish()
    assert sorted(o.item_id for o in outcomes) == list(range(25))
    assert all(o.ok for o in outcomes)
    with pytest.raises(RuntimeError):
        runner.submit(work[0])


def wait_for_requests(server, count: int, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while server.stats()["requests"] < count:
        assert time.monotonic() < deadline, "the calls never reached the server"
        time.sleep(0.02)


def test_batch_runner_cancel_abandons_in_flight_calls(fake_openai):
    fake_openai.configure(latency=5.0)
    config = EngineConfig(max_concurrent=3, queue_size=3)
    with BatchRunner(
        endpoint=endpoint(fake_openai), task=ConversionTask(), config=config
    ) as runner:
        for item in items(6):
            assert runner.submit(item, timeout=1)
        wait_for_requests(fake_openai, 3)
        outcomes = runner.cancel()
        # It did not wait for the 5 s answers: the server has answered nothing yet.
        assert fake_openai.stats()["ok"] == 0
    assert sorted(o.item_id for o in outcomes) == list(range(6))
    assert all(o.error_category == ErrorCategory.CANCELLED for o in outcomes)
    abandoned = [o for o in outcomes if o.api_calls == 1]
    never_called = [o for o in outcomes if o.api_calls == 0]
    assert len(abandoned) == 3 and len(never_called) == 3
    assert all("abandoned in flight" in o.error_message for o in abandoned)
    assert fake_openai.stats()["requests"] == 3


def test_batch_runner_cancel_can_let_in_flight_calls_finish(fake_openai):
    fake_openai.configure(latency=0.5)
    config = EngineConfig(max_concurrent=2, queue_size=4)
    with BatchRunner(
        endpoint=endpoint(fake_openai), task=ConversionTask(), config=config
    ) as runner:
        for item in items(6):
            assert runner.submit(item, timeout=1)
        wait_for_requests(fake_openai, 2)
        outcomes = runner.cancel(abandon=False)
    assert sum(o.ok for o in outcomes) == 2
    assert sum(o.error_category == ErrorCategory.CANCELLED for o in outcomes) == 4
    assert fake_openai.stats()["requests"] == 2


# -- rate limits -----------------------------------------------------------------------------


class NoBrake(TokenBucketLimiter):
    """A limiter that ignores 429s and headers: what the pool does without slowing down."""

    def slow_down(self, retry_after_s):
        pass

    def observe_headers(self, headers):
        pass


def test_the_whole_pool_slows_down_on_a_429(fake_openai):
    # 10 requests per sliding half second, no headers: only 429s tell the client.
    fake_openai.configure(rpm=1200, window=0.5, latency=0.02, ratelimit_headers=False)
    config = EngineConfig(max_concurrent=10, max_attempts=30, backoff_base_s=0.05)

    def rate_limited(limiter) -> tuple[int, list[Outcome]]:
        fake_openai.reset()
        outcomes = run(items(40), fake_openai, config=config, limiter=limiter)
        return fake_openai.stats()["rate_limited"], outcomes

    unbraked, outcomes = rate_limited(NoBrake())
    assert all(o.ok for o in outcomes)
    limiter = TokenBucketLimiter()
    braked, outcomes = rate_limited(limiter)
    assert all(o.ok for o in outcomes)
    assert limiter.slowdowns >= 1 and limiter.pauses >= 1
    assert braked < unbraked


def test_ratelimit_headers_pause_the_pool_before_a_429():
    limiter = TokenBucketLimiter()
    limiter.observe_headers(
        {
            "x-ratelimit-limit-requests": "10",
            "x-ratelimit-remaining-requests": "5",
            "x-ratelimit-reset-requests": "1s",
        }
    )
    assert limiter.paused_for == 0
    limiter.observe_headers(
        {
            "x-ratelimit-limit-requests": "10",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1.5s",
        }
    )
    assert 1.0 < limiter.paused_for <= 1.5
    assert parse_reset("6m0s") == 360 and parse_reset("20ms") == 0.02


def test_rpm_limiter_keeps_the_pool_under_the_servers_limit(fake_openai):
    # The server allows 20 requests in any sliding second; so does the limiter.
    fake_openai.configure(rpm=1200, window=1.0, latency=0.01)
    config = EngineConfig(max_concurrent=20, max_attempts=20, backoff_base_s=0.05)

    outcomes = run(
        items(40), fake_openai, config=config, limiter=TokenBucketLimiter(rpm=1200, period_s=1.0)
    )
    assert all(o.ok for o in outcomes)
    assert fake_openai.stats()["rate_limited"] == 0
    assert sum(o.api_calls for o in outcomes) == 40

    # The same run without the limiter does hit the server's limit: the check above
    # is not passing for want of load.
    fake_openai.reset()
    run(items(40), fake_openai, config=config, limiter=NoBrake())
    assert fake_openai.stats()["rate_limited"] > 0


def test_token_bucket_spaces_requests_by_count():
    """At 600 rpm the bucket holds a 2 % burst; later grants queue behind the refill."""
    now = [0.0]
    limiter = TokenBucketLimiter(rpm=600, clock=lambda: now[0])
    waits = [limiter.requests.take(1, now[0]) for _ in range(30)]
    assert waits[0] == 0
    assert waits == sorted(waits)
    # capacity 12 (2 %), refill 588*0.98/60 per s: the 30th waits for 18 refills.
    assert waits[-1] == pytest.approx(18 / (588 * 0.98 / 60), rel=1e-6)


def test_tpm_settle_gives_back_unused_tokens():
    now = [0.0]
    limiter = TokenBucketLimiter(tpm=6000, clock=lambda: now[0])
    assert limiter.tokens.take(120, now[0]) == 0
    level = limiter.tokens.level
    limiter.settle(estimated=120, actual=20)
    assert limiter.tokens.level == level + 100


# -- small pure parts -----------------------------------------------------------------------


def test_retry_after_headers():
    assert retry_after_from_headers({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_from_headers({"retry-after": "3"}) == 3.0
    assert retry_after_from_headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_from_headers({}) is None


def test_backoff_is_exponential_with_full_jitter_and_capped():
    rng = random.Random(5)  # a fixed draw: the bounds hold for any, the spread for this one
    delays = [backoff_delay(5, base_s=0.5, max_s=3.0, rng=rng) for _ in range(200)]
    assert all(0 <= d <= 3.0 for d in delays) and max(delays) > 2.0
    assert backoff_delay(1, base_s=0.5, max_s=30, retry_after_s=2.0) >= 2.0


def test_keys_never_reach_messages():
    assert "sk-" not in redact("Incorrect API key provided: sk-proj-abc***wxyz")
    assert "s3cr3t-value" not in redact("key s3cr3t-value leaked", ("s3cr3t-value",))


def test_log_lines_name_batch_and_item(fake_openai, caplog):
    adapter = logging.LoggerAdapter(logging.getLogger("test.engine"), {"job": 7})
    with caplog.at_level(logging.INFO, logger="test.engine"):
        run(items(1, "fake:status=503*1"), fake_openai, log=adapter)
    (record,) = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert "batch 1 item 0 (Q0)" in record.getMessage()
    assert record.job == 7
    assert KEY not in caplog.text
