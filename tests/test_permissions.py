import datetime
import json
import re

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task

from conversions.endpoints import endpoint_default
from conversions.models import (
    Item,
    Job,
    JobNotification,
    ModelPrice,
    Question,
    RecurringJob,
    ReviewEvent,
)
from tests.adminutil import (
    PASSWORD,
    any_label_schema,
    ensure_groups,
    login,
    make_job,
    set_items,
    staff_user,
)
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
        "llm_retry": ("post", reverse("admin:conversions_item_retry_llm")),
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
    "llm_retry": {"backend": "hybrid"},
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
        "llm_retry": reverse("admin:conversions_item_failures"),
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
    recurring = {"add_recurringjob", "change_recurringjob", "delete_recurringjob"}
    assert recurring <= operators and not recurring & (reviewers | viewers)
    assert {"view_recurringjob", "view_jobnotification"} <= operators & reviewers & viewers


def test_anonymous_users_and_non_staff_go_to_the_login_page(client, world):
    User.objects.create_user("plain", password="x" * 12)
    for name in urls(world):
        response = call(client, world, name)
        assert response.status_code == 302, name
        assert response["Location"].startswith(LOGIN), name
    client.login(username="plain", password="x" * 12)
    assert call(client, world, "review")["Location"].startswith(LOGIN)


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
    for name in (
        "job_pause",
        "job_cancel",
        "job_retry",
        "item_retry",
        "llm_retry",
        "review_decide",
    ):
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


# --- the matrix: every named admin URL x every role, exact statuses -----------------------

ROLES = ("anonymous", "nonstaff", "staff", "viewers", "reviewers", "operators", "superuser")


def admin_url_names() -> list[str]:
    """Every named URL under the admin site, as the resolver has them (so a new view,
    added by any ModelAdmin's get_urls, shows up here and must be in MATRIX)."""
    names = []

    def walk(patterns, namespace):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, p.namespace or namespace)
            elif namespace == "admin" and p.name:
                names.append(p.name)

    walk(get_resolver().url_patterns, "")
    return sorted(set(names))


@pytest.fixture
def everything(world):
    """One object of every model an admin page shows, keyed by app_model."""
    ensure_groups()
    job = world["job"]
    item = Item.objects.get(pk=world["review"])
    label_job = make_job(make_questions(1, prefix="L"), name="labels", kind=Job.Kind.LABEL)
    label_item = set_items(label_job, 1, status="succeeded", result_labels={"grade": "1"})[0]
    event = ReviewEvent.objects.create(item=item, question=item.question, action="approve")
    schedule = Schedule.objects.get_or_create(name="probe", func="math.floor", args="1")[0]
    ok = Task.objects.create(
        id="a" * 32,
        name="ok",
        func="math.floor",
        started=timezone.now(),
        stopped=timezone.now(),
        success=True,
    )
    bad = Task.objects.create(
        id="b" * 32,
        name="bad",
        func="math.floor",
        started=timezone.now(),
        stopped=timezone.now(),
        success=False,
    )
    queued = OrmQ.objects.create(key="probe", payload="x", lock=timezone.now())
    return {
        "auth_user": User.objects.create_user("someone").pk,
        "auth_group": Group.objects.first().pk,
        "conversions_question": world["question"].pk,
        "conversions_job": job.pk,
        "conversions_item": world["failed"],
        "conversions_reviewevent": event.pk,
        "conversions_modelprice": ModelPrice.objects.get_or_create(
            model="probe-model",
            defaults={"input_per_mtok": 1, "output_per_mtok": 2},
        )[0].pk,
        "conversions_endpoint": endpoint_default().pk,
        "conversions_labelschema": any_label_schema().pk,
        "conversions_recurringjob": RecurringJob.objects.create(
            name="probe",
            daily_at=datetime.time(2, 0),
            job_settings={"backend": "rules"},
            last_job=job,
            last_message="probe",
        ).pk,
        "conversions_jobnotification": JobNotification.objects.create(
            job=job, channel="webhook", event="finished", next_attempt_at=timezone.now()
        ).pk,
        "django_q_schedule": schedule.pk,
        "django_q_success": ok.pk,
        "django_q_failure": bad.pk,
        "django_q_ormq": queued.pk,
        "label_item": label_item,
        "review_item": world["review"],
    }


