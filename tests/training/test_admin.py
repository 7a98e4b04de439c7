"""The training admin shows an instrument's items with their own score range (MARS10's 0-2), and
freezes them once someone has been scored with that version."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from training import services
from training.models import Instrument

pytestmark = pytest.mark.django_db


def test_the_admin_shows_mars10_items_scored_from_0_to_2() -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@hospital.example", "root-pass-Xy9!"))
    mars = Instrument.objects.get(slug="mars10")
    assert "MARS10" in client.get("/admin/training/instrument/").content.decode()
    page = client.get(f"/admin/training/instrument/{mars.pk}/change/").content.decode()
    for index in range(5):
        assert f'name="items-{index}-min_score" value="0"' in page and f'name="items-{index}-max_score" value="2"' in page


def test_an_instrument_someone_was_scored_with_keeps_its_items_in_the_admin(
    recording: Any, trainee: Any, frank: Any, henry: Any, performance: Any
) -> None:
    mars = Instrument.objects.get(slug="mars10")
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@hospital.example", "root-pass-Xy9!"))
    url = f"/admin/training/instrument/{mars.pk}/change/"
    assert 'name="items-0-max_score"' in client.get(url).content.decode(), "editable while nobody was scored with it"

    services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=mars, by=henry)
    page = client.get(url).content.decode()
    assert 'name="items-0-max_score"' not in page and 'name="items-0-DELETE"' not in page
    assert 'name="items-MAX_NUM_FORMS" value="0"' in page, "no item can be added"
    # A forged post of a new range changes nothing.
    item = mars.items.get(order=1)
    client.post(url, {
        "description": mars.description, "source": mars.source, "is_active": "on",
        "items-TOTAL_FORMS": "5", "items-INITIAL_FORMS": "5", "items-MIN_NUM_FORMS": "0", "items-MAX_NUM_FORMS": "1000",
        "items-0-id": str(item.pk), "items-0-instrument": str(mars.pk), "items-0-max_score": "5", "items-0-min_score": "1",
    })
    item.refresh_from_db()
    assert (item.min_score, item.max_score) == (0, 2)
    assert mars.items.count() == 5
