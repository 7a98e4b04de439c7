"""What the control plane does with the edge's webhooks. Called by the edge_events view only."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from orstream.edge import protocol

from .models import Session

log = logging.getLogger(__name__)


class EventError(Exception):
    """A webhook about something the control plane does not know."""


def _broadcast(session: Session, notice: dict[str, Any]) -> None:
    from .services import session_group

    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(session_group(session), {"type": "session.notice", "notice": notice})


def edge_event_handle(*, event: protocol.EdgeEvent) -> None:
    session = Session.objects.filter(public_id=event.session_id).first() if _is_uuid(event.session_id) else None
    if session is None:
        raise EventError(f"unknown session {event.session_id[:40]!r}")
    if event.type == "segment.closed":
        from recordings import services as recording_services

        recording_services.segment_register(**event.data)
        return
    if event.type in {"publisher.up", "publisher.down", "recording.started", "recording.stopped", "viewer.joined", "viewer.left"}:
        _broadcast(session, {"event": event.type, **{k: v for k, v in event.data.items() if k in ("participant_id", "recording_id")}})
        return
    log.info("edge event %s ignored", event.type)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
