"""Simulcast from the OR console: headless Chromium publishes its camera as the console does
(encodings.js), the edge takes its full encoding as the source and its lower one as the lower
layer, with real aiortc viewers and a real recording; no transcoder starts.

An aiortc publisher cannot send simulcast, hence Chromium (Debian's, driven by Playwright's
async API on the test's own event loop, beside the hub: not an ``e2e`` test, whose sync API
would trip over the asyncio tests of its process).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest

from orstream.edge.h264 import has_idr, picture_size, split_nal_units
from orstream.edge.hub import Edge
from orstream.edge.protocol import PublisherOffer, RecordingStart

from .peers import wait_for
from .test_hub import join, recording_viewers  # noqa: F401 (fixture)
from .test_layers import _layer_children

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
]

# The console's own encodings (encodings.js), made a plain script for a blank page.
ENCODINGS = re.sub(r"^export ", "", (ROOT / "frontend/static/orstream/encodings.js").read_text(), flags=re.M)

PUBLISH = """
async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { exact: 1920 }, height: { exact: 1080 }, frameRate: { ideal: 30 } } });
  const track = stream.getVideoTracks()[0];
  track.contentHint = 'detail';
  const pc = new RTCPeerConnection({ iceServers: [] });
  const picture = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream], sendEncodings: publishEncodings(track.getSettings()) });
  const caps = RTCRtpSender.getCapabilities('video').codecs;
  picture.setCodecPreferences([...caps.filter(c => c.mimeType === 'video/H264'), ...caps.filter(c => c.mimeType !== 'video/H264')]);
  const params = picture.sender.getParameters();
  params.degradationPreference = 'maintain-resolution';
  await picture.sender.setParameters(params).catch(() => {});
  pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendrecv', streams: [stream] });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
  });
  const answer = await window.edgePublish(pc.localDescription.sdp);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  window.publisher = pc;
  return pc.localDescription.sdp;
}
"""

# What Chromium says of each encoding it sends (its webrtc-internals figures).
OUTBOUND = """
async () => {
  const out = [];
  (await window.publisher.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') out.push({ rid: s.rid, width: s.frameWidth, height: s.frameHeight,
      fps: s.framesPerSecond, bytes: s.bytesSent, encoder: s.encoderImplementation, limit: s.qualityLimitationReason,
      mode: s.scalabilityMode, active: s.active });
  });
  return out;
}
"""


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    edge = Edge(emit_event=lambda t, s, d: None, media_dir=tmp_path)
    yield edge
    await edge.close()


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    assert Path(CHROMIUM).exists(), f"Chromium is missing at {CHROMIUM}: run `make browser` (apt-get install chromium)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = await browser.new_page()
        # a loopback origin is a secure context, where the camera is
        await page.route("http://localhost/", lambda route: route.fulfill(body="<!doctype html><title>console</title>", content_type="text/html"))
        await page.goto("http://localhost/")
        await page.add_script_tag(content=ENCODINGS)
        yield page
        await browser.close()


def _size(data: bytes) -> tuple[int, int] | None:
    return picture_size(split_nal_units(data))


async def test_the_consoles_simulcast_feeds_weak_viewers_its_lower_encoding_and_the_recording_its_full_one(
    edge: Edge, page: Any, tmp_path: Path
) -> None:
    hub = edge.session_create("s1")

    async def publish(sdp: str) -> str:
        return await hub.add_publisher(PublisherOffer(participant_id="console", sdp=sdp))

    await page.expose_function("edgePublish", publish)
    offer = await page.evaluate(PUBLISH)
    assert "a=simulcast:send f;h" in offer and "a=rid:h send" in offer
    publisher = hub.publisher
    assert publisher is not None and publisher.lower_receiver is not None, "the edge takes both encodings"
    full_receiver, lower_receiver = publisher.video_receiver, publisher.lower_receiver
    assert full_receiver is not None
    try:
        await wait_for(lambda: full_receiver.stats.keyframes > 0 and lower_receiver.stats.keyframes > 0, timeout=20)
    finally:
        print("outbound-rtp:", await page.evaluate(OUTBOUND))

    alice = await join(hub, "alice")
    bob = await join(hub, "bob")
    await wait_for(lambda: len(bob.frames("video")) >= 10, timeout=15)
    directory = await hub.start_recording(RecordingStart(recording_id="r1"))
    viewer = hub.viewers["bob"]
    hub._move_down(viewer, time.monotonic())  # what a low estimate leads to
    await wait_for(lambda: viewer.layer == "lower", timeout=10)
    down_at = len(bob.frames("video"))
    await wait_for(lambda: len(bob.frames("video")) >= down_at + 30, timeout=15)
    await hub.stop_recording()

    sizes = [_size(f.data) for f in bob.frames("video")]
    first_lower = next(i for i, size in enumerate(sizes) if size is not None and size[1] < 1000)
    lower = bob.frames("video")[first_lower:]
    assert has_idr(split_nal_units(lower[0].data)), "the move lands on the lower encoding's keyframe"
    assert sizes[first_lower] == (1280, 720)
    decoder = av.CodecContext.create("h264", "r")
    pictures = [p for f in lower for p in decoder.decode(av.Packet(f.data))]
    assert len(pictures) >= 20 and {(p.width, p.height) for p in pictures} == {(1280, 720)}, "decodable from its keyframe"

    assert _layer_children() == [], "no transcoding process"
    stats = hub.stats()
    assert stats["lower_layer"]["source"] == "simulcast" and stats["lower_layer"]["resolution"] == "1280x720"
    assert set(stats["publisher"]["simulcast"]) == {"f", "h"}
    assert all(_size(f.data) in (None, (1920, 1080)) for f in alice.frames("video")), "the full layer is the field"
    with av.open(str(sorted(directory.glob("seg-*.mp4"))[0])) as recording:
        stream = recording.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (1920, 1080), "the recording is the field"
        assert sum(1 for _ in recording.demux(stream)) > 20
    await alice.close()
    await bob.close()
