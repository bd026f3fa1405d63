"""Two endpoints, three jobs, one real django-q2 cluster (issue 15's done-when)."""

from __future__ import annotations

import pytest
from django.test import Client

from conversions import services
from conversions.jobsettings import JobSettings
from conversions.models import Endpoint, Item, Job, Question
from tests.jobutil import API_KEY, Cluster, make_questions, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Per job: 15 s of the slow endpoint's budget (4 requests a second), 3 batches of 20.
ITEMS = 60


def create(endpoint: Endpoint, questions) -> Job:
    return services.job_create(
        job_settings=JobSettings(
            backend=Job.Backend.OPENAI,
            model="gpt-4.1-mini",
            endpoint=endpoint,
            max_concurrent=16,
            batch_size=20,
            use_cache=False,
        ),
        questions=questions,
        selection={"test": True},
    )


def test_each_job_runs_on_its_own_endpoint_within_its_budget(
    fake_openai, other_fake_openai, monkeypatch, admin_user
):
    # The shared budget grants at most rpm/60 requests per aligned 1 s window, so any
    # sliding 2 s window holds at most 3 * rpm/60: each server refuses (429) the request
    # beyond that (its rpm is 1.5 times the endpoint's over a 2 s window). Unthrottled,
    # 16 concurrent calls go well over 12 (or 24) in 2 s and are refused.
    slow, fast = fake_openai, other_fake_openai  # the run's two shared servers
    slow.configure(rpm=360, window=2.0)
    fast.configure(rpm=720, window=2.0)
    monkeypatch.setenv("MC_SLOW_KEY", API_KEY)
    monkeypatch.setenv("MC_FAST_KEY", API_KEY)
    monkeypatch.delenv("MC_LOCKED_KEY", raising=False)
    endpoints = {
        name: Endpoint.objects.create(
            name=name,
            kind="compatible",
            base_url=server.base_url,
            key_env=f"MC_{name.upper()}_KEY",
            rpm_limit=rpm,
        )
        for name, server, rpm in (("slow", slow, 240), ("fast", fast, 480), ("locked", slow, 240))
    }
    make_questions(ITEMS, prefix="S")
    make_questions(ITEMS, prefix="F", start=200)
    make_questions(5, prefix="L", start=400)
    # The cluster's environment has the slow and fast keys, not the locked one.
    running = Cluster(OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_API_KEY="").start()
    try:
        monkeypatch.setenv("MC_LOCKED_KEY", API_KEY)  # the launching shell has it
        jobs = {
            "slow": create(endpoints["slow"], Question.objects.filter(question_id__startswith="S")),
            "fast": create(endpoints["fast"], Question.objects.filter(question_id__startswith="F")),
            "locked": create(
                endpoints["locked"], Question.objects.filter(question_id__startswith="L")
            ),
        }
        for job in jobs.values():
            wait_until(lambda job=job: Job.objects.get(pk=job.pk).is_final, timeout=180)
    finally:
        running.stop()

    for job in jobs.values():
        job.refresh_from_db()
    assert jobs["slow"].status == jobs["fast"].status == Job.Status.COMPLETED
    assert jobs["locked"].status == Job.Status.FAILED
    assert "MC_LOCKED_KEY is not set: endpoint locked" in jobs["locked"].error_message
    assert not jobs["locked"].items.exclude(status=Item.Status.PENDING).exists()

    slow_stats, fast_stats = slow.stats(), fast.stats()
    # Each job's requests went to its own server only, and no budget was overrun.
    assert (slow_stats["ok"], slow_stats["rate_limited"]) == (ITEMS, 0)
    assert (fast_stats["ok"], fast_stats["rate_limited"]) == (ITEMS, 0)
    assert all(slow.count(i.question.mathml) == 1 for i in jobs["slow"].items.all())
    assert all(fast.count(i.question.mathml) == 0 for i in jobs["slow"].items.all())

    client = Client()
    client.force_login(admin_user)
    for name, job in jobs.items():
        page = client.get(f"/admin/conversions/job/{job.pk}/change/").content.decode()
        assert f"{name} ({endpoints[name].base_url})" in page
