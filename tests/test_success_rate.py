"""The success rate is defined once (selectors.success_rate) and shown with its counts on
the dashboard, the job list and page, the CLI and the JSON stats (issue 12)."""

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from conversions import selectors
from conversions.management.commands._report import format_stats
from conversions.models import Item
from tests.adminutil import login, make_job, set_items, staff_user
from tests.jobutil import make_questions


def test_the_rate_counts_attempted_items_and_never_rounds_up_to_100():
    rate = selectors.success_rate({"succeeded": 773, "failed": 2, "needs_review": 1})
    assert (rate["succeeded"], rate["counted"], rate["text"]) == (773, 776, "99.6 % (773/776)")
    # Skipped (a locked review kept), cancelled and unfinished items are left out.
    rate = selectors.success_rate(
        {"succeeded": 70, "skipped": 1, "cancelled": 5, "pending": 3, "running": 1}
    )
    assert (rate["rate"], rate["counted"], rate["skipped"]) == (1.0, 70, 1)
    assert rate["text"] == "100.0 % (70/70)"
    assert selectors.rate_text(99_999, 100_000) == "99.9 % (99,999/100,000)"
    assert selectors.rate_text(0, 0) == "–"
    assert selectors.success_rate({"skipped": 4})["rate"] is None


@pytest.fixture
def job_773_of_776(db):
    job = make_job(make_questions(780, prefix="sr"), name="rate")
    now = timezone.now()
    set_items(job, 773, status=Item.Status.SUCCEEDED, result_latex="x", finished_at=now)
    set_items(job, 3, status=Item.Status.FAILED, error_category="timeout", finished_at=now)
    set_items(job, 4, status=Item.Status.SKIPPED, finished_at=now)
    return job


def test_every_place_shows_the_same_rate_with_its_counts(client, job_773_of_776):
    job = job_773_of_776
    shown = "99.6 % (773/776)"
    stats = selectors.job_stats(job=job)
    assert stats["success"]["text"] == shown and stats["success"]["skipped"] == 4
    assert round(stats["success_rate"], 4) == round(773 / 776, 4)
    assert f"success     {shown}; 4 skipped (left out)" in format_stats(stats, exports=False)

    operator = login(client, staff_user("rita", "operators"))
    assert shown in operator.get(reverse("admin:conversions_job_changelist")).content.decode()
    cache.clear()  # the dashboard's trends are cached for a minute
    page = operator.get(reverse("admin:conversions_job_dashboard")).content.decode()
    assert page.count(shown) >= 2  # the last days' card and the recent jobs' row
    assert "100.0 %" not in page  # (the progress bar may read 100%: every item is done)
    data = operator.get(reverse("admin:conversions_job_stats", args=[job.pk])).json()
    assert data["stats"]["success"]["text"] == shown  # the live job page shows this text


def test_job_stats_command_leaves_skipped_items_out(job_773_of_776, capsys):
    call_command("job", "stats", str(job_773_of_776.pk))
    assert "success     99.6 % (773/776); 4 skipped (left out)" in capsys.readouterr().out
