"""What the control plane does with the edge's webhooks. Called by the edge_events view only."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from orstream.edge import protocol

from .models import Session
from .services import is_uuid, session_group

log = logging.getLogger(__name__)


class EventError(Exception):
    """A webhook the control plane cannot act on: ``status`` 404 for an unknown session, 400 otherwise."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _broadcast(session: Session, notice: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(session_group(session), {"type": "session.notice", "notice": notice})


def edge_event_handle(*, event: protocol.EdgeEvent) -> None:
    session = Session.objects.filter(public_id=event.session_id).first() if is_uuid(event.session_id) else None
    if session is None:
        raise EventError(f"unknown session {event.session_id[:40]!r}", status=404)
    if event.type in ("segment.closed", "recording.stopped"):
        from recordings import services as recording_services

        try:
            if event.type == "segment.closed":
                recording_services.segment_register(**event.data)
            else:
                recording_services.recording_stopped(
                    recording_public_id=event.data["recording_public_id"], segments=int(event.data["segments"])
                )
        except (TypeError, KeyError, ValueError) as error:
            raise EventError(f"{event.type} carries unexpected data: {error}") from None
        except recording_services.RecordingError as error:
            raise EventError(str(error)) from None
    if event.type in {"publisher.up", "publisher.down", "recording.started", "viewer.joined", "viewer.left"}:
        _broadcast(session, {"event": event.type, **{k: v for k, v in event.data.items() if k in ("participant_id", "recording_id")}})
        return
    log.info("edge event %s ignored", event.type)

