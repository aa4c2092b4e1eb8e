import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("labelling", "0008_interop_label_source_weak_label"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Adjudication",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("note", models.TextField(blank=True)),
                ("is_current", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("clip", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="adjudications", to="labelling.clip")),
                ("project", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="adjudications", to="labelling.project")),
                ("reviewer", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="adjudications", to=settings.AUTH_USER_MODEL)),
                ("node", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="adjudications", to="labelling.taxonomynode")),
            ],
            options={
                "ordering": ["pk"],
                "constraints": [
                    models.UniqueConstraint(condition=models.Q(("is_current", True)), fields=("clip",), name="one_current_adjudication")
                ],
                "indexes": [
                    models.Index(condition=models.Q(("is_current", True)), fields=["project", "clip"], name="adjudication_current")
                ],
            },
        ),
        migrations.CreateModel(
            name="QualitySnapshot",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("computed_at", models.DateTimeField()),
                ("last_annotation_id", models.BigIntegerField(default=0)),
                ("seconds", models.FloatField(default=0.0, help_text="How long the computation took.")),
                ("figures", models.JSONField(default=dict)),
                ("review_queue", models.JSONField(default=list)),
                ("project", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="quality_snapshot", to="labelling.project")),
            ],
        ),
    ]
