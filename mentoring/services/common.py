"""What every mentoring service module shares: the errors, the role-to-purpose map, the session's
channel group and broadcasting after commit, the coordinator's staff grant, small parsers.

Called by the other modules of mentoring.services (the errors and helpers are re-exported for
views, the API, the consumer and tasks).
"""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from orstream import roles

from ..models import (
    Role,
    Session,
)

TOKEN_SALT = "orstream.join"


# Which consent purpose each role's live viewing needs. Surgeons and coordinators are part of the
# care team in the room; everyone else watches a patient's procedure and needs the patient's word.
ROLE_PURPOSE = {
    Role.MENTOR: "live_internal",
    Role.SPECIALIST: "live_internal",
    Role.RESIDENT: "live_internal",
    Role.OBSERVER: "live_internal",
    Role.DISPLAY: "live_internal",
}


class SchedulingError(Exception):
    """A scheduling request that cannot be honoured. ``field`` names the form field at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class JoinRefused(Exception):
    """A join token that does not admit its holder. The message is shown to them as is."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# What a coordinator administers in /admin/ when made staff: operating rooms (the edge and feed
# of each room live only there), and a read-only view of sessions, people, recordings and consent
# to look into a problem. Every other change goes through the pages and their services, and
# nothing is ever deleted from the admin (the audit trail and PROTECT keys rely on it).
COORDINATOR_ADMIN_PERMISSIONS = (
    "mentoring.add_operatingroom", "mentoring.change_operatingroom", "mentoring.view_operatingroom",
    "mentoring.view_session", "mentoring.view_participant", "mentoring.view_jointoken",
    "mentoring.view_presenceevent", "mentoring.view_annotation",
    "recordings.view_recording", "recordings.view_segment", "recordings.view_exportjob",
    "consent.view_consentform", "consent.view_consentrecord", "consent.view_auditevent",
)


def coordinator_staff_grant(*, user: Any) -> list[str]:
    """Let a coordinator into /admin/ with the coordinator group's limited permissions (never
    superuser). Returns the permissions the group holds."""
    group, _ = Group.objects.get_or_create(name=roles.COORDINATOR)
    wanted: list[Permission] = []
    for name in COORDINATOR_ADMIN_PERMISSIONS:
        app_label, codename = name.split(".")
        wanted.extend(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
    group.permissions.add(*wanted)
    user.groups.add(group)
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type"))


def _send_after_commit(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    transaction.on_commit(lambda: async_to_sync(layer.group_send)(group, message))


def session_group(session: Session) -> str:
    return f"session.{session.public_id}"


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
