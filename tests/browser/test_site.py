"""The site itself in a browser: its name, and times in the server's time zone.

The browser runs in New York while the server says Asia/Seoul (settings.TIME_ZONE): the
job page's throughput chart must label its axis in Seoul time, as every other page does.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from conversions.models import Item, Job
from tests import jobutil
from tests.adminutil import PASSWORD, make_job, set_items, staff_user

pytestmark = pytest.mark.django_db(transaction=True)


def login(browser, base_url: str, username: str, **context_options):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **context_options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(base_url + "/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    return context, page


def test_chart_axis_uses_the_server_time_zone_not_the_browser_s(browser, live_server):
    staff_user("boss", is_superuser=True)
    job = make_job(jobutil.make_questions(4))
    set_items(
        job,
        4,
        status=Item.Status.SUCCEEDED,
        finished_at=datetime(2026, 1, 1, 3, 5, tzinfo=UTC),
    )
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.COMPLETED,
        started_at=datetime(2026, 1, 1, 3, 0, tzinfo=UTC),  # 12:00 in Seoul, 22:00 in NY
        finished_at=datetime(2026, 1, 1, 3, 10, tzinfo=UTC),
    )
    context, page = login(
        browser, live_server.url, "boss", locale="en-US", timezone_id="America/New_York"
    )
    try:
        page.goto(live_server.url + reverse("admin:conversions_job_change", args=[job.pk]))
        first_label = page.locator("#mc-throughput text").nth(2)
        expect(first_label).to_have_text("12:00:00 PM")
        assert page.evaluate("new Date('2026-01-01T03:00:00Z').getHours()") == 22
    finally:
        context.close()


def test_the_site_is_named_in_english_and_korean(browser, live_server):
    staff_user("boss", is_superuser=True)
    for locale, header, title in (
        ("en-US", "mathconv administration", "mathconv admin"),
        ("ko-KR", "mathconv 관리", "mathconv 관리자"),
    ):
        context, page = login(browser, live_server.url, "boss", locale=locale)
        try:
            expect(page.locator("#site-name")).to_have_text(header)
            assert page.title().endswith(title)
        finally:
            context.close()
