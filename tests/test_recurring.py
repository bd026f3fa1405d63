"""Recurring jobs: JobSettings as a mapping, the django-q2 schedule kept in step, each
firing's job created by job_create, the admin form, and a schedule firing by itself on a
live qcluster."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.scheduler import scheduler

from conversions import services
from conversions.jobsettings import JobSettings
from conversions.models import Job, JobNotification, Question, RecurringJob
from conversions.preflight import ConfigurationError
from tests.adminutil import any_label_schema, login, staff_user
from tests.jobutil import Cluster, make_questions, wait_until
from tests.notifyutil import WebhookReceiver

pytestmark = pytest.mark.django_db

SEOUL = ZoneInfo("Asia/Seoul")


def recurring(**fields) -> RecurringJob:
    values = {
        "name": "nightly",
        "daily_at": datetime.time(2, 0),
        "job_settings": JobSettings(backend=Job.Backend.RULES, batch_size=50).to_mapping(),
    }
    values.update(fields)
    made = RecurringJob.objects.create(**values)
    services.recurring_job_sync(recurring=made)
    return made


# --- JobSettings as a mapping ------------------------------------------------------------


def test_job_settings_go_through_a_mapping_unchanged(llm):
    schema = any_label_schema()
    endpoint = JobSettings(backend="openai").resolved().endpoint
    chosen = JobSettings(
        kind=Job.Kind.LABEL,
        backend=Job.Backend.OPENAI,
        model="gpt-4o-mini",
        batch_size=20,
        max_concurrent=3,
        rpm_limit=600,
        use_cache=False,
        label_schema=schema,
        endpoint=endpoint,
        limit=100,
    )
    mapping = chosen.to_mapping()
    assert mapping["endpoint"] == endpoint.pk and mapping["label_schema"] == schema.pk
    assert JobSettings.from_mapping(mapping) == chosen
    # A mapping saved before a setting existed takes that setting's default.
    assert JobSettings.from_mapping({"backend": "rules"}) == JobSettings(backend="rules")


def test_a_mapping_with_a_setting_this_version_cannot_honour_is_refused():
    with pytest.raises(ConfigurationError, match="Unknown job settings: turbo"):
        JobSettings.from_mapping({"backend": "rules", "turbo": True})
    with pytest.raises(ConfigurationError, match="endpoint 999 of these settings no longer"):
        JobSettings.from_mapping({"backend": "openai", "endpoint": 999})


# --- the schedule ------------------------------------------------------------------------


def test_saving_creates_updates_and_disabling_deletes_the_cron_schedule(settings):
    made = recurring()
    schedule = Schedule.objects.get(pk=made.schedule_id)
    assert (schedule.func, schedule.args, schedule.schedule_type, schedule.cron) == (
        "conversions.tasks.recurring_job_run",
        repr(made.pk),
        Schedule.CRON,
        "0 2 * * *",
    )
    assert schedule.intended_date_kwarg == "scheduled_for" and schedule.repeats == -1
    next_local = schedule.next_run.astimezone(SEOUL)
    assert (next_local.hour, next_local.minute) == (2, 0)  # 02:00 in TIME_ZONE (Seoul)
    assert timezone.now() < schedule.next_run <= timezone.now() + datetime.timedelta(days=1)

    made.daily_at, made.cron = None, "30 1 * * 1-5"
    made.save()
    services.recurring_job_sync(recurring=made)
    schedule.refresh_from_db()
    assert schedule.cron == "30 1 * * 1-5" and made.schedule_id == schedule.pk
    assert schedule.next_run.astimezone(SEOUL).weekday() < 5

    made.enabled = False
    made.save()
    services.recurring_job_sync(recurring=made)
    assert not Schedule.objects.filter(pk=schedule.pk).exists()
    made.refresh_from_db()
    assert made.schedule_id is None

    made.enabled = True
    made.save()
    services.recurring_job_sync(recurring=made)
    assert Schedule.objects.filter(pk=made.schedule_id, cron="30 1 * * 1-5").exists()
    services.recurring_job_delete(recurring=made)
    assert not Schedule.objects.filter(func="conversions.tasks.recurring_job_run").exists()


# --- a firing ----------------------------------------------------------------------------


def test_a_firing_creates_a_job_over_the_questions_with_no_latex_yet():
    questions = make_questions(4)
    Question.objects.filter(pk=questions[0].pk).update(
        conversion_state=Question.ConversionState.CONVERTED, latex="x"
    )
    made = recurring(name="no LaTeX yet")
    message = services.recurring_job_launch(recurring_id=made.pk, scheduled_for="t1")
    made.refresh_from_db()
    job = made.last_job
    assert message == f"Job {job.pk} started with 3 item(s)." == made.last_message
    assert (job.backend, job.batch_size, job.total_items, job.status) == ("rules", 50, 3, "queued")
    assert job.name.startswith("no LaTeX yet · ")
    assert job.selection["source"] == "recurring" and job.selection["recurring_job"] == made.pk
    assert set(job.items.values_list("question_id", flat=True)) == {q.pk for q in questions[1:]}

    # The same firing delivered twice starts nothing; a new firing waits for the job.
    assert "already ran" in services.recurring_job_launch(recurring_id=made.pk, scheduled_for="t1")
    waiting = services.recurring_job_launch(recurring_id=made.pk, scheduled_for="t2")
    assert waiting == f"Job {job.pk} of the previous run is still Queued: nothing started."
    assert Job.objects.count() == 1

    Job.objects.filter(pk=job.pk).update(status=Job.Status.COMPLETED)
    Question.objects.update(conversion_state=Question.ConversionState.CONVERTED, latex="x")
    idle = services.recurring_job_launch(recurring_id=made.pk, scheduled_for="t3")
    assert idle == "No questions to work on: nothing started." and Job.objects.count() == 1


def test_a_firing_filters_by_subject_and_grade_and_can_take_every_question():
    make_questions(2, prefix="A")
    math = make_questions(3, prefix="B")
    Question.objects.filter(pk__in=[q.pk for q in math]).update(subject="수학", grade="중1")
    Question.objects.filter(pk=math[0].pk).update(conversion_state="approved", latex="1")
    made = recurring(questions=RecurringJob.Questions.ALL, subject="수학", grade="중1")
    services.recurring_job_launch(recurring_id=made.pk)
    made.refresh_from_db()
    assert made.last_job.total_items == 3  # approved ones too: "all questions"


def test_a_firing_of_a_labeling_job_takes_the_unlabeled_questions(llm):
    questions = make_questions(3, prefix="T")
    schema = any_label_schema()
    Question.objects.filter(pk=questions[0].pk).update(
        labels={"grade": "1"}, labels_meta={"schema": schema.name}
    )
    mapping = JobSettings(
        kind=Job.Kind.LABEL, backend=Job.Backend.OPENAI, label_schema=schema
    ).to_mapping()
    made = recurring(kind=Job.Kind.LABEL, job_settings=mapping)
    services.recurring_job_launch(recurring_id=made.pk)
    made.refresh_from_db()
    job = made.last_job
    assert (job.kind, job.label_schema_id, job.endpoint is not None) == ("label", schema.pk, True)
    assert set(job.items.values_list("question_id", flat=True)) == {q.pk for q in questions[1:]}


def test_a_firing_whose_settings_cannot_work_leaves_a_failed_job_that_is_notified(settings):
    settings.MATHCONV_SLACK_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    make_questions(2)
    made = recurring(job_settings={"backend": "rules", "batch_size": 0})
    message = services.recurring_job_launch(recurring_id=made.pk)
    made.refresh_from_db()
    job = made.last_job
    assert message == (
        f"Job {job.pk} failed to start: Batch size and concurrency must be at least 1."
    )
    assert (job.status, job.total_items) == (Job.Status.FAILED, 0)
    assert job.error_message == "Batch size and concurrency must be at least 1."
    assert list(JobNotification.objects.values_list("job", "event")) == [(job.pk, "finished")]
    # The next firing is not blocked by it: the failed job is final.
    made.job_settings = {"backend": "rules"}
    made.save()
    assert "started with 2 item(s)" in services.recurring_job_launch(recurring_id=made.pk)


def test_a_disabled_or_deleted_recurring_job_starts_nothing():
    make_questions(1)
    made = recurring(enabled=False)
    assert services.recurring_job_launch(recurring_id=made.pk) == "Disabled: nothing started."
    assert services.recurring_job_launch(recurring_id=made.pk + 1000).endswith("does not exist")
    assert not Job.objects.exists()


# --- the admin ---------------------------------------------------------------------------


def form_data(**changes) -> dict:
    data = {
        "name": "nightly",
        "enabled": "on",
        "kind": "convert",
        "questions": "pending",
        "subject": "",
        "grade": "",
        "daily_at": "02:00",
        "cron": "",
        "backend": "rules",
        "model": "",
        "endpoint": "",
        "batch_size": "100",
        "max_concurrent": "10",
        "rpm_limit": "",
        "tpm_limit": "",
        "use_cache": "on",
        "limit": "500",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_an_operator_adds_a_recurring_job_and_its_schedule_in_the_admin(client):
    login(client, staff_user("op", "operators"))
    add = reverse("admin:conversions_recurringjob_add")
    response = client.post(add, form_data())
    assert response.status_code == 302, response.context["adminform"].form.errors
    made = RecurringJob.objects.get()
    assert made.job_settings == JobSettings(backend="rules", limit=500).to_mapping()
    assert made.created_by.username == "op"
    assert Schedule.objects.get(pk=made.schedule_id).cron == "0 2 * * *"
    change = reverse("admin:conversions_recurringjob_change", args=[made.pk])
    page = client.get(change).content.decode()
    assert 'name="batch_size" value="100"' in page and 'name="limit" value="500"' in page
    response = client.post(change, form_data(enabled=None, daily_at="", cron="15 3 * * *"))
    assert response.status_code == 302
    made.refresh_from_db()
    assert (made.enabled, made.cron, made.schedule_id) == (False, "15 3 * * *", None)
    assert not Schedule.objects.filter(func="conversions.tasks.recurring_job_run").exists()
    delete = reverse("admin:conversions_recurringjob_delete", args=[made.pk])
    client.post(delete, {"post": "yes"})
    assert not RecurringJob.objects.exists()


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"daily_at": ""}, "Give either a daily time or a cron expression."),
        ({"cron": "0 2 * * *"}, "Give either a daily time or a cron expression."),
        ({"daily_at": "", "cron": "61 2 * * *"}, "61"),
        ({"kind": "label", "label_schema": ""}, "A labeling job needs a label schema."),
    ],
)
def test_the_admin_form_refuses_a_schedule_or_settings_that_cannot_work(client, changes, error):
    login(client, staff_user("op", "operators"))
    response = client.post(reverse("admin:conversions_recurringjob_add"), form_data(**changes))
    assert response.status_code == 200
    assert error in str(response.context["adminform"].form.errors)
    assert (
        not RecurringJob.objects.exists()
        and not Schedule.objects.filter(func="conversions.tasks.recurring_job_run").exists()
    )


def test_run_now_starts_the_job_for_operators_only(client):
    make_questions(2)
    made = recurring()
    changelist = reverse("admin:conversions_recurringjob_changelist")
    action = {"action": "run_now", "_selected_action": [made.pk], "index": 0}
    login(client, staff_user("viewer", "viewers"))
    client.post(changelist, action)
    assert not Job.objects.exists()
    login(client, staff_user("op", "operators"))
    response = client.post(changelist, action, follow=True)
    job = Job.objects.get()
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [f"nightly: Job {job.pk} started with 2 item(s)."]


# --- on a live cluster -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_scheduled_job_runs_by_itself_and_its_end_is_notified_once():
    make_questions(30, prefix="S")
    with WebhookReceiver() as receiver:
        made = RecurringJob.objects.create(
            name="every minute",
            cron="* * * * *",
            job_settings=JobSettings(backend=Job.Backend.RULES, batch_size=10).to_mapping(),
        )
        services.recurring_job_sync(recurring=made)
        # Due now. A cluster's sentinel calls django-q2's scheduler() every 30 s, first
        # 30 s after it starts; the test makes that pass itself (the same function, on
        # the same database and broker) instead of waiting for it. The cluster's settings
        # leave the scheduler on, so its own passes would fire the schedule as well.
        assert Conf.SCHEDULER
        Schedule.objects.filter(pk=made.schedule_id).update(
            next_run=timezone.now() - datetime.timedelta(minutes=1)
        )
        running = Cluster(MATHCONV_SLACK_WEBHOOK_URL=receiver.url).start()
        try:
            scheduler(broker=get_broker())
            assert Schedule.objects.get(pk=made.schedule_id).next_run > timezone.now()
            wait_until(lambda: receiver.delivered(), timeout=150, interval=0.5)
            made.refresh_from_db()
            made.enabled = False
            made.save()
            services.recurring_job_sync(recurring=made)  # no further firings
            wait_until(
                lambda: (
                    not JobNotification.objects.filter(sent_at__isnull=True).exists()
                    and Job.objects.exclude(status__in=Job.FINAL_STATUSES).count() == 0
                ),
                timeout=60,
            )
        finally:
            running.stop()
    made.refresh_from_db()
    first = Job.objects.order_by("pk").first()
    assert first.selection["recurring_job"] == made.pk and first.total_items == 30
    assert first.status == Job.Status.COMPLETED
    assert Question.objects.unconverted().count() == 0
    finished = list(Job.objects.filter(status__in=Job.FINAL_STATUSES).values_list("pk", flat=True))
    # Exactly one message per finished job (a later firing found nothing to do).
    assert sorted(receiver.delivered_jobs()) == sorted(finished) == [first.pk]
    assert len(receiver.received) == 1
