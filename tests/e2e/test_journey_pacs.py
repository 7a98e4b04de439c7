"""The hospital journey in a real browser on the real site: a coordinator schedules the session
from the worklist on the new-session form (Orthanc's worklist plugin), the session goes live and
ends (the RIS's MPPS SCP gets IN PROGRESS, then COMPLETED), the recording is sent to the PACS
(Orthanc) and found there under the worklist's study as valid DICOM video, and its
DocumentReference is on the FHIR server."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from consent import services as consent_services
from hospital import fhir, services
from hospital.models import DicomExport, FhirLink, Procedure
from mentoring.models import Session
from recordings.models import Recording
from tests.conftest import ALL_PURPOSES
from tests.hospital.conftest import (  # noqa: F401
    PATIENT,
    cstore_pacs,
    fhir_keys,
    fhir_process,
    fhir_server,
    mpps_receiver,
    mpps_scp,
    orthanc,
    room_modality,
    worklist_provider,
    worklist_write,
)
from tests.recordings.fixtures import ClipFacts, clip, clip_facts, register_segments  # noqa: F401

from .conftest import screenshot
from .test_library import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _record(session: Session, bob: Any, clip: Path, clip_facts: ClipFacts) -> Recording:  # noqa: F811
    """What the edge leaves after a recording of two segments (the edge's own journeys record for real)."""
    recording = Recording.objects.create(session=session, started_by=bob, status=Recording.Status.FINALIZING,
                                         ended_at=timezone.now())
    register_segments(recording, clip, clip_facts, Path(django_settings.RECORDINGS_SPOOL_DIR), 2)
    Recording.objects.filter(pk=recording.pk).update(status=Recording.Status.AVAILABLE, duration=2 * clip_facts.duration,
                                                      width=320, height=240, fps=30)
    recording.refresh_from_db()
    return recording


def test_a_coordinator_schedules_from_the_worklist_and_the_video_reaches_pacs_and_ehr(
    site: Any, open_page: Any, orthanc: Any, worklist_provider: Any, cstore_pacs: Any, mpps_scp: Any,  # noqa: F811
    mpps_receiver: Any, fhir_server: Any, fhir_process: Any, room_modality: Any, room: Any, alice: Any, bob: Any,  # noqa: F811
    consent_form: Any, clip: Path, clip_facts: ClipFacts, tmp_path: Path, settings: Any,  # noqa: F811
) -> None:
    day = (timezone.now() + timedelta(days=1)).date()
    worklist_write(orthanc, accession="ACC1313", day=day, hour=9, description="Microvascular decompression")
    worklist_write(orthanc, accession="ACC1314", day=day, hour=9, station="OTHERROOM", description="Lumbar discectomy")

    page = sign_in(open_page, site, alice, settings, "/sessions/new/")
    page.get_by_role("link", name="Schedule from the hospital worklist").click()
    page.get_by_label("Room").select_option(label=room.name)
    page.get_by_label("Surgeon").select_option(value=str(bob.pk))
    page.get_by_label("Start").fill(f"{day}T09:00")
    page.get_by_label("End").fill(f"{day}T12:00")
    page.get_by_label("Case reference").fill("CASE-1313")
    page.get_by_label("Scheduled on").fill(str(day))
    # A mistyped AE title: the page says what to do and keeps everything typed.
    page.get_by_label("Station AE title").fill("OR\\3")
    page.get_by_role("button", name="Search the worklist").click()
    page.get_by_text("no backslash").wait_for()
    assert page.get_by_label("Case reference").input_value() == "CASE-1313"
    assert page.get_by_label("Start").input_value() == f"{day}T09:00"
    # Empty: the room's own station (OR3SCOPE), so the other room's procedure is not offered.
    page.get_by_label("Station AE title").fill("")
    page.get_by_role("button", name="Search the worklist").click()
    page.get_by_role("radio", name="ACC1313").check()
    assert page.get_by_role("radio", name="ACC1314").count() == 0
    screenshot(page, "worklist-schedule")
    page.get_by_role("button", name="Schedule", exact=True).click()
    page.wait_for_url("**/sessions/*/")
    assert "accession ACC1313" in page.locator("#hospital").inner_text()

    session = Session.objects.get()
    assert (session.procedure, session.patient_ref) == ("Microvascular decompression", "CASE-1313")
    procedure = Procedure.objects.get(session=session)
    assert procedure.accession_number == "ACC1313"
    assert services.patient_unseal(procedure.patient_sealed)["id"] == PATIENT["id"]
    consent_services.consent_record(session=session, form=consent_form, decisions={p: True for p in ALL_PURPOSES},
                                    obtained_by=alice, attestation="Signed form, witnessed by the ward nurse")

    page.reload()
    page.get_by_role("button", name="Go live").click()
    page.get_by_role("button", name="End session").wait_for()
    assert [m for m, _, _ in mpps_scp.received] == ["N-CREATE"]
    recording = _record(session, bob, clip, clip_facts)
    try:
        page.get_by_role("button", name="End session").click()
        page.locator("#confirm-yes").click()
        page.wait_for_url(f"**/sessions/{session.public_id}/")
        assert [m for m, _, _ in mpps_scp.received] == ["N-CREATE", "N-SET"]
        step = mpps_scp.received[1][2]
        assert step.PerformedProcedureStepStatus == "COMPLETED"
        assert len(step.PerformedSeriesSequence) == 1

        page.get_by_role("link", name="Send to the PACS").click()
        page.get_by_role("button", name="Send").click()
        page.get_by_text("Stored in the PACS (100%)").wait_for(timeout=60_000)
        screenshot(page, "pacs-export")
        # The recording's own page says the same, and links back to the export page.
        page.goto(f"{site.url}/recordings/{recording.public_id}/")
        card = page.locator("#pacs")
        card.get_by_text("Stored in the PACS (100%)").wait_for()
        assert "1 instance read back and verified" in card.inner_text()
        card.get_by_role("link", name="PACS export").click()
        page.wait_for_url(f"**/hospital/recordings/{recording.public_id}/pacs/")
    finally:
        shutil.rmtree(Path(django_settings.RECORDINGS_SPOOL_DIR) / recording.prefix, ignore_errors=True)

    export = DicomExport.objects.get(recording=recording)
    assert step.PerformedSeriesSequence[0].SeriesInstanceUID == export.series_instance_uid
    series = [s for s in orthanc.get("/series?expand") if s["MainDicomTags"]["SeriesInstanceUID"] == export.series_instance_uid]
    assert len(series) == 1
    study = orthanc.get(f"/studies/{series[0]['ParentStudy']}")
    assert study["MainDicomTags"]["StudyInstanceUID"] == procedure.study_instance_uid
    assert study["MainDicomTags"]["AccessionNumber"] == "ACC1313"
    assert orthanc.get(f"/patients/{study['ParentPatient']}")["MainDicomTags"]["PatientID"] == PATIENT["id"]
    stored = tmp_path / "stored.dcm"
    stored.write_bytes(orthanc.get_bytes(f"/instances/{series[0]['Instances'][0]}/file"))
    check = subprocess.run(["dciodvfy", str(stored)], capture_output=True, text=True)
    assert "Error" not in check.stderr, check.stderr

    # The site sent the EHR link after the export: read it back from the FHIR server.
    link = FhirLink.objects.get(recording=recording)
    assert link.status == "current" and link.document_reference_id, link.error
    document = services._fhir_client(fhir_server).read("DocumentReference", link.document_reference_id)
    assert document["status"] == "current"
    assert document["subject"]["identifier"]["value"] == PATIENT["id"]
    assert [c["attachment"]["size"] for c in document["content"]] == [i["size"] for i in export.instances]
    found = services._fhir_client(fhir_server).request(
        "GET", "DocumentReference", params={"identifier": f"{fhir.RECORDING_SYSTEM}|{recording.public_id}"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [link.document_reference_id]
