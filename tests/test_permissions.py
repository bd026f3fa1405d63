import json

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from conversions.models import Item, Job, Question
from tests.adminutil import login, make_job, set_items, staff_user
from tests.jobutil import make_questions

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")


@pytest.fixture
def world():
    """A job with a failed item and a result waiting for review."""
    job = make_job(make_questions(3), name="perm")
    failed = set_items(job, 1, status="failed", error_category="timeout", error_message="t")[0]
    review = set_items(job, 1, status="needs_review", result_latex="x", validation_score=0.2)[0]
    return {"job": job, "failed": failed, "review": review, "question": Question.objects.first()}


def urls(world) -> dict[str, tuple[str, str]]:
    """name -> (method, url) of every custom view, action endpoint and JSON endpoint."""
    job, failed, review = world["job"].pk, world["failed"], world["review"]
    return {
        "dashboard": ("get", reverse("admin:conversions_job_dashboard")),
        "dashboard_data": ("get", reverse("admin:conversions_job_dashboard_data")),
        "job_page": ("get", reverse("admin:conversions_job_change", args=[job])),
        "job_stats": ("get", reverse("admin:conversions_job_stats", args=[job])),
        "job_export": ("get", reverse("admin:conversions_job_export", args=[job, "csv"])),
        "job_pause": ("post", reverse("admin:conversions_job_control", args=[job, "pause"])),
        "job_cancel": ("post", reverse("admin:conversions_job_control", args=[job, "cancel"])),
        "job_retry": ("post", reverse("admin:conversions_job_control", args=[job, "retry"])),
        "failures": ("get", reverse("admin:conversions_item_failures")),
        "item_page": ("get", reverse("admin:conversions_item_change", args=[failed])),
        "item_retry": ("post", reverse("admin:conversions_item_retry", args=[failed])),
        "category_retry": ("post", reverse("admin:conversions_item_retry_category")),
        "review": ("get", reverse("admin:conversions_item_review")),
        "review_next": ("get", reverse("admin:conversions_item_review_next")),
        "review_decide": (
            "post",
            reverse("admin:conversions_item_review_decide", args=[review]),
        ),
        "bulk_approve": ("post", reverse("admin:conversions_item_review_bulk")),
        "launch_convert": (
            "get",
            reverse("admin:conversions_question_launch", args=["convert"]),
        ),
        "launch_label": ("post", reverse("admin:conversions_question_launch", args=["label"])),
    }


POST_DATA = {
    "category_retry": {"category": "timeout"},
    "review_decide": json.dumps({"action": "approve"}),
    "bulk_approve": {"min_score": "0.1"},
    "launch_label": {"batch_size": 10, "max_concurrent": 1, "_launch": "1"},
}


def redirects(world) -> dict[str, str]:
    """Where the allowed POST endpoints send the user back to (every other allowed view
    answers 200 itself)."""
    job, failed = world["job"].pk, world["failed"]
    return {
        "job_pause": reverse("admin:conversions_job_change", args=[job]),
        "job_cancel": reverse("admin:conversions_job_change", args=[job]),
        "job_retry": reverse("admin:conversions_job_change", args=[job]),
        "item_retry": reverse("admin:conversions_item_change", args=[failed]),
        "category_retry": reverse("admin:conversions_item_failures"),
        "bulk_approve": reverse("admin:conversions_item_review"),
    }


def call(client, world, name):
    method, url = urls(world)[name]
    if method == "get":
        return client.get(url)
    data = POST_DATA.get(name, {})
    if isinstance(data, str):
        return client.post(url, data, content_type="application/json")
    return client.post(url, data)


ALLOWED = {
    "operators": {
        "dashboard",
        "dashboard_data",
        "job_page",
        "job_stats",
        "job_export",
        "failures",
        "item_page",
        "job_pause",
        "job_cancel",
        "job_retry",
        "item_retry",
        "category_retry",
        "launch_convert",
        "launch_label",
    },
    "reviewers": {
        "dashboard",
        "dashboard_data",
        "job_page",
        "job_stats",
        "job_export",
        "failures",
        "item_page",
        "review",
        "review_next",
        "review_decide",
        "bulk_approve",
    },
    "viewers": {
        "dashboard",
        "dashboard_data",
        "job_page",
        "job_stats",
        "job_export",
        "failures",
        "item_page",
    },
}


