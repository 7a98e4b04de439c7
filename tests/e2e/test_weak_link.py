"""A mentor in real headless Chromium behind a shaped link (a network namespace of its own, loopback
through tbf): moved to the lower layer while the link is 10 Mbit/s, back to the 4K source once it
is 40 Mbit/s. Chromium's own inbound-rtp stats say what it decoded; nothing here is timed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import weak as bench_weak
from bench.browser import CHROMIUM_ARGS
from tests.e2e.conftest import CHROMIUM

pytestmark = pytest.mark.e2e
CLONE_NEWNET = 0x40000000


def test_a_mentor_on_a_weak_link_gets_the_lower_layer_then_the_source_when_the_link_allows() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test shapes a link in a network namespace: run it as root (CI does)")
    bench_weak.ensure_clip(bench_weak.ROOT / "var" / "bench-browser")
    result = bench_weak.run_in_namespace(
        ["--rate", "10mbit", "--change-to", "40mbit", "--change-at", "25", "--seconds", "45", "--warmup", "4"]
    )
    assert "error" not in result, result
    assert result["first_picture_s"] is not None, "the mentor saw a picture on the 10 Mbit/s link"
    before, after = result["before"], result["after"]
    assert before["fps"] > 0 and before["width_last"] == 1280 and before["height"] == 720, before
    assert result["to_full_width_s"] is not None, "the mentor went back to the source once the link allowed"
    assert after["width_last"] == 3840 and after["fps"] > 0, after


def test_a_mentor_on_a_link_too_weak_for_the_lower_layer_gets_still_pictures_and_all_the_sound() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test shapes a link in a network namespace: run it as root (CI does)")
    bench_weak.ensure_clip(bench_weak.ROOT / "var" / "bench-browser")
    result = bench_weak.run_in_namespace(["--rate", "1500kbit", "--seconds", "32", "--timeline"])
    assert "error" not in result, result
    assert result["edge"]["layer"] == "keyframes", result["edge"]
    # Over the last 10 s: Chromium decoded keyframes only (each a picture of its own, none
    # depending on a frame it did not get), and the room's sound kept coming.
    samples = [s for s in result["timeline"] if "framesDecoded" in s and s["t"] >= result["seconds"] - 10]
    first, last = samples[0], samples[-1]
    decoded = last["framesDecoded"] - first["framesDecoded"]
    assert decoded > 0 and decoded == last["keyFramesDecoded"] - first["keyFramesDecoded"], (first, last)
    assert last["frameWidth"] == 1280
    assert (last["audioPackets"] - first["audioPackets"]) / (last["t"] - first["t"]) > 40, "Opus kept coming"


@contextlib.contextmanager
def shaped_namespace(rate: str) -> Iterator[None]:
    """This thread (and every process it starts) in a network namespace of its own whose loopback
    is shaped as bench.weak shapes it; back in the original namespace afterwards."""
    name = f"orstream-e2e-weak-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        inside = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(inside, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the test's network namespace")
        finally:
            os.close(inside)
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            bench_weak.shape(rate)
            yield
        finally:
            if libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original network namespace")
    finally:
        os.close(original)
        subprocess.run(["ip", "netns", "delete", name], check=False)


MEDIA_COUNTS = """async () => {
  const out = { frames: 0, keys: 0, audio: 0 };
  (await window.orstream.media.pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') { out.frames = s.framesDecoded || 0; out.keys = s.keyFramesDecoded || 0; }
    else out.audio += s.packetsReceived || 0;
  });
  return out;
}"""
STATUS_TITLE = "() => { const s = document.getElementById('status'); const t = s.querySelector('.status-title'); return s.hidden || !t ? '' : t.textContent; }"
STILLS = "Your connection is very weak: still pictures only"


def test_the_mentor_page_says_so_when_a_very_weak_link_gets_still_pictures(tmp_path: Path) -> None:
    """`make run`'s site and edge and the mentor's real page in Chromium, all behind a 1.5 Mbit/s
    link: the edge falls back to keyframes only, the page says so, and the room's sound goes on."""
    if os.geteuid() != 0:
        pytest.fail("this test shapes a link in a network namespace: run it as root (CI does)")
    from playwright.sync_api import sync_playwright

    from tests.e2e.stack import go_live_as_coordinator, start_embedded_site, stop_embedded_site

    with shaped_namespace("1500kbit"):
        site = start_embedded_site(tmp_path / "var", log_name="e2e-weak-mentor")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
                try:
                    coordinator = browser.new_context().new_page()
                    go_live_as_coordinator(coordinator, site)
                    coordinator.get_by_role("link", name="Open the live view").wait_for()
                    coordinator.context.close()  # the mentor alone on the link

                    mentor = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
                    mentor.goto(site.links["Mentor"])
                    # full layer, then the lower layer, then its keyframes only, then the page's
                    # own 5 s of stats showing nothing but keyframes
                    mentor.wait_for_function(f"() => ({STATUS_TITLE})() === {STILLS!r}", timeout=120_000)
                    first = mentor.evaluate(MEDIA_COUNTS)
                    mentor.wait_for_timeout(8_000)
                    last = mentor.evaluate(MEDIA_COUNTS)
                    shown = mentor.evaluate(STATUS_TITLE)
                finally:
                    browser.close()
        finally:
            stop_embedded_site(site)
    assert shown == STILLS, "the notice stays while the link is this weak"
    decoded = last["frames"] - first["frames"]
    assert decoded > 0, "still pictures kept coming"
    assert decoded == last["keys"] - first["keys"], ("every picture decoded was a keyframe", first, last)
    assert (last["audio"] - first["audio"]) / 8 > 40, ("the room's sound kept coming (Opus, 50 packets a second)", first, last)
