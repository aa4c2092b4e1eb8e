"""ImportBatch.dispatched_at (when its items were sent to the workers) and the `expanded`
status of an archive item whose members became items of their own."""

from __future__ import annotations

from django.db import migrations, models
from django.db.models import F


def batches_so_far_were_sent(apps, schema_editor) -> None:
    # Before this field every batch was sent when it was staged; without this, the beat task
    # would take every old unfinished batch for one that was never sent.
    ImportBatch = apps.get_model("labelling", "ImportBatch")
    ImportBatch.objects.filter(dispatched_at__isnull=True).update(dispatched_at=F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("labelling", "0006_clip_rms_backfill"),
    ]

    operations = [
        migrations.AddField(
            model_name="importbatch",
            name="dispatched_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When its pending items were last sent to the workers; empty: not "
                "sent (the broker was down), the beat task sends them.",
                null=True,
            ),
        ),
        migrations.RunPython(batches_so_far_were_sent, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="importitem",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("accepted", "Accepted"),
                    ("duplicate", "Duplicate"),
                    ("rejected", "Rejected"),
                    ("expanded", "Archive expanded"),
                ],
                default="pending",
                max_length=10,
            ),
        ),
    ]
