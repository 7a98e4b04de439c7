"""Training's part of ``manage.py seed_demo`` (registered in TrainingConfig.ready()): a programme
directed by a faculty member, a resident, an ended demo session the resident operated in with a
short recording the patient allowed for training, a submitted OSATS assessment of it with a
comment on the timeline, and a model-procedure collection holding it. So a new user of
``make run`` sees every training page working.

Idempotent: found by name and reused on every run; only the accounts' password is set again.
The recording's video is a small generated clip (orstream.edge.demo), registered and verified
like one the edge recorded. No patient: the session's case reference is a demo one.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from consent import services as consent_services
from mentoring import services as mentoring_services
from mentoring.demo import DemoCast
from mentoring.models import OperatingRoom, Role, Session
from orstream.edge import demo as clips
from recordings import services as recording_services
from recordings.models import Recording

from . import services
from .models import Assessment, Collection, Instrument, Performance, Programme

PROGRAMME = "Demo microsurgery residency"
PROCEDURE = "Demo: microvascular anastomosis (recorded)"
COLLECTION = "Model microvascular anastomosis"
ROOM = "OR 1 (demo)"
# The demo recording's clip: small, so seeding takes a second or two.
WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 30, 6.0
SCORES = {"respect-for-tissue": 4, "time-and-motion": 3, "instrument-handling": 4, "knowledge-of-instruments": 4,
          "use-of-assistants": 3, "flow-of-operation": 3, "knowledge-of-procedure": 4}


def _account(username: str, first: str, last: str, password: str) -> User:
    user, _ = User.objects.get_or_create(
        username=username, defaults={"first_name": first, "last_name": last, "email": f"{username}@demo.invalid"}
    )
    user.set_password(password)
    user.save(update_fields=["password"])
    return user


def _session(cast: DemoCast, resident: User) -> Session:
    """The ended demo session the resident operated in: scheduled with its consent and the resident,
    then closed two days back (demo data)."""
    room = OperatingRoom.objects.get(name=ROOM)
    session = Session.objects.filter(room=room, procedure=PROCEDURE).first()
    if session is not None:
        return session
    start = timezone.now().replace(second=0, microsecond=0) + timedelta(days=30)
    session = mentoring_services.session_schedule(
        room=room, procedure=PROCEDURE, surgeon=cast.surgeon, planned_start=start, planned_end=start + timedelta(hours=1),
        time_zone=settings.TIME_ZONE, created_by=cast.coordinator, patient_ref="DEMO-0002",
    )
    consent_services.consent_record(
        session=session, form=cast.consent_form, decisions=dict.fromkeys(cast.consent_form.purposes, True),
        obtained_by=cast.coordinator, attestation="Demo data: no patient.",
    )
    mentoring_services.participant_add(
        session=session, role=Role.RESIDENT, display_name=resident.get_full_name(), email=resident.email, user=resident,
        by=cast.coordinator,
    )
    began = timezone.now().replace(second=0, microsecond=0) - timedelta(days=2)
    Session.objects.filter(pk=session.pk).update(
        status=Session.Status.ENDED, planned_start=began, planned_end=began + timedelta(hours=1),
        started_at=began, ended_at=began + timedelta(hours=1),
    )
    session.refresh_from_db()
    return session


def _recording(session: Session, by: Any) -> Recording:
    """The session's available recording: one part, a generated clip put on the spool as the edge
    would, registered and verified (finalize)."""
    recording = session.recordings.filter(status=Recording.Status.AVAILABLE).first()
    if recording is not None:
        return recording
    recording = session.recordings.filter(status=Recording.Status.FINALIZING).first() or Recording.objects.create(
        session=session, started_by=by, status=Recording.Status.FINALIZING, ended_at=session.ended_at, expected_segments=1,
    )
    folder = Path(settings.RECORDINGS_SPOOL_DIR) / recording.prefix
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "seg-00000.mp4"
    if not recording.segments.exists():
        with tempfile.TemporaryDirectory() as scratch:
            clips.generate(Path(scratch) / "clip.mp4", width=WIDTH, height=HEIGHT, fps=FPS, seconds=SECONDS, bitrate=800_000)
            shutil.copyfile(Path(scratch) / "clip.mp4", target)
        video = audio = 0
        with av.open(str(target)) as container:
            for packet in container.demux():
                if packet.size:
                    video += packet.stream.type == "video"
                    audio += packet.stream.type == "audio"
        data = target.read_bytes()
        recording_services.segment_register(
            recording_public_id=str(recording.public_id), index=0, path=f"{recording.prefix}/{target.name}",
            sha256=hashlib.sha256(data).hexdigest(), size=len(data), duration=video / FPS, video_frames=video,
            audio_frames=audio, width=WIDTH, height=HEIGHT, fps=FPS, video_codec="h264",
            audio_codec="opus",
        )
    return recording_services.recording_finalize(recording=recording)


def _assessment(recording: Recording, resident: User, faculty: User, osats: Instrument) -> None:
    """The faculty member's submitted OSATS assessment of the resident, with a comment at 0:02."""
    assessment = Assessment.objects.filter(recording=recording, rater=faculty, instrument=osats).first()
    if assessment is None:
        assessment = services.assessment_assign(recording=recording, resident=resident, rater=faculty, instrument=osats, by=faculty)
    if assessment.is_submitted:
        return
    services.assessment_score(assessment=assessment, user=faculty, scores=SCORES, summary="Safe and steady; work on economy of motion.")
    if not assessment.comments.exists():
        services.assessment_comment_add(assessment=assessment, user=faculty, media_time=2.0, item_key="respect-for-tissue",
                                        text="Gentle handling of the vessel wall here.")
    services.assessment_submit(assessment=assessment, user=faculty)


