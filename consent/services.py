"""Consent: the one place that decides whether a stream, viewer, recording, view or export is
allowed by the patient's consent. The audit trail it writes to is consent.audit.

Called by mentoring (admission to live sessions), recordings (start, view, export) and the
pages. Imports no app above it: what a narrower consent changes in those apps reaches them
through the effects they register (consent/effects.py). Never logs patient identifiers.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from .audit import audit_record
from .effects import ConsentNarrowed, consent_effects
from .models import ConsentDecision, ConsentForm, ConsentRecord, Purpose

log = logging.getLogger(__name__)

# Purposes that only mean something if the procedure is recorded: agreeing to them while
# refusing the recording is a contradiction the form must not accept.
NEEDS_RECORDING = (Purpose.ARCHIVE_TRAINING, Purpose.RESEARCH)


class ConsentError(Exception):
    """Consent does not cover what was asked. The message names the missing purpose."""

    def __init__(self, message: str, *, purpose: str = "") -> None:
        super().__init__(message)
        self.purpose = purpose


def _named(purposes: Any) -> str:
    """Purposes as the form words them: "Record the procedure", "Keep the recording for training"."""
    return ", ".join(f"“{Purpose(p).label}”" for p in purposes)


def consent_form_create(*, title: str, version: str, text: str, purposes: list[str]) -> ConsentForm:
    unknown = sorted(set(purposes) - set(Purpose.values))
    if unknown:
        raise ConsentError(f"Unknown purposes {', '.join(unknown)}; use {', '.join(Purpose.values)}.")
    dependent = [p for p in NEEDS_RECORDING if p in purposes]
    if dependent and Purpose.RECORD not in purposes:
        raise ConsentError(
            f"A form that asks about {_named(dependent)} must also ask about {_named([Purpose.RECORD])}: "
            "those uses need the recording."
        )
    return ConsentForm.objects.create(title=title, version=version, text=text, purposes=list(purposes))


def _granted_purposes(*, session: Any) -> frozenset[str]:
    record = consent_in_force(session=session)
    return frozenset(d.purpose for d in record.decisions.all() if d.granted) if record else frozenset()


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

    A new record replaces any earlier one in force for the same session; when it grants less,
    it acts like a withdrawal of what it no longer grants. Errors name the purposes as the form
    words them.
    """
    missing = [p for p in form.purposes if p not in decisions]
    if missing:
        raise ConsentError(f"A decision is needed for every use on the form: {_named(missing)}.")
    extra = sorted(set(decisions) - set(form.purposes))
    if extra:
        unknown = [p for p in extra if p not in Purpose.values]
        if unknown:
            raise ConsentError(f"Unknown uses {', '.join(unknown)}; the form asks about {_named(form.purposes)}.")
        raise ConsentError(f"The form {form} does not ask about {_named(extra)}.")
    contradicted = [p for p in NEEDS_RECORDING if decisions.get(p) and not decisions.get(Purpose.RECORD)]
    if contradicted:
        raise ConsentError(
            f"{_named(contradicted)} {'needs' if len(contradicted) == 1 else 'need'} {_named([Purpose.RECORD])} "
            "agreed: there is no recording to keep or "
            "use otherwise. Either the patient agrees to the recording, or mark those uses refused too."
        )
    if not attestation.strip():
        raise ConsentError("Say who attests the consent and how it was given.")
    ref = patient_ref or session.patient_ref
    if not ref:
        raise ConsentError("The session has no pseudonymous patient reference; set one first.")
    with transaction.atomic():
        # Two staff recording at once take turns on the session's row: the second replaces the
        # first (the database also refuses a second record in force).
        list(type(session).objects.select_for_update().filter(pk=session.pk).values_list("pk", flat=True))
        now = timezone.now()
        before = _granted_purposes(session=session)
        for earlier in ConsentRecord.objects.select_for_update().filter(session=session, withdrawn_at__isnull=True):
            earlier.withdrawn_at = now
            earlier.withdrawn_by = obtained_by
            earlier.withdrawal_reason = "replaced by a newer consent record"
            earlier.save(update_fields=["withdrawn_at", "withdrawn_by", "withdrawal_reason"])
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
        if before - {p for p, g in decisions.items() if g}:
            # The newer record grants less than the one it replaces: it acts like a withdrawal.
            _consent_narrowed(session=session, by=obtained_by, reason="replaced by a consent record that grants less")
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

    In the same transaction, every registered effect's ``within`` part runs (the session's
    recordings become restricted: nobody may view or export them from that instant). After
    commit, each effect's ``deliver`` part runs in its own retried job (a live recording is
    stopped at the edge, connected viewers the remaining consent no longer covers are dropped).
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
        _consent_narrowed(session=record.session, by=by, reason="consent withdrawn")
    return record


