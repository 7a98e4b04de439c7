"""Template filters that print a session's times in the session's own time zone, the same way
the invitation e-mail and the .ics do (mentoring.services.session_when)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template

from mentoring import services

register = template.Library()


@register.filter
def session_when(session: Any) -> str:
    """``{{ session|session_when }}``: ``Tue 01 Dec 2026 09:00-12:00 (Europe/Paris)``."""
    return services.session_when(session=session)


@register.filter
def in_session_zone(moment: datetime | None, session: Any) -> str:
    """``{{ recording.started_at|in_session_zone:session }}``: ``01 Dec 2026 09:04 (Europe/Paris)``."""
    if moment is None:
        return ""
    return services.session_moment(session=session, moment=moment)
