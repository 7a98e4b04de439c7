"""RecordingProgressConsumer: progress of a recording's background jobs (export, finalize,
archive) pushed to the library page.

Browsers connect to /ws/recordings/<recording public id>/ with their signed-in session (the
AuthMiddlewareStack puts the user in the scope). The consumer asks recordings.services whether
that person may follow this recording, then forwards the messages the jobs send to the group
``recording.<public id>`` ({"type": "recording.progress", "stage", "percent"}). It only listens:
it never accepts commands and never sends anything about the patient.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import JsonWebsocketConsumer

from . import services

CLOSE_NOT_FOUND = 4404
CLOSE_REFUSED = 4403


class RecordingProgressConsumer(JsonWebsocketConsumer):
    group: str | None = None

    def connect(self) -> None:
        recording = services.recording_get(public_id=self.scope["url_route"]["kwargs"]["recording_id"])
        if recording is None:
            self.close(code=CLOSE_NOT_FOUND)
            return
        try:
            services.recording_progress_check(recording=recording, user=self.scope.get("user"))
        except services.RecordingAccessDenied:
            # Refused before the handshake completes: the browser sees the socket closed (audited).
            self.close(code=CLOSE_REFUSED)
            return
        self.group = services.recording_group(recording)
        async_to_sync(self.channel_layer.group_add)(self.group, self.channel_name)
        self.accept()

    def disconnect(self, code: int) -> None:
        if self.group:
            async_to_sync(self.channel_layer.group_discard)(self.group, self.channel_name)

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Nothing to ask this socket: it only reports."""

    def recording_progress(self, event: dict[str, Any]) -> None:
        self.send_json({"type": "progress", "stage": event.get("stage", ""), "percent": int(event.get("percent", 0))})
