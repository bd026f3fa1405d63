from decimal import Decimal

from django.db import migrations

PRICES = [
    # model, $ per 1M input tokens, $ per 1M output tokens (Batch API: half of that)
    ("gpt-4.1-mini", Decimal("0.40"), Decimal("1.60")),
    ("gpt-4o-mini", Decimal("0.15"), Decimal("0.60")),
]


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("conversions", "ModelPrice")
    for model, price_in, price_out in PRICES:
        ModelPrice.objects.get_or_create(
            model=model,
            defaults={
                "input_per_mtok": price_in,
                "output_per_mtok": price_out,
                "batch_discount": Decimal("0.5"),
            },
        )


class Migration(migrations.Migration):
    dependencies = [("conversions", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
