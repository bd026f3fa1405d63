"""The operator's pages (issue 12): what a cancelled job shows, the label launch page's
first estimate, and the "start a job" entries on the admin home, the control room and
the job list."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from conversions import services
from conversions.models import Item, Job, LabelSchema, ModelPrice
from tests.adminutil import any_label_schema, login, make_job, set_items, staff_user
from tests.jobutil import make_questions, seed_prices

pytestmark = pytest.mark.django_db

LAUNCH_CONVERT = reverse("admin:conversions_question_launch", args=["convert"])
LAUNCH_LABEL = reverse("admin:conversions_question_launch", args=["label"])


# --- a cancelled job stops counting as running ----------------------------------------------


def in_flight_job() -> Job:
    """A running job: 2 items done, 3 held by a live worker ("w"), 5 waiting."""
    job = make_job(make_questions(10), name="busy")
    set_items(job, 2, status=Item.Status.SUCCEEDED, result_latex="x", finished_at=timezone.now())
    set_items(
        job,
        3,
        status=Item.Status.RUNNING,
        lease_owner="w",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, started_at=timezone.now())
    job.refresh_from_db()
    return job


def test_after_cancel_the_page_shows_no_running_items_once_the_worker_lets_go(operator):
    job = in_flight_job()
    stats_url = reverse("admin:conversions_job_stats", args=[job.pk])
    before = operator.get(stats_url).json()
    assert before["stats"]["count_labels"]["running"] == "Running"

    cancel = reverse("admin:conversions_job_control", args=[job.pk, "cancel"])
    operator.post(cancel, {"confirm": "1"})
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    during = operator.get(stats_url).json()
    # The worker still holds its 3 items: they are shown as stopping, not running, and
    # the page keeps polling (final is false) until they end.
    assert during["stats"]["counts"] == {"succeeded": 2, "running": 3, "cancelled": 5}
    assert during["stats"]["count_labels"]["running"] == "Stopping"
    assert during["final"] is False
    page = operator.get(reverse("admin:conversions_job_change", args=[job.pk])).content.decode()
    assert "<td>Stopping</td><td>3</td>" in page and "<td>Running</td>" not in page

    # The worker's next check cancels what it holds (worker.py: services.items_cancel).
    assert services.items_cancel(job=job, owner="w") == 3
    after = operator.get(stats_url).json()
    assert after["stats"]["counts"] == {"succeeded": 2, "cancelled": 8}
    assert after["final"] is True


def test_the_control_room_counts_a_cancelled_job_as_cancelled_not_running(operator):
    cache.clear()  # the trends are cached for a minute
    job = in_flight_job()
    data = operator.get(reverse("admin:conversions_job_dashboard_data")).json()
    assert data["queue"]["active_jobs"] == 1
    assert [(r["value"], r["count"]) for r in data["jobs_by_status"]] == [("running", 1)]
    services.job_cancel(job=job)
    data = operator.get(reverse("admin:conversions_job_dashboard_data")).json()
    assert data["queue"]["active_jobs"] == 0
    assert [(r["value"], r["count"]) for r in data["jobs_by_status"]] == [("cancelled", 1)]
    page = operator.get(reverse("admin:conversions_job_dashboard")).content.decode()
    assert 'id="mc-active-jobs">0<' in page


# --- the label launch page prices the job on first load ------------------------------------


def test_the_label_launch_page_shows_the_estimate_on_first_load(operator):
    seed_prices()
    make_questions(4)
    schema = any_label_schema()
    LabelSchema.objects.create(name="zz-other", instructions="x", fields=schema.fields)
    page = operator.get(LAUNCH_LABEL)
    estimate = page.context["estimate"]
    assert (estimate["count"], estimate["llm"], estimate["model"]) == (4, True, "gpt-4o-mini")
    assert estimate["tokens_in"] > 4 * 50 and estimate["tokens_out"] > 0
    assert estimate["cost_usd"] == ModelPrice.objects.get(model="gpt-4o-mini").cost(
        estimate["tokens_in"], estimate["tokens_out"]
    )
    html = page.content.decode()
    assert "no price for this model" not in html
    assert f'id="mc-est-tokens-in">{estimate["tokens_in"]}<' in html
    # The select shows the schema the estimate priced (the first by name).
    assert f'<option value="{schema.pk}" selected>' in html
    assert page.context["form"]["label_schema"].value() == schema.pk

    # "Update estimate" with the same settings gives the same numbers.
    again = operator.post(
        LAUNCH_LABEL,
        {"label_schema": schema.pk, "batch_size": 100, "max_concurrent": 10, "_estimate": "1"},
    )
    assert again.context["estimate"]["tokens_in"] == estimate["tokens_in"]
    assert again.context["estimate"]["cost_usd"] == estimate["cost_usd"]


# --- "start a job" from the admin home, the control room and the job list ------------------

START_PAGES = {
    "home": reverse("admin:index"),
    "control room": reverse("admin:conversions_job_dashboard"),
    "job list": reverse("admin:conversions_job_changelist"),
}


@pytest.mark.parametrize("where", list(START_PAGES))
def test_an_operator_starts_a_job_from_the_home_control_room_and_job_list(operator, where):
    make_questions(3)
    cache.clear()
    html = operator.get(START_PAGES[where]).content.decode()
    for kind, anchor, title in (
        ("convert", "mc-start-convert", "Start a conversion job"),
        ("label", "mc-start-label", "Start a labeling job"),
    ):
        url = reverse("admin:conversions_question_launch", args=[kind])
        assert f'id="{anchor}" href="{url}"' in html, (where, kind)
        form = operator.get(url)
        assert form.status_code == 200
        assert form.context["title"] == title
        assert form.context["selected"] == 3 and 'id="mc-launch-form"' in form.content.decode()
    # The launch page says how to narrow the selection.
    assert 'id="mc-selection-hint"' in operator.get(LAUNCH_CONVERT).content.decode()


@pytest.mark.parametrize("group", ["viewers", "reviewers"])
def test_who_cannot_launch_sees_no_start_entry(client, group):
    login(client, staff_user(f"u-{group}", group))
    cache.clear()
    for where, url in START_PAGES.items():
        response = client.get(url)
        assert response.status_code == 200, where
        html = response.content.decode()
        assert "mc-start-convert" not in html and "mc-start-label" not in html, where
        assert LAUNCH_CONVERT not in html and LAUNCH_LABEL not in html, where
    assert client.get(LAUNCH_CONVERT).status_code == 403
