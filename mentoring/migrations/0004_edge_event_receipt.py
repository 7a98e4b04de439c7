import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("mentoring", "0003_room_ingest_url")]

    operations = [
        migrations.CreateModel(
            name="EdgeEventReceipt",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("event_id", models.CharField(max_length=64, unique=True)),
                ("type", models.CharField(max_length=40)),
                ("session_public_id", models.CharField(max_length=64)),
                ("received_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={"indexes": [models.Index(fields=["received_at"], name="mentoring_e_receive_cf3dd2_idx")]},
        ),
    ]
