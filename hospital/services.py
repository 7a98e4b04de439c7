"""Hospital services: the worklist pick, the procedure step, DICOM video export, the EHR link and
the connection tests. The one door views, tasks, the admin and the session hooks use.

Patient identifiers come only from the worklist, are sealed at rest (``patient_seal``) and are
opened only to build a DICOM dataset or a FHIR resource: never into a path, a URL, a file name,
a log line, a progress message or an audit detail (those name the procedure's row, the
recording's public id and the export's). Network calls never run inside a database transaction.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.sequence import Sequence

from consent import services as consent_services
from consent.audit import audit_record
from mentoring import services as mentoring_services
from mentoring.models import OperatingRoom, Session
from recordings import services as recording_services
from recordings.models import Recording
from recordings.services import archive

from . import dicomweb, dimse, fhir, video
from .models import (
    DicomExport,
    FhirLink,
    FhirServer,
    MppsReceiver,
    PacsDestination,
    Procedure,
    RoomModality,
    WorklistProvider,
)

log = logging.getLogger(__name__)


class HospitalError(Exception):
    """A hospital request that cannot be honoured; the message says what to do."""


# ---------------------------------------------------------------- sealing patient identifiers


def _box() -> Fernet:
    if settings.HOSPITAL_KEY:
        return Fernet(settings.HOSPITAL_KEY.encode())
    key = hashlib.sha256(b"orstream.hospital-patient:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def patient_seal(patient: dict[str, str]) -> str:
    return _box().encrypt(json.dumps(patient, sort_keys=True).encode()).decode()


def patient_unseal(sealed: str) -> dict[str, str]:
    if not sealed:
        return {}
    try:
        return dict(json.loads(_box().decrypt(sealed.encode())))
    except InvalidToken:
        raise HospitalError(
            "The patient's identifiers cannot be read: ORSTREAM_HOSPITAL_KEY (or SECRET_KEY) changed since they were stored."
        ) from None


def _actor(by: Any) -> str:
    return f"user:{by.pk}" if by is not None and getattr(by, "pk", None) else "system"


def _uid(*parts: str) -> str:
    """A UID derived from what it names (2.25 form): the same export makes the same UIDs, so a
    retried store replaces its instances in the PACS rather than adding copies."""
    digest = hashlib.sha256("\x00".join(["orstream", *parts]).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


# ---------------------------------------------------------------- worklist


@dataclass(frozen=True)
class WorklistEntry:
    """A scheduled procedure step as the worklist returned it. ``choice`` is the entry sealed, for
    the page's form to send back: the page never holds the patient's identifiers in clear."""

    accession_number: str
    requested_procedure_id: str
    requested_procedure_description: str
    scheduled_step_id: str
    scheduled_step_description: str
    scheduled_start: datetime | None
    modality: str
    station_ae_title: str
    choice: str


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _entry_start(step: Dataset) -> datetime | None:
    day = _text(step.get("ScheduledProcedureStepStartDate"))
    clock = _text(step.get("ScheduledProcedureStepStartTime")).split(".")[0].ljust(6, "0")[:6]
    if len(day) != 8:
        return None
    try:
        return datetime.strptime(day + clock, "%Y%m%d%H%M%S")
    except ValueError:
        return None


def worklist_query(
    *, provider: WorklistProvider, day: date, station_ae_title: str = "", modality: str = ""
) -> list[WorklistEntry]:
    """The worklist's scheduled procedure steps for ``day`` (and the station and modality, when given)."""
    query = Dataset()
    query.SpecificCharacterSet = "ISO_IR 192"
    for keyword in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                    "RequestedProcedureID", "RequestedProcedureDescription", "StudyInstanceUID"):
        setattr(query, keyword, "")
    step = Dataset()
    step.ScheduledStationAETitle = station_ae_title
    step.ScheduledProcedureStepStartDate = day.strftime("%Y%m%d")
    step.ScheduledProcedureStepStartTime = ""
    step.Modality = modality
    step.ScheduledProcedureStepID = ""
    step.ScheduledProcedureStepDescription = ""
    query.ScheduledProcedureStepSequence = Sequence([step])
    try:
        found = dimse.worklist_find(dimse.node_of(provider), query)
    except dimse.DimseError as failure:
        raise HospitalError(str(failure)) from None
    entries = []
    for item in found:
        steps = item.get("ScheduledProcedureStepSequence") or [Dataset()]
        first = steps[0]
        start = _entry_start(first)
        entry: dict[str, str] = {
            "accession_number": _text(item.get("AccessionNumber")),
            "requested_procedure_id": _text(item.get("RequestedProcedureID")),
            "requested_procedure_description": _text(item.get("RequestedProcedureDescription")),
            "scheduled_step_id": _text(first.get("ScheduledProcedureStepID")),
            "scheduled_step_description": _text(first.get("ScheduledProcedureStepDescription")),
            "modality": _text(first.get("Modality")),
            "station_ae_title": _text(first.get("ScheduledStationAETitle")),
        }
        sealed = {
            **entry,
            "scheduled_start": start.isoformat() if start else "",
            "study_instance_uid": _text(item.get("StudyInstanceUID")),
            "patient": {
                "id": _text(item.get("PatientID")),
                "issuer": _text(item.get("IssuerOfPatientID")),
                "name": _text(item.get("PatientName")),
                "birth_date": _text(item.get("PatientBirthDate")),
                "sex": _text(item.get("PatientSex")),
            },
        }
        entries.append(WorklistEntry(**entry, scheduled_start=start, choice=_box().encrypt(json.dumps(sealed).encode()).decode()))
    entries.sort(key=lambda e: (e.scheduled_start or datetime.max, e.accession_number))
    return entries


