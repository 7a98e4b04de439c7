"""FHIR R5 exports: AuditEvent and Consent resources that validate and carry no patient name."""

from __future__ import annotations

import json
from typing import Any

from fhir.resources.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.bundle import Bundle
from fhir.resources.consent import Consent as FhirConsent

from consent import fhir, services
from consent.models import AuditEvent, ConsentRecord
from mentoring.models import Session


def test_audit_events_export_as_valid_r5_audit_events(consenting_patient: ConsentRecord, session: Session) -> None:
    event = AuditEvent.objects.get(action="consent.record")
    exported = fhir.audit_event_to_fhir(event)
    FhirAuditEvent.model_validate(exported)  # raises when the resource is not valid R5
    assert exported["resourceType"] == "AuditEvent"
    assert exported["code"]["coding"][0]["code"] == "consent.record"
    assert exported["action"] == "C"
    assert exported["outcome"]["code"]["code"] == "0"
    details = {d["type"]["text"]: d["valueString"] for d in exported["entity"][-1]["detail"]}
    assert details["hash"] == event.hash
    assert exported["entity"][0]["what"]["identifier"]["value"] == str(session.public_id)


def test_a_refusal_exports_as_a_failed_audit_event(refusing_patient: ConsentRecord, session: Session) -> None:
    try:
        services.consent_require(session=session, purpose="record", actor="user:1", action="recording.start")
    except services.ConsentError:
        pass
    exported = fhir.audit_event_to_fhir(AuditEvent.objects.get(outcome="refused"))
    assert exported["outcome"]["code"]["code"] == "4"


def test_a_bundle_of_a_sessions_events_validates(consenting_patient: ConsentRecord, session: Session) -> None:
    services.consent_withdraw(record=consenting_patient, by=session.surgeon)
    bundle = fhir.audit_bundle(AuditEvent.objects.filter(session_public_id=str(session.public_id)))
    Bundle.model_validate(bundle)
    assert [e["resource"]["code"]["text"] for e in bundle["entry"]] == ["consent.record", "consent.withdraw"]


def test_consent_exports_permit_provisions_only_for_granted_purposes(
    session: Session, consent_form: Any, alice: Any
) -> None:
    record = services.consent_record(
        session=session,
        form=consent_form,
        decisions={"record": True, "live_internal": True, "live_external": False, "archive_training": False, "research": False},
        obtained_by=alice,
        attestation="Signed form",
    )
    exported = fhir.consent_to_fhir(record)
    FhirConsent.model_validate(exported)
    assert exported["status"] == "active"
    assert exported["decision"] == "deny"
    assert sorted(p["purpose"][0]["code"] for p in exported["provision"]) == ["live_internal", "record"]
    assert exported["subject"]["identifier"]["value"] == "CASE-0042"
    text = json.dumps(exported)
    assert "Bob" not in text and "Surgeon" not in text


def test_a_withdrawn_consent_exports_as_inactive_with_its_end(consenting_patient: ConsentRecord, alice: Any) -> None:
    services.consent_withdraw(record=consenting_patient, by=alice, reason="patient asked")
    consenting_patient.refresh_from_db()
    exported = fhir.consent_to_fhir(consenting_patient)
    FhirConsent.model_validate(exported)
    assert exported["status"] == "inactive"
    assert "end" in exported["period"]
