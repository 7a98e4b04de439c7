"""A mentor in real headless Chromium behind a shaped link (a network namespace of its own, loopback
through tbf): moved to the lower layer while the link is 10 Mbit/s, back to the 4K source once it
is 40 Mbit/s. Chromium's own inbound-rtp stats say what it decoded; nothing here is timed.
"""

from __future__ import annotations

import os

import pytest

from bench import weak as bench_weak

pytestmark = pytest.mark.e2e


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