def worklist_choice_accession(choice: str) -> str:
    """The accession number a page's sealed ``choice`` names, or "" when it cannot be read."""
    try:
        return str(json.loads(_box().decrypt(choice.encode()))["accession_number"]) if choice else ""
    except (InvalidToken, ValueError, KeyError, TypeError):
        return ""


def worklist_provider_get() -> WorklistProvider | None:
    return WorklistProvider.objects.filter(is_active=True).first()


def room_modality_get(*, room: OperatingRoom) -> RoomModality | None:
    return RoomModality.objects.filter(room=room).first()


def procedure_pick(*, session: Session, choice: str, by: Any) -> Procedure:
    """Tie ``session`` to the worklist entry ``choice`` (as worklist_query sealed it)."""
    try:
        entry = json.loads(_box().decrypt(choice.encode()))
    except (InvalidToken, ValueError):
        raise HospitalError("This worklist entry could not be read: search the worklist again and pick it.") from None
    if session.status not in (Session.Status.SCHEDULED, Session.Status.LIVE):
        raise HospitalError(f"A {session.get_status_display().lower()} session cannot take a worklist entry.")
    with transaction.atomic():
        procedure, _ = Procedure.objects.update_or_create(
            session=session,
            defaults={
                "accession_number": entry["accession_number"][:16],
                "requested_procedure_id": entry["requested_procedure_id"][:16],
                "requested_procedure_description": entry["requested_procedure_description"][:64],
                "scheduled_step_id": entry["scheduled_step_id"][:16],
                "scheduled_step_description": entry["scheduled_step_description"][:64],
                # The RIS's Study Instance UID when it sent one, else one of ours for this session:
                # every export of the procedure goes into this one study.
                "study_instance_uid": entry.get("study_instance_uid") or _uid("study", str(session.public_id)),
                "patient_sealed": patient_seal(entry["patient"]),
                "picked_at": timezone.now(),
            },
        )
        audit_record(
            action="hospital.worklist_pick", actor=_actor(by), session_public_id=str(session.public_id),
            target=f"procedure:{procedure.pk}",
        )
    return procedure


def session_schedule_from_worklist(
    *, room: OperatingRoom, choice: str, surgeon: Any, planned_start: datetime, planned_end: datetime,
    time_zone: str, created_by: Any, patient_ref: str = "", notes: str = "",
) -> Session:
    """Schedule a session for a worklist entry: the procedure's name comes from the worklist."""
    try:
        entry = json.loads(_box().decrypt(choice.encode()))
    except (InvalidToken, ValueError):
        raise HospitalError("This worklist entry could not be read: search the worklist again and pick it.") from None
    procedure_name = entry["requested_procedure_description"] or entry["scheduled_step_description"] or "Procedure"
    with transaction.atomic():
        session = mentoring_services.session_schedule(
            room=room, procedure=procedure_name, surgeon=surgeon, planned_start=planned_start, planned_end=planned_end,
            time_zone=time_zone, created_by=created_by, patient_ref=patient_ref, notes=notes,
        )
        procedure_pick(session=session, choice=choice, by=created_by)
    return session


def procedure_get(*, session: Session) -> Procedure | None:
    return Procedure.objects.filter(session=session).first()