def url_for(name: str, objs: dict) -> str:
    """A real URL for a named admin view, its arguments taken from `objs`."""
    special = {
        "view_on_site": lambda: [
            ContentType.objects.get_for_model(Question).pk,
            objs["conversions_question"],
        ],
        "app_list": lambda: ["conversions"],
        "auth_user_password_change": lambda: [objs["auth_user"]],
        "conversions_job_control": lambda: [objs["conversions_job"], "pause"],
        "conversions_job_export": lambda: [objs["conversions_job"], "csv"],
        "conversions_item_review_decide": lambda: [objs["review_item"]],
        "conversions_label_review_item": lambda: [objs["label_item"]],
        "conversions_question_launch": lambda: ["convert"],
    }
    if name in special:
        return reverse(f"admin:{name}", args=special[name]())
    for suffix in ("_history", "_delete", "_change", "_stats", "_retry"):
        if name.endswith(suffix) and name[: -len(suffix)] in objs:
            return reverse(f"admin:{name}", args=[objs[name[: -len(suffix)]]])
    return reverse(f"admin:{name}")


def as_role(client, role: str):
    if role == "superuser":
        client.force_login(User.objects.create_superuser("root", password=PASSWORD))
    elif role == "nonstaff":
        client.force_login(User.objects.create_user("plain", password=PASSWORD))
    elif role == "staff":
        login(client, staff_user("staff-only"))
    elif role != "anonymous":
        login(client, staff_user(f"user-{role}", role))
    return client


def probe(client, name: str, objs: dict) -> int:
    """The status of one request, its effects rolled back: an int, "login" for a redirect
    to the login page, or "-> /path/" for any other redirect."""
    url = url_for(name, objs)
    method, data = MATRIX_METHOD.get(name, ("get", None))
    with transaction.atomic():
        if method == "get":
            response = client.get(url)
        elif isinstance(data, str):
            response = client.post(url, data, content_type="application/json")
        else:
            response = client.post(url, data or {})
        transaction.set_rollback(True)
    if response.status_code == 302:
        location = response["Location"]
        return (
            "login"
            if location.startswith(LOGIN)
            else "-> " + re.sub(r"/\d+/", "/<id>/", location.split("?")[0])
        )
    return response.status_code


MATRIX_METHOD = {
    "conversions_job_control": ("post", None),
    "conversions_question_process_import": ("post", None),
    "conversions_item_retry": ("post", None),
    "conversions_item_retry_category": ("post", {"category": "timeout"}),
    "conversions_item_retry_llm": ("post", {"backend": "hybrid"}),
    "conversions_item_review_decide": ("post", json.dumps({"action": "approve"})),
    "conversions_item_review_bulk": ("post", {"min_score": "0.1"}),
}

