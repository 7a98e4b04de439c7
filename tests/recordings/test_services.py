"""Recording start and stop under consent, segment registration, export, restriction, erasure, retention."""

from __future__ import annotations

import hashlib
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from consent.audit import audit_verify
from consent.models import AuditEvent
from consent.services import ConsentError
from mentoring import services as mentoring_services
from mentoring.models import Session
from recordings import services
from recordings.models import ExportJob, Recording, RetentionPolicy, Segment

from .fixtures import ClipFacts, FakeEdge


@pytest.fixture
def live_session(session: Session, bob: Any) -> Session:
    return mentoring_services.session_start(session=session, by=bob)


# ---------------------------------------------------------------- start and stop


def test_recording_starts_at_the_edge_when_the_patient_consented(
    live_session: Session, consenting_patient: Any, bob: Any, fake_edge: FakeEdge
) -> None:
    recording = services.recording_start(session=live_session, by=bob)
    assert recording.status == Recording.Status.RECORDING
    assert fake_edge.calls == [
        ("POST", f"/sessions/{live_session.public_id}/recording", {"recording_id": str(recording.public_id), "segment_seconds": 600})
    ]
    assert AuditEvent.objects.filter(action="recording.start", outcome="allowed", target=f"recording:{recording.public_id}").exists()


def test_recording_is_refused_without_record_consent_and_the_refusal_names_it(
    live_session: Session, refusing_patient: Any, bob: Any, fake_edge: FakeEdge
) -> None:
    with pytest.raises(ConsentError, match=r"\(record\)") as refusal:
        services.recording_start(session=live_session, by=bob)
    assert refusal.value.purpose == "record"
    assert "Record the procedure" in str(refusal.value)
    assert fake_edge.calls == []
    assert not Recording.objects.exists()
    assert AuditEvent.objects.filter(action="recording.start", outcome="refused", detail__missing_purpose="record").exists()


def test_an_outsider_cannot_start_a_recording(live_session: Session, consenting_patient: Any, eve: Any, fake_edge: FakeEdge) -> None:
    with pytest.raises(services.RecordingError, match="coordinator or the operating surgeon"):
        services.recording_start(session=live_session, by=eve)
    assert fake_edge.calls == []


def test_a_second_recording_of_the_same_session_is_refused(
    live_session: Session, consenting_patient: Any, bob: Any, fake_edge: FakeEdge
) -> None:
    services.recording_start(session=live_session, by=bob)
    with pytest.raises(services.RecordingError, match="already being recorded"):
        services.recording_start(session=live_session, by=bob)


def test_an_edge_refusal_fails_the_recording_with_a_message(
    live_session: Session, consenting_patient: Any, bob: Any, fake_edge: FakeEdge
) -> None:
    fake_edge.fail_with = 409
    with pytest.raises(services.RecordingError, match="no publisher on this session"):
        services.recording_start(session=live_session, by=bob)
    assert Recording.objects.get().status == Recording.Status.FAILED


def test_stop_ends_the_recording_and_finalizes_it_after_commit(
    live_session: Session, consenting_patient: Any, bob: Any, fake_edge: FakeEdge, clip: Path, clip_facts: ClipFacts,
    spool: Path, django_capture_on_commit_callbacks: Any,
) -> None:
    from .fixtures import register_segments

    recording = services.recording_start(session=live_session, by=bob)
    register_segments(recording, clip, clip_facts, spool, 2)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.recording_stop(recording=recording, by=bob)
    assert fake_edge.calls[-1] == ("DELETE", f"/sessions/{live_session.public_id}/recording", None)
    assert len(callbacks) >= 1
    recording.refresh_from_db()
    assert recording.expected_segments == 2
    assert recording.status == Recording.Status.AVAILABLE  # finalize ran (eager), then archive
    assert recording.archived_at is not None


# ---------------------------------------------------------------- segments


def test_segment_registration_is_idempotent(stopped_recording: Recording, clip_facts: ClipFacts) -> None:
    segment = stopped_recording.segments.get(index=0)
    again = services.segment_register(
        recording_public_id=str(stopped_recording.public_id), index=0, path=segment.path, sha256=segment.sha256,
        size=segment.size, duration=segment.duration, video_frames=segment.video_frames, audio_frames=segment.audio_frames,
        width=320, height=240, fps=30, video_codec="h264", audio_codec="opus",
    )
    assert again.pk == segment.pk
    assert Segment.objects.filter(recording=stopped_recording).count() == 2


def test_a_segment_rewritten_with_other_content_is_refused(stopped_recording: Recording) -> None:
    segment = stopped_recording.segments.get(index=0)
    with pytest.raises(services.RecordingError, match="already registered with other content"):
        services.segment_register(
            recording_public_id=str(stopped_recording.public_id), index=0, path=segment.path, sha256="0" * 64,
            size=segment.size, duration=1, video_frames=1, audio_frames=1, width=320, height=240, fps=30, video_codec="h264",
        )


