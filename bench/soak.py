"""Soak: one big job on PostgreSQL with two qclusters, while the endpoint misbehaves.

    python bench/soak.py [--items 5000] [--kills 2] [--no-baseline]

The local fake server injects 429 storms, 5xx, hangs past the client timeout, bodies cut
off halfway and wrong answers; a cluster is killed with SIGKILL (and started again, as
systemd would) at evenly spaced points of the job's progress. It prints what became of
every item: succeeded, failed by category, lost (must be 0), duplicated results (an
item whose result was written again, or that was called again, after it finished:
must be 0), calls per item, API calls sent vs received by the server, the longest
stretch without a finished item after each kill, and the time relative to a
fault-free run of the same size on the same clusters.

It makes its own database (mathconv_soak_<pid> on DATABASE_URL's server, default
postgres://postgres@127.0.0.1:5432) and drops it at the end. tests/test_soak.py runs a
reduced size through run_soak().
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "soak-key-not-secret"

FAULTS = {
    "error_rate": 0.03,  # 500 / 503
    "timeout_rate": 0.01,  # hang past the client's timeout
    "truncate_rate": 0.02,  # the body cut off halfway
    "wrong_rate": 0.02,  # valid JSON, wrong LaTeX: validation catches it
    "storm_every": 20.0,  # a 429 storm of 2 s every 20 s
    "storm_length": 2.0,
}


class Cluster:
    """`manage.py qcluster` in its own process group, with the given environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        self.kill()


@dataclass
class SoakResult:
    items: int
    elapsed_s: float
    statuses: Counter
    failed_by_category: Counter
    lost: int
    duplicated: int
    server: dict
    requests_sent: int
    recorded_calls: int
    stalls_s: list[float] = field(default_factory=list)

    @property
    def calls_per_item(self) -> float:
        return self.server["requests"] / self.items if self.items else 0.0


def run_soak(
    *,
    server,
    items: int,
    kills: int,
    cluster_env: dict[str, str],
    concurrency: int = 16,
    faults: bool = True,
    prefix: str = "SOAK",
    timeout_s: float = 3600.0,
) -> SoakResult:
    """Run one job of `items` questions (made here, ids prefix-00001...) on two clusters.

    Django must be set up on the database the clusters use (cluster_env). server: a
    mathconv_dev.fakeopenai.FakeServer; its options are set here (faults or none) and its
    counters reset. Returns the counts; the clusters are stopped at the end.
    """
    from conversions import services
    from conversions.jobsettings import JobSettings
    from conversions.models import Item, Job, Question
    from mathconv_dev.fakeopenai import input_key

    questions = Question.objects.filter(question_id__startswith=f"{prefix}-")
    if questions.count() != items:
        questions.delete()
        Question.objects.bulk_create(
            Question(question_id=f"{prefix}-{n:05d}", mathml=_formula(n))
            for n in range(1, items + 1)
        )
    server.configure(**(FAULTS if faults else dict.fromkeys(FAULTS, 0.0)))

    clusters = [Cluster(cluster_env), Cluster(cluster_env)]
    try:
        _wait(lambda: _clusters_alive() >= 2, 120)
        server.reset()  # counters, and the 429 storms' clock: the first one starts now
        started = time.monotonic()
        job = services.job_create(
            job_settings=JobSettings(
                backend=Job.Backend.OPENAI,
                batch_size=50,
                max_concurrent=concurrency,
                use_cache=False,
            ),
            questions=questions,
            selection={"soak": prefix},
            check_config=False,
        )
        finished = Item.objects.filter(job_id=job.pk, status__in=Item.FINISHED_STATUSES)
        snapshots: list[tuple[dict, dict]] = []
        stalls = []
        for kill_no in range(kills):
            target = items * (kill_no + 1) // (kills + 1)
            _wait(lambda target=target: finished.count() >= target, timeout_s)
            victim = clusters[kill_no % 2]
            victim.kill()
            killed_at = time.monotonic()
            snapshots.append(
                (dict(finished.values_list("pk", "finished_at")), server.stats()["per_input"])
            )
            clusters[kill_no % 2] = Cluster(cluster_env)  # systemd starts it again
            stalls.append(_longest_gap_after(finished, killed_at, items))
        _wait(lambda: Job.objects.get(pk=job.pk).is_final, timeout_s)
        elapsed = time.monotonic() - started
    finally:
        for cluster in clusters:
            cluster.stop()

    job.refresh_from_db()
    rows = list(Item.objects.filter(job_id=job.pk).select_related("question"))
    stats = server.stats()
    per_input = stats["per_input"]
    duplicated = set()
    for done_before, calls_before in snapshots:
        for item in rows:
            if item.pk in done_before:
                key = input_key(item.question.mathml)
                if item.finished_at != done_before[item.pk] or per_input.get(
                    key
                ) != calls_before.get(key):
                    duplicated.add(item.pk)
    per_question = Counter(item.question_id for item in rows)
    duplicated |= {item.pk for item in rows if per_question[item.question_id] > 1}
    return SoakResult(
        items=items,
        elapsed_s=elapsed,
        statuses=Counter(item.status for item in rows),
        failed_by_category=Counter(
            item.error_category or "-"
            for item in rows
            if item.status not in (Item.Status.SUCCEEDED, Item.Status.SKIPPED)
        ),
        lost=items - sum(1 for item in rows if item.status in Item.FINISHED_STATUSES),
        duplicated=len(duplicated),
        server=stats,
        requests_sent=job.requests_sent,
        recorded_calls=sum(item.api_calls for item in rows),
        stalls_s=stalls,
    )


