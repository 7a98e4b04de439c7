"""Finalizing: every segment decoded end to end, counts and checksums checked, pictures made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest
from django.core.files.storage import default_storage

from consent.models import AuditEvent
from recordings import services
from recordings.models import Recording, Segment

from .fixtures import ClipFacts


def test_a_recording_whose_segments_verify_becomes_available(stopped_recording: Recording, clip_facts: ClipFacts) -> None:
    recording = services.recording_finalize(recording=stopped_recording)
    assert recording.status == Recording.Status.AVAILABLE
    assert recording.duration == pytest.approx(2 * clip_facts.duration, abs=0.1)
    assert (recording.width, recording.height) == (320, 240)
    assert recording.video_codec == "h264" and recording.audio_codec == "opus"
    assert recording.fps == pytest.approx(30, abs=0.5)
    assert recording.size == 2 * clip_facts.size
    assert recording.retain_until is not None
    assert all(s.verified_at for s in recording.segments.all())
    assert AuditEvent.objects.filter(action="recording.finalize", outcome="allowed").count() == 1


def test_finalize_makes_a_jpeg_thumbnail_and_contact_sheet(stopped_recording: Recording) -> None:
    recording = services.recording_finalize(recording=stopped_recording)
    for key, min_width in ((recording.thumbnail, 320), (recording.contact_sheet, 4 * 320)):
        path = Path(default_storage.path(key))
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG SOI marker
        with av.open(str(path)) as image:
            frame = next(image.decode(video=0))
            assert frame.width >= min_width
    assert recording.prefix in recording.thumbnail and "CASE" not in recording.thumbnail


def test_a_changed_byte_in_a_segment_fails_verification_and_names_it(stopped_recording: Recording, spool: Path) -> None:
    segment = stopped_recording.segments.get(index=1)
    path = spool / segment.path
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(services.RecordingError, match=r"Segment 1 .*SHA-256"):
        services.recording_finalize(recording=stopped_recording)
    stopped_recording.refresh_from_db()
    assert stopped_recording.status == Recording.Status.FAILED
    assert "Segment 1" in stopped_recording.error
    assert path.exists(), "a failed verification must never delete the evidence"


def test_a_frame_count_that_differs_from_the_edges_fails(stopped_recording: Recording) -> None:
    Segment.objects.filter(recording=stopped_recording, index=0).update(video_frames=59)
    with pytest.raises(services.RecordingError, match="video frames decoded, the edge wrote 59"):
        services.recording_finalize(recording=stopped_recording)


def test_a_truncated_segment_does_not_pass(stopped_recording: Recording, spool: Path) -> None:
    segment = stopped_recording.segments.get(index=0)
    path = spool / segment.path
    path.write_bytes(path.read_bytes()[: segment.size // 2])
    with pytest.raises(services.RecordingError, match="Segment 0"):
        services.recording_finalize(recording=stopped_recording)


def test_finalize_waits_for_segments_the_edge_announced(stopped_recording: Recording) -> None:
    Recording.objects.filter(pk=stopped_recording.pk).update(expected_segments=3)
    with pytest.raises(services.RecordingNotReady, match="2 of 3"):
        services.recording_finalize(recording=stopped_recording)
    stopped_recording.refresh_from_db()
    assert stopped_recording.status == Recording.Status.FINALIZING


def test_finalize_twice_changes_nothing(stopped_recording: Recording) -> None:
    first = services.recording_finalize(recording=stopped_recording)
    second = services.recording_finalize(recording=first)
    assert second.status == Recording.Status.AVAILABLE and second.verified_at == first.verified_at


def test_archive_moves_verified_segments_into_storage_and_frees_the_spool(
    stopped_recording: Recording, spool: Path, clip_facts: ClipFacts
) -> None:
    recording = services.recording_archive(recording=services.recording_finalize(recording=stopped_recording))
    assert recording.archived_at is not None
    for segment in recording.segments.all():
        assert not (spool / segment.path).exists()
        assert default_storage.size(segment.archived_key) == clip_facts.size
        assert segment.archived_key.startswith(f"recordings/{recording.prefix}/")


def test_progress_is_pushed_to_the_recordings_group(stopped_recording: Recording) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"recording.{stopped_recording.public_id}", channel)
    services.recording_finalize(recording=stopped_recording)
    messages = []
    while True:
        try:
            messages.append(async_to_sync(_receive)(layer, channel))
        except TimeoutError:
            break
    assert messages[0] == {"type": "recording.progress", "stage": "finalize", "percent": 0}
    assert messages[-1] == {"type": "recording.progress", "stage": "finalize", "percent": 100}
    assert [m["percent"] for m in messages] == sorted(m["percent"] for m in messages)


async def _receive(layer: Any, channel: str) -> Any:
    import asyncio

    return await asyncio.wait_for(layer.receive(channel), timeout=0.5)


@pytest.mark.django_db(transaction=True)
def test_an_eager_finalize_that_must_wait_is_logged_as_waiting_not_as_an_error(
    stopped_recording: Recording, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The embedded default runs jobs eagerly: a finalize queued before the edge's last segment
    arrived waits quietly for it (the segment's notice or the sweep runs it again)."""
    from django.db import transaction

    from recordings.services.common import _enqueue

    settings.CELERY_TASK_ALWAYS_EAGER = True
    # Outside a test transaction the fixture's registered segments already finalized it: the edge
    # announces a third segment it has not registered yet.
    Recording.objects.filter(pk=stopped_recording.pk).update(
        status=Recording.Status.FINALIZING, expected_segments=3, verified_at=None
    )
    with caplog.at_level("INFO"), transaction.atomic():
        _enqueue("recording_finalize", stopped_recording.pk)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]
    assert any("waits" in r.getMessage() and "2 of 3" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    stopped_recording.refresh_from_db()
    assert stopped_recording.status == Recording.Status.FINALIZING