# ---------------------------------------------------------------- procedure step (MPPS)


def mpps_receiver_get() -> MppsReceiver | None:
    return MppsReceiver.objects.filter(is_active=True).first()


def procedure_step_for_session(*, session: Session, change: str) -> None:
    """Session hook (mentoring.hooks): queue the procedure step report when the session has a
    worklist entry and a receiver is configured; otherwise nothing happens."""
    procedure = procedure_get(session=session)
    if procedure is None or mpps_receiver_get() is None:
        return
    from . import tasks  # tasks call these services

    tasks.procedure_step_report.delay(procedure.pk, change)


def _series_uid(recording: Recording, clip: tuple[float | None, float | None] = (None, None)) -> str:
    if clip == (None, None):
        return _uid("series", str(recording.public_id))
    return _uid("series", str(recording.public_id), f"{clip[0]}-{clip[1]}")


def _mpps_common(procedure: Procedure, receiver: MppsReceiver) -> Dataset:
    session = procedure.session
    patient = patient_unseal(procedure.patient_sealed)
    started = timezone.localtime(session.started_at or timezone.now())
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    scheduled = Dataset()
    scheduled.StudyInstanceUID = procedure.study_instance_uid
    scheduled.ReferencedStudySequence = Sequence([])
    scheduled.AccessionNumber = procedure.accession_number
    scheduled.RequestedProcedureID = procedure.requested_procedure_id
    scheduled.RequestedProcedureDescription = procedure.requested_procedure_description
    scheduled.ScheduledProcedureStepID = procedure.scheduled_step_id
    scheduled.ScheduledProcedureStepDescription = procedure.scheduled_step_description
    scheduled.ScheduledProtocolCodeSequence = Sequence([])
    ds.ScheduledStepAttributesSequence = Sequence([scheduled])
    ds.PatientName = patient.get("name", "")
    ds.PatientID = patient.get("id", "")
    ds.PatientBirthDate = patient.get("birth_date", "")
    ds.PatientSex = patient.get("sex", "")
    ds.ReferencedPatientSequence = Sequence([])
    ds.PerformedProcedureStepID = f"OS{procedure.pk}"[:16]
    modality = room_modality_get(room=session.room)
    ds.PerformedStationAETitle = (modality.station_ae_title if modality else receiver.calling_ae_title)[:16]
    ds.PerformedStationName = (modality.station_name if modality else "")[:16]
    ds.PerformedLocation = session.room.name[:16]
    ds.PerformedProcedureStepStartDate = started.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = started.strftime("%H%M%S")
    ds.PerformedProcedureStepDescription = session.procedure[:64]
    ds.PerformedProcedureTypeDescription = procedure.requested_procedure_description[:64]
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = modality.modality if modality else "GM"
    ds.StudyID = procedure.requested_procedure_id[:16]
    ds.PerformedProtocolCodeSequence = Sequence([])
    ds.PerformedSeriesSequence = Sequence([])
    return ds


def _performed_series(procedure: Procedure, receiver: MppsReceiver) -> list[Dataset]:
    items = []
    for recording in procedure.session.recordings.exclude(status=Recording.Status.ERASED).order_by("started_at"):
        item = Dataset()
        item.PerformingPhysicianName = ""
        item.ProtocolName = procedure.session.procedure[:64]
        item.OperatorsName = ""
        item.SeriesInstanceUID = _series_uid(recording)
        item.SeriesDescription = f"Recording {recording.started_at:%H:%M}"
        item.RetrieveAETitle = ""
        item.ReferencedImageSequence = Sequence([])
        item.ReferencedNonImageCompositeSOPInstanceSequence = Sequence([])
        items.append(item)
    return items