def _formula(n: int) -> str:
    return (
        '<math xmlns="http://www.w3.org/1998/Math/MathML"><mfrac><mn>'
        f"{n}</mn><mi>x</mi></mfrac><mo>+</mo><msup><mi>y</mi><mn>{n % 7 + 2}</mn></msup></math>"
    )


def _clusters_alive() -> int:
    from django_q.status import Stat

    return len(Stat.get_all())


def _wait(condition, timeout_s: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"soak: condition not met within {timeout_s} s")
        time.sleep(interval)


def _longest_gap_after(finished, killed_at: float, items: int, watch_s: float = 20.0) -> float:
    """The longest stretch without a newly finished item, from a kill until 20 s later
    (or the job's last item): how long one kill stalls the job."""
    last_count, last_change, longest = finished.count(), killed_at, 0.0
    while time.monotonic() - killed_at < watch_s and last_count < items:
        time.sleep(0.1)
        count = finished.count()
        now = time.monotonic()
        if count != last_count:
            longest = max(longest, now - last_change)
            last_count, last_change = count, now
    return round(max(longest, time.monotonic() - last_change if last_count < items else 0), 1)


def report(result: SoakResult, baseline: SoakResult | None) -> str:
    server = result.server
    lines = [
        f"items               {result.items}",
        f"succeeded           {result.statuses.get('succeeded', 0)}",
        "failed by category  "
        + (", ".join(f"{k} {v}" for k, v in sorted(result.failed_by_category.items())) or "none"),
        f"statuses            {dict(sorted(result.statuses.items()))}",
        f"lost                {result.lost}",
        f"duplicated results  {result.duplicated}",
        f"calls per item      {result.calls_per_item:.2f} (server received {server['requests']}: "
        f"429 {server['rate_limited']} (storms {server['storm_429']}), 5xx {server['errors']}, "
        f"hangs {server['hangs']}, truncated {server['truncated']}, wrong {server['wrong']})",
        f"API calls sent      {result.requests_sent} counted by the job vs {server['requests']} "
        f"received; {result.recorded_calls} recorded on items",
        "stall after kills   "
        + (", ".join(f"{s:.1f} s" for s in result.stalls_s) or "-")
        + " (longest stretch without a finished item)",
        f"elapsed             {result.elapsed_s:.1f} s",
    ]
    if baseline is not None:
        lines.append(
            f"vs fault-free run   {result.elapsed_s / baseline.elapsed_s:.2f}x "
            f"({baseline.elapsed_s:.1f} s, {baseline.calls_per_item:.2f} calls per item, "
            f"lost {baseline.lost})"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=5000, help="Items in the job.")
    parser.add_argument("--kills", type=int, default=2, help="SIGKILLs of a cluster.")
    parser.add_argument("--concurrency", type=int, default=16, help="The job's concurrency.")
    parser.add_argument("--latency", type=float, default=0.05, help="Server latency (s).")
    parser.add_argument("--lease", type=int, default=10, help="MATHCONV_LEASE_SECONDS.")
    parser.add_argument(
        "--no-baseline", action="store_true", help="Skip the fault-free run (no time ratio)."
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server to make the soak database on.",
    )
    args = parser.parse_args()

    import psycopg

    base = args.server_url.rsplit("/", 1)[0]
    name = f"mathconv_soak_{os.getpid()}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"{base}/{name}",
        DJANGO_SETTINGS_MODULE="mathconv.settings",
        OPENAI_API_KEY=API_KEY,
        OPENAI_TIMEOUT="2",
        MATHCONV_LEASE_SECONDS=str(args.lease),
        MATHCONV_CONCURRENCY_PER_TASK=str(max(1, args.concurrency // 2)),
        Q_WORKERS="2",
        LOG_LEVEL="WARNING",
    )
    env.pop("REDIS_URL", None)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from mathconv_dev.fakeopenai import FakeOptions, FakeServer

        with FakeServer(FakeOptions(latency=args.latency)) as server:
            env["OPENAI_BASE_URL"] = server.base_url
            baseline = None
            if not args.no_baseline:
                baseline = run_soak(
                    server=server,
                    items=args.items,
                    kills=0,
                    cluster_env=env,
                    concurrency=args.concurrency,
                    faults=False,
                    prefix="BASE",
                )
            result = run_soak(
                server=server,
                items=args.items,
                kills=args.kills,
                cluster_env=env,
                concurrency=args.concurrency,
            )
        print(report(result, baseline))
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return 0 if result.lost == 0 and result.duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
