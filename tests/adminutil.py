"""Helpers for the admin tests: users in the three groups, jobs with items in given states."""

from __future__ import annotations

import importlib

from django.apps import apps
from django.contrib.auth.models import Group, User

from conversions import services
from conversions.jobsettings import JobSettings
from conversions.models import Item, Job, LabelSchema, Question

GROUPS = importlib.import_module("conversions.migrations.0007_groups")
UNATTENDED = importlib.import_module("conversions.migrations.0013_unattended")
PASSWORD = "correct-horse-battery-staple"


def ensure_groups() -> None:
    """The groups the data migrations made (a transactional test flushes them)."""
    if Group.objects.filter(name__in=GROUPS.GROUPS).count() != len(GROUPS.GROUPS):
        GROUPS.create_groups(apps, None)
        UNATTENDED.grant(apps, None)


def staff_user(username: str, group: str | None = None, **extra) -> User:
    ensure_groups()
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True, **extra)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def login(client, user: User):
    client.force_login(user)
    return client


def any_label_schema() -> LabelSchema:
    """The migration's default schema, or a small one where a transactional test's flush
    removed the migration's rows (browser tests)."""
    return LabelSchema.objects.first() or LabelSchema.objects.create(
        name="default",
        instructions="Label the question.",
        fields=[{"name": "grade", "type": "choice", "choices": ["1", "2", "3"]}],
    )


def make_job(questions, *, name: str = "", kind: str = Job.Kind.CONVERT) -> Job:
    """A job over these questions; no task is queued and no endpoint is checked."""
    ids = [q.pk for q in questions]
    return services.job_create(
        job_settings=JobSettings(
            kind=kind,
            backend=Job.Backend.OPENAI if kind == Job.Kind.LABEL else Job.Backend.RULES,
            name=name,
            label_schema=any_label_schema() if kind == Job.Kind.LABEL else None,
        ),
        questions=Question.objects.filter(pk__in=ids),
        selection={"ids": ids},
        enqueue=False,
        check_config=False,
    )


def set_items(job: Job, n: int, **fields) -> list[int]:
    """Give the first n still-pending items of the job these field values."""
    ids = list(
        Item.objects.filter(job=job, status=Item.Status.PENDING)
        .order_by("id")
        .values_list("id", flat=True)[:n]
    )
    Item.objects.filter(pk__in=ids).update(**fields)
    return ids
