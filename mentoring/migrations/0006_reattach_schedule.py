"""Schedule the re-attach check: django-celery-beat runs mentoring.tasks.sessions_reattach every
30 seconds, so a live session whose edge restarted without its "edge.started" notice reaching
the site gets its hub, feed and recording back even when no page is there to offer.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TASK_NAME = "Re-attach live sessions to a restarted edge"


def schedule(apps: Any, schema_editor: Any) -> None:
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_30s, _ = IntervalSchedule.objects.get_or_create(every=30, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={"task": "mentoring.tasks.sessions_reattach", "interval": every_30s, "enabled": True},
    )


def unschedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("mentoring", "0005_connection"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
