"""The control plane drives a real edge process: a room's own feed goes live, a mentor's offer
brokered by mentoring.services gets a picture, and an edge restart heals on the next offer."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from mentoring import services
from orstream.edge.h264 import has_idr, split_nal_units

from .peers import RecordingDecoder, as_high_profile_offer, viewer_accept, viewer_offer

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


class EdgeProcess:
    def __init__(self, secret: str, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.secret, self.log, self.process = secret, log, None

    def start(self) -> None:
        env = {
            **os.environ,
            "ORSTREAM_EDGE_SECRET": self.secret,
            "ORSTREAM_EDGE_WEBHOOK_URL": "",
            "ORSTREAM_RECORDINGS_SPOOL_DIR": str(self.log.parent / "spool"),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orstream.edge", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the edge did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def edge_process(settings: Any, tmp_path: Path) -> Iterator[EdgeProcess]:
    process = EdgeProcess("site-test-secret", tmp_path / "edge.log")
    process.start()
    settings.EDGE_URL = f"http://127.0.0.1:{process.port}"
    settings.EDGE_SECRET = process.secret
    yield process
    process.stop()


async def watch(participant: Any, monkeypatch: Any) -> Any:
    monkeypatch.setattr("aiortc.rtcrtpreceiver.get_decoder", lambda codec: RecordingDecoder())
    viewer = await viewer_offer()
    offer = as_high_profile_offer(viewer.pc.localDescription.sdp)
    answer = await sync_to_async(services.media_offer)(participant=participant, sdp=offer)
    await viewer_accept(viewer, answer["sdp"])
    await viewer.connected()
    deadline = time.monotonic() + 10
    while len(viewer.frames("video")) < 15 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return viewer


async def test_a_rooms_feed_reaches_a_mentor_and_survives_an_edge_restart(
    edge_process, session, carol, resident, alice, consenting_patient, aac_clip, monkeypatch
):
    session.room.ingest_url = str(aac_clip)
    await sync_to_async(session.room.save)()
    await sync_to_async(services.session_start)(session=session, by=alice)

    mentor = await watch(carol, monkeypatch)
    frames = mentor.frames("video")
    assert len(frames) >= 15
    assert has_idr(split_nal_units(frames[0].data)), "a new viewer starts on a keyframe"
    assert "profile-level-id=64" in mentor.answer_sdp
    await mentor.close()

    edge_process.stop()
    with pytest.raises(services.MediaRefused, match="cannot be reached"):
        await sync_to_async(services.media_offer)(participant=resident, sdp="v=0\r\n")
    edge_process.start()
    again = await watch(resident, monkeypatch)
    assert len(again.frames("video")) >= 15
    await again.close()


async def test_a_room_feed_the_edge_cannot_open_keeps_the_session_scheduled(edge_process, session, alice, tmp_path):
    session.room.ingest_url = str(tmp_path / "no-such-feed.mp4")
    await sync_to_async(session.room.save)()
    with pytest.raises(services.SchedulingError, match="could not be started"):
        await sync_to_async(services.session_start)(session=session, by=alice)
    await sync_to_async(session.refresh_from_db)()
    assert session.status == "scheduled"


async def test_a_rooms_lower_feed_reaches_the_edge_as_its_lower_layer(edge_process, session, alice, tmp_path):
    from orstream import edgeclient

    from .conftest import make_clip

    main = make_clip(tmp_path / "main.mp4", width=640, height=360)
    lower = make_clip(tmp_path / "lower.mp4", width=320, height=180)
    session.room.ingest_url, session.room.lower_ingest_url = str(main), str(lower)
    await sync_to_async(session.room.save)()
    await sync_to_async(services.session_start)(session=session, by=alice)
    stats = await sync_to_async(edgeclient.stats)(str(session.public_id))
    assert stats["source"]["state"] in ("connecting", "playing")
    layer = stats["lower_layer"]
    assert layer["source"] == "feed" and layer["running"], layer
    deadline = time.monotonic() + 10
    while layer["frames_out"] == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        layer = (await sync_to_async(edgeclient.stats)(str(session.public_id)))["lower_layer"]
    assert layer["resolution"] == "320x180" and layer["frames_out"] > 0


async def test_a_rooms_lower_feed_the_edge_cannot_open_keeps_the_session_scheduled(
    edge_process, session, alice, aac_clip, tmp_path
):
    session.room.ingest_url = str(aac_clip)
    session.room.lower_ingest_url = str(tmp_path / "no-such-stream2.mp4")
    await sync_to_async(session.room.save)()
    with pytest.raises(services.SchedulingError, match="could not be started: the lower feed: cannot open source"):
        await sync_to_async(services.session_start)(session=session, by=alice)
    await sync_to_async(session.refresh_from_db)()
    assert session.status == "scheduled"


async def test_a_withdrawal_mid_session_drops_the_external_mentor_and_stops_the_recording(
    edge_process, session, carol, alice, consenting_patient, aac_clip, monkeypatch, settings, tmp_path
):
    """The patient withdraws while a mentor watches and the procedure records: within 2 s the
    mentor's peer is gone from the edge, the recording has stopped there and is restricted."""
    from consent import services as consent_services
    from orstream import edgeclient
    from recordings import services as recording_services

    settings.RECORDINGS_SPOOL_DIR = tmp_path / "spool"
    session.room.ingest_url = str(aac_clip)
    await sync_to_async(session.room.save)()
    await sync_to_async(services.session_start)(session=session, by=alice)
    mentor = await watch(carol, monkeypatch)
    recording = await sync_to_async(recording_services.recording_start)(session=session, by=alice)
    sid = str(session.public_id)
    stats = await sync_to_async(edgeclient.stats)(sid)
    assert [v["participant_id"] for v in stats["viewers"]] == [str(carol.public_id)]
    assert stats["recording_id"] == str(recording.public_id)

    withdrawn_at = time.monotonic()
    await sync_to_async(consent_services.consent_withdraw)(record=consenting_patient, by=alice, reason="patient asked")
    while time.monotonic() - withdrawn_at < 2.0:
        stats = await sync_to_async(edgeclient.stats)(sid)
        if not stats["viewers"] and stats["recording_id"] is None:
            break
        await asyncio.sleep(0.1)
    assert stats["viewers"] == [], "the external mentor's peer is dropped within 2 s"
    assert stats["recording_id"] is None, "the recording stops within 2 s"
    await sync_to_async(recording.refresh_from_db)()
    assert recording.status == "restricted"
    await mentor.close()