# name -> status for each role in ROLES. A 403 is the view's own permission check (or the
# ModelAdmin's has_*_permission); "login" is admin_view turning away anyone not active staff.
# A view the resolver has and this table lacks fails the test: decide who may use it first.
MATRIX = {
    "app_list": ("login", "login", 404, 200, 200, 200, 200),
    "auth_group_add": ("login", "login", 403, 403, 403, 403, 200),
    "auth_group_change": ("login", "login", 403, 403, 403, 403, 200),
    "auth_group_changelist": ("login", "login", 403, 403, 403, 403, 200),
    "auth_group_delete": ("login", "login", 403, 403, 403, 403, 200),
    "auth_group_history": ("login", "login", 403, 403, 403, 403, 200),
    "auth_user_add": ("login", "login", 403, 403, 403, 403, 200),
    "auth_user_change": ("login", "login", 403, 403, 403, 403, 200),
    "auth_user_changelist": ("login", "login", 403, 403, 403, 403, 200),
    "auth_user_delete": ("login", "login", 403, 403, 403, 403, 200),
    "auth_user_history": ("login", "login", 403, 403, 403, 403, 200),
    "auth_user_password_change": ("login", "login", 403, 403, 403, 403, 200),
    "autocomplete": ("login", "login", 403, 403, 403, 403, 403),
    "conversions_item_add": ("login", "login", 403, 403, 403, 403, 403),
    "conversions_item_change": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_item_changelist": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_item_delete": ("login", "login", 403, 403, 403, 403, 403),
    "conversions_item_failures": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_item_history": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_item_retry": (
        "login",
        "login",
        403,
        403,
        403,
        "-> /admin/conversions/item/<id>/change/",
        "-> /admin/conversions/item/<id>/change/",
    ),
    "conversions_item_retry_category": (
        "login",
        "login",
        403,
        403,
        403,
        "-> /admin/conversions/item/failures/",
        "-> /admin/conversions/item/failures/",
    ),
    # Retry with the LLM: without a job or ticked items, back to the failures page.
    "conversions_item_retry_llm": (
        "login",
        "login",
        403,
        403,
        403,
        "-> /admin/conversions/item/failures/",
        "-> /admin/conversions/item/failures/",
    ),
    "conversions_item_review": ("login", "login", 403, 403, 200, 403, 200),
    "conversions_item_review_bulk": (
        "login",
        "login",
        403,
        403,
        "-> /admin/conversions/item/review/",
        403,
        "-> /admin/conversions/item/review/",
    ),
    "conversions_item_review_decide": ("login", "login", 403, 403, 200, 403, 200),
    "conversions_item_review_next": ("login", "login", 403, 403, 200, 403, 200),
    "conversions_job_add": ("login", "login", 403, 403, 403, 403, 403),
    "conversions_job_change": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_job_changelist": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_job_control": (
        "login",
        "login",
        403,
        403,
        403,
        "-> /admin/conversions/job/<id>/change/",
        "-> /admin/conversions/job/<id>/change/",
    ),
    "conversions_job_dashboard": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_job_dashboard_data": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_job_delete": ("login", "login", 403, 403, 403, 403, 200),
    "conversions_job_export": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_job_history": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_job_stats": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_label_review": ("login", "login", 403, 403, 200, 403, 200),
    "conversions_label_review_item": ("login", "login", 403, 403, 200, 403, 200),
    "conversions_labelschema_add": ("login", "login", 403, 403, 403, 200, 200),
    "conversions_labelschema_change": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_labelschema_changelist": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_labelschema_delete": ("login", "login", 403, 403, 403, 403, 200),
    "conversions_labelschema_history": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_endpoint_add": ("login", "login", 403, 403, 403, 403, 200),
    "conversions_endpoint_change": ("login", "login", 403, 403, 403, 403, 200),
    "conversions_endpoint_changelist": ("login", "login", 403, 403, 403, 403, 200),
    "conversions_endpoint_delete": ("login", "login", 403, 403, 403, 403, 200),
    "conversions_endpoint_history": ("login", "login", 403, 403, 403, 403, 200),
    "conversions_modelprice_add": ("login", "login", 403, 403, 403, 403, 200),
    "conversions_modelprice_change": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_modelprice_changelist": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_modelprice_delete": ("login", "login", 403, 403, 403, 403, 200),
    "conversions_modelprice_history": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_question_add": ("login", "login", 403, 403, 403, 200, 200),
    "conversions_question_change": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_question_changelist": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_question_delete": ("login", "login", 403, 403, 403, 403, 200),
    "conversions_question_export": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_question_history": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_question_import": ("login", "login", 403, 403, 403, 200, 200),
    "conversions_question_launch": ("login", "login", 403, 403, 403, 200, 200),
    "conversions_question_process_import": ("login", "login", 403, 403, 403, 200, 200),
    "conversions_recurringjob_add": ("login", "login", 403, 403, 403, 200, 200),
    "conversions_recurringjob_change": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_recurringjob_changelist": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_recurringjob_delete": ("login", "login", 403, 403, 403, 200, 200),
    "conversions_recurringjob_history": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_jobnotification_add": ("login", "login", 403, 403, 403, 403, 403),
    "conversions_jobnotification_change": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_jobnotification_changelist": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_jobnotification_delete": ("login", "login", 403, 403, 403, 403, 403),
    "conversions_jobnotification_history": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_reviewevent_add": ("login", "login", 403, 403, 403, 403, 403),
    "conversions_reviewevent_change": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_reviewevent_changelist": ("login", "login", 403, 200, 200, 200, 200),
    "conversions_reviewevent_delete": ("login", "login", 403, 403, 403, 403, 403),
    "conversions_reviewevent_history": ("login", "login", 403, 200, 200, 200, 200),
    "django_q_failure_add": ("login", "login", 403, 403, 403, 403, 403),
    "django_q_failure_change": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_failure_changelist": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_failure_delete": ("login", "login", 403, 403, 403, 403, 200),
    "django_q_failure_history": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_ormq_add": ("login", "login", 403, 403, 403, 403, 403),
    "django_q_ormq_change": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_ormq_changelist": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_ormq_delete": ("login", "login", 403, 403, 403, 403, 200),
    "django_q_ormq_history": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_schedule_add": ("login", "login", 403, 403, 403, 403, 200),
    "django_q_schedule_change": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_schedule_changelist": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_schedule_delete": ("login", "login", 403, 403, 403, 403, 200),
    "django_q_schedule_history": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_success_add": ("login", "login", 403, 403, 403, 403, 403),
    "django_q_success_change": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_success_changelist": ("login", "login", 403, 403, 403, 200, 200),
    "django_q_success_delete": ("login", "login", 403, 403, 403, 403, 200),
    "django_q_success_history": ("login", "login", 403, 403, 403, 200, 200),
    "index": ("login", "login", 200, 200, 200, 200, 200),
    "jsi18n": ("login", "login", 200, 200, 200, 200, 200),
    "login": (200, 200, "-> /admin/", "-> /admin/", "-> /admin/", "-> /admin/", "-> /admin/"),
    "logout": ("-> /admin/", "-> /admin/", 405, 405, 405, 405, 405),
    "password_change": ("login", "login", 200, 200, 200, 200, 200),
    "password_change_done": ("login", "login", 200, 200, 200, 200, 200),
    "view_on_site": ("login", "login", 404, 404, 404, 404, 404),
}


