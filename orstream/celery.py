"""The Celery application: `celery -A orstream.celery worker` and `... beat`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orstream.settings")

app = Celery("orstream")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
