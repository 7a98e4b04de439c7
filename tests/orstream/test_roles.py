from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, Group, User

from mentoring.models import Session
from orstream import roles


def test_the_coordinators_and_the_operating_surgeon_run_a_session(session: Session, alice: User, bob: User, eve: User) -> None:
    assert roles.user_runs_session(alice, session)
    assert roles.user_runs_session(bob, session)
    assert not roles.user_runs_session(eve, session)
    assert not roles.user_runs_session(AnonymousUser(), session)


def test_consent_staff_are_coordinators_and_the_ward_group(alice: User, eve: User, dave: User) -> None:
    dave.groups.add(Group.objects.get_or_create(name=roles.CONSENT_STAFF)[0])
    assert roles.user_is_consent_staff(alice)
    assert roles.user_is_consent_staff(dave)
    assert not roles.user_is_consent_staff(eve)
    assert not roles.user_is_consent_staff(AnonymousUser())


def test_a_superuser_counts_as_every_group(db: Any) -> None:
    root = User.objects.create_superuser("root", "root@hospital.example", "root-pass-Xy9!")
    assert roles.user_is_coordinator(root) and roles.user_is_faculty(root) and roles.user_is_consent_staff(root)
