"""Unattended runs: recurring jobs, job notifications, the source's own LaTeX.

The groups of 0007 get the new models: everyone views them; operators (who launch jobs)
add, change and delete recurring jobs. Notifications are written by the job's end only.
"""

import django.db.models.deletion
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

GROUP_PERMISSIONS = {
    "operators": [
        "view_recurringjob",
        "add_recurringjob",
        "change_recurringjob",
        "delete_recurringjob",
        "view_jobnotification",
    ],
    "reviewers": ["view_recurringjob", "view_jobnotification"],
    "viewers": ["view_recurringjob", "view_jobnotification"],
}


def grant(apps, schema_editor):
    # Permissions are normally created after the last migration (post_migrate): create
    # them now, so that the groups get them in the same `migrate`.
    app_config = apps.get_app_config("conversions")
    models_module = getattr(app_config, "models_module", None)
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUP_PERMISSIONS.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.add(
                *Permission.objects.filter(
                    content_type__app_label="conversions", codename__in=codenames
                )
            )


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(
        content_type__app_label="conversions",
        content_type__model__in=["recurringjob", "jobnotification"],
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversions", "0012_merge_endpoints"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("conversions", "0007_groups"),
    ]

    operations = [
        migrations.AddField(
            model_name="question",
            name="source_latex",
            field=models.TextField(blank=True, default="", verbose_name="LaTeX in the source"),
            preserve_default=False,
        ),
        migrations.CreateModel(
            name="RecurringJob",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=150, unique=True, verbose_name="name")),
                ("enabled", models.BooleanField(default=True, verbose_name="enabled")),
                (
                    "kind",
                    models.CharField(
                        choices=[("convert", "Conversion"), ("label", "Labeling")],
                        default="convert",
                        max_length=10,
                        verbose_name="kind",
                    ),
                ),
                (
                    "questions",
                    models.CharField(
                        choices=[
                            ("pending", "Without a result yet"),
                            ("all", "All questions"),
                        ],
                        default="pending",
                        help_text="Without a result yet: no accepted LaTeX (conversion), no labels from the schema (labeling).",
                        max_length=10,
                        verbose_name="questions",
                    ),
                ),
                (
                    "subject",
                    models.CharField(
                        blank=True,
                        help_text="Blank: every subject.",
                        max_length=50,
                        verbose_name="subject",
                    ),
                ),
                (
                    "grade",
                    models.CharField(
                        blank=True,
                        help_text="Blank: every grade.",
                        max_length=30,
                        verbose_name="grade",
                    ),
                ),
                ("job_settings", models.JSONField(default=dict, verbose_name="job settings")),
                ("daily_at", models.TimeField(blank=True, null=True, verbose_name="every day at")),
                (
                    "cron",
                    models.CharField(blank=True, max_length=100, verbose_name="cron expression"),
                ),
                ("last_scheduled_for", models.CharField(blank=True, editable=False, max_length=40)),
                (
                    "last_run_at",
                    models.DateTimeField(
                        blank=True, editable=False, null=True, verbose_name="last run"
                    ),
                ),
                (
                    "last_message",
                    models.TextField(blank=True, editable=False, verbose_name="last run's message"),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="created")),
                ("updated_at", models.DateTimeField(auto_now=True, verbose_name="updated")),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="created by",
                    ),
                ),
                (
                    "last_job",
                    models.ForeignKey(
                        blank=True,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="conversions.job",
                        verbose_name="last job",
                    ),
                ),
                (
                    "schedule",
                    models.OneToOneField(
                        blank=True,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="django_q.schedule",
                        verbose_name="schedule",
                    ),
                ),
            ],
            options={
                "verbose_name": "recurring job",
                "verbose_name_plural": "recurring jobs",
                "ordering": ["name"],
            },
        ),
        migrations.CreateModel(
            name="JobNotification",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "channel",
                    models.CharField(
                        choices=[("email", "E-mail"), ("webhook", "Webhook (Slack-compatible)")],
                        max_length=10,
                        verbose_name="channel",
                    ),
                ),
                (
                    "event",
                    models.CharField(
                        choices=[("finished", "Job ended"), ("paused", "Job paused itself")],
                        max_length=10,
                        verbose_name="event",
                    ),
                ),
                ("attempts", models.PositiveIntegerField(default=0, verbose_name="attempts")),
                ("next_attempt_at", models.DateTimeField(verbose_name="next attempt")),
                ("claimed_until", models.DateTimeField(blank=True, null=True)),
                ("sent_at", models.DateTimeField(blank=True, null=True, verbose_name="sent")),
                ("last_error", models.TextField(blank=True, verbose_name="last error")),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="created")),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="notifications",
                        to="conversions.job",
                        verbose_name="job",
                    ),
                ),
            ],
            options={
                "verbose_name": "job notification",
                "verbose_name_plural": "job notifications",
                "ordering": ["-id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("sent_at__isnull", True)),
                        fields=["next_attempt_at"],
                        name="job_notification_due_idx",
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("job", "channel", "event"), name="job_notification_once"
                    )
                ],
            },
        ),
        migrations.RunPython(grant, revoke),
    ]
