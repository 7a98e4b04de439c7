"""Schedule retention: django-celery-beat runs recordings.tasks.retention_apply every night.

A data migration so that every installation has the schedule after `migrate`, editable in the
admin afterwards (a later migrate leaves an edited schedule alone).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TASK_NAME = "Apply recording retention"


def schedule(apps: Any, schema_editor: Any) -> None:
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={"task": "recordings.tasks.retention_apply", "crontab": crontab, "enabled": True},
    )


def unschedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("recordings", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