def _consent_narrowed(*, session: Any, by: Any, reason: str) -> None:
    """Announce a narrower consent to the registered effects, inside the caller's transaction.

    ``within`` parts run now: an error rolls the caller's change back with it. ``deliver`` parts
    are queued for after commit, one job each, so that one effect failing neither stops nor
    repeats the others.
    """
    change = ConsentNarrowed(
        session_id=session.pk,
        session_public_id=str(session.public_id),
        granted=_granted_purposes(session=session),
        by_id=getattr(by, "pk", None),
        reason=reason,
    )
    for effect in consent_effects:
        if effect.within is not None:
            effect.within(change=change)
    names = [effect.name for effect in consent_effects if effect.deliver is not None]
    if names:

        def consent_effects_enqueue() -> None:
            _effects_enqueue(names, change)

        transaction.on_commit(consent_effects_enqueue)


def _effects_enqueue(names: list[str], change: ConsentNarrowed) -> None:
    from . import tasks

    log.info("consent narrowed for session %s (%s): queuing %s", change.session_public_id, change.reason, ", ".join(names))
    eager = bool(tasks.consent_effect_deliver.app.conf.task_always_eager)
    for name in names:
        if not eager:
            # With a worker, each effect is first tried at once on the thread that committed, so
            # the pages hear within seconds whatever the worker is busy with; the job queued
            # next runs it again a little later (effects are idempotent) and retries it if this
            # attempt failed, which consent_effect_deliver has logged.
            try:
                consent_effect_deliver(effect=name, change=change, last_attempt=False)
            except Exception:  # the job below retries it
                pass
        try:
            if eager:
                tasks.consent_effect_deliver.delay(name, change.as_json())
            else:
                tasks.consent_effect_deliver.apply_async((name, change.as_json()), countdown=tasks.CONFIRM_AFTER)
        except Exception:
            # Only reached when the job cannot be queued (broker down) or, in eager mode (the
            # embedded default), when it gave up after its retries: consent_effect_deliver has
            # logged and audited that already. The other effects still go.
            log.exception("consent effect %s for session %s was not carried out", name, change.session_public_id)


def consent_effect_deliver(*, effect: str, change: ConsentNarrowed, last_attempt: bool) -> None:
    """Run one effect's ``deliver`` part (called by the consent_effect_deliver task, which retries).

    A failure is logged, and on the last attempt audited as a refusal naming the effect, then
    raised again: the job is marked failed, never quietly done.
    """
    deliver = consent_effects.get(effect).deliver
    if deliver is None:
        return
    try:
        deliver(change=change)
    except Exception as failure:
        log.warning(
            "consent effect %s for session %s failed%s: %s",
            effect, change.session_public_id, " for the last time" if last_attempt else ", retrying", failure,
        )
        if last_attempt:
            audit_record(
                action="consent.effect",
                actor="system",
                outcome="refused",
                session_public_id=change.session_public_id,
                target=f"effect:{effect}",
                detail={"reason": change.reason, "error": str(failure)},
            )
        raise


# ---------------------------------------------------------------- pages

# The procedure a consent is about, as consent's own rows name it: consent imports no app above it.
_Session: Any = ConsentRecord._meta.get_field("session").related_model


def consent_session_get(*, public_id: Any) -> Any:
    """The procedure with this public id, its room and surgeon loaded; None when there is none."""
    return _Session.objects.select_related("room", "surgeon").filter(public_id=public_id).first()


def consent_record_get(*, session: Any, pk: Any) -> ConsentRecord | None:
    """The session's consent record number ``pk``, or None (another session's record is None)."""
    return ConsentRecord.objects.select_related("session", "form").filter(session=session, pk=pk).first()


def consent_form_get_active(*, pk: str) -> ConsentForm | None:
    """The active form version ``pk`` (as the page's form sent it), or None."""
    return ConsentForm.objects.filter(pk=pk if pk.isdigit() else 0, is_active=True).first()


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
