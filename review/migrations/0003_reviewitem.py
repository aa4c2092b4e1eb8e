import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("labelling", "0008_interop_label_source_weak_label"),
        ("review", "0002_qualitysnapshot_agreement"),
    ]

    operations = [
        migrations.RemoveField(model_name="qualitysnapshot", name="review_queue"),
        migrations.CreateModel(
            name="ReviewItem",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("gold_failed", models.BooleanField(default=False)),
                ("disagreement", models.BooleanField(default=False)),
                ("unsure", models.BooleanField(default=False)),
                ("clip", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="review_items", to="labelling.clip")),
                ("project", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="review_items", to="labelling.project")),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("project", "clip"), name="one_review_item_per_clip")],
            },
        ),
    ]
