"""Who may do what across the site: the groups people are put in, and the few rules every app
applies to them. Views, the API, consumers and services ask here, so a rule is written once.

Below every app (it imports none of them): consent, mentoring, recordings and the pages all use
it. It never writes anything and never audits; the services that refuse audit their refusal.
"""

from __future__ import annotations

from typing import Any, Protocol

from orstream.edge import protocol

COORDINATOR = "coordinator"
CONSENT_STAFF = "consent_staff"
FACULTY = "faculty"
RESIDENT = "resident"
# A training programme's director assigns raters and sees the cohort (training.services decides of
# which programme); faculty review and score residents' recordings.
PROGRAMME_DIRECTOR = "programme_director"


class HasSurgeon(Protocol):
    surgeon_id: Any


def user_in_group(user: Any, *names: str) -> bool:
    """Signed in and a member of one of ``names`` (superusers count as members of every group)."""
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_superuser or user.groups.filter(name__in=names).exists())


def user_is_coordinator(user: Any) -> bool:
    return user_in_group(user, COORDINATOR)


def user_is_consent_staff(user: Any) -> bool:
    """Who records and withdraws consent: coordinators and the consent_staff group (ward staff)."""
    return user_in_group(user, COORDINATOR, CONSENT_STAFF)


def user_is_faculty(user: Any) -> bool:
    return user_in_group(user, FACULTY)


def user_is_programme_director(user: Any) -> bool:
    return user_in_group(user, PROGRAMME_DIRECTOR)


def user_runs_session(user: Any, session: HasSurgeon) -> bool:
    """The coordinators and the session's operating surgeon run a session: they take it live,
    record, call in a specialist and manage its people."""
    return user_is_coordinator(user) or (
        getattr(user, "is_authenticated", False) and user.pk is not None and user.pk == session.surgeon_id
    )


# What a participant's role may do in a live session. The consumer, the services and the live
# pages' JSON views refuse by these sets, and the pages receive them in their bootstrap data
# (role_abilities), so no page decides a role rule of its own. Roles are mentoring's Role values.
TALK_ROLES = protocol.TALK_ROLES  # the edge forwards talkback from these roles only (not the coordinator's)
WATCH_ONLY_ROLES = frozenset({"resident", "observer", "display"})  # they watch: no drawing
NO_CHAT_ROLES = frozenset({"display"})  # the conference-room display has no keyboard user
STATE_ROLES = frozenset({"coordinator", "surgeon"})  # see who is connected, recording, consent
RECORD_ROLES = frozenset({"coordinator", "surgeon"})  # start and stop a recording
REMOVE_ROLES = frozenset({"coordinator"})  # remove someone from the session


def role_may_talk(role: str) -> bool:
    return role in TALK_ROLES


def role_may_draw(role: str) -> bool:
    return role not in WATCH_ONLY_ROLES


def role_may_chat(role: str) -> bool:
    return role not in NO_CHAT_ROLES


def role_abilities(role: str) -> dict[str, bool]:
    """What a live page may offer this role: the ``may`` of its bootstrap data."""
    return {
        "talk": role_may_talk(role),
        "draw": role_may_draw(role),
        "chat": role_may_chat(role),
        "see_state": role in STATE_ROLES,
        "record": role in RECORD_ROLES,
        "remove": role in REMOVE_ROLES,
    }