def kill_hard(edge_process: EdgeProcess) -> None:
    """kill -9: no cleanup, the recorder's segment is left torn on disk."""
    assert edge_process.process is not None
    edge_process.process.kill()
    edge_process.process.wait(timeout=10)


async def recording_frames(sid: str, *, more_than: int = 0, timeout: float = 20) -> dict[str, Any]:
    from orstream import edgeclient

    deadline = time.monotonic() + timeout
    while True:
        stats = await sync_to_async(edgeclient.stats)(sid)
        recording = stats.get("recording") or {}
        if recording.get("video_frames_written", 0) > more_than or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.2)


async def record_the_room_feed(session: Any, alice: Any, clip: Path, settings: Any, tmp_path: Path) -> Any:
    """The room's feed plays in the live session and is being recorded (30 frames written)."""
    from recordings import services as recording_services

    settings.RECORDINGS_SPOOL_DIR = tmp_path / "spool"
    session.room.ingest_url = str(clip)
    await sync_to_async(session.room.save)()
    await sync_to_async(services.session_start)(session=session, by=alice)
    recording = await sync_to_async(recording_services.recording_start)(session=session, by=alice)
    await recording_frames(str(session.public_id), more_than=30)
    return recording


async def test_after_a_crash_the_restarted_edge_gets_the_session_feed_and_recording_back(
    edge_process, session, alice, consenting_patient, aac_clip, settings, tmp_path
):
    """kill -9 mid-recording, edge started again: on its "edge.started" the control plane
    re-creates the session with its feed and the recording goes on in a new segment; the pages
    are told the media server restarted; the stop counts the segments of both edges."""
    from channels.layers import get_channel_layer

    from orstream import edgeclient
    from recordings import services as recording_services

    recording = await record_the_room_feed(session, alice, aac_clip, settings, tmp_path)
    sid = str(session.public_id)
    folder = tmp_path / "spool" / str(recording.public_id)
    before = sorted(p.name for p in folder.glob("seg-*.mp4"))
    assert len(before) == 1
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(services.session_group(session), channel)

    kill_hard(edge_process)
    card = await sync_to_async(recording_services.recording_live_for)(session=session, edge_stats=None, edge_error="unreachable")
    assert card["state"] == "interrupted" and "cannot be reached" in card["note"]
    edge_process.start()
    boot = (await sync_to_async(edgeclient.health)())["boot_id"]
    with pytest.raises(edgeclient.EdgeError):
        await sync_to_async(edgeclient.stats)(sid)  # the new edge knows no session until re-attached
    card = await sync_to_async(recording_services.recording_live_for)(session=session, edge_stats=None)
    assert card["state"] == "interrupted" and "restarted" in card["note"]

    reattached = await sync_to_async(services.edge_restart_handle)(boot_id=boot)
    assert [s.pk for s in reattached] == [session.pk]
    notice = await asyncio.wait_for(layer.receive(channel), timeout=5)
    assert notice == {"type": "session.notice", "notice": {"event": "edge.restarted"}}
    stats = await recording_frames(sid, more_than=30)
    assert stats["source"] is not None, "the room's feed plays again"
    assert stats["recording_id"] == str(recording.public_id)
    card = await sync_to_async(recording_services.recording_live_for)(session=session, edge_stats=stats)
    assert card["state"] == "recording"
    after = sorted(p.name for p in folder.glob("seg-*.mp4"))
    assert after[: len(before)] == before and len(after) == len(before) + 1, "a new segment, the torn one kept"
    # Twice is harmless: the edge has the session now.
    assert await sync_to_async(services.edge_restart_handle)(boot_id=boot) == []

    await sync_to_async(recording_services.recording_stop)(recording=recording, by=alice)
    await sync_to_async(recording.refresh_from_db)()
    assert recording.expected_segments == 2, "the stop counts the segment written before the crash"