def procedure_step_report(*, procedure: Procedure, change: str) -> Procedure:
    """N-CREATE "IN PROGRESS" when the session went live; N-SET "COMPLETED" (with the series of
    what was recorded) or "DISCONTINUED" (nothing was recorded) when it ended. Idempotent: a
    step already reported is not reported again. Raises HospitalError when the receiver refuses
    (the task retries)."""
    receiver = mpps_receiver_get()
    if receiver is None:
        raise HospitalError("No MPPS receiver is configured.")
    node = dimse.node_of(receiver)
    session = procedure.session
    try:
        if change == "live" or not procedure.mpps_instance_uid:
            if not procedure.mpps_instance_uid:
                procedure.mpps_instance_uid = _uid("mpps", str(session.public_id))
                procedure.save(update_fields=["mpps_instance_uid"])
            if procedure.mpps_status == "":
                ds = _mpps_common(procedure, receiver)
                ds.PerformedProcedureStepStatus = "IN PROGRESS"
                dimse.mpps_create(node, procedure.mpps_instance_uid, ds)
                _mpps_mark(procedure, Procedure.StepStatus.IN_PROGRESS)
        if change == "ended" and procedure.mpps_status == Procedure.StepStatus.IN_PROGRESS:
            ended = timezone.localtime(session.ended_at or timezone.now())
            series = _performed_series(procedure, receiver)
            ds = Dataset()
            ds.SpecificCharacterSet = "ISO_IR 192"
            status = Procedure.StepStatus.COMPLETED if series else Procedure.StepStatus.DISCONTINUED
            ds.PerformedProcedureStepStatus = str(status)
            ds.PerformedProcedureStepEndDate = ended.strftime("%Y%m%d")
            ds.PerformedProcedureStepEndTime = ended.strftime("%H%M%S")
            ds.PerformedSeriesSequence = Sequence(series)
            dimse.mpps_set(node, procedure.mpps_instance_uid, ds)
            _mpps_mark(procedure, status)
    except dimse.DimseError as failure:
        procedure.mpps_error = str(failure)
        procedure.save(update_fields=["mpps_error"])
        audit_record(
            action="hospital.mpps", actor="system", outcome="refused", session_public_id=str(session.public_id),
            target=f"procedure:{procedure.pk}", detail={"change": change, "reason": str(failure)[:200]},
        )
        raise HospitalError(str(failure)) from None
    return procedure


def _mpps_mark(procedure: Procedure, status: str) -> None:
    procedure.mpps_status = status
    procedure.mpps_error = ""
    procedure.save(update_fields=["mpps_status", "mpps_error"])
    audit_record(
        action="hospital.mpps", actor="system", session_public_id=str(procedure.session.public_id),
        target=f"procedure:{procedure.pk}", detail={"status": status},
    )


# ---------------------------------------------------------------- DICOM video export


def pacs_destination_list() -> list[PacsDestination]:
    return list(PacsDestination.objects.filter(is_active=True))


def _sop_class_for(room: OperatingRoom) -> tuple[str, str]:
    modality = room_modality_get(room=room)
    if modality is not None and modality.kind == RoomModality.Kind.ENDOSCOPE:
        return video.VIDEO_ENDOSCOPIC, "ES"
    return video.VIDEO_MICROSCOPIC, "GM"


def dicom_export_request(
    *, recording: Recording, destination: PacsDestination, by: Any,
    clip_start: float | None = None, clip_end: float | None = None,
) -> DicomExport:
    """Queue the export of ``recording`` (or of a clip of it) to ``destination``. Refused, and
    audited, when the recording is not available, its session has no worklist entry (the PACS
    needs the patient and the study), or the patient did not consent to recording."""
    session = recording.session
    target = f"recording:{recording.public_id}"

    def refuse(message: str, reason: str) -> HospitalError:
        audit_record(
            action="hospital.dicom_export", actor=_actor(by), outcome="refused", session_public_id=str(session.public_id),
            target=target, detail={"reason": reason, "destination": destination.name},
        )
        return HospitalError(message)

    if recording.status != Recording.Status.AVAILABLE:
        raise refuse(f"This recording is {recording.get_status_display().lower()}: only an available one goes to the PACS.",
                     f"status {recording.status}")
    if procedure_get(session=session) is None:
        raise refuse("Pick this session's procedure from the worklist first: the PACS files video under the patient and study it names.",
                     "no worklist entry")
    if not consent_services.consent_granted(session=session, purpose="record"):
        raise refuse("The patient's consent in force does not cover recording: this video cannot go to the PACS.", "no consent")
    if (clip_start is None) != (clip_end is None) or (clip_start is not None and clip_end is not None and clip_end <= clip_start):
        raise refuse("A clip needs a start before its end.", "bad clip range")
    with transaction.atomic():
        export = DicomExport.objects.create(
            recording=recording, destination=destination, requested_by=by if getattr(by, "pk", None) else None,
            clip_start=clip_start, clip_end=clip_end, series_instance_uid=_series_uid(recording, (clip_start, clip_end)),
        )
        audit_record(
            action="hospital.dicom_export", actor=_actor(by), session_public_id=str(session.public_id), target=target,
            detail={"export": str(export.public_id), "destination": destination.name, "stage": "requested"},
        )
        from . import tasks

        transaction.on_commit(lambda: tasks.dicom_export_run.delay(export.pk))
    return export


