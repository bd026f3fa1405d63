"""The `default` label schema's help texts in Korean, with Korean display names.

Only a schema whose fields are still exactly those 0005 shipped is changed: a schema
edited in the admin is the user's and stays as it is. The field names (keys of the
answer and of the label_<name> CSV columns) and the allowed values do not change, so
existing labels keep their meaning and the version stays.
"""

import copy
import importlib

from django.db import migrations

SHIPPED = importlib.import_module("conversions.migrations.0005_default_label_schema").FIELDS

KOREAN = {
    "unit": ("단원", "문제가 주로 다루는 교육과정 단원(주제)."),
    "difficulty": ("난이도", "1 매우 쉬움, 2 쉬움, 3 보통, 4 어려움, 5 매우 어려움."),
    "skill_type": ("능력 유형", "문제가 주로 요구하는 능력."),
    "keywords": ("키워드", "사용된 개념, 공식, 방법을 나타내는 짧은 키워드 최대 5개."),
}


def korean_fields(fields: list[dict]) -> list[dict]:
    result = copy.deepcopy(fields)
    for field in result:
        title, description = KOREAN[field["name"]]
        field["title"] = title
        field["description"] = description
    return result


def replace_fields(apps, old: list[dict], new: list[dict]) -> None:
    LabelSchema = apps.get_model("conversions", "LabelSchema")
    for schema in LabelSchema.objects.filter(name="default"):
        if schema.fields == old:  # compared as Python data, whatever the database
            schema.fields = new
            schema.save(update_fields=["fields"])


def to_korean(apps, schema_editor):
    replace_fields(apps, SHIPPED, korean_fields(SHIPPED))


def to_english(apps, schema_editor):
    replace_fields(apps, korean_fields(SHIPPED), SHIPPED)


class Migration(migrations.Migration):
    dependencies = [("conversions", "0008_item_job_latency_idx")]
    operations = [migrations.RunPython(to_korean, to_english)]