@pytest.mark.parametrize("role", ROLES)
def test_every_admin_view_answers_each_role_exactly_as_the_matrix_says(client, everything, role):
    names = admin_url_names()
    assert set(names) == set(MATRIX), "views missing from or stale in MATRIX"
    as_role(client, role)
    column = ROLES.index(role)
    actual = {name: probe(client, name, everything) for name in names}
    expected = {name: MATRIX[name][column] for name in names}
    assert actual == expected


# model -> role -> the changelist actions that role is offered on a changelist it can open
# (roles not listed get none). django-q2's resubmit_task carries no permission of its own:
# only the roles that may open its changelists (operators, superusers) get to use it.
ACTIONS = {
    "auth.Group": {"superuser": {"delete_selected"}},
    "auth.User": {"superuser": {"delete_selected"}},
    "conversions.ModelPrice": {"superuser": {"delete_selected"}},
    "conversions.Endpoint": {"superuser": {"delete_selected"}},
    "conversions.LabelSchema": {"superuser": {"delete_selected"}},
    "conversions.Item": {
        "operators": {"retry_selected", "retry_with_llm"},
        "superuser": {"retry_selected", "retry_with_llm"},
    },
    "conversions.RecurringJob": {
        "operators": {"run_now", "delete_selected"},
        "superuser": {"run_now", "delete_selected"},
    },
    "conversions.Question": {
        "operators": {"convert_questions", "label_questions"},
        "superuser": {"convert_questions", "label_questions", "delete_selected"},
    },
    "django_q.Schedule": {"superuser": {"delete_selected"}},
    "django_q.Success": {
        "operators": {"resubmit_task"},
        "superuser": {"resubmit_task", "delete_selected"},
    },
    "django_q.Failure": {
        "operators": {"resubmit_task"},
        "superuser": {"resubmit_task", "delete_selected"},
    },
    "django_q.OrmQ": {"superuser": {"delete_selected"}},
}


@pytest.mark.parametrize("role", ROLES[2:])
def test_each_role_is_offered_exactly_its_changelist_actions(rf, role):
    from django.contrib import admin

    if role == "superuser":
        user = User.objects.create_superuser("root", password=PASSWORD)
    else:
        user = staff_user(f"act-{role}", None if role == "staff" else role)
    request = rf.get("/")
    request.user = user
    actual = {}
    for model, model_admin in admin.site._registry.items():
        if model_admin.has_view_or_change_permission(request):
            offered = set(model_admin.get_actions(request))
            if offered:
                actual[model._meta.label] = offered
    expected = {label: roles[role] for label, roles in ACTIONS.items() if role in roles}
    assert actual == expected
