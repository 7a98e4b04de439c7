"""SMaRT's description, which the instrument lists and the assessment page show to a rater, says
what its source note already does: the nine item names are not verified against the paper and the
anchors are orstream's wording. The items are unchanged (assessments may use them)."""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations

DESCRIPTION = (
    "Nine categories of microsurgical performance, each rated 1 to 5. Unverified: the item names are not checked "
    "against the paper (its abstract does not name them), and the anchors are orstream's wording."
)


def _published(apps: Any) -> Any:
    return apps.get_model("training", "Instrument").objects.filter(slug="smart", version="2014")


def description_unverified(apps: Any, schema_editor: Any) -> None:
    _published(apps).update(description=DESCRIPTION)


def description_as_before(apps: Any, schema_editor: Any) -> None:
    before = importlib.import_module("training.migrations.0002_published_instruments").SMART["description"]
    _published(apps).update(description=before)


class Migration(migrations.Migration):
    dependencies = [("training", "0005_mars10")]

    operations = [migrations.RunPython(description_unverified, description_as_before)]
