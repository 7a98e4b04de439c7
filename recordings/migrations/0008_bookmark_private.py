from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("recordings", "0007_archive_originals_schedule")]

    operations = [
        migrations.AddField(model_name="bookmark", name="private", field=models.BooleanField(default=False)),
    ]
