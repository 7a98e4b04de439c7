"""Reads: a session or participant by its public id, the sessions a user may see, and the edge's
stats of a live session.

Called by the pages, the live pages' JSON views and the API. Never writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from orstream import edgeclient, roles

from ..models import (
    OperatingRoom,
    Participant,
    Session,
)


def room_list() -> list[OperatingRoom]:
    """Every operating room, by name."""
    return list(OperatingRoom.objects.order_by("name"))


def session_get(*, public_id: Any) -> Session | None:
    """The session with this public id, its room and surgeon loaded; None when there is none."""
    return Session.objects.select_related("room", "surgeon").filter(public_id=public_id).first()


def participant_get(*, public_id: Any, session: Session | None = None) -> Participant | None:
    """The participant with this public id (of ``session`` when given), its session loaded."""
    participants = Participant.objects.select_related("session", "session__room")
    if session is not None:
        participants = participants.filter(session=session)
    return participants.filter(public_id=public_id).first()


def session_list_for(*, user: Any, include_past: bool = False) -> Any:
    sessions = Session.objects.select_related("room", "surgeon")
    if not include_past:
        sessions = sessions.filter(planned_end__gte=timezone.now() - timedelta(hours=12))
    if roles.user_is_coordinator(user):
        return sessions
    return sessions.filter(Q(surgeon=user) | Q(participants__user=user)).distinct()


@dataclass(frozen=True)
class EdgeStats:
    """The edge's stats of a live session, or why there are none: the edge being down is an
    answer, not an error. ``unreachable`` when the edge did not answer at all."""

    stats: Any = None
    error: str | None = None
    unreachable: bool = False


def session_edge_stats(*, session: Session) -> EdgeStats:
    if session.status != Session.Status.LIVE:
        return EdgeStats()
    try:
        return EdgeStats(stats=edgeclient.stats(str(session.public_id), edge_url=session.room.edge_url or None))
    except edgeclient.EdgeError as failure:
        error = "No video statistics: the session has no video yet." if failure.status == 404 else str(failure)
        return EdgeStats(error=error, unreachable=failure.status == 0)
