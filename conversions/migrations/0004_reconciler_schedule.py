"""The reconciler: a django-q2 schedule that runs every minute.

It picks up jobs whose task was lost (Redis broker, a killed worker) or whose item
leases expired, and enqueues a continuation for them (conversions.tasks.jobs_reconcile).
"""

from datetime import timedelta

from django.db import migrations
from django.utils import timezone

NAME = "mathconv: reconcile jobs"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "conversions.tasks.jobs_reconcile",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": 1,
            "repeats": -1,
            # In the past, so that a cluster runs it at once; not "now", which
            # selectors.cluster_alive would take for a sign of a running cluster.
            "next_run": timezone.now() - timedelta(minutes=5),
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversions", "0003_job_batches_heartbeat_item_saved"),
        ("django_q", "0018_task_success_index"),
    ]
    operations = [migrations.RunPython(create_schedule, delete_schedule)]
