"""Admission: whether a join token admits its bearer to a session now, audited when it does not.

Called by the join view, the consumer on connect and the API.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from consent import services as consent_services
from consent.audit import audit_refusal_aggregated

from ..models import (
    JoinToken,
    Participant,
    Role,
    Session,
)
from .common import ROLE_PURPOSE, TOKEN_SALT, JoinRefused
from .presence import presence_connected, presence_record
from .tokens import _token_hash


@dataclass(frozen=True)
class Admission:
    participant: Participant
    session: Session
    token: JoinToken


def _audit_refusal(refusal: JoinRefused, *, session_id: str) -> None:
    # Whoever holds a bad link is anonymous: a flood of them is counted, not written row by row.
    audit_refusal_aggregated(
        action="session.join", reason=refusal.reason, key=session_id, session_public_id=session_id
    )


def join_token_check(
    *, token: str, session_public_id: str | None = None, consume: bool = False, channel_name: str = ""
) -> Admission:
    """Check a join token: signature, expiry, revocation, session, role, and the consent gate.

    Raises JoinRefused with a message for the person holding the link; every refusal is audited.
    ``consume`` marks a one-time token used (on the actual connection, not on page load); with
    ``channel_name`` (the WebSocket admitted) it also records the participant as present, for a
    one-time token under the token's row lock: of two screens opening it at once, one gets in.
    """
    try:
        claims = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        refusal = JoinRefused(
            "This link is not valid: it may have been cut or altered. Ask the coordinator for a new one.",
            reason="tampered",
        )
        _audit_refusal(refusal, session_id=session_public_id or "")
        raise refusal from None
    sid = str(claims.get("s", "")) if isinstance(claims, dict) else ""
    try:
        admission = _admit(token=token, claims=claims, session_public_id=session_public_id)
        if consume:
            _refuse_if_reconnecting_too_often(admission.participant)
        if consume and admission.token.one_time:
            with transaction.atomic():
                row = JoinToken.objects.select_for_update().get(pk=admission.token.pk)
                _refuse_if_in_use(row, admission.participant)
                if row.used_at is None:
                    row.used_at = timezone.now()
                    row.save(update_fields=["used_at"])
                if channel_name:
                    # Present before the lock is released, so a second screen waiting on it sees this one.
                    presence_record(participant=admission.participant, kind="joined", channel_name=channel_name, token=row)
        elif consume and channel_name:
            presence_record(participant=admission.participant, kind="joined", channel_name=channel_name, token=admission.token)
    except JoinRefused as refusal:
        # Audited outside any transaction the refusal rolled back, so the record stays.
        if refusal.reason != "consent":  # the consent gate audits its own refusals
            _audit_refusal(refusal, session_id=session_public_id or sid)
        raise
    return admission


def _refuse_if_reconnecting_too_often(participant: Participant) -> None:
    """Each connection has its own message budgets (mentoring.consumers): a client that
    reconnects each time it is cut off would get a fresh budget every time. A person's page
    reconnects after a network blip or a reload, a few times a minute at most."""
    key = f"orstream:ws-joins:{participant.public_id}:{int(time.time() // 60)}"
    cache.add(key, 0, timeout=120)
    if cache.incr(key) > settings.WS_JOINS_PER_MINUTE:
        raise JoinRefused(
            "This link was opened too many times in a minute. Wait a minute, then reload the page.",
            reason="too_many",
        )


def _refuse_if_in_use(row: JoinToken, participant: Participant) -> None:
    """A one-time link admits one connection at a time: the same browser may reconnect after a
    network blip, a second browser may not join while the first is connected."""
    if row.one_time and row.used_at is not None and participant in presence_connected(session=participant.session):
        raise JoinRefused(
            "This one-time link is already open on another screen. Close it there, or ask for a new link.",
            reason="used",
        )


def _admit(*, token: str, claims: Any, session_public_id: str | None) -> Admission:
    sid = str(claims.get("s", ""))
    if session_public_id is not None and sid != str(session_public_id):
        raise JoinRefused(
            "This link belongs to another session. Open the link from the invitation for this session.",
            reason="other_session",
        )
    row = (
        JoinToken.objects.select_related("participant__session__room")
        .filter(token_hash=_token_hash(token))
        .first()
    )
    if row is None:
        raise JoinRefused("This link is not known. Ask the coordinator for a new one.", reason="unknown")
    participant = row.participant
    session = participant.session
    if row.revoked_at is not None or participant.removed_at is not None:
        raise JoinRefused(
            "This link was withdrawn by the coordinator. Contact them if you should still join.", reason="revoked"
        )
    if row.expires_at <= timezone.now():
        raise JoinRefused("This link has expired. Ask the coordinator for a new one.", reason="expired")
    _refuse_if_in_use(row, participant)
    if claims.get("r") != participant.role or claims.get("p") != str(participant.public_id):
        raise JoinRefused("This link does not match its participant.", reason="mismatch")
    if session.status in (Session.Status.ENDED, Session.Status.CANCELLED):
        raise JoinRefused(f"This session is {session.get_status_display().lower()}.", reason=session.status)
    purpose = ROLE_PURPOSE.get(Role(participant.role))
    if purpose is not None:
        if participant.is_external:
            purpose = "live_external"
        try:
            consent_services.consent_require(
                session=session, purpose=purpose, actor=f"participant:{participant.public_id}", action="session.join"
            )
        except consent_services.ConsentError as error:
            raise JoinRefused(
                f"You cannot watch this procedure: the patient's consent does not cover it ({error.purpose}). "
                "Contact the coordinator if you think this is wrong.",
                reason="consent",
            ) from None
    return Admission(participant=participant, session=session, token=row)
