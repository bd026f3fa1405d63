"""A Batch API job's page in a real browser: its remote batches and the saving, drawn by
live.js from stats.json, in Korean."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from conversions import batchapi, services
from conversions.jobsettings import JobSettings
from conversions.models import Job, ModelPrice, Question
from tests.adminutil import staff_user
from tests.browser.conftest import WIDE
from tests.jobutil import API_KEY, make_questions, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_job_page_lists_remote_batches_and_the_saving(open_session, fake_openai, settings):
    server = fake_openai
    server.configure(batch_delay=0.3, batch_failure_rate=0.2)
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = API_KEY
    ModelPrice.objects.update_or_create(
        model="gpt-4.1",
        defaults={"input_per_mtok": Decimal("2.00"), "output_per_mtok": Decimal("8.00")},
    )
    make_questions(20)
    job = services.job_create(
        job_settings=JobSettings(
            backend=Job.Backend.OPENAI, model="gpt-4.1", batch_api=True, use_cache=False
        ),
        questions=Question.objects.all(),
        selection={"test": True},
        enqueue=False,
    )

    def done() -> bool:
        batchapi.job_step(job.pk)
        job.refresh_from_db()
        return job.is_final and not job.remote_batches.open().exists()

    wait_until(done, timeout=60, interval=0.2)
    remotes = list(job.remote_batches.all())
    assert len(remotes) >= 2  # the failed requests went out again

    staff_user("bella", "operators")
    session = open_session("bella", WIDE, locale="ko-KR")
    session.goto(f"/admin/conversions/job/{job.pk}/change/")
    rows = session.page.locator("#mc-remote-batches-body tr")
    expect(rows).to_have_count(len(remotes))
    expect(rows.nth(0)).to_contain_text(remotes[0].remote_id)
    expect(rows.nth(0)).to_contain_text("완료")
    expect(rows.nth(1)).to_contain_text("재제출")
    expect(session.page.locator("#mc-batch-saved")).to_contain_text("$0.")
    expect(session.page.locator("#mc-batch-api")).to_contain_text("실시간 대비 절약")
    session.shot("batch-api-job")
    assert session.errors == []
