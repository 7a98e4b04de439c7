"""Schedule the EHR sweep: django-celery-beat runs hospital.tasks.ehr_links_reconcile every
minute (a recording erased or restricted gets its DocumentReference marked in the EHR).

A data migration, like the retention schedule: every installation has it after `migrate`.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TASK_NAME = "Mark withdrawn recordings in the EHR"


def schedule(apps: Any, schema_editor: Any) -> None:
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={"task": "hospital.tasks.ehr_links_reconcile", "interval": every_minute, "enabled": True},
    )


def unschedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("hospital", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
