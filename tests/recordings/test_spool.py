"""The spool is the truth of what was recorded: segments are rebuilt from the edge's manifests when
webhooks are lost, the sweep finalizes or reports recordings stuck in finalizing, storage writes
land at fixed keys, and erasure leaves nothing under a recording's prefix."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from consent.models import AuditEvent
from orstream.edge import protocol
from orstream.edge.record import Recorder
from recordings import services
from recordings.models import Recording, Segment
from recordings.services import common, spool
from tests.edge.test_record import clip_frames, make_clip


@pytest.fixture(scope="module")
def edge_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "three.mp4", seconds=3.0)


def record_on_spool(recording: Recording, clip: Path, spool: Path, *, segment_seconds: float = 1.5) -> list[dict[str, Any]]:
    """What the edge's recorder writes for ``recording``: segments and their manifests."""
    closed: list[dict[str, Any]] = []
    identity = {"recording_id": str(recording.public_id), "session_id": str(recording.session.public_id)}
    with Recorder(spool / recording.prefix, segment_seconds=segment_seconds, on_segment_closed=closed.append, identity=identity) as recorder:
        for frame in clip_frames(clip):
            recorder.write(frame)
    return closed


@pytest.fixture
def lost_webhooks(session: Any, consenting_patient: Any, bob: Any, edge_clip: Path, spool: Path) -> Recording:
    """Stopped five minutes ago; the edge wrote two segments, and no webhook ever arrived."""
    recording = Recording.objects.create(
        session=session, started_by=bob, status=Recording.Status.FINALIZING, ended_at=timezone.now() - timedelta(minutes=5)
    )
    assert len(record_on_spool(recording, edge_clip, spool)) == 2
    return recording


def test_segments_are_rebuilt_from_the_manifests_on_the_spool(lost_webhooks: Recording) -> None:
    segments = services.recording_rebuild_from_spool(recording=lost_webhooks)

    assert [s.index for s in segments] == [0, 1]
    manifest = json.loads((Path(spool._spool_folder(lost_webhooks)) / "seg-00000.json").read_text())
    first = Segment.objects.get(recording=lost_webhooks, index=0)
    assert (first.path, first.sha256, first.video_frames) == (
        f"{lost_webhooks.prefix}/seg-00000.mp4", manifest["sha256"], manifest["video_frames"]
    )
    # Idempotent: a second rebuild (or a late webhook) registers nothing new.
    services.recording_rebuild_from_spool(recording=lost_webhooks)
    assert Segment.objects.filter(recording=lost_webhooks).count() == 2