def test_the_migration_made_three_groups_with_their_permissions():
    def perms(name):
        return set(Group.objects.get(name=name).permissions.values_list("codename", flat=True))

    operators, reviewers, viewers = perms("operators"), perms("reviewers"), perms("viewers")
    assert {"run_job", "add_question", "change_question", "view_job"} <= operators
    assert "review_item" not in operators
    assert {"review_item", "view_item", "view_question"} <= reviewers
    assert not {"run_job", "change_question", "add_question"} & reviewers
    assert all(p.startswith("view_") for p in viewers)
    assert {"view_question", "view_job", "view_item", "view_reviewevent"} <= viewers


def test_anonymous_users_and_non_staff_go_to_the_login_page(client, world):
    User.objects.create_user("plain", password="x" * 12)
    for name in urls(world):
        response = call(client, world, name)
        assert response.status_code == 302, name
        assert response["Location"].startswith(LOGIN), name
    client.login(username="plain", password="x" * 12)
    assert call(client, world, "review")["Location"].startswith(LOGIN)


@pytest.mark.parametrize("group", ["operators", "reviewers", "viewers"])
def test_each_group_reaches_exactly_its_views(client, world, group):
    login(client, staff_user(f"user-{group}", group))
    back_to = redirects(world)
    for name in urls(world):
        response = call(client, world, name)
        if name not in ALLOWED[group]:
            assert response.status_code == 403, (group, name, response.status_code)
        elif name in back_to:
            assert (response.status_code, response["Location"]) == (302, back_to[name]), name
        else:
            assert response.status_code == 200, (group, name, response.status_code)


@pytest.mark.parametrize("group", ["reviewers", "viewers"])
def test_reviewers_and_viewers_get_no_launch_actions_or_buttons(client, world, group):
    changelist = reverse("admin:conversions_question_changelist")
    login(client, staff_user(f"u-{group}", group))
    html = client.get(changelist).content.decode()
    assert "convert_questions" not in html
    assert 'id="mc-convert-all"' not in html
    response = client.post(
        changelist,
        {"action": "convert_questions", "_selected_action": [world["question"].pk], "index": 0},
    )
    # The action is not offered to them: the list is shown again and nothing is launched.
    assert response.status_code == 200
    assert Job.objects.count() == 1  # only the fixture's


def test_operators_get_the_launch_action_and_button(client, world):
    changelist = reverse("admin:conversions_question_changelist")
    login(client, staff_user("u-op", "operators"))
    html = client.get(changelist).content.decode()
    assert "convert_questions" in html and 'id="mc-convert-all"' in html


def test_a_viewer_changes_nothing(client, world):
    login(client, staff_user("vera", "viewers"))
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:conversions_job_dashboard") in index
    assert reverse("admin:conversions_item_review") not in index  # not a reviewer
    question = world["question"]
    change = reverse("admin:conversions_question_change", args=[question.pk])
    assert client.get(change).status_code == 200
    response = client.post(change, {"question_id": "renamed", "mathml": "<math/>"})
    assert response.status_code == 403
    assert client.get(reverse("admin:conversions_question_import")).status_code == 403
    assert client.get(reverse("admin:conversions_question_add")).status_code == 403
    for name in ("job_pause", "job_cancel", "job_retry", "item_retry", "review_decide"):
        assert call(client, world, name).status_code == 403
    question.refresh_from_db()
    assert question.question_id != "renamed"
    job = Job.objects.get()
    assert job.status == Job.Status.QUEUED
    assert Item.objects.get(pk=world["failed"]).status == "failed"
    assert Item.objects.get(pk=world["review"]).review_status == "unreviewed"


def test_a_reviewer_cannot_launch_or_steer_jobs(client, world):
    login(client, staff_user("rita", "reviewers"))
    launch = reverse("admin:conversions_question_launch", args=["convert"])
    response = client.post(
        launch, {"backend": "rules", "batch_size": 10, "max_concurrent": 1, "_launch": "1"}
    )
    assert response.status_code == 403
    assert Job.objects.count() == 1
    assert call(client, world, "job_cancel").status_code == 403
    assert Job.objects.get().status == Job.Status.QUEUED