def _progress(export: DicomExport, status: str, percent: int) -> None:
    export.status, export.progress = status, max(0, min(100, percent))
    export.save(update_fields=["status", "progress"])


def _hevc_source(export: DicomExport) -> list[str]:
    """A recording above 1080p goes to DICOM as HEVC Main (no H.264 syntax carries 4K): the
    archive pipeline's accepted HEVC copy (encoded in GOP-aligned chunks across workers). While it
    is being made this raises HospitalError, and the export's task tries again later."""
    try:
        key = archive.archive_hevc_for(recording=export.recording)
    except archive.ArchiveNotReady as waiting:
        raise HospitalError(str(waiting)) from None
    except archive.ArchiveError as failure:
        raise video.VideoError(str(failure)) from None
    return [str(archive.archive_file_path(key=key))]


def dicom_export_run(*, export: DicomExport, attempt_is_last: bool = True) -> DicomExport:
    """Build the instances, store them, read each back and compare its video with what was sent.

    Idempotent: UIDs derive from the export, so a retry replaces what a failed attempt stored.
    A refusal is kept on the export (``error``, shown on the recording's page) and audited; the
    task retries transient failures with backoff before it gives up.
    """
    if export.status == DicomExport.Status.DONE:
        return export
    recording = export.recording
    session = recording.session
    procedure = procedure_get(session=session)
    if procedure is None:
        return _export_fail(export, "The session lost its worklist entry: pick it again, then export.", last=True)
    export.attempts += 1
    export.error = ""
    export.save(update_fields=["attempts", "error"])
    folder = Path(settings.HOSPITAL_WORK_DIR) / str(export.public_id)
    try:
        _progress(export, DicomExport.Status.ENCODING, 5)
        sources = recording_services.recording_segment_paths(recording=recording)
        facts = video.video_facts(sources[0])
        reencoded = ""
        try:
            syntax = video.transfer_syntax_for(facts)
        except video.NeedsEncoding as why:
            # Stored with a syntax that does not describe it, a viewer would refuse or misplay it.
            reencoded = str(why)
            _progress(export, DicomExport.Status.ENCODING, 10)
            sources = video.h264_conform(sources, folder / "conformed", facts)
            facts = video.video_facts(sources[0])
            syntax = video.transfer_syntax_for(facts)
        except video.VideoError:
            if facts.codec != "h264" or facts.width <= video.H264_MAX_WIDTH:
                raise
            _progress(export, DicomExport.Status.ENCODING, 10)
            sources = _hevc_source(export)
            facts = video.video_facts(sources[0])
            syntax = video.transfer_syntax_for(facts)
        if recording.fps and float(recording.fps) <= video.H264_MAX_FPS:
            facts = video.VideoFacts(**{**asdict(facts), "fps": float(recording.fps)})
        parts = video.parts_write(
            sources, folder / "video", max_bytes=settings.HOSPITAL_DICOM_MAX_FRAGMENT_BYTES,
            start=export.clip_start, end=export.clip_end,
        )
        _progress(export, DicomExport.Status.ENCODING, 30)
        sop_class, modality = _sop_class_for(session.room)
        room_modality = room_modality_get(room=session.room)
        study = video.Study(
            patient=patient_unseal(procedure.patient_sealed),
            study_instance_uid=procedure.study_instance_uid,
            study_id=procedure.requested_procedure_id or str(procedure.pk),
            accession_number=procedure.accession_number,
            study_description=procedure.requested_procedure_description or session.procedure,
            study_at=timezone.localtime(session.started_at or recording.started_at),
            modality=modality,
            station_name=room_modality.station_name if room_modality else "",
            institution=settings.HOSPITAL_INSTITUTION_NAME,
            series_instance_uid=export.series_instance_uid,
            series_description=("Clip" if export.clip_start is not None else "Recording") + f" {timezone.localtime(recording.started_at):%H:%M}",
            series_number=1 + Recording.objects.filter(session=session, started_at__lt=recording.started_at).count(),
        )
        files, instances = [], []
        for number, part in enumerate(parts, start=1):
            uid = _uid("instance", export.series_instance_uid, str(number))
            acquired = recording.started_at + timedelta(seconds=part.start)
            path = video.instance_write(
                part, folder / f"instance-{number:04d}.dcm", study=study, facts=facts, sop_class=sop_class,
                transfer_syntax=syntax, sop_instance_uid=uid, instance_number=number, acquired_at=timezone.localtime(acquired),
            )
            files.append(path)
            instances.append({"sop_instance_uid": uid, "size": part.size, "sha256": part.sha256, "sha1": part.sha1,
                              "frames": part.frames, "duration": part.duration, "width": facts.width, "height": facts.height})
        export.transfer_syntax, export.instances = str(syntax), instances
        export.save(update_fields=["transfer_syntax", "instances"])
        _progress(export, DicomExport.Status.SENDING, 40)
        _store(export.destination, files, study_uid=procedure.study_instance_uid, sop_class=sop_class, syntax=str(syntax))
        _progress(export, DicomExport.Status.VERIFYING, 80)
        for item in instances:
            _verify(export, item, study_uid=procedure.study_instance_uid, sop_class=sop_class)
        export.instances = instances
        export.save(update_fields=["instances"])
    except (dimse.DimseError, dicomweb.DicomwebError, video.VideoError, recording_services.RecordingError) as failure:
        return _export_fail(export, str(failure), last=attempt_is_last or isinstance(failure, video.VideoError))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    export.status, export.progress, export.finished_at = DicomExport.Status.DONE, 100, timezone.now()
    export.save(update_fields=["status", "progress", "finished_at"])
    audit_record(
        action="hospital.dicom_export", actor="system", session_public_id=str(session.public_id),
        target=f"recording:{recording.public_id}",
        detail={"export": str(export.public_id), "destination": export.destination.name, "stage": "stored",
                "instances": len(export.instances), "transfer_syntax": export.transfer_syntax,
                **({"reencoded": reencoded} if reencoded else {})},
    )
    if fhir_server_get() is not None:
        from . import tasks

        transaction.on_commit(lambda: tasks.ehr_link_send.delay(export.pk))
    return export


