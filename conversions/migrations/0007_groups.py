"""The three admin roles as groups: operators, reviewers, viewers.

operators launch, pause, resume, cancel and retry jobs and manage the question bank;
reviewers approve, reject and edit results; viewers only look. Superusers can do all.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_ALL = [
    "conversions.view_question",
    "conversions.view_labelschema",
    "conversions.view_job",
    "conversions.view_item",
    "conversions.view_reviewevent",
    "conversions.view_modelprice",
    "conversions.view_cacheentry",
]

GROUPS = {
    "operators": VIEW_ALL
    + [
        "conversions.add_question",
        "conversions.change_question",
        "conversions.add_labelschema",
        "conversions.change_labelschema",
        "conversions.run_job",
        "django_q.view_task",
        "django_q.view_success",
        "django_q.view_failure",
        "django_q.view_ormq",
        "django_q.view_schedule",
    ],
    "reviewers": VIEW_ALL + ["conversions.review_item"],
    "viewers": VIEW_ALL,
}


def create_groups(apps, schema_editor):
    # Permissions are normally created after the last migration (post_migrate); create
    # them now so that a fresh database gets its groups filled in one `migrate`.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for perm in perms:
            app_label, codename = perm.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def delete_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversions", "0006_job_item_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_q", "0018_task_success_index"),
    ]
    operations = [migrations.RunPython(create_groups, delete_groups)]
