"""Recurring jobs and job notifications in the admin.

A recurring job's settings are the launch page's fields (launch.ConvertForm and
LabelForm, less the ones a recurring job decides itself), stored as the JobSettings
mapping; a setting added to the launch page appears here too. Saving or deleting goes
through services.recurring_job_sync / recurring_job_delete, which keep its django-q2
schedule in step. Adding, changing, deleting and "Run now" need the model permission
and run_job (a recurring job launches jobs).

Notifications are read only: the job's end writes them, delivery records what happened.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django_q.models import validate_cron

from conversions import services
from conversions.admin.access import RUN_JOBS, require_perm
from conversions.admin.launch import ConvertForm, LabelForm
from conversions.jobsettings import JobSettings
from conversions.models import Job, JobNotification, RecurringJob
from conversions.preflight import ConfigurationError

# Launch-page fields a recurring job sets itself: its own name, every question of the
# selection (not a test), "only unconverted / unlabeled" from its `questions` choice.
NOT_SETTINGS = ("name", "test_mode", "only_unconverted", "only_unlabeled")


def setting_fields() -> dict[str, forms.Field]:
    """The job settings fields of the launch forms, and the per-run limit."""
    found: dict[str, forms.Field] = {}
    for form in (ConvertForm, LabelForm):
        for name, field in form.base_fields.items():
            if name not in NOT_SETTINGS and name not in found:
                found[name] = copy.deepcopy(field)
    found["backend"].required = False
    found["backend"].help_text = _("Conversion only; labeling runs on the openai backend.")
    found["label_schema"].required = False
    found["label_schema"].help_text = _("Labeling only.")
    found["limit"] = forms.IntegerField(
        label=_("at most this many questions per run"),
        min_value=1,
        required=False,
        help_text=_("Blank: every selected question."),
    )
    return found


# Which backend (or schema) first, as on the launch page; then the rest in form order.
FIRST = ("backend", "label_schema", "model", "endpoint")
SETTING_FIELDS = (*FIRST, *(name for name in setting_fields() if name not in FIRST))


class RecurringJobFormBase(forms.ModelForm):
    class Meta:
        model = RecurringJob
        fields = ("name", "enabled", "kind", "questions", "subject", "grade", "daily_at", "cron")
        help_texts = {
            "daily_at": _("Every day at this time (HH:MM, in TIME_ZONE)."),
            "cron": _(
                "Or a cron expression in TIME_ZONE: minute hour day month weekday, e.g. "
                "“0 2 * * *” every night at 02:00, “30 1 * * 1-5” weekdays at 01:30."
            ),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.job_settings:
            try:
                current = JobSettings.from_mapping(self.instance.job_settings)
            except ConfigurationError:
                current = None  # shown blank; saving again stores valid settings
            if current is not None:
                for name in SETTING_FIELDS:
                    if hasattr(current, name):
                        self.initial[name] = getattr(current, name)

    def clean_cron(self) -> str:
        cron = " ".join(self.cleaned_data.get("cron", "").split())
        if cron:
            validate_cron(cron)
        return cron

    def clean(self):
        data = super().clean()
        if bool(data.get("daily_at")) == bool(data.get("cron")):
            raise ValidationError(_("Give either a daily time or a cron expression."))
        kind = data.get("kind") or Job.Kind.CONVERT
        if kind == Job.Kind.LABEL:
            backend = Job.Backend.OPENAI
            if not data.get("label_schema"):
                self.add_error("label_schema", _("A labeling job needs a label schema."))
        else:
            backend = data.get("backend") or Job.Backend.RULES
        if self.errors:
            return data
        job_settings = JobSettings.from_form(kind=kind, backend=backend, data=data)
        self.job_settings = replace(
            job_settings,
            name="",
            limit=data.get("limit"),
            label_schema=job_settings.label_schema if kind == Job.Kind.LABEL else None,
        )
        return data

    def save(self, commit=True):
        self.instance.job_settings = self.job_settings.to_mapping()
        return super().save(commit)


# The settings fields become declared fields of the form class, so that the admin's
# fieldsets can name them.
RecurringJobForm = type(
    "RecurringJobForm",
    (RecurringJobFormBase,),
    {"__module__": __name__, **setting_fields()},
)


@admin.register(RecurringJob)
class RecurringJobAdmin(admin.ModelAdmin):
    form = RecurringJobForm
    list_display = (
        "name",
        "enabled",
        "kind",
        "questions",
        "when",
        "next_run",
        "last_run_at",
        "last_job_link",
        "last_message_excerpt",
    )
    list_filter = ("enabled", "kind")
    list_select_related = ("schedule", "last_job")
    search_fields = ("name",)
    actions = ["run_now"]
    readonly_fields = (
        "next_run",
        "last_run_at",
        "last_job_link",
        "last_message",
        "created_by",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("name", "enabled", "kind", "questions", "subject", "grade")}),
        (_("When"), {"fields": ("daily_at", "cron", "next_run")}),
        (_("Job settings"), {"fields": SETTING_FIELDS}),
        (
            _("Last run"),
            {
                "fields": (
                    "last_run_at",
                    "last_job_link",
                    "last_message",
                    "created_by",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    def _may_run(self, request) -> bool:
        return request.user.has_perm(RUN_JOBS)

    def has_add_permission(self, request) -> bool:
        return super().has_add_permission(request) and self._may_run(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and self._may_run(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and self._may_run(request)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not (self.has_change_permission(request)):
            actions.pop("run_now", None)
        return actions

    @admin.display(description=_("when"))
    def when(self, obj: RecurringJob) -> str:
        return obj.cron_expression or "-"

    @admin.display(description=_("next run"))
    def next_run(self, obj: RecurringJob) -> str:
        if obj.schedule is None or obj.schedule.next_run is None:
            return "-"
        return f"{timezone.localtime(obj.schedule.next_run):%Y-%m-%d %H:%M}"

    @admin.display(description=_("last job"))
    def last_job_link(self, obj: RecurringJob):
        if obj.last_job is None:
            return "-"
        url = reverse("admin:conversions_job_change", args=[obj.last_job_id])
        return format_html(
            '<a href="{}">{}</a> ({})', url, obj.last_job, obj.last_job.get_status_display()
        )

    @admin.display(description=_("last run's message"))
    def last_message_excerpt(self, obj: RecurringJob) -> str:
        return Truncator(obj.last_message).chars(120)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        services.recurring_job_sync(recurring=obj)

    def delete_model(self, request, obj):
        services.recurring_job_delete(recurring=obj)

    def delete_queryset(self, request, queryset: QuerySet[RecurringJob]):
        for recurring in queryset:
            services.recurring_job_delete(recurring=recurring)

    @admin.action(description=_("Run the selected recurring jobs now"))
    def run_now(self, request, queryset: QuerySet[RecurringJob]):
        require_perm(request, RUN_JOBS, "conversions.change_recurringjob")
        for recurring in queryset:
            outcome = services.recurring_job_launch(recurring_id=recurring.pk)
            messages.info(request, f"{recurring}: {outcome}")


class DeliveryFilter(admin.SimpleListFilter):
    title = _("delivery")
    parameter_name = "delivery"

    def lookups(self, request, model_admin):
        return [
            ("sent", _("Sent")),
            ("pending", _("Not sent yet")),
            ("failing", _("Not sent, with an error")),
        ]

    def queryset(self, request, queryset):
        if self.value() == "sent":
            return queryset.filter(sent_at__isnull=False)
        if self.value() == "pending":
            return queryset.filter(sent_at__isnull=True)
        if self.value() == "failing":
            return queryset.filter(sent_at__isnull=True).exclude(last_error="")
        return queryset


@admin.register(JobNotification)
class JobNotificationAdmin(admin.ModelAdmin):
    list_display = (
        "job",
        "event",
        "channel",
        "sent_at",
        "attempts",
        "next_attempt_at",
        "error_excerpt",
    )
    list_filter = (DeliveryFilter, "channel", "event")
    list_select_related = ("job",)
    search_fields = ("job__name",)

    def has_add_permission(self, request) -> bool:
        return False  # written by the job's end

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deleted with its job

    @admin.display(description=_("last error"))
    def error_excerpt(self, obj: JobNotification) -> str:
        return Truncator(obj.last_error).chars(120)