async def test_a_restart_whose_notice_was_lost_is_repaired_by_the_periodic_check(
    edge_process, session, alice, consenting_patient, aac_clip, settings, tmp_path
):
    """The edge restarts and its "edge.started" never reaches the site, with no page there to
    offer: the beat job every 30 s puts the session back, feed and recording included."""
    from mentoring import tasks as mentoring_tasks
    from orstream import edgeclient
    from recordings import services as recording_services

    recording = await record_the_room_feed(session, alice, aac_clip, settings, tmp_path)
    sid = str(session.public_id)

    kill_hard(edge_process)
    edge_process.start()  # its webhook goes nowhere the site hears in this test: the notice is lost
    with pytest.raises(edgeclient.EdgeError):
        await sync_to_async(edgeclient.stats)(sid)

    result = await sync_to_async(lambda: mentoring_tasks.sessions_reattach.apply().get())()
    assert result == [sid]
    stats = await recording_frames(sid, more_than=30)
    assert stats["source"] is not None and stats["recording_id"] == str(recording.public_id)
    assert await sync_to_async(lambda: mentoring_tasks.sessions_reattach.apply().get())() == [], "idempotent"
    await sync_to_async(recording_services.recording_stop)(recording=recording, by=alice)


async def test_a_stop_after_a_crash_the_edge_never_resumed_does_not_leave_the_recording_finalizing(
    edge_process, session, alice, consenting_patient, aac_clip, settings, tmp_path
):
    from recordings import services as recording_services

    settings.RECORDINGS_SPOOL_DIR = tmp_path / "spool"
    session.room.ingest_url = str(aac_clip)
    await sync_to_async(session.room.save)()
    await sync_to_async(services.session_start)(session=session, by=alice)
    recording = await sync_to_async(recording_services.recording_start)(session=session, by=alice)
    # A few GOPs, so that complete fragments reached the disk before the kill.
    await recording_frames(str(session.public_id), more_than=90)
    kill_hard(edge_process)
    edge_process.start()  # its webhooks never reach the site: nothing was re-attached or registered
    folder = tmp_path / "spool" / str(recording.public_id)
    deadline = time.monotonic() + 20
    while not list(folder.glob("seg-*.json")) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # the new edge recovers the torn segment and writes its manifest
    await sync_to_async(recording_services.recording_stop)(recording=recording, by=alice)
    await sync_to_async(recording.refresh_from_db)()
    # The stop found nothing running on the edge: the spool says what was recorded, and the
    # recording is finalized from it at once.
    assert recording.expected_segments == 1, sorted(p.name for p in folder.iterdir())
    assert recording.status == "available", recording.error
    assert await sync_to_async(recording.segments.count)() == 1


