"""SessionConsumer: the WebSocket of one participant in one session.

Browsers (mentor, conference room, OR console, coordinator view) connect to
/ws/sessions/<session public id>/ and send {"type": "join", "token": ...} first. The consumer
asks mentoring.services whether the token admits them, then relays presence, signalling
(offer -> edge -> answer), telestration and chat through the session's channel group.
It never decides a rule itself and never logs tokens or SDP. Protocol: docs/signalling.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import WebsocketConsumer
from django.conf import settings
from django.db import close_old_connections

from . import services
from .models import Participant, Session

log = logging.getLogger(__name__)

# Threads for calls to the edge (offers, clock), shared by every consumer of this server process.
EDGE_CALLS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="edge-call")

CLOSE_BAD_INPUT = 4400
CLOSE_REFUSED = 4403
CLOSE_TOO_BIG = 1009
JOIN_FIRST = "Send {\"type\": \"join\", \"token\": ...} first."


class SessionConsumer(WebsocketConsumer):
    participant: Participant | None
    session: Session | None

    def connect(self) -> None:
        self.participant = None
        self.session = None
        self.bad_frames = 0
        self.pending: set[str] = set()
        self.session_public_id = str(self.scope["url_route"]["kwargs"]["session_id"])
        self.accept()

    # ------------------------------------------------------------ input handling

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.WS_MAX_FRAME_BYTES:
            self.send_error("too_large", f"Messages are limited to {settings.WS_MAX_FRAME_BYTES} bytes.")
            self.close(code=CLOSE_TOO_BIG)
            return
        if text_data is None:
            return self.bad_input("binary", "Send JSON text messages.")
        try:
            message = json.loads(text_data)
        except ValueError:
            return self.bad_input("bad_json", "That message is not valid JSON.")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return self.bad_input("bad_message", "Each message is a JSON object with a string \"type\".")
        kind = message["type"]
        if self.participant is None:
            if kind != "join":
                return self.bad_input("not_joined", JOIN_FIRST)
            return self.handle_join(message)
        handler = getattr(self, f"on_{kind.replace('.', '_')}", None) if kind in self.MESSAGE_TYPES else None
        if handler is None:
            return self.bad_input("unknown_type", f"Unknown message type {kind[:40]!r}.")
        handler(message)

    MESSAGE_TYPES = frozenset({"offer", "stroke", "clear", "chat", "ping", "talking", "latency", "clock"})

    def bad_input(self, code: str, message: str) -> None:
        self.bad_frames += 1
        self.send_error(code, message)
        if self.bad_frames >= settings.WS_MAX_BAD_FRAMES:
            self.close(code=CLOSE_BAD_INPUT)

    def send_error(self, code: str, message: str) -> None:
        self.send_json({"type": "error", "code": code, "message": message})

    def send_json(self, content: dict[str, Any]) -> None:
        self.send(text_data=json.dumps(content))

    # ------------------------------------------------------------ join and leave

    def handle_join(self, message: dict[str, Any]) -> None:
        token = message.get("token")
        if not isinstance(token, str) or not token:
            return self.bad_input("bad_message", JOIN_FIRST)
        try:
            admission = services.join_token_check(token=token, session_public_id=self.session_public_id, consume=True)
        except services.JoinRefused as refusal:
            self.send_json({"type": "refused", "reason": refusal.reason, "message": str(refusal)})
            self.close(code=CLOSE_REFUSED)
            return
        self.participant = admission.participant
        self.session = admission.session
        self.group = services.session_group(self.session)
        async_to_sync(self.channel_layer.group_add)(self.group, self.channel_name)
        services.presence_record(participant=self.participant, kind="joined")
        self.send_json(
            {
                "type": "welcome",
                "participant": services.participant_card(self.participant),
                "session": services.session_card(self.session),
                "present": services.presence_list(session=self.session),
                "drawing": services.drawing_in_view(session=self.session),
                "ice_servers": services.ice_servers_for(participant=self.participant),
            }
        )
        async_to_sync(self.channel_layer.group_send)(
            self.group,
            {"type": "presence.event", "event": "joined", "participant": services.participant_card(self.participant)},
        )

    def disconnect(self, code: int) -> None:
        self.leave()

    def leave(self) -> None:
        """Leave the session's group and tell the others; safe to call more than once."""
        participant, self.participant = self.participant, None
        if participant is None:
            return
        async_to_sync(self.channel_layer.group_discard)(self.group, self.channel_name)
        services.presence_record(participant=participant, kind="left")
        async_to_sync(self.channel_layer.group_send)(
            self.group,
            {"type": "presence.event", "event": "left", "participant": services.participant_card(participant)},
        )

    def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Leave at once: the peer may take its time to complete the closing handshake.
        self.leave()
        super().close(code=code, reason=reason)

    # ------------------------------------------------------------ client messages

    def on_ping(self, message: dict[str, Any]) -> None:
        self.send_json({"type": "pong"})

    def on_offer(self, message: dict[str, Any]) -> None:
        assert self.participant is not None
        sdp = message.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0"):
            return self.bad_input("bad_sdp", "The offer needs an SDP string starting with v=0.")
        participant = self.participant

        def broker() -> dict[str, Any]:
            try:
                return {"type": "answer", "sdp": services.media_offer(participant=participant, sdp=sdp)["sdp"]}
            except services.MediaRefused as refusal:
                return {"type": "media_error", "message": str(refusal)}

        self.off_thread("offer", broker)

    def on_clock(self, message: dict[str, Any]) -> None:
        """The edge's RTP timestamp <-> ingest wall-clock mapping, for the page's latency badge."""
        assert self.participant is not None
        participant = self.participant

        def ask() -> dict[str, Any]:
            try:
                return {**services.media_clock(participant=participant), "type": "clock"}
            except services.MediaRefused as refusal:
                return {"type": "clock", "error": str(refusal)}

        self.off_thread("clock", ask)

    def off_thread(self, name: str, work: Callable[[], dict[str, Any]]) -> None:
        """Run a call to the edge on a thread of its own and send its reply when it comes.

        Sync consumers share one thread: an edge that takes seconds to answer one viewer's offer
        would freeze every WebSocket of this server, the OR console's included.
        """
        if name in self.pending:
            return self.send_error("busy", f"The previous {name} request is still being answered.")
        self.pending.add(name)
        layer, channel = self.channel_layer, self.channel_name

        def run() -> None:
            try:
                reply = work()
            finally:
                close_old_connections()
            async_to_sync(layer.send)(channel, {"type": "edge.reply", "name": name, "message": reply})

        EDGE_CALLS.submit(run)

    def edge_reply(self, event: dict[str, Any]) -> None:
        self.pending.discard(event["name"])
        self.send_json(event["message"])

    def on_stroke(self, message: dict[str, Any]) -> None:
        self.relay_annotation("stroke", message)

    def on_clear(self, message: dict[str, Any]) -> None:
        self.relay_annotation("clear", message)

    def on_chat(self, message: dict[str, Any]) -> None:
        self.relay_annotation("chat", message)

    def relay_annotation(self, kind: str, message: dict[str, Any]) -> None:
        assert self.participant is not None
        try:
            annotation = services.annotation_add(participant=self.participant, kind=kind, message=message)
        except services.AnnotationError as error:
            return self.bad_input("bad_annotation", str(error))
        async_to_sync(self.channel_layer.group_send)(
            self.group, {"type": "annotation.event", "annotation": services.annotation_card(annotation)}
        )

    def on_talking(self, message: dict[str, Any]) -> None:
        assert self.participant is not None
        async_to_sync(self.channel_layer.group_send)(
            self.group,
            {
                "type": "talking.event",
                "participant": str(self.participant.public_id),
                "talking": bool(message.get("talking")),
            },
        )

    def on_latency(self, message: dict[str, Any]) -> None:
        assert self.participant is not None
        value = message.get("ms")
        if not isinstance(value, (int, float)) or not 0 <= value < 60_000:
            return self.bad_input("bad_message", "latency needs a number of milliseconds in \"ms\".")
        services.latency_report(participant=self.participant, ms=float(value))

    # ------------------------------------------------------------ group events

    def presence_event(self, event: dict[str, Any]) -> None:
        self.send_json({"type": "presence", "event": event["event"], "participant": event["participant"]})

    def annotation_event(self, event: dict[str, Any]) -> None:
        self.send_json({"type": "annotation", **event["annotation"]})

    def talking_event(self, event: dict[str, Any]) -> None:
        self.send_json({"type": "talking", "participant": event["participant"], "talking": event["talking"]})

    def session_status(self, event: dict[str, Any]) -> None:
        self.send_json({"type": "session", "status": event["status"]})

    def session_notice(self, event: dict[str, Any]) -> None:
        self.send_json({"type": "notice", **event["notice"]})

    def participant_removed(self, event: dict[str, Any]) -> None:
        if self.participant is not None and event["participant"] == str(self.participant.public_id):
            self.send_json({"type": "removed", "reason": event.get("reason", "removed")})
            self.close(code=CLOSE_REFUSED)
