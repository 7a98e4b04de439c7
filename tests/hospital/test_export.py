"""DICOM video export into a real Orthanc, by C-STORE and by STOW-RS, read back and validated."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.encaps import generate_fragments

from consent.models import AuditEvent
from hospital import services
from hospital.models import DicomExport, Procedure
from tests.hospital.conftest import PATIENT, worklist_write


@pytest.fixture
def procedure(orthanc: Any, worklist_provider: Any, available_recording: Any, alice: Any, room_modality: Any) -> Procedure:
    worklist_write(orthanc, accession="ACC0900", day=date.today())
    entry = services.worklist_query(provider=worklist_provider, day=date.today())[0]
    return services.procedure_pick(session=available_recording.session, choice=entry.choice, by=alice)


def _export(recording: Any, destination: Any, by: Any, capture: Any, **clip: Any) -> DicomExport:
    with capture(execute=True):
        export = services.dicom_export_request(recording=recording, destination=destination, by=by, **clip)
    export.refresh_from_db()
    return export


def _stored(orthanc: Any, export: DicomExport) -> list[dict[str, Any]]:
    series = [s for s in orthanc.get("/series?expand") if s["MainDicomTags"]["SeriesInstanceUID"] == export.series_instance_uid]
    assert len(series) == 1
    return sorted((orthanc.get(f"/instances/{i}") for i in series[0]["Instances"]),
                  key=lambda i: int(i["MainDicomTags"]["InstanceNumber"]))


def test_cstore_export_lands_in_the_worklist_study_as_valid_video(
    orthanc: Any, cstore_pacs: Any, procedure: Procedure, available_recording: Any, alice: Any, tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    export = _export(available_recording, cstore_pacs, alice, django_capture_on_commit_callbacks)

    assert (export.status, export.progress, export.error) == ("done", 100, "")
    assert export.transfer_syntax == "1.2.840.10008.1.2.4.102"
    assert all(item["verified"] for item in export.instances)
    instances = _stored(orthanc, export)
    assert len(instances) == 1
    data = orthanc.get_bytes(f"/instances/{instances[0]['ID']}/file")
    path = tmp_path / "stored.dcm"
    path.write_bytes(data)
    stored = pydicom.dcmread(path)
    assert stored.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.2.1" and stored.Modality == "GM"
    assert stored.StudyInstanceUID == procedure.study_instance_uid and stored.AccessionNumber == "ACC0900"
    assert stored.PatientID == PATIENT["id"] and str(stored.PatientName) == PATIENT["name"]
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.102"
    assert (stored.Rows, stored.Columns) == (240, 320)
    # 2 segments of 2 s at 30 fps, stream-copied.
    assert int(stored.NumberOfFrames) == export.instances[0]["frames"] == 120
    bot, fragment = generate_fragments(stored.PixelData)
    assert bot == b""
    size = export.instances[0]["size"]
    assert hashlib.sha256(fragment[:size]).hexdigest() == export.instances[0]["sha256"]
    check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    assert "Error" not in check.stderr, check.stderr
    audit = AuditEvent.objects.filter(action="hospital.dicom_export", outcome="allowed").order_by("pk")
    assert [e.detail["stage"] for e in audit] == ["requested", "stored"]
    assert all(PATIENT["id"] not in str(e.detail) for e in audit)


def test_stow_export_of_a_long_recording_makes_several_instances_in_order(
    orthanc: Any, stow_pacs: Any, procedure: Procedure, available_recording: Any, alice: Any, settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # One fragment per instance at most: a small limit stands for H.264's ~4 GB one.
    settings.HOSPITAL_DICOM_MAX_FRAGMENT_BYTES = 1_500_000
    export = _export(available_recording, stow_pacs, alice, django_capture_on_commit_callbacks)

    assert export.status == "done", export.error
    assert len(export.instances) >= 2
    assert all(item["size"] <= 1_500_000 and item["verified"] for item in export.instances)
    instances = _stored(orthanc, export)
    assert [i["MainDicomTags"]["SOPInstanceUID"] for i in instances] == [i["sop_instance_uid"] for i in export.instances]
    assert sum(int(i["MainDicomTags"]["NumberOfFrames"]) for i in instances) == 120
    # Every export of this procedure goes into one study.
    assert {orthanc.get(f"/instances/{i['ID']}/tags?simplify")["StudyInstanceUID"] for i in instances} == {procedure.study_instance_uid}


def test_a_clip_between_two_bookmarks_is_its_own_series_in_the_same_study(
    orthanc: Any, cstore_pacs: Any, procedure: Procedure, available_recording: Any, alice: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    whole = _export(available_recording, cstore_pacs, alice, django_capture_on_commit_callbacks)
    clip = _export(available_recording, cstore_pacs, alice, django_capture_on_commit_callbacks, clip_start=1.5, clip_end=3.5)

    assert clip.status == "done", clip.error
    assert clip.series_instance_uid != whole.series_instance_uid
    # Stream copy starts on the keyframe at or before the start (1 s GOPs: the one at ~1 s) and
    # stops at the end: ~2.5 s of 30 fps.
    assert abs(clip.instances[0]["frames"] - 75) <= 2


def test_a_pacs_that_rejects_us_leaves_a_clear_message_for_the_recording_page(
    orthanc: Any, cstore_pacs: Any, procedure: Procedure, available_recording: Any, alice: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    cstore_pacs.ae_title = "WRONGAE"
    cstore_pacs.save()
    export = _export(available_recording, cstore_pacs, alice, django_capture_on_commit_callbacks)

    assert export.status == "failed"
    message = services.dicom_export_problem_for(recording=available_recording)
    assert "could not be stored" in message and "rejected the association" in message and "ORSTREAM" in message
    refused = AuditEvent.objects.get(action="hospital.dicom_export", outcome="refused")
    assert refused.detail["final"] is True and PATIENT["id"] not in str(refused.detail)


def test_export_is_refused_without_a_worklist_entry(cstore_pacs: Any, available_recording: Any, alice: Any) -> None:
    with pytest.raises(services.HospitalError, match="Pick this session's procedure from the worklist"):
        services.dicom_export_request(recording=available_recording, destination=cstore_pacs, by=alice)
    assert AuditEvent.objects.filter(action="hospital.dicom_export", outcome="refused").count() == 1


def test_a_refusal_before_the_last_attempt_is_kept_and_retried(
    orthanc: Any, cstore_pacs: Any, procedure: Procedure, available_recording: Any, alice: Any,
) -> None:
    cstore_pacs.ae_title = "WRONGAE"
    cstore_pacs.save()
    export = DicomExport.objects.create(recording=available_recording, destination=cstore_pacs,
                                        series_instance_uid=services._series_uid(available_recording))

    with pytest.raises(services.HospitalError, match="rejected the association"):
        services.dicom_export_run(export=export, attempt_is_last=False)  # the task retries with backoff
    export.refresh_from_db()
    assert export.status != "failed" and "rejected the association" in export.error and export.attempts == 1
    assert "is being retried" in services.dicom_export_problem_for(recording=available_recording)

    cstore_pacs.ae_title = orthanc.ae_title
    cstore_pacs.save()
    export = services.dicom_export_run(export=export, attempt_is_last=True)
    assert (export.status, export.error, export.attempts) == ("done", "", 2)
    assert services.dicom_export_problem_for(recording=available_recording) == ""
    finals = [e.detail["final"] for e in AuditEvent.objects.filter(action="hospital.dicom_export", outcome="refused")]
    assert finals == [False]
