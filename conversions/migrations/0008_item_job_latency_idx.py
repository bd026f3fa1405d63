from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversions", "0007_groups"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="item",
            index=models.Index(fields=["job", "latency_ms"], name="item_job_latency_idx"),
        ),
    ]
