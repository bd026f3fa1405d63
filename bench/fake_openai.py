#!/usr/bin/env python
"""How fast the local fake OpenAI server and the engine are, on their own.

Starts the fake server (mathconv_dev.fakeopenai) with --latency L in its own process,
then measures from this process:
- the server: C keep-alive connections sending chat completions with a bare asyncio
  HTTP/1.1 client (next to no client cost), as achieved / ideal where ideal = C / L;
- the engine: run_items() (AsyncOpenAI, the limiter, the retry layer) over the same
  server, same ratio, with the client CPU time per call.

- with --rpm R: the shared rate limit (conversions/ratelimit.py, in the database or in
  Redis) driving a BatchRunner at C=50 against a server limited to R requests/min, as
  achieved rate / R and the share of 429 answers (run it for a few minutes: the
  server counts over a sliding 60 s window).

    .venv/bin/python bench/fake_openai.py                  # L=0.2 s, C=50 and 100
    .venv/bin/python bench/fake_openai.py --requests 5000 --concurrency 50
    .venv/bin/python bench/fake_openai.py --rpm 6000 --seconds 150 --store db
    .venv/bin/python bench/fake_openai.py --rpm 6000 --seconds 150 --store redis

The --rpm run uses a SQLite database of its own in var/bench-fake/ (or DATABASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mathconv_dev.fakeopenai import FakeOptions, FakeServer  # noqa: E402

API_KEY = "bench-local-key"  # noqa: S105 - sent only to the local fake server


def request_bytes(n: int) -> bytes:
    from conversions.engine.prompts import ConversionTask
    from conversions.engine.types import WorkItem

    task = ConversionTask()
    item = WorkItem(item_id=n, ref=str(n), mathml=f"<math><mn>{n}</mn><mi>x</mi></math>")
    body = json.dumps(
        {
            "model": "gpt-4.1-mini",
            "messages": task.build_messages(item),
            "response_format": task.response_format(),
        }
    ).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\n"
        f"authorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def raw_clients(host: str, port: int, total: int, concurrency: int) -> float:
    payloads = [request_bytes(n) for n in range(256)]
    remaining = [total]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while remaining[0] > 0:
            remaining[0] -= 1
            writer.write(payloads[remaining[0] % len(payloads)])
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return total / (time.monotonic() - started)


async def engine_run(base_url: str, total: int, concurrency: int) -> tuple[float, float, int]:
    from conversions.engine.prompts import ConversionTask
    from conversions.engine.runner import EngineConfig, run_items
    from conversions.engine.types import Endpoint, WorkItem

    endpoint = Endpoint(base_url=base_url, api_key=API_KEY, model="gpt-4.1-mini", timeout_s=30)
    work = (
        WorkItem(item_id=n, ref=str(n), mathml=f"<math><mn>{n}</mn><mi>y</mi></math>")
        for n in range(total)
    )
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    ok = 0
    async for outcome in run_items(
        work,
        endpoint=endpoint,
        task=ConversionTask(),
        config=EngineConfig(max_concurrent=concurrency),
    ):
        ok += outcome.ok
    rate = total / (time.monotonic() - started)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rate, cpu / total * 1000, ok


def shared_limit_run(rpm: int, seconds: float, store_kind: str, latency: float) -> None:
    os.environ.setdefault("DEBUG", "1")
    if not os.environ.get("DATABASE_URL"):
        var = ROOT / "var" / "bench-fake"
        var.mkdir(parents=True, exist_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{var / 'db.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mathconv.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from conversions.engine.prompts import ConversionTask
    from conversions.engine.runner import BatchRunner, EngineConfig
    from conversions.engine.types import Endpoint, WorkItem
    from conversions.ratelimit import (
        DatabaseWindowStore,
        RedisWindowStore,
        SharedRateLimiter,
    )

    call_command("migrate", verbosity=0)
    server = FakeServer(FakeOptions(latency=latency, rpm=rpm)).start()
    base_url = server.base_url
    try:
        endpoint = Endpoint(base_url=base_url, api_key=API_KEY, model="gpt-4.1-mini", rpm=rpm)
        redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        store = DatabaseWindowStore(1.0) if store_kind == "db" else RedisWindowStore(redis_url, 1.0)
        limiter = SharedRateLimiter(f"bench-{time.time_ns()}", rpm=rpm, store=store)
        outcomes = []
        started = time.monotonic()
        config = EngineConfig(max_concurrent=50)
        with BatchRunner(
            endpoint=endpoint, task=ConversionTask(), config=config, limiter=limiter
        ) as runner:
            n = 0
            while time.monotonic() - started < seconds:
                item = WorkItem(item_id=n, ref=str(n), mathml=f"<math><mn>{n}</mn></math>")
                if runner.submit(item, timeout=0.5):
                    n += 1
                outcomes += runner.poll()
            outcomes += runner.cancel(abandon=False)
        elapsed = time.monotonic() - started
        limiter.close()
        stats = server.stats()
    finally:
        server.stop()
    ok = sum(outcome.ok for outcome in outcomes)
    per_minute = ok / elapsed * 60
    print(
        f"shared limit ({store_kind})  rpm={rpm}  {elapsed:.0f} s: {per_minute:.0f} ok/min  "
        f"ratio {per_minute / rpm:.3f} of R  429s {stats['rate_limited']} of "
        f"{stats['requests']} requests ({stats['rate_limited'] / max(1, stats['requests']):.2%})"
        f"  store round trips {limiter.round_trips}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="Server latency (s).")
    parser.add_argument("--requests", type=int, default=3000, help="Requests per run.")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[50, 100], help="Client concurrency."
    )
    parser.add_argument(
        "--rpm", type=int, default=None, help="Run the shared rate-limit check at R rpm."
    )
    parser.add_argument("--seconds", type=float, default=150.0, help="Length of the --rpm run.")
    parser.add_argument(
        "--store", choices=["db", "redis"], default="db", help="Budget store for --rpm."
    )
    args = parser.parse_args()
    if args.rpm:
        shared_limit_run(args.rpm, args.seconds, args.store, args.latency)
        return

    server = FakeServer(FakeOptions(latency=args.latency)).start()
    base_url = server.base_url
    host, port = base_url.removeprefix("http://").removesuffix("/v1").split(":")
    try:
        for concurrency in args.concurrency:
            ideal = concurrency / args.latency
            rate = asyncio.run(raw_clients(host, int(port), args.requests, concurrency))
            print(
                f"server  C={concurrency:<4} latency={args.latency}s  {rate:7.1f} req/s  "
                f"ideal {ideal:.0f}  ratio {rate / ideal:.3f}"
            )
        for concurrency in args.concurrency:
            ideal = concurrency / args.latency
            rate, cpu_ms, ok = asyncio.run(engine_run(base_url, args.requests, concurrency))
            print(
                f"engine  C={concurrency:<4} latency={args.latency}s  {rate:7.1f} items/s  "
                f"ideal {ideal:.0f}  ratio {rate / ideal:.3f}  client CPU {cpu_ms:.2f} ms/call  "
                f"ok {ok}/{args.requests}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
