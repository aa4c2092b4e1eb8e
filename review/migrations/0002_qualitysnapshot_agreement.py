from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("review", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="qualitysnapshot",
            name="agreement",
            field=models.JSONField(default=dict),
        ),
    ]