@pytest.mark.parametrize("path", ["../etc/passwd", "CASE-0042/seg-00001.mp4", "/abs/seg.mp4", "{rec}/../x.mp4", "{rec}/Jane Doe.mp4"])
def test_segment_paths_must_be_pseudonymous_and_inside_the_recording(stopped_recording: Recording, path: str) -> None:
    with pytest.raises(services.RecordingError, match="Segment path"):
        services.segment_register(
            recording_public_id=str(stopped_recording.public_id), index=7, path=path.format(rec=stopped_recording.prefix),
            sha256="a" * 64, size=1, duration=1, video_frames=1, audio_frames=1, width=320, height=240, fps=30, video_codec="h264",
        )


# ---------------------------------------------------------------- export


@pytest.fixture
def share(tmp_path: Path, settings: Any) -> Path:
    folder = tmp_path / "records-share"
    folder.mkdir()
    settings.EXPORT_DESTINATIONS = [str(folder)]
    return folder


def test_export_copies_every_segment_verified_by_checksum(
    available_recording: Recording, alice: Any, share: Path, clip_facts: ClipFacts, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        job = services.export_request(recording=available_recording, destination=share, by=alice)
    job.refresh_from_db()
    assert job.status == ExportJob.Status.DONE, job.error
    assert (job.progress, job.bytes_copied, job.sha256_verified) == (100, 2 * clip_facts.size, True)
    folder = share / available_recording.prefix
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == 2
    for line in sums:
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest == clip_facts.sha256
    assert "CASE-0042" not in (folder / "recording.json").read_text()
    assert AuditEvent.objects.filter(action="recording.export", outcome="allowed", actor=f"user:{alice.pk}").exists()


def test_export_outside_the_allowed_destinations_is_refused(available_recording: Recording, alice: Any, share: Path, tmp_path: Path) -> None:
    with pytest.raises(services.RecordingError, match="only be written under"):
        services.export_request(recording=available_recording, destination=share / ".." / "elsewhere", by=alice)
    assert not ExportJob.objects.exists()
    assert AuditEvent.objects.filter(action="recording.export", outcome="refused", detail__reason="destination not allowed").exists()


def test_only_the_records_office_exports(available_recording: Recording, dave: Any, share: Path) -> None:
    with pytest.raises(services.RecordingAccessDenied):
        services.export_request(recording=available_recording, destination=share, by=dave)
    assert AuditEvent.objects.filter(action="recording.export", outcome="refused", actor=f"user:{dave.pk}").exists()


def test_a_corrupted_archive_fails_the_export_instead_of_copying_it(available_recording: Recording, alice: Any, share: Path) -> None:
    segment = available_recording.segments.get(index=1)
    path = Path(default_storage.path(segment.archived_key))
    data = bytearray(path.read_bytes())
    data[500] ^= 0xFF
    path.write_bytes(bytes(data))
    job = ExportJob.objects.create(recording=available_recording, destination=str(share), requested_by=alice)
    with pytest.raises(services.RecordingError, match="Segment 1 read back with another SHA-256"):
        services.recording_export(job=job)
    job.refresh_from_db()
    assert job.status == ExportJob.Status.FAILED and not job.sha256_verified
    assert not (share / available_recording.prefix / Path(segment.path).name).exists()


def test_a_restricted_recording_is_not_exported(available_recording: Recording, alice: Any, share: Path) -> None:
    services.recording_restrict(recording=available_recording, reason="consent withdrawn")
    job = ExportJob.objects.create(recording=available_recording, destination=str(share), requested_by=alice)
    with pytest.raises(services.RecordingError, match="restricted"):
        services.recording_export(job=job)
    assert not (share / available_recording.prefix).exists()


# ---------------------------------------------------------------- erasure and retention


def _files(recording: Recording) -> list[str]:
    keys = [s.archived_key for s in recording.segments.all()] + [recording.thumbnail, recording.contact_sheet]
    return [k for k in keys if k and default_storage.exists(k)]


def test_erasure_deletes_every_file_and_is_audited_step_by_step(available_recording: Recording, alice: Any) -> None:
    assert len(_files(available_recording)) == 4
    recording = services.recording_erase(recording=available_recording, by=alice, reason="patient request")
    assert recording.status == Recording.Status.ERASED and recording.erased_at
    assert _files(available_recording) == []
    steps = list(AuditEvent.objects.filter(action="recording.erase").values_list("detail__step", flat=True))
    assert steps == ["started", "completed"]
    assert audit_verify() is None


def test_erasing_twice_is_harmless(available_recording: Recording, alice: Any) -> None:
    first = services.recording_erase(recording=available_recording, by=alice)
    second = services.recording_erase(recording=available_recording, by=alice)
    assert second.erased_at == first.erased_at


def test_an_erasure_interrupted_half_way_completes_when_run_again(available_recording: Recording, alice: Any) -> None:
    # As a killed worker leaves it: marked erasing, one file gone, the others still there.
    Recording.objects.filter(pk=available_recording.pk).update(status=Recording.Status.ERASING, erase_started_at=timezone.now())
    default_storage.delete(available_recording.segments.get(index=0).archived_key)
    recording = services.recording_erase(recording=available_recording, by=alice)
    assert recording.status == Recording.Status.ERASED
    assert _files(available_recording) == []
    assert list(AuditEvent.objects.filter(action="recording.erase").values_list("detail__step", flat=True)) == ["resumed", "completed"]


def test_legal_hold_stops_erasure(available_recording: Recording, alice: Any) -> None:
    services.recording_legal_hold(recording=available_recording, hold=True, reason="Court order 2024/117", by=alice)
    with pytest.raises(services.RecordingError, match="legal hold"):
        services.erase_request(recording=available_recording, by=alice, reason="patient request")
    available_recording.refresh_from_db()
    assert available_recording.status == Recording.Status.AVAILABLE
    assert len(_files(available_recording)) == 4


def test_retention_erases_what_is_past_its_date_except_under_legal_hold(
    available_recording: Recording, alice: Any, session: Session, bob: Any
) -> None:
    held = Recording.objects.create(session=session, status=Recording.Status.AVAILABLE, legal_hold=True, legal_hold_reason="litigation")
    current = Recording.objects.create(session=session, status=Recording.Status.AVAILABLE)
    today = date(2036, 1, 1)
    Recording.objects.filter(pk__in=[available_recording.pk, held.pk]).update(retain_until=today - timedelta(days=1))
    Recording.objects.filter(pk=current.pk).update(retain_until=today)
    result = services.retention_apply(today=today)
    assert result.erased == [str(available_recording.public_id)]
    assert result.held == [str(held.public_id)]
    assert Recording.objects.get(pk=available_recording.pk).status == Recording.Status.ERASED
    assert Recording.objects.get(pk=held.pk).status == Recording.Status.AVAILABLE
    assert Recording.objects.get(pk=current.pk).status == Recording.Status.AVAILABLE


def test_retention_resumes_an_erasure_whose_worker_died(available_recording: Recording) -> None:
    Recording.objects.filter(pk=available_recording.pk).update(
        status=Recording.Status.ERASING, erase_started_at=timezone.now() - timedelta(hours=1)
    )
    result = services.retention_apply()
    assert result.resumed == [str(available_recording.public_id)]
    assert Recording.objects.get(pk=available_recording.pk).status == Recording.Status.ERASED


def test_retention_dates_follow_the_policy_rows_or_the_settings(db: Any, settings: Any) -> None:
    settings.RETENTION_DAYS = 3650
    assert services.retention_until(purpose="clinical", start=date(2025, 1, 1)) == date(2025, 1, 1) + timedelta(days=3650)
    RetentionPolicy.objects.create(purpose="training", days=365 * 5, note="training-only: five years")
    assert services.retention_until(purpose="training", start=date(2025, 1, 1)) == date(2029, 12, 31)


def test_retention_runs_nightly_from_the_beat_schedule(db: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="recordings.tasks.retention_apply")
    assert task.enabled and task.crontab is not None and task.crontab.hour == "3"


def test_without_a_segment_count_finalize_waits_for_the_edges_stopped_webhook(
    live_session: Session, consenting_patient: Any, bob: Any, fake_edge: FakeEdge, clip: Path, clip_facts: ClipFacts,
    spool: Path, django_capture_on_commit_callbacks: Any,
) -> None:
    from .fixtures import register_segments

    fake_edge.stop_reply = {"ok": True}  # what the edge answers: the count comes by webhook
    recording = services.recording_start(session=live_session, by=bob)
    with django_capture_on_commit_callbacks(execute=True):
        services.recording_stop(recording=recording, by=bob)
    recording.refresh_from_db()
    assert recording.status == Recording.Status.FINALIZING and recording.expected_segments is None
    with pytest.raises(services.RecordingNotReady, match="how many segments"):
        services.recording_finalize(recording=recording)
    # The webhook arrives before the last segment does: finalize waits for it, then runs.
    register_segments(recording, clip, clip_facts, spool, 1)
    with django_capture_on_commit_callbacks(execute=True):
        services.recording_stopped(recording_public_id=str(recording.public_id), segments=2)
    recording.refresh_from_db()
    assert recording.status == Recording.Status.FINALIZING
    shutil.copyfile(clip, spool / recording.prefix / "seg-00001.mp4")
    with django_capture_on_commit_callbacks(execute=True):
        services.segment_register(
            recording_public_id=str(recording.public_id), index=1, path=f"{recording.prefix}/seg-00001.mp4",
            sha256=clip_facts.sha256, size=clip_facts.size, duration=clip_facts.duration,
            video_frames=clip_facts.video_frames, audio_frames=clip_facts.audio_frames, width=320, height=240, fps=30,
            video_codec="h264", audio_codec="opus",
        )
    recording.refresh_from_db()
    assert recording.status == Recording.Status.AVAILABLE
    assert recording.segments.count() == 2
