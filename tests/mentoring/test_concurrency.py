"""Two writers at once on PostgreSQL, each on a connection of its own (tests/concurrency.py):
two coordinators booking one room's slot, and one one-time link opened on two screens at once
(two site processes, as in production, each admitting one of them)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from consent.audit import audit_verify
from mentoring import services
from mentoring.models import Connection, Session
from tests.concurrency import at_once
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def on_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.fail("concurrent writers need PostgreSQL: set DATABASE_URL")


def book(room: Any, surgeon: Any, by: Any, start: Any, procedure: str) -> Session:
    return services.session_schedule(
        room=room, procedure=procedure, surgeon=surgeon, planned_start=start, planned_end=start + timedelta(hours=2),
        time_zone="Europe/Paris", created_by=by,
    )


def test_two_coordinators_booking_one_slot_at_once_get_one_session_and_one_clear_refusal(room, alice, bob):
    frank = make_user("frank", coordinator=True)
    for day in range(1, 4):  # a few rounds: each one a fresh race for a free slot
        start = (timezone.now() + timedelta(days=day)).replace(microsecond=0)
        results = at_once(
            partial(book, room, bob, alice, start, f"Clipping {day}"),
            partial(book, room, bob, frank, start + timedelta(minutes=30), f"Shunt {day}"),
        )
        booked = [r for r in results if isinstance(r, Session)]
        refused = [r for r in results if isinstance(r, services.SchedulingError)]
        assert len(booked) == 1 and len(refused) == 1, results
        assert f"OR 3 is already booked for {booked[0].procedure}" in str(refused[0])
        assert refused[0].field == "room"
        assert Session.objects.filter(room=room, planned_start__date=start.date()).count() == 1


def open_link(token: str, session_id: str) -> Any:
    """What a site process does when a page opens the link's WebSocket: admit, then be present."""
    try:
        return services.join_token_check(
            token=token, session_public_id=session_id, consume=True, channel_name=f"ws.{uuid.uuid4().hex}"
        )
    except services.JoinRefused as refusal:
        return refusal


def test_a_one_time_link_opened_twice_at_once_admits_exactly_one(session, alice, consenting_patient):
    services.session_start(session=session, by=alice)
    for n in range(5):  # a few rounds: each one a fresh race for a fresh link
        _, url = services.specialist_link_mint(session=session, by=alice, minutes=20, display_name=f"Dr Spec {n}")
        token = url.rstrip("/").rsplit("/", 1)[-1]
        results = at_once(*(partial(open_link, token, str(session.public_id)) for _ in range(2)))
        admitted = [r for r in results if isinstance(r, services.Admission)]
        refused = [r for r in results if isinstance(r, services.JoinRefused)]
        assert len(admitted) == 1 and len(refused) == 1, results
        assert refused[0].reason == "used" and "already open on another screen" in str(refused[0])
        participant = admitted[0].participant
        assert Connection.objects.filter(participant=participant, closed_at__isnull=True).count() == 1
    assert audit_verify() is None
