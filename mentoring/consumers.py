"""SessionConsumer: the WebSocket of one participant in one session.

Browsers (mentor, conference room, OR console, coordinator view) connect to
/ws/sessions/<session public id>/ and send {"type": "join", "token": ...} first. The consumer
asks mentoring.services whether the token admits them, then relays presence, signalling
(offer -> edge -> answer), telestration and chat through the session's channel group.
Each participant has a budget of messages per second and bytes per message for each kind
(chat, strokes, talking, offers...): over it, an error says so; far over it, the socket closes.
The connection ends when its link expires or is revoked. It never decides a rule itself and
never logs tokens or SDP. Protocol: docs/signalling.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import WebsocketConsumer
from django.apps import apps
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from orstream import roles

from . import services
from .models import Participant, Session

log = logging.getLogger(__name__)

CLOSE_BAD_INPUT = 4400
CLOSE_REFUSED = 4403
# RFC 6455's 1009 is reserved for the server's own protocol layer: an application may only close
# with 1000 or 3000-4999, so "too large" is 4009 (the browser sees that code and our message).
CLOSE_TOO_BIG = 4009
CLOSE_TOO_MANY = 4429
JOIN_FIRST = "Send {\"type\": \"join\", \"token\": ...} first."


@dataclass
class Budget:
    """Messages of one kind a participant may send: ``rate`` a second on average, ``burst`` at
    once, each at most ``max_bytes``."""

    rate: float
    burst: float
    max_bytes: int
    tokens: float = field(default=-1.0)
    at: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


# Per kind: (messages a second, burst, bytes). Generous for a person, tight for a script: a mentor
# draws a few strokes a second, chats far less, and renegotiates media rarely.
BUDGETS: dict[str, tuple[float, float, int]] = {
    "join": (1, 3, 8 * 1024),
    "offer": (0.5, 3, 64 * 1024),
    "clock": (2, 5, 1024),
    "latency": (2, 5, 1024),
    "ping": (1, 5, 1024),
    "talking": (4, 10, 1024),
    "stroke": (20, 40, 64 * 1024),
    "clear": (2, 5, 1024),
    "chat": (1, 5, 16 * 1024),
}
# Over-budget messages within ABUSE_WINDOW seconds that close the socket.
ABUSE_LIMIT = 50
ABUSE_WINDOW = 10.0


def keeper() -> Any:
    return apps.get_app_config("mentoring").keeper  # type: ignore[attr-defined]


class SessionConsumer(WebsocketConsumer):
    participant: Participant | None
    session: Session | None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Edge replies are handed to this loop: the channel layer keeps asyncio state bound to the
        # loop that uses it, so a bare thread must never drive it on a loop of its own.
        self.loop = asyncio.get_running_loop()
        # The ASGI server may kill a consumer (a backlog, a shutdown) without a disconnect: the
        # keeper then stops refreshing its connection, and presence marks it gone within seconds.
        try:
            await super().__call__(scope, receive, send)
        finally:
            channel_name = getattr(self, "channel_name", None)
            if channel_name:
                keeper().unregister(channel_name)
            executor = getattr(self, "executor", None)
            if executor is not None:
                executor.shutdown(wait=False)  # a queued edge call still runs, then its thread ends

    def connect(self) -> None:
        self.participant = None
        self.session = None
        self.ended = False
        self.bad_frames = 0
        self.over_budget: list[float] = []
        self.budgets = {kind: Budget(rate, burst, size) for kind, (rate, burst, size) in BUDGETS.items()}
        self.warned: dict[str, float] = {}
        self.pending: set[str] = set()
        self.executor: ThreadPoolExecutor | None = None
        self.expires_at: Any = None
        self.session_public_id = str(self.scope["url_route"]["kwargs"]["session_id"])
        self.accept()

    # ------------------------------------------------------------ input handling

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.ended:
            return  # frames that arrive after we closed are not handled
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.WS_MAX_FRAME_BYTES:
            self.send_error("too_large", f"Messages are limited to {settings.WS_MAX_FRAME_BYTES} bytes.")
            return self.close(code=CLOSE_TOO_BIG)
        if text_data is None:
            return self.bad_input("binary", "Send JSON text messages.")
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than any message of ours
            return self.bad_input("bad_json", "That message is not valid JSON.")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return self.bad_input("bad_message", "Each message is a JSON object with a string \"type\".")
        kind = message["type"]
        if kind not in BUDGETS:
            return self.bad_input("unknown_type", f"Unknown message type {kind[:40]!r}.")
        if not self.within_budget(kind, size):
            return
        if self.participant is None:
            if kind != "join":
                return self.bad_input("not_joined", JOIN_FIRST)
            return self.handle_join(message)
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return self.end_link("expired")
        handler = getattr(self, f"on_{kind}", None)
        if handler is None or kind == "join":
            return self.bad_input("unknown_type", f"Unknown message type {kind[:40]!r}.")
        handler(message)

    def within_budget(self, kind: str, size: int) -> bool:
        budget = self.budgets[kind]
        if size > budget.max_bytes:
            self.bad_input("too_large", f"A {kind} message is limited to {budget.max_bytes} bytes.")
            return False
        now = time.monotonic()
        if budget.take(now):
            return True
        self.over_budget = [t for t in self.over_budget if now - t < ABUSE_WINDOW] + [now]
        if len(self.over_budget) >= ABUSE_LIMIT:
            self.send_error("rate_limited", "Too many messages: this connection is closed. Reload the page to come back.")
            self.close(code=CLOSE_TOO_MANY)
            return False
        if now - self.warned.get(kind, -10.0) >= 1.0:  # one error a second, not one per dropped message
            self.warned[kind] = now
            self.send_error(
                "rate_limited",
                f"Slow down: at most {budget.rate:g} {kind} message(s) a second. That message was not sent.",
            )
        return False

    def bad_input(self, code: str, message: str) -> None:
        self.bad_frames += 1
        self.send_error(code, message)
        if self.bad_frames >= settings.WS_MAX_BAD_FRAMES:
            self.close(code=CLOSE_BAD_INPUT)

    def send_error(self, code: str, message: str) -> None:
        self.send_json({"type": "error", "code": code, "message": message})

    def send_json(self, content: dict[str, Any]) -> None:
        if not self.ended:
            self.send(text_data=json.dumps(content))

    # ------------------------------------------------------------ join and leave

    def handle_join(self, message: dict[str, Any]) -> None:
        token = message.get("token")
        if not isinstance(token, str) or not token:
            return self.bad_input("bad_message", JOIN_FIRST)
        try:
            admission = services.join_token_check(
                token=token, session_public_id=self.session_public_id, consume=True, channel_name=self.channel_name
            )
        except services.JoinRefused as refusal:
            self.send_json({"type": "refused", "reason": refusal.reason, "message": str(refusal)})
            self.close(code=CLOSE_REFUSED)
            return
        self.participant = admission.participant
        self.session = admission.session
        self.expires_at = admission.token.expires_at
        self.group = services.session_group(self.session)
        async_to_sync(self.channel_layer.group_add)(self.group, self.channel_name)
        keeper().register(self.channel_name, self.loop)
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
        keeper().unregister(self.channel_name)
        async_to_sync(self.channel_layer.group_discard)(self.group, self.channel_name)
        if services.connection_close(channel_name=self.channel_name):
            async_to_sync(self.channel_layer.group_send)(
                self.group,
                {"type": "presence.event", "event": "left", "participant": services.participant_card(participant)},
            )

    def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Leave at once: the peer may take its time to complete the closing handshake.
        if self.ended:
            return
        self.leave()
        super().close(code=code, reason=reason)
        self.ended = True

    def end_link(self, reason: str) -> None:
        """The link no longer admits this connection (expired, revoked, removed): say why, drop
        the media peer (on a thread: the edge may be slow) and close."""
        if self.ended:
            return
        channel_name = self.channel_name
        self.send_json({"type": "removed", "reason": reason})
        self.close(code=CLOSE_REFUSED)
        self.run_off_thread(lambda: services.connection_end(channel_name=channel_name, reason=reason))

    def link_ended(self, event: dict[str, Any]) -> None:
        """From the keeper: this connection's link expired or was revoked, and it was ended."""
        if not self.ended:
            self.send_json({"type": "removed", "reason": event["reason"]})
            self.close(code=CLOSE_REFUSED)

    # ------------------------------------------------------------ client messages

    def on_ping(self, message: dict[str, Any]) -> None:
        self.send_json({"type": "pong"})

    def on_offer(self, message: dict[str, Any]) -> None:
        assert self.participant is not None
        sdp = message.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0"):
            return self.bad_input("bad_sdp", "The offer needs an SDP string starting with v=0.")
        media = message.get("media", "publish")
        if media not in ("publish", "watch"):
            return self.bad_input("bad_message", "An offer's \"media\" is \"publish\" or \"watch\".")
        participant = self.participant
        watch = media == "watch"

        def broker() -> dict[str, Any]:
            try:
                answer = services.media_offer(participant=participant, sdp=sdp, watch=watch)
                return {"type": "answer", "sdp": answer["sdp"]}
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

    def run_off_thread(self, work: Callable[[], Any]) -> None:
        """Run ``work`` on this consumer's own threads (two at most), which end with it."""
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="edge-call")

        def run() -> None:
            try:
                work()
            except Exception:
                log.exception("a call to the edge failed")
            finally:
                close_old_connections()

        self.executor.submit(run)

    def off_thread(self, name: str, work: Callable[[], dict[str, Any]]) -> None:
        """Run a call to the edge on a thread and send its reply when it comes.

        Sync consumers share one thread: an edge that takes seconds to answer one viewer's offer
        would freeze every WebSocket of this server, the OR console's included.
        """
        if name in self.pending:
            return self.send_error("busy", f"The previous {name} request is still being answered.")
        self.pending.add(name)
        layer, channel, loop = self.channel_layer, self.channel_name, self.loop

        def reply() -> None:
            answer = work()
            if loop.is_closed():
                return  # the connection ended while the edge answered: nobody to tell
            sent = asyncio.run_coroutine_threadsafe(layer.send(channel, {"type": "edge.reply", "name": name, "message": answer}), loop)
            sent.result(timeout=10)

        self.run_off_thread(reply)

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
        if not roles.role_may_talk(self.participant.role):
            return self.bad_input("not_allowed", "Your role listens only: it cannot talk.")
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


class UnknownPathConsumer(WebsocketConsumer):
    """Any other WebSocket path: refused with a message instead of a traceback."""

    def connect(self) -> None:
        self.accept()
        message = "No such WebSocket here: use /ws/sessions/<session id>/."
        self.send(text_data=json.dumps({"type": "error", "code": "unknown_path", "message": message}))
        self.close(code=4404)

