"""FHIR R5 exports of the audit trail (AuditEvent) and of consent records (Consent).

Called by the records office's export (and the EHR interface) through `audit_event_to_fhir`,
`consent_to_fhir` and `audit_bundle`. Uses fhir.resources' default package, which is FHIR R5
(R4B and STU3 live in sub-packages). It only reads rows; it never puts a patient's name in a
resource: the subject is the session's pseudonymous reference, as an identifier.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from fhir.resources.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.auditevent import (
    AuditEventAgent,
    AuditEventEntity,
    AuditEventEntityDetail,
    AuditEventOutcome,
    AuditEventSource,
)
from fhir.resources.bundle import Bundle, BundleEntry
from fhir.resources.codeableconcept import CodeableConcept
from fhir.resources.coding import Coding
from fhir.resources.consent import Consent as FhirConsent
from fhir.resources.consent import ConsentProvision
from fhir.resources.identifier import Identifier
from fhir.resources.period import Period
from fhir.resources.reference import Reference

from .models import AuditEvent, ConsentRecord, Purpose

# Code systems of our own for what FHIR has no code for; FHIR wants URIs, these are stable names.
PURPOSE_SYSTEM = "urn:orstream:consent-purpose"
ACTION_SYSTEM = "urn:orstream:audit-action"
ACTOR_SYSTEM = "urn:orstream:actor"
PATIENT_REF_SYSTEM = "urn:orstream:patient-ref"
SESSION_SYSTEM = "urn:orstream:session"
AUDIT_HASH_SYSTEM = "urn:orstream:audit-hash"
# HL7 terminology the resources require.
OUTCOME_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"

# FHIR AuditEvent.action: C create, R read, U update, D delete, E execute.
_CRUDE = {
    "consent.record": "C",
    "consent.withdraw": "U",
    "recording.start": "C",
    "recording.view": "R",
    "recording.download": "R",
    "recording.export": "R",
    "recording.erase": "D",
    "recording.restrict": "U",
}


def audit_event_to_fhir(event: AuditEvent) -> dict[str, Any]:
    """One audit event as a FHIR R5 AuditEvent (a JSON-ready dict). Hashes travel as entity details."""
    entities: list[AuditEventEntity] = []
    if event.session_public_id:
        entities.append(
            AuditEventEntity(what=Reference(identifier=Identifier(system=SESSION_SYSTEM, value=event.session_public_id)))
        )
    details = [
        AuditEventEntityDetail(type=CodeableConcept(text="hash"), valueString=event.hash),
        AuditEventEntityDetail(type=CodeableConcept(text="prev_hash"), valueString=event.prev_hash),
    ]
    details += [
        AuditEventEntityDetail(type=CodeableConcept(text=str(key)), valueString=_text(value))
        for key, value in sorted(event.detail.items())
    ]
    entities.append(
        AuditEventEntity(
            what=Reference(identifier=Identifier(system=ACTION_SYSTEM, value=event.target or event.action)),
            detail=details,
        )
    )
    resource = FhirAuditEvent(
        id=f"audit-{event.pk}",
        code=CodeableConcept(coding=[Coding(system=ACTION_SYSTEM, code=event.action)], text=event.action),
        action=_CRUDE.get(event.action, "E"),
        recorded=event.at,
        outcome=AuditEventOutcome(
            # 0 success, 4 minor failure: a refusal is the system working, the request failing.
            code=Coding(system=OUTCOME_SYSTEM, code="0" if event.outcome == "allowed" else "4"),
            detail=[CodeableConcept(text=event.outcome)],
        ),
        agent=[AuditEventAgent(who=Reference(identifier=Identifier(system=ACTOR_SYSTEM, value=event.actor)), requestor=True)],
        source=AuditEventSource(observer=Reference(display=f"orstream {settings.PUBLIC_URL}")),
        entity=entities,
    )
    return resource.model_dump(mode="json", exclude_none=True)


def consent_to_fhir(record: ConsentRecord) -> dict[str, Any]:
    """A consent record as a FHIR R5 Consent.

    R5 has one base decision with nested provisions as exceptions: the base is "deny" and each
    granted purpose is a provision that permits it; a refused purpose is simply not excepted.
    A withdrawn (or replaced) record is "inactive".
    """
    granted = [d.purpose for d in record.decisions.all() if d.granted]
    resource = FhirConsent(
        id=f"consent-{record.pk}",
        status="inactive" if record.withdrawn_at else "active",
        category=[
            CodeableConcept(coding=[Coding(system=CONSENT_SCOPE_SYSTEM, code="treatment")], text=record.form.title)
        ],
        subject=Reference(identifier=Identifier(system=PATIENT_REF_SYSTEM, value=record.patient_ref)),
        date=record.obtained_at.date(),
        # No end while the consent stands (exclude_none drops it from the JSON).
        period=Period(start=record.obtained_at, end=record.withdrawn_at),
        identifier=[Identifier(system=SESSION_SYSTEM, value=str(record.session.public_id))],
        policyText=[Reference(display=f"{record.form.title} v{record.form.version}")],
        decision="deny",
        provision=[
            ConsentProvision(purpose=[Coding(system=PURPOSE_SYSTEM, code=purpose, display=Purpose(purpose).label)])
            for purpose in granted
        ]
        or None,
    )
    return resource.model_dump(mode="json", exclude_none=True)


def audit_bundle(events: Any) -> dict[str, Any]:
    """A FHIR collection Bundle of audit events (e.g. everything about one session)."""
    bundle = Bundle(
        type="collection",
        entry=[BundleEntry(resource=FhirAuditEvent.model_validate(audit_event_to_fhir(event))) for event in events],
    )
    return bundle.model_dump(mode="json", exclude_none=True)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
