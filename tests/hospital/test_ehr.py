"""The EHR link: DocumentReference and Procedure on a real FHIR server, as a SMART backend
service, and the document marked entered-in-error once the recording is erased."""

from __future__ import annotations

import base64
import json
import urllib.request
from datetime import date
from typing import Any

import pytest
from fhir.resources.documentreference import DocumentReference

from consent.models import AuditEvent
from hospital import fhir, services
from hospital.models import FhirLink
from mentoring import services as mentoring_services
from recordings import services as recording_services
from tests.hospital.conftest import PATIENT, worklist_write


def _get(server: Any, path: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{server.base_url}/{path}", headers={"Authorization": f"Bearer {token}",
                                                                           "Accept": "application/fhir+json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return dict(json.loads(reply.read()))


def _token(fhir_server: Any) -> str:
    return services._fhir_client(fhir_server).token()


@pytest.fixture
def exported(orthanc: Any, worklist_provider: Any, stow_pacs: Any, fhir_server: Any, available_recording: Any, alice: Any,
             room_modality: Any, django_capture_on_commit_callbacks: Any) -> Any:
    worklist_write(orthanc, accession="ACC0555", day=date.today())
    entry = services.worklist_query(provider=worklist_provider, day=date.today())[0]
    session = available_recording.session
    services.procedure_pick(session=session, choice=entry.choice, by=alice)
    with django_capture_on_commit_callbacks(execute=True):
        mentoring_services.session_start(session=session, by=alice)
    with django_capture_on_commit_callbacks(execute=True):
        mentoring_services.session_end(session=session, by=alice)
    with django_capture_on_commit_callbacks(execute=True):
        export = services.dicom_export_request(recording=available_recording, destination=stow_pacs, by=alice)
    export.refresh_from_db()
    assert export.status == "done", export.error
    return export


def test_an_export_files_a_document_reference_and_the_procedure_in_the_ehr(
    exported: Any, fhir_server: Any, fhir_process: Any, consenting_patient: Any
) -> None:
    link = FhirLink.objects.get(recording=exported.recording)
    assert link.document_reference_id and link.procedure_id and link.error == ""
    token = _token(fhir_server)

    document = _get(fhir_process, f"DocumentReference/{link.document_reference_id}", token)
    DocumentReference.model_validate(document)
    assert document["status"] == "current"
    assert document["subject"]["identifier"]["value"] == PATIENT["id"]
    assert document["event"][0]["reference"]["reference"] == f"Procedure/{link.procedure_id}"
    assert document["modality"][0]["coding"][0]["code"] == "GM"
    attachment = document["content"][0]["attachment"]
    item = exported.instances[0]
    assert attachment["url"].endswith(f"/series/{exported.series_instance_uid}/instances/{item['sop_instance_uid']}")
    assert attachment["size"] == item["size"] and (attachment["width"], attachment["height"]) == (320, 240)
    assert attachment["frames"] == 120 and abs(float(attachment["duration"]) - item["duration"]) < 0.01
    assert base64.b64decode(attachment["hash"]).hex() == item["sha1"]
    consent_ext = document["extension"][0]
    assert consent_ext["url"] == fhir.CONSENT_EXTENSION
    assert consent_ext["valueReference"]["identifier"]["value"] == str(consenting_patient.pk)
    assert {c["coding"][0]["code"] for c in document["securityLabel"]} >= {"record", "archive_training"}

    procedure = _get(fhir_process, f"Procedure/{link.procedure_id}", token)
    assert procedure["status"] == "completed"
    assert procedure["occurrencePeriod"]["start"] and procedure["occurrencePeriod"]["end"]
    assert procedure["identifier"][0]["value"] == "ACC0555"

    # The server stores and finds what it was sent (search by the recording's identifier).
    found = _get(fhir_process, f"DocumentReference?identifier={fhir.RECORDING_SYSTEM}|{exported.recording.public_id}", token)
    assert [e["resource"]["id"] for e in found["entry"]] == [link.document_reference_id]
    assert all(PATIENT["id"] not in str(e.detail) for e in AuditEvent.objects.filter(action="hospital.ehr_link"))


def test_erasing_the_recording_marks_its_document_entered_in_error(
    exported: Any, fhir_server: Any, fhir_process: Any, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    recording = exported.recording
    with django_capture_on_commit_callbacks(execute=True):
        recording_services.erase_request(recording=recording, by=alice, reason="patient asked for erasure")
    recording.refresh_from_db()
    assert recording.status == "erased"

    assert [link.recording_id for link in services.ehr_links_reconcile()] == [recording.pk]

    link = FhirLink.objects.get(recording=recording)
    assert link.status == "entered-in-error"
    document = _get(fhir_process, f"DocumentReference/{link.document_reference_id}", _token(fhir_server))
    assert document["status"] == "entered-in-error"
    assert services.ehr_links_reconcile() == []  # done once


def test_a_forged_assertion_gets_no_token(fhir_server: Any, settings: Any) -> None:
    from tests.hospital.servers import rsa_key_pair

    settings.FHIR_PRIVATE_KEY = rsa_key_pair()[0]  # not the key the EHR knows
    with pytest.raises(fhir.FhirError, match="refused this client .HTTP 401: assertion rejected: InvalidSignatureError"):
        _token(fhir_server)


def test_the_fhir_server_refuses_requests_without_a_token(fhir_process: Any) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(fhir_process, "DocumentReference/none", "not-a-token")
    assert refused.value.code == 401


def test_a_consent_withdrawal_marks_the_document_in_the_ehr_at_once_per_policy(
    exported: Any, fhir_server: Any, fhir_process: Any, consenting_patient: Any, alice: Any, settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from consent import services as consent_services

    settings.FHIR_WITHDRAWN_STATUS = "superseded"  # this hospital's policy
    recording = exported.recording
    link = FhirLink.objects.get(recording=recording)

    with django_capture_on_commit_callbacks(execute=True):
        consent_services.consent_withdraw(record=consenting_patient, by=alice, reason="patient withdrew at the clinic")
    recording.refresh_from_db()
    assert recording.status == "restricted"

    # No sweep ran: the withdrawal's own effect job updated the EHR.
    link.refresh_from_db()
    assert (link.status, link.error) == ("superseded", "")
    document = _get(fhir_process, f"DocumentReference/{link.document_reference_id}", _token(fhir_server))
    assert document["status"] == "superseded"
    DocumentReference.model_validate(document)
    found = _get(fhir_process, f"DocumentReference?identifier={fhir.RECORDING_SYSTEM}|{recording.public_id}&status=current",
                 _token(fhir_server))
    assert found.get("entry", []) == []
    event = AuditEvent.objects.filter(action="hospital.ehr_link", detail__status="superseded").get()
    assert event.detail["because"] == "restricted" and PATIENT["id"] not in str(event.detail)
    assert services.ehr_links_reconcile() == []  # done once


def test_an_ehr_that_does_not_answer_keeps_the_withdrawal_pending(
    exported: Any, fhir_server: Any, consenting_patient: Any, alice: Any,
) -> None:
    from consent import services as consent_services
    from consent.effects import ConsentNarrowed

    link = FhirLink.objects.get(recording=exported.recording)
    consent_services.consent_withdraw(record=consenting_patient, by=alice, reason="withdrawn")  # effects not delivered
    fhir_server.base_url = "http://127.0.0.1:1"
    fhir_server.save()
    change = ConsentNarrowed(session_id=exported.recording.session_id, session_public_id="", granted=frozenset(),
                             by_id=alice.pk, reason="withdrawn")

    with pytest.raises(services.HospitalError, match="not marked withdrawn yet: The FHIR server at http://127.0.0.1:1 could not be reached"):
        services.ehr_links_withdraw(change=change)
    link.refresh_from_db()
    assert link.status == "current" and "could not be reached" in link.error
    assert AuditEvent.objects.filter(action="hospital.ehr_link", outcome="refused").exists()
