"""Migration 0009: the default label schema speaks Korean unless the user changed it."""

import importlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from conversions.admin.labels import labels_form_field
from conversions.models import LabelSchema

SHIPPED = importlib.import_module("conversions.migrations.0005_default_label_schema").FIELDS
KOREAN = importlib.import_module("conversions.migrations.0009_default_label_schema_korean")


@pytest.mark.django_db
def test_fresh_install_has_korean_help_texts_and_titles():
    schema = LabelSchema.objects.get(name="default")
    assert [f["name"] for f in schema.fields] == [f["name"] for f in SHIPPED]
    assert [f["title"] for f in schema.fields] == ["단원", "난이도", "능력 유형", "키워드"]
    assert schema.fields[0]["description"] == "문제가 주로 다루는 교육과정 단원(주제)."
    assert [f.get("choices") for f in schema.fields] == [f.get("choices") for f in SHIPPED]
    field = labels_form_field(schema.fields[1])
    assert (field.label, field.help_text) == ("난이도", schema.fields[1]["description"])


@pytest.mark.django_db(transaction=True)
def test_a_schema_the_user_edited_is_left_alone():
    executor = MigrationExecutor(connection)
    before = [("conversions", "0008_item_job_latency_idx")]
    latest = executor.loader.graph.leaf_nodes("conversions")
    executor.migrate(before)
    try:
        LabelSchema.objects.filter(name="default").delete()
        edited = [dict(f) for f in SHIPPED]
        edited[0]["description"] = "my own words"
        old_apps = executor.loader.project_state(before).apps
        old_apps.get_model("conversions", "LabelSchema").objects.create(
            name="default", instructions="x", fields=edited, version=3
        )
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
        assert LabelSchema.objects.get(name="default").fields == edited
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
        LabelSchema.objects.filter(name="default").update(fields=KOREAN.korean_fields(SHIPPED))
