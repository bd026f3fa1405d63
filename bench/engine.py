#!/usr/bin/env python
"""Engine benchmark: conversion jobs against the local fake OpenAI server, run as a user
runs them (job_create -> django-q2 ORM broker -> a qcluster worker -> the database).

For each N (default 1,000 / 10,000 / 100,000 items) it prints:
- throughput / ideal, where ideal = min(C / latency, rpm / 60), at C=50, latency 0.2 s;
- the same ratio for a seed-style baseline on the same MathML (batches of 100 through
  asyncio.gather and a semaphore, a fixed 2 s pause between batches; no database);
- the peak memory (VmHWM) of the qcluster worker processes, and its growth from the
  smallest to the largest N;
then, with the server limited to R requests/min and the job told the same limit, the
achieved rate as a share of R and the share of 429 answers.

    .venv/bin/python bench/engine.py                      # the full run (long: ~1 h)
    .venv/bin/python bench/engine.py --sizes 1000 --rpm-minutes 1   # a quick look

Jobs of up to --repeat-max items run --repeat times (default 3) and the median run is
reported with the range; the baseline runs once per size.

Everything lives in var/bench-engine/ (a fresh SQLite database per run, unless
--database-url points at a PostgreSQL database, which is then emptied).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mathconv_dev.fakeopenai import FakeOptions, FakeServer  # noqa: E402

VAR = ROOT / "var" / "bench-engine"
API_KEY = "bench-local-key"  # noqa: S105 - sent only to the local fake server
MODEL = "gpt-4.1-mini"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="Comma-separated job sizes (items)."
    )
    parser.add_argument("--concurrency", type=int, default=50, help="max_concurrent of the job.")
    parser.add_argument("--latency", type=float, default=0.2, help="Fake server latency (s).")
    parser.add_argument("--batch-size", type=int, default=100, help="Job batch size.")
    parser.add_argument(
        "--baseline-max",
        type=int,
        default=None,
        help="Run the baseline only for N up to this (it pauses 2 s per 100 items).",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="Runs of each job size under --repeat-max; the median is reported (a 1,000-item "
        "job lasts 4 s, so one run is at the mercy of whatever else the machine does).",
    )
    parser.add_argument("--repeat-max", type=int, default=10_000)
    parser.add_argument("--rpm", type=int, default=1200, help="R for the rate-limited run.")
    parser.add_argument(
        "--rpm-minutes", type=float, default=3.0, help="Length of the rate-limited run (min)."
    )
    parser.add_argument(
        "--database-url", default="", help="PostgreSQL URL for the run (default: SQLite)."
    )
    parser.add_argument("--json", default="", help="Also write the results to this JSON file.")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_environment(args: argparse.Namespace, fake_url: str) -> dict[str, str]:
    if VAR.exists():
        shutil.rmtree(VAR)
    VAR.mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="mathconv.settings",
        MATHCONV_VAR_DIR=str(VAR),
        SECRET_KEY="bench-only-secret-key",  # noqa: S106 - a throwaway bench database
        DEBUG="0",
        OPENAI_BASE_URL=fake_url,
        OPENAI_API_KEY=API_KEY,
        Q_WORKERS="2",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    else:
        env.pop("DATABASE_URL", None)
    os.environ.update(env)
    return env


def manage(*argv: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *argv]


def start(argv: list[str], env: dict, log_name: str) -> subprocess.Popen:
    log = open(VAR / log_name, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def peak_rss_mb(pids: list[int]) -> float:
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


def create_questions(count: int) -> None:
    """count questions with the demo bank's school formulas (the same generator)."""
    from conversions.demo_data import demo_questions
    from conversions.models import Question

    batch = []
    for n, record in enumerate(demo_questions(count)):
        batch.append(
            Question(question_id=f"bench-{n:06d}", mathml=record["mathml"], text=record["text"])
        )
        if len(batch) == 5000:
            Question.objects.bulk_create(batch)
            batch = []
    Question.objects.bulk_create(batch)


def run_job(*, n: int, env: dict, args, rpm: int | None = None) -> dict:
    """One job through a fresh qcluster; timing from the job's own start/finish stamps."""
    from conversions import selectors, services
    from conversions.jobsettings import JobSettings
    from conversions.models import Job, Question

    cluster = start(manage("qcluster"), env, "qcluster.log")
    try:
        time.sleep(2)  # let the cluster's workers come up before the clock starts
        created = time.monotonic()
        job = services.job_create(
            job_settings=JobSettings(
                backend=Job.Backend.OPENAI,
                model=MODEL,
                batch_size=args.batch_size,
                max_concurrent=args.concurrency,
                rpm_limit=rpm,
                use_cache=False,
                limit=n,
                name=f"bench {n}",
            ),
            questions=Question.objects.all(),
            selection={"source": "bench"},
        )
        peak = 0.0
        while True:
            job.refresh_from_db()
            peak = max(peak, peak_rss_mb(descendants(cluster.pid)))
            if job.is_final or job.status == Job.Status.PAUSED:
                break
            if cluster.poll() is not None:
                raise RuntimeError("the qcluster died; see var/bench-engine/qcluster.log")
            time.sleep(1.0)
        wall = time.monotonic() - created
        peak = max(peak, peak_rss_mb(descendants(cluster.pid)))
    finally:
        stop(cluster)
    stats = selectors.job_stats(job=job)
    elapsed = (job.finished_at - job.started_at).total_seconds()
    return {
        "n": n,
        "status": job.status,
        "succeeded": stats["counts"].get("succeeded", 0),
        "elapsed_s": elapsed,
        "wall_s": wall,
        "throughput": n / elapsed,
        "peak_mb": peak,
        "api_calls": stats["api_calls"],
    }


