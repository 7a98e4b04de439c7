"""What the control plane does with the edge's webhooks. Called by the edge_events view only:
``edge_event_read`` checks the signature and reads the event, ``edge_event_handle`` acts on it.

Each event carries an id (kept by the edge across delivery retries): one already handled is
dropped, so a retry after a lost reply or a replayed request acts once. Events other apps act on
go to the handlers they register in ``edge_event_handlers`` (recordings registers segment and
recording events; segment registration is idempotent on its own as well). WHIP clients' acts
(``whip.publish``, ``whip.delete``, allowed or refused) become audit events here: the edge
authorises WHIP bearer tokens itself and reports what they did.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, transaction

from consent.audit import audit_record
from orstream import edgeclient
from orstream.edge import protocol

from .models import EdgeEventReceipt, Session
from .services import edge_restart_handle, is_uuid, session_group

log = logging.getLogger(__name__)


class EventError(Exception):
    """A webhook the control plane cannot act on: ``status`` 403 for its signature, 404 for an unknown
    session, 400 otherwise."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def edge_event_read(*, path: str, body: bytes, headers: Any) -> protocol.EdgeEvent:
    """The event in a webhook the edge signed (``path`` with its query, as received). Raises
    EventError with status 403 for a bad, stale or replayed signature, 400 for a malformed body."""
    try:
        protocol.verify(
            secret=settings.EDGE_SECRET, method="POST", path=path, body=body, headers=headers,
            replay=edgeclient.WebhookNonces(),
        )
    except protocol.SignatureError as error:
        log.warning("edge webhook refused: %s", error)
        raise EventError(f"signature refused: {error}", status=403) from None
    try:
        data = json.loads(body)
        return protocol.EdgeEvent(
            type=str(data["type"]), session_id=str(data["session_id"]), at=float(data["at"]), data=dict(data.get("data") or {}),
            id=str(data.get("id") or "")[:64],
        )
    except (ValueError, KeyError, TypeError):
        raise EventError("expected JSON with type, session_id, at and data") from None


def _broadcast(session: Session, notice: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(session_group(session), {"type": "session.notice", "notice": notice})


WHIP_EVENTS = frozenset({"whip.publish", "whip.delete"})


def _whip_audit(event: protocol.EdgeEvent, session: Session | None) -> None:
    """One audit event per reported WHIP act; a session the site does not know is left blank."""
    data = event.data
    try:
        unreported = max(0, int(data.get("refusals_not_reported_before") or 0))
    except (TypeError, ValueError):
        raise EventError(f"{event.type} carries unexpected data") from None
    audit_record(
        action=event.type,
        actor=f"whip:{str(data.get('token') or 'no token')[:16]}",
        outcome="allowed" if data.get("outcome") == "allowed" else "refused",
        session_public_id=str(session.public_id) if session is not None else "",
        target=str(data.get("resource") or "")[:64],
        detail={"reason": str(data.get("reason") or "")[:200], "refusals_not_reported_before": unreported},
    )


def edge_event_handle(*, event: protocol.EdgeEvent) -> bool:
    """Act on one webhook; False when it is a repeat of one already handled (nothing is done)."""
    if event.type == protocol.EDGE_STARTED:
        # Not about one session; acting twice is harmless (the sessions are back after the first).
        edge_restart_handle(boot_id=str(event.data.get("boot_id", "")))
        return True
    session = Session.objects.filter(public_id=event.session_id).first() if is_uuid(event.session_id) else None
    if session is None and event.type not in WHIP_EVENTS:
        raise EventError(f"unknown session {event.session_id[:40]!r}", status=404)
    receipt = None
    if event.id:
        # Claimed before acting: a retry that arrives while this one is still at work (an eager
        # finalize can outlast the edge's timeout) is dropped instead of acting twice.
        try:
            with transaction.atomic():
                receipt = EdgeEventReceipt.objects.create(
                    event_id=event.id, type=event.type, session_public_id=str(session.public_id) if session else ""
                )
        except IntegrityError:
            log.info("edge event %s %s is a repeat; dropped", event.type, event.id)
            return False
    try:
        if event.type in WHIP_EVENTS:
            _whip_audit(event, session)
        else:
            assert session is not None
            _handle(session, event)
    except BaseException:
        # Not handled: the edge's next retry of this event must be acted on.
        if receipt is not None:
            EdgeEventReceipt.objects.filter(pk=receipt.pk).delete()
        raise
    return True


EdgeEventHandler = Callable[[Session, protocol.EdgeEvent], None]


class EdgeEventHandlers:
    """Who acts on which edge event. Apps above mentoring (recordings) register their handlers in
    their ``AppConfig.ready()``, so this router never imports them. A handler raises
    ``EventError`` for data it cannot act on; the edge is then answered 400 and may retry."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[EdgeEventHandler]] = {}

    def register(self, types: Iterable[str], handler: EdgeEventHandler) -> None:
        for event_type in types:
            handlers = self._handlers.setdefault(event_type, [])
            if handler not in handlers:
                handlers.append(handler)

    def for_type(self, event_type: str) -> list[EdgeEventHandler]:
        return list(self._handlers.get(event_type, ()))


edge_event_handlers = EdgeEventHandlers()

BROADCAST_EVENTS = frozenset({"publisher.up", "publisher.down", "recording.started", "viewer.joined", "viewer.left"})


def _handle(session: Session, event: protocol.EdgeEvent) -> None:
    handlers = edge_event_handlers.for_type(event.type)
    for handler in handlers:
        handler(session, event)
    if event.type in BROADCAST_EVENTS:
        _broadcast(session, {"event": event.type, **{k: v for k, v in event.data.items() if k in ("participant_id", "recording_id")}})
        return
    if not handlers:
        log.info("edge event %s ignored", event.type)