async def test_a_feed_still_being_prepared_lets_the_session_go_live_and_starts_when_ready(
    edge_process, session, alice, carol, consenting_patient, aac_clip, tmp_path, monkeypatch
):
    """The demo clip is made while the site runs: the session goes live, viewers are told the
    picture is being prepared, and the feed starts by itself once the file is complete."""
    from orstream import edgeclient

    clip = tmp_path / "demo.mp4"
    part = tmp_path / f"demo.mp4{services.FEED_PREPARING_SUFFIX}"
    part.write_bytes(b"")
    room = session.room
    room.ingest_url = str(clip)
    await sync_to_async(room.save)()
    assert await sync_to_async(services.room_feed_state)(room=room) == "preparing"
    await sync_to_async(services.session_start)(session=session, by=alice)
    await sync_to_async(session.refresh_from_db)()
    assert session.status == "live"
    with pytest.raises(services.MediaRefused, match="being prepared"):
        await sync_to_async(services.media_offer)(participant=carol, sdp="v=0\r\n")

    clip.write_bytes(aac_clip.read_bytes())
    part.unlink()
    started = await sync_to_async(services.room_feed_start)(room=room)
    assert [s.pk for s in started] == [session.pk]
    stats = await sync_to_async(edgeclient.stats)(str(session.public_id))
    assert stats["source"] is not None
    mentor = await watch(carol, monkeypatch)
    assert len(mentor.frames("video")) >= 15
    await mentor.close()
    # Started once: asking again leaves the playing feed alone.
    assert await sync_to_async(services.room_feed_start)(room=room) == []


async def test_the_console_camera_takes_the_place_of_the_room_feed_and_watching_puts_it_back(
    edge_process, session, surgeon, carol, alice, consenting_patient, aac_clip, ts_clip, monkeypatch
):
    """The room has its own feed. The surgeon's console publishes its camera: the feed stops and
    the mentors get the camera. The console then asks to watch: its camera peer goes, the feed
    comes back and the console receives it. Each switch is in the audit trail."""
    from consent.models import AuditEvent
    from orstream import edgeclient

    from .peers import publisher_accept, publisher_offer

    session.room.ingest_url = str(aac_clip)
    await sync_to_async(session.room.save)()
    await sync_to_async(services.session_start)(session=session, by=alice)
    sid = str(session.public_id)
    assert (await sync_to_async(edgeclient.stats)(sid))["source"] is not None

    camera = await publisher_offer(str(ts_clip))
    answer = await sync_to_async(services.media_offer)(participant=surgeon, sdp=camera.pc.localDescription.sdp)
    await publisher_accept(camera, answer["sdp"])
    stats = await sync_to_async(edgeclient.stats)(sid)
    assert stats["source"] is None
    assert stats["publisher"]["participant_id"] == str(surgeon.public_id)
    mentor = await watch(carol, monkeypatch)
    assert len(mentor.frames("video")) >= 15, "the mentor does not get the console's camera"
    await mentor.close()

    monkeypatch.setattr("aiortc.rtcrtpreceiver.get_decoder", lambda codec: RecordingDecoder())
    console = await viewer_offer(audio_tracks=2)
    offer = as_high_profile_offer(console.pc.localDescription.sdp)
    answer = await sync_to_async(services.media_offer)(participant=surgeon, sdp=offer, watch=True)
    await viewer_accept(console, answer["sdp"])
    await console.connected()
    stats = await sync_to_async(edgeclient.stats)(sid)
    assert stats["publisher"] is None and stats["source"] is not None
    assert [v["participant_id"] for v in stats["viewers"]] == [str(surgeon.public_id)]
    deadline = time.monotonic() + 10
    while len(console.frames("video")) < 15 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert len(console.frames("video")) >= 15, "the console does not get the room's feed back"

    # Watching again (a reconnection) leaves the running feed alone.
    again = await viewer_offer(audio_tracks=2)
    await sync_to_async(services.media_offer)(
        participant=surgeon, sdp=as_high_profile_offer(again.pc.localDescription.sdp), watch=True
    )
    switches = await sync_to_async(
        lambda: [e.detail["source"] for e in AuditEvent.objects.filter(action="session.source").order_by("pk")]
    )()
    assert switches == ["console_camera", "room_feed"]
    await console.close()
    await again.close()
    await camera.close()
