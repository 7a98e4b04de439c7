"""Recordings fixtures: a real fragmented H.264 + Opus clip, a spool and storage in tmp, a fake edge.

The clip comes from the edge team's generator and is remuxed (stream copy) to fragmented MP4,
the shape the edge's recorder writes. Counts registered for segments are packet counts from a
demux, as the edge counts them, so finalize's decode checks them independently.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import pytest
from django.utils import timezone

from mentoring.models import Session
from orstream.edge import demo, protocol
from recordings import services
from recordings.models import Recording, Segment

FPS = 30
SECONDS = 2


def fragment(source: Path, target: Path) -> Path:
    """Stream-copy ``source`` into a fragmented MP4 (moof per keyframe), as the edge records."""
    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
    with av.open(str(source)) as src, av.open(str(target), "w", format="mp4", options=options) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return target


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    plain = demo.generate(folder / "plain.mp4", width=320, height=240, fps=FPS, seconds=SECONDS)
    return fragment(plain, folder / "segment.mp4")


@dataclass(frozen=True)
class ClipFacts:
    size: int
    sha256: str
    video_frames: int
    audio_frames: int
    duration: float


@pytest.fixture(scope="session")
def clip_facts(clip: Path) -> ClipFacts:
    video = audio = 0
    with av.open(str(clip)) as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            if packet.stream.type == "video":
                video += 1
            else:
                audio += 1
    data = clip.read_bytes()
    return ClipFacts(len(data), hashlib.sha256(data).hexdigest(), video, audio, video / FPS)


@pytest.fixture
def spool(tmp_path: Path, settings: Any) -> Path:
    settings.RECORDINGS_SPOOL_DIR = tmp_path / "spool"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RECORDINGS_SPOOL_DIR.mkdir()
    return Path(settings.RECORDINGS_SPOOL_DIR)


def register_segments(recording: Recording, clip: Path, facts: ClipFacts, spool: Path, count: int) -> list[Segment]:
    """Write ``count`` copies of the clip to the spool as the edge would and register them."""
    folder = spool / recording.prefix
    folder.mkdir(parents=True, exist_ok=True)
    segments = []
    for index in range(count):
        name = f"seg-{index:05d}.mp4"
        shutil.copyfile(clip, folder / name)
        segments.append(
            services.segment_register(
                recording_public_id=str(recording.public_id), index=index, path=f"{recording.prefix}/{name}",
                sha256=facts.sha256, size=facts.size, duration=facts.duration, video_frames=facts.video_frames,
                audio_frames=facts.audio_frames, width=320, height=240, fps=FPS, video_codec="h264", audio_codec="opus",
            )
        )
    return segments


@pytest.fixture
def stopped_recording(session: Session, consenting_patient: Any, bob: Any, clip: Path, clip_facts: ClipFacts, spool: Path) -> Recording:
    """A recording the edge finished: two segments on the spool, waiting to be finalized."""
    recording = Recording.objects.create(
        session=session, started_by=bob, status=Recording.Status.FINALIZING, ended_at=timezone.now(), expected_segments=2
    )
    register_segments(recording, clip, clip_facts, spool, 2)
    return recording


@pytest.fixture
def available_recording(stopped_recording: Recording) -> Recording:
    recording = services.recording_finalize(recording=stopped_recording)
    return services.recording_archive(recording=recording)


@dataclass
class FakeEdge:
    """The edge API at the HTTP boundary: checks signatures like the real one, remembers calls."""

    url: str
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    fail_with: int | None = None
    stop_reply: dict[str, Any] = field(default_factory=lambda: {"segments": 2})


@pytest.fixture
def fake_edge(settings: Any) -> Iterator[FakeEdge]:
    secret = settings.EDGE_SECRET
    state = FakeEdge(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                protocol.verify(secret=secret, method=self.command, path=self.path, body=body, headers=self.headers)
            except protocol.SignatureError as bad:
                return self._reply(401, {"error": str(bad)})
            state.calls.append((self.command, self.path, json.loads(body) if body else None))
            if state.fail_with:
                return self._reply(state.fail_with, {"error": "no publisher on this session"})
            self._reply(200, state.stop_reply if self.command == "DELETE" else {"ok": True})

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_DELETE = do_GET = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.EDGE_URL = state.url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
