"""The audit trail: one append-only, hash-chained log of every view, refusal and change about a
session, and the walk that proves it intact.

Called by every app's services (audit_record; audit_refusal_aggregated for anonymous refusals),
the sign-in view, the edge webhook handlers, consent's pages (audit_list_for),
``manage.py audit_verify`` (audit_verify, audit_head) and every refusal page (audit_refusal_page,
registered in orstream.pages by consent's ready()). The model, AuditEvent, stays in
consent.models with its migrations. Imports no app: every app may audit.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.core.cache import cache
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from .models import AuditEvent

GENESIS = "0" * 64


def _canonical(event: AuditEvent) -> bytes:
    body = {
        "at": event.at.isoformat(),
        "action": event.action,
        "outcome": event.outcome,
        "actor": event.actor,
        "session": event.session_public_id,
        "target": event.target,
        "detail": event.detail,
        "prev": event.prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def audit_hash(event: AuditEvent) -> str:
    return hashlib.sha256(_canonical(event)).hexdigest()


def audit_record(
    *,
    action: str,
    actor: str,
    outcome: str = "allowed",
    session_public_id: str = "",
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the hash chain. Safe under concurrent writers."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # One writer at a time extends the chain; the lock ends with the transaction.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [0x0A0D17])
        last = AuditEvent.objects.order_by("-id").only("hash").first()
        event = AuditEvent(
            at=timezone.now(),
            action=action,
            outcome=outcome,
            actor=actor,
            session_public_id=session_public_id,
            target=target,
            detail=json.loads(json.dumps(detail or {}, default=str)),
            prev_hash=last.hash if last else GENESIS,
        )
        event.hash = audit_hash(event)
        event.save(force_insert=True)
    if outcome == "refused":
        _refusal_counted()
    return event


# One event per refusal: the service that refused has usually audited it already, and the refusal
# page its view then shows must not write a second one. Each request gets a fresh count of the
# refusals audited during it (audit_request_begin, on request_started, connected in consent's
# ready()); the refusal page writes its own event only when that count is still zero.
@dataclass
class _RequestRefusals:
    audited: int = 0


_request_refusals: ContextVar[_RequestRefusals | None] = ContextVar("orstream_request_refusals", default=None)


def audit_request_begin(**_: Any) -> None:
    """A request starts: no refusal has been audited in it yet."""
    _request_refusals.set(_RequestRefusals())


def _refusal_counted() -> None:
    scope = _request_refusals.get()
    if scope is not None:
        scope.audited += 1


def audit_refusal_page(*, request: HttpRequest, message: str, title: str, status: int) -> None:
    """Audit the refusal page (or API reply) shown to ``request``'s user, unless this request's
    refusal is audited. The refusals of anonymous clients are aggregated (audit_refusal_aggregated).

    The event names the page (its URL name), the method and the public ids in its URL, never the
    path itself, which may carry a join token; the reason is the message the person read.
    """
    scope = _request_refusals.get()
    if scope is not None and scope.audited:
        return
    match = request.resolver_match
    page = match.view_name if match else "unknown"
    ids = {name: str(value) for name, value in (match.kwargs.items() if match else ()) if isinstance(value, UUID)}
    detail = {"page": page, "method": request.method, "status": status, "title": title, **ids}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        audit_record(
            action="page.refused", actor=f"user:{user.pk}", outcome="refused", target=f"page:{page}",
            detail={**detail, "reason": message},
        )
    else:
        audit_refusal_aggregated(action="page.refused", reason=message, key=page, detail=detail)


# Anonymous refusals (a garbage join link, a wrong password) cost an attacker nothing: each one
# written to the chain would let one client fill the audit table. Per key and minute, the first
# ten are written one by one; after that only a count, at 100, 1000... and the minute's final
# count when the next minute's first refusal of that key comes.
REFUSALS_WRITTEN_EACH = 10
REFUSAL_WINDOW_SECONDS = 60


def audit_refusal_aggregated(
    *, action: str, reason: str, key: str, session_public_id: str = "", detail: dict[str, Any] | None = None
) -> AuditEvent | None:
    """Audit a refusal of an anonymous client at a bounded rate; returns the event written, if any.

    ``key`` groups refusals that are one flood (a client address, a session). Nothing is lost: the
    events after the first few carry ``refused_this_minute``, the number of such refusals so far.
    """
    _refusal_counted()  # audited, even when only counted below
    window = int(time.time() // REFUSAL_WINDOW_SECONDS)
    base = "audit-refusals:" + hashlib.sha256(f"{action}|{reason}|{key}".encode()).hexdigest()[:32]
    counter = f"{base}:{window}"
    cache.add(counter, 0, REFUSAL_WINDOW_SECONDS * 3)
    count = cache.incr(counter)
    body = {**(detail or {}), "reason": reason}
    if count == 1:
        previous = cache.get(f"{base}:{window - 1}") or 0
        if previous > REFUSALS_WRITTEN_EACH and not _power_of_ten(previous):
            audit_record(
                action=action, actor="anonymous", outcome="refused", session_public_id=session_public_id,
                detail={**body, "refused_last_minute": previous},
            )
    if count <= REFUSALS_WRITTEN_EACH:
        return audit_record(action=action, actor="anonymous", outcome="refused", session_public_id=session_public_id, detail=body)
    if _power_of_ten(count):
        return audit_record(
            action=action, actor="anonymous", outcome="refused", session_public_id=session_public_id,
            detail={**body, "refused_this_minute": count},
        )
    return None


def _power_of_ten(n: int) -> bool:
    return n > REFUSALS_WRITTEN_EACH and str(n).strip("0") == "1"


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def audit_verify(*, head: str | None = None) -> ChainBreak | None:
    """Walk the chain in order; return the first broken link, or None when it is intact.

    Every event's hash covers its content and the previous event's hash, so a changed event
    breaks its own hash, and a removed or reordered event breaks the next event's link. Gaps in
    ids alone are not breaks: PostgreSQL sequences skip numbers when a transaction rolls back.
    Removing the newest events leaves a shorter chain that is still consistent; ``head``, a hash
    kept elsewhere (printed by ``manage.py audit_verify``), catches that: it must still be in the chain.
    """
    prev = GENESIS
    previous_id: int | None = None
    head_seen = head is None
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.prev_hash != prev:
            after = f"event {previous_id}" if previous_id is not None else "the start of the chain"
            return ChainBreak(
                event.id,
                f"does not follow {after}: an event between them was removed, or events were reordered",
            )
        if audit_hash(event) != event.hash:
            return ChainBreak(event.id, "its content was changed after it was written")
        if event.hash == head:
            head_seen = True
        prev = event.hash
        previous_id = event.id
    if not head_seen:
        return ChainBreak(
            (previous_id or 0) + 1,
            f"the chain no longer contains the head {head}: events after event {previous_id} were removed",
        )
    return None


def audit_head() -> tuple[int, str]:
    """(number of events, hash of the newest event): keep it elsewhere to detect a cut-off tail."""
    last = AuditEvent.objects.order_by("-id").only("hash").first()
    return AuditEvent.objects.count(), (last.hash if last else GENESIS)


def audit_list_for(*, session: Any) -> list[AuditEvent]:
    """The audit events about one session, in chain order."""
    return list(AuditEvent.objects.filter(session_public_id=str(session.public_id)).order_by("id"))