def _store(destination: PacsDestination, files: list[Path], *, study_uid: str, sop_class: str, syntax: str) -> None:
    if destination.method == PacsDestination.Method.STOW:
        if not destination.dicomweb_url:
            raise dicomweb.DicomwebError(f"{destination.name}: set its DICOMweb base URL to store by STOW-RS.")
        dicomweb.stow(destination.dicomweb_url, files, study_uid=study_uid)
    else:
        dimse.store(dimse.node_of(destination), files, sop_class=sop_class, transfer_syntax=syntax)


def _verify(export: DicomExport, item: dict[str, Any], *, study_uid: str, sop_class: str) -> None:
    """Read one stored instance back and compare its video with what was sent. DICOM pads an
    odd-length value with one byte: the stored fragment may be one byte longer, so the hash is
    taken over the length that was sent."""
    destination = export.destination
    uid = item["sop_instance_uid"]
    if destination.dicomweb_url:
        stored = dicomweb.retrieve(destination.dicomweb_url, study_uid=study_uid,
                                   series_uid=export.series_instance_uid, instance_uid=uid)
    else:
        stored = dimse.get(dimse.node_of(destination), study_uid=study_uid, series_uid=export.series_instance_uid,
                           instance_uid=uid, sop_class=sop_class, transfer_syntax=export.transfer_syntax)
    # The first item is the (empty) Basic Offset Table; the video is the fragment after it.
    fragments = list(generate_fragments(stored.PixelData))[1:]
    size = int(item["size"])
    problem = ""
    if len(fragments) != 1:
        problem = f"{len(fragments)} fragments instead of one"
    elif not size <= len(fragments[0]) <= size + 1 or (len(fragments[0]) > size and fragments[0][size:] != b"\x00"):
        problem = f"{len(fragments[0])} bytes of video instead of {size}"
    elif hashlib.sha256(fragments[0][:size]).hexdigest() != item["sha256"]:
        problem = "its video differs from what was sent"
    if problem:
        raise dicomweb.DicomwebError(f"{destination.name} returned instance {item['sop_instance_uid'][-12:]} altered: {problem}.")
    item["verified"] = True


def _export_fail(export: DicomExport, message: str, *, last: bool) -> DicomExport:
    export.error = message
    fields = ["error"]
    if last:
        export.status, export.finished_at = DicomExport.Status.FAILED, timezone.now()
        fields += ["status", "finished_at"]
    export.save(update_fields=fields)
    audit_record(
        action="hospital.dicom_export", actor="system", outcome="refused",
        session_public_id=str(export.recording.session.public_id), target=f"recording:{export.recording.public_id}",
        detail={"export": str(export.public_id), "destination": export.destination.name, "reason": message[:200],
                "attempt": export.attempts, "final": last},
    )
    if not last:
        raise HospitalError(message)
    return export


