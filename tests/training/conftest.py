"""The training cast, on top of the shared one: a neurosurgery programme directed by henry, with
frank and grace as faculty and dave (the shared cast's resident) operating in bob's session, whose
recording the patient allowed for training; ivan is faculty of another programme."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from consent import services as consent_services
from mentoring.models import Session
from recordings.models import Recording
from tests.conftest import ALL_PURPOSES, make_user
from training import services
from training.models import Instrument, Performance, Programme


@pytest.fixture
def programme(db: Any) -> Programme:
    return services.programme_create(name="Neurosurgery residency", specialty="Neurosurgery")


def member(programme: Programme, username: str, role: str, last: str) -> User:
    user = make_user(username, first=username.capitalize(), last=last)
    services.programme_member_add(programme=programme, user=user, role=role)
    return user


@pytest.fixture
def henry(programme: Programme) -> User:
    return member(programme, "henry", "director", "Director")


@pytest.fixture
def frank(programme: Programme) -> User:
    return member(programme, "frank", "faculty", "Faculty")


@pytest.fixture
def grace(programme: Programme) -> User:
    return member(programme, "grace", "faculty", "Faculty")


@pytest.fixture
def ivan(db: Any) -> User:
    other = services.programme_create(name="General surgery residency", specialty="General surgery")
    return member(other, "ivan", "faculty", "Elsewhere")


@pytest.fixture
def trainee(programme: Programme, dave: User, resident: Any) -> User:
    """dave, a resident of the programme, who took part in bob's session as its resident."""
    services.programme_member_add(programme=programme, user=dave, role="resident", year=3)
    return dave


def training_refused(session: Session, consent_form: Any, by: User) -> Any:
    """A new consent record for ``session`` that grants everything but archive_training."""
    return consent_services.consent_record(
        session=session, form=consent_form, decisions={p: p != "archive_training" for p in ALL_PURPOSES},
        obtained_by=by, attestation="Signed form; training use refused",
    )


def available(session: Session, by: User, duration: float = 120.0) -> Recording:
    return Recording.objects.create(
        session=session, started_by=by, status=Recording.Status.AVAILABLE, ended_at=timezone.now(), duration=duration,
        width=320, height=240,
    )


@pytest.fixture
def recording(session: Session, consenting_patient: Any, bob: User) -> Recording:
    return available(session, bob)


@pytest.fixture
def performance(recording: Recording, programme: Programme, trainee: User, frank: User) -> Performance:
    return services.performance_record(
        session=recording.session, programme=programme, resident=trainee, by=frank,
        parts=[(recording, 20.0, 90.0, "dissection and decompression")],
    )


@pytest.fixture
def osats(db: Any) -> Instrument:
    return Instrument.objects.get(slug="osats-grs")
