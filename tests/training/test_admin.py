"""The training admin shows an instrument's items with their own score range (MARS10's 0-2)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

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