def dicom_export_list_for(*, recording: Recording) -> list[DicomExport]:
    return list(recording.dicom_exports.select_related("destination").order_by("-created_at"))


def dicom_export_problem_for(*, recording: Recording) -> str:
    """What the recording's page says about the PACS: the last export's refusal, if it failed."""
    last = recording.dicom_exports.order_by("-created_at").first()
    if last is None or not last.error:
        return ""
    state = "could not be stored" if last.status == DicomExport.Status.FAILED else "is being retried"
    return f"The export to {last.destination.name} {state}: {last.error}"


# ---------------------------------------------------------------- EHR (FHIR R5)


def fhir_server_get() -> FhirServer | None:
    return FhirServer.objects.filter(is_active=True).first()


def _fhir_client(server: FhirServer) -> fhir.Client:
    return fhir.Client(base_url=server.base_url, token_url=server.token_url, client_id=server.client_id,
                       key_id=server.key_id, scope=server.scope)


def _wado_url(export: DicomExport, study_uid: str, uid: str) -> str:
    base = export.destination.dicomweb_url.rstrip("/")
    if base:
        return f"{base}/studies/{study_uid}/series/{export.series_instance_uid}/instances/{uid}"
    return f"{settings.PUBLIC_URL.rstrip('/')}/recordings/{export.recording.public_id}/"


def ehr_link_send(*, export: DicomExport) -> FhirLink:
    """After a stored export: the Procedure (created, or updated with its performed period) and
    the DocumentReference for the video, both validated by fhir.resources before they are sent."""
    server = fhir_server_get()
    if server is None:
        raise HospitalError("No FHIR server is configured.")
    recording = export.recording
    session = recording.session
    procedure = procedure_get(session=session)
    if procedure is None or export.status != DicomExport.Status.DONE:
        raise HospitalError("Only a recording stored in the PACS under a worklist entry is linked in the EHR.")
    patient = patient_unseal(procedure.patient_sealed)
    if not patient.get("id"):
        raise HospitalError("The worklist gave no patient ID: the EHR cannot file this video.")
    client = _fhir_client(server)
    link, _ = FhirLink.objects.get_or_create(recording=recording, defaults={"server": server})
    record = consent_services.consent_in_force(session=session)
    granted = sorted(d.purpose for d in record.decisions.all() if d.granted) if record else []
    try:
        procedure_body = fhir.procedure_resource(
            patient=patient, accession_number=procedure.accession_number,
            description=procedure.requested_procedure_description or session.procedure,
            status="completed" if session.status == Session.Status.ENDED else "in-progress",
            start=session.started_at, end=session.ended_at, resource_id=link.procedure_id,
        )
        if link.procedure_id:
            client.update(procedure_body)
        else:
            link.procedure_id = client.create(procedure_body)
            link.save(update_fields=["procedure_id"])
        parts = [
            fhir.VideoPart(url=_wado_url(export, procedure.study_instance_uid, item["sop_instance_uid"]), size=int(item["size"]),
                           sha1_hex=item["sha1"], width=int(item["width"]), height=int(item["height"]),
                           frames=int(item["frames"]), duration=float(item["duration"]), title=f"Part {n}")
            for n, item in enumerate(export.instances, start=1)
        ]
        document = fhir.document_reference_resource(
            patient=patient, recording_public_id=str(recording.public_id), procedure_id=link.procedure_id,
            modality=_sop_class_for(session.room)[1], parts=parts, created=export.finished_at or timezone.now(),
            consent_record_id=record.pk if record else None, granted=granted,
            description=f"{session.procedure}: video recording", resource_id=link.document_reference_id,
        )
        if link.document_reference_id:
            client.update(document)
        else:
            link.document_reference_id = client.create(document)
    except fhir.FhirError as failure:
        link.error = str(failure)
        link.save(update_fields=["error"])
        audit_record(
            action="hospital.ehr_link", actor="system", outcome="refused", session_public_id=str(session.public_id),
            target=f"recording:{recording.public_id}", detail={"reason": str(failure)[:200]},
        )
        raise HospitalError(str(failure)) from None
    link.status, link.sent_at, link.error = "current", timezone.now(), ""
    link.save(update_fields=["document_reference_id", "status", "sent_at", "error"])
    audit_record(
        action="hospital.ehr_link", actor="system", session_public_id=str(session.public_id),
        target=f"recording:{recording.public_id}",
        detail={"document_reference": link.document_reference_id, "procedure": link.procedure_id},
    )
    return link


