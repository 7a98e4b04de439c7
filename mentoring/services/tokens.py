"""Join tokens and links: minting, the join URL, sealing a link for the coordinator's page, the
state a link is in.

Called by participants, invitations, the coordinator's pages, the API and presence.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings
from django.core import signing
from django.utils import timezone

from ..models import (
    JoinToken,
    Participant,
)
from .common import TOKEN_SALT


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def join_token_mint(
    *, participant: Participant, valid_for: timedelta | None = None, one_time: bool = False, by: Any = None
) -> str:
    """Mint a join token bound to one session, participant and role. Only its hash is stored.

    By default it is valid until the planned end of the session plus the configured margin.
    """
    session = participant.session
    if valid_for is None:
        expires_at = max(session.planned_end, timezone.now()) + timedelta(hours=settings.JOIN_TOKEN_MAX_AGE_HOURS)
    else:
        expires_at = timezone.now() + valid_for
    claims = {
        "s": str(session.public_id),
        "p": str(participant.public_id),
        "r": participant.role,
        "e": int(expires_at.timestamp()),
        "n": secrets.token_urlsafe(12),
    }
    token = signing.dumps(claims, salt=TOKEN_SALT, compress=False)
    JoinToken.objects.create(
        participant=participant,
        token_hash=_token_hash(token),
        expires_at=expires_at,
        one_time=one_time,
        created_by=by if by is not None and getattr(by, "is_authenticated", False) else None,
    )
    return token


def join_url(token: str) -> str:
    return f"{settings.PUBLIC_URL.rstrip('/')}/join/{token}/"


def _link_box() -> Fernet:
    # A join link crosses the broker sealed: the queue (Redis) never holds a usable token.
    key = hashlib.sha256(b"orstream.mail-link:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def link_seal(url: str) -> str:
    return _link_box().encrypt(url.encode()).decode() if url else ""


def link_unseal(sealed: str) -> str:
    return _link_box().decrypt(sealed.encode()).decode() if sealed else ""


def participant_link_state(*, participant: Participant) -> str:
    """Where the participant's links stand: ``active`` (one works), ``revoked`` (the last one was
    revoked), ``expired``, ``used`` (a one-time link spent), ``removed`` or ``none`` (never minted)."""
    if participant.removed_at is not None:
        return "removed"
    tokens = list(participant.tokens.all())
    if any(t.is_active for t in tokens):
        return "active"
    if not tokens:
        return "none"
    last = max(tokens, key=lambda t: t.created_at)
    if last.revoked_at is not None:
        return "revoked"
    return "used" if last.one_time and last.used_at else "expired"


def link_state(*, token: JoinToken | None, participant: Participant, now: datetime | None = None) -> str:
    """Why a link that admitted a connection no longer does ("expired", "revoked", "removed"), or ""."""
    now = now or timezone.now()
    if participant.removed_at is not None:
        return "removed"
    if token is None:
        return ""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= now:
        return "expired"
    return ""
