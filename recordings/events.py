"""What recordings does with the edge's recording webhooks (``segment.closed``,
``recording.stopped``) and with a live session put back on a restarted edge. Registered with
mentoring's edge event router and reattach hooks in RecordingsConfig.ready(); called only by them
(events after their id was claimed)."""

from __future__ import annotations

from typing import Any

from mentoring.events import EventError
from mentoring.models import Session
from orstream.edge import protocol

from . import services

EVENT_TYPES = ("segment.closed", "recording.stopped")


def recording_event_handle(session: Session, event: protocol.EdgeEvent) -> None:
    try:
        if event.type == "segment.closed":
            services.segment_register(**services.segment_fields(event.data))
        else:
            services.recording_stopped(
                recording_public_id=event.data["recording_public_id"], segments=int(event.data["segments"])
            )
    except (TypeError, KeyError, ValueError) as error:
        raise EventError(f"{event.type} carries unexpected data: {error}") from None
    except services.RecordingError as error:
        raise EventError(str(error)) from None


def recording_reattach(session: Session) -> dict[str, Any]:
    """The session's edge restarted while recording: resume (or end) its recording."""
    recording = services.recording_resume_for_session(session=session)
    if recording is None:
        return {}
    return {"id": str(recording.public_id), "status": recording.status}
