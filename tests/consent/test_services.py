"""The consent gate: one place decides, every refusal says what is missing and is audited."""

from __future__ import annotations

from typing import Any

import pytest

from consent import services
from consent.audit import audit_verify
from consent.models import AuditEvent, ConsentRecord, Purpose
from mentoring.models import Session
from tests.conftest import ALL_PURPOSES


@pytest.mark.parametrize("purpose", ALL_PURPOSES)
def test_each_refused_purpose_is_named_in_the_refusal(
    purpose: str, session: Session, consent_form: Any, alice: Any
) -> None:
    # Refusing the recording refuses what needs it (training, research) too: the form insists.
    refused = {purpose, *(services.NEEDS_RECORDING if purpose == "record" else ())}
    services.consent_record(
        session=session,
        form=consent_form,
        decisions={p: p not in refused for p in ALL_PURPOSES},
        obtained_by=alice,
        attestation="Signed form",
    )
    with pytest.raises(services.ConsentError) as refusal:
        services.consent_require(session=session, purpose=purpose, actor="user:1", action="test.gate")
    assert refusal.value.purpose == purpose
    assert purpose in str(refusal.value)
    assert Purpose(purpose).label in str(refusal.value)
    for other in ALL_PURPOSES:
        if other not in refused:
            services.consent_require(session=session, purpose=other, actor="user:1", action="test.gate")


def test_no_consent_at_all_is_a_refusal_that_says_so(session: Session) -> None:
    with pytest.raises(services.ConsentError, match="no consent is recorded") as refusal:
        services.consent_require(session=session, purpose="record", actor="user:1", action="recording.start")
    assert refusal.value.purpose == "record"


def test_a_refusal_is_audited_with_the_missing_purpose(refusing_patient: ConsentRecord, session: Session) -> None:
    with pytest.raises(services.ConsentError):
        services.consent_require(session=session, purpose="live_external", actor="participant:x", action="session.join")
    event = AuditEvent.objects.get(outcome="refused")
    assert event.action == "session.join"
    assert event.actor == "participant:x"
    assert event.session_public_id == str(session.public_id)
    assert event.detail == {"missing_purpose": "live_external"}
    assert audit_verify() is None


def test_an_allowed_check_writes_no_refusal(consenting_patient: ConsentRecord, session: Session) -> None:
    services.consent_require(session=session, purpose="record", actor="user:1", action="recording.start")
    assert not AuditEvent.objects.filter(outcome="refused").exists()


def test_withdrawal_is_one_action_that_refuses_every_purpose(
    consenting_patient: ConsentRecord, session: Session, alice: Any
) -> None:
    before = AuditEvent.objects.count()
    services.consent_withdraw(record=consenting_patient, by=alice, reason="patient changed their mind")
    assert AuditEvent.objects.count() == before + 1
    withdrawal = AuditEvent.objects.order_by("-id").first()
    assert withdrawal is not None and withdrawal.action == "consent.withdraw"
    for purpose in ALL_PURPOSES:
        assert not services.consent_granted(session=session, purpose=purpose)
    consenting_patient.refresh_from_db()
    assert consenting_patient.withdrawn_by == alice
    assert consenting_patient.withdrawal_reason == "patient changed their mind"


def test_withdrawing_twice_changes_nothing_the_second_time(consenting_patient: ConsentRecord, alice: Any, bob: Any) -> None:
    first = services.consent_withdraw(record=consenting_patient, by=alice)
    count = AuditEvent.objects.count()
    second = services.consent_withdraw(record=consenting_patient, by=bob)
    assert second.withdrawn_at == first.withdrawn_at and second.withdrawn_by == alice
    assert AuditEvent.objects.count() == count


def test_a_newer_record_replaces_an_older_one(
    refusing_patient: ConsentRecord, session: Session, consent_form: Any, alice: Any
) -> None:
    assert not services.consent_granted(session=session, purpose="record")
    newer = services.consent_record(
        session=session,
        form=consent_form,
        decisions={p: True for p in ALL_PURPOSES},
        obtained_by=alice,
        attestation="Patient changed their mind, signed a new form",
    )
    refusing_patient.refresh_from_db()
    assert refusing_patient.withdrawn_at is not None
    assert refusing_patient.withdrawal_reason == "replaced by a newer consent record"
    assert services.consent_in_force(session=session) == newer
    assert services.consent_granted(session=session, purpose="record")
    assert ConsentRecord.objects.filter(session=session, withdrawn_at__isnull=True).count() == 1


def test_a_record_must_decide_every_purpose_on_the_form(session: Session, consent_form: Any, alice: Any) -> None:
    with pytest.raises(services.ConsentError, match="research"):
        services.consent_record(
            session=session,
            form=consent_form,
            decisions={p: True for p in ALL_PURPOSES if p != "research"},
            obtained_by=alice,
            attestation="Signed form",
        )


@pytest.mark.parametrize("dependent", ["archive_training", "research"])
def test_a_use_of_the_recording_cannot_be_agreed_while_the_recording_is_refused(
    dependent: str, session: Session, consent_form: Any, alice: Any
) -> None:
    decisions = {p: p in ("live_internal", dependent) for p in ALL_PURPOSES}
    with pytest.raises(services.ConsentError, match="needs \u201cRecord the procedure\u201d agreed") as refusal:
        services.consent_record(session=session, form=consent_form, decisions=decisions, obtained_by=alice, attestation="Signed")
    label = Purpose(dependent).label
    assert label in str(refusal.value) and dependent not in str(refusal.value).replace(label, "")
    assert services.consent_in_force(session=session) is None


def test_a_form_that_asks_about_training_must_ask_about_the_recording() -> None:
    with pytest.raises(services.ConsentError, match="must also ask about \u201cRecord the procedure\u201d"):
        services.consent_form_create(title="Teaching", version="1", text="...", purposes=["live_internal", "archive_training"])


@pytest.mark.django_db(transaction=True)
def test_two_staff_recording_a_first_consent_at_once_leave_one_in_force(session, consent_form, alice, bob):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def record(by):
        try:
            return services.consent_record(
                session=session, form=consent_form, decisions={p: True for p in consent_form.purposes},
                obtained_by=by, attestation="Signed form",
            ).pk
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        pks = list(pool.map(record, [alice, bob]))
    assert len(set(pks)) == 2
    assert ConsentRecord.objects.filter(session=session, withdrawn_at__isnull=True).count() == 1


def test_the_database_refuses_a_second_consent_record_in_force(session, consent_form, alice, consenting_patient):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        ConsentRecord.objects.create(session=session, form=consent_form, patient_ref="CASE-0042", obtained_by=alice, attestation="x")