WITHDRAWN = (Recording.Status.RESTRICTED, Recording.Status.ERASING, Recording.Status.ERASED)


def ehr_links_reconcile(*, session_id: int | None = None) -> list[FhirLink]:
    """A recording restricted or erased since its DocumentReference was sent gets that document
    marked ``ORSTREAM_FHIR_WITHDRAWN_STATUS`` (the hospital's policy: entered-in-error by default,
    or superseded) in the EHR. Run for a session right after a consent withdrawal restricts its
    recordings (``ehr_links_withdraw``), and by the beat for every link (an erasure, a server that
    did not answer): a server that does not answer is tried again on the next sweep."""
    done = []
    links = FhirLink.objects.select_related("recording__session", "server").filter(
        status="current", recording__status__in=WITHDRAWN
    ).exclude(document_reference_id="")
    if session_id is not None:
        links = links.filter(recording__session_id=session_id)
    for link in links:
        client = _fhir_client(link.server)
        status = settings.FHIR_WITHDRAWN_STATUS
        try:
            document = client.read("DocumentReference", link.document_reference_id)
            document["status"] = status
            fhir.DocumentReference.model_validate(document)
            client.update(document)
        except fhir.FhirError as failure:
            link.error = str(failure)
            link.save(update_fields=["error"])
            log.warning("DocumentReference of recording %s not updated: %s", link.recording.public_id, failure)
            audit_record(
                action="hospital.ehr_link", actor="system", outcome="refused", session_public_id=str(link.recording.session.public_id),
                target=f"recording:{link.recording.public_id}", detail={"reason": str(failure)[:200], "status": status},
            )
            continue
        link.status, link.error = status, ""
        link.save(update_fields=["status", "error"])
        audit_record(
            action="hospital.ehr_link", actor="system", session_public_id=str(link.recording.session.public_id),
            target=f"recording:{link.recording.public_id}",
            detail={"document_reference": link.document_reference_id, "status": status, "because": link.recording.status},
        )
        done.append(link)
    return done


def ehr_links_withdraw(*, change: Any) -> None:
    """Consent effect (registered in HospitalConfig.ready()): once a withdrawal has restricted a
    session's recordings, their DocumentReferences are marked in the EHR at once, not at the next
    sweep. Raises while one is not updated, so the consent effect job retries it."""
    ehr_links_reconcile(session_id=change.session_id)
    left = FhirLink.objects.filter(
        recording__session_id=change.session_id, status="current", recording__status__in=WITHDRAWN
    ).exclude(document_reference_id="")
    if left.exists():
        raise HospitalError(f"{left.count()} DocumentReference(s) not marked withdrawn yet: {left.first().error}")  # type: ignore[union-attr]


# ---------------------------------------------------------------- connection tests (admin)


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    message: str


def connection_test(*, node: Any, by: Any) -> ConnectionResult:
    """C-ECHO a DICOM node (and a DICOMweb study search for a STOW destination), or read a FHIR
    server's /metadata and get a token from its endpoint. Audited either way."""
    try:
        if isinstance(node, FhirServer):
            client = _fhir_client(node)
            statement = client.metadata()
            version = statement.get("fhirVersion", "?")
            message = f"{node.name}: FHIR {version} capability statement read"
            if node.token_url:
                client.token()
                message += ", and the token endpoint issued a token"
            result = ConnectionResult(True, message + ".")
        elif isinstance(node, PacsDestination) and node.method == PacsDestination.Method.STOW:
            result = ConnectionResult(True, dicomweb.echo(node.dicomweb_url) if node.dicomweb_url else f"{node.name}: no DICOMweb URL set.")
        else:
            result = ConnectionResult(True, dimse.echo(dimse.node_of(node)))
    except (dimse.DimseError, dicomweb.DicomwebError, fhir.FhirError) as failure:
        result = ConnectionResult(False, str(failure))
    audit_record(
        action="hospital.connection_test", actor=_actor(by), outcome="allowed" if result.ok else "refused",
        target=f"{type(node).__name__.lower()}:{node.pk}", detail={"ok": result.ok},
    )
    return result
