"""The procedure step: what the RIS's MPPS SCP receives when a session goes live and ends."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.utils import timezone

from consent.models import AuditEvent
from hospital import services
from hospital.models import Procedure
from mentoring import services as mentoring_services
from recordings.models import Recording
from tests.hospital.conftest import PATIENT, worklist_write


def _picked(orthanc: Any, worklist_provider: Any, session: Any, alice: Any) -> Procedure:
    worklist_write(orthanc, accession="ACC0777", day=date.today())
    entry = services.worklist_query(provider=worklist_provider, day=date.today())[0]
    return services.procedure_pick(session=session, choice=entry.choice, by=alice)


def test_going_live_creates_the_step_in_progress_and_ending_completes_it_with_the_series(
    orthanc: Any, worklist_provider: Any, mpps_scp: Any, mpps_receiver: Any, room_modality: Any, session: Any,
    alice: Any, bob: Any, django_capture_on_commit_callbacks: Any,
) -> None:
    procedure = _picked(orthanc, worklist_provider, session, alice)
    with django_capture_on_commit_callbacks(execute=True):
        mentoring_services.session_start(session=session, by=alice)

    assert [m for m, _, _ in mpps_scp.received] == ["N-CREATE"]
    _, uid, created = mpps_scp.received[0]
    assert created.PerformedProcedureStepStatus == "IN PROGRESS"
    assert created.PatientID == PATIENT["id"] and str(created.PatientName) == PATIENT["name"]
    scheduled = created.ScheduledStepAttributesSequence[0]
    assert (scheduled.AccessionNumber, scheduled.StudyInstanceUID) == ("ACC0777", procedure.study_instance_uid)
    assert created.PerformedStationAETitle == room_modality.station_ae_title and created.Modality == "GM"

    recording = Recording.objects.create(session=session, started_by=bob, status=Recording.Status.AVAILABLE,
                                         ended_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        mentoring_services.session_end(session=session, by=alice)

    assert [m for m, _, _ in mpps_scp.received] == ["N-CREATE", "N-SET"]
    _, set_uid, modification = mpps_scp.received[1]
    assert set_uid == uid
    assert modification.PerformedProcedureStepStatus == "COMPLETED"
    assert modification.PerformedProcedureStepEndDate
    assert [s.SeriesInstanceUID for s in modification.PerformedSeriesSequence] == [services._series_uid(recording)]
    assert mpps_scp.instances[uid].PerformedProcedureStepStatus == "COMPLETED"
    procedure.refresh_from_db()
    assert procedure.mpps_status == "COMPLETED"
    assert [e.detail["status"] for e in AuditEvent.objects.filter(action="hospital.mpps")] == ["IN PROGRESS", "COMPLETED"]


def test_a_session_that_recorded_nothing_is_discontinued(
    orthanc: Any, worklist_provider: Any, mpps_scp: Any, mpps_receiver: Any, session: Any, alice: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _picked(orthanc, worklist_provider, session, alice)
    with django_capture_on_commit_callbacks(execute=True):
        mentoring_services.session_start(session=session, by=alice)
    with django_capture_on_commit_callbacks(execute=True):
        mentoring_services.session_end(session=session, by=alice)

    assert mpps_scp.received[-1][2].PerformedProcedureStepStatus == "DISCONTINUED"


def test_a_refusing_ris_leaves_the_session_live_and_the_reason_on_the_procedure(
    orthanc: Any, worklist_provider: Any, mpps_scp: Any, mpps_receiver: Any, session: Any, alice: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    procedure = _picked(orthanc, worklist_provider, session, alice)
    mpps_scp.refuse = True
    with django_capture_on_commit_callbacks(execute=True):
        mentoring_services.session_start(session=session, by=alice)

    session.refresh_from_db()
    procedure.refresh_from_db()
    assert session.status == "live"
    assert procedure.mpps_status == "" and "refused the procedure step N-CREATE: status 0x0110" in procedure.mpps_error
    refusal = AuditEvent.objects.get(action="hospital.mpps", outcome="refused")
    assert PATIENT["id"] not in str(refusal.detail)


def test_without_a_receiver_nothing_is_sent(
    orthanc: Any, worklist_provider: Any, mpps_scp: Any, session: Any, alice: Any, django_capture_on_commit_callbacks: Any,
) -> None:
    _picked(orthanc, worklist_provider, session, alice)
    with django_capture_on_commit_callbacks(execute=True):
        mentoring_services.session_start(session=session, by=alice)
    assert mpps_scp.received == []