def training_demo_seed(cast: DemoCast) -> list[str]:
    """Seed (or find) the training demo; return the sign-in lines for the demo's secrets file."""
    programme = Programme.objects.filter(name=PROGRAMME).first() or services.programme_create(
        name=PROGRAMME, specialty="Plastic and reconstructive surgery"
    )
    faculty = _account("faculty", "Fran", "Faculty", cast.password)
    resident = _account("resident", "Riley", "Resident", cast.password)
    services.programme_member_add(programme=programme, user=faculty, role="director")
    services.programme_member_add(programme=programme, user=resident, role="resident", year=2)
    session = _session(cast, resident)
    recording = _recording(session, cast.surgeon)
    if recording.status != Recording.Status.AVAILABLE:  # e.g. a worker elsewhere took its verification
        return [f"  training: the demo recording is {recording.get_status_display().lower()}; run seed_demo again once it is available"]
    if not Performance.objects.filter(session=session, resident=resident).exists():
        services.performance_record(
            session=session, programme=programme, resident=resident, by=cast.surgeon,
            parts=[(recording, 0.0, recording.duration or SECONDS, "anastomosis")],
        )
    osats = Instrument.objects.filter(slug="osats-grs", is_active=True).order_by("-created_at").first()
    if osats is not None:  # a centre may have retired it: the rest of the demo stands without
        _assessment(recording, resident, faculty, osats)
    collection = Collection.objects.filter(title=COLLECTION).first() or services.collection_create(
        title=COLLECTION, specialty=programme.specialty, procedure=PROCEDURE, by=faculty,
        description="Model anastomoses to watch before a similar case.",
    )
    if not collection.entries.filter(recording=recording).exists():
        services.collection_entry_add(collection=collection, recording=recording, by=faculty,
                                      note="Watch the needle enter at right angles to the vessel wall.")
    return [
        f"  training ({settings.PUBLIC_URL}/training/): sign in with the same password as faculty (programme director"
        " of the demo residency; it scored the demo recording) or resident (sees the result and the progress chart)",
    ]
