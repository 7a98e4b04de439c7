"""The cast every test shares, built through the services as a real coordinator would.

alice coordinates, bob operates, carol mentors from another centre, dave is a resident,
eve is an outsider with an account and no part in anything.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from consent import services as consent_services
from consent.models import ConsentForm
from mentoring import services
from mentoring.models import OperatingRoom, Participant, Session
from orstream import roles

ALL_PURPOSES = ["record", "live_internal", "live_external", "archive_training", "research"]


def pytest_sessionstart(session: Any) -> None:
    # In CI a missing server is a failure, never a silent fallback to SQLite or memory.
    if os.environ.get("CI") and not (os.environ.get("DATABASE_URL", "").startswith("postgres")):
        raise pytest.UsageError("CI must run the suite on PostgreSQL: set DATABASE_URL")
    if os.environ.get("CI") and not os.environ.get("REDIS_URL"):
        raise pytest.UsageError("CI must run the suite on Redis: set REDIS_URL")


def make_user(username: str, *, coordinator: bool = False, first: str = "", last: str = "") -> User:
    user = User.objects.create_user(
        username, email=f"{username}@hospital.example", password=f"{username}-pass-Xy9!", first_name=first, last_name=last
    )
    if coordinator:
        user.groups.add(Group.objects.get_or_create(name=roles.COORDINATOR)[0])
    return user


@pytest.fixture
def alice(db: Any) -> User:
    return make_user("alice", coordinator=True, first="Alice", last="Coord")


@pytest.fixture
def bob(db: Any) -> User:
    return make_user("bob", first="Bob", last="Surgeon")


@pytest.fixture
def dave(db: Any) -> User:
    return make_user("dave", first="Dave", last="Resident")


@pytest.fixture
def eve(db: Any) -> User:
    return make_user("eve")


@pytest.fixture
def room(db: Any) -> OperatingRoom:
    return services.room_create(name="OR 3", location="Neurosurgery, 2nd floor")


@pytest.fixture
def session(alice: User, bob: User, room: OperatingRoom) -> Session:
    start = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    return services.session_schedule(
        room=room,
        procedure="Microvascular decompression",
        surgeon=bob,
        planned_start=start,
        planned_end=start + timedelta(hours=3),
        time_zone="Europe/Paris",
        created_by=alice,
        patient_ref="CASE-0042",
    )


@pytest.fixture
def surgeon(session: Session) -> Participant:
    return session.participants.get(role="surgeon")


@pytest.fixture
def carol(session: Session, alice: User) -> Participant:
    """An external mentor from a reference centre."""
    return services.participant_add(
        session=session, role="mentor", display_name="Dr Carol Mentor", email="carol@reference.example",
        is_external=True, by=alice,
    )


@pytest.fixture
def resident(session: Session, dave: User, alice: User) -> Participant:
    return services.participant_add(
        session=session, role="resident", display_name="Dave Resident", email=dave.email, user=dave, by=alice
    )


@pytest.fixture
def consent_form(db: Any) -> ConsentForm:
    return consent_services.consent_form_create(
        title="Recording and telementoring of surgery", version="2", text="...", purposes=ALL_PURPOSES
    )


@pytest.fixture
def consenting_patient(session: Session, consent_form: ConsentForm, alice: User) -> Any:
    return consent_services.consent_record(
        session=session,
        form=consent_form,
        decisions={p: True for p in ALL_PURPOSES},
        obtained_by=alice,
        attestation="Signed form, witnessed by the ward nurse",
    )


@pytest.fixture
def refusing_patient(session: Session, consent_form: ConsentForm, alice: User) -> Any:
    return consent_services.consent_record(
        session=session,
        form=consent_form,
        decisions={p: False for p in ALL_PURPOSES},
        obtained_by=alice,
        attestation="Patient declined, witnessed by the ward nurse",
    )


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # The cast's passwords are test data: hashing them the slow, safe way only costs time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def own_counters(settings: Any) -> None:
    # Throttling and refusal counters live in the cache (Redis when REDIS_URL is set): each test
    # counts from zero under a key prefix of its own.
    settings.CACHES = {name: {**config, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"} for name, config in settings.CACHES.items()}


@pytest.fixture(autouse=True)
def own_channel_layer() -> Iterator[None]:
    """A channel layer per test, as a server process has one per event loop: each asyncio test
    runs on a loop of its own, and the Redis layer keeps asyncio locks bound to the loop that
    first used them, which a later test's loop must not inherit."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