async def baseline(mathmls: list[str], *, url: str, concurrency: int) -> float:
    """The seed script's pattern: gather batches of 100 under a semaphore, sleep 2 s."""
    import openai

    from conversions.engine.prompts import ConversionTask
    from conversions.engine.types import WorkItem

    task = ConversionTask()
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=url)
    semaphore = asyncio.Semaphore(concurrency)

    async def convert(n: int, mathml: str) -> bool:
        async with semaphore:
            item = WorkItem(item_id=n, ref=str(n), mathml=mathml)
            try:
                await client.chat.completions.create(
                    model=MODEL,
                    messages=task.build_messages(item),
                    response_format=task.response_format(),
                )
            except openai.OpenAIError:
                return False
            return True

    started = time.monotonic()
    for first in range(0, len(mathmls), 100):
        batch = mathmls[first : first + 100]
        await asyncio.gather(*(convert(first + i, m) for i, m in enumerate(batch)))
        if first + 100 < len(mathmls):
            await asyncio.sleep(2)
    elapsed = time.monotonic() - started
    await client.close()
    return elapsed


def main() -> None:
    args = parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fake_port = free_port()
    fake_url = f"http://127.0.0.1:{fake_port}/v1"
    env = setup_environment(args, fake_url)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    if args.database_url:
        call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)
    fake = FakeServer(
        FakeOptions(latency=args.latency), port=fake_port, env=env, log_path=VAR / "fake_openai.log"
    )
    results: dict = {"sizes": [], "rate_limited": None}
    try:
        fake.start()
        rpm_items = int(args.rpm * args.rpm_minutes)
        total = max([*sizes, rpm_items])
        print(f"creating {total} questions ...", flush=True)
        create_questions(total)
        from conversions.models import Question

        mathmls = list(
            Question.objects.order_by("id").values_list("mathml", flat=True)[: max(sizes)]
        )
        ideal = args.concurrency / args.latency
        print(
            f"\nC={args.concurrency}, latency {args.latency} s: ideal {ideal:.0f} items/s "
            f"(no rate limit), batch size {args.batch_size}, database "
            f"{'PostgreSQL' if args.database_url else 'SQLite'}, {os.cpu_count()} CPUs "
            f"(load is the 1-minute load average of the machine after each run)\n",
            flush=True,
        )
        print(f"{'N':>8} {'run':>9} {'seconds':>8} {'items/s':>8} {'ratio':>6} {'peak MB':>8}")
        for n in sizes:
            runs = []
            for _run in range(args.repeat if n <= args.repeat_max else 1):
                runs.append(run_job(n=n, env=env, args=args))
            runs.sort(key=lambda r: r["throughput"])
            row = dict(runs[(len(runs) - 1) // 2])  # the median run (the lower one of two)
            row["ratio"] = row["throughput"] / ideal
            row["runs"] = len(runs)
            row["ratio_range"] = [runs[0]["throughput"] / ideal, runs[-1]["throughput"] / ideal]
            row["peak_mb"] = max(r["peak_mb"] for r in runs)
            results["sizes"].append(row)
            spread = (
                f"  median of {len(runs)}: {row['ratio_range'][0]:.3f}..{row['ratio_range'][1]:.3f}"
                if len(runs) > 1
                else ""
            )
            print(
                f"{n:>8} {'job':>9} {row['elapsed_s']:>8.1f} {row['throughput']:>8.1f} "
                f"{row['ratio']:>6.3f} {row['peak_mb']:>8.1f}  load {os.getloadavg()[0]:.1f}"
                + ("" if row["status"] == "completed" else f"  ({row['status']})")
                + spread,
                flush=True,
            )
            if args.baseline_max is None or n <= args.baseline_max:
                base_s = asyncio.run(
                    baseline(mathmls[:n], url=fake_url, concurrency=args.concurrency)
                )
                row.update(baseline_s=base_s, baseline_ratio=n / base_s / ideal)
                print(
                    f"{n:>8} {'baseline':>9} {base_s:>8.1f} {n / base_s:>8.1f} "
                    f"{row['baseline_ratio']:>6.3f} {'-':>8}  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        if len(results["sizes"]) > 1:
            first, last = results["sizes"][0], results["sizes"][-1]
            growth = last["peak_mb"] - first["peak_mb"]
            results["memory_growth_mb"] = growth
            print(
                f"\nworker peak memory {first['n']} -> {last['n']} items: "
                f"{first['peak_mb']:.1f} -> {last['peak_mb']:.1f} MB (growth {growth:+.1f} MB)",
                flush=True,
            )

        if args.rpm:
            fake.configure(rpm=args.rpm)
            fake.reset()
            row = run_job(n=rpm_items, env=env, args=args, rpm=args.rpm)
            served = fake.stats()
            achieved = row["throughput"] * 60
            share_429 = served["rate_limited"] / max(1, served["requests"])
            results["rate_limited"] = {
                **row,
                "rpm": args.rpm,
                "achieved_rpm": achieved,
                "achieved_ratio": achieved / args.rpm,
                "requests": served["requests"],
                "rate_limited": served["rate_limited"],
                "share_429": share_429,
            }
            print(
                f"\nserver limited to R={args.rpm} rpm, job rpm={args.rpm}, {rpm_items} items: "
                f"achieved {achieved:.0f} rpm = {achieved / args.rpm:.3f} R; "
                f"429 answers {served['rate_limited']} of {served['requests']} requests "
                f"({share_429 * 100:.2f} %)",
                flush=True,
            )
    finally:
        fake.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
