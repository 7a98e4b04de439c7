"""SMaRT's source note, after checking the published record: what it confirms (nine categories on a
5-point Likert scale, the models, the DOI) and that it does not name the categories, so the item
names stay marked as unverified. The items themselves are unchanged."""

import importlib

from django.db import migrations

SOURCE = (
    "Satterwhite T, Son J, Carey J, Echo A, Spurling T, Paro J, Gurtner G, Chang J, Lee GK. The Stanford Microsurgery "
    "and Resident Training (SMaRT) Scale: validation of an on-line global rating scale for technical assessment. "
    "Ann Plast Surg 2014;72 Suppl 1:S84-8. doi:10.1097/SAP.0000000000000139. "
    "Checked against the published abstract (https://stanfordhealthcare.org/publications/308/308677.html) and the "
    "ASPS 2013 meeting abstract (https://asps.confex.com/asps/2013am/webprogram/Paper22613.html): 9 categories, each "
    "graded on a 5-point Likert scale, used by expert raters on videotaped microsurgery on three models (latex glove, "
    "Penrose drain, dorsal vessel of a chicken foot). Neither abstract, nor the reviews of microsurgical assessment "
    "tools consulted, names the categories: the nine item names below are not verified against the paper, and the "
    "anchors are orstream's wording (1 novice, 3 competent, 5 expert), not the published ones. Check both against "
    "the full text before relying on them; a centre with the paper publishes a corrected version in the admin."
)


def _published(apps):
    return apps.get_model("training", "Instrument").objects.filter(slug="smart", version="2014")


def source_checked(apps, schema_editor):
    _published(apps).update(source=SOURCE)


def source_as_before(apps, schema_editor):
    before = importlib.import_module("training.migrations.0002_published_instruments").SMART["source"]
    _published(apps).update(source=before)


class Migration(migrations.Migration):
    dependencies = [("training", "0003_comment_bookmark")]

    operations = [migrations.RunPython(source_checked, source_as_before)]
