"""Reads: the sessions a user may see.

Called by the pages and the API. Never writes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from orstream import roles

from ..models import (
    Session,
)


def session_list_for(*, user: Any, include_past: bool = False) -> Any:
    sessions = Session.objects.select_related("room", "surgeon")
    if not include_past:
        sessions = sessions.filter(planned_end__gte=timezone.now() - timedelta(hours=12))
    if roles.user_is_coordinator(user):
        return sessions
    return sessions.filter(Q(surgeon=user) | Q(participants__user=user)).distinct()
