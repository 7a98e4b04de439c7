"""MARS10, the 10-point Microsurgical Anastomosis Rating Scale: a final-product scale whose five
items its published abstract names, each scored 0 to 2.

Version "1" is orstream's first encoding of it, from the abstract: the pages read give no reliable
authors, journal or year to version it by, as the other instruments are. The anchors are orstream's
wording (the abstract gives none); a centre with the full text publishes a corrected version in the
admin. Frozen here, as the migration ran, like 0002.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

SLUG, VERSION = "mars10", "1"

ITEMS = [
    ("anastomosis-closure", "Anastomosis closure"),
    ("suture-spacing", "Suture spacing"),
    ("bites-size", "Bites size"),
    ("knot-tying", "Knot tying"),
    ("cut-ends-length", "Cut ends length"),
]

ANCHORS = {"0": "Not achieved", "1": "Partly achieved", "2": "Achieved"}

MARS10 = {
    "name": "10 Point Microsurgical Anastomosis Rating Scale",
    "short_name": "MARS10",
    "description": (
        "Five factors of the finished end-to-end anastomosis, each scored 0, 1 or 2 (total 0 to 10). A final-product "
        "scale: score the anastomosis as it is at the end (the end of the recording or of its chapter), not how it was "
        "done. The anchors (0 not achieved, 1 partly, 2 achieved) are orstream's wording: the publication's abstract "
        "gives none."
    ),
    "source": (
        "\"Microsurgical Anastomosis Rating Scale (MARS10): A Final Product Scoring System for Initial Microsurgical "
        "Training\", cited by its title: the pages read do not give its authors, journal or year reliably. Checked "
        "against its published abstract as read at https://discovery.researcher.life/article/microsurgical-anastomosis-"
        "rating-scale-mars10-a-final-product-scoring-system-for-initial-microsurgical-training/"
        "58c7c7522dd23c1581b4f3c1b8e67c2b and https://www.biocloudy.com/literatureDetail/NDc2ODc5NQ==: \"5 factors "
        "important for anastomosis closure (anastomosis closure, suture spacing, bites size, knot tying, and cut ends "
        "length), graded on 3 point scale (0-2 points)\"; 70 medical students, 3 end-to-end anastomoses each on a chicken "
        "femoral artery, scored by 3 blinded experts; patency correlated with the total (r = 0.73) and the raters did "
        "not differ significantly. The five item names and the 0-2 range are as published. The abstract gives no "
        "per-point anchors: those below are orstream's wording (0 not achieved, 1 partly achieved, 2 achieved), not "
        "the published ones; check them against the full text before relying on them. A final-product scale: it scores "
        "the finished anastomosis (validated on a non-living model), so rate it at the end of a recording or a chapter."
    ),
}


def mars10_load(apps: Any, schema_editor: Any) -> None:
    Instrument = apps.get_model("training", "Instrument")
    InstrumentItem = apps.get_model("training", "InstrumentItem")
    instrument, created = Instrument.objects.get_or_create(slug=SLUG, version=VERSION, defaults=MARS10)
    if not created:
        return
    for order, (key, name) in enumerate(ITEMS, start=1):
        InstrumentItem.objects.create(
            instrument=instrument, order=order, key=key, name=name, min_score=0, max_score=2, anchors=ANCHORS,
        )


def mars10_unload(apps: Any, schema_editor: Any) -> None:
    # As 0002: a version already used for scores stays (its assessments protect it).
    apps.get_model("training", "Instrument").objects.filter(slug=SLUG, version=VERSION, assessments__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("training", "0004_smart_source_checked")]

    operations = [migrations.RunPython(mars10_load, mars10_unload)]
