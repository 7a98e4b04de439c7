"""Consent and audit: the one place that decides whether a stream, viewer, recording, view or
export is allowed by the patient's consent, and the append-only audit trail.

Called by mentoring (admission to live sessions), recordings (start, view, export) and the
pages. Never reaches into other apps' tables except through their services; never logs
patient identifiers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .models import AuditEvent, ConsentDecision, ConsentForm, ConsentRecord, Purpose

GENESIS = "0" * 64


class ConsentError(Exception):
    """Consent does not cover what was asked. The message names the missing purpose."""

    def __init__(self, message: str, *, purpose: str = "") -> None:
        super().__init__(message)
        self.purpose = purpose


# ---------------------------------------------------------------- audit trail


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
        return event


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


# ---------------------------------------------------------------- consent


def consent_form_create(*, title: str, version: str, text: str, purposes: list[str]) -> ConsentForm:
    unknown = sorted(set(purposes) - set(Purpose.values))
    if unknown:
        raise ConsentError(f"Unknown purposes {', '.join(unknown)}; use {', '.join(Purpose.values)}.")
    return ConsentForm.objects.create(title=title, version=version, text=text, purposes=list(purposes))


def consent_record(
    *,
    session: Any,
    form: ConsentForm,
    decisions: dict[str, bool],
    obtained_by: Any,
    attestation: str,
    patient_ref: str = "",
) -> ConsentRecord:
    """Record the patient's decision for each purpose of ``form`` (a refusal is recorded too).

    A new record replaces any earlier one in force for the same session.
    """
    missing = [p for p in form.purposes if p not in decisions]
    if missing:
        raise ConsentError(f"A decision is needed for every purpose on the form: {', '.join(missing)}.")
    extra = sorted(set(decisions) - set(form.purposes))
    if extra:
        raise ConsentError(f"The form {form} does not ask about {', '.join(extra)}.")
    if not attestation.strip():
        raise ConsentError("Say who attests the consent and how it was given.")
    ref = patient_ref or session.patient_ref
    if not ref:
        raise ConsentError("The session has no pseudonymous patient reference; set one first.")
    with transaction.atomic():
        now = timezone.now()
        replaced = False
        for earlier in ConsentRecord.objects.select_for_update().filter(session=session, withdrawn_at__isnull=True):
            earlier.withdrawn_at = now
            earlier.withdrawn_by = obtained_by
            earlier.withdrawal_reason = "replaced by a newer consent record"
            earlier.save(update_fields=["withdrawn_at", "withdrawn_by", "withdrawal_reason"])
            replaced = True
        record = ConsentRecord.objects.create(
            session=session, form=form, patient_ref=ref, obtained_by=obtained_by, attestation=attestation
        )
        ConsentDecision.objects.bulk_create(
            ConsentDecision(record=record, purpose=p, granted=bool(g)) for p, g in decisions.items()
        )
        audit_record(
            action="consent.record",
            actor=f"user:{obtained_by.pk}",
            session_public_id=str(session.public_id),
            target=f"consent:{record.pk}",
            detail={"decisions": decisions, "form": f"{form.title} v{form.version}"},
        )
        if replaced:
            # A newer record may grant less than the one it replaces: it acts like a withdrawal.
            _consent_effects(session=session, by=obtained_by, reason="replaced by a consent record that grants less")
    return record


def consent_in_force(*, session: Any) -> ConsentRecord | None:
    return (
        ConsentRecord.objects.filter(session=session, withdrawn_at__isnull=True)
        .prefetch_related("decisions")
        .order_by("-obtained_at")
        .first()
    )


def consent_granted(*, session: Any, purpose: str) -> bool:
    record = consent_in_force(session=session)
    if record is None:
        return False
    return any(d.purpose == purpose and d.granted for d in record.decisions.all())


def consent_require(*, session: Any, purpose: str, actor: str, action: str) -> None:
    """The consent gate. Raise ConsentError (and audit the refusal) unless ``purpose`` is granted."""
    if purpose not in Purpose.values:
        raise ValueError(f"unknown consent purpose {purpose!r}")
    if consent_granted(session=session, purpose=purpose):
        return
    label = Purpose(purpose).label
    record = consent_in_force(session=session)
    reason = "no consent is recorded for this procedure" if record is None else f"the patient did not consent to: {label}"
    audit_record(
        action=action,
        actor=actor,
        outcome="refused",
        session_public_id=str(session.public_id),
        detail={"missing_purpose": purpose},
    )
    raise ConsentError(f"Not allowed: {reason} ({purpose}).", purpose=purpose)


def consent_withdraw(*, record: ConsentRecord, by: Any, reason: str = "") -> ConsentRecord:
    """Withdraw consent: one action, and it acts on what is live.

    In the same transaction the session's recordings become restricted (nobody may view or
    export them from that instant). After commit, a live recording is stopped at the edge and
    connected viewers the remaining consent no longer covers are dropped.
    """
    with transaction.atomic():
        record = ConsentRecord.objects.select_for_update().select_related("session").get(pk=record.pk)
        if record.withdrawn_at is not None:
            return record
        record.withdrawn_at = timezone.now()
        record.withdrawn_by = by
        record.withdrawal_reason = reason
        record.save(update_fields=["withdrawn_at", "withdrawn_by", "withdrawal_reason"])
        audit_record(
            action="consent.withdraw",
            actor=f"user:{by.pk}",
            session_public_id=str(record.session.public_id),
            target=f"consent:{record.pk}",
        )
        _consent_effects(session=record.session, by=by, reason="consent withdrawn")
    return record


def _consent_effects(*, session: Any, by: Any, reason: str) -> None:
    """What a narrower consent changes, inside the caller's transaction and after its commit.

    Imports lazily: recordings and mentoring import this module, not the other way round.
    """
    from recordings import services as recordings_services

    if not consent_granted(session=session, purpose="record"):
        recordings_services.recording_restrict_for_session(session=session, reason=reason, by=by)
        transaction.on_commit(
            lambda: recordings_services.recording_live_stop_for_session(session=session, by=by), robust=True
        )
    transaction.on_commit(lambda: _enforce_live_consent(session), robust=True)


def _enforce_live_consent(session: Any) -> None:
    from mentoring import services as mentoring_services

    mentoring_services.session_enforce_consent(session=session)


# ---------------------------------------------------------------- pages

CONSENT_STAFF_GROUP = "consent_staff"


def user_is_consent_staff(user: Any) -> bool:
    """Who records and withdraws consent: coordinators and the consent_staff group (ward staff)."""
    if not getattr(user, "is_authenticated", False):
        return False
    from mentoring.services import user_is_coordinator

    return user_is_coordinator(user) or bool(user.groups.filter(name=CONSENT_STAFF_GROUP).exists())


def consent_form_list_active() -> list[ConsentForm]:
    """The form versions staff may record consent on, newest version of each title first."""
    return list(ConsentForm.objects.filter(is_active=True).order_by("title", "-created_at"))


def consent_history_for(*, session: Any) -> list[ConsentRecord]:
    """Every consent record of the session, newest first, with its decisions and who acted."""
    return list(
        ConsentRecord.objects.filter(session=session)
        .select_related("form", "obtained_by", "withdrawn_by")
        .prefetch_related("decisions")
        .order_by("-obtained_at", "-pk")
    )


def audit_list_for(*, session: Any) -> list[AuditEvent]:
    """The audit events about one session, in chain order."""
    return list(AuditEvent.objects.filter(session_public_id=str(session.public_id)).order_by("id"))