def test_the_sweep_finalizes_a_recording_whose_webhooks_were_lost(
    lost_webhooks: Recording, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        result = services.recording_sweep()

    lost_webhooks.refresh_from_db()
    assert result.finalized == [str(lost_webhooks.public_id)]
    assert lost_webhooks.status == Recording.Status.AVAILABLE
    assert lost_webhooks.expected_segments == 2
    assert lost_webhooks.archived_at is not None  # archived at fixed keys
    assert sorted(s.archived_key for s in lost_webhooks.segments.all()) == [
        f"recordings/{lost_webhooks.prefix}/seg-0000{n}.mp4" for n in (0, 1)
    ]


def test_the_sweep_leaves_a_recording_that_just_stopped_to_its_webhooks(lost_webhooks: Recording) -> None:
    Recording.objects.filter(pk=lost_webhooks.pk).update(ended_at=timezone.now())
    assert services.recording_sweep() == services.SweepResult(finalized=[], failed=[], waiting=[])
    assert not Segment.objects.filter(recording=lost_webhooks).exists()


def test_the_sweep_waits_then_reports_a_recording_whose_segments_never_come(
    session: Any, consenting_patient: Any, bob: Any, spool: Path, settings: Any
) -> None:
    recording = Recording.objects.create(
        session=session, started_by=bob, status=Recording.Status.FINALIZING, expected_segments=2,
        ended_at=timezone.now() - timedelta(minutes=2),
    )
    assert services.recording_sweep().waiting == [str(recording.public_id)]
    assert services.recording_problem_for(recording=recording).startswith("This recording is taking longer than usual")

    later = timezone.now() + timedelta(minutes=settings.RECORDINGS_STUCK_MINUTES)
    assert services.recording_sweep(now=later).failed == [str(recording.public_id)]
    recording.refresh_from_db()
    assert recording.status == Recording.Status.FAILED
    assert "0 of 2 segments are registered" in recording.error
    advice = services.recording_problem_for(recording=recording)
    assert "never reached the server" in advice and "Check again" in advice and "Nothing has been deleted" in advice


def test_a_coordinator_checks_a_failed_recording_again_and_it_becomes_available(
    lost_webhooks: Recording, alice: Any, bob: Any, django_capture_on_commit_callbacks: Any
) -> None:
    Recording.objects.filter(pk=lost_webhooks.pk).update(status=Recording.Status.FAILED, error="Segments are missing: registered [1].")
    with pytest.raises(services.RecordingAccessDenied):
        services.recording_retry(recording=lost_webhooks, by=bob)
    with django_capture_on_commit_callbacks(execute=True):
        services.recording_retry(recording=lost_webhooks, by=alice)
    lost_webhooks.refresh_from_db()
    assert lost_webhooks.status == Recording.Status.AVAILABLE and lost_webhooks.error == ""
    assert AuditEvent.objects.filter(action="recording.retry", outcome="allowed").count() == 1
    assert AuditEvent.objects.filter(action="recording.retry", outcome="refused").count() == 1


def test_finalizing_again_overwrites_its_pictures_at_the_same_keys(available_recording: Recording) -> None:
    keys = (available_recording.thumbnail, available_recording.contact_sheet)
    Recording.objects.filter(pk=available_recording.pk).update(status=Recording.Status.FINALIZING)
    services.recording_finalize(recording=available_recording)
    available_recording.refresh_from_db()
    assert (available_recording.thumbnail, available_recording.contact_sheet) == keys
    assert keys == (f"recordings/{available_recording.prefix}/thumbnail.jpg", f"recordings/{available_recording.prefix}/contact-sheet.jpg")


def test_archiving_over_a_copy_a_killed_job_left_keeps_one_object_at_the_fixed_key(stopped_recording: Recording) -> None:
    recording = services.recording_finalize(recording=stopped_recording)
    key = f"recordings/{recording.prefix}/seg-00000.mp4"
    default_storage.save(key, ContentFile(b"half a copy"))  # the killed job's partial write

    services.recording_archive(recording=recording)

    assert Segment.objects.get(recording=recording, index=0).archived_key == key
    assert sorted(default_storage.listdir(f"recordings/{recording.prefix}")[1]) == [
        "contact-sheet.jpg", "seg-00000.mp4", "seg-00001.mp4", "thumbnail.jpg",
    ]


def test_erasure_removes_everything_under_the_prefix_and_checks(available_recording: Recording, spool: Path) -> None:
    prefix = f"recordings/{available_recording.prefix}"
    default_storage.save(f"{prefix}/seg-00000_Ab3dE9x.mp4", ContentFile(b"a copy an old run left"))
    default_storage.save(f"{prefix}/extra/notes.txt", ContentFile(b"x"))
    (spool / available_recording.prefix).mkdir(exist_ok=True)
    (spool / available_recording.prefix / "seg-00002.mp4.unplayable").write_bytes(b"\0")

    services.recording_erase(recording=available_recording)

    available_recording.refresh_from_db()
    assert available_recording.status == Recording.Status.ERASED
    assert common._storage_keys_under(prefix) == []
    assert not (spool / available_recording.prefix).exists()


def post(client: Any, body: dict[str, Any], settings: Any) -> Any:
    raw = json.dumps(body).encode()
    headers = protocol.sign(secret=settings.EDGE_SECRET, method="POST", path="/edge/events/", body=raw)
    return client.post("/edge/events/", raw, content_type="application/json", headers=headers)


def test_a_repeated_recording_stopped_webhook_acts_once(
    client: Any, stopped_recording: Recording, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    Recording.objects.filter(pk=stopped_recording.pk).update(expected_segments=None)
    event = protocol.EdgeEvent(
        type="recording.stopped", session_id=str(stopped_recording.session.public_id), at=time.time(),
        data={"recording_public_id": str(stopped_recording.public_id), "segments": 2},
    )
    with django_capture_on_commit_callbacks(execute=False) as first:
        reply = post(client, event.to_dict(), settings)
    assert reply.json() == {"ok": True, "duplicate": False}
    assert len(first) == 1  # finalize queued
    with django_capture_on_commit_callbacks(execute=False) as repeat:
        reply = post(client, event.to_dict(), settings)
    assert reply.status_code == 200 and reply.json() == {"ok": True, "duplicate": True}
    assert repeat == []  # nothing queued twice


def test_a_webhook_that_failed_is_acted_on_when_the_edge_retries_it(client: Any, session: Any, settings: Any) -> None:
    event = protocol.EdgeEvent(
        type="recording.stopped", session_id=str(session.public_id), at=time.time(),
        data={"recording_public_id": "not-a-recording", "segments": "many"},
    )
    assert post(client, event.to_dict(), settings).status_code == 400
    assert post(client, event.to_dict(), settings).status_code == 400  # handled again, not dropped as a repeat
