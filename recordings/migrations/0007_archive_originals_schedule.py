"""Schedule the removal of originals replaced by an accepted archive copy: django-celery-beat runs
recordings.tasks.archive_originals_apply every night (a data migration, like the retention one)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

TASK_NAME = "Remove originals replaced by an archive copy"


def schedule(apps: Any, schema_editor: Any) -> None:
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="0", hour="4", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={"task": "recordings.tasks.archive_originals_apply", "crontab": crontab, "enabled": True},
    )


def unschedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("recordings", "0006_archive"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
