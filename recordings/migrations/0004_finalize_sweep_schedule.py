"""Schedule the finalize sweep: django-celery-beat runs recordings.tasks.recording_sweep every
minute (recordings stuck in finalizing are rebuilt from the spool, finalized or reported).

A data migration, like the retention schedule: every installation has it after `migrate`.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TASK_NAME = "Finalize recordings left finalizing"


def schedule(apps: Any, schema_editor: Any) -> None:
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={"task": "recordings.tasks.recording_sweep", "interval": every_minute, "enabled": True},
    )


def unschedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("recordings", "0003_bookmark"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
