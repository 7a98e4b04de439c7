"""The OR console's journey through the real site, a real edge and real Chromium.

Without a room feed, the console publishes Chromium's fake camera (a green picture); the mentor
decodes it, talks with push-to-talk (fake microphone) and the console's audio element receives and
plays the talkback; a stroke the mentor draws lands on the console's canvas, which lies over the
picture the mentor drew on. With a room feed (a magenta clip the edge ingests), the console shows
the feed as the mentors see it, hears them, gets their strokes over the feed, and the surgeon
switches to the camera and back, each switch changing what the mentors see.
"""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path
from typing import Any

import av
import pytest

from mentoring import services

from .conftest import EDGE_SECRET, ROOT, off_loop, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FEED_SIZE = (640, 360)
MAGENTA_YUV = (105, 212, 234)  # limited-range BT.601 for about (235, 16, 235)

# Mean colour of what a page's <video> shows, sampled through a small canvas.
PICTURE_COLOUR = """() => {
  const video = document.getElementById('video');
  if (!video.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = 32; c.height = 18;
  const g = c.getContext('2d');
  g.drawImage(video, 0, 0, c.width, c.height);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) { sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2]; }
  return sum.map((v) => v / (d.length / 4));
}"""

# Talkback as the console receives it: inbound-rtp of the track its <audio> element plays.
TALKBACK = """async () => {
  const element = document.getElementById('talkback');
  const tracks = element.srcObject ? element.srcObject.getAudioTracks() : [];
  const out = { tracks: tracks.length, paused: element.paused, muted: element.muted, packets: 0, bytes: 0, energy: 0 };
  const pc = window.orstream.media.pc;
  if (!pc || !tracks.length) return out;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.trackIdentifier === tracks[0].id) {
      out.packets += s.packetsReceived; out.bytes += s.bytesReceived; out.energy += s.totalAudioEnergy || 0;
    }
  });
  return out;
}"""

FRAMES_DECODED = "() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames"


def solid_clip(path: Path, *, seconds: float = 3.0) -> Path:
    """A room feed of one flat colour: H.264 High without B-frames, a keyframe every 0.5 s, and a tone."""
    width, height = FEED_SIZE
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"bf": "0", "g": "15", "keyint_min": "15", "sc_threshold": "0", "preset": "veryfast", "profile": "high"}
        audio = container.add_stream("libopus", rate=48000)
        audio.layout = "stereo"
        for i in range(int(seconds * 30)):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane, level in zip(frame.planes, MAGENTA_YUV, strict=True):
                plane.update(bytes([level]) * plane.buffer_size)
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for t in range(0, int(seconds * 48000), 960):
            chunk = av.AudioFrame(format="s16", layout="stereo", samples=960)
            chunk.planes[0].update(
                b"".join(struct.pack("<hh", s, s) for s in (int(3000 * math.sin(2 * math.pi * 440 * (t + j) / 48000)) for j in range(960)))
            )
            chunk.sample_rate, chunk.pts = 48000, t
            for packet in audio.encode(chunk):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                container.mux(packet)
    return path


def is_green(colour: list[float] | None) -> bool:
    """Chromium's fake camera: a green picture."""
    return colour is not None and colour[1] > 100 and colour[1] > 2 * max(colour[0], colour[2])


def is_magenta(colour: list[float] | None) -> bool:
    """The room feed of these tests."""
    return colour is not None and min(colour[0], colour[2]) > 150 and colour[1] < 90


