"""How a session's times read in its room's time zone: on the pages, in e-mails and the .ics.

Called by scheduling, invitations, presenters, the session_times template tags and recordings'
live panel (session_clock). Never writes.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from ..models import (
    Session,
)
from .common import SchedulingError


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SchedulingError(
            f"Unknown time zone {name!r}: use a name such as Europe/Paris or America/New_York.", field="time_zone"
        ) from None


def session_when(*, session: Session) -> str:
    """The session's planned times in its own time zone, as the pages and the e-mails print them:
    ``Tue 01 Dec 2026 09:00-12:00 (Europe/Paris)``; the .ics carries the same zone (VTIMEZONE)."""
    zone = _zone(session.time_zone)
    start, end = session.planned_start.astimezone(zone), session.planned_end.astimezone(zone)
    until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%a %d %b %Y %H:%M}"
    return f"{start:%a %d %b %Y %H:%M}-{until} ({session.time_zone})"


def session_moment(*, session: Session, moment: datetime) -> str:
    """A moment of the session (a recording's start, consent taken) in the session's time zone."""
    return f"{moment.astimezone(_zone(session.time_zone)):%d %b %Y %H:%M} ({session.time_zone})"


def session_clock(*, session: Session, moment: datetime) -> str:
    """The time of day of a moment of the session, in its zone: ``09:04 (Europe/Paris)``."""
    return f"{moment.astimezone(_zone(session.time_zone)):%H:%M} ({session.time_zone})"