def wait_until(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(0.25)


def mentor_page(site: Any, open_page: Any, mentor: Any) -> Any:
    page = open_page(site.join_url(services.join_token_mint(participant=mentor)))
    page.wait_for_function("() => window.orstream.media.state === 'live'", timeout=30_000)
    page.wait_for_function(f"() => ({FRAMES_DECODED})() > 5", timeout=30_000)
    page.wait_for_function("() => !document.getElementById('talk').disabled", timeout=10_000)
    return page


def edge_state(console: Any) -> dict[str, Any]:
    """The edge's view of the session, as the console's own state API gives it."""
    return dict(
        console.evaluate(
            """async () => {
              const boot = window.orstream.boot;
              const reply = await fetch(`/live/${boot.session.id}/state/`, { headers: { 'X-Orstream-Token': boot.token } });
              return (await reply.json()).edge;
            }"""
        )
    )


def check_talkback_plays(mentor: Any, console: Any) -> None:
    """The mentor holds the talk key: the console's audio element has the talkback track, plays it
    unmuted, and its RTP keeps arriving while the mentor talks."""
    console.wait_for_function("() => document.getElementById('talkback').srcObject?.getAudioTracks().length === 1", timeout=15_000)
    before = console.evaluate(TALKBACK)
    mentor.locator("body").focus()
    mentor.keyboard.down("Space")
    try:
        console.wait_for_function(
            "() => document.getElementById('talking').innerText.includes('Dr Carol Mentor is talking')", timeout=10_000
        )
        wait_until(lambda: console.evaluate(TALKBACK)["packets"] > before["packets"] + 50, "talkback reaches the console")
        middle = console.evaluate(TALKBACK)
        wait_until(lambda: console.evaluate(TALKBACK)["packets"] > middle["packets"] + 25, "talkback keeps coming")
        after = console.evaluate(TALKBACK)
    finally:
        mentor.keyboard.up("Space")
    assert after["tracks"] == 1
    assert after["bytes"] > middle["bytes"] > before["bytes"], (before, middle, after)
    assert after["energy"] > 0, "the talkback arrives but is silent"
    assert not after["paused"] and not after["muted"], "the console receives the talkback but does not play it"
    assert console.evaluate("() => document.getElementById('talkback').readyState") > 0, "the audio element never started"
    assert console.evaluate("() => window.orstream.sound.state") == "on"
    assert console.locator("#sound").is_hidden()


def draw(mentor: Any) -> None:
    box = mentor.locator("#overlay").bounding_box()
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4
    mentor.mouse.move(x, y)
    mentor.mouse.down()
    mentor.mouse.move(x + box["width"] * 0.3, y + box["height"] * 0.2, steps=8)
    mentor.mouse.up()


def check_stroke_lands_over_the_picture(mentor: Any, console: Any) -> None:
    """The mentor's stroke is on the console's canvas where the mentor drew it, and the canvas
    covers the console's picture exactly, in the proportions of the picture the mentor drew on."""
    draw(mentor)
    console.wait_for_function("() => document.getElementById('overlay').dataset.strokes === '1'", timeout=10_000)
    drawn = mentor.evaluate("() => window.orstream.telestration.strokes[0].points")
    shown = console.evaluate("() => window.orstream.telestration.strokes[0].points")
    assert shown == drawn
    x, y = shown[len(shown) // 2]
    ink = console.evaluate(
        """([x, y]) => {
          const c = document.getElementById('overlay');
          const px = Math.min(c.width - 1, Math.round(x * c.width)), py = Math.min(c.height - 1, Math.round(y * c.height));
          return c.getContext('2d').getImageData(px, py, 1, 1).data[3];
        }""",
        [x, y],
    )
    assert ink > 128, "no ink on the console where the mentor drew"
    geometry = """() => {
      const v = document.getElementById('video'), c = document.getElementById('overlay').getBoundingClientRect();
      const r = v.getBoundingClientRect();
      return { canvas: [c.left, c.top, c.width, c.height], video: [r.left, r.top, r.width, r.height], picture: v.videoWidth / v.videoHeight };
    }"""
    on_console, on_mentor = console.evaluate(geometry), mentor.evaluate(geometry)
    assert on_console["canvas"] == pytest.approx(on_console["video"], abs=1.5), "the canvas does not cover the console's picture"
    canvas_ratio = on_console["canvas"][2] / on_console["canvas"][3]
    assert canvas_ratio == pytest.approx(on_console["picture"], rel=0.02), "the canvas is not in the picture's proportions"
    assert on_console["picture"] == pytest.approx(on_mentor["picture"], rel=0.02), "the console shows another picture"


def test_the_console_publishes_its_camera_hears_the_mentor_and_gets_the_strokes_on_it(
    site, open_page, session, surgeon, carol, alice, consenting_patient
):
    off_loop(services.session_start, session=session, by=alice)
    console = open_page(site.join_url(services.join_token_mint(participant=surgeon)))
    console.wait_for_function("() => window.orstream.media.state === 'live'", timeout=30_000)
    assert console.evaluate("() => window.orstream.source") == "camera"
    assert "room has no video feed" in console.locator("#source-state").inner_text()
    assert console.locator("#source-choice").is_hidden()

    mentor = mentor_page(site, open_page, carol)
    stats = mentor.evaluate("() => window.orstream.stats()")
    assert stats["video"]["codec"] == "video/H264" and stats["video"]["framesDecoded"] > 0
    wait_until(lambda: is_green(mentor.evaluate(PICTURE_COLOUR)), "the mentor sees the console's camera")
    assert is_green(console.evaluate(PICTURE_COLOUR))
    edge = edge_state(console)
    assert edge["source"] is None and edge["publisher"]["participant_id"] == str(surgeon.public_id)

    check_talkback_plays(mentor, console)
    check_stroke_lands_over_the_picture(mentor, console)
    screenshot(console, "journey-console-camera")


@pytest.fixture
def room_feed(session: Any) -> Path:
    # Under the repository: the edge process opens it by path.
    folder = ROOT / "test-artifacts" / "e2e-feeds"
    folder.mkdir(parents=True, exist_ok=True)
    clip = solid_clip(folder / f"feed-{session.public_id.hex[:8]}.mp4")
    session.room.ingest_url = str(clip)
    session.room.save(update_fields=["ingest_url"])
    return clip


def test_with_a_room_feed_the_console_shows_it_and_the_surgeon_switches_to_the_camera_and_back(
    site, open_page, session, room_feed, surgeon, carol, alice, consenting_patient, settings
):
    # Going live starts the room's feed on the edge, from this process.
    settings.EDGE_URL, settings.EDGE_SECRET = site.edge.url, EDGE_SECRET
    off_loop(services.session_start, session=session, by=alice)
    console = open_page(site.join_url(services.join_token_mint(participant=surgeon)))
    console.wait_for_function("() => window.orstream.source === 'feed' && window.orstream.media.state === 'live'", timeout=30_000)
    console.wait_for_function(f"() => ({FRAMES_DECODED})() > 5", timeout=20_000)
    # What the console shows is the edge's feed, received as the mentors receive it, not a camera.
    assert console.evaluate(
        """() => {
          const track = document.getElementById('video').srcObject.getVideoTracks()[0];
          return window.orstream.media.pc.getReceivers().some((r) => r.track === track);
        }"""
    )
    assert console.evaluate("() => [document.getElementById('video').videoWidth, document.getElementById('video').videoHeight]") == list(FEED_SIZE)
    assert is_magenta(console.evaluate(PICTURE_COLOUR))
    assert console.evaluate("() => document.getElementById('video').muted"), "the console plays the room's own sound back into the room"
    assert "room's video feed" in console.locator("#source-state").inner_text()
    assert console.get_by_label("The room's video feed").is_checked()
    assert edge_state(console)["source"] is not None

    mentor = mentor_page(site, open_page, carol)
    assert is_magenta(mentor.evaluate(PICTURE_COLOUR))
    check_talkback_plays(mentor, console)
    check_stroke_lands_over_the_picture(mentor, console)
    screenshot(console, "journey-console-feed")

    # The surgeon switches to the console's camera: it replaces the feed for everyone.
    console.get_by_label("This console's camera").check()
    console.wait_for_function("() => window.orstream.source === 'camera' && window.orstream.media.state === 'live'", timeout=30_000)
    assert "in place of the room's feed" in console.locator("#source-state").inner_text()
    edge = edge_state(console)
    assert edge["source"] is None and edge["publisher"]["participant_id"] == str(surgeon.public_id)
    wait_until(lambda: is_green(mentor.evaluate(PICTURE_COLOUR)), "the mentor sees the console's camera after the switch", timeout=30)
    assert is_green(console.evaluate(PICTURE_COLOUR))
    check_talkback_plays(mentor, console)
    screenshot(console, "journey-console-switched-to-camera")

    # And back to the room's feed: the camera stops, the feed returns on both pages.
    console.get_by_label("The room's video feed").check()
    console.wait_for_function("() => window.orstream.source === 'feed' && window.orstream.media.state === 'live'", timeout=30_000)
    wait_until(lambda: is_magenta(console.evaluate(PICTURE_COLOUR)), "the console shows the room's feed again")
    wait_until(lambda: is_magenta(mentor.evaluate(PICTURE_COLOUR)), "the mentor sees the room's feed again", timeout=30)
    edge = edge_state(console)
    assert edge["source"] is not None and edge["publisher"] is None
    assert console.evaluate("() => window.orstream.publisher.pc === null")
    assert console.evaluate("() => document.getElementById('camera-state').innerText") == "Not in use: the room's feed is shown."


# Watches the sound state the console shows and reports each change on the browser console. Read
# passively: anything the test evaluates in the page counts as a user gesture in Chromium, which
# would let the sound play and hide the very refusal under test.
SOUND_WATCH = """
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver(() => console.log(`sound: ${document.body.dataset.sound}`))
    .observe(document.body, { attributes: true, attributeFilter: ["data-sound"] });
});
"""


def heard(page: Any, said: list[str], line: str, what: str, *, timeout: float) -> None:
    """Wait until the page logged ``line``; Playwright delivers console events only while it runs a
    call of its own, so wait with the page's timer, not time.sleep."""
    deadline = time.monotonic() + timeout
    while line not in said:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s (the page said {said})")
        page.wait_for_timeout(250)


@pytest.mark.chromium_args("--autoplay-policy=user-gesture-required")
def test_a_browser_that_refuses_sound_says_so_and_the_first_touch_turns_it_on(
    site, browser, open_page, session, room_feed, surgeon, carol, alice, consenting_patient, settings
):
    """A console browser that allows no sound before a gesture (not a kiosk set up as the README
    says): the page tells the surgeon, and one touch anywhere turns the mentors' voices on."""
    settings.EDGE_URL, settings.EDGE_SECRET = site.edge.url, EDGE_SECRET
    off_loop(services.session_start, session=session, by=alice)
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script(SOUND_WATCH)
    console = context.new_page()
    said: list[str] = []
    console.on("console", lambda message: said.append(message.text))
    console.goto(site.join_url(services.join_token_mint(participant=surgeon)))
    heard(console, said, "sound: blocked", "the console says the browser blocks the sound", timeout=30)
    assert "sound: on" not in said
    assert console.locator("#sound").is_visible()
    assert "Touch the screen or press any key" in console.locator("#sound-state").inner_text()
    screenshot(console, "journey-console-sound-blocked")

    mentor = mentor_page(site, open_page, carol)
    console.mouse.click(5, 5)  # a touch anywhere on the page, not the button
    heard(console, said, "sound: on", "one touch turns the sound on", timeout=10)
    assert console.locator("#sound").is_hidden()
    check_talkback_plays(mentor, console)
    context.close()
